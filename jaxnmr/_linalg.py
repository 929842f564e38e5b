"""Small array helpers shared by the modules of jaxnmr (float32, any leading dims): norms, unit vectors, and the
row gather that the G-buffers and shading use to look up each pixel's face."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# NMR's normalisation constant: x / (||x|| + 1e-5), the Chainer form, kept for pixel parity
# (docs/conventions.md, "Eps values").
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


def gather_rows(values: jax.Array, index: jax.Array) -> jax.Array:
    """Rows of ``values [..., F, K]`` gathered at ``index [..., H, W]`` (clamped into range) -> ``[..., H, W, K]``
    (pixels' faces, or faces' vertices).

    Leading dims broadcast; the gradient scatters back to ``values``.
    """
    batch = jnp.broadcast_shapes(values.shape[:-2], index.shape[:-2])
    H, W = index.shape[-2:]
    F, K = values.shape[-2:]
    values = jnp.broadcast_to(values, batch + (F, K))
    index = jnp.clip(jnp.broadcast_to(index, batch + (H, W)), 0, max(F - 1, 0))
    if F == 0:
        return jnp.zeros(batch + (H, W, K), values.dtype)
    out = jnp.take_along_axis(values, index.reshape(batch + (H * W, 1)), axis=-2)
    return out.reshape(batch + (H, W, K))


def area_normals(face_vertices: jax.Array) -> jax.Array:
    """``(V1 - V0) x (V2 - V0)`` of ``face_vertices [..., F, 3, 3]`` -> ``[..., F, 3]``: the package's one face
    orientation (docs/conventions.md, "Winding and normals"), outward for faces wound counter-clockwise seen
    from outside; its length is twice the face's area. Normalise with :func:`unit` or :func:`normalize`."""
    v0, v1, v2 = face_vertices[..., 0, :], face_vertices[..., 1, :], face_vertices[..., 2, :]
    return jnp.cross(v1 - v0, v2 - v0)
