"""Renders the README's camera and texture pictures: python docs/make_pictures_cameras_textures.py.

Writes docs/cameras.png (FoV perspective vs orthographic, one R, T) and docs/textures.png (vertex colours; a UV
texture map and a cube wearing it).
"""

import pathlib

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes
from jaxnmr.io.images import to_uint8

HERE = pathlib.Path(__file__).resolve().parent
SIZE = 256
WHITE = (1.0, 1.0, 1.0)


def receding_cubes():
    """Five equal cubes in a row along x, each one colour: (v, f, textures)."""
    vertices, faces, colours = [], [], []
    palette = [(0.9, 0.3, 0.2), (0.95, 0.7, 0.2), (0.3, 0.75, 0.35), (0.25, 0.5, 0.9), (0.6, 0.35, 0.8)]
    for i, colour in enumerate(palette):
        cube = meshes.cube(0.6)
        v, f = cube.vertices, cube.faces
        vertices.append(np.asarray(v) + np.float32([2.4 - 1.2 * i, 0.0, 0.0]))
        faces.append(np.asarray(f) + 8 * i)
        colours += [colour] * len(f)
    textures = np.broadcast_to(np.float32(colours)[:, None, None, None, :], (len(colours), 2, 2, 2, 3))
    return np.concatenate(vertices).astype(np.float32), np.concatenate(faces).astype(np.int32), textures


def cameras_picture() -> np.ndarray:
    """The same cubes through one R, T: FoV perspective (50 degrees) and orthographic (scale 0.36)."""
    v, f, textures = receding_cubes()
    R, T = jaxnmr.look_at_view_transform(5.5, 20.0, 60.0)
    common = dict(image_size=SIZE, background_color=WHITE, R=R, t=T, light_intensity_ambient=0.55,
                  light_intensity_directional=0.5, light_direction=(0.4, 0.8, 0.45))
    perspective = jaxnmr.Renderer(camera_mode="fov", fov=50.0, **common).render(v, f, textures)
    orthographic = jaxnmr.Renderer(camera_mode="orthographic", scale=0.36, **common).render(v, f, textures)
    return np.concatenate([np.asarray(perspective), np.asarray(orthographic)], axis=1)


def letter_map(size: int = 64) -> np.ndarray:
    """A texture map ``[size, size, 3]`` (row 0 at the top): a checkerboard with a red 'F' (not symmetric, so a
    mirrored or upside-down mapping shows)."""
    rows, cols = np.mgrid[:size, :size] * 8 // size
    image = np.where(((rows + cols) % 2 == 0)[..., None], np.float32([0.92, 0.92, 0.85]),
                     np.float32([0.35, 0.55, 0.8]))
    s = size // 8
    for r0, r1, c0, c1 in ((1, 7, 2, 3), (1, 2, 2, 6), (3, 4, 2, 5)):  # the stem and two bars of an F, in cells
        image[r0 * s:r1 * s, c0 * s:c1 * s] = (0.85, 0.15, 0.1)
    return image.astype(np.float32)


def cube_face_uvs(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Each side of a cube shows the whole map upright as seen from outside (+y sides: seen with -z up)."""
    corners = vertices[faces]  # [F, 3, 3]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    axis = np.abs(normal).argmax(-1)
    sign = np.sign(normal[np.arange(len(faces)), axis])
    half = np.abs(vertices).max()
    uvs = np.zeros(corners.shape[:2] + (2,), np.float32)
    for k, (a, s) in enumerate(zip(axis, sign)):
        # (right, up) directions on that side, for a viewer outside looking at it
        right, up = {0: ([0, 0, -s], [0, 1, 0]), 1: ([1, 0, 0], [0, 0, -s]), 2: ([s, 0, 0], [0, 1, 0])}[a]
        uvs[k] = np.stack([corners[k] @ right, corners[k] @ up], -1) / (2 * half) + 0.5
    return uvs


def textures_picture() -> np.ndarray:
    """A teapot with per-vertex colours; the letter map; a cube wearing it through face UVs."""
    teapot = meshes.teapot()
    v, f = teapot.vertices, teapot.faces
    v, f = np.asarray(v), np.asarray(f)
    colours = np.clip(0.5 + 0.6 * v, 0.0, 1.0).astype(np.float32)  # a colour field over the positions
    lit = dict(image_size=SIZE, background_color=WHITE, light_intensity_ambient=0.6, light_intensity_directional=0.5)
    R, T = jaxnmr.look_at_view_transform(2.3, 25.0, 30.0)
    teapot = jaxnmr.Renderer(camera_mode="fov", R=R, t=T, **lit).render(
        v, f, jaxnmr.vertex_colors_to_textures(colours, f))
    image = letter_map()
    cube = meshes.cube(1.2)
    cv, cf = cube.vertices, cube.faces
    cv, cf = np.asarray(cv), np.asarray(cf)
    cube_textures = jaxnmr.uv_to_textures(image, cube_face_uvs(cv, cf), texture_size=32)
    R, T = jaxnmr.look_at_view_transform(2.6, 25.0, 35.0)
    cube = jaxnmr.Renderer(camera_mode="fov", R=R, t=T, **lit).render(cv, cf, cube_textures)
    shown = np.asarray(jax.image.resize(jnp.asarray(image), (SIZE - 32, SIZE - 32, 3), "nearest"))
    panel = np.pad(shown, ((16, 16), (16, 16), (0, 0)), constant_values=1.0)
    return np.concatenate([np.asarray(teapot), panel, np.asarray(cube)], axis=1)


def main() -> None:
    iio.imwrite(HERE / "cameras.png", to_uint8(cameras_picture()))
    iio.imwrite(HERE / "textures.png", to_uint8(textures_picture()))


if __name__ == "__main__":
    main()
