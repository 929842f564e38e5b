"""The rasterizer entry points: validation, the primitive, the y-flip and 2x2 anti-aliasing (NMR_SPEC §4, §1.4,
§1.7).

Images are channels-last with row 0 at the top: rgb ``[..., H, W, 3]``, alpha and depth ``[..., H, W]``.
Faces arrive in NDC (after the camera and perspective): ``[..., F, 3, 3]`` with x, y in [-1, 1] spanning the
image and z the camera-space depth. Leading dimensions broadcast between faces, textures and background.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from jaxnmr import _checks, _vma, ffi, reference

__all__ = ["RGBAD", "rasterize_rgbad", "rasterize", "rasterize_silhouettes", "rasterize_depth"]

# Largest internal resolution (2 x image_size with anti-aliasing) the kernels accept.
MAX_INTERNAL_SIZE = 32768


class RGBAD(NamedTuple):
    """Outputs of :func:`rasterize_rgbad`; an output that was not asked for is None.

    rgb: float32 ``[..., H, W, 3]``. alpha: float32 ``[..., H, W]`` (1 covered, 0 empty; fractional with
    anti-aliasing). depth: float32 ``[..., H, W]`` camera-space z of the visible surface, ``far`` where empty.
    """

    rgb: jax.Array | None
    alpha: jax.Array | None
    depth: jax.Array | None


jax.export.register_namedtuple_serialization(RGBAD, serialized_name="jaxnmr.RGBAD")  # outputs of exported renders

class _Config(NamedTuple):
    """Static settings of one rasterization (hashable: a non-differentiable argument of the custom VJP)."""

    size: int  # internal resolution S
    near: float
    far: float
    eps: float
    rgb: bool
    alpha: bool
    depth: bool
    face_index: bool = False  # also return the int32 face-index map (no gradient), for jaxnmr.gbuffers


def _reference_forward(faces, textures, background, **settings) -> ffi.ForwardMaps:
    """The oracle's forward with the kernel's outputs: no weights and depth maps without ``with_maps``."""
    maps = reference.rasterize_forward(faces, textures, background, **settings)
    return maps if settings["with_maps"] else maps._replace(weights=None, depth=None)


_IMPLEMENTATIONS = {
    "rasterize_forward": (ffi.rasterize_forward, _reference_forward),
    "rasterize_backward": (ffi.rasterize_backward, reference.rasterize_backward),
}


def _per_platform(name: str, *args, **settings):
    """Calls the compiled kernel ``name`` on every platform that has one and the pure-jnp reference (same
    arguments, same results) elsewhere. The choice is made per platform XLA compiles for
    (``lax.platform_dependent``), not from JAX's default back end: on a GPU host without the CUDA library,
    work placed on the CPU still runs the CPU kernel. Only the branch of the platform being compiled for is
    lowered, so the reference costs nothing where a kernel exists."""
    kernel, oracle = _IMPLEMENTATIONS[name]
    # Under shard_map both branches must give results of one type: the union of the inputs' varying axes.
    axes = _vma.varying_axes(*jax.tree.leaves(args))
    typed = lambda impl: lambda *a: jax.tree.map(lambda x: _vma.to_varying(x, axes), impl(*a, **settings))
    kernel_fn, oracle_fn = typed(kernel), typed(oracle)
    _warn_if_no_kernel()
    branch = {p: kernel_fn if ffi.kernel_available(p) else oracle_fn for p in ("cpu", "cuda")}
    # Other platforms (TPU, ROCm) get the reference where JAX runs on one; otherwise lowering for them fails
    # with XLA's "No FFI handler registered" (jaxnmr has no kernels there), without tracing the reference.
    if _default_platform() not in ("cpu", "cuda"):
        default = oracle_fn
    else:
        default = kernel_fn if kernel_fn in branch.values() else oracle_fn
    rest = {p: fn for p, fn in branch.items() if fn is not default}
    if not rest:
        return default(*args)
    return jax.lax.platform_dependent(*args, default=default, **rest)


def _default_platform() -> str:
    """The platform of JAX's default back end: "cpu", "cuda", "rocm", "tpu", ..."""
    platform = jax.devices()[0].client.platform.lower()
    return "cuda" if platform == "gpu" else platform


def _warn_if_no_kernel() -> None:
    platform = _default_platform()
    status = ffi.kernel_status(platform)
    if not status.available:
        _warn_no_kernel(platform, status.reason)


@functools.cache
def _warn_no_kernel(platform: str, reason: str) -> None:
    warnings.warn(
        f"jaxnmr: no compiled rasterizer kernel for JAX's default back end ('{platform}'): {reason}. Work there "
        "uses the pure-jnp reference, which gives the same results but costs pixels x faces.",
        RuntimeWarning,
        stacklevel=4,
    )


