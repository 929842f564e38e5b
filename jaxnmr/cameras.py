"""Cameras: world -> camera space -> NDC, as plain differentiable JAX functions (NMR_SPEC §2).

Camera space: +x image-right, +y image-up, +z depth (in front of the camera is positive). NDC: x, y in [-1, 1]
span the image and z is the camera-space depth, unchanged. All functions accept any number of leading batch
dimensions, which broadcast between the vertices and the camera parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr._linalg import normalize

__all__ = ["get_points_from_angles", "look_at", "look", "perspective", "projection"]


def get_points_from_angles(distance, elevation, azimuth, degrees: bool = True) -> jnp.ndarray:
    """Camera position on a sphere around the origin (NMR_SPEC §2.4).

    ``x = d cos(el) sin(az)``, ``y = d sin(el)``, ``z = -d cos(el) cos(az)``: azimuth 0, elevation 0 puts the
    camera on -z looking toward +z; azimuth 90 puts it on +x; positive elevation puts it above.

    Args:
      distance, elevation, azimuth: scalars or arrays of any broadcastable shapes ``[...]``; angles in degrees
        (radians if ``degrees=False``), distance in world units.
    Returns:
      float32 ``[..., 3]`` eye positions.
    """
    d = _checks.float_array("get_points_from_angles", "distance", distance, ())
    el = _checks.float_array("get_points_from_angles", "elevation", elevation, ())
    az = _checks.float_array("get_points_from_angles", "azimuth", azimuth, ())
    if degrees:
        el, az = jnp.radians(el), jnp.radians(az)
    d, el, az = jnp.broadcast_arrays(d, el, az)
    return jnp.stack([d * jnp.cos(el) * jnp.sin(az), d * jnp.sin(el), -d * jnp.cos(el) * jnp.cos(az)], axis=-1)


# Below this |up x z| (up within ~0.06 degrees of the viewing axis) the basis falls back to another up vector.
PARALLEL_UP_TOLERANCE = 1e-3


def _view(fn: str, vertices, eye, z_axis, up) -> jnp.ndarray:
    """Shared tail of look_at / look: basis from the viewing axis and up, then ``(v - eye) R^T``.

    Departure from NMR: where ``up`` is (nearly) parallel to the viewing axis, NMR's basis degenerates and the
    image is empty; here ``up`` is replaced by world +z (or +x when the view is along z), so looking straight
    down or up still renders (image up = world +z for a camera looking down -y).
    """
    up = _checks.float_array(fn, "up", up, (3,))
    z = normalize(z_axis)
    up = jnp.broadcast_to(up, jnp.broadcast_shapes(up.shape, z.shape))
    up_unit = normalize(up)
    fallback = jnp.where(jnp.abs(z[..., 2:3]) < 0.9, jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0]))
    side = jnp.cross(up_unit, z)
    parallel = jnp.sum(side * side, axis=-1, keepdims=True) < PARALLEL_UP_TOLERANCE**2
    x = normalize(jnp.where(parallel, jnp.cross(fallback, z), jnp.cross(up, z)))
    y = normalize(jnp.cross(z, x))
    R = jnp.stack([x, y, z], axis=-2)  # [..., 3, 3], rows are the camera axes
    return jnp.einsum("...nj,...ij->...ni", vertices - eye[..., None, :], R)


def look_at(vertices, eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> jnp.ndarray:
    """World -> camera space for a camera at ``eye`` looking at ``at`` (NMR_SPEC §2.1).

    Basis: ``z = normalize(at - eye)``, ``x = normalize(up x z)``, ``y = normalize(z x x)`` with NMR's
    ``x / (||x|| + 1e-5)``. Where ``up`` is within ~0.06 degrees of the viewing axis (e.g. elevation 90), NMR's
    basis degenerates and its image is empty; here ``up`` falls back to world +z (+x when looking along z).

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      eye, at, up: float ``[..., 3]``; leading dims broadcast with the vertices'.
    Returns:
      float32 ``[..., N, 3]`` camera-space coordinates.
    """
    vertices = _checks.float_array("look_at", "vertices", vertices, ("N", 3))
    eye = _checks.float_array("look_at", "eye", eye, (3,))
    at = _checks.float_array("look_at", "at", at, (3,))
    return _view("look_at", vertices, eye, at - eye, up)


def look(vertices, eye, direction=(0.0, 0.0, 1.0), up=(0.0, 1.0, 0.0)) -> jnp.ndarray:
    """World -> camera space for a camera at ``eye`` looking along ``direction`` (NMR_SPEC §2.2).

    Args:
      vertices: float ``[..., N, 3]``. eye, direction, up: float ``[..., 3]``, broadcasting.
    Returns:
      float32 ``[..., N, 3]`` camera-space coordinates.
    """
    vertices = _checks.float_array("look", "vertices", vertices, ("N", 3))
    eye = _checks.float_array("look", "eye", eye, (3,))
    direction = _checks.float_array("look", "direction", direction, (3,))
    return _view("look", vertices, eye, direction, up)


def perspective(vertices, angle=30.0) -> jnp.ndarray:
    """Camera space -> NDC for a pinhole camera with half field of view ``angle`` (NMR_SPEC §2.3).

    ``(x, y, z) -> (x / (z tan(angle)), y / (z tan(angle)), z)``; z is kept as the depth.

    Args:
      vertices: float ``[..., N, 3]`` camera-space coordinates.
      angle: half field of view in degrees, scalar or ``[...]`` (broadcasting with the leading dims).
    Returns:
      float32 ``[..., N, 3]``.
    """
    vertices = _checks.float_array("perspective", "vertices", vertices, ("N", 3))
    angle = _checks.float_array("perspective", "angle", angle, ())
    width = jnp.tan(jnp.radians(angle))[..., None]
    x, y, z = vertices[..., 0], vertices[..., 1], vertices[..., 2]
    return jnp.stack([x / (z * width), y / (z * width), z], axis=-1)


def _row_vector(fn: str, name: str, x) -> jnp.ndarray:
    """``[..., 3]`` or NMR's ``[..., 1, 3]`` as a row that broadcasts against ``[..., N, 3]``."""
    x = _checks.float_array(fn, name, x, (3,))
    if x.ndim >= 2 and x.shape[-2] == 1:
        return x  # already [..., 1, 3]
    return x[..., None, :]


