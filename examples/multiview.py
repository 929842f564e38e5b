"""Draw a mesh from many viewpoints: a turntable GIF, every view rendered by ONE vmapped renderer call.

Reproduces example 1 of the Neural 3D Mesh Renderer (NMR): the white (``ones`` textures, T=2), shaded teapot at
distance 2.732 and elevation 30 degrees, azimuths 0, 4, ..., 356 (90 frames), 256 x 256 with anti-aliasing,
NMR's default lighting. Where NMR looped over the 90 cameras, here the 90 eyes are one batch: ``jax.vmap`` over
``renderer.replace(eye=eye).render(...)`` under one ``jax.jit`` gives a single rasterizer kernel call for all
views (the script checks this in the traced program and says so).

Run::

    python examples/multiview.py --out out/multiview [--views 90] [--size 256] [--mesh PATH]

Writes ``DIR/multiview.gif`` (the turntable) and ``DIR/multiview_views.png`` (four views side by side). Prints
the number of kernel calls and the time, then ``final views=<number of views rendered>``.
"""

from __future__ import annotations

import os
import sys

from _common import (
    DISTANCE,
    Timer,
    contact_sheet,
    count_kernel_calls,
    float_where,
    make_parser,
    parse_args,
    positive_int,
    report_final,
    to_uint8,
    turntable_eyes,
    write_gif,
    write_png,
)

NAME = "multiview"


def build_parser():
    parser = make_parser(NAME, __doc__.split("\n\n")[0], size=256)
    parser.add_argument("--views", "--iterations", dest="views", type=positive_int, default=90, metavar="N",
                        help="number of views (GIF frames), at azimuths 0, 360/N, ... degrees; --iterations is an "
                             "alias (default: %(default)s, NMR's 4-degree steps)")
    elevation = float_where(lambda v: -90 < v < 90, "strictly between -90 and 90")
    parser.add_argument("--elevation", type=elevation, default=30.0, metavar="DEG",
                        help="camera elevation in degrees, in (-90, 90) (default: %(default)s)")
    parser.add_argument("--distance", type=float_where(lambda v: v > 0, "> 0"), default=DISTANCE, metavar="D",
                        help="camera distance from the origin, > 0 (default: %(default)s)")
    parser.add_argument("--mesh", default=None, metavar="PATH",
                        help="mesh file (.obj, or any format trimesh reads); default: the built-in teapot")
    return parser


def load(parser, path):
    """(vertices [N, 3], faces [F, 3]) of PATH, or of the built-in teapot; unreadable files are argparse errors."""
    import numpy as np

    if path is None:
        from jaxnmr.meshes import teapot

        mesh = teapot()
        return mesh.vertices, mesh.faces
    from jaxnmr import load_mesh, load_obj

    if not os.path.isfile(path):
        parser.error(f"--mesh: no such file: {path!r}")
    try:
        if path.lower().endswith(".obj"):
            vertices, faces = load_obj(path)
        else:
            mesh = load_mesh(path)
            vertices, faces = mesh.vertices, mesh.faces
    except (ValueError, OSError) as error:
        parser.error(f"--mesh: cannot read {path!r}: {error}")
    if len(faces) == 0:
        parser.error(f"--mesh: {path!r} has no faces")
    return np.asarray(vertices, np.float32), np.asarray(faces, np.int32)


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    timer = Timer()

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxnmr

    vertices, faces = load(parser, args.mesh)
    textures = np.ones((faces.shape[0], 2, 2, 2, 3), np.float32)  # NMR: white, T=2
    renderer = jaxnmr.Renderer(image_size=args.size)
    eyes = jnp.asarray(turntable_eyes(args.views, args.elevation, args.distance))

    def render_all(eyes):
        return jax.vmap(lambda eye: renderer.replace(eye=eye).render(vertices, faces, textures))(eyes)

    calls = count_kernel_calls(render_all, eyes)
    assert calls == 1, f"expected one rasterizer call for all {args.views} views, the traced program has {calls}"
    render_timer = Timer()
    images = jax.jit(render_all)(eyes).block_until_ready()
    seconds = render_timer.seconds
    assert images.shape == (args.views, args.size, args.size, 3), images.shape
    frames = to_uint8(images)
    print(f"rendered {args.views} views of {faces.shape[0]} faces at {args.size}x{args.size} in ONE vmapped "
          f"renderer call ({calls} rasterizer kernel call, {seconds:.2f} s including compilation)")

    gif = write_gif(os.path.join(args.out, f"{NAME}.gif"), frames, args.fps)
    picks = np.unique((np.arange(4) * args.views) // 4)
    sheet = write_png(os.path.join(args.out, f"{NAME}_views.png"), contact_sheet(frames[picks]))
    print(f"wrote {gif} and {sheet} in {timer.seconds:.1f} s")
    report_final("views", int(images.shape[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
