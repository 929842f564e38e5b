"""Test configuration.

Kernel-vs-oracle comparisons are meant to be exact: the kernels and ``jaxnmr.reference`` do the same float32
operations in the same order. XLA's CPU compiler, however, contracts ``a * b + c`` into fused multiply-adds
where the CPU has them, which rounds differently; capping the instruction set at SSE4.2 (no FMA) for the test
process turns that off. It must be set before JAX creates its CPU client, hence here.
"""

import os
import pathlib

# Two CPU devices, so that the conformance suite can run shard_map (tests/test_conformance.py); a subprocess that
# needs one device sets its own XLA_FLAGS.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_max_isa=SSE4_2 --xla_force_host_platform_device_count=2").strip()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The original renderer's reference data: ../shared/testdata/nmr beside the checkout, or the folder named by
# JAXNMR_NMR_DATA (a GPU machine that has the checkout but not the folder beside it; see .ci/gpu).
NMR_DATA = pathlib.Path(os.environ.get("JAXNMR_NMR_DATA")
                        or pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "nmr")


@pytest.fixture(scope="session")
def nmr_data() -> pathlib.Path:
    """The original renderer's reference data (../shared/testdata/nmr beside the checkout)."""
    if not (NMR_DATA / "teapot.obj").is_file():
        pytest.skip(f"NMR reference data not found at {NMR_DATA} (../shared/testdata/nmr beside the checkout, "
                    "or set JAXNMR_NMR_DATA)")
    return NMR_DATA


@pytest.fixture(scope="session")
def nmr_teapot(nmr_data):
    """The normalised NMR teapot: vertices float32 [1292, 3], faces int32 [2464, 3]."""
    from jaxnmr import load_obj

    return load_obj(str(nmr_data / "teapot.obj"))


@pytest.fixture(scope="session")
def blender_mask(nmr_data) -> np.ndarray:
    """NMR's Blender silhouette of the teapot: float32 [256, 256], 1 where any channel is not pure white."""
    import imageio.v3 as iio

    return (iio.imread(nmr_data / "teapot_blender.png")[..., :3].min(-1) != 255).astype(np.float32)



def _gpus():
    import jax

    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


def pytest_configure(config):
    # The suite's CPU tests compare the kernels with the oracle under XLA's CPU arithmetic (see above); on a
    # GPU machine they stay on the CPU, and tests/test_gpu.py places its work on the GPU explicitly.
    import jax

    jax.config.update("jax_default_device", jax.devices("cpu")[0])


def pytest_terminal_summary(terminalreporter):
    """Says whether the GPU tests ran, so that a GPU run never skips them silently (printed even with -q)."""
    gpus = _gpus()
    stats = terminalreporter.stats
    gpu_ids = lambda key: sum(1 for r in stats.get(key, []) if "test_gpu.py" in getattr(r, "nodeid", ""))
    if gpus:
        line = (f"jaxnmr: GPU tests ran on {gpus[0].device_kind}: {gpu_ids('passed')} passed, "
                f"{gpu_ids('failed')} failed, {gpu_ids('skipped')} skipped")
    else:
        line = f"jaxnmr: no GPU visible to JAX: {gpu_ids('skipped')} GPU tests (tests/test_gpu.py) skipped"
    terminalreporter.write_line(line)
