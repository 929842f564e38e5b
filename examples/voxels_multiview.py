"""Render a coloured voxel grid from several views with ONE vmapped call, then fit its colours to those views.

A little house on a 12^3 grid (walls, a pitched roof, a door, windows, a chimney) becomes a triangle mesh with
:func:`jaxnmr.voxels.voxels_to_mesh`: the exposed sides of the occupied voxels, each voxel's colour gathered
into its faces' textures. The views (azimuths 45, 45 + 360/N, ... at elevation 30) are one batch: ``jax.vmap`` over
``renderer.replace(eye=eye).render(...)`` under ``jax.jit``. To show that the colours are differentiable, the
script then starts from grey voxels and runs a few Adam steps on the per-voxel colours against the rendered
views (the loss goes through ``voxels_to_mesh`` and the rasterizer); voxels that no view sees keep their grey.

Run::

    python examples/voxels_multiview.py --out out/voxels [--views 4] [--size 128] [--iterations 40]

Writes ``DIR/voxels_multiview.png`` (the views side by side) and ``DIR/voxels_fit.png`` (the fitted colours
from the same views). Prints ``initial mse=...`` and, last, ``final mse=<mean squared error over all views>``.
"""

from __future__ import annotations

import os

import numpy as np
from _common import (
    gradient_step,
    Timer,
    contact_sheet,
    make_parser,
    optimize,
    parse_args,
    positive_int,
    report_final,
    report_initial,
    to_uint8,
    write_png,
)

NAME = "voxels_multiview"


def house(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy bool ``[n, n, n]`` and colours float32 ``[n, n, n, 3]`` of a little house; axis 1 (y) is up."""
    occ = np.zeros((n, n, n), bool)
    colors = np.zeros((n, n, n, 3), np.float32)
    lo, hi, wall = 2, n - 2, n // 2  # footprint [lo, hi) in x and z, walls up to y < wall
    occ[lo:hi, 0:wall, lo:hi] = True
    colors[lo:hi, 0:wall, lo:hi] = (0.93, 0.86, 0.70)  # plaster
    for y in range(wall, n):  # a pitched roof along z, one voxel narrower each layer
        inset = y - wall
        if lo - 1 + inset >= hi + 1 - inset:
            break
        occ[lo - 1 + inset:hi + 1 - inset, y, lo - 1:hi + 1] = True
        colors[lo - 1 + inset:hi + 1 - inset, y, lo - 1:hi + 1] = (0.75, 0.18, 0.12)  # tiles
    occ[hi - 3, wall:n - 2, hi - 3] = True  # chimney
    colors[hi - 3, wall:n - 2, hi - 3] = (0.35, 0.32, 0.32)
    mid = (lo + hi) // 2
    colors[mid - 1:mid + 1, 0:3, lo] = (0.40, 0.22, 0.10)  # door on the front (z = lo) side
    colors[lo + 1, 3, lo] = colors[hi - 2, 3, lo] = (0.35, 0.60, 0.95)  # windows
    colors[lo, 2:4, mid - 1:mid + 1] = colors[hi - 1, 2:4, mid - 1:mid + 1] = (0.35, 0.60, 0.95)
    return occ, colors


def build_parser():
    parser = make_parser(NAME, __doc__.split("\n\n")[0], iterations=40, size=128)
    parser.add_argument("--views", type=positive_int, default=4, metavar="N",
                        help="number of views, at azimuths 45, 45 + 360/N, ... degrees (default: %(default)s)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    timer = Timer()

    import jax
    import jax.numpy as jnp
    import optax

    import jaxnmr
    from jaxnmr.voxels import voxels_to_mesh

    occ, colors = house()
    mesh = voxels_to_mesh(occ, colors)
    vertices, faces = mesh.vertices, mesh.faces
    print(f"{int(occ.sum())} voxels -> {vertices.shape[0]} vertices, {faces.shape[0]} faces")
    renderer = jaxnmr.Renderer(image_size=args.size)
    azimuths = 45.0 + 360.0 * jnp.arange(args.views) / args.views  # corner-on views show two sides each
    eyes = jaxnmr.get_points_from_angles(2.8, 30.0, azimuths)

    def render_views(c):
        """[views, S, S, 3]: every view in one vmapped call; the colours ``c`` may be traced."""
        tex = voxels_to_mesh(occ, c).textures
        return jax.vmap(lambda eye: renderer.replace(eye=eye).render(vertices, faces, tex))(eyes)

    render_views = jax.jit(render_views)
    target = render_views(jnp.asarray(colors))
    write_png(os.path.join(args.out, f"{NAME}.png"), contact_sheet(to_uint8(target)))

    optimizer = optax.adam(0.05)
    mse = lambda c: jnp.mean((render_views(c) - target) ** 2)

    step = gradient_step(lambda c, _: mse(c), optimizer)

    start = jnp.full(colors.shape, 0.5, jnp.float32)
    report_initial("mse", float(mse(start)), ".6f")
    result = optimize(step, (start, optimizer.init(start)), args.iterations, desc="fitting colours",
                      progress=args.progress)
    fitted = result.state[0]
    write_png(os.path.join(args.out, "voxels_fit.png"), contact_sheet(to_uint8(render_views(fitted))))
    print(f"{args.views} views rendered and {result.steps} Adam steps in {timer.seconds:.1f} s")
    report_final("mse", float(mse(fitted)), ".6f")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
