"""The mesh type :class:`Mesh` and mesh helpers: gather face vertices, duplicate faces back-to-front, face and
vertex normals (docs/conventions.md)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from jaxnmr import _checks, _pytree, _texels
from jaxnmr.textures import uv_to_textures, vertex_colors_to_textures
from jaxnmr._linalg import area_normals, normalize, unit

__all__ = ["Mesh", "vertices_to_faces", "fill_back", "face_normals", "vertex_normals", "check_mesh"]


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


def face_normals(face_vertices) -> jnp.ndarray:
    """Unit normals ``normalize((V1 - V0) x (V2 - V0))``: the one orientation of jaxnmr (docs/conventions.md,
    "Winding and normals"), outward for faces wound counter-clockwise seen from outside.

    The normalisation is NMR's regularised ``x / (||x|| + 1e-5)``. (NMR's own lighting uses the opposite
    orientation, because its pictures are mirrored: :func:`jaxnmr.lighting` reverses the faces for that.)

    Args:
      face_vertices: float ``[..., F, 3, 3]`` face vertex coordinates.
    Returns:
      float32 ``[..., F, 3]``; zero for degenerate faces (no NaN, also in the gradient).
    """
    face_vertices = _checks.float_array("face_normals", "face_vertices", face_vertices, ("F", 3, 3))
    return normalize(area_normals(face_vertices))


def vertex_normals(vertices, faces) -> jnp.ndarray:
    """Smooth per-vertex unit normals: the area-weighted mean of the normals of the faces around each vertex.

    Each face adds ``(V1 - V0) x (V2 - V0)`` (length = twice its area) to its three vertices; the sums are then
    normalised. For meshes wound counter-clockwise seen from outside (the OBJ convention, and every mesh in
    :mod:`jaxnmr.meshes`) they point outward, as :func:`face_normals` do. Pass the mesh's own faces, not the
    doubled faces of :func:`fill_back`, in which each face and its reversed copy cancel.

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
    cross = area_normals(tri)  # [..., F, 3]
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


# ---------------------------------------------------------------------------------------------------------------
# The mesh type
# ---------------------------------------------------------------------------------------------------------------


def _field(name: str, x, trailing, kind: str):
    """``x`` as an array (array-likes through numpy; numpy and jax arrays kept as they are) of dtype family
    ``kind`` with trailing shape ``trailing``; None stays None."""
    if x is None:
        return None
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x, np.float32 if kind == "floating" else None)
    if not jnp.issubdtype(x.dtype, getattr(jnp, kind)):
        what = "a floating-point" if kind == "floating" else "an integer"
        raise TypeError(f"Mesh: {name} must be {what} array [..., {', '.join(map(str, trailing))}], "
                        f"got dtype {x.dtype}")
    _checks.check_trailing("Mesh", name, tuple(x.shape), trailing)
    return x


