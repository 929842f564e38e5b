"""Per-face lighting: ambient plus one directional light, in world space (NMR_SPEC §3)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxnmr import _checks
from jaxnmr.mesh import face_normals

__all__ = ["lighting"]


def lighting(
    faces,
    textures,
    intensity_ambient=0.5,
    intensity_directional=0.5,
    color_ambient=(1.0, 1.0, 1.0),
    color_directional=(1.0, 1.0, 1.0),
    direction=(0.0, 1.0, 0.0),
) -> jnp.ndarray:
    """Multiplies each face's texture cube by its light ``Ia Ca + Id Cd max(0, n . direction)``.

    Args:
      faces: float ``[..., F, 3, 3]`` world-space face vertices (before the camera transform).
      textures: float ``[..., F, T, T, T, 3]``.
      intensity_ambient, intensity_directional: scalars or ``[...]``.
      color_ambient, color_directional: RGB ``[..., 3]``.
      direction: ``[..., 3]`` toward the light (not normalised, as in NMR).
    Returns:
      float32 ``[..., F, T, T, T, 3]`` lit textures (not clamped). Leading dims broadcast.
    """
    fn = "lighting"
    faces = _checks.float_array(fn, "faces", faces, ("F", 3, 3))
    textures = _checks.textures_per_face(fn, textures, faces.shape, -3)
    ia = _checks.float_array(fn, "intensity_ambient", intensity_ambient, ())[..., None, None]
    id_ = _checks.float_array(fn, "intensity_directional", intensity_directional, ())[..., None, None]
    ca = _checks.float_array(fn, "color_ambient", color_ambient, (3,))[..., None, :]
    cd = _checks.float_array(fn, "color_directional", color_directional, (3,))[..., None, :]
    d = _checks.float_array(fn, "direction", direction, (3,))[..., None, :]
    cosine = jnp.maximum(jnp.sum(face_normals(faces) * d, axis=-1, keepdims=True), 0.0)  # [..., F, 1]
    light = ia * ca + id_ * cd * cosine  # [..., F, 3]
    return textures * light[..., :, None, None, None, :]
