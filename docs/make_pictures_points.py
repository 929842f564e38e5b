"""Renders the README's point-cloud picture: python docs/make_pictures_points.py.

Writes docs/points.png, four panels of the teapot at 256² from one camera: the mesh (``Renderer.render``, colours
from position), 60,000 points sampled on it with the same colours (``render_points``, default radius, alpha
compositing), the mesh's depth image (``render_depth``; near is dark), and that depth image unprojected to one
point per covered pixel (``unproject_depth``) and rendered again as points (``render_points``), coloured by depth.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes
from jaxnmr.io.images import contact_sheet, write_png

HERE = pathlib.Path(__file__).resolve().parent
SIZE = 256
WHITE = (1.0, 1.0, 1.0)


def color(x):
    """A smooth colour for a world position."""
    return 0.5 + 0.45 * jnp.sin(2.5 * x + jnp.array([0.0, 2.0, 4.0]))


def grey(depth, covered):
    """Depth as grey in [0.15, 0.85] (near dark) over covered pixels, white elsewhere."""
    lo, hi = depth[covered].min(), depth[covered].max()
    g = 0.15 + 0.7 * (depth - lo) / max(hi - lo, 1e-6)
    return np.where(covered[..., None], np.repeat(g[..., None], 3, -1), 1.0)


def main() -> None:
    pot = meshes.teapot()
    v, f = jnp.asarray(pot.vertices), jnp.asarray(pot.faces)
    renderer = jaxnmr.Renderer(image_size=SIZE, background_color=WHITE, light_intensity_ambient=1.0,
                               light_intensity_directional=0.0, eye=jaxnmr.get_points_from_angles(2.7, 25.0, 30.0))
    textures = jaxnmr.vertex_colors_to_textures(color(v), f)
    mesh = np.asarray(renderer.render(v, f, textures))
    points = jaxnmr.sample_points(jax.random.key(0), v, f, 60000)
    cloud = np.asarray(renderer.render_points(points, color(points)).rgb)
    sharp = renderer.replace(anti_aliasing=False)
    depth = np.asarray(sharp.render_depth(v, f))
    covered = depth < renderer.far
    back = np.asarray(jaxnmr.unproject_depth(depth, sharp))[covered.reshape(-1)]
    again = sharp.render_points(back, np.zeros_like(back))
    again_depth = np.asarray(again.depth)
    sheet = contact_sheet([mesh, cloud, grey(depth, covered), grey(again_depth, np.asarray(again.alpha) > 0)])
    print(f"depth round trip: {covered.sum()} points; largest difference over covered pixels "
          f"{np.abs(again_depth - depth)[covered].max():.4f} (depth {depth[covered].min():.2f}-"
          f"{depth[covered].max():.2f})")
    print("wrote", write_png(str(HERE / "points.png"), sheet))


if __name__ == "__main__":
    main()
