"""Cameras: world -> camera space -> NDC, as plain differentiable JAX functions (NMR_SPEC §2).

Camera space: +x image-right, +y image-up, +z depth (in front of the camera is positive). NDC: x, y in [-1, 1]
span the image and z is the camera-space depth, unchanged. All functions accept any number of leading batch
dimensions, which broadcast between the vertices and the camera parameters.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxnmr import _checks
from jaxnmr._linalg import normalize

__all__ = ["get_points_from_angles", "look_at", "look", "perspective"]


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
