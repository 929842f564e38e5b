"""The point rasterizer's kernels (docs/points.md, "Fragments" and "Gradient") against the dense oracle
(jaxnmr.reference): the CPU kernels (libjaxnmr_cpu.so), and the CUDA back end's work items run serially on the
CPU (libjaxnmr_grid_cpu.so: per-point setups, the scanned work list, the K rounds of atomic minima of packed
(z, index) keys, the per-pixel resolve, the per-slot backward), so that the GPU's decomposition is tested where
there is no GPU.

Scenes come in a few batched calls (one compilation each), every hazard mixed in: exact duplicates and equal
depths (ties broken by index), points at or behind `near` and at or beyond `far`, zero, negative, NaN, huge and
infinite radii, NaN and infinite coordinates, points far outside the image, points exactly one radius from pixel
centres (the strict test), more covering points than slots, shared and per-point radii, broadcast leading dims.
"""

import ctypes
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnmr import ffi, reference
from _helpers import examples

FORWARD, BACKWARD = "jaxnmr_rasterize_points_forward", "jaxnmr_rasterize_points_backward"
GRID_FORWARD, GRID_BACKWARD = "jaxnmr_grid_points_forward", "jaxnmr_grid_points_backward"
NEAR, FAR = 0.5, 4.0


@functools.cache
def _register_grid() -> None:
    path = ffi.library_path("libjaxnmr_grid_cpu.so")
    assert path.is_file(), f"{path} missing: reinstall jaxnmr (pip install .)"
    library = ctypes.CDLL(str(path))
    jax.ffi.register_ffi_target(GRID_FORWARD, jax.ffi.pycapsule(library.JaxnmrGridPointsForward), platform="cpu")
    jax.ffi.register_ffi_target(GRID_BACKWARD, jax.ffi.pycapsule(library.JaxnmrGridPointsBackward), platform="cpu")


@pytest.fixture(scope="module", autouse=True)
def grid_library():
    _register_grid()


def test_cpu_point_kernels_are_built_and_registered():
    """A library without the point symbols would make the whole platform fall back to the oracle."""
    assert ffi.kernel_available("cpu"), ffi.kernel_status("cpu").reason


_FWD_STATIC = ("image_size", "points_per_pixel", "near", "far")
_kernel_forward = jax.jit(ffi.rasterize_points_forward, static_argnames=_FWD_STATIC + ("target",))
_kernel_backward = jax.jit(ffi.rasterize_points_backward, static_argnames=("image_size", "target"))
_oracle_forward = jax.jit(reference.rasterize_points_forward, static_argnames=_FWD_STATIC)
_oracle_backward = jax.jit(reference.rasterize_points_backward, static_argnames=("image_size",))


def pixel_centers(S: int) -> np.ndarray:
    """float32 NDC centres of internal columns (rows) 0..S-1, as the kernels compute them."""
    return ((2 * np.arange(S) + 1 - S).astype(np.float32) / np.float32(S)).astype(np.float32)


def random_points(rng: np.random.Generator, n: int, P: int, S: int) -> np.ndarray:
    """n scenes of P points float32 [n, P, 3] with the coordinate hazards. Point 0 of each scene stays finite and
    moderate: the oracle's backward gathers point 0 for empty slots (and multiplies by 0), so a non-finite point 0
    would give it NaN there, where the kernels (and docs/points.md, "Gradient") add nothing."""
    pts = rng.uniform(-1.3, 1.3, (n, P, 3)).astype(np.float32)
    pts[..., 2] = rng.uniform(0.3, 4.5, (n, P))
    centers = pixel_centers(S)
    for scene in pts:
        for i in range(1, P):
            kind = rng.integers(0, 16)
            j = rng.integers(0, P)
            if kind == 0:  # exact duplicate of another point: a full tie, broken by index
                scene[i] = scene[j]
            elif kind == 1:  # the same depth as another point elsewhere
                scene[i, 2] = scene[j, 2]
            elif kind == 2:  # at or behind near, at or behind the camera
                scene[i, 2] = rng.choice([NEAR, 0.0, -0.0, -1.0, rng.uniform(-2, NEAR)])
            elif kind == 3:  # at or beyond far
                scene[i, 2] = rng.choice([FAR, FAR * 1.5, 1e30])
            elif kind == 4:  # non-finite coordinates
                scene[i, rng.integers(0, 3)] = rng.choice([np.nan, np.inf, -np.inf])
            elif kind == 5:  # far outside the image, moderately or hugely
                scene[i, rng.integers(0, 2)] = rng.choice([-1, 1]) * rng.choice([3.0, 1e3, 1e18, 1e20, 3e38])
            elif kind == 6:  # exactly on a pixel centre (other pixels at exact multiples of the pixel size)
                scene[i, 0], scene[i, 1] = rng.choice(centers), rng.choice(centers)
    return pts


