"""Regenerates the README gallery: runs each example at its default settings, records its final metric and wall
time, and writes small copies of its animations to docs/gallery/.

Run from the repository root (with jaxnmr installed, or importable from the checkout)::

    python docs/make_gallery.py [--only fit_camera ...] [--size 128] [--frames 30] [--keep DIR] [--table-only]

For every example in ``examples/`` that exists (a missing one is skipped, saying so), it runs
``python examples/NAME.py --out DIR/NAME --no-progress`` in a subprocess, times it, and reads the last line
``final <metric>=<value>``. The example's animations (``NAME.gif``, plus the extra ones listed in ``GIFS``) are
subsampled to at most ``--frames`` frames, scaled to ``--size`` pixels high and written as
``docs/gallery/<gif name>`` (each kept under ~300 KB: frames are dropped until it fits); the pictures listed in
``PICTURES`` are copied into ``docs/`` for the README. Each example's result
(metric, seconds, GIFs, machine) is merged into ``docs/gallery/results.json`` (so ``--only`` updates just those
rows), and the table of all recorded examples (the README's "Examples" section) is written to
``docs/gallery/results.md`` and printed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GALLERY = Path(__file__).resolve().parent / "gallery"
MAX_BYTES = 300_000

# name -> what it optimises (the table's second column)
WHAT = {
    "multiview": "nothing: 90 views of the teapot in one vmapped render call",
    "fit_vertices": "the teapot's vertices (silhouette -> square), Adam lr 1e-3, 300 steps",
    "fit_textures": "tanh(textures), 4032 x 4^3 RGB, from random azimuths, Adam lr 0.1, 300 steps",
    "fit_camera": "the camera position [3] from (6, 10, -14), Adam lr 0.1 (b2 0.9), until the loss < 80",
    "pose_6dof": "6-DoF poses (rotation + translation) of a batch of random poses, vmapped",
    "fit_mesh_multiview": "an icosphere's vertices against multi-view silhouettes, with regularisers",
    "fit_points_multiview": "2000 points and their radii (which may only shrink), from a random blob, against 16 "
                            "silhouettes; IoU on 8 held-out views",
    "learn_reconstruction": "a network (image -> icosphere offsets) trained on silhouettes only; IoU on held-out "
                            "shapes",
    "learn_points": "a network (image -> 512 points) trained with the chamfer distance and point-rendered "
                    "silhouettes; chamfer distance and IoU on held-out shapes",
}
# name -> the animations to put in the gallery (default: NAME.gif)
GIFS = {"fit_vertices": ["fit_vertices.gif", "fit_vertices_result.gif"]}
# name -> pictures copied as they are into docs/ for the README (each must stay under MAX_PICTURE_BYTES)
PICTURES = {
    "fit_points_multiview": ["fit_points_multiview.png"],
    "learn_reconstruction": ["learn_reconstruction.png"],
    "learn_points": ["learn_points.png"],
}
MAX_PICTURE_BYTES = 200_000


def shrink_gif(src: Path, dst: Path, height: int, max_frames: int) -> tuple[int, int]:
    """Writes ``src`` subsampled to <= max_frames frames and ``height`` px high as ``dst`` (< MAX_BYTES if it can
    be done by dropping frames). Returns (frames, bytes)."""
    with Image.open(src) as gif:
        frames, durations = [], []
        for index in range(getattr(gif, "n_frames", 1)):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
            durations.append(gif.info.get("duration", 80))
    count = min(max_frames, len(frames))
    while True:
        picks = np.unique(np.linspace(0, len(frames) - 1, count).round().astype(int))
        # Keep the total duration: each kept frame lasts as long as the frames it stands for.
        duration = int(round(sum(durations) / len(picks)))
        images = []
        for i in picks:
            image = Image.fromarray(frames[i])
            width = max(1, round(image.width * height / image.height))
            image = image.resize((width, height), Image.LANCZOS)
            images.append(image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                       optimize=True, disposal=1)
        if buffer.tell() <= MAX_BYTES or count <= 4:
            dst.write_bytes(buffer.getvalue())
            return len(images), buffer.tell()
        count = max(4, count * 3 // 4)


def run_example(name: str, out: Path) -> tuple[str, float]:
    """Runs examples/NAME.py at its defaults; returns (its 'final ...' line without 'final ', wall seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--out", str(out), "--no-progress"],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name}.py failed (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    last = proc.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"final (\S+=\S+)", last)
    if not match:
        raise RuntimeError(f"{name}.py did not end with 'final <metric>=<value>': {last!r}")
    return match.group(1), seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(WHAT), help="examples to run")
    parser.add_argument("--size", type=int, default=128, metavar="PX", help="GIF height (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=30, metavar="N",
                        help="most frames per GIF (default: %(default)s)")
    parser.add_argument("--keep", metavar="DIR", help="keep the examples' full outputs in DIR")
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing: rewrite results.md from the recorded results.json")
    args = parser.parse_args(argv)

    GALLERY.mkdir(parents=True, exist_ok=True)
    results_path = GALLERY / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        for name in [] if args.table_only else (args.only or list(WHAT)):
            if not (EXAMPLES / f"{name}.py").is_file():
                print(f"skipping {name}: examples/{name}.py not found", file=sys.stderr)
                continue
            print(f"running {name} ...", file=sys.stderr, flush=True)
            metric, seconds = run_example(name, base / name)
            gifs = []
            for gif in GIFS.get(name, [f"{name}.gif"]):
                src = base / name / gif
                if not src.is_file():
                    candidates = sorted((base / name).glob("*.gif"))
                    if not candidates:
                        continue
                    src = candidates[0]
                frames, size = shrink_gif(src, GALLERY / src.name, args.size, args.frames)
                print(f"  {src.name}: {frames} frames, {size / 1000:.0f} KB", file=sys.stderr)
                gifs.append(src.name)
            for picture in PICTURES.get(name, []):
                data = (base / name / picture).read_bytes()
                if len(data) > MAX_PICTURE_BYTES:
                    raise RuntimeError(f"{name}: {picture} is {len(data)} bytes, over {MAX_PICTURE_BYTES}")
                (GALLERY.parent / picture).write_bytes(data)
                print(f"  {picture} -> docs/{picture}, {len(data) / 1000:.0f} KB", file=sys.stderr)
            print(f"  final {metric} in {seconds:.1f} s", file=sys.stderr)
            results[name] = dict(metric=metric, seconds=round(seconds, 1), gifs=gifs, machine=machine,
                                 date=time.strftime("%Y-%m-%d"))
    results_path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")

    rows = []
    for name in WHAT:
        if name in results:
            r = results[name]
            images = " ".join(f"![{g}](docs/gallery/{g})" for g in r["gifs"])
            rows.append(f"| `{name}.py` | {WHAT[name]} | `{r['metric']}` | {r['seconds']:.0f} s | {images} |")
    machines = sorted({r["machine"] for r in results.values()})
    table = "\n".join(["| example | what it optimises | metric reached | CPU time | GIF |", "|---|---|---|---:|---|"]
                      + rows)
    text = (f"Default settings; wall time of the whole script (imports, compilation, optimisation, GIFs) on "
            f"{'; '.join(machines)}. Made by `python docs/make_gallery.py`.\n\n{table}\n")
    (GALLERY / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
