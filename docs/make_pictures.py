"""Renders the pictures in README.md: python docs/make_pictures.py (writes docs/*.png)."""

import pathlib

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes
from jaxnmr.io.images import to_uint8

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    teapot = meshes.teapot()
    v, f = teapot.vertices, teapot.faces
    colours = np.array([[0.95, 0.75, 0.35]], np.float32)
    textures = np.broadcast_to(colours[:, None, None, None, :], (f.shape[0], 2, 2, 2, 3))
    renderer = jaxnmr.Renderer(image_size=256, background_color=(1.0, 1.0, 1.0))
    eyes = jaxnmr.get_points_from_angles(2.732, 30.0, jnp.array([0.0, 60.0, 150.0, 240.0]))
    views = jax.jit(jax.vmap(lambda eye: renderer.replace(eye=eye).render(v, f, textures)))(eyes)
    rgbad = jax.vmap(lambda eye: renderer.replace(eye=eye).render_rgbad(v, f, textures))(eyes[:1])
    depth, alpha = np.asarray(rgbad.depth[0]), np.asarray(rgbad.alpha[0])
    solid = alpha > 0.999  # anti-aliased edge pixels average the surface with `far`
    near, far = depth[solid].min(), depth[solid].max()
    shade = np.where(solid, 0.1 + 0.8 * (depth - near) / (far - near), 1.0)  # near = dark
    panels = list(np.asarray(views)) + [np.repeat(shade[..., None], 3, -1), np.repeat(alpha[..., None], 3, -1)]
    iio.imwrite(HERE / "teapot_views.png", to_uint8(np.concatenate(panels, axis=1)))


if __name__ == "__main__":
    main()
