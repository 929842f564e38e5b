"""The ``jaxnmr`` command: turntable renders of a mesh file (or the built-in Utah teapot) from the shell.

Usage::

    jaxnmr render [MESH] -o out.gif [--views 36] [--size 256] [--elevation 30] [--distance 2.732]
                                    [--fps 12] [--batch 12] [--color R,G,B]
    jaxnmr demo [--out DIR]          # DIR/teapot.gif and a 4-view contact sheet DIR/teapot_views.png
    jaxnmr examples                  # lists the example scripts (examples/ in the repository) with a line each
    jaxnmr doctor                    # what was built (CPU / CUDA kernels, architectures, CUDA version), JAX devices
    jaxnmr --version
    python -m jaxnmr ...             # the same

A turntable puts the camera on a circle around the +y axis at a fixed elevation and distance, looking at the
origin, with azimuths ``linspace(0, 360, views, endpoint=False)`` (azimuth 0: camera on -z; 90: camera on +x).
Meshes are normalised by the loaders so their bounding box spans [-1, 1] along its longest axis, and drawn in one
flat colour (white by default) under the renderer's default lighting, anti-aliased.

Views are rendered in batches: ONE jitted, vmapped renderer call per batch, compiled once per batch size; the last
batch is padded (by repeating its last camera) to the same size so it reuses the compiled call.

:func:`main` takes ``argv`` and returns the exit status (0 on success, 2 on any user error, whose one-line message
on stderr starts with ``jaxnmr: error:``), so it can be called in-process.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Callable, Sequence

import numpy as np

from jaxnmr import _checks
from jaxnmr.cameras import get_points_from_angles, turntable_eyes
from jaxnmr.io import load_mesh, load_obj
from jaxnmr.io.images import contact_sheet, to_uint8, write_gif, write_png
from jaxnmr.meshes import teapot

__all__ = [
    "main",
    "build_parser",
    "parse_color",
    "render_views",
    "int_in",
    "float_where",
]

PROG = "jaxnmr"
MAX_SIZE = 4096
# GIF stores frame delays in 1/100 s, and browsers slow down delays under 20 ms, so faster rates do not play.
MAX_FPS = 50.0
OUTPUT_SUFFIXES = (".gif", ".png")
SHEET_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
DEFAULTS = dict(views=36, size=256, elevation=30.0, distance=2.732, fps=12.0, batch=12, color=(1.0, 1.0, 1.0))


class UsageError(Exception):
    """A user error (bad option, missing or unreadable file); reported as ``jaxnmr: error: ...`` with status 2."""


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------------


def parse_color(text: str) -> tuple[float, float, float]:
    """``"R,G,B"`` with three numbers in [0, 1] (e.g. ``"1,0.5,0"``) -> a tuple of three floats.

    Raises ValueError with a message for the user otherwise.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"expected R,G,B with three numbers in [0, 1] (e.g. 1,0.5,0), got {text!r}")
    return values  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------

_RENDER_BATCH = None


def _render_batch_fn():
    """The jitted ``(renderer, eyes [B, 3], vertices [N, 3], faces [F, 3], textures [F, T, T, T, 3]) -> [B, H, W, 3]``.

    Built once per process (importing jax lazily); jit caches one compilation per (static settings, shapes).
    """
    global _RENDER_BATCH
    if _RENDER_BATCH is None:
        import jax

        def render_batch(renderer, eyes, vertices, faces, textures):
            return jax.vmap(lambda eye: renderer.replace(eye=eye).render(vertices, faces, textures))(eyes)

        _RENDER_BATCH = jax.jit(render_batch)
    return _RENDER_BATCH


