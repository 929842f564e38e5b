"""GPU benchmark (the CUDA kernels): forward and forward+backward, median of many synchronised runs.

Scenes (NMR's default view, anti-aliasing on, so the kernels rasterize 2x the image size):
  * the teapot (NMR's 2464 faces when the reference data is beside the checkout) at 256² and 1024²;
  * a 39.8k-face teapot (the built-in Bezier teapot at resolution 25) at 1024²;
  * 64 views of the teapot at 256² by ONE vmapped call, against 64 separate calls.
Forward = render_silhouettes; forward+backward = value_and_grad of a squared loss w.r.t. the vertices; rgb rows
use render with T=4 white textures. Every forward+backward row is timed with two cotangents:
  * dense: the squared difference to a constant 0.5 image (every pixel has a non-zero cotangent);
  * realistic: the squared difference to the same mesh's image (silhouette, or rgb) from 3 degrees of azimuth
    away, as when fitting a pose: the cotangent is zero wherever the two images agree, on most pixels.

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


AWAY_DEGREES = 3.0  # the realistic loss's target: the same mesh from this much azimuth away


def targets(renderer, v, f, textures, eye):
    """The realistic loss's targets: silhouettes and rgb of the mesh seen from `eye` (computed once, untimed)."""
    away = renderer.replace(eye=eye)
    return away.render_silhouettes(v, f), away.render(v, f, textures)


def losses(renderer, f, textures):
    """{(image, cotangent): loss(v, sil_target, rgb_target)} for image in (silhouettes, rgb) and cotangent in
    (dense, realistic); the dense losses ignore the targets."""
    size = renderer.image_size
    half = jnp.full((size, size), 0.5, jnp.float32)
    return {
        ("silhouettes", "dense"): lambda v, s, c: jnp.sum((renderer.render_silhouettes(v, f) - half) ** 2),
        ("silhouettes", "realistic"): lambda v, s, c: jnp.sum((renderer.render_silhouettes(v, f) - s) ** 2),
        ("rgb", "dense"): lambda v, s, c: jnp.sum((renderer.render(v, f, textures) - half[..., None]) ** 2),
        ("rgb", "realistic"): lambda v, s, c: jnp.sum((renderer.render(v, f, textures) - c) ** 2),
    }


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
    teapot39 = meshes.teapot(resolution=6 if args.quick else 25)
    v39, f39 = teapot39.vertices, teapot39.faces
    rows = []
    with jax.default_device(device):
        # The renderer's default eye is NMR's, at azimuth 0 and elevation 0 (distance 2.732).
        away_eye = jaxnmr.get_points_from_angles(2.732, 0.0, AWAY_DEGREES)
        for label, (vv, ff), size in ((name, (v, f), small), (name, (v, f), big),
                                      (f"teapot {f39.shape[0]} faces", (v39, f39), big)):
            renderer = jaxnmr.Renderer(image_size=size)
            textures = jnp.ones((ff.shape[0], 4, 4, 4, 3), jnp.float32)
            vd = jax.device_put(vv, device)
            target = jax.block_until_ready(targets(renderer, vd, ff, textures, away_eye))
            fns = losses(renderer, ff, textures)
            timed = [("silhouettes forward", jax.jit(fns["silhouettes", "dense"])),
                     ("rgb forward", jax.jit(fns["rgb", "dense"]))]
            timed += [(f"{image} forward+backward, {cotangent} cotangent", jax.jit(jax.value_and_grad(fn)))
                      for (image, cotangent), fn in fns.items()]
            for what, fn in timed:
                med, times = median_time(fn, vd, *target, runs=runs)
                rows.append((f"{label}, {size}², {what}", med, min(times), len(times)))

        renderer = jaxnmr.Renderer(image_size=small)
        textures = jnp.ones((f.shape[0], 4, 4, 4, 3), jnp.float32)
        azimuths = jnp.linspace(0.0, 360.0, 64, endpoint=False)
        eyes = jaxnmr.get_points_from_angles(2.732, 30.0, azimuths)
        away_eyes = jaxnmr.get_points_from_angles(2.732, 30.0, azimuths + AWAY_DEGREES)

        view_targets = jax.jit(jax.vmap(lambda eye: targets(renderer.replace(eye=eye), v, f, textures,
                                                             eye)))(away_eyes)

        def view_loss(image, cotangent):
            def loss(v, eye, sil_target, rgb_target):
                return losses(renderer.replace(eye=eye), f, textures)[image, cotangent](v, sil_target, rgb_target)
            return loss

        for image in ("silhouettes", "rgb"):
            for cotangent in ("dense", "realistic"):
                batched = jax.jit(jax.vmap(jax.value_and_grad(view_loss(image, cotangent)), in_axes=(None, 0, 0, 0)))
                hlo = batched.lower(v, eyes, *view_targets).as_text()
                launches = hlo.count("jaxnmr_rasterize_forward"), hlo.count("jaxnmr_rasterize_backward")
                med, times = median_time(batched, v, eyes, *view_targets, runs=runs)
                rows.append((f"64 views by one vmap ({launches[0]} forward, {launches[1]} backward launch), "
                             f"{small}², {image} forward+backward, {cotangent} cotangent", med, min(times),
                             len(times)))
        single = jax.jit(jax.value_and_grad(view_loss("silhouettes", "dense")))

        def loop(v, eyes, sil_targets, rgb_targets):
            return [single(v, eyes[i], sil_targets[i], rgb_targets[i]) for i in range(eyes.shape[0])]

        med, times = median_time(loop, v, eyes, *view_targets, runs=max(3, runs // 5))
        rows.append((f"64 views by 64 separate calls, {small}², silhouettes forward+backward, dense cotangent", med,
                     min(times), len(times)))

    print(f"Device: {device.device_kind}; {machine()}")
    print()
    print("| scene, size, what | median (ms) | min (ms) | runs |")
    print("|---|---:|---:|---:|")
    for label, med, best, n in rows:
        print(f"| {label} | {med * 1e3:.3f} | {best * 1e3:.3f} | {n} |")


if __name__ == "__main__":
    main()
