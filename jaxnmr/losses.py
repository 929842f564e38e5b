"""Losses for fitting meshes: mesh regularisers and a silhouette overlap score (pure JAX, differentiable).

* :func:`laplacian_smoothing` -- uniform Laplacian: how far each vertex is from its neighbours' centroid.
* :func:`edge_length` -- mean squared deviation of the edge lengths from a target length.
* :func:`normal_consistency` -- mean ``1 - cos`` between the normals of faces that share an edge.
* :func:`silhouette_iou` -- intersection over union of silhouettes, hard (thresholded) or soft.
* :func:`silhouette_mse` -- mean squared difference of silhouettes.

The three mesh regularisers take ``vertices [..., N, 3]`` (any leading batch dims; a batch of meshes with one
topology) and ``faces [F, 3]``. Their adjacency (edges, neighbours, face pairs) is built with numpy from the
faces, so **the faces must be concrete**: a numpy array or a jax array that is not traced -- close over them (or
mark them static) rather than passing them as an argument of a jitted function. The vertices can be traced,
vmapped and differentiated. Each edge is counted once however many faces use it, and all three losses are
invariant to a translation of the mesh. Degenerate input (coincident vertices, zero-area faces) gives finite
values and finite gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr._linalg import area_normals, safe_norm, unit

__all__ = ["laplacian_smoothing", "edge_length", "normal_consistency", "silhouette_iou", "silhouette_mse"]

IOU_THRESHOLD = 0.5


# ---------------------------------------------------------------------------------------------------------------
# Concrete topology (numpy)
# ---------------------------------------------------------------------------------------------------------------


def _mesh_inputs(fn: str, vertices, faces) -> tuple[jnp.ndarray, np.ndarray]:
    """Validated ``vertices`` (float32 ``[..., N, 3]``) and concrete ``faces`` (int64 numpy ``[F, 3]``)."""
    vertices = _checks.float_array(fn, "vertices", vertices, ("N", 3))
    if isinstance(faces, jax.core.Tracer):
        raise TypeError(
            f"{fn}: faces must be concrete (a numpy array or an untraced jax array) because the mesh adjacency "
            f"is built with numpy; got a traced value of shape {faces.shape}. Close over the faces instead of "
            "passing them as an argument of a jitted or vmapped function."
        )
    _checks.index_array(fn, "faces", faces, ("F", 3))
    faces = np.asarray(faces).astype(np.int64)
    if faces.ndim != 2:
        raise ValueError(f"{fn}: faces must have shape [F, 3] (one topology, no batch dims), got shape {faces.shape}")
    n = vertices.shape[-2]
    if faces.size and (faces.min() < 0 or faces.max() >= n):
        bad = int(np.argwhere((faces < 0) | (faces >= n))[0, 0])
        raise ValueError(
            f"{fn}: faces[{bad}] = {faces[bad].tolist()} indexes outside the {n} vertices "
            f"(valid indices are 0..{n - 1})"
        )
    return vertices, faces


def _unique_edges(faces: np.ndarray) -> np.ndarray:
    """Undirected edges ``[E, 2]`` (``i < j``, sorted, each once); edges of repeated indices are dropped."""
    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    if e.size == 0:
        return np.zeros((0, 2), np.int64)
    return np.unique(e, axis=0)


def _neighbour_table(faces: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded neighbour lists from the faces' edges: indices ``[N, K]`` and weights ``1 / degree`` ``[N, K]``.

    Padding slots point at the vertex itself with weight 0; a vertex with no neighbours has all-zero weights.
    """
    e = _unique_edges(faces)
    both = np.concatenate([e, e[:, ::-1]])  # directed, each undirected edge both ways
    order = np.lexsort((both[:, 1], both[:, 0]))
    src, dst = both[order, 0], both[order, 1]
    degree = np.bincount(src, minlength=n)
    k = max(int(degree.max()) if degree.size else 0, 1)
    index = np.repeat(np.arange(n)[:, None], k, axis=1)
    weight = np.zeros((n, k), np.float32)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]]) if n else np.zeros(0, np.int64)
    slot = np.arange(len(src)) - start[src]
    index[src, slot] = dst
    weight[src, slot] = 1.0 / degree[src]
    return index, weight