def render_views(
    renderer,
    vertices,
    faces,
    textures,
    eyes,
    batch: int,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Renders one image per camera position, ``batch`` views per renderer call.

    Args:
      renderer: a :class:`jaxnmr.Renderer` (its ``eye`` is replaced by each entry of ``eyes``).
      vertices: float32 ``[N, 3]``. faces: int32 ``[F, 3]``. textures: float32 ``[F, T, T, T, 3]``.
      eyes: float32 ``[V, 3]`` camera positions (V >= 1).
      batch: views per call (>= 1; capped at V). The last batch is padded to this size by repeating its last
        camera, so every call has the same shapes and the jitted function is compiled once.
      on_batch: called with the number of (real) views finished after each batch, e.g. a progress bar's update.
    Returns:
      uint8 ``[V, H, W, 3]`` images (see :func:`to_uint8`), row 0 at the top.
    """
    _checks.camera_with_eye("render_views", renderer)
    eyes = np.asarray(eyes, dtype=np.float32).reshape(-1, 3)
    views = eyes.shape[0]
    if views < 1:
        raise ValueError("render_views: need at least one camera position")
    batch = max(1, min(int(batch), views))
    fn = _render_batch_fn()
    frames = []
    for start in range(0, views, batch):
        chunk = eyes[start:start + batch]
        count = chunk.shape[0]
        if count < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
        frames.append(to_uint8(fn(renderer, chunk, vertices, faces, textures))[:count])
        if on_batch is not None:
            on_batch(count)
    return np.concatenate(frames)


def _progress(total: int, desc: str):
    """A tqdm bar on stderr (tqdm disables itself when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="view", file=sys.stderr, disable=None, leave=False)


def _load(path: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """``(vertices float32 [N, 3], faces int32 [F, 3], name)`` of MESH, or of the built-in teapot for None."""
    if path is None:
        mesh = teapot()
        vertices, faces = mesh.vertices, mesh.faces
        name = "teapot"
    else:
        try:
            if path.lower().endswith(".obj"):
                vertices, faces = load_obj(path)
            else:
                mesh = load_mesh(path)
                vertices, faces = mesh.vertices, mesh.faces
        except FileNotFoundError as error:
            raise UsageError(f"cannot read mesh: {error}") from None
        except (ValueError, OSError) as error:
            raise UsageError(f"cannot read mesh: {error}") from None
        name = os.path.basename(path)
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int32)
    if faces.shape[0] == 0:
        raise UsageError(f"{name}: the mesh has no faces, nothing to render")
    if not np.isfinite(vertices).all():
        raise UsageError(f"{name}: the mesh has non-finite vertex coordinates")
    return vertices, faces, name


def _write(path: str, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as error:
        raise UsageError(f"cannot write {path!r}: {error.strerror or error}") from None


def _make_renderer(size: int):
    from jaxnmr.renderer import Renderer

    return Renderer(image_size=size, anti_aliasing=True)


def _textures(faces: np.ndarray, color) -> np.ndarray:
    """One flat colour per face: float32 ``[F, 2, 2, 2, 3]``."""
    return np.broadcast_to(np.asarray(color, np.float32), (faces.shape[0], 2, 2, 2, 3)).copy()


def _turntable(vertices, faces, args, desc: str) -> np.ndarray:
    """uint8 ``[views, size, size, 3]`` turntable frames of the mesh, with a progress bar."""
    renderer = _make_renderer(args.size)
    eyes = turntable_eyes(args.views, args.elevation, args.distance)
    with _progress(args.views, desc) as bar:
        return render_views(renderer, vertices, faces, _textures(faces, args.color), eyes, args.batch, bar.update)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------


def _cmd_render(args) -> int:
    start = time.perf_counter()
    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in OUTPUT_SUFFIXES:
        shown = repr(suffix) if suffix else "none"
        raise UsageError(
            f"unsupported output format for {args.output!r} (suffix {shown}); use .gif for a turntable or .png "
            "for the first view"
        )
    parent = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {args.output!r}: directory {parent!r} does not exist")
    vertices, faces, _ = _load(args.mesh)

    if suffix == ".png":
        renderer = _make_renderer(args.size)
        eyes = turntable_eyes(1, args.elevation, args.distance)
        image = render_views(renderer, vertices, faces, _textures(faces, args.color), eyes, 1)[0]
        _write(args.output, lambda: write_png(args.output, image))
        views = 1
    else:
        frames = _turntable(vertices, faces, args, "rendering")
        _write(args.output, lambda: write_gif(args.output, frames, args.fps))
        views = args.views
    elapsed = time.perf_counter() - start
    print(f"wrote {args.output} ({_plural(views, 'view')}, {args.size}x{args.size}, "
          f"{_plural(faces.shape[0], 'face')}) in {elapsed:.1f} s")
    return 0


def _cmd_demo(args) -> int:
    start = time.perf_counter()
    out = args.out
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output directory {out!r}: {error.strerror or error}") from None
    vertices, faces, _ = _load(None)

    gif_path = os.path.join(out, "teapot.gif")
    frames = _turntable(vertices, faces, args, "teapot")
    _write(gif_path, lambda: write_gif(gif_path, frames, args.fps))
    print(f"wrote {gif_path} ({_plural(args.views, 'view')}, {args.size}x{args.size}, "
          f"{_plural(faces.shape[0], 'face')})")

    sheet_path = os.path.join(out, "teapot_views.png")
    eyes = np.asarray(get_points_from_angles(args.distance, args.elevation, np.asarray(SHEET_AZIMUTHS)))
    # Same batch size as the turntable, so the already compiled call is reused.
    sheet = contact_sheet(render_views(_make_renderer(args.size), vertices, faces, _textures(faces, args.color),
                                       eyes, min(args.batch, args.views)))
    _write(sheet_path, lambda: write_png(sheet_path, sheet))
    azimuths = "/".join(f"{a:g}" for a in SHEET_AZIMUTHS)
    print(f"wrote {sheet_path} (azimuths {azimuths}, {sheet.shape[1]}x{sheet.shape[0]})")
    print(f"demo done in {time.perf_counter() - start:.1f} s")
    return 0


# The example scripts: examples/NAME.py in the repository (not installed with the package). Name, one line.
EXAMPLES = (
    ("multiview", "NMR example 1: turntable GIF of a mesh (default: the teapot), all views in one vmapped call"),
    ("fit_vertices", "NMR example 2: deform the teapot until its side silhouette is a square (Adam, compiled scan)"),
    ("fit_textures", "NMR example 3: optimise tanh(textures) to match a striped image from random azimuths"),
    ("fit_camera", "NMR example 4: recover the camera position from a reference image, starting at (6, 10, -14)"),
    ("pose_6dof", "estimate an object's 6-DoF pose from one rendered image; a vmapped batch of random poses"),
    ("fit_mesh_multiview", "deform an icosphere to match a mesh's silhouettes from many views, with regularisers"),
    ("fit_points_multiview", "fit a point cloud to a mesh's silhouettes from many views, from a random blob"),
    ("learn_reconstruction", "train a network for single-view 3D reconstruction through the renderer (silhouettes)"),
    ("learn_points", "train a network from one picture to a point cloud (chamfer distance + rendered silhouettes)"),
)


def examples_dir() -> str | None:
    """The ``examples`` folder beside the package when running from a checkout, else None."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    if any(os.path.isfile(os.path.join(folder, f"{name}.py")) for name, _ in EXAMPLES):
        return folder
    return None


def _first_docstring_line(path: str) -> str:
    import ast

    try:
        with open(path, encoding="utf-8") as file:
            doc = ast.get_docstring(ast.parse(file.read())) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _cmd_examples(args) -> int:
    folder = examples_dir()
    rows = [(name, line, folder is None or os.path.isfile(os.path.join(folder, f"{name}.py")))
            for name, line in EXAMPLES]
    if folder is not None:
        known = {name for name, _ in EXAMPLES}
        for entry in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(entry)
            if ext == ".py" and not stem.startswith("_") and stem not in known:
                rows.append((stem, _first_docstring_line(os.path.join(folder, entry)), True))
    width = max(len(name) for name, _, _ in rows) + 3
    print("jaxnmr examples (each: python examples/NAME.py --out DIR [--iterations N]; writes GIFs/PNGs under DIR "
          "and ends with a line 'final <metric>=<value>'):")
    for name, line, present in rows:
        print(f"  {name + '.py':<{width}} {line}{'' if present else '  [not in this checkout]'}")
    if folder is None:
        print("The examples are not installed with the package: they are the examples/ folder of the jaxnmr "
              "repository. Run them from a checkout, e.g. python examples/multiview.py --out out/multiview")
    else:
        shown = os.path.relpath(folder) if not os.path.relpath(folder).startswith("..") else folder
        print(f"in {shown}{os.sep}, e.g. python {os.path.join(shown, 'multiview.py')} --out out/multiview")
    return 0


def _cmd_doctor(args) -> int:
    from jaxnmr import __version__, ffi
    from jaxnmr.ffi import buildinfo

    print(buildinfo.report(__version__, ffi.kernel_status))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors ``jaxnmr: error: ...`` (exit status 2) instead of usage + error."""

    def error(self, message):  # noqa: D401 - argparse API
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"{PROG}: error: {message}{hint}\n")


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``lo`` (and <= ``hi`` if given), with a clear message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def float_where(check: Callable[[float], bool], requirement: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number for which ``check`` holds; else "must be <requirement>"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and check(value)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


def _color(text: str) -> tuple[float, float, float]:
    try:
        return parse_color(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _view_options() -> argparse.ArgumentParser:
    """The camera / image / animation options shared by ``render`` and ``demo``."""
    p = _Parser(add_help=False)
    g = p.add_argument_group("view options")
    d = DEFAULTS
    g.add_argument("--views", type=int_in(1, None), default=d["views"], metavar="N",
                   help="number of turntable views (GIF frames), at azimuths 0, 360/N, ... degrees "
                        "(default: %(default)s)")
    g.add_argument("--size", type=int_in(1, MAX_SIZE), default=d["size"], metavar="PX",
                   help=f"image width and height in pixels, 1 to {MAX_SIZE} (default: %(default)s)")
    g.add_argument("--elevation", type=float_where(lambda v: -90 < v < 90, "strictly between -90 and 90"),
                   default=d["elevation"], metavar="DEG",
                   help="camera elevation above the y=0 plane in degrees, in (-90, 90) (default: %(default)s)")
    g.add_argument("--distance", type=float_where(lambda v: v > 0, "> 0"), default=d["distance"], metavar="D",
                   help="camera distance from the origin; meshes are normalised to [-1, 1] "
                        "(default: %(default)s, where the unit cube's face fills the 30-degree view)")
    g.add_argument("--fps", type=float_where(lambda v: 0 < v <= MAX_FPS, f"in (0, {MAX_FPS:g}]"),
                   default=d["fps"], metavar="F",
                   help=f"GIF frames per second, up to {MAX_FPS:g} (default: %(default)s)")
    g.add_argument("--batch", type=int_in(1, None), default=d["batch"], metavar="B",
                   help="views rendered per (jitted, vmapped) renderer call; larger is faster but needs more "
                        "memory (default: %(default)s)")
    g.add_argument("--color", type=_color, default=d["color"], metavar="R,G,B",
                   help="mesh colour, three numbers in [0, 1] (default: 1,1,1 = white)")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxnmr`` argument parser (subcommands ``render``, ``demo``, ``examples`` and ``doctor``)."""
    from jaxnmr import __version__

    parser = _Parser(
        prog=PROG,
        description="jaxnmr: a differentiable mesh renderer for JAX (the Neural 3D Mesh Renderer on the XLA "
                    "FFI). This command renders turntable animations of meshes.",
        epilog="examples:\n"
               "  jaxnmr demo --out demo                 # demo/teapot.gif and demo/teapot_views.png\n"
               "  jaxnmr render bunny.ply -o bunny.gif --views 48 --color 0.9,0.6,0.3\n"
               "  jaxnmr render -o teapot.png --elevation 15   # one still of the built-in teapot\n"
               "  jaxnmr examples                        # the example scripts, with a line each\n"
               "  jaxnmr doctor                          # what was built: CPU / CUDA kernels, for which GPUs\n"
               "\nrun 'jaxnmr COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    views = _view_options()

    render = sub.add_parser(
        "render", parents=[views], help="render a turntable GIF (or a PNG still) of a mesh file",
        description="Render a turntable of MESH around the +y axis: a looping GIF of --views frames, or, for a "
                    ".png output, only the first view (azimuth 0, camera on -z). The mesh is normalised to "
                    "[-1, 1], drawn in one flat colour under the default lighting, anti-aliased.",
    )
    render.add_argument("mesh", nargs="?", default=None, metavar="MESH",
                        help="mesh file: .obj (read by jaxnmr.load_obj) or any format trimesh reads, e.g. .ply, "
                             ".stl, .off, .glb (read by jaxnmr.load_mesh); default: the built-in Utah teapot")
    render.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file: .gif (turntable animation) or .png (first view only)")
    render.set_defaults(handler=_cmd_render)

    demo = sub.add_parser(
        "demo", parents=[views], help="render the built-in teapot: a turntable GIF and a 4-view contact sheet",
        description="Render the built-in Utah teapot to OUT/teapot.gif (turntable) and OUT/teapot_views.png "
                    "(azimuths 0/90/180/270 side by side), creating OUT.",
    )
    demo.add_argument("--out", default="jaxnmr-demo", metavar="DIR",
                      help="output directory, created if needed (default: %(default)s)")
    demo.set_defaults(handler=_cmd_demo)

    examples = sub.add_parser(
        "examples", help="list the example scripts (NMR's four demos and two inverse problems)",
        description="List the example scripts with a line each, and where they are. They live in the examples/ "
                    "folder of the repository (not installed with the package).",
    )
    examples.set_defaults(handler=_cmd_examples)

    doctor = sub.add_parser(
        "doctor", help="say what was built and whether the kernels load: CPU and CUDA, architectures, versions",
        description="Print jaxnmr's and JAX's versions, JAX's devices, the install's build record (which kernel "
                    "libraries were built, with which compiler, CUDA version and GPU architectures, or why the "
                    "CUDA library was not built), whether each kernel library loaded, and the device code "
                    "actually in libjaxnmr_cuda.so.",
    )
    doctor.set_defaults(handler=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``jaxnmr`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0: success (also for ``--help`` and ``--version``); 2: a user error, reported on stderr as one line starting
    with ``jaxnmr: error:``; 130: interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a parse error already reported by _Parser.error
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if args.command is None:
        print(f"{PROG}: error: a command is required: render, demo, examples or doctor (see '{PROG} --help')",
              file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
