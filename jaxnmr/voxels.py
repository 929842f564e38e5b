"""Voxel grids as triangle meshes, so they render through the same rasterizer (seed 004's input).

:func:`voxels_to_mesh` turns an occupancy grid into the exposed surface of its voxels: one square (two
triangles) wherever an occupied voxel meets an empty one or the border of the grid. The topology is built
with numpy from the **concrete** occupancy; the colours are gathered with ``jax.numpy``, so they can be traced
and differentiated (e.g. optimised against rendered images).

Coordinates: voxel ``(i, j, k)`` of an occupancy grid ``[D, H, W]`` is the unit cube ``[i, i+1] x [j, j+1] x
[k, k+1]`` on axes (x, y, z) -- axis 0 is x, axis 1 is y (the renderer's up), axis 2 is z. The grid is then
centred and scaled to fit ``[-1, 1]``: a grid point ``(a, b, c)`` (``0 <= a <= D`` etc.) goes to
``((a - D/2), (b - H/2), (c - W/2)) * 2 / max(D, H, W)``, so the longest side spans exactly ``[-1, 1]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr.mesh import Mesh

__all__ = ["voxels_to_mesh"]

# Corner offsets (along the two in-plane axes u = (a + 1) % 3, v = (a + 2) % 3) of a voxel side whose normal is
# +axis a: e_u x e_v = e_a, so this order is counter-clockwise seen from +a. Reversed for the -a sides.
_QUAD_UV = np.array([(0, 0), (1, 0), (1, 1), (0, 1)], np.int64)
_QUAD_TRIANGLES = np.array([(0, 1, 2), (0, 2, 3)], np.int64)


def _occupancy(fn: str, occupancy) -> np.ndarray:
    """Concrete bool ``[D, H, W]`` from a bool or 0-1 grid (occupied where ``> 0.5``)."""
    if isinstance(occupancy, jax.core.Tracer):
        raise TypeError(
            f"{fn}: occupancy must be concrete (a numpy array or an untraced jax array) because the mesh "
            f"topology depends on it; got a traced value of shape {occupancy.shape}. Close over it instead of "
            "passing it as an argument of a jitted, vmapped or differentiated function (the colors may be traced)."
        )
    if occupancy is None:
        raise TypeError(f"{fn}: occupancy is required, got None")
    occ = np.asarray(occupancy)
    if occ.dtype == object or not (occ.dtype == bool or np.issubdtype(occ.dtype, np.number)):
        raise TypeError(f"{fn}: occupancy must be a bool or numeric array [D, H, W], got dtype {occ.dtype}")
    if occ.ndim > 3:
        raise ValueError(
            f"{fn}: occupancy must have shape [D, H, W]: one occupancy grid per call (grids of different contents "
            f"give meshes of different sizes, so they cannot be batched), got shape {occ.shape}; call it once per "
            "grid (the colors may have leading batch dims)"
        )
    if occ.ndim != 3:
        raise ValueError(f"{fn}: occupancy must have shape [D, H, W], got shape {occ.shape}")
    return occ if occ.dtype == bool else occ > 0.5


def _surface(occ: np.ndarray):
    """Numpy topology of the exposed sides: integer grid corners ``[N, 3]``, faces ``[F, 3]`` and, per face,
    the flat index of its voxel ``[F]``."""
    D, H, W = occ.shape
    padded = np.pad(occ, 1)
    corners, voxel_ids = [], []
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        for sign in (1, -1):
            neighbour = np.roll(padded, -sign, axis=axis)[1:-1, 1:-1, 1:-1]
            ijk = np.argwhere(occ & ~neighbour)  # [S, 3], row-major order: deterministic
            if ijk.size == 0:
                continue
            quad = np.repeat(ijk[:, None, :], 4, axis=1)  # [S, 4, 3]
            quad[..., axis] += 1 if sign > 0 else 0
            quad[..., u] += _QUAD_UV[:, 0]
            quad[..., v] += _QUAD_UV[:, 1]
            if sign < 0:
                quad = quad[:, ::-1]
            corners.append(quad[:, _QUAD_TRIANGLES].reshape(-1, 3, 3))  # [2S, 3, 3]
            voxel_ids.append(np.repeat(np.ravel_multi_index(ijk.T, occ.shape), 2))
    if not corners:
        return np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64), np.zeros((0,), np.int64)
    corners = np.concatenate(corners)  # [F, 3, 3] integer grid points
    flat = np.ravel_multi_index(corners.reshape(-1, 3).T, (D + 1, H + 1, W + 1))
    unique, inverse = np.unique(flat, return_inverse=True)
    points = np.stack(np.unravel_index(unique, (D + 1, H + 1, W + 1)), axis=1)
    return points, inverse.reshape(-1, 3), np.concatenate(voxel_ids)


def voxels_to_mesh(occupancy, colors=None, texture_size: int = 2) -> Mesh:
    """The exposed surface of a voxel grid as a triangle mesh with one colour per voxel.

    Every side shared by an occupied voxel and an empty one (or the border of the grid) becomes a square of
    two triangles, wound counter-clockwise seen from outside; sides between two occupied voxels are left out,
    so a solid block is a closed, watertight surface. Vertices are shared between the squares (no duplicates).

    Args:
      occupancy: bool or 0-1 ``[D, H, W]``, occupied where True (``> 0.5``). Must be **concrete** (numpy or an
        untraced jax array): the number of faces depends on it.
      colors: float ``[..., D, H, W, 3]`` RGB per voxel (any leading batch dims), may be traced: the textures
        are gathered from it, so gradients of a render flow back to the colours of the visible voxels.
        None: white.
      texture_size: T of the returned texture cubes (int >= 1; each cube is uniform).
    Returns:
      :class:`jaxnmr.Mesh` of jax arrays ``vertices``, ``faces`` and ``textures``, with the colours' leading
      dims ``B`` on each, as a Python loop over the colours' batch would give them (vertices and faces are the
      same for every element, broadcast): float32 ``[*B, N, 3]`` (voxel ``(i, j, k)`` spans x in ``[i, i+1]``,
      y in ``[j, j+1]``, z in ``[k, k+1]`` before the grid is centred and scaled by ``2 / max(D, H, W)`` into
      ``[-1, 1]``; see the module docstring), int32 ``[*B, F, 3]`` and float32 ``[*B, F, T, T, T, 3]`` (each face's voxel colour
      broadcast over its cube). An empty grid gives ``N = F = 0``.
    Raises:
      TypeError: traced occupancy, or non-numeric / integer-coloured input. ValueError: occupancy not 3-D (one
      grid per call), or colors not ``[..., D, H, W, 3]`` for the occupancy's ``[D, H, W]``.
    """
    fn = "voxels_to_mesh"
    occ = _occupancy(fn, occupancy)
    T = _checks.positive_int(fn, "texture_size", texture_size, 64)
    if colors is None:
        colors = jnp.ones(occ.shape + (3,), jnp.float32)
    colors = _checks.float_array(fn, "colors", colors, ("D", "H", "W", 3))
    if colors.shape[-4:-1] != occ.shape:
        raise ValueError(
            f"{fn}: colors must have shape [..., D, H, W, 3] with [D, H, W] = {list(occ.shape)} (the occupancy's), "
            f"got shape {tuple(colors.shape)}"
        )
    points, faces, voxel_ids = _surface(occ)
    D, H, W = occ.shape
    scale = 2.0 / max(D, H, W, 1)
    vertices = ((points - np.array([D, H, W]) / 2.0) * scale).astype(np.float32)
    batch = colors.shape[:-4]
    F = faces.shape[0]
    flat = colors.reshape(batch + (D * H * W, 3))
    per_face = jnp.take(flat, jnp.asarray(voxel_ids, jnp.int32), axis=-2)  # [*B, F, 3]
    textures = jnp.broadcast_to(per_face[..., :, None, None, None, :], batch + (F, T, T, T, 3))
    vertices = jnp.broadcast_to(jnp.asarray(vertices), batch + vertices.shape)
    faces = jnp.broadcast_to(jnp.asarray(faces, jnp.int32), batch + (F, 3))
    return Mesh(vertices, faces, textures=textures)