def _adjacent_face_pairs(faces: np.ndarray) -> np.ndarray:
    """Pairs of faces ``[P, 2]`` that share an undirected edge (all pairs for an edge used by more than two)."""
    f = len(faces)
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    owner = np.repeat(np.arange(f), 3)
    keep = e[:, 0] != e[:, 1]
    e, owner = e[keep], owner[keep]
    if e.size == 0:
        return np.zeros((0, 2), np.int64)
    _, edge_id = np.unique(e, axis=0, return_inverse=True)
    edge_id = edge_id.ravel()
    order = np.argsort(edge_id, kind="stable")
    edge_id, owner = edge_id[order], owner[order]
    bounds = np.flatnonzero(np.diff(edge_id)) + 1
    pairs = []
    for group in np.split(owner, bounds):
        group = np.unique(group)
        if len(group) == 2:
            pairs.append(group[None])
        elif len(group) > 2:
            a, b = np.triu_indices(len(group), 1)
            pairs.append(np.stack([group[a], group[b]], axis=1))
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64)


def _safe_mean(values: jnp.ndarray, count: int) -> jnp.ndarray:
    """Mean over the last axis of ``count`` entries; 0 when there are none."""
    if count == 0:
        return jnp.zeros(values.shape[:-1], jnp.float32)
    return jnp.sum(values, axis=-1) / count


# ---------------------------------------------------------------------------------------------------------------
# Mesh regularisers
# ---------------------------------------------------------------------------------------------------------------


def laplacian_smoothing(vertices, faces) -> jnp.ndarray:
    """Uniform Laplacian smoothing: ``mean_i || v_i - mean_{j in N(i)} v_j ||^2``.

    ``N(i)`` are the vertices joined to ``i`` by an edge of some face. Vertices used by no face (degree 0) are
    left out of the mean. Zero for a vertex at its neighbours' centroid, e.g. the interior of a flat regular
    grid; invariant to translations; quadratic in scale.

    Args:
      vertices: float ``[..., N, 3]`` (cast to float32).
      faces: int ``[F, 3]``, concrete (see the module docstring).
    Returns:
      float32 ``[...]``.
    """
    fn = "laplacian_smoothing"
    vertices, faces = _mesh_inputs(fn, vertices, faces)
    n = vertices.shape[-2]
    index, weight = _neighbour_table(faces, n)
    has = weight.sum(axis=1) > 0
    centroid = jnp.einsum("...nkc,nk->...nc", vertices[..., index, :], weight)
    sq = jnp.sum((vertices - centroid) ** 2, axis=-1)  # [..., N]
    return _safe_mean(sq[..., np.flatnonzero(has)], int(has.sum()))


def edge_length(vertices, faces, target=0.0) -> jnp.ndarray:
    """Mean over the mesh's unique edges of ``(length - target)^2``.

    With ``target = 0`` (the default) this is the mean squared edge length, computed without a square root (so
    its gradient is exact even for zero-length edges); otherwise lengths use a safe norm (zero gradient at a
    zero-length edge, never NaN).

    Args:
      vertices: float ``[..., N, 3]``.
      faces: int ``[F, 3]``, concrete.
      target: float scalar or ``[...]`` (broadcasting with the vertices' leading dims), may be traced.
    Returns:
      float32 ``[...]``; 0 for a mesh with no edges.
    """
    fn = "edge_length"
    vertices, faces = _mesh_inputs(fn, vertices, faces)
    target = _checks.float_array(fn, "target", target, ())
    e = _unique_edges(faces)
    d = vertices[..., e[:, 1], :] - vertices[..., e[:, 0], :]  # [..., E, 3]
    sq = jnp.sum(d * d, axis=-1)
    length = safe_norm(d)[..., 0]
    dev = jnp.where(target[..., None] == 0, sq, (length - target[..., None]) ** 2)
    return _safe_mean(dev, len(e))


