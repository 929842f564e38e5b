"""Texture-coordinate wrapping and bilinear image sampling, written once for NumPy and for jax.numpy.

``jaxnmr.io`` (plain NumPy, float64, while loading OBJ textures) and ``jaxnmr.textures`` (jax.numpy, float32,
differentiable) both call these with their array module ``xp``, so that the two cannot drift apart.
"""

from __future__ import annotations


def wrap_uv(uv, xp):
    """NMR's (Chainer) wrap: coordinates > 1 become ``mod 1``; 0, exactly 1 and negatives are kept."""
    return xp.where(uv > 1, xp.mod(uv, 1.0), uv)


def sample(image, uv, xp):
    """Bilinear sample of ``image [H, W, C]`` stored bottom row first at ``uv [P, 2]`` -> ``[P, C]``.

    ``pos = uv * (W - 1, H - 1)`` (so 0 and 1 are the centres of the first and last column / row), clamped into
    the image with non-finite positions taken as 0; ``x0 = floor(pos)`` and the ``+1`` neighbour is clamped to
    the last column / row (NMR_SPEC §6.3 step 7.3, the PyTorch port's clamp). Integer corners carry no
    gradient; with jax.numpy the result is differentiable in ``image`` and, through the fractions, in ``uv``.
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
