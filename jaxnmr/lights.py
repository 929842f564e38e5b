"""Lights: one set of light types (ambient, directional, point) for per-face lighting, per-pixel shading and the
Renderer, and NMR's per-face ``lighting`` as a compatibility function.

Everything is in world space. Colours are linear RGB, not clamped. A face is lit on the side its normal
``(V1 - V0) x (V2 - V0)`` points to (docs/conventions.md, "Winding and normals"); NMR's :func:`lighting` lights
the reversed vertex order, the side its mirrored pictures show (docs/conventions.md, "Mirroring").

The light types are NamedTuples, so they are pytrees: their fields can be traced, vmapped and differentiated.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp

from jaxnmr import _checks, _pytree
from jaxnmr._linalg import safe_norm, unit
from jaxnmr.mesh import face_normals

__all__ = ["AmbientLight", "DirectionalLight", "PointLight", "light_faces", "lighting"]


def _light(cls):
    """Registers a light class: a frozen dataclass whose fields are float32 array leaves, converted and checked
    on construction (shapes at trace time, as everywhere)."""
    return _pytree.register()(dataclasses.dataclass(frozen=True, eq=False)(cls))


class _Light:
    """Shared construction of the light types: every field to float32 with its trailing shape."""

    _trailing: dict = {}

    def __post_init__(self):
        name = type(self).__name__
        for field, trailing in self._trailing.items():
            object.__setattr__(self, field, _checks.float_values(name, field, getattr(self, field), trailing))

    def replace(self, **changes):
        """A copy with some fields changed (checked like the constructor)."""
        return dataclasses.replace(self, **changes)


@_light
class AmbientLight(_Light):
    """Light reaching every point alike. color: RGB ``[..., 3]``; intensity: ``[...]`` (float32 leaves)."""

    color: object = (1.0, 1.0, 1.0)
    intensity: object = 0.5
    _trailing: ClassVar[dict] = {"color": (3,), "intensity": ()}


@_light
class DirectionalLight(_Light):
    """A light at infinity. direction: ``[..., 3]`` toward the light (any length: it is normalised where used);
    color: RGB ``[..., 3]``; intensity: ``[...]`` (float32 leaves)."""

    direction: object = (0.0, 1.0, 0.0)
    color: object = (1.0, 1.0, 1.0)
    intensity: object = 1.0
    _trailing: ClassVar[dict] = {"direction": (3,), "color": (3,), "intensity": ()}


@_light
class PointLight(_Light):
    """A light at ``position`` ``[..., 3]`` (world units) with RGB ``color`` ``[..., 3]`` and ``intensity``
    ``[...]``, dimmed by ``1 / (c + l d + q d^2)`` at distance d, with ``attenuation = (c, l, q)`` ``[..., 3]``
    (the default (1, 0, 0) is no fall-off; keep ``c + l d + q d^2 > 0``). Float32 leaves."""

    position: object = (0.0, 2.0, -2.0)
    color: object = (1.0, 1.0, 1.0)
    intensity: object = 1.0
    attenuation: object = (1.0, 0.0, 0.0)
    _trailing: ClassVar[dict] = {"position": (3,), "color": (3,), "intensity": (), "attenuation": (3,)}


LIGHT_TYPES = (AmbientLight, DirectionalLight, PointLight)


def per_point(x: jax.Array, point_axes: int, trailing: int) -> jax.Array:
    """Inserts ``point_axes`` size-1 axes before the last ``trailing`` ones: ``[..., 3] -> [..., 1, 1, 3]``."""
    at = x.ndim - trailing
    return x.reshape(x.shape[:at] + (1,) * point_axes + x.shape[at:])


def as_lights(fn: str, lights) -> list:
    """``lights`` (one light, a sequence of them, or None) as a list; anything else is a TypeError."""
    if isinstance(lights, LIGHT_TYPES):
        return [lights]
    if lights is None:
        return []
    if not isinstance(lights, Sequence) or not all(isinstance(l, LIGHT_TYPES) for l in lights):
        got = type(lights).__name__ if not isinstance(lights, Sequence) else \
            ", ".join(type(l).__name__ for l in lights)
        raise TypeError(f"{fn}: lights must be an AmbientLight, a DirectionalLight, a PointLight or a sequence of "
                        f"them, got {got}")
    return list(lights)


def ambient_term(fn: str, lights: list, point_axes: int) -> jax.Array:
    """The sum of the ambient lights' ``intensity * color``, float32 ``[..., 1 (x point_axes), 3]``."""
    total = jnp.zeros((3,), jnp.float32)
    for i, light in enumerate(lights):
        if isinstance(light, AmbientLight):
            color = _checks.float_values(fn, f"lights[{i}].color", light.color, (3,))
            intensity = _checks.float_values(fn, f"lights[{i}].intensity", light.intensity, ())
            total = total + intensity[..., None] * color
    return per_point(total, point_axes, 1)