def random_radii(rng: np.random.Generator, shape, S: int) -> np.ndarray:
    """Radii float32 of `shape`: mostly 0.3 to 6 pixels, with zero, negative, NaN, huge and infinite ones, and
    exact multiples of the pixel size (a neighbour's centre exactly one radius away is not covered)."""
    r = (rng.uniform(0.3, 6.0, shape) * 2 / S).astype(np.float32)
    special = np.array([0.0, -0.1, np.nan, 1e30, np.inf, 2.0 / S, 4.0 / S, 1.0, 1e-30], np.float32)
    pick = rng.random(shape) < 0.12
    r[pick] = rng.choice(special, pick.sum())
    return r


# (points' batch shape, radius' shape, P, S, K): four batched calls, 50 or more scenes each (fewer under
# JAXNMR_TEST_EXAMPLES, .ci/sanitize), differing in K and S, radius shared or per point, broadcast either way.
def _groups():
    n = examples(52)
    return [
        ((n,), (n, 40), 40, 8, 1),  # per-point radius
        ((n,), (n, 1), 60, 13, 2),  # one radius for all the points of a scene
        ((2, (n + 1) // 2), (2, 1, 33), 33, 24, 5),  # per-point radius broadcast over the second batch dim
        ((1,), (n, 50), 50, 17, 8),  # the same points under n sets of radii
    ]


GROUPS = _groups()


def group_inputs(g: int):
    """The points, radii and cotangents of group g; the cotangents' shape is the outputs'."""
    pshape, rshape, P, S, K = GROUPS[g]
    rng = np.random.default_rng(1000 + g)
    n = int(np.prod(pshape))
    pts = random_points(rng, n, P, S).reshape(pshape + (P, 3))
    radius = random_radii(rng, rshape, S)
    batch = np.broadcast_shapes(pshape, rshape[:-1])
    g_depth = rng.normal(size=batch + (S, S, K)).astype(np.float32)
    g_dist2 = rng.normal(size=batch + (S, S, K)).astype(np.float32)
    return pts, radius, g_depth, g_dist2, S, K


@functools.cache
def group_results(g: int):
    """Kernel, grid and oracle forward outputs of group g (numpy), computed once for the tests below."""
    pts, radius, _, _, S, K = group_inputs(g)
    kw = dict(image_size=S, points_per_pixel=K, near=NEAR, far=FAR)
    kernel = _kernel_forward(pts, radius, target=FORWARD, **kw)
    grid = _kernel_forward(pts, radius, target=GRID_FORWARD, **kw)
    oracle = _oracle_forward(pts, radius, **kw)
    as_np = lambda f: ffi.PointFragments(*(np.asarray(x) for x in f))
    return as_np(kernel), as_np(grid), as_np(oracle)


def assert_fragments_match(got, want, err_msg=""):
    np.testing.assert_array_equal(got.index, want.index, err_msg=err_msg + " index")
    for name in ("depth", "dist2"):
        g, w = getattr(got, name), getattr(want, name)
        scale = max(1.0, float(np.nanmax(np.abs(w[np.isfinite(w)]), initial=0.0)))
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * scale, err_msg=f"{err_msg} {name}")


@pytest.mark.parametrize("g", range(len(GROUPS)))
def test_forward_matches_oracle(g):
    kernel, grid, oracle = group_results(g)
    assert_fragments_match(kernel, oracle, "kernel")
    assert_fragments_match(grid, oracle, "grid")
    # The CPU and the GPU's work items compute every value with the same functions: the very same bits.
    for name in ("index", "depth", "dist2"):
        np.testing.assert_array_equal(getattr(grid, name), getattr(kernel, name), err_msg=name)


def test_scenes_exercise_the_hazards():
    """The random scenes are not vacuous: slots fill, pixels overflow their K slots, ties are broken by index,
    whole images are covered by huge radii, and there are empty slots."""
    for g in range(len(GROUPS)):
        _, _, oracle = group_results(g)
        filled = oracle.index >= 0
        assert filled.mean() > 0.05 and filled.sum() > 100, g
        if g > 0:
            assert (~filled).any(), g
    kernel, _, _ = group_results(3)  # K = 8: a pixel with all slots filled has more candidates than slots
    assert (kernel.index[..., -1] >= 0).sum() > 10
    # some slot pairs have equal depths (ties), ordered by index
    k, _, _ = group_results(1)
    same = (k.depth[..., 1:] == k.depth[..., :-1]) & (k.index[..., 1:] >= 0)
    assert same.any() and np.all(k.index[..., 1:][same] > k.index[..., :-1][same])


def group_gradient_tolerance(pts, index, g_depth, g_dist2, S):
    """Per point and coordinate, 1e-5 times the sum of the absolute terms (float64): the float summation orders
    of the kernel and the oracle differ, and gradients of different points differ by orders of magnitude."""
    batch = index.shape[:-3]
    P = pts.shape[-2]
    pts = np.broadcast_to(pts, batch + pts.shape[-2:]).reshape(-1, P, 3).astype(np.float64)
    index = index.reshape(-1, S, S, index.shape[-1])
    c = pixel_centers(S).astype(np.float64)
    out = np.zeros(pts.shape)
    for b in range(index.shape[0]):
        r, col, _ = np.nonzero((index[b] >= 0) & (index[b] < P))
        p = index[b][(index[b] >= 0) & (index[b] < P)]
        gd = np.abs(g_depth.reshape(index.shape)[b][(index[b] >= 0) & (index[b] < P)])
        gs = np.abs(g_dist2.reshape(index.shape)[b][(index[b] >= 0) & (index[b] < P)])
        with np.errstate(invalid="ignore", over="ignore"):
            terms = np.stack([gs * 2 * np.abs(pts[b, p, 0] - c[col]), gs * 2 * np.abs(pts[b, p, 1] - c[r]), gd], -1)
        np.add.at(out[b], p, terms)
    return 1e-5 * out.reshape(batch + (P, 3)) + 1e-6


@pytest.mark.parametrize("g", range(len(GROUPS)))
def test_backward_matches_oracle(g):
    pts, _, g_depth, g_dist2, S, _ = group_inputs(g)
    kernel_fwd, _, _ = group_results(g)
    index = kernel_fwd.index
    # Also slots that name no point of the call (the backward must skip them, not read past the points).
    if g == 2:
        index = index.copy()
        rng = np.random.default_rng(7)
        bad = rng.random(index.shape) < 0.02
        index[bad] = rng.choice(np.array([-7, pts.shape[-2], pts.shape[-2] + 5, 2**31 - 1]), bad.sum())
    # one group without the depth cotangent, one without the dist2 cotangent
    gd = None if g == 1 else g_depth
    gs = None if g == 3 else g_dist2
    want = np.asarray(_oracle_backward(pts, index, gd, gs, image_size=S))
    atol = group_gradient_tolerance(pts, index, g_depth if gd is not None else 0 * g_depth,
                                    g_dist2 if gs is not None else 0 * g_dist2, S)
    kernel = np.asarray(_kernel_backward(pts, index, gd, gs, image_size=S, target=BACKWARD))
    grid = np.asarray(_kernel_backward(pts, index, gd, gs, image_size=S, target=GRID_BACKWARD))
    assert np.isfinite(want).all() and np.abs(want).max() > 0
    for name, got in (("kernel", kernel), ("grid", grid)):
        assert got.shape == want.shape
        err = np.abs(got.astype(np.float64) - want)
        assert np.all(err <= atol), f"{name}: worst {np.max(err - atol)} over tolerance"
    # The serial grid adds the terms in the CPU kernel's order (pixels, then slots): the same bits. (On a GPU,
    # atomics add them in any order.)
    np.testing.assert_array_equal(grid, kernel)


def test_empty_cases():
    """No points, and no batch elements: empty slots, zero gradients, nothing read."""
    kw = dict(image_size=6, points_per_pixel=3, near=NEAR, far=FAR)
    for target in (FORWARD, GRID_FORWARD):
        f = ffi.rasterize_points_forward(jnp.zeros((2, 0, 3)), jnp.ones((2, 1)), target=target, **kw)
        assert (np.asarray(f.index) == -1).all() and (np.asarray(f.depth) == FAR).all()
        assert (np.asarray(f.dist2) == -1).all()
        f = ffi.rasterize_points_forward(jnp.zeros((0, 4, 3)), jnp.ones((0, 4)), target=target, **kw)
        assert f.index.shape == (0, 6, 6, 3)
    for target in (BACKWARD, GRID_BACKWARD):
        g = ffi.rasterize_points_backward(jnp.zeros((2, 0, 3)), -jnp.ones((2, 6, 6, 3), jnp.int32),
                                          jnp.ones((2, 6, 6, 3)), None, image_size=6, target=target)
        assert g.shape == (2, 0, 3)
        g = ffi.rasterize_points_backward(jnp.ones((2, 4, 3)), -jnp.ones((2, 6, 6, 3), jnp.int32),
                                          jnp.ones((2, 6, 6, 3)), jnp.ones((2, 6, 6, 3)), image_size=6, target=target)
        assert (np.asarray(g) == 0).all()


def fragments_of_rows(pts, radius, S, K, rows):
    """docs/points.md, "Fragments", written out in numpy (float32, every operation rounded) for some rows of
    one scene: [len(rows), S, K] index, depth and dist2. Dense over the points, so only for a few rows."""
    c = pixel_centers(S)
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    index = np.full((len(rows), S, K), -1, np.int32)
    depth = np.full((len(rows), S, K), np.float32(FAR), np.float32)
    dist2 = np.full((len(rows), S, K), np.float32(-1), np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        drawn = (radius > 0) & (z > np.float32(NEAR)) & (z < np.float32(FAR))
        r2 = radius * radius
        for i, r in enumerate(rows):
            dy = c[r] - y  # [P]
            dx = c[:, None] - x[None, :]  # [S, P]
            d2 = (dy * dy)[None, :] + dx * dx
            covered = drawn[None, :] & (d2 < r2[None, :])
            for col in range(S):
                p = np.nonzero(covered[col])[0]
                p = p[np.lexsort((p, z[p]))][:K]  # by z, then by index
                index[i, col, : len(p)] = p
                depth[i, col, : len(p)] = z[p]
                dist2[i, col, : len(p)] = d2[col, p]
    return index, depth, dist2


def test_large_scene_kernel_matches_grid_and_definition():
    """20k points at 256^2, K = 8, on both CPU threads: the CPU kernel against the GPU's work items everywhere
    (forward and backward, bit for bit), and against docs/points.md's definition written out in numpy on a band
    of rows (the dense oracle would take half a minute here)."""
    rng = np.random.default_rng(3)
    P, S, K = 20000, 256, 8
    pts = np.empty((P, 3), np.float32)
    pts[:, :2] = rng.uniform(-1.05, 1.05, (P, 2))
    pts[:, 2] = rng.uniform(1.0, 3.0, P)
    pts[::97, 2] = pts[1::97, 2][: len(pts[::97])]  # some depth ties
    pts[5::101] = pts[6::101][: len(pts[5::101])]  # some exact duplicates
    radius = (rng.uniform(0.5, 3.0, P) * 2 / S).astype(np.float32)
    kw = dict(image_size=S, points_per_pixel=K, near=NEAR, far=FAR)
    kernel = ffi.PointFragments(*(np.asarray(x) for x in _kernel_forward(pts, radius, target=FORWARD, **kw)))
    grid = ffi.PointFragments(*(np.asarray(x) for x in _kernel_forward(pts, radius, target=GRID_FORWARD, **kw)))
    for name in ("index", "depth", "dist2"):
        np.testing.assert_array_equal(getattr(grid, name), getattr(kernel, name), err_msg=name)
    assert (kernel.index[..., K - 1] >= 0).sum() > 100 and (kernel.index[..., 0] >= 0).mean() > 0.5

    rows = [0, 100, 101, 102, 103, 200, 255]
    index, depth, dist2 = fragments_of_rows(pts, radius, S, K, rows)
    np.testing.assert_array_equal(kernel.index[rows], index)
    np.testing.assert_allclose(kernel.depth[rows], depth, rtol=1e-6)
    np.testing.assert_allclose(kernel.dist2[rows], dist2, rtol=1e-5, atol=1e-9)

    g_dist2 = rng.normal(size=(S, S, K)).astype(np.float32)
    g_depth = rng.normal(size=(S, S, K)).astype(np.float32)
    gk = np.asarray(_kernel_backward(pts, kernel.index, g_depth, g_dist2, image_size=S, target=BACKWARD))
    gg = np.asarray(_kernel_backward(pts, kernel.index, g_depth, g_dist2, image_size=S, target=GRID_BACKWARD))
    np.testing.assert_array_equal(gk, gg)
    assert np.abs(gk).max() > 0


# --- the kernels' own validation: bad buffers give an error naming the buffer and its shape -----------------


def _forward_call(points, radius, out_batch, S=8, K=3, K_out=None, near=NEAR, far=FAR, target=FORWARD):
    K_out = K if K_out is None else K_out
    out = (jax.ShapeDtypeStruct(out_batch + (S, S, K_out), jnp.int32),
           jax.ShapeDtypeStruct(out_batch + (S, S, K_out), jnp.float32),
           jax.ShapeDtypeStruct(out_batch + (S, S, K_out), jnp.float32))
    call = jax.ffi.ffi_call(target, out)
    return jax.block_until_ready(call(jnp.asarray(points, jnp.float32), jnp.asarray(radius, jnp.float32),
                                      image_size=np.int32(S), points_per_pixel=np.int32(K), near=np.float32(near),
                                      far=np.float32(far)))


def _backward_call(points, index, g_depth, g_dist2, out_shape, S=8, K=3, has=(1, 1), target=BACKWARD):
    call = jax.ffi.ffi_call(target, (jax.ShapeDtypeStruct(out_shape, jnp.float32),))
    return jax.block_until_ready(call(jnp.asarray(points, jnp.float32), jnp.asarray(index, jnp.int32),
                                      jnp.asarray(g_depth, jnp.float32), jnp.asarray(g_dist2, jnp.float32),
                                      image_size=np.int32(S), points_per_pixel=np.int32(K),
                                      has_g_depth=np.int32(has[0]), has_g_dist2=np.int32(has[1])))


FORWARD_ERRORS = [
    (dict(points=np.zeros((2, 5, 4)), radius=np.ones((2, 1)), out_batch=(2,)),
     "points has shape [2, 5, 4]; trailing dimension 1 must be 3"),
    (dict(points=np.zeros((2, 5, 3)), radius=np.ones((2, 3)), out_batch=(2,)),
     "radius has shape [2, 3]; its last dimension must be 1 or P = 5"),
    (dict(points=np.zeros((3, 5, 3)), radius=np.ones((2, 1)), out_batch=(2,)),
     "points batch shape [3, 5, 3] does not broadcast to [2]"),
    (dict(points=np.zeros((5, 3)), radius=np.ones((2, 1)), out_batch=(2,)),
     "points has rank 2, expected 3; shape [5, 3]"),
    (dict(points=np.zeros((2, 5, 3)), radius=np.ones((2, 1)), out_batch=(2,), K_out=4),
     "output index has shape [2, 8, 8, 4], expected [2, 8, 8, 3]"),
    (dict(points=np.zeros((2, 5, 3)), radius=np.ones((2, 1)), out_batch=(2,), K=0, K_out=1),
     "points_per_pixel must be in [1, 64], got 0"),
    (dict(points=np.zeros((2, 5, 3)), radius=np.ones((2, 1)), out_batch=(2,), K=65, K_out=65),
     "points_per_pixel must be in [1, 64], got 65"),
    (dict(points=np.zeros((2, 5, 3)), radius=np.ones((2, 1)), out_batch=(2,), near=2.0, far=1.0),
     "near must be < far"),
]


@pytest.mark.parametrize("target", [FORWARD, GRID_FORWARD])
@pytest.mark.parametrize("kwargs,message", FORWARD_ERRORS)
def test_forward_argument_errors(kwargs, message, target):
    with pytest.raises(Exception, match="jaxnmr rasterize_points: .*" + re.escape(message)):
        _forward_call(target=target, **kwargs)


BACKWARD_ERRORS = [
    (dict(points=np.zeros((2, 5, 3)), index=np.zeros((2, 8, 8, 4)), g_depth=np.zeros((2, 8, 8, 3)),
          g_dist2=np.zeros((2, 8, 8, 3)), out_shape=(2, 5, 3)),
     "index has shape [2, 8, 8, 4]; trailing dimension 2 must be 3"),
    (dict(points=np.zeros((2, 4, 3)), index=np.zeros((2, 8, 8, 3)), g_depth=np.zeros((2, 8, 8, 3)),
          g_dist2=np.zeros((2, 8, 8, 3)), out_shape=(2, 5, 3)),
     "points has shape [2, 4, 3]; trailing dimension 0 must be 5"),
    (dict(points=np.zeros((2, 5, 3)), index=np.zeros((2, 8, 8, 3)), g_depth=np.zeros((2, 8, 8, 3)),
          g_dist2=np.zeros((1, 1, 1, 1)), out_shape=(2, 5, 3)),
     "g_dist2 has shape [1, 1, 1, 1]; trailing dimension 0 must be 8"),
    (dict(points=np.zeros((2, 5, 3)), index=np.zeros((2, 8, 8, 3)), g_depth=np.zeros((2, 8, 8, 3)),
          g_dist2=np.zeros((2, 8, 8, 3)), out_shape=(2, 5, 3), has=(0, 1)),
     "g_depth has shape [2, 8, 8, 3]; trailing dimension 0 must be 1"),
    (dict(points=np.zeros((2, 5, 3)), index=np.zeros((3, 8, 8, 3)), g_depth=np.zeros((2, 8, 8, 3)),
          g_dist2=np.zeros((2, 8, 8, 3)), out_shape=(2, 5, 3)),
     "index batch shape [3, 8, 8, 3] does not broadcast to [2]"),
    (dict(points=np.zeros((2, 5, 3)), index=np.zeros((2, 8, 8, 3)), g_depth=np.zeros((2, 8, 8, 3)),
          g_dist2=np.zeros((2, 8, 8, 3)), out_shape=(2, 5, 2)),
     "output g_points has shape [2, 5, 2], expected [2, 5, 3]"),
    (dict(points=np.zeros((2, 5, 3)), index=np.zeros((2, 8, 8, 3)), g_depth=np.zeros((2, 8, 8, 3)),
          g_dist2=np.zeros((2, 8, 8, 3)), out_shape=(2, 5, 3), K=70),
     "points_per_pixel must be in [1, 64], got 70"),
]


@pytest.mark.parametrize("target", [BACKWARD, GRID_BACKWARD])
@pytest.mark.parametrize("kwargs,message", BACKWARD_ERRORS)
def test_backward_argument_errors(kwargs, message, target):
    with pytest.raises(Exception, match="jaxnmr rasterize_points backward: .*" + re.escape(message)):
        _backward_call(target=target, **kwargs)
