"""``shard_map``'s varying-manual-axes types for the custom primitives (docs/scale.md shows them in use).

Inside ``jax.shard_map`` with its default checks, every value carries the set of mesh axes along which it may
differ between shards ("varying"). JAX derives that set for its own operations; the rasterizer's ``ffi_call``,
its custom VJP and the reference's ``lax.scan`` need it stated:

- an ``ffi_call`` requires all its operands to have the same set, and its results carry none: operands are
  cast to the union of the sets (:func:`to_varying`) and the results are given that union;
- a custom VJP's cotangent must have exactly its primal's set: axes the primal does not vary over are summed
  out, as JAX's own transpose of the implicit cast does (:func:`like`).

Outside ``shard_map`` (or with ``check_vma=False``) every set is empty and these functions return their input.
"""

from __future__ import annotations

from typing import Iterable

import jax

__all__ = ["varying_axes", "to_varying", "like"]


def _axes_of(x) -> frozenset:
    if x is None:
        return frozenset()
    aval = jax.typeof(x)
    vma = getattr(aval, "vma", None)  # jax 0.7 - 0.9
    if vma is None:
        mat = getattr(aval, "mat", None)  # jax >= 0.10
        vma = getattr(mat, "varying", None)
    return frozenset(vma or ())


def varying_axes(*xs) -> frozenset:
    """Union of the varying manual axes of the arrays ``xs`` (None entries are skipped)."""
    axes = frozenset()
    for x in xs:
        axes |= _axes_of(x)
    return axes


def _cast_to_varying(x, axes: tuple):
    pcast = getattr(jax.lax, "pcast", None)
    if pcast is not None:
        return pcast(x, axes, to="varying")
    return jax.lax.pvary(x, axes)  # pragma: no cover - jax < 0.8


def to_varying(x, axes: Iterable):
    """``x`` marked as varying over ``axes`` (those it does not vary over already); None stays None."""
    if x is None:
        return None
    missing = tuple(sorted(frozenset(axes) - _axes_of(x)))
    return _cast_to_varying(x, missing) if missing else x


def like(cotangent, primal):
    """``cotangent`` with exactly ``primal``'s varying axes: summed over the extra ones, cast for missing ones."""
    if cotangent is None:
        return None
    own, want = _axes_of(cotangent), _axes_of(primal)
    extra = tuple(sorted(own - want))
    if extra:
        cotangent = jax.lax.psum(cotangent, extra)
    return to_varying(cotangent, want)
