"""The CUDA back end's work items (grid.h), run serially on the CPU, against the CPU kernels and the oracle.

``libjaxnmr_grid_cpu.so`` runs exactly what raster_cuda.cu's threads compute: per-face setups and pixel counts,
the scanned work lists with their binary search, the packed (depth, face) keys and their atomic minimum, the
per-pixel resolve, and the backward's per-scanline sweeps with scalar lanes and no span or block bounds, as the
GPU configures them. So the GPU's decomposition is tested where there is no GPU; tests/test_gpu.py then checks
the CUDA library itself on a GPU.
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


@functools.cache
def _register() -> None:
    path = ffi.library_path("libjaxnmr_grid_cpu.so")
    assert path.is_file(), f"{path} missing: reinstall jaxnmr (pip install .)"
    library = ctypes.CDLL(str(path))
    jax.ffi.register_ffi_target(FORWARD, jax.ffi.pycapsule(library.JaxnmrGridForward), platform="cpu")
    jax.ffi.register_ffi_target(BACKWARD, jax.ffi.pycapsule(library.JaxnmrGridBackward), platform="cpu")


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
    grid = _backward(*args, image_size=S, eps=1e-3, target=BACKWARD)
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
    grid = _backward(*args, image_size=S, eps=1e-3, target=BACKWARD)
    assert_gradients_close(grid, _backward(*args, image_size=S, eps=1e-3), 1e-5)
    assert_gradients_close(grid, oracle, 1e-4)


def _teapot_ndc(vertices, faces, eye):
    """NDC face-vertex coordinates [F2, 3, 3] of NMR's default camera (fill_back doubles the faces)."""
    ndc = jaxnmr.perspective(jaxnmr.look_at(jnp.asarray(vertices), eye))
    return jaxnmr.vertices_to_faces(ndc, jaxnmr.mesh.fill_back(jnp.asarray(faces)))


@pytest.mark.parametrize("S", [256, 512])
def test_grid_on_a_real_mesh(S):
    """The built-in teapot (3.1k faces, 6.3k after fill_back) at real sizes: forward maps bit-identical, rgb
    and silhouette gradients within 1e-5 of the CPU kernel's."""
    v, f = meshes.teapot(resolution=8)
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
        assert_gradients_close(_backward(*args, image_size=S, eps=1e-4, target=BACKWARD),
                               _backward(*args, image_size=S, eps=1e-4), 1e-5)


def test_grid_batches_like_the_kernel():
    """Leading dims broadcast in the grid's batch maps as in the kernel's (faces [2, 1, F], background [3])."""
    faces, textures, background = random_scene(np.random.default_rng(3), (2, 1), 10, 2)
    background = background[0, 0]
    kw = dict(image_size=16, near=0.1, far=100.0, eps=1e-3)
    assert_maps_equal(_forward(faces, textures, background, target=FORWARD, **kw),
                      _forward(faces, textures, background, **kw))
