"""The test oracle: a slow, obviously correct pure-``jnp`` rasterizer.

It evaluates every face at every pixel (dense, pixels x faces, chunked over faces to bound memory) exactly as
NMR_SPEC §4 describes, with the same float32 operations in the same order as the kernels' ``raster.h``, so the
kernels can be compared with it on random scenes: face indices exactly (except exact depth ties), values to
float32 rounding. It is also the fallback on back ends that have no compiled kernel.

Everything here works in the rasterizer's internal layout: images ``[..., S, S]`` with row 0 at the bottom
(NDC y = -1), before the flip and anti-aliasing done by :mod:`jaxnmr.rasterize`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr.ffi import ForwardMaps

__all__ = ["rasterize_forward"]

_F32 = jnp.float32


def _r(x: jax.Array) -> jax.Array:
    """Rounds ``x`` to float32 here: XLA may not fuse it into a following add (an FMA) or reassociate it.

    XLA's CPU compiler contracts ``a * b + c`` into fused multiply-adds and folds ``(a + 1) - 2`` into
    ``a - 1``; the kernels do neither, so the oracle marks each product that feeds a sum.
    """
    return jax.lax.optimization_barrier(x)


def _div(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` as IEEE division: XLA turns a division by a broadcast value into a multiplication by its
    reciprocal, which rounds differently, unless the divisor is materialised at full shape."""
    shape = jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b))
    return jnp.broadcast_to(a, shape) / _r(jnp.broadcast_to(b, shape))
# Dense evaluation works on [B, chunk, S, S] blocks; this bounds their element count.
_BLOCK_ELEMENTS = 1 << 22


def _pixel_center(i: jax.Array, S: int) -> jax.Array:
    """NDC coordinate of the centres of internal columns/rows ``i`` (int32) at resolution S."""
    return _div((2 * i + 1 - S).astype(_F32), _F32(S))


def _to_pixel(x: jax.Array, S: int) -> jax.Array:
    """Continuous pixel coordinate u = (X S + S - 1) / 2 of NDC coordinate x."""
    return _F32(0.5) * (_r(_r(x * _F32(S)) + _F32(S)) - _F32(1.0))


def _clamp01(w: jax.Array) -> jax.Array:
    """min(max(w, 0), 1) with C's fmax/fmin semantics: a NaN becomes 0."""
    w = jnp.where(w > 0, w, _F32(0.0))
    return jnp.where(w < 1, w, _F32(1.0))


def _face_terms(faces: jax.Array, S: int):
    """Per-face quantities, ``faces [..., F, 3, 3]`` -> (drawable [..., F] bool, inv [..., F, 3, 3])."""
    X, Y = faces[..., 0], faces[..., 1]  # [..., F, 3]
    finite = jnp.all(jnp.isfinite(faces), axis=(-2, -1))
    back = (Y[..., 2] - Y[..., 0]) * (X[..., 1] - X[..., 0]) < (Y[..., 1] - Y[..., 0]) * (X[..., 2] - X[..., 0])
    u, v = _to_pixel(X, S), _to_pixel(Y, S)
    u0, u1, u2 = u[..., 0], u[..., 1], u[..., 2]
    v0, v1, v2 = v[..., 0], v[..., 1], v[..., 2]
    rows = [
        [v1 - v2, u2 - u1, _r(u1 * v2) - _r(u2 * v1)],
        [v2 - v0, u0 - u2, _r(u2 * v0) - _r(u0 * v2)],
        [v0 - v1, u1 - u0, _r(u0 * v1) - _r(u1 * v0)],
    ]
    det = _r(_r(u2 * (v0 - v1)) + _r(u0 * (v1 - v2))) + _r(u1 * (v2 - v0))
    inv = _div(jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2), det[..., None, None])
    return finite & ~back, inv


