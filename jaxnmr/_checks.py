"""Trace-time input validation shared by the public functions.

Every check runs on shapes and dtypes only (never on traced values), so it works under ``jit`` and ``vmap`` and
fails before anything is compiled. Messages name the function, the argument, what was expected and what was
given.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _shape_pattern(trailing: Sequence[str | int]) -> str:
    return "[..., " + ", ".join(str(t) for t in trailing) + "]"


def _as_array(fn: str, name: str, x, trailing, kind: str, dtype, what: str):
    """Shared body of float_array / index_array: dtype family check, cast, trailing-shape check."""
    if x is None:
        raise TypeError(f"{fn}: {name} is required, got None")
    given = getattr(x, "dtype", None)
    if given is None:  # Python scalars, lists and tuples
        x = np.asarray(x)
        given = x.dtype
        if kind == "floating" and given.kind in "iu" and name not in _INT_FORBIDDEN:
            x = x.astype(np.float32)  # literals such as (0, 0, 0) for a colour or an eye
            given = x.dtype
    if not jnp.issubdtype(given, getattr(jnp, kind)):
        raise TypeError(f"{fn}: {name} must be {what} {_shape_pattern(trailing)}, got dtype {given}")
    x = jnp.asarray(x, dtype)
    check_trailing(fn, name, x.shape, trailing)
    return x


# Geometry arguments that are never built from integer Python literals: ints there mean a mix-up (e.g. face
# indices passed as vertices), so they are an error rather than a silent cast.
_INT_FORBIDDEN = {"vertices", "faces", "face_vertices", "textures"}


def float_array(fn: str, name: str, x, trailing: Sequence[str | int]) -> jnp.ndarray:
    """``x`` as float32 with shape ``[..., *trailing]``; integer entries of ``trailing`` are fixed sizes.

    Floating dtypes (float16/32/64, bfloat16) are cast to float32; integer arrays, bools and objects are a
    TypeError, since a silent cast would hide a mix-up of, e.g., vertices and face indices. Python int
    literals are accepted for settings such as colours and eyes.
    """
    return _as_array(fn, name, x, trailing, "floating", jnp.float32, "a floating-point array")


def index_array(fn: str, name: str, x, trailing: Sequence[str | int]) -> jnp.ndarray:
    """``x`` as int32 with shape ``[..., *trailing]``; must have an integer dtype."""
    return _as_array(fn, name, x, trailing, "integer", jnp.int32, "an integer array of vertex indices")


def check_trailing(fn: str, name: str, shape: tuple, trailing: Sequence[str | int]) -> None:
    """Raises ValueError unless ``shape`` ends with ``trailing`` (ints are fixed sizes, strings are free)."""
    if len(shape) < len(trailing) or any(
        isinstance(t, int) and s != t for s, t in zip(shape[len(shape) - len(trailing):], trailing)
    ):
        raise ValueError(f"{fn}: {name} must have shape {_shape_pattern(trailing)}, got shape {tuple(shape)}")


def positive_int(fn: str, name: str, value, maximum: int | None = None) -> int:
    """A Python int >= 1 (and <= maximum)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be a Python int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < 1 or (maximum is not None and value > maximum):
        bound = f"in [1, {maximum}]" if maximum is not None else ">= 1"
        raise ValueError(f"{fn}: {name} must be {bound}, got {value}")
    return value


def float_values(fn: str, name: str, x, trailing: Sequence[str | int]) -> jnp.ndarray:
    """:func:`float_array` that also takes lists and tuples of traced scalars (e.g. ``(x, y, z)`` of tracers)."""
    if isinstance(x, (list, tuple)) and any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x)):
        x = jnp.asarray(x, jnp.float32)
    return float_array(fn, name, x, trailing)


def camera_with_eye(fn: str, renderer) -> None:
    """Raises TypeError unless the renderer's camera has an ``eye`` (set per view by ``replace(eye=...)``): other
    cameras would ignore it and render one view many times."""
    camera = getattr(renderer, "camera", None)
    if not hasattr(camera, "eye"):
        raise TypeError(f"{fn}: sets each view's eye, but the renderer's camera ({type(camera).__name__}) has no eye; "
                        "use a LookAt or Look camera, or vmap your own function over cameras")


