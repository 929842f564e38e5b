"""Trace-time input validation shared by the public functions.

Every check runs on shapes and dtypes only (never on traced values), so it works under ``jit`` and ``vmap`` and
fails before anything is compiled. Messages name the function, the argument, what was expected and what was
given.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np


def _shape_pattern(trailing: Sequence[str | int]) -> str:
    return "[..., " + ", ".join(str(t) for t in trailing) + "]"


def float_array(fn: str, name: str, x, trailing: Sequence[str | int]) -> jnp.ndarray:
    """``x`` as float32 with shape ``[..., *trailing]``; integer entries of ``trailing`` are fixed sizes.

    Floating dtypes (float16/32/64, bfloat16) are cast to float32; anything else (ints, bools, objects) is a
    TypeError, since a silent cast would hide a mix-up of, e.g., vertices and face indices.
    """
    if x is None:
        raise TypeError(f"{fn}: {name} is required, got None")
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        x = np.asarray(x)
        dtype = x.dtype
        if dtype.kind in "iu" and name not in _INT_FORBIDDEN:
            x = x.astype(np.float32)  # Python literals like (0, 0, 0)
            dtype = x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{fn}: {name} must be a floating-point array {_shape_pattern(trailing)}, got dtype {dtype}"
        )
    x = jnp.asarray(x, jnp.float32)
    check_trailing(fn, name, x.shape, trailing)
    return x


# Arguments that must never be built from integer Python literals: they are geometry, where ints mean a mix-up.
_INT_FORBIDDEN = {"vertices", "faces (coordinates)", "textures"}


def index_array(fn: str, name: str, x, trailing: Sequence[str | int]) -> jnp.ndarray:
    """``x`` as int32 with shape ``[..., *trailing]``; must have an integer dtype."""
    if x is None:
        raise TypeError(f"{fn}: {name} is required, got None")
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        x = np.asarray(x)
        dtype = x.dtype
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{fn}: {name} must be an integer array {_shape_pattern(trailing)} of vertex indices, got dtype {dtype}"
        )
    x = jnp.asarray(x, jnp.int32)
    check_trailing(fn, name, x.shape, trailing)
    return x


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
