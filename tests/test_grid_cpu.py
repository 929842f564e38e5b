"""The CUDA back end's work items (grid.h), run serially on the CPU, against the CPU kernels and the oracle.

``libjaxnmr_grid_cpu.so`` runs exactly what raster_cuda.cu's threads compute: per-face setups and pixel counts,
the scanned work lists with their binary search, the packed (depth, face) keys and their atomic minimum, the
per-pixel resolve; and the backward as the GPU configures it: the prologue that marks the faces drawn at some
pixel, finds the pixels that can contribute to outward scans and builds their per-line spans and blocks (and the
transposed copies the column sweeps read), the work lists of the visible faces' sweeps, and each scanline's
scans shared among kSweepLanes lanes whose sums are added in the GPU's butterfly order. So the GPU's
decomposition is tested where there is no GPU; tests/test_gpu.py then checks the CUDA library itself on a GPU.
Two backward targets: the GPU's layout for the call (transposed copies where they fit its budget) and the
strided layout it falls back to past the budget.
"""

import ctypes
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import jaxnmr
from jaxnmr import ffi, meshes, reference
from test_ffi_forward import random_scene

FORWARD, BACKWARD = "jaxnmr_grid_forward", "jaxnmr_grid_backward"
BACKWARD_STRIDED = "jaxnmr_grid_backward_strided"


@functools.cache
def _register() -> None:
    path = ffi.library_path("libjaxnmr_grid_cpu.so")
    assert path.is_file(), f"{path} missing: reinstall jaxnmr (pip install .)"
    library = ctypes.CDLL(str(path))
    jax.ffi.register_ffi_target(FORWARD, jax.ffi.pycapsule(library.JaxnmrGridForward), platform="cpu")
    jax.ffi.register_ffi_target(BACKWARD, jax.ffi.pycapsule(library.JaxnmrGridBackward), platform="cpu")
    jax.ffi.register_ffi_target(BACKWARD_STRIDED, jax.ffi.pycapsule(library.JaxnmrGridBackwardStrided),
                                platform="cpu")


@pytest.fixture(scope="module", autouse=True)
def grid_library():
    _register()


_FWD_STATIC = ("image_size", "near", "far", "eps", "with_maps", "target")
_BWD_STATIC = ("image_size", "eps", "want_faces", "want_textures", "target")
_forward = jax.jit(ffi.rasterize_forward, static_argnames=_FWD_STATIC)
_backward = jax.jit(ffi.rasterize_backward, static_argnames=_BWD_STATIC)
_oracle_forward = jax.jit(reference.rasterize_forward, static_argnames=_FWD_STATIC[:-1])
_oracle_backward = jax.jit(reference.rasterize_backward, static_argnames=_BWD_STATIC[:-1])


def assert_maps_equal(got, want):
    """Bit for bit: the grid's per-pixel functions are the CPU kernel's."""
    for name in ("face_index", "weights", "depth", "rgb"):
        g, w = getattr(got, name), getattr(want, name)
        assert (g is None) == (w is None), name
        if g is not None:
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=name)


def assert_gradients_close(got, want, rtol):
    """Within float-summation noise: the grid adds scanline sums one at a time where the CPU adds lanes."""
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            a, b = np.asarray(a), np.asarray(b)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


def grid_backward(*args, **kw):
    """The grid's gradients in the GPU's layout for the call, after checking that the strided layout (the GPU's
    past its transposition budget) gives the very same bits: the copies hold the same values, read in the same
    order."""
    grid = _backward(*args, target=BACKWARD, **kw)
    strided = _backward(*args, target=BACKWARD_STRIDED, **kw)
    for a, b in zip(grid, strided):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return grid


CONFIGS = [((), 1, 8, 2), ((), 9, 17, 3), ((2,), 16, 24, 2), ((3,), 7, 13, 4), ((2, 2), 12, 16, 2), ((1,), 0, 8, 2)]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), config=st.sampled_from(CONFIGS),
       depth_range=st.sampled_from([(0.1, 100.0), (0.5, 3.0)]), with_rgb=st.booleans(), with_maps=st.booleans())
def test_grid_forward_equals_the_cpu_kernel_and_the_oracle(seed, config, depth_range, with_rgb, with_maps):
    batch, F, S, T = config
    faces, textures, background = random_scene(np.random.default_rng(seed), batch, F, T)
    textures = textures if with_rgb else None
    with_maps = with_maps or with_rgb
    kw = dict(image_size=S, near=depth_range[0], far=depth_range[1], eps=1e-3, with_maps=with_maps)
    grid = _forward(faces, textures, background, target=FORWARD, **kw)
    assert_maps_equal(grid, _forward(faces, textures, background, **kw))
    oracle = _oracle_forward(faces, textures, background, **kw)
    np.testing.assert_array_equal(np.asarray(grid.face_index), np.asarray(oracle.face_index))
    if with_maps:
        np.testing.assert_allclose(np.asarray(grid.depth), np.asarray(oracle.depth), rtol=1e-5, atol=1e-5)


