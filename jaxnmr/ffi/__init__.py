"""The rasterization primitive: finds the compiled kernel libraries, registers their XLA FFI targets, and wraps
them as ``jax.ffi.ffi_call``s.

This module is thin on purpose: it loads, registers and calls. What a pixel shows is decided in ``raster.h``;
shapes are checked by the callers in :mod:`jaxnmr.rasterizer` (and again, defensively, by the kernels).

Batching: every array has the same number ``L`` of leading dimensions (callers prepend size-1 dimensions),
each of which is 1 or the output's; the kernels broadcast them, and the outputs' leading dimensions are the
broadcast shape. Under ``jax.vmap`` the calls use ``vmap_method="expand_dims"``, so any number of nested
vmaps lowers to ONE kernel launch.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _vma
from jaxnmr.ffi import buildinfo

__all__ = ["ForwardMaps", "PointFragments", "KernelStatus", "kernel_available", "kernel_status",
           "registered_platforms", "rasterize_forward", "rasterize_backward", "rasterize_points_forward",
           "rasterize_points_backward", "library_path", "CUDA_INSTALL_COMMAND", "MAX_POINTS_PER_PIXEL"]

_CPU_LIBRARY = "libjaxnmr_cpu.so"
_CUDA_LIBRARY = "libjaxnmr_cuda.so"
# The one command that gives a JAX GPU user the CUDA kernels, from a source folder (README, "GPU").
CUDA_INSTALL_COMMAND = buildinfo.CUDA_INSTALL_COMMAND
# platform -> (library file, {target name: exported symbol}, XLA platform name). The same target names are
# registered for every platform; XLA picks the handler of the platform it compiles for.
_LIBRARIES = {
    "cpu": (_CPU_LIBRARY, {"jaxnmr_rasterize_forward": "JaxnmrRasterizeForward",
                           "jaxnmr_rasterize_backward": "JaxnmrRasterizeBackward",
                           "jaxnmr_rasterize_points_forward": "JaxnmrRasterizePointsForward",
                           "jaxnmr_rasterize_points_backward": "JaxnmrRasterizePointsBackward"}, "cpu"),
    "cuda": (_CUDA_LIBRARY, {"jaxnmr_rasterize_forward": "JaxnmrRasterizeForwardCuda",
                             "jaxnmr_rasterize_backward": "JaxnmrRasterizeBackwardCuda",
                             "jaxnmr_rasterize_points_forward": "JaxnmrRasterizePointsForwardCuda",
                             "jaxnmr_rasterize_points_backward": "JaxnmrRasterizePointsBackwardCuda"}, "CUDA"),
}


class ForwardMaps(NamedTuple):
    """The forward pass's per-pixel maps at internal resolution S, internal orientation (row 0 = bottom).

    face_index: int32 ``[..., S, S]``, -1 where nothing is drawn.
    weights: float32 ``[..., S, S, 3]``, clamped and renormalised screen-space barycentrics (0 where empty), or
      None when the forward ran with ``with_maps=False``.
    depth: float32 ``[..., S, S]``, interpolated camera-space z (``far`` where empty), or None likewise.
    rgb: float32 ``[..., S, S, 3]`` sampled texture with the background composited, or None without textures.
    """

    face_index: jax.Array
    weights: jax.Array
    depth: jax.Array
    rgb: jax.Array | None


jax.export.register_namedtuple_serialization(ForwardMaps, serialized_name="jaxnmr.ForwardMaps")

# The most points a pixel keeps (docs/points.md, "Fragments"); the kernels size per-pixel storage by it.
MAX_POINTS_PER_PIXEL = 64


class PointFragments(NamedTuple):
    """The K nearest points covering each pixel (docs/points.md, "Fragments"), slots nearest first.

    index: int32 ``[..., S, S, K]``, the point in each slot, -1 where empty.
    depth: float32 ``[..., S, S, K]``, that point's z (camera depth), ``far`` where empty.
    dist2: float32 ``[..., S, S, K]``, its squared NDC distance to the pixel centre, -1 where empty.
    """

    index: jax.Array
    depth: jax.Array
    dist2: jax.Array


jax.export.register_namedtuple_serialization(PointFragments, serialized_name="jaxnmr.PointFragments")


class KernelStatus(NamedTuple):
    """Whether a platform's kernel library was found, loaded and registered with XLA, and if not, why.

    available: True when the FFI targets are registered for the platform.
    path: where the library is (or was looked for).
    reason: empty when available; else what went wrong, with the underlying error's message.
    """

    available: bool
    path: pathlib.Path
    reason: str


def library_path(name: str = _CPU_LIBRARY):
    """Path of a compiled kernel library shipped inside the package (works for editable installs too).

    The environment variable ``JAXNMR_CPU_LIBRARY`` replaces the CPU library (CI uses it to load a build
    instrumented with AddressSanitizer and UndefinedBehaviorSanitizer).
    """
    override = os.environ.get("JAXNMR_CPU_LIBRARY") if name == _CPU_LIBRARY else None
    return pathlib.Path(override) if override else importlib.resources.files(__name__) / name


def _load(platform: str) -> KernelStatus:
    """Loads one platform's library and registers its targets. Cheap: no JAX back end is initialised (XLA
    queues registrations for a platform whose client does not exist yet), and loading the CUDA library needs
    no GPU or driver."""
    library, targets, xla_platform = _LIBRARIES[platform]
    path = pathlib.Path(str(library_path(library)))
    if not path.is_file():
        return KernelStatus(False, path, _missing(platform, path))
    try:
        handle = ctypes.CDLL(str(path))
        for target, symbol in targets.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(handle, symbol)), platform=xla_platform)
    except (OSError, AttributeError) as e:
        why = f"{path} could not be loaded: {e}"
        if platform == "cuda":
            why += "; rebuild it with: " + buildinfo.cuda_install_command()
        return KernelStatus(False, path, why)
    return KernelStatus(True, path, "")


def _missing(platform: str, path: pathlib.Path) -> str:
    """Why a library is not there, from the build record (build_info.json) where there is one."""
    record = (buildinfo.build_info() or {}).get(platform, {})
    if record.get("built") is False:
        why = f"{path.name} was not built when jaxnmr was installed: {record.get('reason')}"
    elif record.get("built"):
        why = f"{path.name} was built when jaxnmr was installed but is no longer in {path.parent}"
    else:
        why = f"{path.name} is not in {path.parent} (and there is no build record beside it)"
    if platform == "cuda":
        why += "; to build it without a CUDA toolkit: " + buildinfo.cuda_install_command()
    return why


_STATUS: dict[str, KernelStatus] = {platform: _load(platform) for platform in _LIBRARIES}


def _platform_key(platform: str | None) -> str:
    platform = (platform or jax.default_backend()).lower()
    return "cuda" if platform == "gpu" else platform


def kernel_status(platform: str | None = None) -> KernelStatus:
    """:class:`KernelStatus` of ``platform`` ("cpu", "cuda" or "gpu"; default: JAX's default back end).

    The libraries are loaded and registered when :mod:`jaxnmr` is imported; this only reports the outcome.
    A platform jaxnmr has no kernels for (e.g. "tpu", "rocm") reports ``available=False`` with the reason.
    """
    key = _platform_key(platform)
    if key not in _STATUS:
        return KernelStatus(False, pathlib.Path(), f"jaxnmr has no compiled kernels for the '{key}' platform")
    return _STATUS[key]


def kernel_available(platform: str | None = None) -> bool:
    """True if the compiled kernel for ``platform`` ("cpu", "cuda"/"gpu"; default: JAX's default back end) is
    registered with XLA. It says what was built and loaded, not whether a device of that kind is present."""
    return kernel_status(platform).available


def registered_platforms() -> tuple[str, ...]:
    """The platforms ("cpu", "cuda") whose kernels are registered with XLA, e.g. ``("cpu",)``."""
    return tuple(p for p in _LIBRARIES if kernel_available(p))


def _leading(x: jax.Array, trailing: int) -> tuple[int, ...]:
    return tuple(x.shape[: x.ndim - trailing])


def _with_leading(x: jax.Array, trailing: int, rank: int) -> jax.Array:
    """Prepends size-1 dimensions so that ``x`` has ``rank`` leading dimensions before its ``trailing`` ones."""
    missing = rank - (x.ndim - trailing)
    return x.reshape((1,) * missing + x.shape) if missing else x


def _varying_call(call):
    """``call`` (an ``ffi_call``) under ``shard_map``'s checks: its operands are cast to the union of their varying
    manual axes (an ``ffi_call`` requires them equal) and its results are given that union (see
    :mod:`jaxnmr._vma`). Outside ``shard_map`` it is ``call`` itself."""

    def wrapped(*operands, **attributes):
        axes = _vma.varying_axes(*operands)
        if not axes:
            return call(*operands, **attributes)
        results = call(*(_vma.to_varying(x, axes) for x in operands), **attributes)
        return tuple(_vma.to_varying(r, axes) for r in results)

    return wrapped


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
    target: str = "jaxnmr_rasterize_forward",
) -> ForwardMaps:
    """Runs the forward kernel (docs/rasterizer.md, "Per-face setup", "Visibility" and "Texture sampling") at
    internal resolution ``image_size``.

    Args:
      face_vertices: float32 ``[..., F, 3, 3]`` vertices of each face in NDC (x, y in [-1, 1], z = camera
        depth).
      textures: float32 ``[..., F, T, T, T, 3]`` or None (then no rgb is computed).
      background: float32 ``[..., 3]`` colour of empty pixels.
      image_size: internal resolution S (already doubled for anti-aliasing).
      near, far: depth range; eps: texture clamp regulariser.
      with_maps: also return the weights and depth maps. A silhouette needs only the face index (its backward
        too), and not writing the other maps saves 16 of every 20 bytes per pixel. Required with textures.
      target: the FFI target called. The tests also call the CUDA back end's work items run serially on the CPU
        (``libjaxnmr_grid_cpu.so``), which take the same arguments.

    Leading dimensions broadcast numpy-style. Inputs are assumed validated (see :mod:`jaxnmr.rasterizer`).
    """
    with_rgb = textures is not None
    if with_rgb and not with_maps:
        raise ValueError("rasterize_forward: textures need with_maps=True (texture sampling reads the maps)")
    if textures is None:
        textures = jnp.zeros((1, 2, 2, 2, 3), jnp.float32)
    rank = max(face_vertices.ndim - 3, textures.ndim - 5, background.ndim - 1)
    face_vertices = _with_leading(face_vertices, 3, rank)
    textures = _with_leading(textures, 5, rank)
    background = _with_leading(background, 1, rank)
    batch = jnp.broadcast_shapes(
        _leading(face_vertices, 3), _leading(textures, 5) if with_rgb else (), _leading(background, 1)
    )
    S = int(image_size)
    rgb_side = S if with_rgb else 0
    map_side = S if with_maps else 0
    out_types = (
        jax.ShapeDtypeStruct(batch + (S, S), jnp.int32),
        jax.ShapeDtypeStruct(batch + (map_side, map_side, 3), jnp.float32),
        jax.ShapeDtypeStruct(batch + (map_side, map_side), jnp.float32),
        jax.ShapeDtypeStruct(batch + (rgb_side, rgb_side, 3), jnp.float32),
    )
    call = _varying_call(jax.ffi.ffi_call(target, out_types, vmap_method="expand_dims"))
    face_index, weights, depth, rgb = call(
        face_vertices,
        textures,
        background,
        image_size=np.int32(S),
        near=np.float32(near),
        far=np.float32(far),
        eps=np.float32(eps),
        with_rgb=np.int32(with_rgb),
        with_maps=np.int32(with_maps),
    )
    return ForwardMaps(face_index, weights if with_maps else None, depth if with_maps else None,
                       rgb if with_rgb else None)


def rasterize_backward(
    face_vertices: jax.Array,
    textures: jax.Array | None,
    maps: ForwardMaps,
    g_rgb: jax.Array | None,
    g_alpha: jax.Array | None,
    g_depth: jax.Array | None,
    *,
    image_size: int,
    eps: float,
    want_faces: bool = True,
    want_textures: bool = True,
    target: str = "jaxnmr_rasterize_backward",
) -> tuple[jax.Array, jax.Array | None]:
    """Runs the backward kernel: the approximate edge gradient of rgb and alpha, the exact depth gradient and the
    texture gradient, summed (docs/rasterizer.md, "Approximate gradient", "Texture gradient" and "Depth
    gradient").

    Args:
      face_vertices, textures: the forward's inputs (``[..., F, 3, 3]``, ``[..., F, T, T, T, 3]`` or None).
      maps: the forward's :class:`ForwardMaps`.
      g_rgb ``[..., S, S, 3]``, g_alpha ``[..., S, S]``, g_depth ``[..., S, S]``: cotangents of the internal
        (unflipped, full-resolution) images, or None where zero.
      image_size: internal resolution S. eps: the rasterizer's eps.
      want_faces, want_textures: which gradients are needed (``want_faces``: that of the face vertices); the
        kernel skips the work of the others (the face-vertex gradient is then zero, the texture gradient None).
      target: the FFI target called (as in :func:`rasterize_forward`).
    Returns:
      ``g_face_vertices [B..., F, 3, 3]`` and ``g_textures [B..., F, T, T, T, 3]`` (None without textures or
      without an rgb cotangent), where ``B...`` is the broadcast of all inputs' leading dims (the cotangents' batch
      shape wins, as under ``jax.jacrev``).
    """
    S = int(image_size)
    with_rgb = textures is not None
    has = {"rgb": g_rgb is not None, "alpha": g_alpha is not None, "depth": g_depth is not None}
    if has["rgb"] and not with_rgb:
        raise ValueError("rasterize_backward: an rgb cotangent needs textures")
    texture_grad = want_textures and with_rgb and has["rgb"]
    need_maps = texture_grad or (want_faces and has["depth"])  # what reads the weights and depth maps
    if need_maps and (maps.weights is None or maps.depth is None):
        raise ValueError("rasterize_backward: depth and texture gradients need the forward's maps (with_maps)")
    placeholder = lambda *shape: jnp.zeros(shape, jnp.float32)
    args = [
        (face_vertices, 3),
        (textures if with_rgb else placeholder(1, 2, 2, 2, 3), 5),
        (maps.face_index, 2),
        (maps.weights if need_maps else placeholder(0, 0, 3), 3),
        (maps.depth if need_maps else placeholder(0, 0), 2),
        (maps.rgb if has["rgb"] else placeholder(1, 1, 3), 3),
        (g_rgb if has["rgb"] else placeholder(1, 1, 3), 3),
        (g_alpha if has["alpha"] else placeholder(1, 1), 2),
        (g_depth if has["depth"] else placeholder(1, 1), 2),
    ]
    rank = max(x.ndim - trailing for x, trailing in args)
    args = [(_with_leading(x, trailing, rank), trailing) for x, trailing in args]
    used = [args[0], args[2]] + ([args[3], args[4]] if need_maps else [])
    used += [args[1]] if texture_grad else []
    used += [args[5], args[6]] if has["rgb"] else []
    used += [args[7]] if has["alpha"] else []
    used += [args[8]] if has["depth"] else []
    batch = jnp.broadcast_shapes(*(_leading(x, trailing) for x, trailing in used))
    F = face_vertices.shape[-3]
    tex_shape = textures.shape[-5:] if texture_grad else (0, 1, 1, 1, 3)
    out_types = (
        jax.ShapeDtypeStruct(batch + (F, 3, 3), jnp.float32),
        jax.ShapeDtypeStruct(batch + tex_shape, jnp.float32),
    )
    call = _varying_call(jax.ffi.ffi_call(target, out_types, vmap_method="expand_dims"))
    g_face_vertices, g_textures = call(
        *(x for x, _ in args),
        image_size=np.int32(S),
        eps=np.float32(eps),
        with_rgb=np.int32(with_rgb),
        has_g_rgb=np.int32(has["rgb"]),
        has_g_alpha=np.int32(has["alpha"]),
        has_g_depth=np.int32(has["depth"]),
        want_faces=np.int32(want_faces),
        want_textures=np.int32(want_textures),
    )
    return g_face_vertices, (g_textures if texture_grad else None)


def rasterize_points_forward(
    points: jax.Array,
    radius: jax.Array,
    *,
    image_size: int,
    points_per_pixel: int,
    near: float,
    far: float,
    target: str = "jaxnmr_rasterize_points_forward",
) -> PointFragments:
    """Runs the point forward kernel (docs/points.md, "Fragments") at internal resolution ``image_size``.

    Args:
      points: float32 ``[..., P, 3]`` in NDC (x, y across the image, z the camera depth).
      radius: float32 ``[..., 1]`` (one radius for all) or ``[..., P]`` (per point), NDC units.
      image_size: internal resolution S. points_per_pixel: K, in [1, MAX_POINTS_PER_PIXEL].
      near, far: only points with near < z < far are drawn.
      target: the FFI target called (the tests also call the CUDA back end's work items run serially on the
        CPU, ``libjaxnmr_grid_cpu.so``, which take the same arguments).
    Returns:
      :class:`PointFragments` of ``[*batch, S, S, K]`` arrays, row 0 at the bottom; ``batch`` is the broadcast of
      the inputs' leading dims. Inputs are assumed validated (see :mod:`jaxnmr.points`).
    """
    rank = max(points.ndim - 2, radius.ndim - 1)
    points = _with_leading(points, 2, rank)
    radius = _with_leading(radius, 1, rank)
    batch = jnp.broadcast_shapes(_leading(points, 2), _leading(radius, 1))
    S, K = int(image_size), int(points_per_pixel)
    out_types = (
        jax.ShapeDtypeStruct(batch + (S, S, K), jnp.int32),
        jax.ShapeDtypeStruct(batch + (S, S, K), jnp.float32),
        jax.ShapeDtypeStruct(batch + (S, S, K), jnp.float32),
    )
    call = _varying_call(jax.ffi.ffi_call(target, out_types, vmap_method="expand_dims"))
    index, depth, dist2 = call(points, radius, image_size=np.int32(S), points_per_pixel=np.int32(K),
                               near=np.float32(near), far=np.float32(far))
    return PointFragments(index, depth, dist2)


def rasterize_points_backward(
    points: jax.Array,
    index: jax.Array,
    g_depth: jax.Array | None,
    g_dist2: jax.Array | None,
    *,
    image_size: int,
    target: str = "jaxnmr_rasterize_points_backward",
) -> jax.Array:
    """Runs the point backward kernel (docs/points.md, "Gradient").

    Args:
      points: float32 ``[..., P, 3]``, the forward's points. index: int32 ``[..., S, S, K]``, the forward's.
      g_depth, g_dist2: float32 ``[..., S, S, K]`` cotangents of depth and dist2 (internal orientation), or None
        where zero.
      image_size: internal resolution S. target: as in :func:`rasterize_points_forward`.
    Returns:
      ``g_points`` float32 ``[*batch, P, 3]``, batch the broadcast of all inputs' leading dims.
    """
    S = int(image_size)
    K = index.shape[-1]
    has_depth, has_dist2 = g_depth is not None, g_dist2 is not None
    placeholder = jnp.zeros((1, 1, 1), jnp.float32)
    args = [(points, 2), (index, 3), (g_depth if has_depth else placeholder, 3),
            (g_dist2 if has_dist2 else placeholder, 3)]
    rank = max(x.ndim - trailing for x, trailing in args)
    args = [(_with_leading(x, trailing, rank), trailing) for x, trailing in args]
    used = args[:2] + ([args[2]] if has_depth else []) + ([args[3]] if has_dist2 else [])
    batch = jnp.broadcast_shapes(*(_leading(x, trailing) for x, trailing in used))
    P = points.shape[-2]
    out_types = (jax.ShapeDtypeStruct(batch + (P, 3), jnp.float32),)
    call = _varying_call(jax.ffi.ffi_call(target, out_types, vmap_method="expand_dims"))
    (g_points,) = call(*(x for x, _ in args), image_size=np.int32(S), points_per_pixel=np.int32(K),
                       has_g_depth=np.int32(has_depth), has_g_dist2=np.int32(has_dist2))
    return g_points
