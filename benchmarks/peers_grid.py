"""jaxnmr and its CPU peers on a grid of scenes, in one process: two meshes x three image sizes, and batches.

Meshes: NMR's teapot (``common.teapot()``, 2464 faces) and the built-in Bezier teapot at resolution 25 (39.8k
faces), NMR's default camera. Image sizes 64², 256² and 1024². For each scene, with the definitions of
``benchmarks/peers.py`` (same losses, same peer settings):

* jaxnmr: forward (silhouette, rgb) and forward + backward (``value_and_grad`` of a silhouette and an rgb loss
  against a random target image: every pixel's cotangent is non-zero);
* Mitsuba 3 (``llvm_ad_rgb``, ``direct_projective``, 1 spp): forward, and forward + vertex gradient with
  ``sppi=0`` and ``guiding=none`` (its octree-guided default, seconds a call, is left to peers.py);
* jaxrenderer 0.3.2: forward, where a call takes seconds rather than minutes (the 2464-face teapot at 64² and
  256²; its cost grows with pixels x faces).

Then batches of views, jaxnmr only (the peers have no batched call; their time for N views is N times one
view): 16 and 64 views of the 2464-face teapot at 256² in one vmapped forward + backward, against one view.

Usage: python benchmarks/peers_grid.py [--runs 10] [--sizes 64 256 1024]
Prints one markdown table (milliseconds, medians of --runs) and the ratios jaxnmr / fastest Mitsuba gradient.
"""

from __future__ import annotations

import argparse
import time
import traceback
import types

import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes

import peers
from common import machine, median_time, teapot

JAXNMR_ROWS = {
    "forward: render_silhouettes": "jaxnmr silhouette forward",
    "forward: render (rgb, T=4)": "jaxnmr rgb forward",
    "forward+backward: silhouette loss, value_and_grad": "jaxnmr silhouette forward+backward",
    "forward+backward: rgb loss, value_and_grad": "jaxnmr rgb forward+backward",
}


def scene_rows(v, f, size, args, with_jaxrenderer):
    """The rows of one (mesh, size) scene: {label: (median s, runs)}, and the peers' skip reasons."""
    peers.SIZE = size  # the peers.py benchmarks read the image size from this module global
    opts = types.SimpleNamespace(runs=args.runs, slow_runs=max(3, args.runs // 3), octree_runs=0,
                                 reference_runs=0, skip_reference=True, skip_jaxrenderer_grad=True)
    rows, images, versions = peers.Rows(), {}, {}
    benches = [("jaxnmr", lambda: peers.bench_jaxnmr(v, f, rows, images, opts)),
               ("Mitsuba 3", lambda: peers.bench_mitsuba(v, f, rows, images, versions, opts))]
    if with_jaxrenderer:
        benches.append(("jaxrenderer", lambda: peers.bench_jaxrenderer(v, f, rows, images, versions, opts)))
    for label, bench in benches:
        try:
            bench()
        except Exception as e:
            traceback.print_exc()
            rows.skip(label, f"failed: {type(e).__name__}: {str(e)[:200]}")
    out = {}
    for peer, what, med, times in rows.rows:
        if peer == "jaxnmr":
            label = JAXNMR_ROWS.get(what)
        elif peer.startswith("Mitsuba") and what.startswith("forward:") and "direct_projective" in what:
            label = "Mitsuba forward (rgb)"
        elif peer.startswith("Mitsuba") and "sppi=0" in what:
            label = "Mitsuba forward+vertex gradient, sppi=0"
        elif peer.startswith("Mitsuba") and "guiding=none" in what:
            label = "Mitsuba forward+vertex gradient, guiding=none"
        elif peer == "jaxrenderer":
            label = "jaxrenderer forward"
        else:
            label = None
        if label:
            out[label] = (med, len(times))
    return out, [r for r in rows.skipped if not r[0].startswith("jaxnmr.reference")]


def batch_rows(v, f, args):
    """jaxnmr forward + backward of N views at 256² by one vmapped call, N = 1, 16, 64."""
    renderer = jaxnmr.Renderer(image_size=256)
    target = jnp.asarray(np.random.default_rng(0).uniform(size=(256, 256)).astype(np.float32))

    def loss(vertices, eye):
        return jnp.sum((renderer.replace(eye=eye).render_silhouettes(vertices, f) - target) ** 2)

    out = {}
    for n in (1, 16, 64):
        azimuths = jnp.linspace(0.0, 360.0, n, endpoint=False)
        eyes = jax.vmap(lambda a: jaxnmr.get_points_from_angles(2.732, 15.0, a))(azimuths)
        step = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=(None, 0)))
        med, times = median_time(step, jnp.asarray(v), eyes, runs=args.runs if n < 64 else max(3, args.runs // 2))
        out[n] = (med, len(times))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    started = time.perf_counter()

    v, f, name = teapot()
    v, f = np.asarray(v, np.float32), np.asarray(f, np.int32)
    teapot39 = meshes.teapot(resolution=25)
    v39, f39 = np.asarray(teapot39.vertices, np.float32), np.asarray(teapot39.faces, np.int32)
    scenes = [(f"{name}", v, f), (f"teapot ({f39.shape[0]} faces)", v39, f39)]

    table, skipped = [], []
    for label, vv, ff in scenes:
        for size in args.sizes:
            print(f"[{label}, {size}²]", flush=True)
            with_jr = ff.shape[0] < 10000 and size <= 256
            rows, skips = scene_rows(vv, ff, size, args, with_jr)
            table.append((label, size, rows))
            skipped += [(label, size, peer, reason) for peer, reason in skips]
            if not with_jr:
                skipped.append((label, size, "jaxrenderer", "not run: minutes a call at this size and face count"))
    print("[batches]", flush=True)
    batches = batch_rows(v, f, args)

    print(f"\nMachine: {machine()}; whole run {time.perf_counter() - started:.0f} s\n")
    print("| mesh | image | what | median (ms) | runs |")
    print("|---|---:|---|---:|---:|")
    for label, size, rows in table:
        for what, (med, runs) in rows.items():
            print(f"| {label} | {size}² | {what} | {med * 1e3:.2f} | {runs} |")
    for n, (med, runs) in batches.items():
        print(f"| {name} | 256² | jaxnmr {n} view{'s' if n > 1 else ''} in one vmapped call, silhouette "
              f"forward+backward | {med * 1e3:.2f} | {runs} |")
    for label, size, peer, reason in skipped:
        print(f"| {label} | {size}² | {peer}: {reason} | | |")

    print("\nRatios (jaxnmr forward+backward / Mitsuba's fastest forward+vertex gradient; below 1: jaxnmr faster):")
    for label, size, rows in table:
        mitsuba = [rows[k][0] for k in rows if k.startswith("Mitsuba forward+vertex")]
        sil = rows.get("jaxnmr silhouette forward+backward")
        rgb = rows.get("jaxnmr rgb forward+backward")
        if mitsuba and sil and rgb:
            best = min(mitsuba)
            extra = ""
            jr = rows.get("jaxrenderer forward")
            if jr:
                extra = f"; jaxrenderer forward / jaxnmr forward+backward: {jr[0] / sil[0]:.0f}x, {jr[0] / rgb[0]:.0f}x"
            print(f"- {label}, {size}²: silhouette {sil[0] / best:.3f}x, rgb {rgb[0] / best:.3f}x{extra}")
    one = batches[1][0]
    for n in (16, 64):
        print(f"- {n} views in one vmapped call: {batches[n][0] / one:.1f}x one view ({n}x would be linear)")


if __name__ == "__main__":
    main()
