"""Points against a mesh of as many faces: forward and forward + backward, same run, same scene.

The scene: the built-in teapot at resolution 40 (102,080 faces) and, for the points, as many points sampled on
its surface (area-weighted, ``jaxnmr.sample_points``), coloured by one function of position (at each face's
centre for the mesh, at each point for the cloud).
Both are rendered by the same ``Renderer`` (NMR's default camera, 256² with anti-aliasing, so 512² inside); the
points with the default radius (one output pixel) and K = ``--points-per-pixel`` (default 8) slots per pixel,
alpha-composited. Rows:

- forward: the rgb image (mesh: ``render`` with T = 2 colour cubes; points: ``render_points``);
- forward + backward: ``value_and_grad`` of a squared rgb difference to the same object seen from a nearby view,
  w.r.t. the vertices / the points;
- the same two for silhouettes (mesh: ``render_silhouettes``; points: the alpha of ``render_points``).

Each row is jitted and timed as the median of ``--runs`` calls with ``block_until_ready``, the runs taken in
rounds that visit every row once (a slow spell of a shared machine then falls on all rows alike).

Usage: python benchmarks/points_cpu.py [--runs 20] [--points-per-pixel 8] [--resolution 40] [--size 256]
Prints a markdown table (BENCHMARKS.md, "Points against meshes on the CPU").
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import meshes

from common import machine


def scene(resolution: int):
    """(vertices, faces, face colours [F, 3], points [F, 3], point colours [F, 3]): a teapot and as many points
    on its surface, coloured by the same function of position (at the face centres and at the points)."""
    pot = meshes.teapot(resolution=resolution)
    v, f = jnp.asarray(pot.vertices), jnp.asarray(pot.faces)
    color = lambda x: 0.5 + 0.5 * jnp.sin(3.0 * x + jnp.array([0.0, 2.0, 4.0]))
    points = jaxnmr.sample_points(jax.random.key(0), v, f, f.shape[0])
    return v, f, color(jnp.mean(v[f], axis=1)), points, color(points)


def steps(renderer, v, f, face_colors, points, point_colors, K):
    """name -> (jitted function, argument): the rows of the table."""
    textures = jnp.broadcast_to(face_colors[:, None, None, None, :], f.shape[:1] + (2, 2, 2, 3))
    near = renderer.replace(eye=jaxnmr.get_points_from_angles(2.732, 25.0, 10.0))
    mesh_rgb = lambda r, x: r.render(x, f, textures)
    mesh_alpha = lambda r, x: r.render_silhouettes(x, f)
    cloud_rgb = lambda r, x: r.render_points(x, point_colors, points_per_pixel=K).rgb
    cloud_alpha = lambda r, x: r.render_points(x, point_colors, points_per_pixel=K).alpha
    rows = {}
    for what, mesh_fn, cloud_fn in (("rgb", mesh_rgb, cloud_rgb), ("silhouette", mesh_alpha, cloud_alpha)):
        for name, fn, x in ((f"mesh {what}", mesh_fn, v), (f"points {what}", cloud_fn, points)):
            target = jax.jit(lambda x, fn=fn: fn(near, x))(x)
            loss = lambda x, fn=fn, target=target: jnp.sum((fn(renderer, x) - target) ** 2)
            rows[f"{name}: forward"] = (jax.jit(lambda x, fn=fn: fn(renderer, x)), x)
            rows[f"{name}: forward + backward"] = (jax.jit(jax.value_and_grad(loss)), x)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points-per-pixel", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=40, help="teapot resolution (40: 102,080 faces)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    v, f, face_colors, points, point_colors = scene(args.resolution)
    renderer = jaxnmr.Renderer(image_size=args.size)
    rows = steps(renderer, v, f, face_colors, points, point_colors, args.points_per_pixel)
    for fn, x in rows.values():  # compile and warm up
        jax.block_until_ready(fn(x))
        jax.block_until_ready(fn(x))
    times = {name: [] for name in rows}
    for _ in range(args.runs):
        for name, (fn, x) in rows.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x))
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    low = {name: float(np.min(t)) * 1e3 for name, t in times.items()}

    print(f"Machine: {machine()}")
    print(f"Scene: built-in teapot, resolution {args.resolution}: {f.shape[0]} faces, {points.shape[0]} points; "
          f"{args.size}² with anti-aliasing; K = {args.points_per_pixel}; median of {args.runs} runs\n")
    print("| what | mesh: median (ms) | points: median (ms) | points / mesh | mesh: min | points: min |")
    print("|---|---:|---:|---:|---:|---:|")
    for what in ("rgb", "silhouette"):
        for step in ("forward", "forward + backward"):
            m, p = med[f"mesh {what}: {step}"], med[f"points {what}: {step}"]
            print(f"| {what}, {step} | {m:.2f} | {p:.2f} | {p / m:.2f} | {low[f'mesh {what}: {step}']:.2f} | "
                  f"{low[f'points {what}: {step}']:.2f} |")


if __name__ == "__main__":
    main()