def light_terms(fn, normals, positions, eye, lights, shininess, point_axes: int, facing=None):
    """Diffuse and Blinn-Phong light arriving at points, summed over the directional and point lights (ambient
    lights are :func:`ambient_term`'s; no material).

    normals (unit length, or 0), positions: float32 ``[..., P..., 3]`` with ``point_axes`` point axes P.
    eye ``[..., 3]`` or None (then no highlight is computed: ``highlight`` is 0); shininess ``[...]``; facing:
    None or ``[..., P..., 3]`` (a normal is flipped where it lies on the other side of the facing plane than the
    eye). Returns ``(diffuse, highlight)``, each float32 ``[..., P..., 3]``: ``sum_lights radiance max(0, n.l)``
    and ``sum_lights radiance max(0, n.h)^shininess`` (only where n.l > 0).
    """
    n = normals
    view = None if eye is None else unit(per_point(eye, point_axes, 1) - positions)
    if facing is not None:  # shade the side that faces the eye, as fill_back does for NMR's faces
        side = lambda x: jnp.sum(x * jax.lax.stop_gradient(facing), axis=-1, keepdims=True)
        n = jnp.where(side(n) * side(view) < 0, -n, n)
    shape = n.shape if view is None else jnp.broadcast_shapes(n.shape, view.shape)
    diffuse = highlight = jnp.zeros(shape, jnp.float32)
    if eye is not None:
        shininess = per_point(shininess[..., None], point_axes, 1)
    for i, light in enumerate(as_lights(fn, lights)):
        if isinstance(light, AmbientLight):
            continue
        name = f"lights[{i}]"
        color = per_point(_checks.float_values(fn, f"{name}.color", light.color, (3,)), point_axes, 1)
        intensity = per_point(_checks.float_values(fn, f"{name}.intensity", light.intensity, ())[..., None], point_axes, 1)
        if isinstance(light, DirectionalLight):
            to_light = unit(per_point(_checks.float_values(fn, f"{name}.direction", light.direction, (3,)), point_axes, 1))
            falloff = 1.0
        else:
            offset = per_point(_checks.float_values(fn, f"{name}.position", light.position, (3,)), point_axes, 1) - positions
            d = safe_norm(offset)
            c = per_point(_checks.float_values(fn, f"{name}.attenuation", light.attenuation, (3,)), point_axes, 1)
            to_light = unit(offset)
            falloff = 1.0 / (c[..., 0:1] + c[..., 1:2] * d + c[..., 2:3] * d * d)
        radiance = intensity * color * falloff
        cos_l = jnp.sum(n * to_light, axis=-1, keepdims=True)
        diffuse = diffuse + radiance * jnp.maximum(cos_l, 0.0)
        if eye is not None:
            cos_h = jnp.sum(n * unit(to_light + view), axis=-1, keepdims=True)
            lit = (cos_l > 0) & (cos_h > 0)
            lobe = jnp.where(lit, jnp.exp(shininess * jnp.log(jnp.where(lit, cos_h, 1.0))), 0.0)
            highlight = highlight + radiance * lobe
    return diffuse, highlight


def light_faces(face_vertices, textures, lights, *, mirrored: bool = True) -> jax.Array:
    """Multiplies each face's texture cube by the light reaching it: the ambient lights plus, for each
    directional or point light, ``intensity * color * fall-off * max(0, n . l)`` with l the unit vector toward
    the light from the face's centroid and n the face's unit normal ``(V1 - V0) x (V2 - V0)``, taken of the
    reversed vertex order where ``mirrored``.

    ``mirrored`` is the camera's (:attr:`jaxnmr.LookAt.mirrored`, ...): the rasterizer draws the copy of each
    face that is counter-clockwise on screen (with ``fill_back`` both copies exist), and this lights that copy
    on the side the camera sees (docs/conventions.md, "Mirroring"). NMR's cameras are mirrored.

    Args:
      face_vertices: float ``[..., F, 3, 3]`` world-space face vertices (before the camera).
      textures: float ``[..., F, T, T, T, 3]``.
      lights: a light (:class:`AmbientLight`, :class:`DirectionalLight`, :class:`PointLight`) or a sequence of
        them; an empty sequence gives black.
      mirrored: a Python bool (static), the camera's ``mirrored``.
    Returns:
      float32 ``[..., F, T, T, T, 3]`` lit textures (not clamped); leading dims broadcast.
    """
    textures, light, _ = face_light("light_faces", face_vertices, textures, lights, mirrored)
    return textures * light[..., :, None, None, None, :]


