"""G-buffers: per-pixel face index, perspective-correct barycentrics, depth and coverage, and attribute
interpolation over them (deferred shading on top of NMR's rasterizer).

One forward kernel launch yields all four maps. Depth and alpha come out of the rasterizer's custom VJP, so
they carry NMR's gradients (the exact depth derivative: docs/rasterizer.md, "Depth gradient"; the silhouette
edge sweeps: docs/rasterizer.md, "Approximate gradient"). The barycentrics are recomputed in ``jnp`` from each
pixel centre and its face, so they are differentiable with respect to the face vertices inside each face.
Images are ``[..., H, W(, C)]`` with row 0 at the top, like every other image of jaxnmr. There is no
anti-aliasing (a face index cannot be averaged): render at twice the size, shade, and average with
:func:`jaxnmr.rasterizer.downsample_2x2`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr._linalg import gather_rows
from jaxnmr._primitive import MAX_INTERNAL_SIZE, Config, check_memory, flip_rows, rasterize_maps

__all__ = ["GBuffers", "rasterize_gbuffers", "interpolate"]


class _GBufferArrays(NamedTuple):
    face_index: jax.Array
    barycentrics: jax.Array
    depth: jax.Array
    alpha: jax.Array


class GBuffers(_GBufferArrays):
    """Outputs of :func:`rasterize_gbuffers`, all ``[..., H, W(, 3)]`` with row 0 at the top.

    face_index: int32 ``[..., H, W]``, index of the visible face along the faces' F axis, -1 where empty.
    barycentrics: float32 ``[..., H, W, 3]``, perspective-correct barycentric coordinates of the pixel centre
      on that face (weights of its vertices 0, 1, 2; they sum to 1), 0 where empty.
    depth: float32 ``[..., H, W]``, camera-space z of the visible surface, ``far`` where empty.
    alpha: float32 ``[..., H, W]``, 1 where covered, 0 where empty.
    num_faces: Python int F, the number of faces rasterized (the faces' F axis), or None when unknown (G-buffers
      built by hand). Static metadata, not an array: it is part of the pytree structure, so it survives ``jit``,
      ``vmap``, ``grad`` and ``scan`` unchanged, and :func:`interpolate` checks the faces it is given against it
      at trace time.

    A named tuple of the four arrays (``face_index, barycentrics, depth, alpha = g`` and ``g._replace(...)`` keep
    working; ``_replace`` keeps ``num_faces``) and a pytree of them.
    """

    def __new__(cls, face_index, barycentrics, depth, alpha, num_faces: int | None = None):
        self = super().__new__(cls, face_index, barycentrics, depth, alpha)
        self.__dict__["_num_faces"] = _static_num_faces(num_faces)
        return self

    @property
    def num_faces(self) -> int | None:
        return self.__dict__["_num_faces"]

    def __setattr__(self, name, value):
        raise AttributeError(f"GBuffers is immutable; use _replace({name}=...)")

    def _replace(self, **changes) -> "GBuffers":
        num_faces = changes.pop("num_faces", self.num_faces)
        return GBuffers(*super()._replace(**changes), num_faces=num_faces)

    @classmethod
    def _make(cls, iterable, num_faces: int | None = None) -> "GBuffers":
        return cls(*iterable, num_faces=num_faces)

    def __getnewargs__(self):  # pickle and copy
        return (*self, self.num_faces)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", num_faces={self.num_faces})"


def _static_num_faces(num_faces) -> int | None:
    if num_faces is None:
        return None
    if isinstance(num_faces, (bool, np.bool_)) or not isinstance(num_faces, (int, np.integer)) or num_faces < 0:
        raise TypeError(f"GBuffers: num_faces must be None or a Python int >= 0 (static metadata), got {num_faces!r}")
    return int(num_faces)


jax.tree_util.register_pytree_with_keys(
    GBuffers,
    lambda g: (tuple((jax.tree_util.GetAttrKey(name), x) for name, x in zip(GBuffers._fields, g)), g.num_faces),
    lambda num_faces, arrays: GBuffers(*arrays, num_faces=num_faces),
    flatten_func=lambda g: (tuple(g), g.num_faces),
)
# jax.export serialises an exported function's output structure; num_faces travels as its text (or "").
jax.export.register_pytree_node_serialization(
    GBuffers,
    serialized_name="jaxnmr.GBuffers",
    serialize_auxdata=lambda num_faces: b"" if num_faces is None else str(num_faces).encode(),
    deserialize_auxdata=lambda data: int(data) if data else None,
)


def _check_num_faces(fn: str, gbuffers: GBuffers, name: str, shape: tuple, axis: int) -> None:
    """Raise ValueError unless ``shape[axis]`` (the F of argument ``name``) is the G-buffers' ``num_faces``.

    Face indices of G-buffers from F faces index those F faces; gathered from any other count they pick wrong
    faces (or are clamped) everywhere. Shapes only: works under ``jit`` and ``vmap``. Skipped when
    ``gbuffers.num_faces`` is None.
    """
    expected, given = gbuffers.num_faces, shape[axis]
    if expected is None or given == expected:
        return
    hint = ""
    if given * 2 == expected:
        hint = (" The G-buffers come from twice as many faces: after rasterizing fill_back(faces), pass "
                "fill_back(faces) here too (the copy of face f is face F + f).")
    raise ValueError(
        f"{fn}: {name} has {given} faces (shape {tuple(shape)}), but the G-buffers were rasterized from "
        f"{expected} faces, so their face indices would pick the wrong faces. Pass the same faces, in the same "
        f"order, that were rasterized.{hint}"
    )


def rasterize_gbuffers(face_vertices, image_size: int = 256, near: float = 0.1, far: float = 100.0,
                       eps: float = 1e-4) -> GBuffers:
    """Rasterizes faces given by their vertices in NDC into G-buffers: face index, barycentrics, depth and
    alpha (no anti-aliasing).

    Visibility is the rasterizer's (docs/rasterizer.md, "Visibility": counter-clockwise faces only, nearest
    face at the pixel centre, ties to the lowest index, ``near < z < far``), from one forward kernel launch.
    Gradients: depth and alpha have exactly the gradients of :func:`jaxnmr.rasterize_depth` and
    :func:`jaxnmr.rasterize_silhouettes` with ``anti_aliasing=False``; the barycentrics have their exact
    derivative with respect to the vertices of the face that covers each pixel (that face held fixed); the face
    index has none.

    Args:
      face_vertices: float ``[..., F, 3, 3]`` vertices of each face in NDC (x, y in [-1, 1] span the image,
        z = camera depth).
      image_size: output height = width in pixels (>= 1).
      near, far: a pixel is drawn only where the interpolated depth lies strictly between them.
      eps: the distance regulariser of the silhouette gradient (as the rasterizer's eps).
    Returns:
      :class:`GBuffers` (face_index int32 ``[..., H, W]``, barycentrics float32 ``[..., H, W, 3]``, depth and
      alpha float32 ``[..., H, W]``), with H = W = image_size and the face vertices' leading dims, and
      ``num_faces = F`` (static), which :func:`interpolate` checks its faces against.
    """
    fn = "rasterize_gbuffers"
    face_vertices = _checks.float_array(fn, "face_vertices", face_vertices, ("F", 3, 3))
    S = _checks.positive_int(fn, "image_size", image_size, MAX_INTERNAL_SIZE)
    near, far, eps = _checks.depth_range(fn, near, far, eps)
    background = jnp.zeros(3, jnp.float32)
    check_memory(fn, S, S, face_vertices, None, background)
    config = Config(S, near, far, eps, rgb=False, alpha=True, depth=True, face_index=True)
    _, alpha, depth, face_index = rasterize_maps(config, face_vertices, None, background)
    face_index = flip_rows(face_index, False)
    return GBuffers(
        face_index,
        _barycentrics(face_vertices, face_index),
        flip_rows(depth, False),
        flip_rows(alpha, False),
        num_faces=face_vertices.shape[-3],
    )


def _pixel_centers(size: int) -> tuple[jax.Array, jax.Array]:
    """NDC coordinates of the pixel centres of a ``size x size`` image with row 0 at the top
    (docs/conventions.md, "Pixel centres").

    Returns:
      ``(x, y)``, float32 ``[size]`` each: x of column c is ``(2c + 1 - S) / S``; y of row R is
      ``(S - 1 - 2R) / S`` (row R is the rasterizer's internal row ``S - 1 - R``).
    """
    i = jnp.arange(size, dtype=jnp.float32)
    return (2.0 * i + 1.0 - size) / size, (size - 1.0 - 2.0 * i) / size


# Stands in for the face of an empty pixel so that its (discarded) barycentrics and their gradient stay finite.
_SAFE_FACE = np.array([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]], np.float32)


def _barycentrics(face_vertices, face_index) -> jax.Array:
    """Perspective-correct barycentrics of every pixel centre on its face (the G-buffers' ``barycentrics``).

    The screen-space weights ``w`` of the pixel centre (affine in NDC x, y; clamped to [0, 1] and renormalised,
    as the rasterizer does: docs/rasterizer.md, "Visibility") become ``b_k = (w_k / Z_k) / sum_l (w_l / Z_l)``:
    the weights of the camera-space (and so world-space) surface point, with ``sum_k b_k Z_k`` the rasterizer's
    depth.

    Args:
      face_vertices: float32 ``[..., F, 3, 3]`` in NDC (validated by the caller).
      face_index: int32 ``[..., S, S]``, row 0 at the top, -1 where empty; it gets no gradient.
    Returns:
      float32 ``[..., S, S, 3]``, 0 where ``face_index < 0``; differentiable with respect to ``face_vertices``.
    """
    face_index = jax.lax.stop_gradient(face_index)
    S, F = face_index.shape[-1], face_vertices.shape[-3]
    face = gather_rows(face_vertices.reshape(face_vertices.shape[:-2] + (9,)), face_index)
    face = face.reshape(face.shape[:-1] + (3, 3))  # [..., H, W, 3 vertices, xyz]
    X, Y, Z = face[..., 0], face[..., 1], face[..., 2]
    area = (X[..., 1] - X[..., 0]) * (Y[..., 2] - Y[..., 0]) - (Y[..., 1] - Y[..., 0]) * (X[..., 2] - X[..., 0])
    ok = (face_index >= 0) & (face_index < F) & (area > 0) & jnp.all(Z > 0, axis=-1)
    face = jnp.where(ok[..., None, None], face, _SAFE_FACE)
    X, Y, Z = face[..., 0], face[..., 1], face[..., 2]
    xs, ys = _pixel_centers(S)
    x, y = xs[None, :], ys[:, None]  # [1, W] columns, [H, 1] rows
    # w_k: signed area of (pixel, next vertex, vertex after) over the face's, i.e. the edge function opposite k
    edge = lambda a, b: (X[..., b] - X[..., a]) * (y - Y[..., a]) - (Y[..., b] - Y[..., a]) * (x - X[..., a])
    w = jnp.stack([edge(1, 2), edge(2, 0), edge(0, 1)], axis=-1)
    w = jnp.clip(w / jnp.sum(w, axis=-1, keepdims=True), 0.0, 1.0)
    q = w / Z
    total = jnp.sum(q, axis=-1, keepdims=True)
    ok = ok & (total[..., 0] > 0)
    b = q / jnp.where(total > 0, total, 1.0)
    return jnp.where(ok[..., None], b, 0.0)


def interpolate(attributes, gbuffers: GBuffers, faces=None) -> jax.Array:
    """Interpolates a vertex attribute (colour, normal, world position, UV, ...) over the G-buffers.

    ``out[..., h, w, :] = sum_k b_k attribute(vertex k of the face at (h, w))`` with the perspective-correct
    barycentrics ``b``, so world positions interpolate to the exact surface point under each pixel centre.

    Args:
      attributes: float ``[..., N, C]`` per-vertex values when ``faces`` is given, else float
        ``[..., F, 3, C]`` per-face-corner values (e.g. flat normals, or UVs with seams).
      gbuffers: the :class:`GBuffers` of the same faces, in the same order: with ``fill_back``, the doubled
        faces (and their per-corner attributes) here too.
      faces: optional int ``[..., F, 3]`` vertex indices of the rasterized faces, in ``[0, N)``.
    Returns:
      float32 ``[..., H, W, C]``, 0 where empty; leading dims broadcast between attributes, faces and the
      G-buffers. Differentiable with respect to the attributes and (through the barycentrics) the rasterized
      face vertices.
    Raises:
      ValueError (at trace time, so also under ``jit``): F (of ``faces``, or of per-corner ``attributes``) is
      not the ``gbuffers.num_faces`` they were rasterized from (e.g. the mesh's faces after rasterizing
      ``fill_back(faces)``); wrong trailing shapes; leading dims that do not broadcast; with concrete faces, an
      index outside ``[0, N)``. TypeError: wrong dtypes, or ``gbuffers`` not a :class:`GBuffers`.
    """
    fn = "interpolate"
    if not isinstance(gbuffers, GBuffers):
        raise TypeError(f"{fn}: gbuffers must be the GBuffers from rasterize_gbuffers, got {type(gbuffers).__name__}")
    b = _checks.float_array(fn, "gbuffers.barycentrics", gbuffers.barycentrics, ("H", "W", 3))
    face_index = _checks.index_array(fn, "gbuffers.face_index", gbuffers.face_index, ("H", "W"))
    if b.shape[:-1] != face_index.shape:
        raise ValueError(f"{fn}: gbuffers.barycentrics must have shape gbuffers.face_index.shape + (3,) = "
                         f"{face_index.shape + (3,)}, got shape {b.shape}")
    if faces is not None:
        attributes = _checks.float_array(fn, "attributes", attributes, ("N", "C"))
        faces = _checks.index_array(fn, "faces", faces, ("F", 3))
        _check_num_faces(fn, gbuffers, "faces", faces.shape, -2)
        _checks.indices_in_range(fn, faces, attributes.shape[-2])
        _checks.broadcast_batch(fn, attributes=attributes.shape[:-2], faces=faces.shape[:-2],
                                gbuffers=face_index.shape[:-2])
        corners = gather_rows(attributes, faces)  # [..., F, 3, C]
    else:
        corners = _checks.float_array(fn, "attributes", attributes, ("F", 3, "C"))
        _check_num_faces(fn, gbuffers, "attributes", corners.shape, -3)
        _checks.broadcast_batch(fn, attributes=corners.shape[:-3], gbuffers=face_index.shape[:-2])
    F, C = corners.shape[-3], corners.shape[-1]
    values = gather_rows(corners.reshape(corners.shape[:-2] + (3 * C,)), face_index)
    values = values.reshape(values.shape[:-1] + (3, C))
    out = jnp.sum(b[..., None] * values, axis=-2)
    return jnp.where(((face_index >= 0) & (face_index < F))[..., None], out, 0.0)
