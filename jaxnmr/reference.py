"""The test oracle: a slow, obviously correct pure-``jnp`` rasterizer.

It evaluates every face at every pixel (dense, pixels x faces, chunked over faces to bound memory) as
docs/rasterizer.md, "Per-face setup" and "Visibility", describe, with the same float32 operations in the same
order as the kernels' ``raster.h``, so the
kernels can be compared with it on random scenes: face indices exactly (except exact depth ties), values to
float32 rounding. It is also the fallback on back ends that have no compiled kernel.

Everything here works in the rasterizer's internal layout: images ``[..., S, S]`` with row 0 at the bottom
(NDC y = -1), before the flip and anti-aliasing done by :mod:`jaxnmr.rasterizer`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _vma
from jaxnmr.ffi import ForwardMaps, PointFragments

__all__ = ["rasterize_forward", "rasterize_backward", "rasterize_points_forward", "rasterize_points_backward"]

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


def pixel_ranges(face_vertices: jax.Array, S: int) -> jax.Array:
    """Per-face pixel range ``[..., F, 4]`` float32 = (first col, last col, first row, last row), unclamped:
    the vertices' extent in pixel coordinates widened by one pixel (raster.h ``pixel_range``). A pixel outside
    it is never covered, whatever the float inside test says (it can overflow for huge coordinates)."""
    u, v = _to_pixel(face_vertices[..., 0], S), _to_pixel(face_vertices[..., 1], S)
    return jnp.stack([jnp.ceil(u.min(-1)) - 1, jnp.floor(u.max(-1)) + 1,
                      jnp.ceil(v.min(-1)) - 1, jnp.floor(v.max(-1)) + 1], axis=-1)


def _face_terms(face_vertices: jax.Array, S: int):
    """Per-face quantities, ``face_vertices [..., F, 3, 3]`` -> (drawable [..., F] bool, inv [..., F, 3, 3])."""
    X, Y = face_vertices[..., 0], face_vertices[..., 1]  # [..., F, 3]
    # drawable: finite, every vertex in front of the camera plane (z > 0), front-facing (raster.h)
    finite = jnp.all(jnp.isfinite(face_vertices), axis=(-2, -1)) & jnp.all(face_vertices[..., 2] > 0, axis=-1)
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


def _inside(face_vertices: jax.Array, xp: jax.Array, yp: jax.Array) -> jax.Array:
    """Inclusive inside test; ``face_vertices [B, C, 3, 3]``, ``xp [S]`` (columns), ``yp [S]`` (rows)
    -> [B, C, S, S]."""
    X = face_vertices[..., 0][..., None, None, :]  # [B, C, 1, 1, 3]
    Y = face_vertices[..., 1][..., None, None, :]
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
    face_vertices, drawable, inv, index = chunk  # [B, C, 3, 3], [B, C], [B, C, 3, 3], [C]
    pix = jnp.arange(S, dtype=jnp.int32)
    centers = _pixel_center(pix, S)
    inside = _inside(face_vertices, centers, centers)  # [B, C, S, S]
    rng = pixel_ranges(face_vertices, S)[..., None, None, :]  # [B, C, 1, 1, 4]
    pix_f = pix.astype(_F32)
    inside = (inside & (pix_f[None, :] >= rng[..., 0]) & (pix_f[None, :] <= rng[..., 1])
              & (pix_f[:, None] >= rng[..., 2]) & (pix_f[:, None] <= rng[..., 3]))
    w = _weights(inv, S)  # [B, C, S, S, 3]
    Z = face_vertices[..., 2][..., None, None, :]  # [B, C, 1, 1, 3]
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


def _corners(face_vertices, face_index, weights, depth, T: int, eps: float):
    """Trilinear corners of every pixel (docs/rasterizer.md, "Texture sampling"): flat texel indices
    [B, S, S, 8] (int32) into the pixel's face cube, and weights [B, S, S, 8]; ``face_vertices [B, F, 3, 3]``."""
    B = face_vertices.shape[0]
    f = jnp.maximum(face_index, 0)  # [B, S, S]
    Z = jnp.take_along_axis(face_vertices[..., 2], f.reshape(B, -1, 1), axis=1).reshape(f.shape + (3,))
    hi = _F32(T - 1) - _F32(eps)
    t = (weights * _F32(T - 1)) * _div(depth[..., None], Z)
    t = jnp.where(t > 0, t, _F32(0.0))
    t = jnp.where(t < hi, t, hi)
    i0 = t.astype(jnp.int32)
    frac = t - i0.astype(_F32)
    indices, weights_out = [], []
    for pn in range(8):
        bits = [(pn >> k) & 1 for k in range(3)]
        wt = _F32(1.0)
        idx = jnp.zeros_like(f)
        for k in range(3):
            wt = wt * (frac[..., k] if bits[k] else _F32(1.0) - frac[..., k])
            idx = idx * T + i0[..., k] + bits[k]
        indices.append(idx)
        weights_out.append(wt)
    return jnp.stack(indices, -1), jnp.stack(weights_out, -1)