def _positive_size(fn: str, name: str, value) -> jnp.ndarray:
    """``orig_size``: a positive scalar (or ``[...]`` array); checked where it is concrete."""
    size = _checks.float_array(fn, name, value, ())
    if not isinstance(size, jax.core.Tracer) and not bool(np.all(np.asarray(size) > 0)):
        raise ValueError(f"{fn}: {name} must be > 0, got {np.asarray(size).tolist()!r}")
    return size


def projection(vertices, K, R, t, dist_coeffs=(0.0, 0.0, 0.0, 0.0, 0.0), orig_size=1024.0,
               eps: float = 1e-9) -> jnp.ndarray:
    """World -> NDC for an OpenCV-style camera with lens distortion (NMR_SPEC §2.5).

    1. camera coordinates ``P = v R^T + t``; 2. ``x' = x / (z + eps)``, ``y' = y / (z + eps)``;
    3. OpenCV distortion with ``r^2 = x'^2 + y'^2`` and ``dist_coeffs = (k1, k2, p1, p2, k3)``::

         x'' = x'(1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x'y' + p2 (r^2 + 2 x'^2)
         y'' = y'(1 + k1 r^2 + k2 r^4 + k3 r^6) + p1 (r^2 + 2 y'^2) + 2 p2 x'y'

    4. pixels ``u, v`` from the first two rows of ``K`` applied to ``(x'', y'', 1)`` (no division by the third
    row: K's last row is assumed to be (0, 0, 1)); 5. ``v <- orig_size - v`` (OpenCV's y points down);
    6. ``x_ndc = 2u / orig_size - 1``, ``y_ndc = 2v / orig_size - 1``; 7. output ``(x_ndc, y_ndc, z)`` with the
    camera z (without eps) as the depth.

    Conventions: with OpenCV K, R, t (camera x right, y down, z forward) the result is a *non-mirrored*
    physical view, unlike look_at/look (NMR_SPEC §1.2). Pixel coordinates have (0, 0) at the top-left *corner*
    of the image, so output pixel (row R, col C) is centred at ``(u, v) = (C + 0.5, R + 0.5)`` when
    ``image_size == orig_size``: half a pixel off OpenCV's centre-at-integer convention (use ``c + 0.5`` for a
    principal point ``c`` calibrated the OpenCV way). Only r^2 enters the model, so no square root is taken:
    gradients are finite for a vertex on the optical axis (NMR's sqrt gave NaN there).

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      K: float ``[..., 3, 3]`` intrinsics (pixels of the ``orig_size`` frame).
      R: float ``[..., 3, 3]`` world -> camera rotation.
      t: float ``[..., 3]`` translation (NMR's ``[..., 1, 3]`` also accepted: a second-to-last dim of 1 is taken
        as that row form).
      dist_coeffs: float ``[..., 5]``, ``(k1, k2, p1, p2, k3)``; zeros = no distortion.
      orig_size: positive scalar (or ``[...]``), the side in pixels of the square frame K refers to.
      eps: added to z before the perspective division.
    Returns:
      float32 ``[..., N, 3]`` NDC coordinates; leading dims broadcast between all arguments.
    """
    fn = "projection"
    vertices = _checks.float_array(fn, "vertices", vertices, ("N", 3))
    K = _checks.float_array(fn, "K", K, (3, 3))
    R = _checks.float_array(fn, "R", R, (3, 3))
    t = _row_vector(fn, "t", t)
    dist = _checks.float_array(fn, "dist_coeffs", dist_coeffs, (5,))
    size = _positive_size(fn, "orig_size", orig_size)[..., None]

    P = jnp.einsum("...nj,...ij->...ni", vertices, R) + t
    x, y, z = P[..., 0], P[..., 1], P[..., 2]
    xp, yp = x / (z + eps), y / (z + eps)
    r2 = xp * xp + yp * yp  # r only ever appears squared: no sqrt, so no NaN gradient at r = 0
    k1, k2, p1, p2, k3 = (dist[..., i, None] for i in range(5))
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xpp = xp * radial + 2.0 * p1 * xp * yp + p2 * (r2 + 2.0 * xp * xp)
    ypp = yp * radial + p1 * (r2 + 2.0 * yp * yp) + 2.0 * p2 * xp * yp
    row = lambda i: (K[..., i, 0, None] * xpp + K[..., i, 1, None] * ypp + K[..., i, 2, None])
    u, v = row(0), size - row(1)
    return jnp.stack([2.0 * u / size - 1.0, 2.0 * v / size - 1.0, z], axis=-1)
