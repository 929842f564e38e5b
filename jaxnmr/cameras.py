"""Cameras: world -> camera space -> NDC, as plain differentiable JAX functions (NMR_SPEC §2).

Camera space: +x image-right, +y image-up, +z depth (in front of the camera is positive). NDC: x, y in [-1, 1]
span the image and z is the camera-space depth, unchanged. All functions accept any number of leading batch
dimensions, which broadcast between the vertices and the camera parameters.

Two families: NMR's (``look_at`` / ``look`` then ``perspective``, whose pictures are mirrored, NMR_SPEC §1.2;
``projection``, an OpenCV camera) and PyTorch3D's row-vector ``R, T`` cameras (``look_at_view_transform``,
``fov_perspective``, ``orthographic``), whose view space has +x left and whose pictures are not mirrored.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr._linalg import normalize, safe_norm

__all__ = ["get_points_from_angles", "look_at", "look", "perspective", "projection", "look_at_view_transform",
           "fov_perspective", "orthographic"]


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


def _axes(fn: str, z_axis, up, norm=normalize) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Camera axes ``x = norm(up x z)``, ``y = norm(z x x)``, ``z = norm(z_axis)``, each ``[..., 3]``.

    Departure from NMR: where ``up`` is (nearly) parallel to the viewing axis, NMR's basis degenerates and the
    image is empty; here ``up`` is replaced by world +z (or +x when the view is along z), so looking straight
    down or up still renders (image up = world +z for a camera looking down -y).
    """
    up = _checks.float_array(fn, "up", up, (3,))
    z = norm(z_axis)
    up = jnp.broadcast_to(up, jnp.broadcast_shapes(up.shape, z.shape))
    up_unit = norm(up)
    fallback = jnp.where(jnp.abs(z[..., 2:3]) < 0.9, jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0]))
    side = jnp.cross(up_unit, z)
    parallel = jnp.sum(side * side, axis=-1, keepdims=True) < PARALLEL_UP_TOLERANCE**2
    x = norm(jnp.where(parallel, jnp.cross(fallback, z), jnp.cross(up, z)))
    y = norm(jnp.cross(z, x))
    return x, y, z


def _view(fn: str, vertices, eye, z_axis, up) -> jnp.ndarray:
    """Shared tail of look_at / look: basis from the viewing axis and up (:func:`_axes`), then ``(v - eye) R^T``."""
    R = jnp.stack(_axes(fn, z_axis, up), axis=-2)  # [..., 3, 3], rows are the camera axes
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


# -- cameras in PyTorch3D's convention (R, T; FoV perspective and orthographic) ----------------------------------
#
# View space as in PyTorch3D: a row vector X_world maps to X_view = X_world @ R + T, with +x pointing to the
# left of the picture, +y up and +z away from the camera into the scene. jaxnmr's NDC has x pointing right, so
# both projections below negate x: the pictures come out as a physical (non-mirrored) camera sees them, like
# those of `projection` and unlike NMR's look_at / look (NMR_SPEC §1.2), which put view +x on the right.


def _unit(x: jnp.ndarray) -> jnp.ndarray:
    """``x / ||x||`` over the last axis (exactly unit length, unlike NMR's ``normalize``); 0 stays 0."""
    n = safe_norm(x)
    return x / jnp.where(n > 0, n, 1.0)


