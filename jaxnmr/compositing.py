"""Compositing point fragments into images, in plain JAX (docs/points.md, "Compositing").

The fragments of :func:`jaxnmr.rasterize_points` say which points cover each pixel, nearest first, and how far
each is from the pixel centre. :func:`point_weights` turns the distances into weights that fall from 1 at a
point's centre to 0 at its rim; :func:`gather_points` fetches per-point features for every slot; the two
compositors blend them front to back. Everything is differentiable by JAX itself: the weights carry gradients to
the point positions (through ``dist2``, the primitive's VJP) and to the radii, the features to the features.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxnmr import _checks, _vma
from jaxnmr.ffi import PointFragments

__all__ = ["point_weights", "gather_points", "alpha_composite", "weighted_sum_composite", "coverage", "COMPOSITORS"]


def _slot_shape_check(fn: str, fragments) -> PointFragments:
    if not isinstance(fragments, PointFragments):
        raise TypeError(f"{fn}: fragments must be the jaxnmr.PointFragments of rasterize_points, got "
                        f"{type(fragments).__name__}")
    return fragments


def gather_points(values, index) -> jax.Array:
    """Per-point values at each slot: ``values[..., index, :]``, 0 in empty slots (index -1).

    Args:
      values: float ``[..., P, C]`` per-point features (colours, normals, radii ``[..., P, 1]``, ...).
      index: int ``[..., H, W, K]``, e.g. ``fragments.index``.
    Returns:
      float32 ``[..., H, W, K, C]``; leading dims are the broadcast of the two's. The gradient to ``values`` is
      the scatter-add of the slots' cotangents.
    """
    fn = "gather_points"
    values = _checks.float_array(fn, "values", values, ("P", "C"))
    index = _checks.index_array(fn, "index", index, ("H", "W", "K"))
    batch = _checks.broadcast_batch(fn, values=values.shape[:-2], index=index.shape[:-3])
    P, C = values.shape[-2:]
    H, W, K = index.shape[-3:]
    flat = jnp.broadcast_to(index, batch + (H, W, K)).reshape(batch + (H * W * K, 1))
    filled = flat >= 0
    taken = jnp.take_along_axis(jnp.broadcast_to(values, batch + (P, C)), jnp.where(filled, flat, 0), axis=-2,
                                mode="clip")
    return jnp.where(filled, taken, 0.0).reshape(batch + (H, W, K, C))


def point_weights(fragments: PointFragments, radius) -> jax.Array:
    """Each slot's weight ``max(0, 1 - dist2 / radius²)`` (docs/points.md, "Compositing"), 0 in empty slots.

    Args:
      fragments: :class:`jaxnmr.PointFragments` with ``[..., H, W, K]`` arrays.
      radius: float scalar, ``[..., 1]`` or ``[..., P]``, the radius the fragments were rasterized with (NDC
        units); per point, each slot's point's own.
    Returns:
      float32 ``[..., H, W, K]`` in [0, 1]; differentiable in ``dist2`` and ``radius``.
    """
    fn = "point_weights"
    fragments = _slot_shape_check(fn, fragments)
    radius = _checks.float_values(fn, "radius", radius, ())
    radius = radius.reshape(1) if radius.ndim == 0 else radius
    # Filled slots have dist2 >= 0 and empty ones -1 (docs/points.md, "Fragments"): with one radius for all
    # points, the weights read dist2 alone, not the index too.
    filled = fragments.dist2 >= 0.0
    if radius.shape[-1] == 1:
        r = radius[..., None, None, :]  # [..., 1, 1, 1] against [..., H, W, K]
    else:
        r = gather_points(radius[..., None], fragments.index)[..., 0]  # 0 in empty slots
    r2 = r * r
    r2 = jnp.where(r2 > 0, r2, 1.0)  # zero radii (empty slots, points not drawn): no division by 0 or NaN gradient
    return jnp.where(filled, jnp.maximum(0.0, 1.0 - fragments.dist2 / r2), 0.0)


def _at_least_one_slot(fn: str, weights) -> None:
    if weights.shape[-1] == 0:
        raise ValueError(f"{fn}: weights [..., H, W, K] need at least one slot (K >= 1), got shape {weights.shape}")


def _check_slots(fn: str, weights, values) -> tuple[jax.Array, jax.Array]:
    """Both as float32, broadcast to their common batch: ``[B..., H, W, K]`` and ``[B..., H, W, K, C]``."""
    weights = _checks.float_array(fn, "weights", weights, ("H", "W", "K"))
    values = _checks.float_array(fn, "values", values, ("H", "W", "K", "C"))
    _at_least_one_slot(fn, weights)
    if values.shape[-4:-1] != weights.shape[-3:]:
        raise ValueError(f"{fn}: values [..., H, W, K, C] must have the weights' H, W, K {weights.shape[-3:]}, got "
                         f"shape {values.shape}")
    batch = _checks.broadcast_batch(fn, weights=weights.shape[:-3], values=values.shape[:-4])
    return jnp.broadcast_to(weights, batch + weights.shape[-3:]), jnp.broadcast_to(values, batch + values.shape[-4:])


def _light_left(weights: jax.Array) -> list[jax.Array | None]:
    """``L_k = Π_{j<k} (1 - w_j)`` ``[..., H, W]`` for k = 0..K, the light the slots in front of slot k leave (None
    for ``L_0 = 1``); ``L_K`` is the pixel's transmittance. A loop over the slots, which XLA fuses."""
    left = [None]
    for k in range(weights.shape[-1]):
        factor = 1.0 - weights[..., k]
        left.append(factor if left[-1] is None else left[-1] * factor)
    return left


