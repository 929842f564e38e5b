"""Cameras: world -> camera space -> NDC, as plain differentiable JAX functions (docs/conventions.md, "Cameras").

Camera space: +x image-right, +y image-up, +z depth (in front of the camera is positive). NDC: x, y in [-1, 1]
span the image and z is the camera-space depth, unchanged.

Batching: every array argument may carry leading batch dims in front of its own trailing shape (``[..., N, 3]``
for vertices, ``[..., 3, 3]`` for a matrix, ``[..., 3]`` for a vector, ``[...]`` for a scalar). The batch dims of
*all* the arguments broadcast together (numpy rules) and the result has that broadcast batch on every output, so
a call equals the Python loop over the batch. Arguments whose batch dims do not broadcast raise a ValueError that
lists every argument's batch shape.

Value checks (a positive ``orig_size``, a field of view in range, ``max_x != min_x``, ...) look at values, so they
run only where the value is concrete; on a jax Tracer (inside ``jit``, ``vmap``, ``grad``, ``shard_map``) they are
skipped, never turning a traced value into a Python bool, and an out-of-range value gives the formula's result
(inf, NaN or a flipped picture, as each function's docstring says).

Two families: NMR's (``look_at`` / ``look``, then ``perspective``; pictures are mirrored, docs/conventions.md#mirroring;
``projection``, an OpenCV camera, with :func:`rodrigues` for OpenCV's rotation vectors) and PyTorch3D's row-vector
``R, t`` cameras (``look_at_view_transform``, ``fov_perspective``, ``orthographic``), whose view space has +x left
and whose pictures are not mirrored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks, _pytree, _vma
from jaxnmr._linalg import normalize, unit

__all__ = ["get_points_from_angles", "look_at", "look", "perspective", "projection", "rodrigues",
           "look_at_view_transform", "fov_perspective", "orthographic", "turntable_eyes",
           "LookAt", "Look", "CameraSpace", "OpenCV", "FoV", "Orthographic"]


# -- shared argument handling -------------------------------------------------------------------------------------


def _batch(fn: str, *parts) -> tuple[int, ...]:
    """The broadcast of the arguments' batch shapes.

    ``parts`` are ``(name, array, k)`` with ``k`` the number of trailing (non-batch) dims of that argument; the
    error names every argument with its batch shape.
    """
    return _checks.broadcast_batch(fn, **{name: tuple(x.shape[: x.ndim - k]) for name, x, k in parts})


def _to_batch(x: jnp.ndarray, batch: tuple[int, ...], k: int) -> jnp.ndarray:
    """``x`` broadcast to ``batch + (its k trailing dims)``."""
    return jnp.broadcast_to(x, batch + tuple(x.shape[x.ndim - k:]))


def _translation(fn: str, name: str, x, column: bool = False) -> jnp.ndarray:
    """A translation as float32 ``[..., 3]``.

    Accepts ``[..., 3]``; NMR's row form ``[..., 1, 3]`` (any array whose second-to-last dim is 1 and last is 3:
    its batch dims are those before the row); with ``column``, OpenCV's column vector ``[..., 3, 1]`` (the tvec of
    cv2.solvePnP; its last dim is 1, so it is never confused with the other two forms).
    """
    x = _checks.float_array(fn, name, x, ())
    shape = tuple(x.shape)
    if column and shape[-2:] == (3, 1):
        return x[..., 0]
    if len(shape) >= 1 and shape[-1] == 3:
        return x[..., 0, :] if len(shape) >= 2 and shape[-2] == 1 else x
    forms = "NMR's row form [..., 1, 3]" + (" or OpenCV's column [..., 3, 1]" if column else "")
    raise ValueError(f"{fn}: {name} must have shape [..., 3] ({forms} also accepted), got shape {shape}")


# -- NMR's cameras -----------------------------------------------------------------------------------------------


def get_points_from_angles(distance, elevation, azimuth, degrees: bool = True) -> jnp.ndarray:
    """Camera position on a sphere around the origin (docs/conventions.md, "LookAt").

    ``x = d cos(el) sin(az)``, ``y = d sin(el)``, ``z = -d cos(el) cos(az)``: azimuth 0, elevation 0 puts the
    camera on -z looking toward +z; azimuth 90 puts it on +x; positive elevation puts it above.

    Args:
      distance, elevation, azimuth: float scalars or ``[...]`` arrays whose shapes broadcast together; angles in
        degrees (radians if ``degrees=False``), distance in world units.
      degrees: a Python bool (static; an array is a TypeError).
    Returns:
      float32 ``[..., 3]`` eye positions, ``...`` the broadcast of the three shapes.
    """
    fn = "get_points_from_angles"
    d = _checks.float_array(fn, "distance", distance, ())
    el = _checks.float_array(fn, "elevation", elevation, ())
    az = _checks.float_array(fn, "azimuth", azimuth, ())
    batch = _batch(fn, ("distance", d, 0), ("elevation", el, 0), ("azimuth", az, 0))
    d, el, az = (_to_batch(x, batch, 0) for x in (d, el, az))
    if _checks.static_bool(fn, "degrees", degrees):
        el, az = jnp.radians(el), jnp.radians(az)
    return jnp.stack([d * jnp.cos(el) * jnp.sin(az), d * jnp.sin(el), -d * jnp.cos(el) * jnp.cos(az)], axis=-1)


# Below this |up x z| (up within ~0.06 degrees of the viewing axis) the basis falls back to another up vector.
PARALLEL_UP_TOLERANCE = 1e-3


def _axes(z_axis: jnp.ndarray, up: jnp.ndarray, norm=normalize) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Camera axes ``x = norm(up x z)``, ``y = norm(z x x)``, ``z = norm(z_axis)``, each ``[..., 3]``.

    ``z_axis`` and ``up`` are float32 ``[..., 3]`` and are broadcast together first, so the batch dims of both
    reach all three axes.

    Departure from NMR: where ``up`` is (nearly) parallel to the viewing axis, NMR's basis degenerates and the
    image is empty; here ``up`` is replaced by world +z (or +x when the view is along z), so looking straight
    down or up still renders (image up = world +z for a camera looking down -y).
    """
    z_axis, up = jnp.broadcast_arrays(z_axis, up)
    z = norm(z_axis)
    up_unit = norm(up)
    fallback = jnp.where(jnp.abs(z[..., 2:3]) < 0.9, jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0]))
    side = jnp.cross(up_unit, z)
    parallel = jnp.sum(side * side, axis=-1, keepdims=True) < PARALLEL_UP_TOLERANCE**2
    x = norm(jnp.where(parallel, jnp.cross(fallback, z), jnp.cross(up, z)))
    y = norm(jnp.cross(z, x))
    return x, y, z


def _matvec(points: jnp.ndarray, m: jnp.ndarray) -> jnp.ndarray:
    """``m p`` for every row ``p`` of ``points [..., N, 3]``, with ``m [..., 3, 3]`` (batch dims broadcast): the
    nine products and sums written out, which XLA fuses into one pass over the points (as a dot with an inner
    dimension of 3 it took ~5x longer on the CPU, forward, and ~2.5x backward)."""
    return jnp.stack([points[..., 0] * m[..., i, 0, None] + points[..., 1] * m[..., i, 1, None]
                      + points[..., 2] * m[..., i, 2, None] for i in range(3)], axis=-1)


def _inverse3(m: jnp.ndarray) -> jnp.ndarray:
    """Inverse of ``m [..., 3, 3]`` by cofactors: its columns are ``b x c``, ``c x a``, ``a x b`` over
    ``det = a . (b x c)``, with ``a, b, c`` the rows of ``m``. Plain element-wise ops (no solver call), so it
    batches, differentiates and exports like the rest; a singular ``m`` gives inf / NaN."""
    a, b, c = m[..., 0, :], m[..., 1, :], m[..., 2, :]
    cofactors = jnp.stack([jnp.cross(b, c), jnp.cross(c, a), jnp.cross(a, b)], axis=-1)
    det = jnp.sum(a * cofactors[..., :, 0], axis=-1)
    return cofactors / det[..., None, None]