def look_at_view_transform(dist=1.0, elev=0.0, azim=0.0, degrees: bool = True, at=(0.0, 0.0, 0.0),
                           up=(0.0, 1.0, 0.0), eye=None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(R, T)`` of a camera looking at ``at`` from a point on a sphere around it (PyTorch3D's convention).

    The camera centre is ``C = at + (d cos(el) sin(az), d sin(el), d cos(el) cos(az))``: azimuth 0, elevation 0
    puts it on the +z side of ``at``, azimuth 90 on the +x side, positive elevation above. (NMR's
    :func:`get_points_from_angles` mirrors z: its azimuth ``a`` is this function's azimuth ``180 - a``.) With
    ``eye`` given, ``C = eye`` and dist, elev and azim are ignored.

    The view axes are those of :func:`look_at`: ``z`` = unit(at - C), ``x`` = unit(up x z), ``y = z x x``
    (exactly unit length here; ``look_at`` divides by ``||.|| + 1e-5`` as NMR does), and the same fallback when
    ``up`` is parallel to the viewing axis. ``R`` has these axes as its *columns* and ``T = -C @ R``, so
    ``X_world @ R + T`` equals ``look_at(X_world, C, at, up)`` (to within NMR's 1e-5 normalisation).

    Args:
      dist: distance from ``at`` (world units), ``[...]``. elev, azim: degrees (radians if ``degrees=False``),
        ``[...]``. at, up, eye: float ``[..., 3]``. All leading dims broadcast.
    Returns:
      ``R`` float32 ``[..., 3, 3]`` (a rotation: orthonormal, det +1) and ``T`` float32 ``[..., 3]``, for
      :func:`fov_perspective`, :func:`orthographic` and ``Renderer(camera_mode="fov" | "orthographic")``.
    """
    fn = "look_at_view_transform"
    at = _checks.float_array(fn, "at", at, (3,))
    if eye is None:
        d = _checks.float_array(fn, "dist", dist, ())
        el = _checks.float_array(fn, "elev", elev, ())
        az = _checks.float_array(fn, "azim", azim, ())
        if degrees:
            el, az = jnp.radians(el), jnp.radians(az)
        d, el, az = jnp.broadcast_arrays(d, el, az)
        offset = jnp.stack([d * jnp.cos(el) * jnp.sin(az), d * jnp.sin(el), d * jnp.cos(el) * jnp.cos(az)], -1)
        centre = at + offset
    else:
        centre = _checks.float_array(fn, "eye", eye, (3,))
    R = jnp.stack(_axes(fn, at - centre, up, _unit), axis=-1)  # [..., 3, 3], columns are the view axes
    T = -jnp.einsum("...j,...jk->...k", centre, R)
    return R, T


def _world_to_view(fn: str, vertices, R, T) -> jnp.ndarray:
    """``vertices @ R + T`` ``[..., N, 3]``; R None = identity, T None = zeros (vertices already in view space)."""
    vertices = _checks.float_array(fn, "vertices", vertices, ("N", 3))
    if R is not None:
        vertices = jnp.einsum("...nj,...jk->...nk", vertices, _checks.float_array(fn, "R", R, (3, 3)))
    if T is not None:
        vertices = vertices + _row_vector(fn, "T", T)
    return vertices


def _angle_in_open_range(fn: str, name: str, value, upper: float) -> jnp.ndarray:
    """A field of view ``[...]`` in ``(0, upper)``; checked where it is concrete."""
    angle = _checks.float_array(fn, name, value, ())
    if not isinstance(angle, jax.core.Tracer):
        a = np.asarray(angle)
        if not bool(np.all((a > 0) & (a < upper))):
            raise ValueError(f"{fn}: {name} must be in (0, {upper:g}), got {a.tolist()!r}")
    return angle


def fov_perspective(vertices, R=None, T=None, fov=60.0, degrees: bool = True, aspect_ratio=1.0) -> jnp.ndarray:
    """World -> NDC for a perspective camera with a vertical field of view (PyTorch3D's FoVPerspectiveCameras).

    ``(x, y, z) = X_world @ R + T`` (view space: +x left, +y up, +z into the scene), then
    ``x_ndc = -x / (z tan(fov / 2) aspect_ratio)``, ``y_ndc = y / (z tan(fov / 2))`` and the depth ``z`` is kept
    (the Renderer's near / far play the part of PyTorch3D's znear / zfar). The minus sign turns PyTorch3D's
    x-left NDC into jaxnmr's x-right one, so the picture is the same as PyTorch3D's: not mirrored, world +x on
    the right for a camera on +z looking toward -z. NMR's default view (``Renderer()``, half-angle 30 degrees)
    is ``fov=60`` from ``look_at_view_transform(2.732, 0, 180)``, mirrored left-right.

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      R: float ``[..., 3, 3]`` (None: identity). T: float ``[..., 3]`` or ``[..., 1, 3]`` (None: zeros).
      fov: full vertical field of view ``[...]``, in (0, 180) degrees (radians in (0, pi) if ``degrees=False``).
      aspect_ratio: width / height of a pixel ``[...]``; 1 for square pixels.
    Returns:
      float32 ``[..., N, 3]`` NDC (x right, y up, z = view depth); leading dims broadcast.
    """
    fn = "fov_perspective"
    view = _world_to_view(fn, vertices, R, T)
    fov = _angle_in_open_range(fn, "fov", fov, 180.0 if degrees else math.pi)
    aspect = _checks.float_array(fn, "aspect_ratio", aspect_ratio, ())
    half = jnp.tan((jnp.radians(fov) if degrees else fov) / 2.0)[..., None]
    x, y, z = view[..., 0], view[..., 1], view[..., 2]
    return jnp.stack([-x / (z * half * aspect[..., None]), y / (z * half), z], axis=-1)


def orthographic(vertices, R=None, T=None, scale=1.0, min_x=-1.0, max_x=1.0, min_y=-1.0,
                 max_y=1.0) -> jnp.ndarray:
    """World -> NDC for an orthographic camera (PyTorch3D's FoVOrthographicCameras).

    ``(x, y, z) = X_world @ R + T`` (view space: +x left, +y up, +z into the scene), then
    ``x_ndc = -(2 scale x - (max_x + min_x)) / (max_x - min_x)``,
    ``y_ndc = (2 scale y - (max_y + min_y)) / (max_y - min_y)``, and the depth ``z`` is kept. With the defaults
    the view-space square ``[-1, 1]^2 / scale`` fills the image whatever the distance; ``max_x`` is the image's
    *left* edge (view +x points left; the picture is not mirrored, as in :func:`fov_perspective`). The depth must
    still be positive (between the Renderer's near and far), so place the camera in front of the object, e.g.
    with :func:`look_at_view_transform`.

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      R: float ``[..., 3, 3]`` (None: identity). T: float ``[..., 3]`` or ``[..., 1, 3]`` (None: zeros).
      scale: ``[...]`` zoom factor (PyTorch3D's ``scale_xyz`` for x and y). min_x, max_x, min_y, max_y: ``[...]``
        the view-space rectangle (before scaling) spanning the image; ``max_x != min_x``, ``max_y != min_y``.
    Returns:
      float32 ``[..., N, 3]`` NDC (x right, y up, z = view depth); leading dims broadcast.
    """
    fn = "orthographic"
    view = _world_to_view(fn, vertices, R, T)
    scale = _checks.float_array(fn, "scale", scale, ())[..., None]
    bounds = [_checks.float_array(fn, n, b, ())[..., None]
              for n, b in (("min_x", min_x), ("max_x", max_x), ("min_y", min_y), ("max_y", max_y))]
    for lo, hi, axis in ((bounds[0], bounds[1], "x"), (bounds[2], bounds[3], "y")):
        if not isinstance(lo, jax.core.Tracer) and not isinstance(hi, jax.core.Tracer):
            if bool(np.any(np.asarray(hi) == np.asarray(lo))):
                raise ValueError(f"{fn}: max_{axis} must differ from min_{axis}, both are {np.asarray(lo).tolist()}")
    min_x, max_x, min_y, max_y = bounds
    x, y, z = view[..., 0], view[..., 1], view[..., 2]
    x_ndc = -(2.0 * scale * x - (max_x + min_x)) / (max_x - min_x)
    y_ndc = (2.0 * scale * y - (max_y + min_y)) / (max_y - min_y)
    return jnp.stack(jnp.broadcast_arrays(x_ndc, y_ndc, z), axis=-1)
