"""CPU forward timing: the teapot at 256x256 with anti-aliasing (512x512 internally), NMR's default view.

Times, with jit and ``block_until_ready``, median of ``--runs``:
  * ``Renderer.render`` (rgb: lighting + camera + kernel + flip + 2x2 pool), T=4 white textures;
  * ``Renderer.render_silhouettes``;
  * the same silhouette pipeline with the dense pure-jnp oracle (``jaxnmr.reference``) in place of the kernel.

Usage: python benchmarks/forward_cpu.py [--runs 20] [--size 256]
"""

from __future__ import annotations

import argparse
from unittest import mock

import jax
import numpy as np

import jaxnmr
from jaxnmr import ffi

from common import machine, median_time, teapot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--reference-runs", type=int, default=10)
    args = parser.parse_args()

    v, f, name = teapot()
    textures = np.ones((f.shape[0], 4, 4, 4, 3), np.float32)
    renderer = jaxnmr.Renderer(image_size=args.size)
    rows = []

    rgb = jax.jit(lambda v: renderer.render(v, f, textures))
    rows.append(("render (rgb), kernel", *median_time(rgb, v, runs=args.runs)))
    sil = jax.jit(lambda v: renderer.render_silhouettes(v, f))
    rows.append(("render_silhouettes, kernel", *median_time(sil, v, runs=args.runs)))
    with mock.patch.object(ffi, "kernel_available", lambda platform=None: False):
        sil_ref = jax.jit(lambda v: renderer.render_silhouettes(v, f))
        rows.append(("render_silhouettes, dense reference.py", *median_time(sil_ref, v, runs=args.reference_runs,
                                                                             warmup=1)))

    print(f"Scene: {name}, {args.size}x{args.size}, anti-aliasing (internal {2 * args.size}^2), default view")
    print(f"Machine: {machine()}")
    print()
    print("| pipeline | median (ms) | min (ms) | runs |")
    print("|---|---:|---:|---:|")
    for label, med, times in rows:
        print(f"| {label} | {med * 1e3:.2f} | {min(times) * 1e3:.2f} | {len(times)} |")
    kernel, dense = rows[1][1], rows[2][1]
    print(f"\nkernel vs dense reference (silhouettes): {dense / kernel:.0f}x faster")


if __name__ == "__main__":
    main()
