"""Renders the README's geometry and lens pictures: python docs/make_pictures_geometry.py.

Writes docs/implicit.png (a torus from an implicit function through ``jaxnmr.marching_cubes``, normals as
colours, and 2000 points ``jaxnmr.sample_points`` draws on it) and docs/lens.png (a checkerboard seen through
``Renderer(camera_mode="projection")`` without and with radial lens distortion).
"""

import pathlib

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr.io.images import to_uint8

HERE = pathlib.Path(__file__).resolve().parent
SIZE = 256
WHITE = (1.0, 1.0, 1.0)


def torus_sdf(p):
    """Signed distance to a torus in the x-z plane (radii 0.6 and 0.25), tilted about x."""
    c, s = np.cos(0.5), np.sin(0.5)
    x, y, z = p[:, 0], c * p[:, 1] - s * p[:, 2], s * p[:, 1] + c * p[:, 2]
    return jnp.sqrt((jnp.sqrt(x**2 + z**2) - 0.6) ** 2 + y**2) - 0.25


def implicit_panels() -> tuple[np.ndarray, np.ndarray]:
    """The marching-cubes torus coloured by its normals, and points sampled on its surface."""
    torus = jaxnmr.marching_cubes(torus_sdf, resolution=48)
    v, f = torus.vertices, torus.faces
    colours = 0.5 + 0.5 * jaxnmr.vertex_normals(v, f)
    textures = jaxnmr.vertex_colors_to_textures(colours, f)
    renderer = jaxnmr.Renderer(image_size=SIZE, background_color=WHITE, light_intensity_ambient=0.7,
                               light_intensity_directional=0.3,
                               eye=jaxnmr.get_points_from_angles(2.6, 25.0, 20.0))
    mesh = np.asarray(renderer.render(v, f, textures))
    points = jaxnmr.sample_points(jax.random.PRNGKey(0), v, f, 2000)  # [2000, 3]
    ndc = np.asarray(jaxnmr.perspective(jaxnmr.look_at(points, renderer.eye)))
    dots = np.ones((SIZE, SIZE, 3), np.float32)
    cols = np.clip(((ndc[:, 0] + 1) * SIZE / 2).astype(int), 0, SIZE - 1)
    rows = np.clip(((1 - ndc[:, 1]) * SIZE / 2).astype(int), 0, SIZE - 1)
    for dr in (0, 1):
        for dc in (0, 1):
            dots[np.clip(rows + dr, 0, SIZE - 1), np.clip(cols + dc, 0, SIZE - 1)] = (0.15, 0.3, 0.7)
    return mesh, dots


def checkerboard(n: int = 16):
    """A square board in the z = 0 plane, n x n cells of 2 triangles, cells alternately dark and light."""
    grid = np.linspace(-1.0, 1.0, n + 1, dtype=np.float32)
    xs, ys = np.meshgrid(grid, grid, indexing="xy")
    vertices = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size, np.float32)], -1)
    faces, colours = [], []
    for i in range(n):
        for j in range(n):
            a = i * (n + 1) + j
            b, c, d = a + 1, a + n + 2, a + n + 1
            faces += [[a, b, c], [a, c, d]]
            colours += [(0.15, 0.15, 0.2) if (i + j) % 2 else (0.95, 0.9, 0.8)] * 2
    textures = np.broadcast_to(np.float32(colours)[:, None, None, None, :], (len(colours), 2, 2, 2, 3))
    return vertices, np.int32(faces), textures


def lens_panels() -> tuple[np.ndarray, np.ndarray]:
    """The board 2.8 units in front of an OpenCV camera, without and with barrel distortion (k1 = -0.35)."""
    v, f, textures = checkerboard()
    K = np.float32([[300.0, 0.0, 128.5], [0.0, 300.0, 128.5], [0.0, 0.0, 1.0]])
    R, t = np.eye(3, dtype=np.float32), np.float32([0.0, 0.0, 2.8])
    renderer = jaxnmr.Renderer(image_size=SIZE, camera_mode="projection", K=K, R=R, t=t, orig_size=SIZE,
                               background_color=WHITE, light_intensity_ambient=1.0,
                               light_intensity_directional=0.0)
    plain = np.asarray(renderer.render(v, f, textures))
    warped = renderer.replace(dist_coeffs=np.float32([-0.35, 0.0, 0.0, 0.0, 0.0])).render(v, f, textures)
    return plain, np.asarray(warped)


def side_by_side(panels) -> np.ndarray:
    gap = np.ones((SIZE, 8, 3), np.float32)
    return to_uint8(np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1))


def main() -> None:
    for name, panels in (("implicit.png", implicit_panels()), ("lens.png", lens_panels())):
        iio.imwrite(HERE / name, side_by_side(panels))
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
