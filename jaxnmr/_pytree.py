"""Frozen dataclasses as jax pytrees: array fields are leaves, settings that decide shapes or code paths are
static (part of the tree structure, so a change recompiles)."""

from __future__ import annotations

import dataclasses

import jax

__all__ = ["register"]


def register(static: tuple[str, ...] = ()):
    """Class decorator: registers a frozen dataclass as a pytree with the fields named in ``static`` static.

    Unflattening sets the fields directly (no ``__post_init__``): jax rebuilds trees with tracers, ``None`` or
    placeholder leaves, which validation must not see.
    """

    def wrap(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))
        unknown = set(static) - set(names)
        if unknown:
            raise TypeError(f"{cls.__name__}: static fields {sorted(unknown)} are not fields")
        leaves = tuple(n for n in names if n not in static)

        def flatten_with_keys(obj):
            return (tuple((jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in leaves),
                    tuple(getattr(obj, n) for n in static))

        def unflatten(meta, children):
            obj = object.__new__(cls)
            for n, v in zip(leaves, children):
                object.__setattr__(obj, n, v)
            for n, v in zip(static, meta):
                object.__setattr__(obj, n, v)
            return obj

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten)
        cls.static_fields = tuple(static)
        cls.leaf_fields = leaves
        return cls

    return wrap
