"""The CUDA kernels against the CPU kernels on the same inputs, and whole pipelines on the GPU against the CPU.

Selected automatically where JAX sees a GPU; elsewhere they are collected and skipped, and the pytest summary
says so (conftest.py). On a GPU machine a missing CUDA library is a failure, not a skip; `bash .ci/gpu` runs
this module there and fails if any of its tests is skipped.

Two kinds of comparison:

* Kernel level: the GPU and the CPU get the *same NDC faces* (computed once, on the CPU). Face index, weights
  and depth must be bit-identical, rgb within 1e-6, gradients within 1e-4 of their scale (float atomics sum in
  another order).
* Pipeline level (Renderer on the GPU against the CPU, and against NMR's Blender mask): XLA evaluates the
  camera transform on the GPU in another order, so the NDC coordinates differ in their last bits and pixels
  whose centres lie on an edge may flip. tests/_edges.py states the bound these tests allow and why; the CPU
  suite checks that bound (tests/test_edges.py).

Scenes are real meshes at real sizes: NMR's teapot at 256² and 1024² with anti-aliasing, the textured
`display` model, a 39.8k-face teapot at 1024², 256 views in one vmapped call, one 4096² image without
anti-aliasing.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import ffi, meshes
from _edges import assert_coverage_within_bound, assert_values_within_bound
from test_ffi_forward import random_scene


# JAXNMR_TEST_GPU_AS_CPU=1 lets the CPU stand in for the GPU: a dry run of this module's own code (scenes,
# comparisons, bounds) on a machine without a GPU (`bash .ci/gpu --cpu-check`). It proves nothing about CUDA.
AS_CPU = bool(os.environ.get("JAXNMR_TEST_GPU_AS_CPU"))


def _gpus():
    if AS_CPU:
        return jax.devices("cpu")
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


GPUS = _gpus()
pytestmark = pytest.mark.skipif(not GPUS, reason="no GPU visible to JAX")
CPU = jax.devices("cpu")[0]
ROOT = pathlib.Path(__file__).resolve().parents[1]


def on(device, fn, *args):
    """Runs jit(fn) with its array arguments committed to ``device`` and returns numpy results."""
    args = jax.device_put(args, device)
    out = jax.jit(fn)(*args)
    return jax.tree_util.tree_map(lambda x: None if x is None else np.asarray(x), out,
                                  is_leaf=lambda x: x is None)


@pytest.mark.skipif(AS_CPU, reason="dry run on the CPU: no CUDA library is loaded")
def test_cuda_library_is_built_and_registered():
    status = ffi.kernel_status("cuda")
    assert status.available, status.reason


# --- kernel level: random scenes with every hazard ----------------------------------------------------------


def assert_maps_identical(gpu, cpu):
    for name in ("face_index", "weights", "depth"):
        g, c = getattr(gpu, name), getattr(cpu, name)
        assert (g is None) == (c is None), name
        if g is not None:
            np.testing.assert_array_equal(g, c, err_msg=name)
    assert (gpu.rgb is None) == (cpu.rgb is None)
    if gpu.rgb is not None:
        np.testing.assert_allclose(gpu.rgb, cpu.rgb, rtol=1e-6, atol=1e-6, err_msg="rgb")


def assert_gradients_close(gpu, cpu):
    for g, c in zip(gpu, cpu):
        assert (g is None) == (c is None)
        if g is not None:
            np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(c).max()))


def forward(S, with_maps=True):
    return lambda f, t, b: ffi.rasterize_forward(f, t, b, image_size=S, near=0.1, far=100.0, eps=1e-4,
                                                 with_maps=with_maps)


def forward_backward(S):
    def fn(f, t, b, gr, ga, gd):
        maps = ffi.rasterize_forward(f, t, b, image_size=S, near=0.1, far=100.0, eps=1e-4)
        return ffi.rasterize_backward(f, t, maps, gr, ga, gd, image_size=S, eps=1e-4)
    return fn


@pytest.mark.parametrize("seed", range(40))
def test_forward_gpu_equals_cpu_on_random_scenes(seed):
    batch, F, S, T = [((), 9, 17, 3), ((2,), 16, 24, 2), ((3,), 7, 13, 4), ((2, 2), 40, 32, 2)][seed % 4]
    faces, textures, background = random_scene(np.random.default_rng(seed), batch, F, T)
    args = (faces, textures, background)
    assert_maps_identical(on(GPUS[0], forward(S), *args), on(CPU, forward(S), *args))


@pytest.mark.parametrize("seed", range(30))
def test_backward_gpu_equals_cpu_on_random_scenes(seed):
    batch, F, S, T = [((), 6, 12, 2), ((2,), 8, 16, 3), ((3,), 20, 24, 2)][seed % 3]
    rng = np.random.default_rng(1000 + seed)
    faces, textures, background = random_scene(rng, batch, F, T)
    g_rgb = rng.normal(size=batch + (S, S, 3)).astype(np.float32)
    g_alpha = rng.normal(size=batch + (S, S)).astype(np.float32)
    g_depth = rng.normal(size=batch + (S, S)).astype(np.float32)
    args = (faces, textures, background, g_rgb, g_alpha, g_depth)
    assert_gradients_close(on(GPUS[0], forward_backward(S), *args), on(CPU, forward_backward(S), *args))


# --- kernel level: real meshes at real sizes, the same NDC faces on both devices ------------------------------


def ndc_faces(vertices, faces, eyes):
    """NDC face-vertex coordinates ``[..., 2F, 3, 3]`` of NMR's default camera at ``eyes [..., 3]``, with the
    faces doubled (fill_back), computed on the CPU: both devices then rasterize identical inputs."""
    with jax.default_device(CPU):
        v = jnp.asarray(vertices, jnp.float32)
        eyes = jnp.asarray(eyes, jnp.float32)
        ndc = jaxnmr.perspective(jaxnmr.look_at(v, eyes))  # [..., N, 3]
        return np.asarray(jaxnmr.vertices_to_faces(ndc, jaxnmr.mesh.fill_back(jnp.asarray(faces))))


def _nmr_teapot(nmr_data):
    return jaxnmr.load_obj(str(nmr_data / "teapot.obj"))


def _scene(name, nmr_data):
    """(NDC faces [..., F, 3, 3], textures [F, T, T, T, 3] or None, internal size S) of a named scene."""
    rng = np.random.default_rng(0)
    eye = jaxnmr.get_points_from_angles(2.732, 30.0, 0.0)
    if name.startswith("nmr-teapot"):
        v, f = _nmr_teapot(nmr_data)
        S = {"nmr-teapot-256-aa": 512, "nmr-teapot-1024-aa": 2048, "nmr-teapot-4096": 4096}[name]
        faces = ndc_faces(v, f, eye)
        textures = rng.uniform(0, 1, (faces.shape[-3], 2, 2, 2, 3)).astype(np.float32) if S < 4096 else None
        return faces, textures, S
    if name == "display-textured":
        v, f, t = jaxnmr.load_obj(str(nmr_data / "display" / "model.obj"), load_texture=True, texture_size=8)
        faces = ndc_faces(v, f, jaxnmr.get_points_from_angles(2.0, 15.0, -90.0))
        _, textures = jaxnmr.mesh.fill_back(jnp.asarray(f), jnp.asarray(t))  # the back faces' cubes too
        return faces, np.asarray(textures), 512
    if name == "teapot-39k-1024-aa":
        pot = meshes.teapot(resolution=25)
        v, f = pot.vertices, pot.faces
        assert f.shape[0] >= 39000
        return ndc_faces(v, f, eye), None, 2048
    if name == "teapot-256-views":
        pot = meshes.teapot(resolution=8)
        v, f = pot.vertices, pot.faces
        eyes = jaxnmr.get_points_from_angles(2.732, 30.0, jnp.linspace(0.0, 360.0, 256, endpoint=False))
        return ndc_faces(v, f, eyes), None, 512
    raise ValueError(name)


SCENES = ["nmr-teapot-256-aa", "nmr-teapot-1024-aa", "display-textured", "teapot-39k-1024-aa",
          "teapot-256-views", "nmr-teapot-4096"]


@pytest.mark.parametrize("name", SCENES)
def test_real_scene_gpu_equals_cpu(name, nmr_data):
    faces, textures, S = _scene(name, nmr_data)
    batch = faces.shape[:-3]
    background = np.array([0.1, 0.2, 0.3], np.float32)
    gpu = on(GPUS[0], forward(S), faces, textures, background)
    cpu = on(CPU, forward(S), faces, textures, background)
    covered = (cpu.face_index >= 0).mean()
    assert covered > 0.05, f"{name}: the scene covers only {covered:.1%} of the image"
    assert_maps_identical(gpu, cpu)

    rng = np.random.default_rng(1)
    g_alpha = rng.normal(size=batch + (S, S)).astype(np.float32)
    g_depth = rng.normal(size=batch + (S, S)).astype(np.float32)
    g_rgb = rng.normal(size=batch + (S, S, 3)).astype(np.float32) if textures is not None else None
    args = (faces, textures, background, g_rgb, g_alpha, g_depth)
    assert_gradients_close(on(GPUS[0], forward_backward(S), *args), on(CPU, forward_backward(S), *args))


def test_silhouette_forward_without_maps_on_a_real_scene(nmr_data):
    faces, _, S = _scene("nmr-teapot-1024-aa", nmr_data)
    background = np.zeros(3, np.float32)
    gpu = on(GPUS[0], forward(S, with_maps=False), faces, None, background)
    cpu = on(CPU, forward(S, with_maps=False), faces, None, background)
    assert gpu.weights is None and gpu.depth is None
    np.testing.assert_array_equal(gpu.face_index, cpu.face_index)


def test_gpu_forward_and_backward_are_deterministic(nmr_data):
    faces, textures, S = _scene("nmr-teapot-1024-aa", nmr_data)
    background = np.zeros(3, np.float32)
    g = np.random.default_rng(2).normal(size=(S, S)).astype(np.float32)
    fn = lambda f, t, b, g: (forward(S)(f, t, b), forward_backward(S)(f, t, b, None, g, None))
    first = on(GPUS[0], fn, faces, textures, background, g)
    for _ in range(3):
        again = on(GPUS[0], fn, faces, textures, background, g)
        assert_maps_identical(again[0], first[0])  # the forward is exactly deterministic
        # the backward only up to the order of its float atomics
        assert_gradients_close(again[1], first[1])


# --- pipeline level: the Renderer on the GPU against the CPU, and against the Blender mask -------------------


@pytest.mark.parametrize("image_size", [256, 1024])
def test_renderer_on_gpu_matches_cpu_within_the_edge_bound(nmr_teapot, image_size):
    v, f = nmr_teapot
    renderer = jaxnmr.Renderer(image_size=image_size)
    textures = np.ones((f.shape[0], 4, 4, 4, 3), np.float32)
    render = lambda v: renderer.render_rgbad(v, f, textures)
    gpu, cpu = on(GPUS[0], render, v), on(CPU, render, v)
    faces = ndc_faces(v, f, renderer.eye)
    assert_coverage_within_bound(gpu.alpha, cpu.alpha, faces, anti_aliasing=True)
    covered = cpu.alpha > 0
    assert_values_within_bound(gpu.rgb, cpu.rgb, covered)
    assert_values_within_bound(gpu.depth, cpu.depth, covered, relative=True)
    silhouettes = lambda v: renderer.render_silhouettes(v, f)
    assert_coverage_within_bound(on(GPUS[0], silhouettes, v), on(CPU, silhouettes, v), faces, True)


def test_textured_display_model_on_gpu(nmr_data):
    v, f, t = jaxnmr.load_obj(str(nmr_data / "display" / "model.obj"), load_texture=True, texture_size=16)
    renderer = jaxnmr.Renderer(eye=jaxnmr.get_points_from_angles(2.0, 15.0, -90.0))
    render = lambda v, t: renderer.render_rgbad(v, f, t)
    gpu, cpu = on(GPUS[0], render, v, t), on(CPU, render, v, t)
    assert_coverage_within_bound(gpu.alpha, cpu.alpha, ndc_faces(v, f, renderer.eye), anti_aliasing=True)
    assert_values_within_bound(gpu.rgb, cpu.rgb, cpu.alpha > 0)


def test_nmr_parity_on_gpu(nmr_teapot, blender_mask):
    """The CPU matches the Blender mask exactly (tests/test_parity.py); the GPU within the edge bound."""
    v, f = nmr_teapot
    renderer = jaxnmr.Renderer(anti_aliasing=False)
    silhouette = on(GPUS[0], lambda v: renderer.render_silhouettes(v, f), v)
    report = assert_coverage_within_bound(silhouette, blender_mask, ndc_faces(v, f, renderer.eye), False)
    print(f"GPU silhouette vs Blender mask: {report}")


def test_nmr_backward_reference_values_on_gpu():
    ref = np.array([[1.6725862, -0.26021874, 0.0], [1.41986704, -1.64284933, 0.0], [0.0, 0.0, 0.0]])
    v = np.array([[0.8, 0.8, 1.0], [0.0, -0.5, 1.0], [0.2, -0.4, 1.0]], np.float32)
    f = np.array([[0, 1, 2]], np.int32)
    renderer = jaxnmr.Renderer(image_size=64, anti_aliasing=False, perspective=False, rasterizer_eps=1e-4)
    loss = lambda v: jnp.abs(renderer.render_silhouettes(v, f)[25, 35] - 1.0)
    np.testing.assert_allclose(on(GPUS[0], jax.grad(loss), v), ref, rtol=1e-5, atol=1e-7)


def test_vmap_is_one_launch_on_gpu(nmr_teapot):
    v, f = nmr_teapot
    renderer = jaxnmr.Renderer(image_size=256)
    eyes = np.asarray(jaxnmr.get_points_from_angles(2.732, 30.0, jnp.arange(0.0, 360.0, 22.5)))
    batched = jax.vmap(lambda e: renderer.replace(eye=e).render_silhouettes(v, f))
    with jax.default_device(GPUS[0]):
        text = jax.jit(batched).lower(eyes).as_text()
    assert text.count("jaxnmr_rasterize_forward") == 1
    gpu, cpu = on(GPUS[0], batched, eyes), on(CPU, batched, eyes)
    faces = ndc_faces(v, f, eyes)
    for k in range(len(eyes)):
        assert_coverage_within_bound(gpu[k], cpu[k], faces[k], anti_aliasing=True)


def test_gradient_step_on_gpu_matches_cpu(nmr_teapot):
    """A whole optimisation step's gradient: silhouette loss against a target from 3 degrees away."""
    v, f = nmr_teapot
    renderer = jaxnmr.Renderer(image_size=256)
    target = on(CPU, lambda v: renderer.replace(eye=jaxnmr.get_points_from_angles(2.732, 30.0, 3.0))
                .render_silhouettes(v, f), v)
    grad = lambda v, t: jax.grad(lambda v: jnp.sum((renderer.render_silhouettes(v, f) - t) ** 2))(v)
    gpu, cpu = on(GPUS[0], grad, v, target), on(CPU, grad, v, target)
    # pixels on the edge bound move a few vertices' gradients; the bulk must agree
    scale = np.abs(cpu).max()
    close = np.abs(gpu - cpu) <= 1e-3 * scale
    assert close.mean() >= 0.99, f"{(~close).sum()} of {close.size} gradient entries differ by more than 1e-3"