def _sample(face_vertices, textures, face_index, weights, depth, *, eps):
    """Trilinear texture sampling of every pixel (docs/rasterizer.md, "Texture sampling");
    ``textures [B, F, T, T, T, 3]``."""
    B, F, T = textures.shape[0], textures.shape[1], textures.shape[2]
    f = jnp.maximum(face_index, 0)
    index, weight = _corners(face_vertices, face_index, weights, depth, T, eps)
    cubes = textures.reshape(B, F * T * T * T, 3)
    rgb = jnp.zeros(f.shape + (3,), _F32)
    for pn in range(8):
        flat = (f * T**3 + index[..., pn]).reshape(B, -1, 1)
        texel = jnp.take_along_axis(cubes, flat, axis=1).reshape(f.shape + (3,))
        rgb = rgb + _r(weight[..., pn, None] * texel)
    return rgb


def rasterize_forward(
    face_vertices: jax.Array,
    textures: jax.Array | None,
    background: jax.Array,
    *,
    image_size: int,
    near: float,
    far: float,
    eps: float,
    with_maps: bool = True,
) -> ForwardMaps:
    """Dense reference of the forward kernel; same arguments and outputs as :func:`jaxnmr.ffi.rasterize_forward`
    (it computes the weights and depth maps in any case, so ``with_maps`` is accepted and ignored).

    Args:
      face_vertices: float32 ``[..., F, 3, 3]`` in NDC. textures: float32 ``[..., F, T, T, T, 3]`` or None.
      background: float32 ``[..., 3]``. image_size: internal resolution S. near, far, eps: as the kernel.

    Returns:
      :class:`jaxnmr.ffi.ForwardMaps` with leading dims = the broadcast of the inputs' leading dims.
    """
    S = int(image_size)
    face_vertices = jnp.asarray(face_vertices, _F32)
    background = jnp.asarray(background, _F32)
    batch_shapes = [face_vertices.shape[:-3], background.shape[:-1]]
    if textures is not None:
        textures = jnp.asarray(textures, _F32)
        batch_shapes.append(textures.shape[:-5])
    batch = jnp.broadcast_shapes(*batch_shapes)
    F = face_vertices.shape[-3]
    B = int(np.prod(batch, dtype=np.int64))
    face_vertices_b = jnp.broadcast_to(face_vertices, batch + face_vertices.shape[-3:]).reshape(B, F, 3, 3)

    drawable, inv = _face_terms(face_vertices_b, S)
    chunk = max(1, min(F, _BLOCK_ELEMENTS // max(1, B * S * S)))
    n_chunks = -(-F // chunk) if F else 0
    pad = n_chunks * chunk - F
    nan_face_vertices = jnp.full((B, pad, 3, 3), jnp.nan, _F32)
    face_vertices_p = jnp.concatenate([face_vertices_b, nan_face_vertices], axis=1)
    drawable_p = jnp.concatenate([drawable, jnp.zeros((B, pad), bool)], axis=1)
    inv_p = jnp.concatenate([inv, jnp.zeros((B, pad, 3, 3), _F32)], axis=1)

    def chunks(x):
        return jnp.moveaxis(x.reshape((B, n_chunks, chunk) + x.shape[2:]), 1, 0)

    # The scan's carry takes the inputs' type under shard_map (varying over the axes they vary over).
    axes = _vma.varying_axes(face_vertices, textures, background)
    init = tuple(_vma.to_varying(x, axes) for x in (
        jnp.full((B, S, S), _F32(far)),
        jnp.full((B, S, S), -1, jnp.int32),
        jnp.zeros((B, S, S, 3), _F32),
    ))
    if n_chunks:
        index = jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(n_chunks, chunk)
        step = lambda c, x: _visibility_chunk(c, x, S=S, near=_F32(near), far=_F32(far))
        (depth, face_index, weights), _ = jax.lax.scan(
            step, init, (chunks(face_vertices_p), chunks(drawable_p), chunks(inv_p), index)
        )
    else:
        depth, face_index, weights = init

    rgb = None
    if textures is not None:
        T = textures.shape[-2]
        tex_b = jnp.broadcast_to(textures, batch + textures.shape[-5:]).reshape(B, F, T, T, T, 3)
        bg_b = jnp.broadcast_to(background, batch + (3,)).reshape(B, 1, 1, 3)
        if F:
            sampled = _sample(face_vertices_b, tex_b, face_index, weights, depth, eps=eps)
        else:
            sampled = jnp.zeros((B, S, S, 3), _F32)
        rgb = jnp.where((face_index >= 0)[..., None], sampled, bg_b)
        rgb = rgb.reshape(batch + (S, S, 3))
    out = batch + (S, S)
    return ForwardMaps(face_index.reshape(out), weights.reshape(out + (3,)), depth.reshape(out), rgb)


# ---------------------------------------------------------------------------------------------------------
# Backward (docs/rasterizer.md, "Approximate gradient", "Texture gradient" and "Depth gradient"), dense: every
# face's every edge, axis, scanline and position along it.


def _flatten_batch(x, batch, trailing: int):
    B = int(np.prod(batch, dtype=np.int64))
    return jnp.broadcast_to(x, batch + x.shape[x.ndim - trailing:]).reshape((B,) + x.shape[x.ndim - trailing:])


def _edge_gradient_one_face(f, face, fi, image, gimage, *, S, eps):
    """The approximate gradient (docs/rasterizer.md, "Approximate gradient") of one face: ``face [3, 3]`` NDC,
    ``fi [S, S]`` face index map, ``image`` and ``gimage`` [S, S, C] the forward images in use (alpha and/or
    rgb) and their cotangents. -> G [3, 3]."""
    u, v = _to_pixel(face[:, 0], S), _to_pixel(face[:, 1], S)
    X, Y = face[:, 0], face[:, 1]
    front = (jnp.all(jnp.isfinite(face)) & jnp.all(face[:, 2] > 0)
             & ~((Y[2] - Y[0]) * (X[1] - X[0]) < (Y[1] - Y[0]) * (X[2] - X[0])))
    s = jnp.arange(S, dtype=jnp.int32)[:, None].astype(_F32)  # [S, 1] scanline
    t = jnp.arange(S, dtype=jnp.int32)[None, :]  # [1, S] position along it
    G = jnp.zeros((3, 3), _F32)
    for edge in range(3):
        a, c, o = edge, (edge + 1) % 3, (edge + 2) % 3
        for axis in range(2):
            # scanline s and position t: axis 0 sweeps columns (pixel [t, s]); axis 1 sweeps rows (pixel [s, t])
            sp, tp = (u, v) if axis == 0 else (v, u)
            lines_fi = fi.T if axis == 0 else fi
            lines = jnp.swapaxes(image, 0, 1) if axis == 0 else image
            glines = jnp.swapaxes(gimage, 0, 1) if axis == 0 else gimage
            sa, ta, sc, tc, so, to = sp[a], tp[a], sp[c], tp[c], sp[o], tp[o]
            sigma = (-1 if axis == 0 else 1) * jnp.where(sa < sc, 1, -1)
            lo = jnp.ceil(jnp.minimum(sa, sc))
            hi = jnp.minimum(jnp.maximum(sa, sc), _F32(S - 1))
            s_begin = jnp.maximum(lo, 0.0)
            s_end = jnp.where(lo <= S - 1, jnp.trunc(jnp.maximum(hi, -1.0)), -1.0)
            on_scanline = (s >= s_begin) & (s <= s_end)  # [S, 1]
            tstar = _div(tc - ta, sc - sa) * (s - sa) + ta
            ok = on_scanline & (tstar >= -1.0) & (tstar <= S)
            t_in = jnp.where(sigma > 0, jnp.floor(tstar), jnp.ceil(tstar))
            t_in = jnp.where(ok, t_in, 0).astype(jnp.int32)
            t_out = t_in + sigma
            ok = ok & (t_in >= 0) & (t_in < S) & (t_out >= 0) & (t_out < S)
            t_in_c, t_out_c = jnp.clip(t_in, 0, S - 1), jnp.clip(t_out, 0, S - 1)
            i_in = jnp.take_along_axis(lines, t_in_c[..., None], axis=1)  # [S, 1, C]
            i_out = jnp.take_along_axis(lines, t_out_c[..., None], axis=1)
            fi_in = jnp.take_along_axis(lines_fi, t_in_c, axis=1)  # [S, 1]
            # (A) outward: from t_out to the border, where the edge is visible at t_in
            border = jnp.where(sigma > 0, S - 1, 0)
            in_a = ok & (fi_in == f) & (t >= jnp.minimum(t_out, border)) & (t <= jnp.maximum(t_out, border))
            delta_a = jnp.sum((lines - i_in) * glines, axis=-1)
            # (B) inward: from t_in to the far side of the triangle, on the face's own pixels
            between = (s - sa) * (s - so) < 0
            t2 = jnp.where(between, _div(to - ta, so - sa) * (s - sa) + ta, _div(tc - to, sc - so) * (s - so) + to)
            t2 = jnp.where(jnp.isnan(t2), t_in.astype(_F32), t2)
            t2 = jnp.minimum(jnp.maximum(t2, -1.0), _F32(S))
            t_lim = jnp.where(sigma > 0, jnp.ceil(t2), jnp.floor(t2)).astype(jnp.int32)
            from_b = jnp.maximum(jnp.minimum(t_in, t_lim), 0)
            to_b = jnp.minimum(jnp.maximum(t_in, t_lim), S - 1)
            in_b = ok & (t >= from_b) & (t <= to_b) & (lines_fi == f)
            delta_b = jnp.sum((lines - i_out) * glines, axis=-1)
            gap = t.astype(_F32) - tstar
            for vertex, num, den in ((a, sc - sa, sc - s), (c, sc - sa, s - sa)):
                d = _div(_div(num, den) * gap * _F32(2.0), _F32(S))
                d = jnp.where(d > 0, d + _F32(eps), d - _F32(eps))
                moved = den != 0
                for mask, delta in ((in_a, delta_a), (in_b, delta_b)):
                    use = mask & moved & (delta > 0)
                    G = G.at[vertex, 1 - axis].add(-jnp.sum(jnp.where(use, _div(delta, jnp.where(use, d, 1.0)), 0.0)))
    return jnp.where(front, G, 0.0)


def rasterize_backward(
    face_vertices, textures, maps: ForwardMaps, g_rgb, g_alpha, g_depth, *, image_size: int, eps: float,
    want_faces: bool = True, want_textures: bool = True,
):
    """Dense reference of the backward kernel; same arguments and outputs as
    :func:`jaxnmr.ffi.rasterize_backward` (gradients at the broadcast batch shape)."""
    S = int(image_size)
    face_vertices = jnp.asarray(face_vertices, _F32)
    parts = [face_vertices.shape[:-3], maps.face_index.shape[:-2]]
    for g, trailing in ((g_rgb, 3), (g_alpha, 2), (g_depth, 2)):
        if g is not None:
            parts.append(g.shape[: g.ndim - trailing])
    texture_grad = want_textures and textures is not None and g_rgb is not None
    if texture_grad:
        parts.append(textures.shape[:-5])
    batch = jnp.broadcast_shapes(*parts)
    B, F = int(np.prod(batch, dtype=np.int64)), face_vertices.shape[-3]
    fb = _flatten_batch(face_vertices, batch, 3)
    fi = _flatten_batch(maps.face_index, batch, 2)
    # The weights and depth maps exist only where the forward ran with_maps (a silhouette needs neither).
    w = _flatten_batch(maps.weights, batch, 3) if maps.weights is not None else None
    z = _flatten_batch(maps.depth, batch, 2) if maps.depth is not None else None

    g_faces = jnp.zeros((B, F, 3, 3), _F32)
    if want_faces and (g_rgb is not None or g_alpha is not None) and F:
        images, gimages = [], []
        if g_alpha is not None:
            images.append((fi >= 0).astype(_F32)[..., None])
            gimages.append(_flatten_batch(g_alpha, batch, 2)[..., None])
        if g_rgb is not None:
            images.append(_flatten_batch(maps.rgb, batch, 3))
            gimages.append(_flatten_batch(g_rgb, batch, 3))
        image, gimage = jnp.concatenate(images, -1), jnp.concatenate(gimages, -1)
        per_face = jax.vmap(
            lambda f, face, fi_b, im, gim: _edge_gradient_one_face(f, face, fi_b, im, gim, S=S, eps=eps),
            in_axes=(0, 0, None, None, None),
        )
        step = lambda args: per_face(jnp.arange(F, dtype=jnp.int32), *args)
        g_faces = jax.lax.map(step, (fb, fi, image, gimage))

    covered = fi >= 0
    f_idx = jnp.maximum(fi, 0)
    b_idx = jnp.broadcast_to(jnp.arange(B)[:, None, None], fi.shape)
    if want_faces and g_depth is not None and F:
        gd = jnp.where(covered, _flatten_batch(g_depth, batch, 2), 0.0)
        face = fb[b_idx, f_idx]  # [B, S, S, 3, 3]
        _, inv = _face_terms(face, S)
        Z = face[..., 2]  # [B, S, S, 3]
        z2 = z * z
        a_uv = [jnp.sum(_div(-inv[..., :, d], Z), axis=-1) for d in range(2)]
        grads = []
        for k in range(3):
            gz = _div(gd * w[..., k] * z2, Z[..., k] * Z[..., k])
            gxy = [-gd * w[..., k] * z2 * a_uv[d] * _F32(S) / _F32(2.0) for d in range(2)]
            grads.append(jnp.stack(gxy + [gz], -1))
        g_pix = jnp.where(covered[..., None, None], jnp.stack(grads, -2), 0.0)  # [B, S, S, 3, 3]
        g_faces = g_faces.at[b_idx, f_idx].add(g_pix)

    g_textures = None
    if texture_grad:
        T = textures.shape[-2]
        index, weight = _corners(fb, fi, w, z, T, eps)
        grgb = jnp.where(covered[..., None], _flatten_batch(g_rgb, batch, 3), 0.0)
        flat = jnp.zeros((B, F * T**3, 3), _F32)
        for pn in range(8):
            flat = flat.at[b_idx, f_idx * T**3 + index[..., pn]].add(weight[..., pn, None] * grgb)
        g_textures = flat.reshape((B, F, T, T, T, 3)).reshape(batch + (F, T, T, T, 3))
    return g_faces.reshape(batch + (F, 3, 3)), g_textures


# ---------------------------------------------------------------------------------------------------------
# Points (docs/points.md, "Fragments" and "Gradient"), dense: every point at every pixel, chunked over points,
# keeping each pixel's K smallest (z, p) keys.


def _points_batch(points, radius):
    """(batch, B, points [B, P, 3], radius [B, P]) with the leading dims broadcast and R = 1 spread to P."""
    points = jnp.asarray(points, _F32)
    radius = jnp.asarray(radius, _F32)
    batch = jnp.broadcast_shapes(points.shape[:-2], radius.shape[:-1])
    B = int(np.prod(batch, dtype=np.int64))
    P = points.shape[-2]
    points_b = jnp.broadcast_to(points, batch + (P, 3)).reshape(B, P, 3)
    radius_b = jnp.broadcast_to(radius, batch + (P,)).reshape(B, P)
    return batch, B, points_b, radius_b


def rasterize_points_forward(points, radius, *, image_size: int, points_per_pixel: int, near: float,
                             far: float):
    """Dense reference of the point forward kernel; same arguments and outputs as
    :func:`jaxnmr.ffi.rasterize_points_forward`.

    Args:
      points: float32 ``[..., P, 3]`` in NDC. radius: float32 ``[..., 1]`` or ``[..., P]`` (NDC units).
      image_size: internal resolution S. points_per_pixel: K. near, far: the depth range drawn.
    Returns:
      :class:`jaxnmr.ffi.PointFragments` of ``[*batch, S, S, K]`` arrays, row 0 at the bottom.
    """
    S, K = int(image_size), int(points_per_pixel)
    batch, B, pts, rad = _points_batch(points, radius)
    P = pts.shape[1]
    out = batch + (S, S, K)
    axes = _vma.varying_axes(points, radius)
    init = tuple(_vma.to_varying(x, axes) for x in (
        jnp.full((B, S, S, K), jnp.inf, _F32),  # z key (inf: empty)
        jnp.full((B, S, S, K), np.iinfo(np.int32).max, jnp.int32),  # index key
        jnp.full((B, S, S, K), -1.0, _F32),  # dist2
    ))
    if P == 0:
        z, idx, d2 = init
    else:
        chunk = max(1, min(P, _BLOCK_ELEMENTS // max(1, B * S * S)))
        n_chunks = -(-P // chunk)
        pad = n_chunks * chunk - P
        pts_p = jnp.concatenate([pts, jnp.full((B, pad, 3), jnp.nan, _F32)], axis=1)
        rad_p = jnp.concatenate([rad, jnp.zeros((B, pad), _F32)], axis=1)
        centers = _pixel_center(jnp.arange(S, dtype=jnp.int32), S)  # [S]
        near, far = _F32(near), _F32(far)

        def step(carry, chunk_args):
            z_k, i_k, d_k = carry
            p_c, r_c, index = chunk_args  # [B, C, 3], [B, C], [C]
            x, y, zc = p_c[..., 0], p_c[..., 1], p_c[..., 2]
            dx = centers[None, None, :] - x[..., None]  # [B, C, S] columns
            dy = centers[None, None, :] - y[..., None]  # [B, C, S] rows
            d2 = _r(_r(dy * dy)[:, :, :, None] + _r(dx * dx)[:, :, None, :])  # [B, C, S(rows), S(cols)]
            ok = (r_c > 0) & (zc > near) & (zc < far)
            covered = ok[..., None, None] & (d2 < _r(r_c * r_c)[..., None, None])
            zk = jnp.where(covered, zc[..., None, None], jnp.inf)
            ik = jnp.where(covered, index[None, :, None, None], np.iinfo(np.int32).max)
            dk = jnp.where(covered, d2, _F32(-1.0))
            move = lambda a: jnp.moveaxis(a, 1, -1)  # [B, S, S, C]
            z_all = jnp.concatenate([z_k, move(zk)], axis=-1)
            i_all = jnp.concatenate([i_k, move(ik)], axis=-1)
            d_all = jnp.concatenate([d_k, move(dk)], axis=-1)
            z_s, i_s, d_s = jax.lax.sort((z_all, i_all, d_all), dimension=-1, num_keys=2)
            return (z_s[..., :K], i_s[..., :K], d_s[..., :K]), None

        index = jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(n_chunks, chunk)
        chunks = lambda a: jnp.moveaxis(a.reshape((B, n_chunks, chunk) + a.shape[2:]), 1, 0)
        (z, idx, d2), _ = jax.lax.scan(step, init, (chunks(pts_p), chunks(rad_p), index))
    empty = idx == np.iinfo(np.int32).max
    index_map = jnp.where(empty, -1, idx).reshape(out)
    depth_map = jnp.where(empty, _F32(far), z).reshape(out)
    dist2_map = jnp.where(empty, _F32(-1.0), d2).reshape(out)
    return PointFragments(index_map, depth_map, dist2_map)


def rasterize_points_backward(points, index, g_depth, g_dist2, *, image_size: int):
    """Dense reference of the point backward kernel (docs/points.md, "Gradient"); same arguments and output as
    :func:`jaxnmr.ffi.rasterize_points_backward`.

    Args:
      points: float32 ``[..., P, 3]`` in NDC. index: int32 ``[..., S, S, K]`` from the forward (row 0 at the
        bottom). g_depth, g_dist2: float32 ``[..., S, S, K]`` cotangents, or None where zero.
    Returns:
      float32 ``[*batch, P, 3]``, batch the broadcast of all the inputs' leading dims.
    """
    S = int(image_size)
    points = jnp.asarray(points, _F32)
    index = jnp.asarray(index, jnp.int32)
    K = index.shape[-1]
    given = [g for g in (g_depth, g_dist2) if g is not None]
    batch = jnp.broadcast_shapes(points.shape[:-2], index.shape[:-3], *(g.shape[:-3] for g in given))
    B = int(np.prod(batch, dtype=np.int64))
    P = points.shape[-2]
    pts = jnp.broadcast_to(points, batch + (P, 3)).reshape(B, P, 3)
    idx = jnp.broadcast_to(index, batch + (S, S, K)).reshape(B, S, S, K)
    zeros = jnp.zeros((B, S, S, K), _F32)
    full = lambda g: zeros if g is None else jnp.broadcast_to(jnp.asarray(g, _F32), batch + (S, S, K)).reshape(
        B, S, S, K)
    gz, gd = full(g_depth), full(g_dist2)
    filled = idx >= 0
    safe = jnp.where(filled, idx, 0)
    gathered = jax.vmap(lambda p, i: p[i])(pts, safe)  # [B, S, S, K, 3]
    centers = _pixel_center(jnp.arange(S, dtype=jnp.int32), S)
    gx = gd * (_F32(2.0) * (gathered[..., 0] - centers[None, None, :, None]))
    gy = gd * (_F32(2.0) * (gathered[..., 1] - centers[None, :, None, None]))
    g = jnp.where(filled[..., None], jnp.stack([gx, gy, gz], axis=-1), _F32(0.0))  # no NaN from empty slots
    g_points = jax.vmap(lambda i, v: jnp.zeros((P, 3), _F32).at[i.reshape(-1)].add(v.reshape(-1, 3)))(safe, g)
    return g_points.reshape(batch + (P, 3))