def static_bool(fn: str, name: str, value) -> bool:
    """A Python (or numpy) bool setting such as ``degrees``; anything else (an array, traced or not) is a
    TypeError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    what = f"an array of shape {tuple(np.shape(value))}" if hasattr(value, "shape") else repr(value)
    raise TypeError(f"{fn}: {name} must be a Python bool (a static setting), got {type(value).__name__} {what}")


def static_float(fn: str, name: str, value) -> float:
    """A concrete Python float (static configuration such as near, far, eps)."""
    try:
        return float(value)
    except Exception:  # tracers and arrays with more than one element
        raise TypeError(f"{fn}: {name} must be a Python number (a static setting), got {value!r}") from None


def one_of(fn: str, name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{fn}: {name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def textures_per_face(fn: str, textures, faces_shape: tuple, face_axis: int,
                      faces_name: str = "faces") -> jnp.ndarray:
    """``textures`` as float32 ``[..., F, T, T, T, 3]`` with one cube per face: F must equal
    ``faces_shape[face_axis]`` (``faces [..., F, 3]`` indices, or ``face_vertices [..., F, 3, 3]``
    coordinates: ``faces_name`` is the argument's name in the message)."""
    textures = float_array(fn, "textures", textures, ("F", "T", "T", "T", 3))
    num_faces = faces_shape[face_axis]
    if textures.shape[-5] != num_faces:
        raise ValueError(
            f"{fn}: textures must have one cube per face: {faces_name} has F={num_faces} "
            f"(shape {tuple(faces_shape)}), textures has {textures.shape[-5]} (shape {textures.shape})"
        )
    return textures


def depth_range(fn: str, near, far, eps, eps_name: str = "eps") -> tuple[float, float, float]:
    """Static near, far and eps as floats, with 0 <= near < far and eps > 0."""
    near, far, eps = static_float(fn, "near", near), static_float(fn, "far", far), static_float(fn, eps_name, eps)
    if not near < far:
        raise ValueError(f"{fn}: near must be smaller than far, got near={near}, far={far}")
    if not near >= 0:
        raise ValueError(f"{fn}: near must be >= 0 (depth is camera-space z; faces with a vertex at z <= 0, "
                         f"at or behind the camera plane, are not drawn), got near={near}")
    if not eps > 0:
        raise ValueError(f"{fn}: {eps_name} must be > 0, got {eps}")
    return near, far, eps


def indices_in_range(fn: str, faces, num_vertices: int, name: str = "faces") -> None:
    """With concrete (non-traced) ``faces`` ``[..., F, 3]``, raises ValueError on the first index outside
    ``[0, num_vertices)``, naming the face. Traced faces are not checked (the callers clamp them)."""
    if isinstance(faces, jax.core.Tracer):
        return
    f = np.asarray(faces)
    bad = (f < 0) | (f >= num_vertices)
    if bad.any():
        face = tuple(int(i) for i in np.argwhere(bad.any(axis=-1))[0])
        raise ValueError(
            f"{fn}: {name}{list(face)} = {f[face].tolist()} indexes outside the {num_vertices} vertices "
            f"(valid indices are 0..{num_vertices - 1})"
        )


def broadcast_batch(fn: str, what: str = "the leading (batch) dims of the arguments", **shapes) -> tuple:
    """The numpy broadcast of ``shapes`` (keyword: argument name -> shape); ValueError naming every argument
    and its shape when they do not broadcast. ``what`` says which dims are meant in the message."""
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) for s in shapes.values())))
    except ValueError:
        given = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"{fn}: {what} do not broadcast (numpy rules): {given}") from None


def concrete(x) -> np.ndarray | None:
    """``x``'s value as numpy where it is known now; None where any part of it is a jax Tracer (under jit, vmap,
    grad, shard_map), whose value checks are skipped, or where it is not numbers (the conversion that follows
    reports that). Read settings *before* converting them: inside ``jit`` even a constant is a tracer once
    converted."""
    if x is None or any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x)):
        return None
    try:
        return np.asarray(x)
    except (TypeError, ValueError):
        return None


def texture_size(fn: str, value, name: str = "texture_size") -> int:
    """The side T of a texture cube: a Python int >= 2."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be a Python int >= 2, got {type(value).__name__} {value!r}")
    if value < 2:
        raise ValueError(f"{fn}: {name} must be >= 2, got {int(value)}")
    return int(value)


def path(fn: str, value, name: str = "filename") -> str:
    """A file path (str, bytes or os.PathLike) as a str."""
    if isinstance(value, bytes):
        return os.fsdecode(value)
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{fn}: {name} must be a str or os.PathLike path, got {type(value).__name__}")
    return os.fspath(value)


def exact_shape(fn: str, name: str, shape: tuple, expected: Sequence[str | int]) -> None:
    """Raises ValueError unless ``shape`` has exactly ``len(expected)`` dims, matching its int entries (no
    leading batch dims: host functions such as file writers)."""
    if len(shape) != len(expected) or any(isinstance(e, int) and s != e for s, e in zip(shape, expected)):
        pattern = "[" + ", ".join(str(e) for e in expected) + "]"
        raise ValueError(f"{fn}: {name} must have shape {pattern}, got shape {list(shape)}")


def point_radius(fn: str, radius, points_shape: tuple) -> jax.Array:
    """``radius`` as float32 ``[..., 1]`` (one radius) or ``[..., P]`` (one per point) for points of shape
    ``points_shape`` ``[..., P, 3]``; a scalar becomes ``[1]``. A radius known now (not traced) must be finite
    and >= 0; a traced one is not checked (a zero, negative or NaN radius covers nothing).

    Args:
      fn: the public function's name, for messages. radius: float, ``[..., 1]`` or ``[..., P]``, NDC units.
    """
    value = concrete(radius)
    radius = float_values(fn, "radius", radius, ())
    if radius.ndim == 0:
        radius = radius.reshape(1)
    P = points_shape[-2]
    if radius.shape[-1] not in (1, P):
        raise ValueError(f"{fn}: radius must be a scalar, [..., 1] (one radius per cloud) or [..., P] with P = {P} "
                         f"(one per point, as points has shape {tuple(points_shape)}), got shape "
                         f"{tuple(radius.shape)}")
    if value is not None and value.size and not (np.all(np.isfinite(value)) and np.all(value >= 0)):
        bad = value[~(np.isfinite(value) & (value >= 0))].ravel()[0]
        raise ValueError(f"{fn}: radius must be finite and >= 0 (NDC units; one pixel is 2 / image_size), "
                         f"got {float(bad)}")
    return radius
