"""Scale-out helpers: shard a batch of views or meshes over devices, and export a jitted render.

Sharding (``jax.shard_map``): :func:`shard_batch` turns a per-item function (one view, one mesh) into a function
of a batch whose leading axis is split over a 1-D device mesh; arguments with ``in_axes=None`` (e.g. the mesh
when the views are batched) are replicated. Inside each shard the items are ``jax.vmap``-ed, which lowers to ONE
kernel launch per device. Gradients flow through ``shard_map``: the cotangent of a replicated argument is
summed over the shards by JAX.

Export (``jax.export``): the rasterizer is a custom call into this package's kernel library, so an export must
disable JAX's custom-call safety check for the two targets. ``import jaxnmr`` registers the kernels, so a loading
process needs nothing else before ``jax.export.deserialize``. ``jax.export`` serialisation needs the
``flatbuffers`` package. With ``with_gradient=True`` the custom VJP is serialised too (``vjp_order=1``), so
``jax.grad`` / ``jax.value_and_grad`` of the reloaded function works without jaxnmr's Python code.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax import export
from jax.sharding import Mesh, PartitionSpec as P

from jaxnmr import _checks


__all__ = ["TARGETS", "device_mesh", "shard_batch", "render_views_sharded", "export_render", "load_exported"]

#: The XLA FFI targets the renderer's compiled code calls (same names on every platform).
TARGETS = ("jaxnmr_rasterize_forward", "jaxnmr_rasterize_backward", "jaxnmr_rasterize_points_forward",
           "jaxnmr_rasterize_points_backward")

# jax >= 0.7 has jax.shard_map (check_vma=); older versions only jax.experimental.shard_map (check_rep=).
_shard_map = getattr(jax, "shard_map", None)
if _shard_map is None:  # pragma: no cover - jax < 0.7
    from jax.experimental.shard_map import shard_map as _shard_map


def device_mesh(devices: Sequence[jax.Device] | None = None, axis_name: str = "batch") -> Mesh:
    """A 1-D :class:`jax.sharding.Mesh` over ``devices`` (default: all of ``jax.devices()``)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (axis_name,))


def shard_batch(fn: Callable, mesh: Mesh, in_axes: int | None | Sequence[int | None] = 0,
                axis_name: str | None = None) -> Callable:
    """Maps ``fn`` (written for ONE item) over a batch split across the devices of ``mesh``.

    Args:
      fn: a function of positional array arguments (pytrees allowed) for a single view or mesh.
      mesh: a device mesh (:func:`device_mesh`); its axis ``axis_name`` (default: its first axis) is used.
      in_axes: per argument, 0 if it is batched along its leading axis (split over the devices) or None if it
        is shared by all items (replicated); one value applies to all arguments. Like ``jax.vmap``'s.

    Returns a function of the same arguments whose outputs have the batch as their leading axis, sharded over
    ``mesh`` along ``axis_name``. The batch size must be divisible by the number of devices on that axis.
    Differentiable; wrap it in ``jax.jit`` as usual.
    """
    axis_name = axis_name or mesh.axis_names[0]

    def sharded(*args):
        axes = in_axes if isinstance(in_axes, (list, tuple)) else (in_axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"shard_batch: in_axes has {len(axes)} entries for {len(args)} arguments")
        if any(a not in (0, None) for a in axes):
            raise ValueError(f"shard_batch: in_axes entries must be 0 or None, got {tuple(axes)}")
        specs = tuple(P(axis_name) if a == 0 else P() for a in axes)
        local = jax.vmap(fn, in_axes=tuple(axes))
        return _shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(axis_name))(*args)

    return sharded


def render_views_sharded(renderer, vertices, faces, textures, eyes, mesh: Mesh, axis_name: str | None = None,
                         method: str = "render"):
    """Renders one mesh from a batch of eyes ``[B, 3]``, the views split over ``mesh``'s devices.

    ``method`` is a :class:`jaxnmr.Renderer` method name: "render" (needs textures), "render_rgbad",
    "render_silhouettes" or "render_depth" (``textures`` is ignored for the last two). Returns the method's
    output with a leading batch axis ``B``, sharded over the devices; equals
    ``jax.vmap(lambda e: getattr(renderer.replace(eye=e), method)(...))(eyes)``.
    """
    _checks.camera_with_eye("render_views_sharded", renderer)
    shaded = method in ("render", "render_rgbad")

    def one_view(eye, renderer, vertices, faces, textures):
        r = renderer.replace(eye=eye)
        if shaded:
            return getattr(r, method)(vertices, faces, textures)
        return getattr(r, method)(vertices, faces)

    fn = shard_batch(one_view, mesh, in_axes=(0, None, None, None, None), axis_name=axis_name)
    return fn(eyes, renderer, vertices, faces, textures if shaded else None)


def _disabled_checks():
    return [export.DisabledSafetyCheck.custom_call(t) for t in TARGETS]


def export_render(fn: Callable, *example_args: Any, with_gradient: bool = True,
                  platforms: Sequence[str] | None = None) -> bytes:
    """Exports ``jax.jit(fn)`` traced at ``example_args`` (arrays or ``jax.ShapeDtypeStruct``s) and serialises it.

    ``with_gradient=True`` also serialises its VJP (``vjp_order=1``), so the reloaded function can be
    differentiated once. ``platforms`` (e.g. ``("cpu", "cuda")``) defaults to the current backend; the
    loading process needs a compiled kernel for the platform it runs on. Requires the ``flatbuffers``
    package. Returns the bytes to store; load them with :func:`load_exported`.
    """
    jitted = fn if hasattr(fn, "trace") else jax.jit(fn)
    exp = export.export(jitted, platforms=platforms, disabled_checks=_disabled_checks())(*example_args)
    return bytes(exp.serialize(vjp_order=1 if with_gradient else 0))


def load_exported(blob: bytes | bytearray) -> export.Exported:
    """Deserialises :func:`export_render`'s bytes (``jax.export.deserialize``).

    Call the result's ``.call(*args)`` (inside or outside ``jax.jit``); ``jax.grad`` of it works when the
    export had ``with_gradient=True``. The kernels it calls were registered when :mod:`jaxnmr` was imported.
    """
    return export.deserialize(bytearray(blob))