# --- errors carry the underlying message --------------------------------------------------------------------


@pytest.mark.skipif(AS_CPU, reason="dry run on the CPU: the CPU kernels allocate no device workspace")
def test_a_failed_workspace_allocation_reports_xla_s_message():
    """A forward whose outputs fit but whose workspace (8 bytes per pixel of z-buffer keys) does not: the
    error names the workspace and passes XLA's own message on. Run alone, in a fresh process."""
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from jaxnmr import ffi
        gpu = jax.devices("gpu")[0]
        limit = gpu.memory_stats()["bytes_limit"]
        S = 16384
        B = int(0.45 * limit / (4 * S * S)) + 1          # face index: 0.45 of the memory; keys: twice that
        faces = jax.device_put(jnp.zeros((B, 1, 3, 3), jnp.float32), gpu)
        fn = jax.jit(lambda f: ffi.rasterize_forward(f, None, jnp.zeros(3), image_size=S, near=0.1, far=100.0,
                                                     eps=1e-4, with_maps=False).face_index.sum())
        try:
            print("RESULT", float(fn(faces)))
        except Exception as e:
            print("ERROR", e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT.parent)
    text = out.stdout + out.stderr
    assert "ERROR" in text, text[-3000:]
    assert "jaxnmr CUDA: XLA could not allocate" in text, text[-3000:]
    message = text.split("bytes of device workspace", 1)[1]
    assert len(message.split("):", 1)[1].strip()) > 0, text[-3000:]  # XLA's reason follows


