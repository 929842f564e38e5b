"""The differentiable rasterization primitives: faces (shared by :mod:`jaxnmr.rasterizer` and
:mod:`jaxnmr.gbuffers`) and points (used by :mod:`jaxnmr.points`).

:func:`rasterize_maps` is the mesh's custom VJP: the forward kernel (or, on a platform without one, the
pure-``jnp`` reference) and NMR's approximate backward. :func:`rasterize_point_maps` is the points' (docs/points.md,
"Fragments" and "Gradient"). It works at internal resolution and orientation
(images ``[..., S, S(, C)]`` with row 0 at the bottom, NDC y = -1); the public entry points validate their
arguments, check the memory the buffers need (:func:`check_memory`), call it, and flip the rows
(:func:`flip_rows`). See docs/rasterizer.md, "Approximate gradient", for what the backward computes.
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

from jaxnmr import _vma, ffi, reference

# Largest internal resolution (2 x image_size with anti-aliasing) the kernels accept.
MAX_INTERNAL_SIZE = 32768

# Bytes per internal pixel the forward keeps for the backward: face index, weights, depth, rgb, and the
# images derived from them (alpha, the flipped/pooled outputs and their cotangents), rounded up.
BYTES_PER_PIXEL = 64


class Config(NamedTuple):
    """Static settings of one rasterization (hashable: a non-differentiable argument of the custom VJP)."""

    size: int  # internal resolution S
    near: float
    far: float
    eps: float
    rgb: bool
    alpha: bool
    depth: bool
    face_index: bool = False  # also return the int32 face-index map (no gradient), for jaxnmr.gbuffers


# ---------------------------------------------------------------------------------------------------------------
# Kernel or reference, per platform
# ---------------------------------------------------------------------------------------------------------------


def _reference_forward(face_vertices, textures, background, **settings) -> ffi.ForwardMaps:
    """The oracle's forward with the kernel's outputs: no weights and depth maps without ``with_maps``."""
    maps = reference.rasterize_forward(face_vertices, textures, background, **settings)
    return maps if settings["with_maps"] else maps._replace(weights=None, depth=None)


_IMPLEMENTATIONS = {
    "rasterize_forward": (ffi.rasterize_forward, _reference_forward),
    "rasterize_backward": (ffi.rasterize_backward, reference.rasterize_backward),
    "rasterize_points_forward": (ffi.rasterize_points_forward, reference.rasterize_points_forward),
    "rasterize_points_backward": (ffi.rasterize_points_backward, reference.rasterize_points_backward),
}


def per_platform(name: str, *args, **settings):
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
    warn_if_no_kernel()
    branch = {p: kernel_fn if ffi.kernel_available(p) else oracle_fn for p in ("cpu", "cuda")}
    # Other platforms (TPU, ROCm) get the reference where JAX runs on one; otherwise lowering for them fails
    # with XLA's "No FFI handler registered" (jaxnmr has no kernels there), without tracing the reference.
    if default_platform() not in ("cpu", "cuda"):
        default = oracle_fn
    else:
        default = kernel_fn if kernel_fn in branch.values() else oracle_fn
    rest = {p: fn for p, fn in branch.items() if fn is not default}
    if not rest:
        return default(*args)
    return jax.lax.platform_dependent(*args, default=default, **rest)


def default_platform() -> str:
    """The platform of JAX's default back end: "cpu", "cuda", "rocm", "tpu", ..."""
    platform = jax.devices()[0].client.platform.lower()
    return "cuda" if platform == "gpu" else platform


def warn_if_no_kernel() -> None:
    """Warns (once per platform and reason) when JAX's default back end has no compiled kernel."""
    platform = default_platform()
    status = ffi.kernel_status(platform)
    if not status.available:
        warn_no_kernel(platform, status.reason)


