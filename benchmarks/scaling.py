"""How forward + backward time grows with the face count and the image size (CPU or GPU).

Faces: the built-in teapot at resolutions 8..64 (4k..262k faces, about x2 per step) and icospheres of 327k and
1.3M faces, at 256² with anti-aliasing. Image size: NMR's teapot (or the built-in one) at 64²..2048².
Each point: value_and_grad w.r.t. the vertices of a squared silhouette loss against the same mesh seen from
a nearby view (a realistic fitting target), jitted, median of --runs. The runs are taken in rounds that time
every point once (--sequential: each point's runs back to back), so that a slow spell of a shared machine
does not fall on one point of a ratio only. Also reports the process's peak memory.

Usage: python benchmarks/scaling.py [--runs 5] [--device cpu] [--out benchmarks/scaling.png] [--sequential]
Prints markdown tables; writes a log-log plot (needs matplotlib: pip install -r benchmarks/requirements.txt).
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes

from common import machine, median_time, teapot


def fwd_bwd_step(v, f, size, device):
    """The jitted forward + backward step of one point and its device input, compiled and run once."""
    renderer = jaxnmr.Renderer(image_size=size)
    target = renderer.replace(eye=jaxnmr.get_points_from_angles(2.732, 25.0, 10.0)).render_silhouettes(v, f)
    loss = lambda v: jnp.sum((renderer.render_silhouettes(v, f) - target) ** 2)
    step = jax.jit(jax.value_and_grad(loss))
    vd = jax.device_put(v, device)
    jax.block_until_ready(step(vd))
    return step, vd


def fwd_bwd_time(v, f, size, runs, device):
    step, vd = fwd_bwd_step(v, f, size, device)
    med, times = median_time(step, vd, runs=runs, warmup=1)
    return med


def interleaved_medians(points, runs):
    """Median time of each (step, input) in `points`, timed in rounds that visit every point once: a slow
    spell of a shared machine then lands on all points alike instead of on whichever was being timed."""
    times = [[] for _ in points]
    for _ in range(runs):
        for i, (step, vd) in enumerate(points):
            t0 = time.perf_counter()
            jax.block_until_ready(step(vd))
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--out", default="benchmarks/scaling.png")
    parser.add_argument("--quick", action="store_true", help="small sizes only (to check the script)")
    parser.add_argument("--sequential", action="store_true",
                        help="time each point's runs back to back (default: in interleaved rounds)")
    args = parser.parse_args()
    device = jax.devices(args.device)[0]

    resolutions = [8, 11] if args.quick else [8, 11, 16, 22, 32, 45, 64]
    spheres = [] if args.quick else [7, 8]
    sizes = [64, 128] if args.quick else [64, 128, 256, 512, 1024, 2048]
    face_meta, size_meta, points = [], [], []
    with jax.default_device(device):
        for r in resolutions:
            pot = meshes.teapot(resolution=r)
            v, f = pot.vertices, pot.faces
            face_meta.append((f.shape[0], "teapot"))
            points.append(fwd_bwd_step(v, f, 256, device))
        for level in spheres:
            sphere = meshes.icosphere(level, radius=0.8)
            v, f = sphere.vertices, sphere.faces
            face_meta.append((f.shape[0], "icosphere"))
            points.append(fwd_bwd_step(v, f, 256, device))
        v, f, name = teapot()
        for size in sizes:
            size_meta.append(size)
            points.append(fwd_bwd_step(v, f, size, device))
        if args.sequential:
            medians = [median_time(step, vd, runs=args.runs, warmup=1)[0] for step, vd in points]
        else:
            medians = interleaved_medians(points, args.runs)
        del points
        face_rows = [(n, t, mesh) for (n, mesh), t in zip(face_meta, medians)]
        size_rows = list(zip(size_meta, medians[len(face_meta):]))
        for n, t, _ in face_rows:
            print(f"faces {n:>8}: {t * 1e3:9.2f} ms", flush=True)
        for size, t in size_rows:
            print(f"size {size:>5}: {t * 1e3:9.2f} ms", flush=True)
        big = None
        if not args.quick:
            sphere = meshes.icosphere(8, radius=0.8)
            v, f = sphere.vertices, sphere.faces
            big = (f.shape[0], fwd_bwd_time(v, f, 1024, max(2, args.runs // 2), device))

    print(f"\nDevice: {device.device_kind}; {machine()}")
    print("\nForward + backward (silhouette loss) at 256² AA, by face count:\n")
    print("| mesh | faces | ms | x per doubling of faces (vs the previous row of the same mesh) |")
    print("|---|---:|---:|---:|")
    for i, (n, t, mesh) in enumerate(face_rows):
        prev = face_rows[i - 1] if i and face_rows[i - 1][2] == mesh else None
        step = "" if prev is None else f"{(t / prev[1]) ** (np.log(2) / np.log(n / prev[0])):.2f}"
        print(f"| {mesh} | {n} | {t * 1e3:.2f} | {step} |")
    print(f"\nForward + backward (silhouette loss), {name}, by image size (AA: internal = 2x):\n")
    print("| image | ms | x per doubling of the side |")
    print("|---:|---:|---:|")
    for i, (s, t) in enumerate(size_rows):
        step = "" if i == 0 else f"{t / size_rows[i - 1][1]:.2f}"
        print(f"| {s}² | {t * 1e3:.2f} | {step} |")
    if big:
        print(f"\n{big[0]} faces at 1024² AA, forward + backward: {big[1] * 1e3:.1f} ms")
    print(f"\nPeak resident memory of this process: {peak_rss_gib():.2f} GiB")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    n, t = np.array([(n, t) for n, t, _ in face_rows]).T
    axes[0].loglog(n, t * 1e3, "o-", label="jaxnmr fwd+bwd")
    axes[0].loglog(n, t[0] * 1e3 * n / n[0], "--", color="grey", label="linear in faces")
    axes[0].set(xlabel="faces", ylabel="ms", title="256² (AA), by face count")
    s, t2 = np.array(size_rows).T
    axes[1].loglog(s, t2 * 1e3, "o-", label="jaxnmr fwd+bwd")
    axes[1].loglog(s, t2[0] * 1e3 * (s / s[0]) ** 2, "--", color="grey", label="linear in pixels")
    axes[1].set(xlabel="image side (px)", ylabel="ms", title=f"{name}, by image size")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Forward + backward time, {device.device_kind}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