def _cotangents(rng, batch, S, which, mask=None):
    mask = np.ones((S, S), np.float32) if mask is None else mask
    rgb = (rng.normal(size=batch + (S, S, 3)) * mask[..., None]).astype(np.float32)
    alpha = (rng.normal(size=batch + (S, S)) * mask).astype(np.float32)
    depth = rng.normal(size=batch + (S, S)).astype(np.float32)
    return (rgb if which in ("rgb", "all", "rgb+depth") else None, alpha if which in ("alpha", "all") else None,
            depth if which in ("depth", "all", "rgb+depth") else None)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), config=st.sampled_from([((), 6, 12, 2), ((2,), 8, 16, 3), ((3,), 5, 9, 2)]),
       which=st.sampled_from(["all", "alpha", "rgb", "depth", "rgb+depth"]))
def test_grid_backward_matches_the_cpu_kernel_and_the_oracle(seed, config, which):
    batch, F, S, T = config
    rng = np.random.default_rng(seed)
    faces, textures, background = random_scene(rng, batch, F, T)
    maps = _forward(faces, textures, background, image_size=S, near=0.1, far=100.0, eps=1e-3)
    args = (faces, textures, maps) + _cotangents(rng, batch, S, which)
    grid = grid_backward(*args, image_size=S, eps=1e-3)
    assert_gradients_close(grid, _backward(*args, image_size=S, eps=1e-3), 1e-5)
    assert_gradients_close(grid, _oracle_backward(*args, image_size=S, eps=1e-3), 1e-4)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), S=st.sampled_from([64, 90]), which=st.sampled_from(["alpha", "rgb", "all"]))
def test_grid_backward_with_sparse_cotangents(seed, S, which):
    """Where the CPU kernel clips its outward scans to active spans and skips inactive blocks, the GPU's scans
    run to the border; both must give the oracle's result."""
    rng = np.random.default_rng(seed)
    faces, textures, background = random_scene(rng, (), 12, 2)
    maps = _forward(faces, textures, background, image_size=S, near=0.1, far=100.0, eps=1e-3)
    mask = np.zeros((S, S), np.float32)
    for _ in range(12):
        r, c = rng.integers(0, S - 6, 2)
        h, w = rng.integers(1, 7), rng.integers(1, 4)
        mask[r:r + h, c:c + w] = 1.0
        mask[c:c + w, r:r + h] = 1.0  # and transposed, for the sweeps over columns
    args = (faces, textures, maps) + _cotangents(rng, (), S, which, mask)
    oracle = _oracle_backward(*args, image_size=S, eps=1e-3)
    # A mask that misses every edge of the scene gives zero gradients everywhere, which proves nothing: such
    # examples are discarded (by the oracle's verdict, so a kernel that wrongly returns zeros still fails).
    assume(np.abs(np.asarray(oracle[0])).max() > 0)
    grid = grid_backward(*args, image_size=S, eps=1e-3)
    assert_gradients_close(grid, _backward(*args, image_size=S, eps=1e-3), 1e-5)
    assert_gradients_close(grid, oracle, 1e-4)


def _shifted(faces, dx):
    """The scene moved by dx in NDC x (the target of a realistic loss: the same geometry a little away)."""
    return np.asarray(faces) + np.array([dx, 0.0, 0.0], np.float32)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), config=st.sampled_from([((), 10, 40, 2), ((2,), 8, 33, 2), ((), 24, 64, 2)]),
       which=st.sampled_from(["alpha", "rgb", "all"]), shift=st.sampled_from([0.0, 0.03, -0.07]))
def test_grid_backward_with_silhouette_losses_on_hazard_scenes(seed, config, which, shift):
    """The cotangents of a squared loss against the same scene moved a little (zero wherever the two images
    agree: most of the image, all of it for shift 0), on scenes with every hazard of random_scene (depth ties,
    vertices behind the camera, degenerate and non-finite faces): the GPU's spans and blocks are then mostly
    empty and most faces are drawn nowhere. Gradients within 1e-5 of the CPU kernel's and 1e-4 of the oracle's;
    exactly zero where the oracle's are."""
    batch, F, S, T = config
    rng = np.random.default_rng(seed)
    faces, textures, background = random_scene(rng, batch, F, T)
    kw = dict(image_size=S, near=0.1, far=100.0, eps=1e-3)
    maps = _forward(faces, textures, background, **kw)
    target = _forward(_shifted(faces, shift), textures, background, **kw)
    alpha = (np.asarray(maps.face_index) >= 0).astype(np.float32)
    target_alpha = (np.asarray(target.face_index) >= 0).astype(np.float32)
    g_alpha = 2.0 * (alpha - target_alpha) if which in ("alpha", "all") else None
    g_rgb = 2.0 * (np.asarray(maps.rgb) - np.asarray(target.rgb)) if which in ("rgb", "all") else None
    g_depth = rng.normal(size=batch + (S, S)).astype(np.float32) if which == "all" else None
    args = (faces, textures, maps, g_rgb, g_alpha, g_depth)
    grid = grid_backward(*args, image_size=S, eps=1e-3)
    cpu = _backward(*args, image_size=S, eps=1e-3)
    oracle = _oracle_backward(*args, image_size=S, eps=1e-3)
    assert_gradients_close(grid, cpu, 1e-5)
    assert_gradients_close(grid, oracle, 1e-4)
    np.testing.assert_array_equal(np.asarray(grid[0]) == 0, np.asarray(cpu[0]) == 0)


