"""Shared benchmark helpers: the scene, timing with device synchronisation, and the machine description."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import statistics
import time

import jax
import numpy as np

NMR_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "nmr"


def teapot():
    """(vertices, faces, name): NMR's teapot (2464 faces) if the reference data is beside the checkout, else the
    built-in one."""
    import jaxnmr
    from jaxnmr import meshes

    if (NMR_DATA / "teapot.obj").is_file():
        v, f = jaxnmr.load_obj(str(NMR_DATA / "teapot.obj"))
        return v, f, f"NMR teapot ({f.shape[0]} faces)"
    mesh = meshes.teapot()
    v, f = mesh.vertices, mesh.faces
    return v, f, f"built-in teapot ({f.shape[0]} faces)"


def median_time(fn, *args, runs: int = 20, warmup: int = 2) -> tuple[float, list[float]]:
    """Median wall time in seconds of ``fn(*args)`` including ``block_until_ready``, after ``warmup`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine() -> str:
    """One line: CPU model, cores, OS, Python, jax versions and today's date."""
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (f"{model}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}; jax {jax.__version__} ({devices}); {datetime.date.today().isoformat()}")