def _inside(faces: jax.Array, xp: jax.Array, yp: jax.Array) -> jax.Array:
    """Inclusive inside test; ``faces [B, C, 3, 3]``, ``xp [S]`` (columns), ``yp [S]`` (rows) -> [B, C, S, S]."""
    X = faces[..., 0][..., None, None, :]  # [B, C, 1, 1, 3]
    Y = faces[..., 1][..., None, None, :]
    x = xp[None, :]  # [1, S] (row, col)
    y = yp[:, None]  # [S, 1]
    inside = jnp.ones(jnp.broadcast_shapes(X.shape[:-1], x.shape, y.shape), bool)
    for a, b in ((0, 1), (1, 2), (2, 0)):
        outside = (y - Y[..., a]) * (X[..., b] - X[..., a]) < (x - X[..., a]) * (Y[..., b] - Y[..., a])
        inside = inside & ~outside
    return inside


def _weights(inv: jax.Array, S: int) -> jax.Array:
    """Clamped, renormalised barycentrics of every pixel: ``inv [B, C, 3, 3]`` -> ``[B, C, S, S, 3]``."""
    idx = jnp.arange(S, dtype=jnp.int32).astype(_F32)
    xc = idx[None, :]
    yr = idx[:, None]
    ws = []
    for k in range(3):
        a = inv[..., k, 0][..., None, None]
        b = inv[..., k, 1][..., None, None]
        c = inv[..., k, 2][..., None, None]
        ws.append(_clamp01(_r(_r(a * xc) + _r(b * yr)) + c))
    total = ws[0] + ws[1] + ws[2]
    return _r(jnp.stack([_div(w, total) for w in ws], axis=-1))  # no (a / b) / c -> a / (b c) rewrite


def _visibility_chunk(carry, chunk, *, S, near, far):
    """Folds one chunk of faces (in index order) into the running z-buffer."""
    best_z, best_f, best_w = carry
    faces, drawable, inv, index = chunk  # [B, C, 3, 3], [B, C], [B, C, 3, 3], [C]
    pix = jnp.arange(S, dtype=jnp.int32)
    centers = _pixel_center(pix, S)
    inside = _inside(faces, centers, centers)  # [B, C, S, S]
    w = _weights(inv, S)  # [B, C, S, S, 3]
    Z = faces[..., 2][..., None, None, :]  # [B, C, 1, 1, 3]
    z = _div(_F32(1.0), _div(w[..., 0], Z[..., 0]) + _div(w[..., 1], Z[..., 1]) + _div(w[..., 2], Z[..., 2]))
    ok = inside & drawable[..., None, None] & (z > near) & (z < far)
    z = jnp.where(ok, z, jnp.inf)
    pick = jnp.argmin(z, axis=1)  # first (lowest index) of equal depths within the chunk
    z_pick = jnp.take_along_axis(z, pick[:, None], axis=1)[:, 0]
    w_pick = jnp.take_along_axis(w, pick[:, None, ..., None], axis=1)[:, 0]
    better = z_pick < best_z  # strict: an earlier chunk keeps ties
    best_z = jnp.where(better, z_pick, best_z)
    best_f = jnp.where(better, index[pick], best_f)
    best_w = jnp.where(better[..., None], w_pick, best_w)
    return (best_z, best_f, best_w), None


def _sample(faces, textures, face_index, weights, depth, *, eps):
    """Trilinear texture sampling of every pixel (NMR_SPEC §4.5); ``textures [B, F, T, T, T, 3]``."""
    B, F, T = textures.shape[0], textures.shape[1], textures.shape[2]
    f = jnp.maximum(face_index, 0)  # [B, S, S]
    Z = jnp.take_along_axis(faces[..., 2], f.reshape(B, -1, 1), axis=1).reshape(f.shape + (3,))
    hi = _F32(T - 1) - _F32(eps)
    t = (weights * _F32(T - 1)) * _div(depth[..., None], Z)
    t = jnp.where(t > 0, t, _F32(0.0))
    t = jnp.where(t < hi, t, hi)
    i0 = t.astype(jnp.int32)
    frac = t - i0.astype(_F32)
    cubes = textures.reshape(B, F * T * T * T, 3)
    rgb = jnp.zeros(f.shape + (3,), _F32)
    for pn in range(8):
        bits = [(pn >> k) & 1 for k in range(3)]
        wt = _F32(1.0)
        idx = jnp.zeros_like(f)
        for k in range(3):
            wt = wt * (frac[..., k] if bits[k] else _F32(1.0) - frac[..., k])
            idx = idx * T + i0[..., k] + bits[k]
        texel = jnp.take_along_axis(cubes, (f * T**3 + idx).reshape(B, -1, 1), axis=1).reshape(f.shape + (3,))
        rgb = rgb + _r(wt[..., None] * texel)
    return rgb


