"""Images on the host: reading texture images, writing PNG and GIF files, and turning rendered float images into
bytes (NumPy; files through imageio).

Float images hold linear RGB in ``[0, 1]``; row 0 is the top of the picture, as in image files and in the
renderer's output.
"""

from __future__ import annotations

import numpy as np

__all__ = ["read_image", "write_png", "write_gif", "to_uint8", "contact_sheet"]


def read_image(path) -> np.ndarray:
    """An image file as float64 RGB ``[H, W, 3]`` in [0, 1], row 0 at the top.

    Integer pixels are divided by their dtype's maximum (255 for 8-bit); grayscale becomes RGB and an alpha
    channel is dropped; for multi-frame files the first frame is used. Raises ValueError for an empty image or
    one that is not 2-D, and whatever imageio raises for a file it cannot read.
    """
    import imageio.v3 as iio

    image = np.asarray(iio.imread(path))
    if image.ndim == 4:
        image = image[0]
    if np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float64) / float(np.iinfo(image.dtype).max)
    else:
        image = image.astype(np.float64)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"unsupported image shape {list(image.shape)}")
    if image.shape[2] in (1, 2):  # grayscale, grayscale + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def to_uint8(rgb) -> np.ndarray:
    """Float image(s) ``[..., 3]`` (any shape; nominally in [0, 1]) -> uint8 of the same shape.

    ``floor(clip(rgb, 0, 1) * 255 + 0.5)`` (round half up, as NMR's ``toimage(cmin=0, cmax=1)``); NaN maps to 0,
    +inf to 255, -inf to 0. :func:`jaxnmr.save_obj`'s texture atlas is stored through it.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    clipped = np.clip(np.nan_to_num(rgb, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.floor(clipped * 255.0 + 0.5).astype(np.uint8)


def contact_sheet(images) -> np.ndarray:
    """Images side by side: ``[n, H, W, C]`` (or a sequence of n ``[H, W, C]`` arrays) -> ``[H, n * W, C]``.

    The dtype is kept; image ``i`` occupies columns ``[i * W, (i + 1) * W)``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"contact_sheet: expected images [n, H, W, C] with n >= 1, got shape {images.shape}")
    n, h, w, c = images.shape
    return images.transpose(1, 0, 2, 3).reshape(h, n * w, c)


def write_png(path, image) -> str:
    """Writes an image (float in [0, 1], converted by :func:`to_uint8`, or uint8; ``[H, W]`` grey or
    ``[H, W, 3]``) as PNG; returns ``path``."""
    import imageio.v3 as iio

    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = to_uint8(image)
    iio.imwrite(path, image, extension=".png")
    return path


def write_gif(path, frames, fps: float = 12.5) -> str:
    """Writes frames (float in [0, 1] or uint8; ``[n, H, W]`` or ``[n, H, W, 3]``) as an endlessly looping GIF
    with ``1000 / fps`` ms per frame; returns ``path``.

    (Pillow merges consecutive identical frames into one longer frame, so a symmetric mesh may give fewer GIF
    frames; the animation's timing is unchanged.)
    """
    import imageio.v3 as iio

    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = to_uint8(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    iio.imwrite(path, frames, extension=".gif", plugin="pillow", duration=1000.0 / fps, loop=0)
    return path
