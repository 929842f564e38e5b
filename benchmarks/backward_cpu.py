"""CPU forward + backward timing: the teapot at 256x256 with anti-aliasing (512x512 internally), NMR's default
view, and how the time splits between the forward and backward kernels.

Times (jit, block_until_ready, median of --runs):
  * value_and_grad w.r.t. the vertices of a silhouette loss and of an rgb loss (the whole pipeline);
  * the forward kernel alone and the backward kernel alone, called directly on the same scene at 512².

Usage: python benchmarks/backward_cpu.py [--runs 20] [--size 256]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import ffi
from jaxnmr.mesh import fill_back

from common import machine, median_time, teapot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    v, f, name = teapot()
    textures = np.ones((f.shape[0], 4, 4, 4, 3), np.float32)
    renderer = jaxnmr.Renderer(image_size=args.size)
    rng = np.random.default_rng(0)
    target_sil = jnp.asarray(rng.uniform(size=(args.size, args.size)).astype(np.float32))
    target_rgb = jnp.asarray(rng.uniform(size=(args.size, args.size, 3)).astype(np.float32))
    rows = []

    sil_loss = lambda v: jnp.sum((renderer.render_silhouettes(v, f) - target_sil) ** 2)
    rgb_loss = lambda v: jnp.sum((renderer.render(v, f, textures) - target_rgb) ** 2)
    rows.append(("silhouette loss: forward", *median_time(jax.jit(sil_loss), v, runs=args.runs)))
    rows.append(("silhouette loss: value_and_grad", *median_time(jax.jit(jax.value_and_grad(sil_loss)), v,
                                                                  runs=args.runs)))
    rows.append(("rgb loss: forward", *median_time(jax.jit(rgb_loss), v, runs=args.runs)))
    rows.append(("rgb loss: value_and_grad", *median_time(jax.jit(jax.value_and_grad(rgb_loss)), v,
                                                           runs=args.runs)))

    # The two kernels alone, on the rgb scene as the renderer hands it to the rasterizer.
    S = 2 * args.size
    faces_i, tex = fill_back(f, textures)
    world = jaxnmr.vertices_to_faces(v, faces_i)
    lit = jaxnmr.lighting(world, tex)
    ndc = jaxnmr.vertices_to_faces(jaxnmr.perspective(jaxnmr.look_at(v, renderer.eye)), faces_i)
    bg = jnp.zeros(3)
    fwd = jax.jit(lambda faces, t: ffi.rasterize_forward(faces, t, bg, image_size=S, near=0.1, far=100.0, eps=1e-3))
    maps = fwd(ndc, lit)
    g_rgb = jnp.asarray(rng.normal(size=(S, S, 3)).astype(np.float32))
    g_alpha = jnp.asarray(rng.normal(size=(S, S)).astype(np.float32))
    bwd_rgb = jax.jit(lambda faces, t, m, g: ffi.rasterize_backward(faces, t, m, g, None, None, image_size=S,
                                                                     eps=1e-3))
    bwd_alpha = jax.jit(lambda faces, m, g: ffi.rasterize_backward(faces, None, m, None, g, None, image_size=S,
                                                                    eps=1e-4))
    rows.append(("forward kernel alone (rgb, T=4)", *median_time(fwd, ndc, lit, runs=args.runs)))
    rows.append(("backward kernel alone (rgb cotangent: edges + textures)",
                 *median_time(bwd_rgb, ndc, lit, maps, g_rgb, runs=args.runs)))
    rows.append(("backward kernel alone (alpha cotangent: edges)",
                 *median_time(bwd_alpha, ndc, maps, g_alpha, runs=args.runs)))

    print(f"Scene: {name}, {args.size}x{args.size}, anti-aliasing (internal {S}^2), default view")
    print(f"Machine: {machine()}")
    print()
    print("| what | median (ms) | min (ms) | runs |")
    print("|---|---:|---:|---:|")
    for label, med, times in rows:
        print(f"| {label} | {med * 1e3:.2f} | {min(times) * 1e3:.2f} | {len(times)} |")


if __name__ == "__main__":
    main()
