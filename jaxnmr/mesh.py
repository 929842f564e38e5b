"""Mesh helpers: gather face vertices, duplicate faces back-to-front, face and vertex normals (NMR_SPEC §1.6,
§1.11, §3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr._linalg import normalize, unit

__all__ = ["vertices_to_faces", "fill_back", "face_normals", "vertex_normals", "check_mesh"]


def _check_indices_eagerly(fn: str, faces, num_vertices: int) -> None:
    """With concrete (non-traced) faces, raise on the first index outside [0, N)."""
    if isinstance(faces, jax.core.Tracer):
        return
    f = np.asarray(faces)
    bad = (f < 0) | (f >= num_vertices)
    if bad.any():
        where = np.argwhere(bad.any(axis=-1))[0]
        face = tuple(int(i) for i in where)
        raise ValueError(
            f"{fn}: faces{list(face)} = {f[face].tolist()} indexes outside the {num_vertices} vertices "
            f"(valid indices are 0..{num_vertices - 1})"
        )


def vertices_to_faces(vertices, faces) -> jnp.ndarray:
    """Gathers the coordinates of each face's three vertices.

    Args:
      vertices: float ``[..., N, 3]``.
      faces: int ``[..., F, 3]`` vertex indices; leading dims broadcast with the vertices' (one topology can
        serve many poses).
    Returns:
      float32 ``[..., F, 3, 3]``: ``out[..., f, k, :] = vertices[..., faces[..., f, k], :]``.

    With concrete faces an index outside ``[0, N)`` raises ValueError naming the face; under ``jit`` indices
    are clamped into ``[0, N)``.
    """
    vertices = _checks.float_array("vertices_to_faces", "vertices", vertices, ("N", 3))
    _checks.index_array("vertices_to_faces", "faces", faces, ("F", 3))
    N = vertices.shape[-2]
    _check_indices_eagerly("vertices_to_faces", faces, N)
    faces = jnp.clip(jnp.asarray(faces, jnp.int32), 0, max(N - 1, 0))
    batch = jnp.broadcast_shapes(vertices.shape[:-2], faces.shape[:-2])
    F = faces.shape[-2]
    v = jnp.broadcast_to(vertices, batch + vertices.shape[-2:])
    f = jnp.broadcast_to(faces, batch + faces.shape[-2:]).reshape(batch + (F * 3, 1))
    if N == 0:
        return jnp.zeros(batch + (F, 3, 3), jnp.float32)
    return jnp.take_along_axis(v, f, axis=-2).reshape(batch + (F, 3, 3))


def fill_back(faces, textures=None):
    """Appends every face with its vertex order reversed, so that each triangle is drawn from both sides.

    Args:
      faces: int ``[..., F, 3]``.
      textures: optional float ``[..., F, T, T, T, 3]``; the copies' cubes have axes 0 and 2 swapped to
        follow the swap of vertices 0 and 2.
    Returns:
      ``faces [..., 2F, 3]`` (copy of face f at index F + f), and ``textures [..., 2F, T, T, T, 3]`` if given.
    """
    faces = _checks.index_array("fill_back", "faces", faces, ("F", 3))
    faces = jnp.concatenate([faces, faces[..., ::-1]], axis=-2)
    if textures is None:
        return faces
    textures = _checks.float_array("fill_back", "textures", textures, ("F", "T", "T", "T", 3))
    textures = jnp.concatenate([textures, jnp.swapaxes(textures, -4, -2)], axis=-5)
    return faces, textures


def face_normals(faces) -> jnp.ndarray:
    """Unit normals ``normalize((V0 - V1) x (V2 - V1))`` (NMR's orientation; NMR_SPEC §3).

    Args:
      faces: float ``[..., F, 3, 3]`` face vertex coordinates.
    Returns:
      float32 ``[..., F, 3]``; zero for degenerate faces (no NaN, also in the gradient).
    """
    faces = _checks.float_array("face_normals", "faces", faces, ("F", 3, 3))
    v0, v1, v2 = faces[..., 0, :], faces[..., 1, :], faces[..., 2, :]
    return normalize(jnp.cross(v0 - v1, v2 - v1))


def vertex_normals(vertices, faces) -> jnp.ndarray:
    """Smooth per-vertex unit normals: the area-weighted mean of the normals of the faces around each vertex.

    Each face adds ``(V1 - V0) x (V2 - V0)`` (length = twice its area) to its three vertices; the sums are then
    normalised. For meshes wound counter-clockwise seen from outside (the OBJ convention, and every mesh in
    :mod:`jaxnmr.meshes`) they point outward: the opposite sign of NMR's :func:`face_normals`, whose
    orientation follows the mirrored screen (NMR_SPEC §1.5, §3). Pass the mesh's own faces, not the doubled
    faces of :func:`fill_back`, in which each face and its reversed copy cancel.

    Args:
      vertices: float ``[..., N, 3]`` (world units).
      faces: int ``[..., F, 3]`` vertex indices; leading dims broadcast with the vertices'.
    Returns:
      float32 ``[..., N, 3]`` unit normals; 0 for vertices that no face with non-zero area uses. Differentiable
      with respect to the vertices (no NaN).
    """
    fn = "vertex_normals"
    vertices = _checks.float_array(fn, "vertices", vertices, ("N", 3))
    faces = _checks.index_array(fn, "faces", faces, ("F", 3))
    N = vertices.shape[-2]
    _check_indices_eagerly(fn, faces, N)
    tri = vertices_to_faces(vertices, faces)  # [..., F, 3, 3]
    cross = jnp.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])  # [..., F, 3]
    batch = tri.shape[:-3]
    F = faces.shape[-2]
    B = int(np.prod(batch, dtype=np.int64))
    per_corner = jnp.broadcast_to(cross[..., None, :], batch + (F, 3, 3)).reshape(B, F * 3, 3)
    index = jnp.clip(jnp.broadcast_to(faces, batch + (F, 3)), 0, max(N - 1, 0)).reshape(B, F * 3)
    sums = jax.vmap(lambda c, i: jax.ops.segment_sum(c, i, num_segments=N))(per_corner, index)
    return unit(sums.reshape(batch + (N, 3)))


def check_mesh(vertices, faces) -> dict:
    """Checks a mesh eagerly (outside ``jit``) and raises ValueError naming the first problem found.

    Under ``jit`` the renderer cannot check data: face indices outside ``[0, N)`` are clamped into range and
    faces with non-finite vertices are simply not drawn. Call this once on your data to catch those mistakes.

    Args:
      vertices: float ``[..., N, 3]``; faces: int ``[..., F, 3]`` (concrete arrays, numpy or jax).
    Returns:
      a dict of counts: ``num_vertices``, ``num_faces``, ``degenerate_faces`` (zero area in 3D, harmless:
      they are never drawn) and ``unused_vertices``.
    Raises:
      TypeError / ValueError: wrong dtypes or shapes, an index outside ``[0, N)`` (naming the face), or a
      non-finite vertex coordinate (naming the vertex).
    """
    fn = "check_mesh"
    if isinstance(vertices, jax.core.Tracer) or isinstance(faces, jax.core.Tracer):
        raise TypeError(f"{fn}: needs concrete arrays; call it outside jit")
    vertices = np.asarray(_checks.float_array(fn, "vertices", vertices, ("N", 3)))
    faces_np = np.asarray(_checks.index_array(fn, "faces", faces, ("F", 3)))
    N = vertices.shape[-2]
    _check_indices_eagerly(fn, faces_np, N)
    bad = ~np.isfinite(vertices)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad.any(axis=-1))[0])
        raise ValueError(f"{fn}: vertices{list(where)} = {vertices[where].tolist()} is not finite "
                         f"({int(bad.any(axis=-1).sum())} non-finite vertices in all)")
    tri = np.asarray(vertices_to_faces(vertices, faces_np))
    area2 = np.linalg.norm(np.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :]), axis=-1)
    used = np.zeros(vertices.shape[:-1], bool)
    np.put_along_axis(used, faces_np.reshape(faces_np.shape[:-2] + (-1,)), True, axis=-1) if faces_np.size else None
    return {
        "num_vertices": N,
        "num_faces": faces_np.shape[-2],
        "degenerate_faces": int((area2 == 0).sum()),
        "unused_vertices": int((~used).sum()),
    }