def _blend_terms(weights: jax.Array, left: list[jax.Array | None] | None) -> list[jax.Array]:
    """Each slot's coefficient ``c_k`` ``[..., H, W]``: ``w_k L_k`` with ``left`` :func:`_light_left`'s ``L``
    (alpha compositing), or ``w_k`` with ``left`` None (weighted sum)."""
    K = weights.shape[-1]
    if left is None:
        return [weights[..., k] for k in range(K)]
    return [weights[..., k] if left[k] is None else weights[..., k] * left[k] for k in range(K)]


def _dot_channels(values: jax.Array, g: jax.Array) -> jax.Array:
    """``Σ_c values[..., c] g[..., c]`` written out (C is small): XLA fuses it, where a reduction would not be."""
    return sum(values[..., c] * g[..., c] for c in range(values.shape[-1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _blend(weights: jax.Array, values: jax.Array, alpha_weighted: bool) -> jax.Array:
    """``Σ_k c_k v_k`` ``[..., H, W, C]`` with :func:`_blend_terms`'s ``c_k``. A loop over the K slots (static,
    small) of per-pixel planes, which XLA fuses into one pass (a cumulative product along K, or sums along K
    channel by channel, cost 10x more forward and no less backward on the CPU).

    Its gradient is written out (:func:`_blend_bwd`): differentiated by JAX, the sums over the channels and the
    products of the slots in front became separate passes over ``[..., H, W, K, C]`` copies of the values. Like
    every custom VJP here, it gives each cotangent its primal's ``shard_map`` varying axes (:mod:`jaxnmr._vma`)."""
    terms = _blend_terms(weights, _light_left(weights) if alpha_weighted else None)
    out = terms[0][..., None] * values[..., 0, :]
    for k in range(1, len(terms)):
        out = out + terms[k][..., None] * values[..., k, :]
    return out


def _blend_fwd(weights, values, alpha_weighted):
    return _blend(weights, values, alpha_weighted), (weights, values)


def _blend_bwd(alpha_weighted, residuals, g):
    """With ``g_k = <g, v_k>``: the values get ``c_k g``; a weight gets ``g_k`` (weighted sum) or, for alpha,
    ``L_k (g_k - A_{k+1})`` with ``L_k = Π_{j<k} (1 - w_j)`` and the light the slots behind return,
    ``A_k = g_k w_k + (1 - w_k) A_{k+1}`` (``A_K = 0``): one pass back over the slots, no division."""
    weights, values = residuals
    K = weights.shape[-1]
    lefts = _light_left(weights) if alpha_weighted else None
    terms = _blend_terms(weights, lefts)
    g_terms = [_dot_channels(values[..., k, :], g) for k in range(K)]
    g_values = jnp.stack([c[..., None] * g for c in terms], axis=-2)
    if not alpha_weighted:
        return _vma.like(jnp.stack(g_terms, axis=-1), weights), _vma.like(g_values, values)
    g_weights, behind = [None] * K, None  # behind: A_{k+1} (None: 0)
    for k in reversed(range(K)):
        w = weights[..., k]
        own = g_terms[k] if behind is None else g_terms[k] - behind
        g_weights[k] = own if lefts[k] is None else lefts[k] * own
        behind = g_terms[k] * w if behind is None else g_terms[k] * w + (1.0 - w) * behind
    return _vma.like(jnp.stack(g_weights, axis=-1), weights), _vma.like(g_values, values)


_blend.defvjp(_blend_fwd, _blend_bwd)


def _total_weight(weights: jax.Array) -> jax.Array:
    """``Σ_k w_k`` ``[..., H, W]`` as a loop (fused; see :func:`_dot_channels`)."""
    return sum(weights[..., k] for k in range(weights.shape[-1]))


@jax.custom_vjp
def _transmittance(weights: jax.Array) -> jax.Array:
    """``Π_k (1 - w_k)`` ``[..., H, W]`` of ``weights [..., H, W, K]`` (K >= 1): :func:`_light_left`'s ``L_K``."""
    return _light_left(weights)[-1]


def _transmittance_fwd(weights):
    return _transmittance(weights), weights


def _transmittance_bwd(weights, g):
    """``d/dw_k = -Π_{j != k} (1 - w_j)``: the product of the factors that are not 0, divided by the slot's own
    where it is not 0, and exact where some are 0 (opaque slots, w = 1): there only an opaque slot has a
    gradient, and only if it is the pixel's one. Per-pixel products by loops over the slots, then one elementwise
    pass over ``[..., K]`` (XLA fuses both; a gradient assembled slot by slot, stacked along K, is compiled to a
    per-element choice between K expressions, several times slower on the CPU)."""
    left = 1.0 - weights
    zero = left == 0.0
    rest = jnp.ones(weights.shape[:-1], weights.dtype)  # Π of the factors that are not 0
    zeros = jnp.zeros(weights.shape[:-1], jnp.int32)  # how many are 0
    for k in range(weights.shape[-1]):
        rest = rest * jnp.where(zero[..., k], 1.0, left[..., k])
        zeros = zeros + zero[..., k]
    if_zero = jnp.where(zeros == 1, rest, 0.0)[..., None]  # others' product for a slot whose factor is 0
    if_not = jnp.where(zeros == 0, rest, 0.0)[..., None] / jnp.where(zero, 1.0, left)
    return (_vma.like(-g[..., None] * jnp.where(zero, if_zero, if_not), weights),)


_transmittance.defvjp(_transmittance_fwd, _transmittance_bwd)


def coverage(weights) -> jax.Array:
    """``alpha = 1 - Π_k (1 - w_k)`` ``[..., H, W]`` of weights ``[..., H, W, K]`` in [0, 1]: the alpha of both
    compositors (docs/points.md, "Compositing").

    The product is a loop over the slots, and its gradient ``Π_{j != k} (1 - w_j)`` is written out
    (:func:`_transmittance`): linear in K, and exact where a weight is 1.
    """
    weights = _checks.float_array("coverage", "weights", weights, ("H", "W", "K"))
    _at_least_one_slot("coverage", weights)
    return 1.0 - _transmittance(weights)


def alpha_composite(weights, values) -> tuple[jax.Array, jax.Array]:
    """Front-to-back alpha compositing: ``out = Σ_k w_k v_k Π_{j<k} (1 - w_j)``, ``alpha = 1 - Π_k (1 - w_k)``.

    Args:
      weights: float ``[..., H, W, K]`` in [0, 1], slot 0 nearest (e.g. :func:`point_weights`).
      values: float ``[..., H, W, K, C]`` (e.g. :func:`gather_points` of per-point features).
    Returns:
      ``(out [..., H, W, C], alpha [..., H, W])`` float32, over a zero background (alpha: :func:`coverage`).
    """
    weights, values = _check_slots("alpha_composite", weights, values)
    return _blend(weights, values, True), coverage(weights)


def weighted_sum_composite(weights, values) -> tuple[jax.Array, jax.Array]:
    """Normalised weighted sum: ``out = Σ_k w_k v_k / Σ_k w_k`` (0 where no slot has weight), and the alpha of
    :func:`alpha_composite`, ``1 - Π_k (1 - w_k)`` (:func:`coverage`).

    Args and returns: as :func:`alpha_composite`.
    """
    weights, values = _check_slots("weighted_sum_composite", weights, values)
    out, total = _blend(weights, values, False), _total_weight(weights)
    return out / jnp.where(total > 0, total, 1.0)[..., None], coverage(weights)


# name -> compositor, as Renderer.render_points(compositor=...) takes them
COMPOSITORS = {"alpha": alpha_composite, "weighted_sum": weighted_sum_composite}
