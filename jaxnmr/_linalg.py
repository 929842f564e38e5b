"""Small vector helpers shared by cameras, lighting and mesh (float32, any leading dims)."""

from __future__ import annotations

import jax.numpy as jnp

# NMR's normalisation constant: x / (||x|| + 1e-5) (DESIGN §3: the Chainer form, kept for pixel parity).
NORMALIZE_EPS = 1e-5


def safe_norm(x: jnp.ndarray) -> jnp.ndarray:
    """||x|| over the last axis, ``[..., 3] -> [..., 1]``, with a zero (not NaN) gradient at x = 0."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def normalize(x: jnp.ndarray) -> jnp.ndarray:
    """NMR's regularised normalisation ``x / (||x|| + 1e-5)`` over the last axis; 0 stays 0 (no NaN)."""
    return x / (safe_norm(x) + NORMALIZE_EPS)


def unit(x: jnp.ndarray) -> jnp.ndarray:
    """Exact unit vectors over the last axis, ``x / ||x||``; 0 stays 0 (no NaN, also in the gradient)."""
    n = safe_norm(x)
    return x / jnp.where(n > 0, n, 1.0)
