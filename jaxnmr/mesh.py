"""Mesh helpers: gather face vertices, duplicate faces back-to-front, face and vertex normals (NMR_SPEC §1.6,
§1.11, §3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr._linalg import normalize, unit

__all__ = ["vertices_to_faces", "fill_back", "face_normals", "vertex_normals", "check_mesh"]


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
    _checks.indices_in_range("vertices_to_faces", faces, N)
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
      faces: int ``[..., F, 3]`` vertex indices.
      textures: optional float ``[..., F, T, T, T, 3]`` (one cube per face); the copies' cubes have axes 0 and
        2 swapped to follow the swap of vertices 0 and 2. Its leading dims broadcast with the faces' (numpy
        rules), and both outputs get the broadcast batch ``B``.
    Returns:
      int32 ``faces [*B, 2F, 3]`` (the copy of face f at index F + f); with ``textures``, the pair
      ``(faces [*B, 2F, 3], float32 textures [*B, 2F, T, T, T, 3])``. Without textures: the faces alone, with
      their own leading dims.
    Raises:
      TypeError / ValueError: wrong dtypes or trailing shapes, textures without one cube per face, or leading
      dims that do not broadcast.
    """
    fn = "fill_back"
    faces = _checks.index_array(fn, "faces", faces, ("F", 3))
    if textures is not None:
        textures = _checks.textures_per_face(fn, textures, faces.shape, -2)
        batch = _checks.broadcast_batch(fn, faces=faces.shape[:-2], textures=textures.shape[:-5])
        faces = jnp.broadcast_to(faces, batch + faces.shape[-2:])
        textures = jnp.broadcast_to(textures, batch + textures.shape[-5:])
    faces = jnp.concatenate([faces, faces[..., ::-1]], axis=-2)
    if textures is None:
        return faces
    return faces, jnp.concatenate([textures, jnp.swapaxes(textures, -4, -2)], axis=-5)


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
    _checks.indices_in_range(fn, faces, N)
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
      vertices: float ``[..., N, 3]``; faces: int ``[..., F, 3]`` (concrete arrays, numpy or jax); their
        leading dims ``B`` broadcast (numpy rules), e.g. a batch of poses sharing one topology.
    Returns:
      a dict of counts **per mesh** (per element of the broadcast batch ``B``, as a loop over the batch would
      give them): ``num_vertices``, ``num_faces``, ``degenerate_faces`` (zero area in 3D, harmless: they are
      never drawn) and ``unused_vertices``. Without leading dims each is a Python int; with them, an int64 numpy
      array of shape ``B`` (sum it for totals).
    Raises:
      TypeError: traced arguments (inside ``jit``, ``vmap`` or ``grad``: the checks need values), wrong dtypes.
      ValueError: wrong trailing shapes, leading dims that do not broadcast, an index outside ``[0, N)``
      (naming the face, with its leading indices), or a non-finite vertex coordinate (naming the vertex).
    """
    fn = "check_mesh"
    for name, x in (("vertices", vertices), ("faces", faces)):
        if isinstance(x, jax.core.Tracer):
            raise TypeError(f"{fn}: needs concrete arrays, got a traced {name} of shape {tuple(x.shape)}; call it "
                            "outside jit, vmap and grad (once, on your data)")
    vertices = np.asarray(_checks.float_array(fn, "vertices", vertices, ("N", 3)))
    faces_np = np.asarray(_checks.index_array(fn, "faces", faces, ("F", 3)))
    N, F = vertices.shape[-2], faces_np.shape[-2]
    batch = _checks.broadcast_batch(fn, vertices=vertices.shape[:-2], faces=faces_np.shape[:-2])
    _checks.indices_in_range(fn, faces_np, N)
    bad = ~np.isfinite(vertices)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad.any(axis=-1))[0])
        raise ValueError(f"{fn}: vertices{list(where)} = {vertices[where].tolist()} is not finite "
                         f"({int(bad.any(axis=-1).sum())} non-finite vertices in all)")
    tri = np.asarray(vertices_to_faces(vertices, faces_np))  # [*B, F, 3, 3]
    f = np.broadcast_to(faces_np, batch + (F, 3))
    area2 = np.linalg.norm(np.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :]), axis=-1)
    used = np.zeros(batch + (N,), bool)
    if f.size:
        np.put_along_axis(used, f.reshape(batch + (F * 3,)), True, axis=-1)
    counts = {
        "num_vertices": np.full(batch, N, np.int64),
        "num_faces": np.full(batch, F, np.int64),
        "degenerate_faces": (area2 == 0).sum(axis=-1, dtype=np.int64),
        "unused_vertices": (~used).sum(axis=-1, dtype=np.int64),
    }
    return {k: int(c) for k, c in counts.items()} if not batch else counts