def rasterize_forward(
    faces: jax.Array,
    textures: jax.Array | None,
    background: jax.Array,
    *,
    image_size: int,
    near: float,
    far: float,
    eps: float,
) -> ForwardMaps:
    """Dense reference of the forward kernel; same arguments and outputs as :func:`jaxnmr.ffi.rasterize_forward`.

    Args:
      faces: float32 ``[..., F, 3, 3]`` in NDC. textures: float32 ``[..., F, T, T, T, 3]`` or None.
      background: float32 ``[..., 3]``. image_size: internal resolution S. near, far, eps: as the kernel.

    Returns:
      :class:`jaxnmr.ffi.ForwardMaps` with leading dims = the broadcast of the inputs' leading dims.
    """
    S = int(image_size)
    faces = jnp.asarray(faces, _F32)
    background = jnp.asarray(background, _F32)
    batch_shapes = [faces.shape[:-3], background.shape[:-1]]
    if textures is not None:
        textures = jnp.asarray(textures, _F32)
        batch_shapes.append(textures.shape[:-5])
    batch = jnp.broadcast_shapes(*batch_shapes)
    F = faces.shape[-3]
    B = int(np.prod(batch, dtype=np.int64))
    faces_b = jnp.broadcast_to(faces, batch + faces.shape[-3:]).reshape(B, F, 3, 3)

    drawable, inv = _face_terms(faces_b, S)
    chunk = max(1, min(F, _BLOCK_ELEMENTS // max(1, B * S * S)))
    n_chunks = -(-F // chunk) if F else 0
    pad = n_chunks * chunk - F
    nan_faces = jnp.full((B, pad, 3, 3), jnp.nan, _F32)
    faces_p = jnp.concatenate([faces_b, nan_faces], axis=1)
    drawable_p = jnp.concatenate([drawable, jnp.zeros((B, pad), bool)], axis=1)
    inv_p = jnp.concatenate([inv, jnp.zeros((B, pad, 3, 3), _F32)], axis=1)

    def chunks(x):
        return jnp.moveaxis(x.reshape((B, n_chunks, chunk) + x.shape[2:]), 1, 0)

    init = (
        jnp.full((B, S, S), _F32(far)),
        jnp.full((B, S, S), -1, jnp.int32),
        jnp.zeros((B, S, S, 3), _F32),
    )
    if n_chunks:
        index = jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(n_chunks, chunk)
        step = lambda c, x: _visibility_chunk(c, x, S=S, near=_F32(near), far=_F32(far))
        (depth, face_index, weights), _ = jax.lax.scan(
            step, init, (chunks(faces_p), chunks(drawable_p), chunks(inv_p), index)
        )
    else:
        depth, face_index, weights = init

    rgb = None
    if textures is not None:
        T = textures.shape[-2]
        tex_b = jnp.broadcast_to(textures, batch + textures.shape[-5:]).reshape(B, F, T, T, T, 3)
        bg_b = jnp.broadcast_to(background, batch + (3,)).reshape(B, 1, 1, 3)
        if F:
            sampled = _sample(faces_b, tex_b, face_index, weights, depth, eps=eps)
        else:
            sampled = jnp.zeros((B, S, S, 3), _F32)
        rgb = jnp.where((face_index >= 0)[..., None], sampled, bg_b)
        rgb = rgb.reshape(batch + (S, S, 3))
    out = batch + (S, S)
    return ForwardMaps(face_index.reshape(out), weights.reshape(out + (3,)), depth.reshape(out), rgb)
