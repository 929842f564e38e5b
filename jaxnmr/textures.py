"""Appearance representations and the converters between them and the renderer's per-face colour cubes.

The renderer colours face ``f`` from a ``T x T x T`` RGB cube ``textures[..., f, :, :, :, :]``: at a pixel with
perspective-correct barycentrics ``b`` it samples the cube trilinearly at ``(T - 1) b`` (docs/conventions.md,
texture cubes; cube axis k belongs to the face's vertex k). This module converts other representations into such
cubes, all in float32 jax.numpy, differentiable (``jit``, ``vmap``, ``grad``), with any number of leading batch
dimensions:

* per-vertex colours ``[..., N, 3]`` -> cubes (:func:`vertex_colors_to_textures`, exact barycentric
  interpolation) and back (:func:`textures_to_vertex_colors`);
* a UV texture map ``[..., H, W, 3]`` with per-face texture coordinates ``[..., F, 3, 2]`` -> cubes
  (:func:`uv_to_textures`, what :func:`jaxnmr.load_obj` does for ``map_Kd`` images), built on the bilinear
  sampler :func:`sample_bilinear`, so a texture map can be fitted by gradient descent through the renderer.

:func:`jaxnmr.load_textured_mesh` reads these representations from files.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks, _texels

__all__ = ["sample_bilinear", "uv_to_textures", "vertex_colors_to_textures", "textures_to_vertex_colors"]


def _texture_map(fn: str, texture_map, channels) -> jnp.ndarray:
    texture_map = _checks.float_array(fn, "texture_map", texture_map, ("H", "W", channels))
    if texture_map.ndim < 3 or 0 in texture_map.shape[-3:-1]:
        raise ValueError(f"{fn}: texture_map must have shape [..., H, W, C] with H, W >= 1, "
                         f"got shape {texture_map.shape}")
    return texture_map


def sample_bilinear(texture_map, uv) -> jnp.ndarray:
    """Bilinear samples of a texture map at texture coordinates (OBJ's convention).

    ``u`` runs to the right and ``v`` up from the bottom: ``(u, v) = (0, 0)`` is the centre of the bottom-left
    pixel, ``(1, 1)`` the centre of the top-right one, ``(u, v) -> (x, y) = (u (W - 1), v (H - 1))`` pixels with
    y counted up from the bottom row. Positions are clamped into the image (coordinates beyond [0, 1] read the
    border pixels; NaN and infinite ones read the bottom-left pixel); this is the sampler of
    :func:`jaxnmr.load_obj` (docs/conventions.md, "Texture cubes"), in float32. Differentiable in ``texture_map``
    (each sample is a weighted sum of four pixels) and in ``uv`` (piecewise linear; zero gradient outside the
    image).

    Args:
      texture_map: float ``[..., H, W, C]``, row 0 = the top of the picture (as an image file is read).
      uv: float ``[..., P, 2]`` coordinates ``(u, v)``; leading dims broadcast with the map's.
    Returns:
      float32 ``[..., P, C]``.
    """
    fn = "sample_bilinear"
    texture_map = _texture_map(fn, texture_map, "C")
    uv = _checks.float_array(fn, "uv", uv, ("P", 2))
    flipped = lambda image, points: _texels.bilinear_bottom_up(image[::-1], points, jnp)  # bottom row first (v up)
    return jnp.vectorize(flipped, signature="(h,w,c),(p,k)->(p,c)")(texture_map, uv)


def uv_to_textures(texture_map, face_uvs, texture_size: int = 4) -> jnp.ndarray:
    """Per-face colour cubes sampled from a UV texture map, as :func:`jaxnmr.load_obj` fills them.

    Texel ``(i, j, k)`` of face f takes the map's colour at the texture coordinates of the barycentric point
    ``(i, j, k) / (i + j + k)`` of the face's UV triangle (NMR's "ghost texture" fix), sampled by
    :func:`sample_bilinear`. The face UVs are first wrapped as load_obj wraps them: coordinates > 1 are taken
    mod 1, others kept. Linear in the map, so a map can be fitted by gradient.

    Texel (0, 0, 0) has no barycentric point of its own (0 / 0): as in load_obj (NMR's PyTorch port) it samples
    UV (0, 0), the map's bottom-left pixel, for every face (docs/conventions.md, "Texture cubes"). The renderer
    reads that texel only for T = 2 or 3. Every texel agrees with load_obj's to float32 rounding.

    Args:
      texture_map: float ``[..., H, W, 3]`` RGB, row 0 = the top of the picture.
      face_uvs: float ``[..., F, 3, 2]``: the ``(u, v)`` of each face's three corners; leading dims broadcast.
      texture_size: T, an int >= 2.
    Returns:
      float32 ``[..., F, T, T, T, 3]``.
    """
    fn = "uv_to_textures"
    size = _checks.texture_size(fn, texture_size)
    texture_map = _texture_map(fn, texture_map, 3)
    face_uvs = _checks.float_array(fn, "face_uvs", face_uvs, ("F", 3, 2))
    return _uv_to_textures(texture_map, face_uvs, size)


@functools.partial(jax.jit, static_argnums=2)
def _uv_to_textures(texture_map: jnp.ndarray, face_uvs: jnp.ndarray, size: int) -> jnp.ndarray:
    """uv_to_textures after validation; compiled as a whole (op-by-op dispatch of ~F T^3 samples is slow)."""
    uv = _texels.texel_uvs(face_uvs, size, jnp)  # [..., F, T^3, 2]
    lead, num_faces = uv.shape[:-3], uv.shape[-3]
    colors = sample_bilinear(texture_map, uv.reshape(lead + (num_faces * size**3, 2)))
    return colors.reshape(colors.shape[:-2] + (num_faces,) + (size,) * 3 + (3,))


def vertex_colors_to_textures(vertex_colors, faces, texture_size: int = 2) -> jnp.ndarray:
    """Per-face colour cubes that render per-vertex colours interpolated across each face.

    Texel ``(i, j, k)`` of face f is ``(i c0 + j c1 + k c2) / (T - 1)`` with ``c0, c1, c2`` the colours of the
    face's vertices. This is linear in ``(i, j, k)``, so the renderer's trilinear lookup at ``(T - 1) b``
    returns exactly ``b0 c0 + b1 c1 + b2 c2`` for perspective-correct barycentrics ``b``: Gouraud-style
    interpolation (except within the rasterizer's eps of a vertex, where NMR clamps the lookup to
    ``T - 1 - eps``). Any ``T >= 2`` gives the same picture; 2 is the cheapest. Texels off the face's
    ``i + j + k = T - 1`` plane are interpolation support and can lie outside [0, 1]. Differentiable in the
    colours.

    Args:
      vertex_colors: float ``[..., N, 3]`` RGB.
      faces: int ``[..., F, 3]`` vertex indices; leading dims broadcast with the colours'.
      texture_size: T, an int >= 2.
    Returns:
      float32 ``[..., F, T, T, T, 3]``.
    """
    fn = "vertex_colors_to_textures"
    size = _checks.texture_size(fn, texture_size)
    vertex_colors = _checks.float_array(fn, "vertex_colors", vertex_colors, ("N", 3))
    faces = _checks.index_array(fn, "faces", faces, ("F", 3))
    corners = _gather(fn, vertex_colors, faces)  # [..., F, 3, 3]
    ramp = jnp.asarray(np.indices((size,) * 3) / (size - 1), jnp.float32)  # [3, T, T, T]: (i, j, k) / (T - 1)
    return jnp.einsum("kabc,...fkd->...fabcd", ramp, corners)


def _gather(fn: str, values, faces) -> jnp.ndarray:
    """``values [..., N, C]`` at each face's corners -> ``[..., F, 3, C]``; indices checked as vertices_to_faces."""
    num = values.shape[-2]
    _checks.indices_in_range(fn, faces, num)
    index = jnp.clip(faces, 0, max(num - 1, 0))
    return jnp.vectorize(lambda v, f: v[f], signature="(n,c),(f,k)->(f,k,c)")(values, index)


def textures_to_vertex_colors(textures, faces, num_vertices: int) -> jnp.ndarray:
    """Per-vertex colours from per-face colour cubes: the mean, over the faces at a vertex, of that corner.

    The corner of face f at its vertex k is the cube texel with index ``T - 1`` along axis k and 0 along the
    others, the colour the renderer shows at that vertex. Inverse of :func:`vertex_colors_to_textures` for
    every vertex that some face uses; vertices no face uses get 0. Differentiable in ``textures``.

    Args:
      textures: float ``[..., F, T, T, T, 3]``.
      faces: int ``[..., F, 3]`` vertex indices in ``[0, num_vertices)``; leading dims broadcast.
      num_vertices: N, a Python int >= 1.
    Returns:
      float32 ``[..., N, 3]``.
    """
    fn = "textures_to_vertex_colors"
    num = _checks.positive_int(fn, "num_vertices", num_vertices)
    faces = _checks.index_array(fn, "faces", faces, ("F", 3))
    textures = _checks.textures_per_face(fn, textures, faces.shape, -2)
    _checks.indices_in_range(fn, faces, num)
    last = textures.shape[-2] - 1
    corners = jnp.stack([textures[..., last, 0, 0, :], textures[..., 0, last, 0, :], textures[..., 0, 0, last, :]],
                        axis=-2)  # [..., F, 3, 3]

    def one(corner, face):
        index = jnp.clip(face.reshape(-1), 0, num - 1)
        total = jnp.zeros((num, corner.shape[-1]), jnp.float32).at[index].add(corner.reshape(-1, corner.shape[-1]))
        count = jnp.zeros((num,), jnp.float32).at[index].add(1.0)
        return total / jnp.maximum(count, 1.0)[:, None]

    return jnp.vectorize(one, signature="(f,k,c),(f,k)->(n,c)")(corners, faces)
