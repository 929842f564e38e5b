"""Texel math shared by the OBJ loader (:mod:`jaxnmr.io.obj`, NumPy float64) and :mod:`jaxnmr.textures`
(jax.numpy float32, differentiable): where each texel of a face's ``T x T x T`` colour cube sits on the face,
how texture coordinates wrap, and bilinear / trilinear sampling. Functions that take ``xp`` run with either
array module, so the loader and the differentiable converters cannot drift apart.

Conventions (docs/conventions.md, "Texture cubes"):

* Texel ``(i, j, k)`` of a face sits at the barycentric point ``(i, j, k) / (i + j + k)`` of the face (NMR's
  fix for "ghost" textures: interior texels repeat their projection onto the face).
* Texel ``(0, 0, 0)`` has no such point (``0 / 0``). It gets barycentrics ``(0, 0, 0)``, so its texture
  coordinates are ``(u, v) = (0, 0)``: it shows the bottom-left pixel of the texture image, whatever the face.
  This is the guard of NMR's PyTorch port, so :func:`jaxnmr.load_obj` keeps NMR's numbers, and
  :func:`jaxnmr.uv_to_textures` (through :func:`texel_uvs`) does the same. The renderer reads that texel only
  for ``T = 2`` or ``3`` (its lookup point sums to ``T - 1``).
* Texture coordinates wrap as in the Chainer original: coordinates greater than 1 are taken ``mod 1``; 0,
  exactly 1 and negative coordinates are kept (the sampler clamps them into the image).
* ``(u, v)`` maps to pixel ``(u (W - 1), v (H - 1))`` of an image stored bottom row first: 0 and 1 are the
  centres of the first and last column / row.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GREY", "texel_barycentrics", "texel_uvs", "wrap_uv", "bilinear_bottom_up", "sample_trilinear"]

GREY = 0.5  # NMR's colour for faces without any appearance (load_obj's initial texel colour, Mesh.to_textures)


def texel_barycentrics(texture_size: int) -> np.ndarray:
    """Barycentric coordinates ``(i, j, k) / (i + j + k)`` of every texel, ``[T^3, 3]`` float64 in C order
    (row ``(i T + j) T + k``); texel ``(0, 0, 0)`` (row 0) gets ``(0, 0, 0)``."""
    ijk = np.indices((texture_size,) * 3).reshape(3, -1).T.astype(np.float64)
    total = ijk.sum(axis=1, keepdims=True)
    return np.divide(ijk, total, out=np.zeros_like(ijk), where=total > 0)


def wrap_uv(uv, xp):
    """The Chainer original's wrap: coordinates > 1 become ``mod 1``; 0, exactly 1 and negatives are kept."""
    return xp.where(uv > 1, xp.mod(uv, 1.0), uv)


def texel_uvs(face_uvs, texture_size: int, xp):
    """The texture coordinates of every texel: ``face_uvs [..., F, 3, 2]`` (raw, wrapped here) ->
    ``[..., F, T^3, 2]`` in :func:`texel_barycentrics` order, in ``face_uvs``' dtype."""
    beta = xp.asarray(texel_barycentrics(texture_size), dtype=face_uvs.dtype)
    return xp.einsum("tk,...fkc->...ftc", beta, wrap_uv(face_uvs, xp))


def bilinear_bottom_up(image, uv, xp):
    """Bilinear sample of ``image [H, W, C]`` stored bottom row first at ``uv [P, 2]`` -> ``[P, C]``.

    ``pos = uv * (W - 1, H - 1)``, clamped into the image with non-finite positions taken as 0;
    ``x0 = floor(pos)`` and the ``+1`` neighbour is clamped to the last column / row (the PyTorch port's clamp).
    Integer corners carry no gradient; with jax.numpy the result is differentiable in ``image`` and, through the
    fractions, in ``uv``.
    """
    height, width = image.shape[0], image.shape[1]
    size = xp.asarray([width - 1, height - 1], dtype=uv.dtype)
    pos = xp.clip(xp.nan_to_num(uv * size, nan=0.0, posinf=0.0, neginf=0.0), 0.0, size)
    corner = xp.floor(pos)  # pos >= 0, so this is NMR's trunc
    frac = pos - corner
    corner = corner.astype("int32")
    x0, y0 = corner[:, 0], corner[:, 1]
    x1 = xp.minimum(x0 + 1, width - 1)
    y1 = xp.minimum(y0 + 1, height - 1)
    fx, fy = frac[:, :1], frac[:, 1:]
    return (
        image[y0, x0] * ((1 - fx) * (1 - fy))
        + image[y0, x1] * (fx * (1 - fy))
        + image[y1, x0] * ((1 - fx) * fy)
        + image[y1, x1] * (fx * fy)
    )


def sample_trilinear(textures: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Trilinear sample of every face's cube ``[F, T, T, T, 3]`` at cube coordinates ``t [P, 3]`` -> ``[F, P, 3]``
    (NumPy float64; the renderer's lookup, docs/rasterizer.md).

    ``t`` must lie in ``[0, T - 1)`` so that ``trunc(t) + 1`` is a valid index.
    """
    base = np.trunc(t).astype(np.int64)
    frac = t - base
    result = np.zeros((textures.shape[0], t.shape[0], 3), dtype=np.float64)
    for corner in range(8):
        bits = np.array([(corner >> axis) & 1 for axis in range(3)])
        weight = np.prod(np.where(bits == 1, frac, 1.0 - frac), axis=1)  # [P]
        index = base + bits
        result += textures[:, index[:, 0], index[:, 1], index[:, 2]] * weight[None, :, None]
    return result