def _value(x):
    return x.value if isinstance(x, CustomVJPPrimal) else x


def _outputs(config: _Config, maps: ffi.ForwardMaps):
    """(rgb, alpha, depth) at internal resolution and orientation, None where not asked for; with
    ``config.face_index`` a fourth output, the int32 face-index map (its cotangent is ignored)."""
    alpha = (maps.face_index >= 0).astype(jnp.float32) if config.alpha else None
    images = (maps.rgb if config.rgb else None, alpha, maps.depth if config.depth else None)
    return images + (maps.face_index,) if config.face_index else images


def _forward(config: _Config, faces, textures, background) -> ffi.ForwardMaps:
    return _per_platform(
        "rasterize_forward", faces, textures if config.rgb else None, background,
        image_size=config.size, near=config.near, far=config.far, eps=config.eps,
        with_maps=config.rgb or config.depth,  # a silhouette (and its gradient) needs the face index alone
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rasterize(config: _Config, faces, textures, background):
    """The differentiable primitive: internal-resolution (rgb, alpha, depth), NMR's approximate gradient."""
    return _outputs(config, _forward(config, faces, textures, background))


@jax.tree_util.register_static
class _Needs(NamedTuple):
    """Which inputs are differentiated (known at trace time; a static part of the residuals)."""

    faces: bool
    textures: bool


def _perturbed(x) -> bool:
    return bool(x.perturbed) if isinstance(x, CustomVJPPrimal) else x is not None


def _rasterize_fwd(config, faces, textures, background):
    needs = _Needs(_perturbed(faces), textures is not None and _perturbed(textures))
    faces, textures, background = _value(faces), _value(textures), _value(background)
    maps = _forward(config, faces, textures, background)
    return _outputs(config, maps), (faces, textures, background, maps, needs)


def _sum_to_shape(g: jax.Array, shape: tuple) -> jax.Array:
    """Sums a gradient computed at the broadcast batch shape back to an input's own (broadcast) shape."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _cotangent(x):
    """None for a cotangent that is symbolically zero (or an output that was not asked for)."""
    return None if x is None or isinstance(x, SymbolicZero) else x


def _rasterize_bwd(config, residuals, cotangents):
    faces, textures, background, maps, needs = residuals
    g_rgb, g_alpha, g_depth = (_cotangent(c) for c in cotangents[:3])  # a face-index map has none
    g_textures = None
    if (g_rgb is None and g_alpha is None and g_depth is None) or not (needs.faces or needs.textures):
        g_faces = jnp.zeros_like(faces)
    else:
        g_faces, g_textures = _per_platform(
            "rasterize_backward", faces, textures if config.rgb else None, maps, g_rgb, g_alpha, g_depth,
            image_size=config.size, eps=config.eps, want_faces=needs.faces, want_textures=needs.textures,
        )
        g_faces = _sum_to_shape(g_faces, faces.shape) if needs.faces else jnp.zeros_like(faces)
    if textures is not None:
        g_textures = jnp.zeros_like(textures) if g_textures is None else _sum_to_shape(g_textures, textures.shape)
    # The background receives no gradient (as in NMR). Under shard_map each cotangent takes its primal's type.
    return _vma.like(g_faces, faces), _vma.like(g_textures, textures), jnp.zeros_like(background)


_rasterize.defvjp(_rasterize_fwd, _rasterize_bwd, symbolic_zeros=True)


def flip_rows(image: jax.Array, channels: bool) -> jax.Array:
    """Reverses the row axis (internal row 0 = bottom -> output row 0 = top); ``[..., S, S(, C)]``."""
    return jnp.flip(image, axis=-3 if channels else -2)


def downsample_2x2(image: jax.Array, channels: bool = True) -> jax.Array:
    """Mean of each 2x2 block (stride 2, no padding): ``[..., 2H, 2W(, C)] -> [..., H, W(, C)]``.

    Written as four strided slices, ``((x00 + x01) + (x10 + x11)) / 4``: XLA fuses them into one pass (a
    reshape-and-mean took 10x longer on the CPU, forward and backward), and the sum is symmetric in the two rows
    of a block, so pooling and flipping the rows commute exactly.
    """
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
    faces,
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
    """Rasterizes faces in NDC into rgb, alpha and depth images (NMR_SPEC §4).

    Args:
      faces: float ``[..., F, 3, 3]`` face vertices in NDC; only counter-clockwise (front) faces are drawn.
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
    faces = _checks.float_array(fn, "faces", faces, ("F", 3, 3))
    image_size = _checks.positive_int(fn, "image_size", image_size, MAX_INTERNAL_SIZE // 2)
    near, far, eps = _checks.depth_range(fn, near, far, eps)
    if not (return_rgb or return_alpha or return_depth):
        raise ValueError(f"{fn}: at least one of return_rgb, return_alpha, return_depth must be True")
    if textures is not None and return_rgb:
        textures = _checks.float_array(fn, "textures", textures, ("F", "T", "T", "T", 3))
        T = textures.shape[-2]
        if textures.shape[-4] != T or textures.shape[-3] != T or T < 2:
            raise ValueError(f"{fn}: textures must be cubes [..., F, T, T, T, 3] with T >= 2, got shape {textures.shape}")
        textures = _checks.textures_per_face(fn, textures, faces.shape, -3)
    else:
        textures = None
    background = _checks.float_array(fn, "background_color", background_color, (3,))
    _check_batch(fn, faces, textures, background)

    S = image_size * 2 if anti_aliasing else image_size
    _check_memory(fn, image_size, S, faces, textures, background)
    config = _Config(S, near, far, eps, textures is not None, bool(return_alpha), bool(return_depth))
    rgb, alpha, depth = _rasterize(config, faces, textures, background)
    return RGBAD(
        _finish(rgb, True, anti_aliasing) if rgb is not None else None,
        _finish(alpha, False, anti_aliasing) if alpha is not None else None,
        _finish(depth, False, anti_aliasing) if depth is not None else None,
    )


def _check_batch(fn, faces, textures, background) -> None:
    shapes = {"faces": faces.shape[:-3], "background_color": background.shape[:-1]}
    if textures is not None:
        shapes["textures"] = textures.shape[:-5]
    _checks.broadcast_batch(fn, **shapes)


def _available_memory(device=None) -> int | None:
    """Bytes the default device can hold: the GPU's memory limit, or the machine's physical memory on CPU."""
    try:
        device = device or jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"])
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


# Bytes per internal pixel the forward keeps for the backward: face index, weights, depth, rgb, and the
# images derived from them (alpha, the flipped/pooled outputs and their cotangents), rounded up.
_BYTES_PER_PIXEL = 64


def _check_memory(fn, image_size, S, faces, textures, background) -> None:
    batch = jnp.broadcast_shapes(faces.shape[:-3], background.shape[:-1],
                                 textures.shape[:-5] if textures is not None else ())
    need = int(np.prod(batch, dtype=np.int64)) * S * S * _BYTES_PER_PIXEL
    have = _available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{fn}: image_size={image_size} (internal {S}x{S}) with batch shape {tuple(batch)} needs about "
            f"{need / 2**30:.1f} GiB for the rasterizer's buffers, more than the {have / 2**30:.1f} GiB "
            f"available; use a smaller image_size or batch, or anti_aliasing=False")


def rasterize(
    faces,
    textures,
    image_size: int = 256,
    anti_aliasing: bool = True,
    near: float = 0.1,
    far: float = 100.0,
    eps: float = 1e-4,
    background_color=(0.0, 0.0, 0.0),
) -> jax.Array:
    """RGB image ``[..., H, W, 3]`` float32 of textured faces in NDC; see :func:`rasterize_rgbad`.

    Args: faces float ``[..., F, 3, 3]``; textures float ``[..., F, T, T, T, 3]``; the rest as rasterize_rgbad.
    """
    if textures is None:
        raise TypeError("rasterize: textures is required ([..., F, T, T, T, 3]); use rasterize_silhouettes "
                        "for coverage only")
    return rasterize_rgbad(faces, textures, image_size, anti_aliasing, near, far, eps, background_color,
                           return_rgb=True, return_alpha=False, return_depth=False).rgb


def rasterize_silhouettes(faces, image_size: int = 256, anti_aliasing: bool = True, near: float = 0.1,
                          far: float = 100.0, eps: float = 1e-4) -> jax.Array:
    """Coverage (alpha) image ``[..., H, W]`` float32 of faces ``[..., F, 3, 3]`` in NDC."""
    return rasterize_rgbad(faces, None, image_size, anti_aliasing, near, far, eps,
                           return_rgb=False, return_alpha=True, return_depth=False).alpha


def rasterize_depth(faces, image_size: int = 256, anti_aliasing: bool = True, near: float = 0.1,
                    far: float = 100.0, eps: float = 1e-4) -> jax.Array:
    """Depth image ``[..., H, W]`` float32 (camera-space z, ``far`` where empty) of faces in NDC."""
    return rasterize_rgbad(faces, None, image_size, anti_aliasing, near, far, eps,
                           return_rgb=False, return_alpha=False, return_depth=True).depth