def _view(fn: str, vertices, eye, second: tuple[str, object], up, toward: bool,
          inverse: str | None = None) -> jnp.ndarray:
    """Shared body of look_at / look and their inverse: checks, the broadcast batch, the basis (:func:`_axes`),
    then ``(v - eye) R^T`` (world -> camera) or, with ``inverse`` (the name of the points argument in messages),
    ``eye + p R^-T`` (camera -> world).

    ``second`` is ``("at", at)`` (``toward``: the viewing axis is ``at - eye``) or ``("direction", direction)``.
    The rows of ``R`` are orthogonal but, with NMR's ``x / (||x|| + 1e-5)``, a little shorter than 1, so the
    inverse is ``R^-1`` (:func:`_inverse3`), not ``R^T``.
    """
    name, value = second
    points = inverse or "vertices"
    vertices = _checks.float_array(fn, points, vertices, ("N", 3))
    eye = _checks.float_array(fn, "eye", eye, (3,))
    value = _checks.float_array(fn, name, value, (3,))
    up = _checks.float_array(fn, "up", up, (3,))
    batch = _batch(fn, (points, vertices, 2), ("eye", eye, 1), (name, value, 1), ("up", up, 1))
    camera = _batch(fn, ("eye", eye, 1), (name, value, 1), ("up", up, 1))  # the camera's own batch
    eye, value, up = (_to_batch(x, camera, 1) for x in (eye, value, up))
    R = jnp.stack(_axes(value - eye if toward else value, up), axis=-2)  # [..., 3, 3], rows are the camera axes
    if inverse:
        world = _matvec(vertices, _inverse3(R)) + eye[..., None, :]
        return _to_batch(world, batch, 2)
    return _to_batch(_matvec(vertices - eye[..., None, :], R), batch, 2)


def look_at(vertices, eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> jnp.ndarray:
    """World -> camera space for a camera at ``eye`` looking at ``at`` (docs/conventions.md, "LookAt").

    Basis: ``z = normalize(at - eye)``, ``x = normalize(up x z)``, ``y = normalize(z x x)`` with NMR's
    ``x / (||x|| + 1e-5)``. Where ``up`` is within ~0.06 degrees of the viewing axis (e.g. elevation 90), NMR's
    basis degenerates and its image is empty; here ``up`` falls back to world +z (+x when looking along z).

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      eye, at, up: float ``[..., 3]`` world coordinates / direction.
    Returns:
      float32 ``[..., N, 3]`` camera-space coordinates; ``...`` is the broadcast of the batch dims of all four
      arguments.
    """
    return _view("look_at", vertices, eye, ("at", at), up, toward=True)


def look(vertices, eye, direction=(0.0, 0.0, 1.0), up=(0.0, 1.0, 0.0)) -> jnp.ndarray:
    """World -> camera space for a camera at ``eye`` looking along ``direction`` (docs/conventions.md, "Look").

    The basis is :func:`look_at`'s with the viewing axis ``direction`` (any length) instead of ``at - eye``.

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      eye, direction, up: float ``[..., 3]``.
    Returns:
      float32 ``[..., N, 3]`` camera-space coordinates; ``...`` is the broadcast of the batch dims of all four
      arguments.
    """
    return _view("look", vertices, eye, ("direction", direction), up, toward=False)


def perspective(vertices, angle=30.0) -> jnp.ndarray:
    """Camera space -> NDC for a pinhole camera with half field of view ``angle`` (docs/conventions.md, "LookAt").

    ``(x, y, z) -> (x / (z tan(angle)), y / (z tan(angle)), z)``; z is kept as the depth. ``angle`` is not
    range-checked (NMR does not check it either): 0 gives inf, an angle past 90 degrees a flipped picture.

    Args:
      vertices: float ``[..., N, 3]`` camera-space coordinates.
      angle: half field of view in degrees, float scalar or ``[...]``.
    Returns:
      float32 ``[..., N, 3]``; ``...`` is the broadcast of the vertices' and the angle's batch dims.
    """
    fn = "perspective"
    vertices = _checks.float_array(fn, "vertices", vertices, ("N", 3))
    angle = _checks.float_array(fn, "angle", angle, ())
    batch = _batch(fn, ("vertices", vertices, 2), ("angle", angle, 0))
    vertices = _to_batch(vertices, batch, 2)  # the angle's batch dims are part of it and broadcast against it
    width = jnp.tan(jnp.radians(angle))[..., None]
    x, y, z = vertices[..., 0], vertices[..., 1], vertices[..., 2]
    return jnp.stack([x / (z * width), y / (z * width), z], axis=-1)


# -- the OpenCV camera -------------------------------------------------------------------------------------------

# Below this angle^2 (radians^2) rodrigues uses the Taylor series of sin(a)/a: exact to float32 there (the next
# term is below a^6 / 5040 < 2e-16) and free of the 0 / 0 at a = 0, in the value and in the gradient.
_RODRIGUES_TAYLOR_BELOW = 1e-4


def _sinc(x2: jnp.ndarray) -> jnp.ndarray:
    """``sin(x) / x`` as a function of ``x2 = x^2 >= 0``; finite with a finite gradient at 0."""
    small = x2 < _RODRIGUES_TAYLOR_BELOW
    x = jnp.sqrt(jnp.where(small, 1.0, x2))  # the unused branch never sees 0: no NaN leaks into the gradient
    return jnp.where(small, 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0), jnp.sin(x) / x)


def rodrigues(rvec) -> jnp.ndarray:
    """Rotation matrix of an axis-angle vector, OpenCV's ``cv2.Rodrigues`` (rvec -> R).

    ``rvec = angle * axis`` (radians, right-handed about the unit ``axis``) maps to
    ``R = I + sinc(a) [r]x + (1 - cos a) / a^2 [r]x^2`` with ``a = ||rvec||``, ``[r]x`` the cross-product matrix;
    ``(1 - cos a) / a^2`` is evaluated as ``sinc(a / 2)^2 / 2`` (no cancellation) and ``sinc(x)`` by its Taylor
    series for ``x < 0.01``, so the value (the identity) and the gradient are finite at ``rvec = 0`` and accurate
    near it.
    ``R`` is the world -> camera rotation of :func:`projection` for OpenCV's ``rvec`` (``cv2.solvePnP``,
    ``cv2.calibrateCamera``); it equals ``scipy.spatial.transform.Rotation.from_rotvec(rvec).as_matrix()``.

    Args:
      rvec: float ``[..., 3]`` (radians), or OpenCV's column ``[..., 3, 1]``.
    Returns:
      float32 ``[..., 3, 3]`` rotation matrices (orthonormal, det +1).
    """
    fn = "rodrigues"
    r = _checks.float_array(fn, "rvec", rvec, ())
    if tuple(r.shape[-2:]) == (3, 1):
        r = r[..., 0]
    elif not (r.ndim >= 1 and r.shape[-1] == 3):
        raise ValueError(f"rodrigues: rvec must have shape [..., 3] (OpenCV's column [..., 3, 1] also accepted), "
                         f"got shape {tuple(r.shape)}")
    a2 = jnp.sum(r * r, axis=-1)[..., None, None]
    sinc = _sinc(a2)
    one_minus_cos = 0.5 * _sinc(a2 / 4.0) ** 2  # (1 - cos a) / a^2 = 2 sin^2(a / 2) / a^2, no cancellation
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    zero = jnp.zeros_like(x)
    cross = jnp.stack([jnp.stack([zero, -z, y], -1), jnp.stack([z, zero, -x], -1), jnp.stack([-y, x, zero], -1)],
                      axis=-2)
    # [r]x^2 = r r^T - a^2 I
    outer = r[..., :, None] * r[..., None, :] - a2 * jnp.eye(3, dtype=r.dtype)
    return jnp.eye(3, dtype=r.dtype) + sinc * cross + one_minus_cos * outer