@_pytree.register()
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Mesh:
    """A triangle mesh and, optionally, its appearance: the one mesh type of jaxnmr.

    Returned by every loader and generator (:func:`jaxnmr.load_mesh`, :func:`jaxnmr.load_textured_mesh`,
    :mod:`jaxnmr.meshes`, :func:`jaxnmr.voxels_to_mesh`, :func:`jaxnmr.marching_cubes`); :func:`jaxnmr.load_obj`
    keeps NMR's tuple. A frozen dataclass registered as a jax pytree: every array field is a leaf (absent ones
    are None), so a Mesh passes through ``jit``, ``vmap`` and ``grad``. It is not a tuple: read the fields
    (``mesh.vertices, mesh.faces``) instead of unpacking it. Arrays are kept as given (numpy from the file
    loaders and :mod:`jaxnmr.meshes`, jax from :func:`jaxnmr.voxels_to_mesh`); shapes and dtype families are
    checked when a Mesh is built (ValueError / TypeError naming the field, the expected and the given shape).

    Fields (``...``: optional leading batch dims):
      vertices: float ``[..., N, 3]`` (float32 from every loader), world units.
      faces: int ``[..., F, 3]`` (int32) 0-based vertex indices, wound counter-clockwise seen from outside.
      textures: float ``[..., F, T, T, T, 3]`` per-face colour cubes (docs/conventions.md, "Texture cubes"), or None.
      vertex_colors: float ``[..., N, 3]`` RGB in [0, 1], or None.
      face_uvs: float ``[..., F, 3, 2]`` texture coordinates of each face's corners into ``texture_map`` (u to the
        right, v up from the bottom row: :func:`jaxnmr.sample_bilinear`), or None; given together with
        ``texture_map``.
      texture_map: float ``[..., H, W, 3]`` RGB in [0, 1], row 0 = the top of the picture, or None.
      face_colors: float ``[..., F, 3]`` RGB in [0, 1], one colour per face, or None.
    """

    vertices: object
    faces: object
    textures: object = None
    vertex_colors: object = None
    face_uvs: object = None
    texture_map: object = None
    face_colors: object = None

    __iter__ = None  # not a tuple: ``v, f = mesh`` raises TypeError

    def __post_init__(self):
        checked = {
            "vertices": _field("vertices", self.vertices, ("N", 3), "floating"),
            "faces": _field("faces", self.faces, ("F", 3), "integer"),
            "textures": _field("textures", self.textures, ("F", "T", "T", "T", 3), "floating"),
            "vertex_colors": _field("vertex_colors", self.vertex_colors, ("N", 3), "floating"),
            "face_uvs": _field("face_uvs", self.face_uvs, ("F", 3, 2), "floating"),
            "texture_map": _field("texture_map", self.texture_map, ("H", "W", 3), "floating"),
            "face_colors": _field("face_colors", self.face_colors, ("F", 3), "floating"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        num_vertices, num_faces = self.vertices.shape[-2], self.faces.shape[-2]
        counts = {"textures": (-5, "F", num_faces), "vertex_colors": (-2, "N", num_vertices),
                  "face_uvs": (-3, "F", num_faces), "face_colors": (-2, "F", num_faces)}
        for name, (axis, letter, expected) in counts.items():
            value = checked[name]
            if value is not None and value.shape[axis] != expected:
                whose = "faces" if letter == "F" else "vertices"
                raise ValueError(f"Mesh: {name} must have {letter} = {expected} (as {whose}), got shape "
                                 f"{tuple(value.shape)}")
        if self.textures is not None and not (self.textures.shape[-4] == self.textures.shape[-3]
                                              == self.textures.shape[-2]):
            raise ValueError(f"Mesh: textures must have shape [..., F, T, T, T, 3] (cubes), got shape "
                             f"{tuple(self.textures.shape)}")
        if (self.face_uvs is None) != (self.texture_map is None):
            given, missing = ("face_uvs", "texture_map") if self.texture_map is None else ("texture_map", "face_uvs")
            raise ValueError(f"Mesh: {given} needs {missing} (a texture map is read through face UVs)")

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                parts.append(f"{field.name}={np.dtype(value.dtype).name}{list(value.shape)}")
        return f"Mesh({', '.join(parts)})"

    @property
    def face_vertices(self) -> jnp.ndarray:
        """float32 ``[..., F, 3, 3]``: the coordinates of each face's vertices (:func:`vertices_to_faces`)."""
        return vertices_to_faces(self.vertices, self.faces)

    def replace(self, **changes) -> "Mesh":
        """A copy with the given fields replaced (checked like a new Mesh), e.g. ``mesh.replace(vertices=v)``."""
        return dataclasses.replace(self, **changes)

    def to_textures(self, texture_size: int | None = None) -> jnp.ndarray:
        """The appearance as the renderer's colour cubes, float32 (a jax array) ``[..., F, T, T, T, 3]``.

        The first present of: ``textures`` (returned as they are; ``texture_size`` must be None or their T), the
        texture map (:func:`jaxnmr.uv_to_textures`, which for an OBJ gives what ``load_obj(load_texture=True)``
        gives), the vertex colours (:func:`jaxnmr.vertex_colors_to_textures`), the face colours (one uniform
        cube per face); with none of them, NMR's uniform 0.5 grey. ``texture_size``: T, an int >= 2 (None: the
        stored cubes' T, else 4).
        """
        fn = "Mesh.to_textures"
        if self.textures is not None:
            stored = self.textures.shape[-2]
            if texture_size is not None and _checks.texture_size(fn, texture_size) != stored:
                raise ValueError(f"{fn}: the mesh holds texture cubes with T = {stored}, got texture_size="
                                 f"{texture_size} (cubes are not resampled)")
            return jnp.asarray(self.textures, jnp.float32)
        size = _checks.texture_size(fn, 4 if texture_size is None else texture_size)
        if self.texture_map is not None:
            return uv_to_textures(self.texture_map, self.face_uvs, size)
        if self.vertex_colors is not None:
            return vertex_colors_to_textures(self.vertex_colors, self.faces, size)
        colors = self.face_colors
        if colors is None:
            colors = jnp.full(tuple(self.faces.shape[:-1]) + (3,), _texels.GREY, jnp.float32)
        colors = jnp.asarray(colors, jnp.float32)
        return jnp.broadcast_to(colors[..., None, None, None, :], colors.shape[:-1] + (size,) * 3 + (3,))


# jax.export serialises the output trees of exported functions: a Mesh has no static fields, so no aux data.
jax_export.register_pytree_node_serialization(
    Mesh, serialized_name="jaxnmr.Mesh", serialize_auxdata=lambda aux: b"", deserialize_auxdata=lambda data: ())
