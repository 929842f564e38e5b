"""Renders the README's shading picture: python docs/make_pictures_shading.py (writes docs/shading.png).

The teapot lit by one point light three ways: per face (lighting_phong's textures through NMR's rasterizer) |
per pixel (Blinn-Phong from smooth vertex normals over G-buffers) | toon bands with contour lines. The G-buffer
panels are rendered at twice the size and averaged 2x2 (anti-aliasing), like the rasterizer's.
"""

import pathlib

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes
from jaxnmr.io.images import to_uint8
from jaxnmr.mesh import fill_back
from jaxnmr.rasterizer import downsample_2x2

HERE = pathlib.Path(__file__).resolve().parent
SIZE = 256
WHITE = jnp.ones(3)
COLOUR = jnp.array([0.95, 0.72, 0.35])
LIGHTS = [jaxnmr.AmbientLight(intensity=0.25), jaxnmr.PointLight(position=(0.5, 3.0, -2.5))]
MATERIAL = dict(specular=0.6, shininess=40.0)


@jax.jit
def panels(vertices, faces, eye):
    """(per-face, per-pixel Phong, toon + contour) images ``[SIZE, SIZE, 3]`` of a mesh seen from ``eye``."""
    doubled = fill_back(faces)  # draw both sides, as NMR's Renderer does
    ndc = jaxnmr.vertices_to_faces(jaxnmr.perspective(jaxnmr.look_at(vertices, eye)), doubled)
    textures = jnp.broadcast_to(COLOUR, (doubled.shape[0], 2, 2, 2, 3))
    lit = jaxnmr.lighting_phong(jaxnmr.vertices_to_faces(vertices, doubled), textures, eye, LIGHTS, **MATERIAL)
    per_face = jaxnmr.rasterize(ndc, lit, image_size=SIZE, background_color=WHITE)
    g = jaxnmr.rasterize_gbuffers(ndc, image_size=2 * SIZE)
    normals = jaxnmr.interpolate(jaxnmr.vertex_normals(vertices, faces), g, doubled)
    positions = jaxnmr.interpolate(vertices, g, doubled)
    flat = jaxnmr.flat_normals(jaxnmr.vertices_to_faces(vertices, doubled), g)  # which side is seen
    albedo = jnp.broadcast_to(COLOUR, positions.shape)
    phong = jaxnmr.phong(normals, positions, albedo, eye, LIGHTS, **MATERIAL, facing=flat)
    toon = jaxnmr.toon(normals, positions, albedo, eye, LIGHTS, levels=3, facing=flat)  # ambient: no effect
    lines = jaxnmr.contour(g, normals, depth_threshold=0.1, crease_angle=50.0)
    lines = jax.lax.reduce_window(lines, 0.0, jax.lax.max, (3, 3), (1, 1), "SAME")  # 1.5 pixels wide
    toon = toon * (1.0 - 0.85 * lines[..., None])
    finish = lambda image: downsample_2x2(jaxnmr.composite(image, g.alpha, WHITE), True)
    return per_face, finish(phong), finish(toon)


def main() -> None:
    teapot = meshes.teapot()
    vertices, faces = teapot.vertices, teapot.faces
    eye = jaxnmr.get_points_from_angles(2.0, 25.0, -35.0)
    image = np.concatenate([np.asarray(panel) for panel in panels(vertices, faces, eye)], axis=1)
    iio.imwrite(HERE / "shading.png", to_uint8(np.clip(image, 0.0, 1.0)))


if __name__ == "__main__":
    main()
