"""Shading beyond NMR's per-face light (docs/conventions.md#lighting): point and directional lights with
Blinn-Phong highlights, per face (lit textures for the rasterizer, like :func:`jaxnmr.lighting`) and per pixel
over G-buffers (smooth shading from interpolated vertex normals); toon bands; contour lines; and compositing
a shaded image over a background with the G-buffers' alpha, so that NMR's silhouette gradient reaches the
vertices.

Everything is in world space: normals, positions, the eye and the lights. Colours are linear RGB, not clamped.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from jaxnmr import _checks
from jaxnmr._linalg import area_normals, gather_rows, unit
from jaxnmr.gbuffers import GBuffers
from jaxnmr.lights import ambient_term, as_lights, face_light, light_terms, per_point

__all__ = ["lighting_phong", "phong", "flat_normals", "toon", "contour", "composite"]


def lighting_phong(face_vertices, textures, eye, lights, specular=0.5, shininess=32.0, *,
                   mirrored: bool = True) -> jax.Array:
    """Per-face lighting with Blinn-Phong highlights, beside :func:`jaxnmr.light_faces`.

    Each face is lit at its centroid ``p`` with its unit normal ``n`` (:func:`jaxnmr.mesh.face_normals`, of the
    reversed vertex order where ``mirrored``, as :func:`jaxnmr.light_faces`: the side the camera sees on every
    drawn face with ``fill_back``): ``textures * (A + sum_lights L max(0, n.l)) + specular * sum_lights L
    max(0, n.h)^shininess``. A is the sum of intensity x colour over the :class:`jaxnmr.AmbientLight` lights
    in ``lights``, the only ambient light (none there: no ambient light); the sums run over the directional
    and point lights, with L a light's intensity x colour x fall-off, l the unit vector toward it, and h the
    unit half vector between l and the direction to the eye (the highlight only where n.l > 0). Returns
    textures for the rasterizer, so NMR's gradient reaches them, and through them the world vertices, lights,
    eye and material.

    Args:
      face_vertices: float ``[..., F, 3, 3]`` world-space face vertices (before the camera).
      textures: float ``[..., F, T, T, T, 3]``.
      eye: float ``[..., 3]`` the camera position (world).
      lights: a :class:`jaxnmr.PointLight`, :class:`jaxnmr.DirectionalLight`, :class:`jaxnmr.AmbientLight`, or
        a sequence of them (an empty sequence gives black); the ambient light comes only from the
        :class:`jaxnmr.AmbientLight` lights, e.g. ``[AmbientLight(intensity=0.3), PointLight(...)]``.
      specular: highlight strength ``[...]``; shininess: Blinn-Phong exponent ``[...]`` (> 0).
      mirrored: a Python bool (static), the camera's ``mirrored`` (True for NMR's cameras).
    Returns:
      float32 ``[..., F, T, T, T, 3]`` lit textures (not clamped); leading dims broadcast.
    """
    fn = "lighting_phong"
    textures, light, highlight = face_light(fn, face_vertices, textures, lights, mirrored,
                                            _checks.float_values(fn, "eye", eye, (3,)), shininess)
    specular = per_point(_checks.float_values(fn, "specular", specular, ())[..., None], 1, 1)
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


def phong(normals, positions, albedo, eye, lights, specular=0.5, shininess=32.0, facing=None) -> jax.Array:
    """Per-pixel Blinn-Phong shading: ``albedo (A + sum_lights L max(0, n.l)) + specular sum_lights L
    max(0, n.h)^shininess`` at every pixel, from interpolated (smooth) normals and surface positions.

    A is the sum of intensity x colour over the :class:`jaxnmr.AmbientLight` lights in ``lights``, the only
    ambient light (none there: no ambient light); the sums run over the directional and point lights. L is a
    light's intensity x colour x fall-off, l the unit vector toward it, v toward the eye, h = unit(l + v) the
    half vector; the highlight only where n.l > 0. Normals are normalised here (0 stays 0: empty pixels get
    no light). Typical inputs come from :func:`jaxnmr.interpolate`: vertex normals
    (:func:`jaxnmr.vertex_normals`), world positions (the vertices) and colours.

    Args:
      normals: float ``[..., H, W, 3]`` world-space normals (any length).
      positions: float ``[..., H, W, 3]`` world-space surface points.
      albedo: float RGB ``[..., H, W, 3]``, or any ``[..., 3]`` that broadcasts against the image by numpy
        rules: ``[3]`` one colour for every pixel, ``[B, 1, 1, 3]`` one per image of a batch.
      eye: float ``[..., 3]`` camera position (world).
      lights: a :class:`jaxnmr.PointLight`, :class:`jaxnmr.DirectionalLight`, :class:`jaxnmr.AmbientLight`, or
        a sequence of them; the ambient light comes only from the :class:`jaxnmr.AmbientLight` lights, e.g.
        ``[AmbientLight(intensity=0.3), PointLight(...)]``.
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
    lights = as_lights(fn, lights)
    eye = _checks.float_values(fn, "eye", eye, (3,))
    specular = per_point(_checks.float_values(fn, "specular", specular, ())[..., None], 2, 1)
    shininess = _checks.float_values(fn, "shininess", shininess, ())
    diffuse, highlight = light_terms(fn, unit(normals), positions, eye, lights, shininess, 2, facing)
    return albedo * (ambient_term(fn, lights, 2) + diffuse) + specular * highlight