def face_light(fn: str, face_vertices, textures, lights, mirrored: bool, eye=None, shininess=None):
    """The per-face lighting of :func:`light_faces` and :func:`jaxnmr.lighting_phong`, after checking their
    arguments: returns ``(textures, light, highlight)``, the checked textures float32 ``[..., F, T, T, T, 3]``,
    the ambient plus diffuse light reaching each face's centroid ``[..., F, 3]``, and its Blinn-Phong highlight
    ``[..., F, 3]`` (zero without an ``eye [..., 3]``; ``shininess [...]`` with it)."""
    face_vertices = _checks.float_array(fn, "face_vertices", face_vertices, ("F", 3, 3))
    textures = _checks.textures_per_face(fn, textures, face_vertices.shape, -3)
    lights = as_lights(fn, lights)
    if _checks.static_bool(fn, "mirrored", mirrored):
        face_vertices = face_vertices[..., ::-1, :]
    if eye is not None:
        eye = _checks.float_values(fn, "eye", eye, (3,))
        shininess = _checks.float_values(fn, "shininess", shininess, ())
    diffuse, highlight = light_terms(fn, face_normals(face_vertices), face_vertices.mean(axis=-2), eye, lights,
                                     shininess, point_axes=1)
    return textures, ambient_term(fn, lights, 1) + diffuse, highlight


def nmr_lights(intensity_ambient=0.5, intensity_directional=0.5, color_ambient=(1.0, 1.0, 1.0),
               color_directional=(1.0, 1.0, 1.0), direction=(0.0, 1.0, 0.0)) -> tuple[AmbientLight, DirectionalLight]:
    """NMR's two lights from its flat settings: ``(AmbientLight, DirectionalLight)``.

    NMR does not normalise its light direction, so its length scales the directional light: the
    :class:`DirectionalLight` gets the unit direction and ``intensity_directional * ||direction||``, which lights
    every face as NMR does. (At ``direction = 0`` the light is off, as in NMR, but its gradient with respect to
    the direction is 0 rather than NMR's.)
    """
    fn = "nmr_lights"
    ia = _checks.float_values(fn, "intensity_ambient", intensity_ambient, ())
    id_ = _checks.float_values(fn, "intensity_directional", intensity_directional, ())
    ca = _checks.float_values(fn, "color_ambient", color_ambient, (3,))
    cd = _checks.float_values(fn, "color_directional", color_directional, (3,))
    d = _checks.float_values(fn, "direction", direction, (3,))
    return AmbientLight(ca, ia), DirectionalLight(d, cd, id_ * safe_norm(d)[..., 0])


def lighting(
    face_vertices,
    textures,
    intensity_ambient=0.5,
    intensity_directional=0.5,
    color_ambient=(1.0, 1.0, 1.0),
    color_directional=(1.0, 1.0, 1.0),
    direction=(0.0, 1.0, 0.0),
) -> jax.Array:
    """NMR's per-face lighting: each face's texture cube times ``Ia Ca + Id Cd max(0, n . direction)``.

    NMR's pictures are mirrored, so it lights each face by the normal of its *reversed* vertex order,
    ``(V0 - V1) x (V2 - V1)`` normalised: the side its pictures show (docs/conventions.md, "Mirroring"). This is
    :func:`light_faces` with :func:`nmr_lights` and ``mirrored=True``.

    Args:
      face_vertices: float ``[..., F, 3, 3]`` world-space face vertices (before the camera transform).
      textures: float ``[..., F, T, T, T, 3]``.
      intensity_ambient, intensity_directional: scalars or ``[...]``.
      color_ambient, color_directional: RGB ``[..., 3]``.
      direction: ``[..., 3]`` toward the light (not normalised, as in NMR: its length scales the light).
    Returns:
      float32 ``[..., F, T, T, T, 3]`` lit textures (not clamped). Leading dims broadcast.
    """
    fn = "lighting"
    face_vertices = _checks.float_array(fn, "face_vertices", face_vertices, ("F", 3, 3))
    textures = _checks.textures_per_face(fn, textures, face_vertices.shape, -3)
    lights = nmr_lights(intensity_ambient, intensity_directional, color_ambient, color_directional, direction)
    return light_faces(face_vertices, textures, lights, mirrored=True)
