"""Shading beyond NMR's per-face ambient + directional light (NMR_SPEC §3): point and directional lights with
Blinn-Phong highlights, per face (lit textures for the rasterizer, like :func:`jaxnmr.lighting`) and per pixel
over G-buffers (smooth shading from interpolated vertex normals); toon bands; contour lines; and compositing
a shaded image over a background with the G-buffers' alpha, so that NMR's silhouette gradient reaches the
vertices.

Everything is in world space: normals, positions, the eye and the lights. Colours are linear RGB, not clamped.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks
from jaxnmr._linalg import safe_norm, unit
from jaxnmr.gbuffers import GBuffers, _gather_rows
from jaxnmr.mesh import face_normals

__all__ = ["DirectionalLight", "PointLight", "lighting_phong", "phong", "flat_normals", "toon", "contour", "composite"]


class DirectionalLight(NamedTuple):
    """A light at infinity. direction: ``[..., 3]`` toward the light (normalised here); color: RGB ``[..., 3]``;
    intensity: ``[...]``. A pytree: its fields can be traced and differentiated."""

    direction: object = (0.0, 1.0, 0.0)
    color: object = (1.0, 1.0, 1.0)
    intensity: object = 1.0


class PointLight(NamedTuple):
    """A light at ``position`` ``[..., 3]`` (world units) with RGB ``color`` ``[..., 3]`` and ``intensity``
    ``[...]``, dimmed by ``1 / (c + l d + q d^2)`` at distance d, with ``attenuation = (c, l, q)`` ``[..., 3]``
    (the default (1, 0, 0) is no fall-off; keep ``c + l d + q d^2 > 0``). A pytree, like
    :class:`DirectionalLight`."""

    position: object = (0.0, 2.0, -2.0)
    color: object = (1.0, 1.0, 1.0)
    intensity: object = 1.0
    attenuation: object = (1.0, 0.0, 0.0)


def _float(fn: str, name: str, x, trailing) -> jax.Array:
    """``_checks.float_array`` that also takes lists and tuples of traced scalars (e.g. a light's fields)."""
    if isinstance(x, (list, tuple)):
        x = jnp.asarray(x, jnp.float32)
    return _checks.float_array(fn, name, x, trailing)


def _per_point(x: jax.Array, point_axes: int, trailing: int) -> jax.Array:
    """Inserts ``point_axes`` size-1 axes before the last ``trailing`` ones: ``[..., 3] -> [..., 1, 1, 3]``."""
    at = x.ndim - trailing
    return x.reshape(x.shape[:at] + (1,) * point_axes + x.shape[at:])


def _lights(fn: str, lights) -> list:
    if isinstance(lights, (DirectionalLight, PointLight)):
        return [lights]
    if lights is None:
        return []
    if not isinstance(lights, Sequence) or not all(isinstance(l, (DirectionalLight, PointLight)) for l in lights):
        raise TypeError(f"{fn}: lights must be a DirectionalLight, a PointLight or a sequence of them, "
                        f"got {type(lights).__name__}")
    return list(lights)


def _light_terms(fn, normals, positions, eye, lights, shininess, point_axes: int, facing=None):
    """Diffuse and Blinn-Phong light arriving at points, summed over the lights (no ambient, no material).

    normals (unit length, or 0), positions: float32 ``[..., P..., 3]`` with ``point_axes`` point axes P.
    eye ``[..., 3]``, shininess ``[...]``; facing: None or ``[..., P..., 3]`` (a normal is flipped where it lies
    on the other side of the facing plane than the eye). Returns ``(diffuse, highlight)``, each float32
    ``[..., P..., 3]``: ``sum_lights radiance max(0, n.l)`` and ``sum_lights radiance max(0, n.h)^shininess``
    (only where n.l > 0).
    """
    n = normals
    view = unit(_per_point(eye, point_axes, 1) - positions)
    if facing is not None:  # shade the side that faces the eye, as fill_back does for NMR's faces
        side = lambda x: jnp.sum(x * jax.lax.stop_gradient(facing), axis=-1, keepdims=True)
        n = jnp.where(side(n) * side(view) < 0, -n, n)
    shininess = _per_point(shininess[..., None], point_axes, 1)
    diffuse = highlight = jnp.zeros(jnp.broadcast_shapes(n.shape, view.shape), jnp.float32)
    for i, light in enumerate(_lights(fn, lights)):
        name = f"lights[{i}]"
        color = _per_point(_float(fn, f"{name}.color", light.color, (3,)), point_axes, 1)
        intensity = _per_point(_float(fn, f"{name}.intensity", light.intensity, ())[..., None], point_axes, 1)
        if isinstance(light, DirectionalLight):
            to_light = unit(_per_point(_float(fn, f"{name}.direction", light.direction, (3,)), point_axes, 1))
            falloff = 1.0
        else:
            offset = _per_point(_float(fn, f"{name}.position", light.position, (3,)), point_axes, 1) - positions
            d = safe_norm(offset)
            c = _per_point(_float(fn, f"{name}.attenuation", light.attenuation, (3,)), point_axes, 1)
            to_light = unit(offset)
            falloff = 1.0 / (c[..., 0:1] + c[..., 1:2] * d + c[..., 2:3] * d * d)
        radiance = intensity * color * falloff
        cos_l = jnp.sum(n * to_light, axis=-1, keepdims=True)
        cos_h = jnp.sum(n * unit(to_light + view), axis=-1, keepdims=True)
        lit = (cos_l > 0) & (cos_h > 0)
        lobe = jnp.where(lit, jnp.exp(shininess * jnp.log(jnp.where(lit, cos_h, 1.0))), 0.0)
        diffuse = diffuse + radiance * jnp.maximum(cos_l, 0.0)
        highlight = highlight + radiance * lobe
    return diffuse, highlight


def _ambient(fn, intensity_ambient, color_ambient, point_axes: int) -> jax.Array:
    ia = _float(fn, "intensity_ambient", intensity_ambient, ())[..., None]
    ca = _float(fn, "color_ambient", color_ambient, (3,))
    return _per_point(ia * ca, point_axes, 1)


def lighting_phong(faces, textures, eye, lights, intensity_ambient=0.3, color_ambient=(1.0, 1.0, 1.0),
                   specular=0.5, shininess=32.0) -> jax.Array:
    """Per-face lighting with point / directional lights and Blinn-Phong highlights, beside :func:`jaxnmr.lighting`.

    Each face is lit at its centroid ``p`` with NMR's face normal ``n`` (:func:`jaxnmr.mesh.face_normals`, which
    faces the viewer on every drawn face with ``fill_back``): ``textures * (Ia Ca + sum_lights L max(0, n.l))
    + specular * sum_lights L max(0, n.h)^shininess``, with L a light's intensity x colour x fall-off, l the
    unit vector toward it, and h the unit half vector between l and the direction to the eye (the highlight
    only where n.l > 0). Returns textures for the rasterizer, so NMR's gradient reaches them, and through them
    the world vertices, lights, eye and material.

    Args:
      faces: float ``[..., F, 3, 3]`` world-space face vertices (before the camera).
      textures: float ``[..., F, T, T, T, 3]``.
      eye: float ``[..., 3]`` the camera position (world).
      lights: a :class:`PointLight`, a :class:`DirectionalLight`, or a sequence of them.
      intensity_ambient: ``[...]``; color_ambient: RGB ``[..., 3]``.
      specular: highlight strength ``[...]``; shininess: Blinn-Phong exponent ``[...]`` (> 0).
    Returns:
      float32 ``[..., F, T, T, T, 3]`` lit textures (not clamped); leading dims broadcast.
    """
    fn = "lighting_phong"
    faces = _checks.float_array(fn, "faces", faces, ("F", 3, 3))
    textures = _checks.textures_per_face(fn, textures, faces.shape, -3)
    eye = _float(fn, "eye", eye, (3,))
    specular = _per_point(_float(fn, "specular", specular, ())[..., None], 1, 1)
    shininess = _float(fn, "shininess", shininess, ())
    diffuse, highlight = _light_terms(fn, face_normals(faces), faces.mean(axis=-2), eye, lights, shininess,
                                      point_axes=1)
    light = _ambient(fn, intensity_ambient, color_ambient, 1) + diffuse  # [..., F, 3]
    cube = lambda x: x[..., :, None, None, None, :]
    return textures * cube(light) + cube(specular * highlight)


def _pixel_inputs(fn: str, normals, positions, albedo, facing):
    """Checked per-pixel inputs of :func:`phong` and :func:`toon`: normals, positions (and facing) float32
    ``[..., H, W, 3]``, albedo float32 ``[..., 3]``; all four broadcast together (numpy rules), so an albedo
    ``[3]`` colours every pixel alike and ``[B, 1, 1, 3]`` gives one colour per image."""
    normals = _checks.float_array(fn, "normals", normals, ("H", "W", 3))
    positions = _checks.float_array(fn, "positions", positions, ("H", "W", 3))
    albedo = _checks.float_array(fn, "albedo", albedo, (3,))
    facing = None if facing is None else _checks.float_array(fn, "facing", facing, ("H", "W", 3))
    shapes = dict(normals=normals.shape, positions=positions.shape, albedo=albedo.shape)
    if facing is not None:
        shapes["facing"] = facing.shape
    _checks.broadcast_batch(fn, "the per-pixel arguments' shapes", **shapes)
    return normals, positions, albedo, facing


def phong(normals, positions, albedo, eye, lights, intensity_ambient=0.3, color_ambient=(1.0, 1.0, 1.0),
          specular=0.5, shininess=32.0, facing=None) -> jax.Array:
    """Per-pixel Blinn-Phong shading: ``albedo (Ia Ca + sum_lights L max(0, n.l)) + specular sum_lights L
    max(0, n.h)^shininess`` at every pixel, from interpolated (smooth) normals and surface positions.

    L is a light's intensity x colour x fall-off, l the unit vector toward it, v toward the eye, h = unit(l + v)
    the half vector; the highlight only where n.l > 0. Normals are normalised here (0 stays 0: empty pixels get
    no light). Typical inputs come from :func:`jaxnmr.interpolate`: vertex normals
    (:func:`jaxnmr.vertex_normals`), world positions (the vertices) and colours.

    Args:
      normals: float ``[..., H, W, 3]`` world-space normals (any length).
      positions: float ``[..., H, W, 3]`` world-space surface points.
      albedo: float RGB ``[..., H, W, 3]``, or any ``[..., 3]`` that broadcasts against the image by numpy
        rules: ``[3]`` one colour for every pixel, ``[B, 1, 1, 3]`` one per image of a batch.
      eye: float ``[..., 3]`` camera position (world).
      lights: a :class:`PointLight`, a :class:`DirectionalLight`, or a sequence of them.
      intensity_ambient: ``[...]``; color_ambient: RGB ``[..., 3]``.
      specular: highlight strength ``[...]``; shininess: Blinn-Phong exponent ``[...]`` (> 0).
      facing: optional float ``[..., H, W, 3]`` normals of the surface's plane, for two-sided shading (open
        meshes, seen from inside too): a normal n is flipped where it and the eye lie on opposite sides of that
        plane, ``(n . facing) ((eye - p) . facing) < 0``. :func:`flat_normals` (either orientation) decide
        exactly which side is seen; the normals themselves work too (flip where ``n . (eye - p) < 0``), but a
        smooth normal can face slightly away from the eye near a silhouette and be flipped wrongly there.
        None: shade the normals as given (a closed mesh with outward normals).
    Returns:
      float32 ``[..., H, W, 3]`` (not clamped); leading dims broadcast. Differentiable in every array argument.
    """
    fn = "phong"
    normals, positions, albedo, facing = _pixel_inputs(fn, normals, positions, albedo, facing)
    eye = _float(fn, "eye", eye, (3,))
    specular = _per_point(_float(fn, "specular", specular, ())[..., None], 2, 1)
    shininess = _float(fn, "shininess", shininess, ())
    diffuse, highlight = _light_terms(fn, unit(normals), positions, eye, lights, shininess, 2, facing)
    return albedo * (_ambient(fn, intensity_ambient, color_ambient, 2) + diffuse) + specular * highlight


def toon(normals, positions, albedo, eye, lights, levels: int = 3, facing=None) -> jax.Array:
    """Cel shading: the diffuse light quantised into ``levels`` flat bands.

    The diffuse light ``s`` (the mean over RGB of ``sum_lights L max(0, n.l)``, as in :func:`phong`), clipped
    to [0, 1], becomes ``(k + 1) / levels`` with ``k = min(floor(s levels), levels - 1)``, so the image takes
    exactly the values ``albedo * {1, 2, ..., levels} / levels`` (the darkest band keeps 1/levels of the
    albedo, like an ambient term). The bands are piecewise constant: the gradient reaches the albedo only.

    Args:
      normals, positions: float ``[..., H, W, 3]`` (world normals, world points).
      albedo: RGB, float ``[..., H, W, 3]`` or any ``[..., 3]`` broadcasting against it, as in :func:`phong`.
      eye: float ``[..., 3]``. lights: as :func:`phong`. levels: int >= 2. facing: as :func:`phong`.
    Returns:
      float32 ``[..., H, W, 3]``.
    """
    fn = "toon"
    normals, positions, albedo, facing = _pixel_inputs(fn, normals, positions, albedo, facing)
    eye = _float(fn, "eye", eye, (3,))
    levels = _checks.positive_int(fn, "levels", levels)
    if levels < 2:
        raise ValueError(f"{fn}: levels must be >= 2, got {levels}")
    diffuse, _ = _light_terms(fn, unit(normals), positions, eye, lights, jnp.ones((), jnp.float32), 2, facing)
    s = jnp.clip(jnp.mean(diffuse, axis=-1, keepdims=True), 0.0, 1.0)
    band = jnp.minimum(jnp.floor(s * levels), levels - 1)
    return albedo * jax.lax.stop_gradient((band + 1.0) / levels)


def flat_normals(faces, gbuffers: GBuffers) -> jax.Array:
    """Per-pixel flat normals: the unit normal ``(V1 - V0) x (V2 - V0)`` of the face under each pixel.

    For faceted (flat) shading with :func:`phong` (with ``facing`` = these normals: their orientation follows
    each face's vertex order, so it may point away from the eye), and as ``facing`` for smooth normals: they
    decide exactly which side of the surface a pixel shows.

    Args:
      faces: float ``[..., F, 3, 3]`` world-space vertices of the rasterized faces (the same faces, in the same
        order, as the G-buffers'; with ``fill_back``, the doubled faces).
      gbuffers: :class:`jaxnmr.GBuffers`.
    Returns:
      float32 ``[..., H, W, 3]``, 0 where empty; differentiable with respect to the faces.
    """
    fn = "flat_normals"
    faces = _checks.float_array(fn, "faces", faces, ("F", 3, 3))
    if not isinstance(gbuffers, GBuffers):
        raise TypeError(f"{fn}: gbuffers must be the GBuffers from rasterize_gbuffers, got {type(gbuffers).__name__}")
    face_index = _checks.index_array(fn, "gbuffers.face_index", gbuffers.face_index, ("H", "W"))
    normals = unit(jnp.cross(faces[..., 1, :] - faces[..., 0, :], faces[..., 2, :] - faces[..., 0, :]))
    out = _gather_rows(normals, jax.lax.stop_gradient(face_index))
    return jnp.where(((face_index >= 0) & (face_index < faces.shape[-3]))[..., None], out, 0.0)


def _neighbour_pairs(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """``(x[..., :-1 ...], x[..., 1: ...])`` along image axis -2 (rows) or -1 (columns) of ``[..., H, W]``."""
    n = x.shape[axis]
    return jax.lax.slice_in_dim(x, 0, n - 1, axis=axis), jax.lax.slice_in_dim(x, 1, n, axis=axis)


def contour(gbuffers: GBuffers, normals=None, depth_threshold=0.1, crease_angle=45.0,
            face_edges: bool = False) -> jax.Array:
    """Line mask ``[..., H, W]`` of the G-buffers' outlines: silhouettes, depth jumps, creases, face edges.

    Two 4-neighbour pixels p, q are split by a line where one is covered and the other empty (silhouette),
    where both are covered and ``|z_p - z_q| > depth_threshold * min(z_p, z_q)`` (occluding contour), where
    the angle between their normals exceeds ``crease_angle`` (only if ``normals`` is given), or, with
    ``face_edges``, where their face indices differ (wireframe). Silhouettes and depth jumps are drawn on the
    nearer pixel of the pair (so they lie on the object's outermost pixels and on the occluder), creases and
    face edges on the upper or left one: lines one pixel wide.

    Args:
      gbuffers: :class:`jaxnmr.GBuffers`.
      normals: optional float ``[..., H, W, 3]`` (e.g. interpolated or per-face normals); its leading dims
        broadcast with the G-buffers' (numpy rules).
      depth_threshold: relative depth jump (> 0), or None to ignore depth.
      crease_angle: degrees in (0, 180); used only with ``normals``.
      face_edges: also draw every edge between two faces.
    Returns:
      float32 ``[..., H, W]``: 1 on the lines, 0 elsewhere (no gradient).
    """
    fn = "contour"
    if not isinstance(gbuffers, GBuffers):
        raise TypeError(f"{fn}: gbuffers must be the GBuffers from rasterize_gbuffers, got {type(gbuffers).__name__}")
    face_index = jax.lax.stop_gradient(_checks.index_array(fn, "gbuffers.face_index", gbuffers.face_index,
                                                           ("H", "W")))
    covered = face_index >= 0
    depth = jax.lax.stop_gradient(_checks.float_array(fn, "gbuffers.depth", gbuffers.depth, ("H", "W")))
    depth = jnp.where(covered, depth, jnp.inf)
    if depth_threshold is not None:
        depth_threshold = _checks.static_float(fn, "depth_threshold", depth_threshold)
        if not depth_threshold > 0:
            raise ValueError(f"{fn}: depth_threshold must be > 0 or None, got {depth_threshold}")
    if normals is not None:
        normals = unit(jax.lax.stop_gradient(_checks.float_array(fn, "normals", normals, ("H", "W", 3))))
        crease_angle = _checks.static_float(fn, "crease_angle", crease_angle)
        if not 0 < crease_angle < 180:
            raise ValueError(f"{fn}: crease_angle must be in (0, 180) degrees, got {crease_angle}")
    shapes = dict(face_index=face_index.shape, depth=depth.shape)
    if normals is not None:
        shapes["normals"] = normals.shape[:-1]
    # [..., H, W]: every argument's leading dims broadcast
    shape = _checks.broadcast_batch(fn, "the per-pixel arguments' shapes", **shapes)
    cos_crease = math.cos(math.radians(crease_angle)) if normals is not None else None
    return _contour_lines(covered, depth, face_index, normals, shape=shape, depth_threshold=depth_threshold,
                          cos_crease=cos_crease, face_edges=bool(face_edges))


@functools.partial(jax.jit, static_argnames=("shape", "depth_threshold", "cos_crease", "face_edges"))
def _contour_lines(covered, depth, face_index, normals, *, shape, depth_threshold, cos_crease, face_edges):
    """:func:`contour` after validation, compiled once per shape and settings (many small steps: eager
    dispatch of each cost seconds at 256²; inlined under a caller's jit)."""
    covered, depth, face_index = (jnp.broadcast_to(x, shape) for x in (covered, depth, face_index))
    if normals is not None:
        normals = jnp.broadcast_to(normals, shape + (3,))
    lines = jnp.zeros(shape, bool)
    for axis in (-2, -1):
        (c0, c1), (z0, z1), (f0, f1) = (_neighbour_pairs(x, axis) for x in (covered, depth, face_index))
        both = c0 & c1
        jump = c0 != c1  # silhouette or depth jump: the line goes on the nearer pixel
        if depth_threshold is not None:
            jump |= both & (jnp.abs(z0 - z1) > depth_threshold * jnp.minimum(z0, z1))
        seam = jnp.zeros_like(jump)  # face edge or crease on a continuous surface: on the first pixel
        if face_edges:
            seam |= both & (f0 != f1)
        if normals is not None:
            n0, n1 = (_neighbour_pairs(normals, axis - 1))
            seam |= both & (jnp.sum(n0 * n1, axis=-1) < cos_crease)
        pad = [(0, 0)] * len(shape)
        pad[axis] = (0, 1)
        first = jnp.pad((jump & (z0 <= z1)) | (seam & ~jump), pad)
        pad[axis] = (1, 0)
        second = jnp.pad(jump & (z1 <= z0), pad)
        lines = lines | first | second
    return lines.astype(jnp.float32)


def _block_sum(x: jax.Array) -> jax.Array:
    """Sums 2x2 blocks of ``[..., H, W, C]`` (zero-padding odd sizes) -> ``[..., ceil(H/2), ceil(W/2), C]``."""
    *lead, h, w, c = x.shape
    x = jnp.pad(x, [(0, 0)] * len(lead) + [(0, h % 2), (0, w % 2), (0, 0)])
    return x.reshape(*lead, (h + 1) // 2, 2, (w + 1) // 2, 2, c).sum(axis=(-4, -2))


@jax.jit  # a pyramid of many small steps: compiled once per shape, eager calls included (inlined under jit)
def _fill_empty(image: jax.Array, covered: jax.Array) -> jax.Array:
    """Covered pixels keep their value; each empty one gets the mean of the covered pixels around it, from a
    push-pull pyramid (masked 2x2 sums down to 1x1, then each level fills its empty pixels from the coarser
    one). ``image [..., H, W, C]``, ``covered [..., H, W]`` bool."""
    weight = covered.astype(jnp.float32)[..., None]
    pyramid = [(image * weight, weight)]
    while pyramid[-1][1].shape[-3] > 1 or pyramid[-1][1].shape[-2] > 1:
        total, count = pyramid[-1]
        pyramid.append((_block_sum(total), _block_sum(count)))
    mean = lambda total, count: total / jnp.where(count > 0, count, 1.0)
    filled = mean(*pyramid[-1])
    for total, count in reversed(pyramid[:-1]):
        h, w = total.shape[-3:-1]
        up = jnp.repeat(jnp.repeat(filled, 2, axis=-3), 2, axis=-2)[..., :h, :w, :]
        filled = jnp.where(count > 0, mean(total, count), up)
    return filled


def composite(image, alpha, background=(0.0, 0.0, 0.0)) -> jax.Array:
    """``alpha * image + (1 - alpha) * background``: a shaded image over a background, with the G-buffers' alpha.

    The alpha carries NMR's silhouette gradient (NMR_SPEC §5.2): its edge sweeps estimate what a pixel just
    outside the silhouette would show if an edge moved over it from the alpha cotangent there, i.e. from the
    value ``image`` has there. Shading leaves empty pixels black, which would make that estimate "black"; so,
    for the gradient only, each empty pixel takes the colour of the covered pixels nearest it (a push-pull
    fill). With a constant-colour image this gives exactly the vertex gradient of NMR's rgb rasterizer. The
    returned image does not depend on the fill (alpha is 0 there).

    Args:
      image: float ``[..., H, W, C]`` shaded colours (values at empty pixels are ignored), or any ``[..., C]``
        that broadcasts against ``alpha[..., None]`` by numpy rules (``[C]``: one colour everywhere).
      alpha: float ``[..., H, W]`` coverage in [0, 1] (:attr:`jaxnmr.GBuffers.alpha`).
      background: float ``[..., C]`` colour of empty pixels (its leading dims are batch dims).
    Returns:
      float32 ``[..., H, W, C]``; leading dims broadcast.
    """
    fn = "composite"
    image = _checks.float_array(fn, "image", image, ("C",))
    alpha = _checks.float_array(fn, "alpha", alpha, ("H", "W"))
    background = _float(fn, "background", background, (image.shape[-1],))
    try:
        image_shape = jnp.broadcast_shapes(image.shape, alpha.shape + (1,))
    except ValueError:
        raise ValueError(f"{fn}: alpha [..., H, W] must match image [..., H, W, C] (or broadcast with it, numpy "
                         f"rules), got shapes {tuple(alpha.shape)} and {tuple(image.shape)}") from None
    covered = jnp.broadcast_to((alpha > 0)[..., None], image_shape)
    image = jnp.broadcast_to(image, image_shape)
    fill = jax.lax.stop_gradient(_fill_empty(image, covered[..., 0]))
    source = jnp.where(covered, image, fill)
    a = alpha[..., None]
    return a * source + (1.0 - a) * background[..., None, None, :]
