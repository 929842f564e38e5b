"""Beyond one machine: two processes on localhost (``jax.distributed``, one CPU device each) render their shares
of a batch of views; the gradient is reduced across them and equals a single-process run (docs/scale.md)."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnmr import scale
from _distributed_scene import loss_fn, scene

HERE = pathlib.Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path: pathlib.Path) -> None:
    port, out = _free_port(), tmp_path / "result.npz"
    # One CPU device per process, and the test process's arithmetic (no FMA contraction; tests/conftest.py).
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_max_isa=SSE4_2", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, str(HERE / "_distributed_worker.py"), str(i), "2", str(port),
                               str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two processes did not finish within 240 s:\n" + "\n".join(logs))
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{log[-4000:]}"
    got = np.load(out)
    assert got["devices"].tolist() == [2, 1], "each process should see 2 devices in all, 1 of its own"

    # The single-process run: one process, one device, the same program on each process's share of the views,
    # summed. The multi-process program is compiled for two devices, and its float32 rounding differs in the
    # last bit here and there. The depth gradient (smooth) then agrees to float32 noise; the silhouette's
    # approximate edge gradient divides by pixel distances, which amplifies last-bit differences of the NDC
    # coordinates: measured 1.3e-4 of the largest gradient entry (bound 1e-3).
    vertices, faces, eyes, targets = scene()
    mesh = scale.device_mesh(jax.devices()[:1], axis_name="views")
    for method, bound in (("render_depth", 3e-5), ("render_silhouettes", 1e-3)):
        step = jax.jit(jax.value_and_grad(loss_fn(mesh, faces, method)))
        halves = [step(jnp.asarray(vertices), eyes[i:i + 2], targets[i:i + 2]) for i in (0, 2)]
        loss = float(halves[0][0] + halves[1][0])
        grad = np.asarray(halves[0][1] + halves[1][1])
        scale_ = float(np.abs(grad).max())
        assert scale_ > 0, f"{method}: the single-process gradient is zero, so the scene tests nothing"
        np.testing.assert_allclose(got[f"{method}_loss"], loss, rtol=1e-6, err_msg=method)
        err = float(np.abs(got[f"{method}_grad"] - grad).max())
        assert err <= bound * scale_, f"{method}: gradients differ by {err:.3g} (bound {bound:g} x {scale_:.3g})"