_DIST_COUNTS = (4, 5, 8)


def _distortion(fn: str, x) -> jnp.ndarray:
    """dist_coeffs as float32 ``[..., 5]`` (k1, k2, p1, p2, k3) or ``[..., 8]`` (..., k4, k5, k6).

    Accepts 4, 5 or 8 coefficients in OpenCV's order, as ``[..., n]`` or OpenCV's column ``[..., n, 1]``; 4 are
    ``(k1, k2, p1, p2)`` with ``k3 = 0``.
    """
    x = _checks.float_array(fn, "dist_coeffs", x, ())
    shape = tuple(x.shape)
    if len(shape) >= 2 and shape[-1] == 1 and shape[-2] in _DIST_COUNTS:
        x = x[..., 0]
    elif not (len(shape) >= 1 and shape[-1] in _DIST_COUNTS):
        raise ValueError(f"{fn}: dist_coeffs must have shape [..., 4], [..., 5] or [..., 8] (OpenCV's (k1, k2, p1, "
                         f"p2[, k3[, k4, k5, k6]]); a column [..., n, 1] also accepted), got shape {shape}")
    if x.shape[-1] == 4:
        x = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (1,), x.dtype)], axis=-1)  # k3 = 0
    return x


def _positive_size(fn: str, name: str, value) -> jnp.ndarray:
    """A positive scalar (or ``[...]`` array) such as ``orig_size``; checked where it is concrete."""
    size = _checks.float_array(fn, name, value, ())
    concrete = _checks.concrete(size)
    if concrete is not None and not bool(np.all(concrete > 0)):
        raise ValueError(f"{fn}: {name} must be > 0, got {concrete.tolist()!r}")
    return size


def projection(vertices, K, R, t, dist_coeffs=(0.0, 0.0, 0.0, 0.0, 0.0), orig_size=1024.0,
               eps: float = 1e-9) -> jnp.ndarray:
    """World -> NDC for an OpenCV-style camera with lens distortion (docs/conventions.md#opencv, ``cv2.projectPoints``).

    1. camera coordinates ``P = v R^T + t``; 2. ``x' = x / (z + eps)``, ``y' = y / (z + eps)``;
    3. OpenCV's distortion with ``r^2 = x'^2 + y'^2`` and ``dist_coeffs = (k1, k2, p1, p2[, k3[, k4, k5, k6]])``::

         radial = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)
         x'' = x' radial + 2 p1 x'y' + p2 (r^2 + 2 x'^2)
         y'' = y' radial + p1 (r^2 + 2 y'^2) + 2 p2 x'y'

       (4 coefficients: k3 = 0; 4 or 5: no denominator, exactly NMR's model; 8: OpenCV's rational model.)
    4. pixels ``u, v`` from the first two rows of ``K`` applied to ``(x'', y'', 1)`` (no division by the third
    row: K's last row is assumed to be (0, 0, 1); the skew K[0, 1] is used, which cv2.projectPoints ignores);
    5. ``v <- orig_size - v`` (OpenCV's y points down);
    6. ``x_ndc = 2u / orig_size - 1``, ``y_ndc = 2v / orig_size - 1``; 7. output ``(x_ndc, y_ndc, z)`` with the
    camera z (without eps) as the depth.

    Conventions: with OpenCV K, R, t (camera x right, y down, z forward) the result is a *non-mirrored*
    view, unlike look_at/look (docs/conventions.md#mirroring). A rotation vector (OpenCV's ``rvec``) becomes ``R`` with
    :func:`rodrigues`. Pixel coordinates have (0, 0) at the top-left *corner* of the image, so output pixel (row
    R, col C) is centred at ``(u, v) = (C + 0.5, R + 0.5)`` when ``image_size == orig_size``: half a pixel off
    OpenCV's centre-at-integer convention (use ``c + 0.5`` for a principal point ``c`` calibrated the OpenCV
    way). Only r^2 enters the model, so no square root is taken: gradients are finite for a vertex on the optical
    axis (NMR's sqrt gave NaN there).

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      K: float ``[..., 3, 3]`` intrinsics (pixels of the ``orig_size`` frame).
      R: float ``[..., 3, 3]`` world -> camera rotation.
      t: float ``[..., 3]`` translation (world units). Also accepted: NMR's row form ``[..., 1, 3]`` (a
        second-to-last dim of 1; its batch dims are those in front of the row) and OpenCV's column tvec
        ``[..., 3, 1]`` (as cv2.solvePnP returns it).
      dist_coeffs: float ``[..., 4]``, ``[..., 5]`` or ``[..., 8]`` in OpenCV's order (k1, k2, p1, p2, k3, k4, k5,
        k6), or the column ``[..., n, 1]``; zeros = no distortion. A ``(1, n)`` row (cv2.calibrateCamera's) is a
        batch of one, like NMR's ``[B, 5]``: it adds a leading dim of 1 to the output (pass ``dist.ravel()``).
      orig_size: positive float scalar or ``[...]``, the side in pixels of the square frame K refers to. Checked
        to be > 0 where concrete; under jit (a traced value) it is not checked and 0 gives inf / NaN.
      eps: static float added to z before the perspective division.
    Returns:
      float32 ``[..., N, 3]`` NDC coordinates; ``...`` is the broadcast of the batch dims of all the arguments.
    """
    vertices, K, R, t, dist, size, batch = _opencv_arguments("projection", "vertices", vertices, K, R, t,
                                                             dist_coeffs, orig_size)
    # The camera-space points carry the full batch, so every column computed from them does; the parameters
    # below broadcast against them (their batch dims are part of `batch`), the rotation against the vertices.
    P = _to_batch(_matvec(vertices, R) + t[..., None, :], batch, 2)
    size = size[..., None]
    x, y, z = P[..., 0], P[..., 1], P[..., 2]
    xpp, ypp = _distort(x / (z + eps), y / (z + eps), dist)
    row = lambda i: (K[..., i, 0, None] * xpp + K[..., i, 1, None] * ypp + K[..., i, 2, None])
    u, v = row(0), size - row(1)
    return jnp.stack([2.0 * u / size - 1.0, 2.0 * v / size - 1.0, z], axis=-1)


def _opencv_arguments(fn: str, name: str, points, K, R, t, dist_coeffs, orig_size):
    """The checked arguments of :func:`projection` and its inverse, and their broadcast batch: ``points`` float32
    ``[..., N, 3]`` (called ``name`` in messages), K, R ``[..., 3, 3]``, t ``[..., 3]``, dist ``[..., 5 | 8]``
    (:func:`_distortion`), orig_size ``[...]``."""
    points = _checks.float_array(fn, name, points, ("N", 3))
    K = _checks.float_array(fn, "K", K, (3, 3))
    R = _checks.float_array(fn, "R", R, (3, 3))
    t = _translation(fn, "t", t, column=True)
    dist = _distortion(fn, dist_coeffs)
    size = _positive_size(fn, "orig_size", orig_size)
    batch = _batch(fn, (name, points, 2), ("K", K, 2), ("R", R, 2), ("t", t, 1), ("dist_coeffs", dist, 1),
                   ("orig_size", size, 0))
    return points, K, R, t, dist, size, batch


