"""Depth images back to world points (docs/points.md, "Unprojecting depth").

``unproject_depth`` puts every pixel of a depth image at its centre (``pixel_centers``) in NDC, with the pixel's
depth as z, and hands the points to the camera's ``from_ndc``, the inverse of its ``to_ndc``. Pixel centres and
the image orientation are those of the rasterizer (docs/conventions.md, "Pixel centres" and "Output
orientation"), so a depth rendered by a Renderer unprojects onto the surface it shows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks

__all__ = ["unproject_depth", "pixel_centers"]


def pixel_centers(image_size: int) -> jax.Array:
    """NDC ``(x, y)`` of the centre of every pixel of an output image, float32 ``[image_size * image_size, 2]``.

    Row-major, row 0 at the top (the layout of every image jaxnmr returns): entry ``i * S + j`` (``S =
    image_size``) is row ``i``, column ``j``, at ``x = (2j + 1 - S) / S`` and ``y = -(2i + 1 - S) / S``. These are
    the rasterizer's sample points, to the bit: output row ``i`` is internal row ``S - 1 - i``, whose centre is
    ``(2 (S - 1 - i) + 1 - S) / S``, the same float32 number. With anti-aliasing an output pixel averages four
    samples at ``2S``, whose mean position is the same centre.

    Args:
      image_size: the image's side S in pixels, a Python int >= 1.
    Returns:
      float32 ``[S * S, 2]``, x right and y up, in (-1, 1).
    """
    size = _checks.positive_int("pixel_centers", "image_size", image_size)
    index = np.arange(size, dtype=np.float32)
    centres = (np.float32(2.0) * index + np.float32(1 - size)) / np.float32(size)  # as the kernels compute them
    x, y = np.meshgrid(centres, -centres, indexing="xy")  # [S, S] each: x by column, y by row (flipped: top first)
    return jnp.asarray(np.stack([x, y], axis=-1).reshape(size * size, 2))


def unproject_depth(depth, renderer) -> jax.Array:
    """World points of a depth image: the point the renderer's camera maps to each pixel's centre at its depth.

    For pixel ``(i, j)`` (row 0 at the top) the NDC point ``(x_j, y_i, depth[..., i, j])`` of
    :func:`pixel_centers` goes through ``renderer.camera.from_ndc``. Empty pixels (depth ``far``) give points at
    depth ``far``: mask them with ``depth < far``. With anti-aliasing, pixels on a silhouette average the
    surface's depth with ``far`` and unproject to neither; render the depth with ``anti_aliasing=False`` (or
    mask those pixels) for points on the surface only. Inside a face the rasterizer interpolates depth
    harmonically between the corners' NDC positions (docs/rasterizer.md, "Visibility"): exact for a pinhole
    camera, so the points then lie on the face; with an orthographic camera (or a lens distortion, which moves
    only the corners) they lie on the face only where it is parallel to the image (or at the corners).

    Args:
      depth: float ``[..., H, W]`` camera-space depth (world units), as ``Renderer.render_depth`` returns it;
        ``H = W = renderer.raster.image_size``.
      renderer: a :class:`jaxnmr.Renderer` (only its ``camera``, which must have ``from_ndc``, as every jaxnmr
        camera does, and ``raster.image_size`` are used). Batch dims of the camera's fields broadcast with those
        of ``depth``.
    Returns:
      float32 ``[..., H * W, 3]`` world points in row-major pixel order; ``...`` is the broadcast of the batch
      dims of ``depth`` and of the camera. Works under ``jit``, ``vmap`` (over ``depth`` and over renderers),
      ``grad`` and ``jax.export``.
    """
    fn = "unproject_depth"
    camera, raster = getattr(renderer, "camera", None), getattr(renderer, "raster", None)
    if camera is None or not hasattr(raster, "image_size"):
        raise TypeError(f"{fn}: renderer must be a jaxnmr.Renderer (with a camera and raster settings), "
                        f"got {type(renderer).__name__}")
    if not callable(getattr(camera, "from_ndc", None)):
        raise TypeError(f"{fn}: the renderer's camera ({type(camera).__name__}) has no from_ndc, the inverse of "
                        'its to_ndc (docs/architecture.md, "Adding a camera"); give it one, or use a jaxnmr camera')
    size = raster.image_size
    depth = _checks.float_array(fn, "depth", depth, ("H", "W"))
    if depth.shape[-2:] != (size, size):
        raise ValueError(f"{fn}: depth must have shape [..., {size}, {size}] (the renderer's image_size is {size}), "
                         f"got shape {tuple(depth.shape)}")
    batch = depth.shape[:-2]
    centres = jnp.broadcast_to(pixel_centers(size), batch + (size * size, 2))
    ndc = jnp.concatenate([centres, depth.reshape(batch + (size * size, 1))], axis=-1)
    return jnp.asarray(camera.from_ndc(ndc), jnp.float32)