def test_grid_backward_with_zero_cotangents():
    """Cotangents that are zero everywhere: no pixel is active, every span is empty; gradients exactly zero."""
    faces, textures, background = random_scene(np.random.default_rng(5), (2,), 16, 2)
    S = 32
    maps = _forward(faces, textures, background, image_size=S, near=0.1, far=100.0, eps=1e-3)
    zeros = np.zeros((2, S, S), np.float32)
    grid = grid_backward(faces, textures, maps, zeros[..., None].repeat(3, -1), zeros, zeros, image_size=S, eps=1e-3)
    assert not np.asarray(grid[0]).any() and not np.asarray(grid[1]).any()


def _teapot_ndc(vertices, faces, eye):
    """NDC face-vertex coordinates [F2, 3, 3] of NMR's default camera (fill_back doubles the faces)."""
    ndc = jaxnmr.perspective(jaxnmr.look_at(jnp.asarray(vertices), eye))
    return jaxnmr.vertices_to_faces(ndc, jaxnmr.mesh.fill_back(jnp.asarray(faces)))


@pytest.mark.parametrize("S", [256, 512])
def test_grid_on_a_real_mesh(S):
    """The built-in teapot (3.1k faces, 6.3k after fill_back) at real sizes: forward maps bit-identical, rgb
    and silhouette gradients within 1e-5 of the CPU kernel's, with dense cotangents and with those of a squared
    loss against the teapot's images from 3 degrees of azimuth away (zero on most pixels)."""
    pot = meshes.teapot(resolution=8)
    v, f = pot.vertices, pot.faces
    faces = _teapot_ndc(v, f, jaxnmr.get_points_from_angles(2.732, 30.0, 20.0))
    F = faces.shape[0]
    textures = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (F, 2, 2, 2, 3)), jnp.float32)
    background = jnp.array([0.2, 0.3, 0.4], jnp.float32)
    kw = dict(image_size=S, near=0.1, far=100.0, eps=1e-4)
    grid = _forward(faces, textures, background, target=FORWARD, **kw)
    cpu = _forward(faces, textures, background, **kw)
    assert_maps_equal(grid, cpu)
    assert (np.asarray(cpu.face_index) >= 0).mean() > 0.1  # the teapot covers about 12% of the image
    rng = np.random.default_rng(1)
    for which in ("alpha", "rgb+depth"):
        args = (faces, textures, cpu) + _cotangents(rng, (), S, which)
        assert_gradients_close(grid_backward(*args, image_size=S, eps=1e-4),
                               _backward(*args, image_size=S, eps=1e-4), 1e-5)
    away = _forward(_teapot_ndc(v, f, jaxnmr.get_points_from_angles(2.732, 30.0, 23.0)), textures, background, **kw)
    g_alpha = 2.0 * ((np.asarray(cpu.face_index) >= 0).astype(np.float32) -
                     (np.asarray(away.face_index) >= 0).astype(np.float32))
    assert 0 < (g_alpha != 0).mean() < 0.05  # a realistic silhouette loss: zero on most pixels
    g_rgb = 2.0 * (np.asarray(cpu.rgb) - np.asarray(away.rgb))
    for g in ((None, g_alpha, None), (g_rgb, None, None)):
        args = (faces, textures, cpu) + g
        assert_gradients_close(grid_backward(*args, image_size=S, eps=1e-4),
                               _backward(*args, image_size=S, eps=1e-4), 1e-5)


def test_grid_batches_like_the_kernel():
    """Leading dims broadcast in the grid's batch maps as in the kernel's (faces [2, 1, F], background [3]; in the
    backward, maps [2, 1] against cotangents [2, 3])."""
    faces, textures, background = random_scene(np.random.default_rng(3), (2, 1), 10, 2)
    background = background[0, 0]
    kw = dict(image_size=16, near=0.1, far=100.0, eps=1e-3)
    maps = _forward(faces, textures, background, **kw)
    assert_maps_equal(_forward(faces, textures, background, target=FORWARD, **kw), maps)
    # backward: cotangents [2, 3, S, S] against maps [2, 1, S, S]: the sweeps' buffers are per output element
    rng = np.random.default_rng(4)
    g_alpha = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    g_rgb = rng.normal(size=(2, 3, 16, 16, 3)).astype(np.float32)
    args = (faces, textures, maps, g_rgb, g_alpha, None)
    assert_gradients_close(grid_backward(*args, image_size=16, eps=1e-3), _backward(*args, image_size=16, eps=1e-3),
                           1e-5)
