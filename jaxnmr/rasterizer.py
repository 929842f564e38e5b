"""The rasterizer entry points: validation, the primitive, the y-flip and 2x2 anti-aliasing.

Images are channels-last with row 0 at the top: rgb ``[..., H, W, 3]``, alpha and depth ``[..., H, W]``.
Face vertices arrive in NDC (after the camera and perspective): ``face_vertices [..., F, 3, 3]`` with x, y in
[-1, 1] spanning the image and z the camera-space depth (docs/conventions.md, "Coordinate systems"). Leading
dimensions broadcast between face vertices, textures and background. What a pixel shows is described in
docs/rasterizer.md, "Visibility" and "Texture sampling"; the output orientation and anti-aliasing in
docs/conventions.md, "Output orientation" and "Anti-aliasing".
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnmr import _checks
from jaxnmr._primitive import MAX_INTERNAL_SIZE, Config, check_memory, flip_rows, rasterize_maps

__all__ = ["RGBAD", "rasterize_rgbad", "rasterize", "rasterize_silhouettes", "rasterize_depth", "downsample_2x2"]


class RGBAD(NamedTuple):
    """Outputs of :func:`rasterize_rgbad`; an output that was not asked for is None.

    rgb: float32 ``[..., H, W, 3]``. alpha: float32 ``[..., H, W]`` (1 covered, 0 empty; fractional with
    anti-aliasing). depth: float32 ``[..., H, W]`` camera-space z of the visible surface, ``far`` where empty.
    """

    rgb: jax.Array | None
    alpha: jax.Array | None
    depth: jax.Array | None


jax.export.register_namedtuple_serialization(RGBAD, serialized_name="jaxnmr.RGBAD")  # outputs of exported renders


def downsample_2x2(image: jax.Array, channels: bool = True) -> jax.Array:
    """Mean of each 2x2 block (stride 2, no padding): ``[..., 2H, 2W(, C)] -> [..., H, W(, C)]``, the
    rasterizer's anti-aliasing step, e.g. for images shaded from G-buffers rendered at twice the size.

    Args:
      image: float ``[..., 2H, 2W, C]`` (``channels``) or ``[..., 2H, 2W]``; even height and width.
      channels: a Python bool (static): whether the last axis is channels.
    Returns:
      ``[..., H, W, C]`` or ``[..., H, W]``, the image's dtype.

    Written as four strided slices, ``((x00 + x01) + (x10 + x11)) / 4``: XLA fuses them into one pass (a
    reshape-and-mean took 10x longer on the CPU, forward and backward), and the sum is symmetric in the two rows
    of a block, so pooling and flipping the rows commute exactly.
    """
    channels = _checks.static_bool("downsample_2x2", "channels", channels)
    image = jnp.asarray(image)
    spatial = image.shape[-3:-1] if channels else image.shape[-2:]
    if image.ndim < (3 if channels else 2) or spatial[0] % 2 or spatial[1] % 2:
        layout = "[..., 2H, 2W, C]" if channels else "[..., 2H, 2W]"
        raise ValueError(f"downsample_2x2: image must be {layout} with an even height and width "
                         f"(channels={channels}), got shape {tuple(image.shape)}")
    if not channels:
        return downsample_2x2(image[..., None], True)[..., 0]
    top, bottom = image[..., 0::2, :, :], image[..., 1::2, :, :]
    return ((top[..., 0::2, :] + top[..., 1::2, :]) + (bottom[..., 0::2, :] + bottom[..., 1::2, :])) * 0.25


@jax.custom_vjp
def _pool(image: jax.Array) -> jax.Array:
    """:func:`downsample_2x2` of ``[..., 2H, 2W, C]`` with its gradient written as one broadcast: XLA's transpose
    of the four strided slices (four padded full-size images, then summed) cost 10x more at 2048² internal.
    The renderer's outputs already support reverse mode only (the rasterizer is a custom VJP), so nothing is
    lost there; the public downsample_2x2 keeps both modes."""
    return downsample_2x2(image, True)


def _pool_fwd(image):
    return _pool(image), None


def _pool_bwd(_, g):
    q = g * 0.25  # each of a block's four pixels gets a quarter of the block's cotangent
    *lead, h, w, c = q.shape
    up = jnp.broadcast_to(q[..., :, None, :, None, :], (*lead, h, 2, w, 2, c))
    return (up.reshape(*lead, 2 * h, 2 * w, c),)


_pool.defvjp(_pool_fwd, _pool_bwd)


def _finish(image: jax.Array, channels: bool, anti_aliasing: bool) -> jax.Array:
    """Internal orientation and resolution -> output: 2x2 mean (with anti-aliasing), then rows flipped (the
    smaller image; the two commute exactly)."""
    if anti_aliasing:
        image = _pool(image) if channels else _pool(image[..., None])[..., 0]
    return flip_rows(image, channels)


def rasterize_rgbad(
    face_vertices,
    textures=None,
    image_size: int = 256,
    anti_aliasing: bool = True,
    near: float = 0.1,
    far: float = 100.0,
    eps: float = 1e-4,
    background_color=(0.0, 0.0, 0.0),
    return_rgb: bool = True,
    return_alpha: bool = True,
    return_depth: bool = True,
) -> RGBAD:
    """Rasterizes faces given by their vertices in NDC into rgb, alpha and depth images.

    Visibility, texture sampling and the outputs: docs/rasterizer.md, "Visibility", "Texture sampling" and
    "Alpha, depth and background"; the gradient: docs/rasterizer.md, "Approximate gradient".

    Args:
      face_vertices: float ``[..., F, 3, 3]`` vertices of each face in NDC (e.g. ``vertices_to_faces`` of the
        projected vertices); only counter-clockwise (front) faces are drawn (docs/conventions.md, "Winding and
        normals").
      textures: float ``[..., F, T, T, T, 3]`` (T >= 2) per-face colour cubes, or None (then rgb is None).
      image_size: output height = width in pixels (>= 1).
      anti_aliasing: render at 2x and average 2x2 blocks.
      near, far: a pixel is drawn only where the interpolated depth lies strictly between them.
      eps: texture-coordinate clamp ``T - 1 - eps`` (and, in the gradient, the distance regulariser).
      background_color: RGB ``[..., 3]`` of empty pixels.
      return_rgb, return_alpha, return_depth: which outputs to compute (at least one).
    Returns:
      :class:`RGBAD` with rgb ``[..., H, W, 3]``, alpha ``[..., H, W]``, depth ``[..., H, W]`` float32, row 0 at
      the top; leading dims are the broadcast of the inputs'.
    """
    fn = "rasterize_rgbad"
    face_vertices = _checks.float_array(fn, "face_vertices", face_vertices, ("F", 3, 3))
    image_size = _checks.positive_int(fn, "image_size", image_size, MAX_INTERNAL_SIZE // 2)
    near, far, eps = _checks.depth_range(fn, near, far, eps)
    if not (return_rgb or return_alpha or return_depth):
        raise ValueError(f"{fn}: at least one of return_rgb, return_alpha, return_depth must be True")
    if textures is not None and return_rgb:
        textures = _checks.float_array(fn, "textures", textures, ("F", "T", "T", "T", 3))
        T = textures.shape[-2]
        if textures.shape[-4] != T or textures.shape[-3] != T or T < 2:
            raise ValueError(f"{fn}: textures must be cubes [..., F, T, T, T, 3] with T >= 2, "
                             f"got shape {textures.shape}")
        textures = _checks.textures_per_face(fn, textures, face_vertices.shape, -3, faces_name="face_vertices")
    else:
        textures = None
    background = _checks.float_array(fn, "background_color", background_color, (3,))
    _check_batch(fn, face_vertices, textures, background)

    S = image_size * 2 if anti_aliasing else image_size
    check_memory(fn, image_size, S, face_vertices, textures, background)
    config = Config(S, near, far, eps, textures is not None, bool(return_alpha), bool(return_depth))
    rgb, alpha, depth = rasterize_maps(config, face_vertices, textures, background)
    return RGBAD(
        _finish(rgb, True, anti_aliasing) if rgb is not None else None,
        _finish(alpha, False, anti_aliasing) if alpha is not None else None,
        _finish(depth, False, anti_aliasing) if depth is not None else None,
    )


def _check_batch(fn, face_vertices, textures, background) -> None:
    shapes = {"face_vertices": face_vertices.shape[:-3], "background_color": background.shape[:-1]}
    if textures is not None:
        shapes["textures"] = textures.shape[:-5]
    _checks.broadcast_batch(fn, **shapes)


def rasterize(
    face_vertices,
    textures,
    image_size: int = 256,
    anti_aliasing: bool = True,
    near: float = 0.1,
    far: float = 100.0,
    eps: float = 1e-4,
    background_color=(0.0, 0.0, 0.0),
) -> jax.Array:
    """RGB image ``[..., H, W, 3]`` float32 of textured faces in NDC; see :func:`rasterize_rgbad`.

    Args: face_vertices float ``[..., F, 3, 3]``; textures float ``[..., F, T, T, T, 3]``; the rest as
    rasterize_rgbad.
    """
    if textures is None:
        raise TypeError("rasterize: textures is required ([..., F, T, T, T, 3]); use rasterize_silhouettes "
                        "for coverage only")
    return rasterize_rgbad(face_vertices, textures, image_size, anti_aliasing, near, far, eps, background_color,
                           return_rgb=True, return_alpha=False, return_depth=False).rgb


def rasterize_silhouettes(face_vertices, image_size: int = 256, anti_aliasing: bool = True, near: float = 0.1,
                          far: float = 100.0, eps: float = 1e-4) -> jax.Array:
    """Coverage (alpha) image ``[..., H, W]`` float32 of ``face_vertices [..., F, 3, 3]`` in NDC."""
    return rasterize_rgbad(face_vertices, None, image_size, anti_aliasing, near, far, eps,
                           return_rgb=False, return_alpha=True, return_depth=False).alpha


def rasterize_depth(face_vertices, image_size: int = 256, anti_aliasing: bool = True, near: float = 0.1,
                    far: float = 100.0, eps: float = 1e-4) -> jax.Array:
    """Depth image ``[..., H, W]`` float32 (camera-space z, ``far`` where empty) of ``face_vertices
    [..., F, 3, 3]`` in NDC."""
    return rasterize_rgbad(face_vertices, None, image_size, anti_aliasing, near, far, eps,
                           return_rgb=False, return_alpha=False, return_depth=True).depth
