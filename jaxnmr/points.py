"""Point rasterization: the K nearest points whose discs cover each pixel (docs/points.md, "Fragments").

:func:`rasterize_points` validates its arguments, calls the point primitive (an FFI kernel with a custom VJP, or
the pure-``jnp`` reference where no kernel was built) and returns :class:`PointFragments` with row 0 at the top,
like every image of jaxnmr. Turning fragments into pictures is :mod:`jaxnmr.compositing`'s job; the whole
pipeline for world points and a camera is :meth:`jaxnmr.Renderer.render_points`.
"""

from __future__ import annotations

from jaxnmr import _checks
from jaxnmr._primitive import MAX_INTERNAL_SIZE, PointConfig, check_bytes, flip_rows, rasterize_point_maps
from jaxnmr.ffi import MAX_POINTS_PER_PIXEL, PointFragments

__all__ = ["PointFragments", "rasterize_points", "MAX_POINTS_PER_PIXEL"]

# Bytes per internal pixel and slot the fragments and their compositing keep (index, depth, dist2, weight, the
# gathered features' share and the cotangents), rounded up; per pixel add the images made from them.
_BYTES_PER_SLOT = 48


def rasterize_points(points, radius, image_size: int = 256, points_per_pixel: int = 8, near: float = 0.1,
                     far: float = 100.0) -> PointFragments:
    """The K nearest points covering each pixel of an ``image_size`` x ``image_size`` image.

    What covers a pixel, the slots' order and the empty values: docs/points.md, "Fragments"; the gradient:
    docs/points.md, "Gradient" (to ``points`` through ``depth`` and ``dist2``; ``radius`` gets its gradient from
    the compositing weights).

    Args:
      points: float ``[..., P, 3]`` in NDC: x, y in [-1, 1] across the image (x right, y up), z the camera-space
        depth (a camera's ``to_ndc`` of world points).
      radius: float scalar, ``[..., 1]`` or ``[..., P]``: each point's disc radius in NDC units (one pixel is
        ``2 / image_size``); finite and >= 0.
      image_size: height = width in pixels, int in [1, 32768] (no anti-aliasing here: the Renderer renders at
        twice the size and averages after compositing).
      points_per_pixel: K, the slots per pixel, int in [1, 64] (static).
      near, far: only points with near < z < far are drawn (static floats, 0 <= near < far).
    Returns:
      :class:`PointFragments`: index int32, depth and dist2 float32, each ``[..., S, S, K]`` with row 0 at the
      top; leading dims are the broadcast of the points' and the radius's.
    """
    fn = "rasterize_points"
    points = _checks.float_array(fn, "points", points, ("P", 3))
    radius = _checks.point_radius(fn, radius, points.shape)
    size = _checks.positive_int(fn, "image_size", image_size, MAX_INTERNAL_SIZE)
    K = _checks.positive_int(fn, "points_per_pixel", points_per_pixel, MAX_POINTS_PER_PIXEL)
    near, far, _ = _checks.depth_range(fn, near, far, 1.0)
    batch = _checks.broadcast_batch(fn, points=points.shape[:-2], radius=radius.shape[:-1])
    check_bytes(fn, size, size, batch, _BYTES_PER_SLOT * K)
    fragments = rasterize_point_maps(PointConfig(size, K, near, far), points, radius)
    return PointFragments(*(flip_rows(x, True) for x in fragments))