@functools.cache
def warn_no_kernel(platform: str, reason: str) -> None:
    """The warning of :func:`warn_if_no_kernel` (cached: ``warn_no_kernel.cache_clear()`` re-arms it)."""
    warnings.warn(
        f"jaxnmr: no compiled rasterizer kernel for JAX's default back end ('{platform}'): {reason}. Work there "
        "uses the pure-jnp reference, which gives the same results but costs pixels x faces.",
        RuntimeWarning,
        stacklevel=4,
    )


# ---------------------------------------------------------------------------------------------------------------
# The custom VJP
# ---------------------------------------------------------------------------------------------------------------


def _value(x):
    return x.value if isinstance(x, CustomVJPPrimal) else x


def _outputs(config: Config, maps: ffi.ForwardMaps):
    """(rgb, alpha, depth) at internal resolution and orientation, None where not asked for; with
    ``config.face_index`` a fourth output, the int32 face-index map (its cotangent is ignored)."""
    alpha = (maps.face_index >= 0).astype(jnp.float32) if config.alpha else None
    images = (maps.rgb if config.rgb else None, alpha, maps.depth if config.depth else None)
    return images + (maps.face_index,) if config.face_index else images


def _forward(config: Config, face_vertices, textures, background) -> ffi.ForwardMaps:
    return per_platform(
        "rasterize_forward", face_vertices, textures if config.rgb else None, background,
        image_size=config.size, near=config.near, far=config.far, eps=config.eps,
        with_maps=config.rgb or config.depth,  # a silhouette (and its gradient) needs the face index alone
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def rasterize_maps(config: Config, face_vertices, textures, background):
    """The differentiable primitive: internal-resolution ``(rgb, alpha, depth)`` (plus the face-index map with
    ``config.face_index``), each None where ``config`` does not ask for it, with NMR's approximate gradient.

    Args:
      config: :class:`Config` (static).
      face_vertices: float32 ``[..., F, 3, 3]`` in NDC, validated by the caller.
      textures: float32 ``[..., F, T, T, T, 3]`` or None (required when ``config.rgb``).
      background: float32 ``[..., 3]``; it receives no gradient (as in NMR).
    """
    return _outputs(config, _forward(config, face_vertices, textures, background))


@jax.tree_util.register_static
class _Needs(NamedTuple):
    """Which inputs are differentiated (known at trace time; a static part of the residuals)."""

    face_vertices: bool
    textures: bool


def _perturbed(x) -> bool:
    return bool(x.perturbed) if isinstance(x, CustomVJPPrimal) else x is not None


def _rasterize_fwd(config, face_vertices, textures, background):
    needs = _Needs(_perturbed(face_vertices), textures is not None and _perturbed(textures))
    face_vertices, textures, background = _value(face_vertices), _value(textures), _value(background)
    maps = _forward(config, face_vertices, textures, background)
    return _outputs(config, maps), (face_vertices, textures, background, maps, needs)


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
    face_vertices, textures, background, maps, needs = residuals
    g_rgb, g_alpha, g_depth = (_cotangent(c) for c in cotangents[:3])  # a face-index map has none
    g_textures = None
    if (g_rgb is None and g_alpha is None and g_depth is None) or not (needs.face_vertices or needs.textures):
        g_vertices = jnp.zeros_like(face_vertices)
    else:
        g_vertices, g_textures = per_platform(
            "rasterize_backward", face_vertices, textures if config.rgb else None, maps, g_rgb, g_alpha, g_depth,
            image_size=config.size, eps=config.eps, want_faces=needs.face_vertices, want_textures=needs.textures,
        )
        g_vertices = (_sum_to_shape(g_vertices, face_vertices.shape) if needs.face_vertices
                      else jnp.zeros_like(face_vertices))
    if textures is not None:
        g_textures = jnp.zeros_like(textures) if g_textures is None else _sum_to_shape(g_textures, textures.shape)
    # The background receives no gradient (as in NMR). Under shard_map each cotangent takes its primal's type.
    return _vma.like(g_vertices, face_vertices), _vma.like(g_textures, textures), jnp.zeros_like(background)


rasterize_maps.defvjp(_rasterize_fwd, _rasterize_bwd, symbolic_zeros=True)


# ---------------------------------------------------------------------------------------------------------------
# Points
# ---------------------------------------------------------------------------------------------------------------


class PointConfig(NamedTuple):
    """Static settings of one point rasterization (hashable: a non-differentiable argument of the custom VJP)."""

    size: int  # internal resolution S
    points_per_pixel: int  # K
    near: float
    far: float


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def rasterize_point_maps(config: PointConfig, points, radius) -> ffi.PointFragments:
    """The differentiable point primitive: :class:`jaxnmr.ffi.PointFragments` ``[..., S, S, K]`` at internal
    orientation (row 0 at the bottom), with gradients to ``points`` through depth and dist2 (docs/points.md,
    "Gradient").

    Args:
      config: :class:`PointConfig` (static).
      points: float32 ``[..., P, 3]`` in NDC, validated by the caller.
      radius: float32 ``[..., 1]`` or ``[..., P]`` (NDC units); it receives no gradient here (the slots a point
        fills are piecewise constant in it); the compositing weights, which divide by it, give it one.
    """
    return _point_forward(config, points, radius)


def _point_forward(config: PointConfig, points, radius) -> ffi.PointFragments:
    return per_platform("rasterize_points_forward", points, radius, image_size=config.size,
                        points_per_pixel=config.points_per_pixel, near=config.near, far=config.far)


def _points_fwd(config, points, radius):
    points, radius = _value(points), _value(radius)
    fragments = _point_forward(config, points, radius)
    return fragments, (points, radius, fragments.index)


def _points_bwd(config, residuals, cotangents):
    points, radius, index = residuals
    g_depth, g_dist2 = _cotangent(cotangents.depth), _cotangent(cotangents.dist2)
    if g_depth is None and g_dist2 is None:
        g_points = jnp.zeros_like(points)
    else:
        g_points = per_platform("rasterize_points_backward", points, index, g_depth, g_dist2,
                                image_size=config.size)
        g_points = _sum_to_shape(g_points, points.shape)
    return _vma.like(g_points, points), jnp.zeros_like(radius)


rasterize_point_maps.defvjp(_points_fwd, _points_bwd, symbolic_zeros=True)


# ---------------------------------------------------------------------------------------------------------------
# Orientation and memory
# ---------------------------------------------------------------------------------------------------------------


def flip_rows(image: jax.Array, channels: bool) -> jax.Array:
    """Reverses the row axis (internal row 0 = bottom -> output row 0 = top); ``[..., S, S(, C)]``.

    See docs/conventions.md, "Output orientation".
    """
    return jnp.flip(image, axis=-3 if channels else -2)


def available_memory(device=None) -> int | None:
    """Bytes the default device can hold: the GPU's memory limit, or the machine's physical memory on CPU."""
    try:
        device = device or jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"])
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def check_memory(fn: str, image_size: int, S: int, face_vertices, textures, background) -> None:
    """Raises ValueError (naming ``fn``) when the buffers of a rasterization at internal resolution ``S`` over
    the inputs' broadcast batch would not fit in :func:`available_memory`."""
    batch = jnp.broadcast_shapes(face_vertices.shape[:-3], background.shape[:-1],
                                 textures.shape[:-5] if textures is not None else ())
    check_bytes(fn, image_size, S, batch, BYTES_PER_PIXEL)


def check_bytes(fn: str, image_size: int, S: int, batch: tuple, bytes_per_pixel: int) -> None:
    """Raises ValueError (naming ``fn``) when ``bytes_per_pixel`` at internal resolution ``S`` over the batch shape
    ``batch`` would not fit in :func:`available_memory`."""
    need = int(np.prod(batch, dtype=np.int64)) * S * S * bytes_per_pixel
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{fn}: image_size={image_size} (internal {S}x{S}) with batch shape {tuple(batch)} needs about "
            f"{need / 2**30:.1f} GiB for the rasterizer's buffers, more than the {have / 2**30:.1f} GiB "
            f"available; use a smaller image_size or batch, or anti_aliasing=False")
