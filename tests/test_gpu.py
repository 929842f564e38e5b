"""The CUDA kernels against the CPU kernels (and NMR's reference data) on the same scenes.

Selected automatically where JAX sees a GPU; elsewhere they are skipped, and the pytest header says which
(see conftest.py). On a GPU machine a missing CUDA library is a failure, not a skip.
"""

import sys
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import ffi, meshes

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_ffi_forward import random_scene  # noqa: E402


def _gpus():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


GPUS = _gpus()
pytestmark = pytest.mark.skipif(not GPUS, reason="no GPU visible to JAX")
CPU = jax.devices("cpu")[0]


def on(device, fn, *args):
    """Runs jit(fn) with its array arguments committed to ``device`` and returns numpy results."""
    args = jax.device_put(args, device)
    out = jax.jit(fn)(*args)
    return jax.tree_util.tree_map(lambda x: None if x is None else np.asarray(x), out,
                                  is_leaf=lambda x: x is None)


def test_cuda_library_is_built_and_registered():
    assert ffi.library_path("libjaxnmr_cuda.so").is_file(), "CUDA library missing: was nvcc found at install?"
    assert ffi.kernel_available("gpu")


@pytest.mark.parametrize("seed", range(40))
def test_forward_gpu_equals_cpu_on_random_scenes(seed):
    batch, F, S, T = [((), 9, 17, 3), ((2,), 16, 24, 2), ((3,), 7, 13, 4), ((2, 2), 40, 32, 2)][seed % 4]
    faces, textures, background = random_scene(np.random.default_rng(seed), batch, F, T)
    fn = lambda f, t, b: ffi.rasterize_forward(f, t, b, image_size=S, near=0.1, far=100.0, eps=1e-3)
    gpu, cpu = on(GPUS[0], fn, faces, textures, background), on(CPU, fn, faces, textures, background)
    np.testing.assert_array_equal(gpu.face_index, cpu.face_index)
    for name in ("weights", "depth", "rgb"):
        np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("seed", range(30))
def test_backward_gpu_equals_cpu_on_random_scenes(seed):
    batch, F, S, T = [((), 6, 12, 2), ((2,), 8, 16, 3), ((3,), 20, 24, 2)][seed % 3]
    rng = np.random.default_rng(1000 + seed)
    faces, textures, background = random_scene(rng, batch, F, T)
    g_rgb = rng.normal(size=batch + (S, S, 3)).astype(np.float32)
    g_alpha = rng.normal(size=batch + (S, S)).astype(np.float32)
    g_depth = rng.normal(size=batch + (S, S)).astype(np.float32)

    def fn(f, t, b, gr, ga, gd):
        maps = ffi.rasterize_forward(f, t, b, image_size=S, near=0.1, far=100.0, eps=1e-3)
        return ffi.rasterize_backward(f, t, maps, gr, ga, gd, image_size=S, eps=1e-3)

    args = (faces, textures, background, g_rgb, g_alpha, g_depth)
    for got, want in zip(on(GPUS[0], fn, *args), on(CPU, fn, *args)):
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


def test_nmr_parity_on_gpu(nmr_teapot, blender_mask):
    v, f = nmr_teapot
    with jax.default_device(GPUS[0]):
        silhouette = np.asarray(jaxnmr.Renderer(anti_aliasing=False).render_silhouettes(v, f))
    assert (silhouette != blender_mask).sum() == 0


def test_nmr_backward_reference_values_on_gpu():
    ref = np.array([[1.6725862, -0.26021874, 0.0], [1.41986704, -1.64284933, 0.0], [0.0, 0.0, 0.0]])
    v = np.array([[0.8, 0.8, 1.0], [0.0, -0.5, 1.0], [0.2, -0.4, 1.0]], np.float32)
    f = np.array([[0, 1, 2]], np.int32)
    renderer = jaxnmr.Renderer(image_size=64, anti_aliasing=False, perspective=False, rasterizer_eps=1e-4)
    loss = lambda v: jnp.abs(renderer.render_silhouettes(v, f)[25, 35] - 1.0)
    with jax.default_device(GPUS[0]):
        grad = np.asarray(jax.jit(jax.grad(loss))(v))
    np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-7)


def test_vmap_is_one_launch_on_gpu():
    v, f = meshes.teapot(resolution=4)
    renderer = jaxnmr.Renderer(image_size=64)
    eyes = jaxnmr.get_points_from_angles(2.732, 30.0, jnp.arange(0.0, 360.0, 22.5))
    batched = jax.jit(jax.vmap(lambda e: renderer.replace(eye=e).render_silhouettes(v, f)))
    with jax.default_device(GPUS[0]):
        text = batched.lower(eyes).as_text()
        images = np.asarray(batched(eyes))
    assert text.count("jaxnmr_rasterize_forward") == 1
    with jax.default_device(CPU):
        expected = np.asarray(batched(eyes))
    np.testing.assert_array_equal(images, expected)


def test_gpu_forward_is_deterministic():
    v, f = meshes.teapot(resolution=8)
    renderer = jaxnmr.Renderer(image_size=256)
    with jax.default_device(GPUS[0]):
        render = jax.jit(lambda v: renderer.render_rgbad(v, f, np.ones((f.shape[0], 2, 2, 2, 3), np.float32)))
        first = jax.tree_util.tree_map(np.asarray, render(v))
        for _ in range(3):
            again = jax.tree_util.tree_map(np.asarray, render(v))
            for a, b in zip(first, again):
                np.testing.assert_array_equal(a, b)