def _distort(xp: jnp.ndarray, yp: jnp.ndarray, dist: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """OpenCV's lens distortion (step 3 of :func:`projection`): normalised coordinates ``x', y'`` float32
    ``[..., N]`` -> ``x'', y''`` ``[..., N]``, with ``dist [..., 5 | 8]`` (:func:`_distortion`) broadcasting
    against the points' batch."""
    r2 = xp * xp + yp * yp  # r only ever appears squared: no sqrt, so no NaN gradient at r = 0
    k = lambda i: dist[..., i, None]
    k1, k2, p1, p2, k3 = (k(i) for i in range(5))
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if dist.shape[-1] == 8:  # OpenCV's rational model (CALIB_RATIONAL_MODEL)
        radial = radial / (1.0 + r2 * (k(5) + r2 * (k(6) + r2 * k(7))))
    xpp = xp * radial + 2.0 * p1 * xp * yp + p2 * (r2 + 2.0 * xp * xp)
    ypp = yp * radial + p1 * (r2 + 2.0 * yp * yp) + 2.0 * p2 * xp * yp
    return xpp, ypp


# Newton steps of _undistort (one more follows, for the gradient). From the distorted point as the first guess,
# Newton's method converges quadratically wherever the distortion is invertible: calibrated lenses (barrel and
# pincushion |k1| up to ~0.5, the 8-coefficient rational model, tangential terms ~0.01) reach float32 rounding
# (~5e-7 in NDC) after 4 steps. The other 4 are margin for points near a fold of the lens model, where the
# Jacobian vanishes and convergence slows (tests/test_unproject.py checks 1e-5 on strongly distorted cameras).
UNDISTORT_STEPS = 8


def _distortion_jacobian(xp: jnp.ndarray, yp: jnp.ndarray, dist: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """The 2x2 Jacobian of :func:`_distort` at ``(x', y')``: ``(dx''/dx', dx''/dy', dy''/dx', dy''/dy')``, each
    ``[..., N]``."""
    ones = jnp.ones_like(xp)
    _, (a, c) = jax.jvp(lambda x: _distort(x, yp, dist), (xp,), (ones,))
    _, (b, e) = jax.jvp(lambda y: _distort(xp, y, dist), (yp,), (ones,))
    return a, b, c, e


def _newton_step(xy: tuple, target: tuple, dist: jnp.ndarray, jacobian: tuple) -> tuple[jnp.ndarray, jnp.ndarray]:
    """One Newton step from ``xy`` toward ``_distort(x', y') = target``, with a given 2x2 ``jacobian``
    (:func:`_distortion_jacobian`)."""
    a, b, c, e = jacobian
    fx, fy = _distort(xy[0], xy[1], dist)
    rx, ry = fx - target[0], fy - target[1]
    det = a * e - b * c
    return xy[0] - (e * rx - b * ry) / det, xy[1] - (a * ry - c * rx) / det


def _undistort(xpp: jnp.ndarray, ypp: jnp.ndarray, dist: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Inverse of :func:`_distort`: ``(x', y')`` float32 ``[..., N]`` each with ``_distort(x', y') = (x'', y'')``.

    :data:`UNDISTORT_STEPS` Newton steps from ``(x'', y'')`` (no distortion: exact after the first) on values
    whose gradient is stopped, then one more step through which the gradient flows, with the Jacobian ``J`` of the
    last step held constant: its derivative is ``J^-1 (d(x'', y'') - d_dist _distort)``, the implicit function's
    at the solution, so the gradient is exact without differentiating the iterations. ``dist`` must broadcast
    against the points (the caller gives the points the full batch). A lens model that folds (``det J = 0`` at
    some radius, e.g. far enough out with a barrel ``k1 < 0``) is not one-to-one: distorted points it never
    produces have no inverse and give meaningless values (possibly inf or NaN), and of two world directions
    with the same distorted point the one found from ``(x'', y'')`` is, in practice, the one nearer the centre.
    """
    target, fixed = jax.lax.stop_gradient(((xpp, ypp), dist))

    def step(_, state):
        xy, _ = state
        jacobian = _distortion_jacobian(*xy, fixed)
        return _newton_step(xy, target, fixed, jacobian), jacobian

    zero = jnp.zeros_like(xpp)
    # inside shard_map the loop's carry must vary over the mesh axes its body's results vary over
    axes = _vma.varying_axes(*target, fixed)
    init = jax.tree.map(lambda x: _vma.to_varying(x, axes), (target, (zero, zero, zero, zero)))
    xy, jacobian = jax.lax.fori_loop(0, UNDISTORT_STEPS, step, init)
    return _newton_step(xy, (xpp, ypp), dist, jacobian)


def _unprojection(fn: str, ndc, K, R, t, dist_coeffs, orig_size, eps: float = 1e-9) -> jnp.ndarray:
    """Inverse of :func:`projection` (same arguments, ``ndc [..., N, 3]`` in place of the vertices) -> world
    float32 ``[..., N, 3]``: NDC -> pixels ``(u, v)`` -> ``(x'', y'')`` by solving the first two rows of K (its
    upper-left 2x2 block must be invertible) -> ``(x', y')`` by :func:`_undistort` -> ``P = (x' (z + eps),
    y' (z + eps), z)`` -> ``R^-1 (P - t)`` (R any invertible matrix; :func:`_inverse3`)."""
    ndc, K, R, t, dist, size, batch = _opencv_arguments(fn, "ndc", ndc, K, R, t, dist_coeffs, orig_size)
    ndc = _to_batch(ndc, batch, 2)  # the full batch on the points, so that _undistort's points carry it
    size = size[..., None]
    k = lambda i, j: K[..., i, j, None]
    du = 0.5 * (ndc[..., 0] + 1.0) * size - k(0, 2)
    dv = size - 0.5 * (ndc[..., 1] + 1.0) * size - k(1, 2)
    det = k(0, 0) * k(1, 1) - k(0, 1) * k(1, 0)
    xp, yp = _undistort((k(1, 1) * du - k(0, 1) * dv) / det, (k(0, 0) * dv - k(1, 0) * du) / det, dist)
    z = ndc[..., 2]
    P = jnp.stack([xp * (z + eps), yp * (z + eps), z], axis=-1)
    return _matvec(P - t[..., None, :], _inverse3(R))


# -- cameras in PyTorch3D's convention (R, t; FoV perspective and orthographic) ----------------------------------
#
# View space as in PyTorch3D: a row vector X_world maps to X_view = X_world @ R + t, with +x pointing to the
# left of the picture, +y up and +z away from the camera into the scene. jaxnmr's NDC has x pointing right, so
# both projections below negate x: the pictures come out as a physical (non-mirrored) camera sees them, like
# those of `projection` and unlike NMR's look_at / look (docs/conventions.md#mirroring), which put view +x on the right.


def look_at_view_transform(distance=1.0, elevation=0.0, azimuth=0.0, degrees: bool = True, at=(0.0, 0.0, 0.0),
                           up=(0.0, 1.0, 0.0), eye=None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(R, t)`` of a camera looking at ``at`` from a point on a sphere around it (PyTorch3D's convention).

    The camera centre is ``C = at + (d cos(el) sin(az), d sin(el), d cos(el) cos(az))``: azimuth 0, elevation 0
    puts it on the +z side of ``at``, azimuth 90 on the +x side, positive elevation above. (NMR's
    :func:`get_points_from_angles` mirrors z: its azimuth ``a`` is this function's azimuth ``180 - a``.) With
    ``eye`` given, ``C = eye`` and distance, elevation and azimuth are ignored entirely (values and batch dims).

    The view axes are those of :func:`look_at`: ``z`` = unit(at - C), ``x`` = unit(up x z), ``y = z x x``
    (exactly unit length here; ``look_at`` divides by ``||.|| + 1e-5`` as NMR does), and the same fallback when
    ``up`` is parallel to the viewing axis. ``R`` has these axes as its *columns* and ``t = -C @ R``, so
    ``X_world @ R + t`` equals ``look_at(X_world, C, at, up)`` (to within NMR's 1e-5 normalisation).

    Args:
      distance: float ``[...]``, from ``at`` (world units). elevation, azimuth: float ``[...]``, degrees (radians if
        ``degrees=False``). degrees: a Python bool (static). at, up, eye: float ``[..., 3]`` (eye: None for the
        sphere).
    Returns:
      ``R`` float32 ``[..., 3, 3]`` (a rotation: orthonormal, det +1) and ``t`` float32 ``[..., 3]``, for
      :func:`fov_perspective`, :func:`orthographic` and ``Renderer(camera_mode="fov" | "orthographic")``; ``...``
      is the broadcast of the batch dims of all the arguments used, on both outputs.
    """
    fn = "look_at_view_transform"
    degrees = _checks.static_bool(fn, "degrees", degrees)
    at = _checks.float_array(fn, "at", at, (3,))
    up = _checks.float_array(fn, "up", up, (3,))
    if eye is None:
        d = _checks.float_array(fn, "distance", distance, ())
        el = _checks.float_array(fn, "elevation", elevation, ())
        az = _checks.float_array(fn, "azimuth", azimuth, ())
        batch = _batch(fn, ("distance", d, 0), ("elevation", el, 0), ("azimuth", az, 0), ("at", at, 1),
                       ("up", up, 1))
        d, el, az = (_to_batch(x, batch, 0) for x in (d, el, az))
        if degrees:
            el, az = jnp.radians(el), jnp.radians(az)
        offset = jnp.stack([d * jnp.cos(el) * jnp.sin(az), d * jnp.sin(el), d * jnp.cos(el) * jnp.cos(az)], -1)
        at = _to_batch(at, batch, 1)
        centre = at + offset
    else:
        centre = _checks.float_array(fn, "eye", eye, (3,))
        batch = _batch(fn, ("eye", centre, 1), ("at", at, 1), ("up", up, 1))
        centre, at = _to_batch(centre, batch, 1), _to_batch(at, batch, 1)
    up = _to_batch(up, batch, 1)
    R = jnp.stack(_axes(at - centre, up, unit), axis=-1)  # [..., 3, 3], columns are the view axes
    t = -jnp.einsum("...j,...jk->...k", centre, R)
    return R, t


def _view_space(fn: str, vertices, R, t, scalars: list[tuple[str, jnp.ndarray]], inverse: bool = False,
                points: str = "vertices") -> jnp.ndarray:
    """``vertices @ R + t`` ``[..., N, 3]`` on the broadcast batch of all the arguments, scalars ``[...]`` included;
    with ``inverse``, view space -> world, ``(vertices - t) @ R^-1`` (:func:`_inverse3`).

    R None = identity, t None = zeros (vertices already in view space); t may be NMR's row form ``[..., 1, 3]``.
    The scalars only take part in the batch: theirs is part of the view's, so they broadcast against it.
    ``points`` names the points argument in messages.
    """
    vertices = _checks.float_array(fn, points, vertices, ("N", 3))
    parts = [(points, vertices, 2)]
    if R is not None:
        R = _checks.float_array(fn, "R", R, (3, 3))
        parts.append(("R", R, 2))
    if t is not None:
        t = _translation(fn, "t", t)
        parts.append(("t", t, 1))
    batch = _batch(fn, *parts, *((name, x, 0) for name, x in scalars))
    view = vertices  # the products run on the operands as given (_matvec and + broadcast them)
    if inverse:
        if t is not None:
            view = view - t[..., None, :]
        if R is not None:
            view = _matvec(view, jnp.swapaxes(_inverse3(R), -1, -2))
        return _to_batch(view, batch, 2)
    if R is not None:
        view = _matvec(view, jnp.swapaxes(R, -1, -2))
    if t is not None:
        view = view + t[..., None, :]
    return _to_batch(view, batch, 2)


def _angle_in_open_range(fn: str, name: str, value, upper: float) -> jnp.ndarray:
    """A field of view ``[...]`` in ``(0, upper)``; checked where it is concrete (skipped on a Tracer)."""
    angle = _checks.float_array(fn, name, value, ())
    a = _checks.concrete(angle)
    if a is not None and not bool(np.all((a > 0) & (a < upper))):
        raise ValueError(f"{fn}: {name} must be in (0, {upper:g}), got {a.tolist()!r}")
    return angle


def fov_perspective(vertices, R=None, t=None, fov=60.0, degrees: bool = True, aspect_ratio=1.0) -> jnp.ndarray:
    """World -> NDC for a perspective camera with a vertical field of view (PyTorch3D's FoVPerspectiveCameras).

    ``(x, y, z) = X_world @ R + t`` (view space: +x left, +y up, +z into the scene), then
    ``x_ndc = -x / (z tan(fov / 2) aspect_ratio)``, ``y_ndc = y / (z tan(fov / 2))`` and the depth ``z`` is kept
    (the Renderer's near / far play the part of PyTorch3D's znear / zfar). The minus sign turns PyTorch3D's
    x-left NDC into jaxnmr's x-right one, so the picture is the same as PyTorch3D's: not mirrored, world +x on
    the right for a camera on +z looking toward -z. NMR's default view (``Renderer()``, half-angle 30 degrees)
    is ``fov=60`` from ``look_at_view_transform(2.732, 0, 180)``, mirrored left-right.

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      R: float ``[..., 3, 3]`` (None: identity). t: float ``[..., 3]`` or NMR's row form ``[..., 1, 3]`` (None:
        zeros).
      fov: float ``[...]``, the full vertical field of view, in (0, 180) degrees (radians in (0, pi) if
        ``degrees=False``). degrees: a Python bool (static).
      aspect_ratio: float ``[...]`` > 0, width / height of a pixel; 1 for square pixels.
      fov and aspect_ratio are range-checked where concrete; under jit (traced) they are not, and the formula's
      result comes out: fov 0 gives inf / NaN, fov 180 (degrees) squeezes everything to the centre, fov past
      180 or a negative aspect_ratio flips the picture.
    Returns:
      float32 ``[..., N, 3]`` NDC (x right, y up, z = view depth); ``...`` is the broadcast of the batch dims of
      all the arguments.
    """
    fn = "fov_perspective"
    degrees = _checks.static_bool(fn, "degrees", degrees)
    fov = _angle_in_open_range(fn, "fov", fov, 180.0 if degrees else math.pi)
    aspect = _positive_size(fn, "aspect_ratio", aspect_ratio)
    view = _view_space(fn, vertices, R, t, [("fov", fov), ("aspect_ratio", aspect)])
    half = jnp.tan((jnp.radians(fov) if degrees else fov) / 2.0)[..., None]
    x, y, z = view[..., 0], view[..., 1], view[..., 2]
    return jnp.stack([-x / (z * half * aspect[..., None]), y / (z * half), z], axis=-1)


def orthographic(vertices, R=None, t=None, scale=1.0, min_x=-1.0, max_x=1.0, min_y=-1.0,
                 max_y=1.0) -> jnp.ndarray:
    """World -> NDC for an orthographic camera (PyTorch3D's FoVOrthographicCameras).

    ``(x, y, z) = X_world @ R + t`` (view space: +x left, +y up, +z into the scene), then
    ``x_ndc = -(2 scale x - (max_x + min_x)) / (max_x - min_x)``,
    ``y_ndc = (2 scale y - (max_y + min_y)) / (max_y - min_y)``, and the depth ``z`` is kept. With the defaults
    the view-space square ``[-1, 1]^2 / scale`` fills the image whatever the distance; ``max_x`` is the image's
    *left* edge (view +x points left; the picture is not mirrored, as in :func:`fov_perspective`). The depth must
    still be positive (between the Renderer's near and far), so place the camera in front of the object, e.g.
    with :func:`look_at_view_transform`.

    Args:
      vertices: float ``[..., N, 3]`` world coordinates.
      R: float ``[..., 3, 3]`` (None: identity). t: float ``[..., 3]`` or NMR's row form ``[..., 1, 3]`` (None:
        zeros).
      scale: float ``[...]`` zoom factor (PyTorch3D's ``scale_xyz`` for x and y).
      min_x, max_x, min_y, max_y: float ``[...]``, the view-space rectangle (before scaling) spanning the image;
        ``max_x != min_x`` and ``max_y != min_y``, checked where concrete (under jit, equal bounds give inf / NaN).
    Returns:
      float32 ``[..., N, 3]`` NDC (x right, y up, z = view depth); ``...`` is the broadcast of the batch dims of
      all the arguments.
    """
    fn = "orthographic"
    names = ("scale", "min_x", "max_x", "min_y", "max_y")
    scalars = [(n, _checks.float_array(fn, n, b, ())) for n, b in zip(names, (scale, min_x, max_x, min_y, max_y))]
    view = _view_space(fn, vertices, R, t, scalars)
    scale, min_x, max_x, min_y, max_y = (x for _, x in scalars)
    for lo, hi, axis in ((min_x, max_x, "x"), (min_y, max_y, "y")):
        lo_, hi_ = _checks.concrete(lo), _checks.concrete(hi)
        if lo_ is not None and hi_ is not None and bool(np.any(hi_ == lo_)):
            lo_, hi_ = np.broadcast_arrays(lo_, hi_)
            where = "" if lo_.ndim == 0 else f" at batch index {tuple(int(i) for i in np.argwhere(hi_ == lo_)[0])}"
            raise ValueError(f"{fn}: max_{axis} must differ from min_{axis}, both are "
                             f"{float(lo_[hi_ == lo_][0])!r}{where}")
    scale, min_x, max_x, min_y, max_y = (x[..., None] for x in (scale, min_x, max_x, min_y, max_y))
    x, y, z = view[..., 0], view[..., 1], view[..., 2]
    x_ndc = -(2.0 * scale * x - (max_x + min_x)) / (max_x - min_x)
    y_ndc = (2.0 * scale * y - (max_y + min_y)) / (max_y - min_y)
    return jnp.stack([x_ndc, y_ndc, z], axis=-1)


# -- camera objects ------------------------------------------------------------------------------------------------
#
# A camera is a frozen dataclass registered as a pytree: its array fields are leaves (traced, vmapped,
# differentiated, e.g. to fit an eye), the settings that decide code paths are static. It has two members the
# Renderer uses: ``to_ndc(vertices [..., N, 3]) -> [..., N, 3]`` (world -> NDC, docs/conventions.md) and
# ``mirrored`` (whether its pictures are mirrored, which decides the side per-face lighting lights); and
# ``from_ndc(ndc [..., N, 3]) -> [..., N, 3]``, the inverse of to_ndc, which unproject_depth uses
# (docs/points.md, "Unprojecting depth"). A new camera is one more class here (docs/architecture.md, "Adding a
# camera").


def turntable_azimuths(views: int) -> np.ndarray:
    """Azimuths of a turntable in degrees: ``linspace(0, 360, views, endpoint=False)``, float64 ``[views]``."""
    views = _checks.positive_int("turntable_azimuths", "views", views)
    return np.linspace(0.0, 360.0, views, endpoint=False)


def turntable_eyes(views: int, elevation: float = 30.0, distance: float = 2.732) -> np.ndarray:
    """Camera positions of a turntable around the +y axis, float32 ``[views, 3]``.

    View ``i`` is at azimuth ``360 * i / views`` degrees, elevation ``elevation`` degrees and ``distance`` world
    units from the origin, as :func:`get_points_from_angles`: azimuth 0 is on -z (``(0, 0, -d)`` at
    elevation 0), azimuth 90 on +x, positive elevations above the ``y = 0`` plane.
    """
    return np.asarray(get_points_from_angles(distance, elevation, turntable_azimuths(views)), dtype=np.float32)


def default_eye(viewing_angle: float = 30.0) -> tuple[float, float, float]:
    """NMR's default camera position ``(0, 0, -(1 / tan(angle) + 1))``: the unit cube's near face fills the view."""
    return (0.0, 0.0, -(1.0 / math.tan(math.radians(viewing_angle)) + 1.0))


def _check_viewing_angle(fn: str, angle) -> None:
    angle = np.asarray(angle)
    if not np.all((angle > 0) & (angle < 90)):
        raise ValueError(f"{fn}: viewing_angle is the half field of view in degrees and must be in (0, 90), "
                         f"got {angle.tolist()!r} (0 sees nothing, 90 sees everything at one point)")


def _concrete64(x) -> np.ndarray | None:
    """A field's value as float64 numpy where it is known now (:func:`_checks.concrete`), else None."""
    value = _checks.concrete(x)
    if value is None or value.dtype.kind not in "biuf":
        return None  # traced, or not numbers (the conversion that follows reports that)
    return value.astype(np.float64)


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


def _scaled_xy(points: jnp.ndarray, sx, sy) -> jnp.ndarray:
    """``(x sx, y sy, z)`` of ``points [..., N, 3]``, with ``sx, sy`` broadcasting against ``[..., N]``."""
    return jnp.stack([points[..., 0] * sx, points[..., 1] * sy, points[..., 2]], axis=-1)


class _NMRCamera:
    """What NMR's three cameras share (not a camera itself): the checks, and ``to_ndc`` / ``from_ndc`` around
    each one's world <-> camera-space step ``_between`` (and ``_seen``, whether it sees anything).

    A camera that sees nothing (no viewing direction, or a perspective viewing angle outside (0, 90)) gets NaN
    coordinates both ways, so that nothing is drawn and every gradient is exactly zero (no NaN): ``_between`` and
    the perspective get harmless stand-in values there.
    """

    _vectors: ClassVar[tuple[str, ...]] = ()  # the camera's [..., 3] fields

    def _init_nmr(self, fn: str) -> dict:
        """Converts and checks the fields; returns the values known now (numpy, or None where traced), read
        before conversion: inside ``jit`` even a constant becomes a tracer once converted."""
        vectors = self._vectors
        _set(self, "perspective", _checks.static_bool(fn, "perspective", self.perspective))
        known = {name: _concrete64(getattr(self, name)) for name in vectors + ("viewing_angle",)}
        angle = known["viewing_angle"]
        if getattr(self, "eye", 0) is None:
            if angle is None:
                raise TypeError(f"{fn}: eye=None needs a concrete viewing_angle to compute NMR's default eye")
            _check_viewing_angle(fn, angle)
            _set(self, "eye", default_eye(float(angle)))
            known["eye"] = np.asarray(self.eye, np.float32)
        for name in vectors:
            _set(self, name, _checks.float_array(fn, name, getattr(self, name), (3,)))
        _set(self, "viewing_angle", _checks.float_array(fn, "viewing_angle", self.viewing_angle, ()))
        if self.perspective and angle is not None:
            _check_viewing_angle(fn, angle)
        return known

    def replace(self, **changes):
        """A copy with some fields changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    def _seen_with_angle(self) -> tuple[jnp.ndarray, jnp.ndarray | None]:
        """``seen`` bool ``[...]`` (with ``perspective``, also false for an angle out of range) and the viewing
        angle to use (a stand-in where not seen; None without ``perspective``, which ignores it)."""
        seen = self._seen()
        if not self.perspective:
            return seen, None
        angle = self.viewing_angle
        seen = seen & (angle > 0) & (angle < 90)
        return seen, jnp.where(seen, angle, 30.0)

    def to_ndc(self, vertices) -> jnp.ndarray:
        """World ``[..., N, 3]`` (:class:`CameraSpace`: camera space) -> NDC float32 ``[..., N, 3]`` (z: the
        camera-space depth)."""
        seen, angle = self._seen_with_angle()
        vertices = self._between(vertices, seen)
        if self.perspective:
            vertices = perspective(vertices, angle)
        return jnp.where(seen[..., None, None], vertices, jnp.nan)

    def from_ndc(self, ndc) -> jnp.ndarray:
        """NDC ``[..., N, 3]`` -> world (:class:`CameraSpace`: camera space) float32 ``[..., N, 3]``, the inverse
        of :meth:`to_ndc`.

        ``ndc``: float, x and y in [-1, 1] across the image, z the camera-space depth (world units); its batch
        dims broadcast with the camera's. With ``perspective``, camera space is ``(X z w, Y z w, z)`` with
        ``w = tan(viewing_angle)`` (without, the NDC itself); then camera -> world by the inverse of the basis
        (not quite orthonormal: NMR's ``x / (||x|| + 1e-5)``). With ``perspective``, depth 0 loses x and y (every
        point goes to the eye; to_ndc gives inf / NaN there). NaN where the camera sees nothing.
        """
        fn = f"{type(self).__name__}.from_ndc"
        ndc = _checks.float_array(fn, "ndc", ndc, ("N", 3))
        fields = [(name, getattr(self, name), 1) for name in self._vectors]
        fields += [("viewing_angle", self.viewing_angle, 0)] if self.perspective else []
        camera = _to_batch(ndc, _batch(fn, ("ndc", ndc, 2), *fields), 2)
        seen, angle = self._seen_with_angle()
        if self.perspective:
            depth_width = camera[..., 2] * jnp.tan(jnp.radians(angle))[..., None]
            camera = _scaled_xy(camera, depth_width, depth_width)
        return jnp.where(seen[..., None, None], self._between(camera, seen, fn), jnp.nan)


@_pytree.register(static=("perspective",))
@dataclasses.dataclass(frozen=True, eq=False)
class LookAt(_NMRCamera):
    """NMR's default camera: at ``eye`` looking at ``at`` (:func:`look_at`), then :func:`perspective` with the half
    field of view ``viewing_angle`` (or, with ``perspective=False``, orthographic with half-width 1).

    Fields (pytree leaves unless static): eye ``[..., 3]`` (None: NMR's default for the viewing angle,
    :func:`default_eye`), viewing_angle ``[...]`` degrees in (0, 90), at ``[..., 3]``, up ``[..., 3]``;
    perspective: bool (static). Pictures are mirrored (docs/conventions.md, "Mirroring").
    A camera that sees nothing (eye at ``at``, viewing angle outside (0, 90)) raises where its values are
    concrete; traced, its faces get NaN coordinates: nothing is drawn and every gradient is zero.
    :meth:`from_ndc` inverts :meth:`to_ndc`.
    """

    eye: object = None
    viewing_angle: object = 30.0
    perspective: bool = True
    at: object = (0.0, 0.0, 0.0)
    up: object = (0.0, 1.0, 0.0)
    mirrored: ClassVar[bool] = True
    nmr_mode: ClassVar[str] = "look_at"
    _vectors: ClassVar[tuple[str, ...]] = ("eye", "at", "up")

    def __post_init__(self):
        fn = "LookAt"
        known = self._init_nmr(fn)
        eye, at = known["eye"], known["at"]
        if eye is not None and at is not None and np.any(np.all(np.broadcast_to(eye == at, np.broadcast_shapes(
                eye.shape, at.shape)), axis=-1)):
            raise ValueError(f"{fn}: eye {eye.astype(np.float32).tolist()!r} is at the point looked at "
                             f"({at.astype(np.float32).tolist()!r}), so there is "
                             "no viewing direction; move the eye away")

    def _seen(self) -> jnp.ndarray:
        return jnp.any(self.at - self.eye != 0, axis=-1)

    def _between(self, points, seen, inverse: str | None = None) -> jnp.ndarray:
        """:func:`look_at`, with a stand-in eye where nothing is seen; ``inverse`` (the calling function's name,
        for messages): camera -> world, the points called ``ndc``."""
        eye = jnp.where(seen[..., None], self.eye, self.at + jnp.asarray(default_eye(), jnp.float32))
        return _view(inverse or "look_at", points, eye, ("at", self.at), self.up, True, inverse and "ndc")


@_pytree.register(static=("perspective",))
@dataclasses.dataclass(frozen=True, eq=False)
class Look(_NMRCamera):
    """NMR's "look" camera: at ``eye`` looking along ``direction`` (:func:`look`), then :func:`perspective`.

    Fields: eye ``[..., 3]`` (None: :func:`default_eye`), direction ``[..., 3]`` (non-zero, any length),
    viewing_angle ``[...]`` degrees in (0, 90), up ``[..., 3]``; perspective: bool (static). Mirrored, like
    :class:`LookAt`, and the same handling of a camera that sees nothing (a zero direction). :meth:`from_ndc`
    inverts :meth:`to_ndc`.
    """

    eye: object = None
    direction: object = (0.0, 0.0, 1.0)
    viewing_angle: object = 30.0
    perspective: bool = True
    up: object = (0.0, 1.0, 0.0)
    mirrored: ClassVar[bool] = True
    nmr_mode: ClassVar[str] = "look"
    _vectors: ClassVar[tuple[str, ...]] = ("eye", "direction", "up")

    def __post_init__(self):
        fn = "Look"
        d = self._init_nmr(fn)["direction"]
        if d is not None and np.any(np.all(d == 0, axis=-1)):
            raise ValueError(f"{fn}: direction must be non-zero, got {d.astype(np.float32).tolist()!r}")

    def _seen(self) -> jnp.ndarray:
        return jnp.any(self.direction != 0, axis=-1)

    def _between(self, points, seen, inverse: str | None = None) -> jnp.ndarray:
        """:func:`look`, with a stand-in direction where nothing is seen; ``inverse`` as :meth:`LookAt._between`."""
        direction = jnp.where(seen[..., None], self.direction, jnp.asarray([0.0, 0.0, 1.0]))
        return _view(inverse or "look", points, self.eye, ("direction", direction), self.up, False,
                     inverse and "ndc")


@_pytree.register(static=("perspective",))
@dataclasses.dataclass(frozen=True, eq=False)
class CameraSpace(_NMRCamera):
    """NMR's camera mode "none": the vertices are already in camera space; only :func:`perspective` (or, with
    ``perspective=False``, nothing: orthographic with half-width 1).

    Fields: viewing_angle ``[...]`` degrees in (0, 90); perspective: bool (static). Mirrored, like NMR's others.
    :meth:`from_ndc` inverts :meth:`to_ndc`, returning camera-space points.
    """

    viewing_angle: object = 30.0
    perspective: bool = True
    mirrored: ClassVar[bool] = True
    nmr_mode: ClassVar[str] = "none"

    def __post_init__(self):
        self._init_nmr("CameraSpace")

    def _seen(self) -> jnp.ndarray:
        return jnp.ones((), bool)

    def _between(self, points, seen, inverse: str | None = None) -> jnp.ndarray:
        """The identity (the points are in camera space already), checking the points where they come in."""
        return points if inverse else _checks.float_array("CameraSpace.to_ndc", "vertices", points, ("N", 3))


@_pytree.register(static=("orig_size",))
@dataclasses.dataclass(frozen=True, eq=False)
class OpenCV:
    """A calibrated camera in OpenCV's convention with lens distortion: :func:`projection`.

    Fields: K ``[..., 3, 3]`` intrinsics in pixels of the ``orig_size`` frame; R ``[..., 3, 3]`` and t ``[..., 3]``
    (also NMR's ``[..., 1, 3]`` and OpenCV's ``[..., 3, 1]``) world -> camera, ``P = R X + t`` (camera x right,
    y down, z forward); dist_coeffs ``[..., 4 | 5 | 8]`` (None: no distortion); orig_size: float > 0 (static), the
    side of the square frame K refers to. Pictures are not mirrored. :meth:`from_ndc` inverts :meth:`to_ndc`.
    """

    K: object = None
    R: object = None
    t: object = None
    dist_coeffs: object = None
    orig_size: float = 1024.0
    mirrored: ClassVar[bool] = False
    nmr_mode: ClassVar[str] = "projection"

    def __post_init__(self):
        fn = "OpenCV"
        missing = [name for name in ("K", "R", "t") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{fn}: needs K, R and t; missing: {', '.join(missing)}")
        if self.dist_coeffs is None:
            _set(self, "dist_coeffs", jnp.zeros(5, jnp.float32))
        size = _checks.static_float(fn, "orig_size", self.orig_size)
        if not size > 0:
            raise ValueError(f"{fn}: orig_size must be > 0, got {size}")
        _set(self, "orig_size", size)
        # t and dist_coeffs take several layouts (OpenCV's (3, 1) tvec; 4, 5 or 8 coefficients): projection checks
        # them, on shapes only.
        for name, trailing in (("K", (3, 3)), ("R", (3, 3)), ("t", ("n",)), ("dist_coeffs", ("n",))):
            _set(self, name, _checks.float_array(fn, name, getattr(self, name), trailing))
        jax.eval_shape(lambda *camera: projection(jnp.zeros((1, 3), jnp.float32), *camera, size),
                       self.K, self.R, self.t, self.dist_coeffs)

    def replace(self, **changes):
        """A copy with some fields changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    def to_ndc(self, vertices) -> jnp.ndarray:
        """World ``[..., N, 3]`` -> NDC float32 ``[..., N, 3]`` (z: camera-space depth)."""
        return projection(vertices, self.K, self.R, self.t, self.dist_coeffs, self.orig_size)

    def from_ndc(self, ndc) -> jnp.ndarray:
        """NDC ``[..., N, 3]`` -> world float32 ``[..., N, 3]``, the inverse of :meth:`to_ndc`.

        ``ndc``: float, x and y in [-1, 1] across the image, z the camera-space depth (world units); its batch
        dims broadcast with the camera's. Pixels, then K's first two rows solved (their 2x2 block must be
        invertible), the distortion undone by a fixed number of Newton steps (accurate to ~1e-7 in normalised
        coordinates for calibrated lenses; meaningless past a fold of the lens model, where to_ndc is not
        one-to-one), the depth multiplied back and ``R^-1 (P - t)``. A depth of ``-1e-9`` (where the perspective
        division's eps cancels it) loses x and y: every point goes to the camera centre.
        """
        return _unprojection("OpenCV.from_ndc", ndc, self.K, self.R, self.t, self.dist_coeffs, self.orig_size)


class _RowVectorCamera:
    """Shared fields' checks of the row-vector cameras (:class:`FoV`, :class:`Orthographic`) and their
    ``from_ndc``, around each one's lens field (``_lens``, the name of its ``[...]`` field) and the factors
    ``_view_xy(depth)`` that turn NDC x, y back into view x, y."""

    def _init_rt(self, fn: str) -> None:
        _set(self, "R", _checks.float_array(fn, "R", self.R, (3, 3)))
        _set(self, "t", _translation(fn, "t", self.t))

    def replace(self, **changes):
        """A copy with some fields changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    def from_ndc(self, ndc) -> jnp.ndarray:
        """NDC ``[..., N, 3]`` -> world float32 ``[..., N, 3]``, the inverse of :meth:`to_ndc`.

        ``ndc``: float, x and y in [-1, 1] across the image, z the view depth (world units); its batch dims
        broadcast with the camera's. View x, y from the NDC (see the class), then ``(view - t) @ R^-1`` (R any
        invertible matrix).
        """
        fn = f"{type(self).__name__}.from_ndc"
        ndc = _checks.float_array(fn, "ndc", ndc, ("N", 3))
        lens = getattr(self, self._lens)
        ndc = _to_batch(ndc, _batch(fn, ("ndc", ndc, 2), ("R", self.R, 2), ("t", self.t, 1), (self._lens, lens, 0)),
                        2)
        view = _scaled_xy(ndc, *self._view_xy(ndc[..., 2]))
        return _view_space(fn, view, self.R, self.t, [], inverse=True, points="ndc")


@_pytree.register()
@dataclasses.dataclass(frozen=True, eq=False)
class FoV(_RowVectorCamera):
    """A perspective camera with a vertical field of view, in the row-vector convention ``X_view = X_world @ R + t``
    (view +x left, +y up, +z into the scene): :func:`fov_perspective`.

    Fields: R ``[..., 3, 3]`` (default identity), t ``[..., 3]`` (default zeros), e.g. from
    :func:`look_at_view_transform`; fov ``[...]`` full vertical field of view in degrees, in (0, 180). Pictures
    are not mirrored. This is not :class:`OpenCV`'s convention: the same camera has
    ``R_opencv = diag(-1, -1, 1) R.T`` and ``t_opencv = diag(-1, -1, 1) t``. :meth:`from_ndc` inverts
    :meth:`to_ndc`.
    """

    R: object = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    t: object = (0.0, 0.0, 0.0)
    fov: object = 60.0
    mirrored: ClassVar[bool] = False
    nmr_mode: ClassVar[str] = "fov"
    _lens: ClassVar[str] = "fov"

    def __post_init__(self):
        fn = "FoV"
        self._init_rt(fn)
        a = _concrete64(self.fov)
        fov = _checks.float_array(fn, "fov", self.fov, ())
        if a is not None and not bool(np.all((a > 0) & (a < 180.0))):
            raise ValueError(f"{fn}: fov must be in (0, 180), got {a.tolist()!r}")
        _set(self, "fov", fov)

    def to_ndc(self, vertices) -> jnp.ndarray:
        """World ``[..., N, 3]`` -> NDC float32 ``[..., N, 3]`` (z: view depth)."""
        return fov_perspective(vertices, self.R, self.t, self.fov)

    def _view_xy(self, depth: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """View ``x = -X z tan(fov / 2)``, ``y = Y z tan(fov / 2)``: depth 0 loses x and y (all go to the camera)."""
        half = depth * jnp.tan(jnp.radians(self.fov) / 2.0)[..., None]
        return -half, half


@_pytree.register()
@dataclasses.dataclass(frozen=True, eq=False)
class Orthographic(_RowVectorCamera):
    """An orthographic camera in the row-vector convention of :class:`FoV`: :func:`orthographic`, showing the
    view-space square ``[-1, 1]^2 / scale``.

    Fields: R ``[..., 3, 3]`` (default identity), t ``[..., 3]`` (default zeros); scale ``[...]``. Pictures are
    not mirrored. The depth must still lie between the Renderer's near and far: place the camera in front.
    :meth:`from_ndc` inverts :meth:`to_ndc`.
    """

    R: object = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    t: object = (0.0, 0.0, 0.0)
    scale: object = 1.0
    mirrored: ClassVar[bool] = False
    nmr_mode: ClassVar[str] = "orthographic"
    _lens: ClassVar[str] = "scale"

    def __post_init__(self):
        self._init_rt("Orthographic")
        _set(self, "scale", _checks.float_array("Orthographic", "scale", self.scale, ()))

    def to_ndc(self, vertices) -> jnp.ndarray:
        """World ``[..., N, 3]`` -> NDC float32 ``[..., N, 3]`` (z: view depth)."""
        return orthographic(vertices, self.R, self.t, self.scale)

    def _view_xy(self, depth: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """View ``x = -X / scale``, ``y = Y / scale`` (the depth plays no part): scale 0 loses x and y (to_ndc
        maps every point to the centre; here inf / NaN)."""
        inverse = 1.0 / self.scale[..., None]
        return -inverse, inverse


CAMERA_TYPES = (LookAt, Look, CameraSpace, OpenCV, FoV, Orthographic)
