"""GPU benchmark (the CUDA kernels): forward and forward+backward, median of many synchronised runs.

Scenes (NMR's default view, anti-aliasing on, so the kernels rasterize 2x the image size):
  * the teapot (NMR's 2464 faces when the reference data is beside the checkout) at 256² and 1024²;
  * a 39.8k-face teapot (the built-in Bezier teapot at resolution 25) at 1024²;
  * 64 views of the teapot at 256² by ONE vmapped call, against 64 separate calls.
Forward = render_silhouettes; forward+backward = value_and_grad of a squared silhouette loss w.r.t. the
vertices; rgb rows use render with T=4 white textures.

Usage: python benchmarks/gpu.py [--runs 50] [--quick] [--device gpu|cpu]
Writes a markdown table to stdout (paste it into BENCHMARKS.md with the machine line).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes

from common import machine, median_time, teapot


def losses(renderer, v, f, textures):
    size = renderer.image_size
    target = jnp.full((size, size), 0.5, jnp.float32)
    sil = lambda v: jnp.sum((renderer.render_silhouettes(v, f) - target) ** 2)
    rgb = lambda v: jnp.sum((renderer.render(v, f, textures) - target[..., None]) ** 2)
    return sil, rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="small sizes, few runs (to check the script)")
    parser.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    args = parser.parse_args()
    device = jax.devices(args.device)[0]
    runs = 3 if args.quick else args.runs
    big = 64 if args.quick else 1024
    small = 32 if args.quick else 256

    v, f, name = teapot()
    v39, f39 = meshes.teapot(resolution=6 if args.quick else 25)
    rows = []
    with jax.default_device(device):
        for label, (vv, ff), size in ((name, (v, f), small), (name, (v, f), big),
                                      (f"teapot {f39.shape[0]} faces", (v39, f39), big)):
            renderer = jaxnmr.Renderer(image_size=size)
            textures = jnp.ones((ff.shape[0], 4, 4, 4, 3), jnp.float32)
            sil, rgb = losses(renderer, vv, ff, textures)
            vd = jax.device_put(vv, device)
            for what, fn in (("silhouettes forward", jax.jit(sil)),
                             ("silhouettes forward+backward", jax.jit(jax.value_and_grad(sil))),
                             ("rgb forward", jax.jit(rgb)),
                             ("rgb forward+backward", jax.jit(jax.value_and_grad(rgb)))):
                med, times = median_time(fn, vd, runs=runs)
                rows.append((f"{label}, {size}², {what}", med, min(times), len(times)))

        renderer = jaxnmr.Renderer(image_size=small)
        eyes = jaxnmr.get_points_from_angles(2.732, 30.0, jnp.linspace(0.0, 360.0, 64, endpoint=False))
        sil_one = lambda v, eye: jnp.sum(renderer.replace(eye=eye).render_silhouettes(v, f) ** 2)
        batched = jax.jit(jax.vmap(jax.value_and_grad(sil_one), in_axes=(None, 0)))
        hlo = batched.lower(v, eyes).as_text()
        launches = hlo.count("jaxnmr_rasterize_forward"), hlo.count("jaxnmr_rasterize_backward")
        med, times = median_time(batched, v, eyes, runs=runs)
        rows.append((f"64 views by one vmap ({launches[0]} forward, {launches[1]} backward launch), {small}², "
                     "silhouettes forward+backward", med, min(times), len(times)))
        single = jax.jit(jax.value_and_grad(sil_one))

        def loop(v, eyes):
            return [single(v, eyes[i]) for i in range(eyes.shape[0])]

        med, times = median_time(loop, v, eyes, runs=max(3, runs // 5))
        rows.append((f"64 views by 64 separate calls, {small}², silhouettes forward+backward", med, min(times),
                     len(times)))

    print(f"Device: {device.device_kind}; {machine()}")
    print()
    print("| scene, size, what | median (ms) | min (ms) | runs |")
    print("|---|---:|---:|---:|")
    for label, med, best, n in rows:
        print(f"| {label} | {med * 1e3:.3f} | {best * 1e3:.3f} | {n} |")


if __name__ == "__main__":
    main()