# --- points: the CUDA point kernels against the CPU's on the same NDC points -------------------------------


def points_forward(S, K):
    return lambda p, r: ffi.rasterize_points_forward(p, r, image_size=S, points_per_pixel=K, near=0.1, far=100.0)


@pytest.mark.parametrize("group", range(4))
def test_points_forward_and_backward_gpu_equal_cpu_on_hazard_scenes(group):
    """The kernel tests' four groups of random scenes (ties, points behind the camera, zero, NaN and huge radii,
    NaN coordinates): the same fragments bit for bit (the same float operations, the K rounds of atomicMin select
    the same keys), gradients within 1e-4 of their scale (atomics sum in another order)."""
    from test_points_kernels import group_inputs

    pts, radius, g_depth, g_dist2, S, K = group_inputs(group)
    gpu, cpu = on(GPUS[0], points_forward(S, K), pts, radius), on(CPU, points_forward(S, K), pts, radius)
    for name in ("index", "depth", "dist2"):
        np.testing.assert_array_equal(getattr(gpu, name), getattr(cpu, name), err_msg=name)
    backward = lambda p, i, gd, gs: ffi.rasterize_points_backward(p, i, gd, gs, image_size=S)
    args = (np.where(np.isfinite(pts), pts, 0.0).astype(np.float32), cpu.index, g_depth, g_dist2)
    g_gpu, g_cpu = on(GPUS[0], backward, *args), on(CPU, backward, *args)
    np.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(g_cpu).max())))