def toon(normals, positions, albedo, eye, lights, levels: int = 3, facing=None) -> jax.Array:
    """Cel shading: the diffuse light quantised into ``levels`` flat bands.

    The diffuse light ``s`` (the mean over RGB of ``sum_lights L max(0, n.l)``, as in :func:`phong`), clipped
    to [0, 1], becomes ``(k + 1) / levels`` with ``k = min(floor(s levels), levels - 1)``, so the image takes
    exactly the values ``albedo * {1, 2, ..., levels} / levels`` (the darkest band keeps 1/levels of the
    albedo, like an ambient term). :class:`jaxnmr.AmbientLight` lights do not change the bands: only the
    directional and point lights count, so the same ``lights`` as :func:`phong`'s can be passed. The bands
    are piecewise constant: the gradient reaches the albedo only.

    Args:
      normals, positions: float ``[..., H, W, 3]`` (world normals, world points).
      albedo: RGB, float ``[..., H, W, 3]`` or any ``[..., 3]`` broadcasting against it, as in :func:`phong`.
      eye: float ``[..., 3]``. lights: as :func:`phong` (its AmbientLights are ignored). levels: int >= 2.
      facing: as :func:`phong`.
    Returns:
      float32 ``[..., H, W, 3]``.
    """
    fn = "toon"
    normals, positions, albedo, facing = _pixel_inputs(fn, normals, positions, albedo, facing)
    eye = _checks.float_values(fn, "eye", eye, (3,))
    levels = _checks.positive_int(fn, "levels", levels)
    if levels < 2:
        raise ValueError(f"{fn}: levels must be >= 2, got {levels}")
    diffuse, _ = light_terms(fn, unit(normals), positions, eye, lights, jnp.ones((), jnp.float32), 2, facing)
    s = jnp.clip(jnp.mean(diffuse, axis=-1, keepdims=True), 0.0, 1.0)
    band = jnp.minimum(jnp.floor(s * levels), levels - 1)
    return albedo * jax.lax.stop_gradient((band + 1.0) / levels)


def flat_normals(face_vertices, gbuffers: GBuffers) -> jax.Array:
    """Per-pixel flat normals: the unit normal ``(V1 - V0) x (V2 - V0)`` of the face under each pixel.

    For faceted (flat) shading with :func:`phong` (with ``facing`` = these normals: their orientation follows
    each face's vertex order, so it may point away from the eye), and as ``facing`` for smooth normals: they
    decide exactly which side of the surface a pixel shows.

    Args:
      face_vertices: float ``[..., F, 3, 3]`` world-space vertices of the rasterized faces (the same faces, in
        the same order, as the G-buffers'; with ``fill_back``, the doubled faces).
      gbuffers: :class:`jaxnmr.GBuffers`.
    Returns:
      float32 ``[..., H, W, 3]``, 0 where empty; differentiable with respect to the faces.
    """
    fn = "flat_normals"
    face_vertices = _checks.float_array(fn, "face_vertices", face_vertices, ("F", 3, 3))
    if not isinstance(gbuffers, GBuffers):
        raise TypeError(f"{fn}: gbuffers must be the GBuffers from rasterize_gbuffers, got {type(gbuffers).__name__}")
    face_index = _checks.index_array(fn, "gbuffers.face_index", gbuffers.face_index, ("H", "W"))
    normals = unit(area_normals(face_vertices))  # exactly unit length (face_normals regularises as NMR does)
    out = gather_rows(normals, jax.lax.stop_gradient(face_index))
    return jnp.where(((face_index >= 0) & (face_index < face_vertices.shape[-3]))[..., None], out, 0.0)


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


def composite(image, alpha, background_color=(0.0, 0.0, 0.0)) -> jax.Array:
    """``alpha * image + (1 - alpha) * background_color``: a shaded image over a background, with alpha.

    The alpha carries NMR's gradient (docs/rasterizer.md#approximate-gradient): its edge sweeps estimate what a pixel just
    outside the silhouette would show if an edge moved over it from the alpha cotangent there, i.e. from the
    value ``image`` has there. Shading leaves empty pixels black, which would make that estimate "black"; so,
    for the gradient only, each empty pixel takes the colour of the covered pixels nearest it (a push-pull
    fill). With a constant-colour image this gives exactly the vertex gradient of NMR's rgb rasterizer. The
    returned image does not depend on the fill (alpha is 0 there).

    Args:
      image: float ``[..., H, W, C]`` shaded colours (values at empty pixels are ignored), or any ``[..., C]``
        that broadcasts against ``alpha[..., None]`` by numpy rules (``[C]``: one colour everywhere).
      alpha: float ``[..., H, W]`` coverage in [0, 1] (:attr:`jaxnmr.GBuffers.alpha`).
      background_color: float ``[..., C]`` colour of empty pixels (its leading dims are batch dims).
    Returns:
      float32 ``[..., H, W, C]``; leading dims broadcast.
    """
    fn = "composite"
    image = _checks.float_array(fn, "image", image, ("C",))
    alpha = _checks.float_array(fn, "alpha", alpha, ("H", "W"))
    background = _checks.float_values(fn, "background_color", background_color, (image.shape[-1],))
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