def normal_consistency(vertices, faces) -> jnp.ndarray:
    """Mean over pairs of faces sharing an edge of ``1 - cos(angle between their normals)``.

    Normals have the package's one orientation, ``(V1 - V0) x (V2 - V0)`` (docs/conventions.md, "Winding and
    normals"), scaled to exact unit length (a zero-area face has normal 0, i.e. cos 0, with finite gradients).
    The cosine is exact (no ``+1e-5`` in the denominator), so a flat sheet scores 0 whatever its face sizes.
    The faces must be wound consistently (as the built-in meshes are); the value does not depend on which of
    the two windings that is. 0 for a plane, 1 for a right-angle fold, 2 for faces folded flat onto each other.
    An edge used by more than two faces contributes every pair.

    Args:
      vertices: float ``[..., N, 3]``.
      faces: int ``[F, 3]``, concrete.
    Returns:
      float32 ``[...]``; 0 when no two faces share an edge.
    """
    fn = "normal_consistency"
    vertices, faces = _mesh_inputs(fn, vertices, faces)
    pairs = _adjacent_face_pairs(faces)
    normals = unit(area_normals(vertices[..., faces, :]))  # [..., F, 3]
    cos = jnp.sum(normals[..., pairs[:, 0], :] * normals[..., pairs[:, 1], :], axis=-1)
    return _safe_mean(1.0 - cos, len(pairs))


# ---------------------------------------------------------------------------------------------------------------
# Silhouettes
# ---------------------------------------------------------------------------------------------------------------


def _image_pair(fn: str, a, b) -> tuple[jnp.ndarray, jnp.ndarray]:
    a = _checks.float_array(fn, "a", a, ("H", "W"))
    b = _checks.float_array(fn, "b", b, ("H", "W"))
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(
            f"{fn}: a and b must have the same image size [..., H, W], got shapes {a.shape} and {b.shape}"
        )
    try:
        jnp.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{fn}: the leading dims of a {a.shape} and b {b.shape} do not broadcast") from None
    return a, b


def silhouette_iou(a, b, threshold: float | None = IOU_THRESHOLD) -> jnp.ndarray:
    """Intersection over union of two silhouettes ``[..., H, W]``, per image.

    Hard (default): a pixel is inside a silhouette when its value is ``> threshold`` (0.5: more than half
    covered, for the renderer's anti-aliased alpha, whose values are multiples of 1/4); IoU = |A and B| / |A or B|
    (as ``examples/_common.silhouette_iou``). This is the metric; it has no
    useful gradient. Soft (``threshold=None``): ``sum(a b) / sum(a + b - a b)`` on values in [0, 1],
    differentiable. Two empty silhouettes have IoU 1.

    Args:
      a, b: float ``[..., H, W]``; leading dims broadcast, H and W must match.
      threshold: Python float, or None for the soft IoU.
    Returns:
      float32 ``[...]`` in [0, 1].
    """
    fn = "silhouette_iou"
    a, b = _image_pair(fn, a, b)
    if threshold is not None:
        t = _checks.static_float(fn, "threshold", threshold)
        a = (a > t).astype(jnp.float32)
        b = (b > t).astype(jnp.float32)
    inter = jnp.sum(a * b, axis=(-2, -1))
    union = jnp.sum(a + b - a * b, axis=(-2, -1))
    empty = union <= 0
    return jnp.where(empty, 1.0, inter / jnp.where(empty, 1.0, union))


def silhouette_mse(a, b) -> jnp.ndarray:
    """Mean squared difference of two silhouettes (or any images) ``[..., H, W]`` per image: float32 ``[...]``."""
    a, b = _image_pair("silhouette_mse", a, b)
    return jnp.mean((a - b) ** 2, axis=(-2, -1))