def test_render_points_on_gpu_matches_cpu_and_64_views_are_one_launch():
    """100k points of the teapot at 256² (anti-aliased), 64 views in one vmapped call: one forward and one backward
    launch; the GPU's images and gradients equal the CPU's up to the camera's float order (a pixel whose centre
    lies on a disc's rim may differ, so the comparison allows a small share of pixels)."""
    views, count, resolution = (4, 20_000, 16) if AS_CPU else (64, 100_000, 40)  # a dry run on the CPU: smaller
    pot = meshes.teapot(resolution=resolution)
    with jax.default_device(CPU):
        points = jaxnmr.sample_points(jax.random.key(0), pot.vertices, pot.faces, count)
    colors = np.asarray(0.5 + 0.5 * jnp.sin(3.0 * points))
    points = np.asarray(points)
    renderer = jaxnmr.Renderer(image_size=256)
    eyes = np.asarray(jaxnmr.turntable_eyes(views, distance=2.7, elevation=20.0))

    def loss(p, c, eyes):
        out = jax.vmap(lambda e: renderer.replace(eye=e).render_points(p, c))(eyes)
        return jnp.sum(out.rgb ** 2) + jnp.sum(out.alpha), out.alpha

    step = jax.value_and_grad(loss, has_aux=True)
    with jax.default_device(GPUS[0]):
        text = jax.jit(step).lower(points, colors, eyes).as_text()
    assert text.count("jaxnmr_rasterize_points_forward") == 1
    assert text.count("jaxnmr_rasterize_points_backward") == 1
    (value_gpu, alpha_gpu), g_gpu = on(GPUS[0], step, points, colors, eyes)
    (value_cpu, alpha_cpu), g_cpu = on(CPU, step, points, colors, eyes)
    assert np.mean(np.abs(alpha_gpu - alpha_cpu) > 1e-3) < 1e-3
    np.testing.assert_allclose(value_gpu, value_cpu, rtol=1e-3)
    assert np.corrcoef(g_gpu.ravel(), g_cpu.ravel())[0, 1] > 0.999
