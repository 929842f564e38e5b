"""jaxnmr.geometry: surface sampling, chamfer distance (hand-computed values and gradients), marching cubes."""

import importlib.util
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import meshes
from jaxnmr.geometry import chamfer_distance, marching_cubes, sample_points

HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None
needs_skimage = pytest.mark.skipif(
    not HAVE_SKIMAGE, reason="scikit-image is not installed (optional: pip install scikit-image, or jaxnmr[mc])"
)
KEY = jax.random.PRNGKey(0)
# jitted once per shape: one compilation instead of one per eager op (keeps this file fast)
sample = jax.jit(sample_points, static_argnums=3)
chamfer = jax.jit(chamfer_distance)


def signed_volume(vertices, faces) -> float:
    t = np.asarray(vertices, np.float64)[np.asarray(faces)]
    return float(np.einsum("fi,fi->f", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


# ---------------------------------------------------------------------------------------------------------------
# sample_points
# ---------------------------------------------------------------------------------------------------------------


def test_samples_lie_on_an_icosphere():
    sphere_mesh = meshes.icosphere(3)
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    p = np.asarray(sample(KEY, v, f, 2000))
    assert p.shape == (2000, 3) and p.dtype == np.float32
    r = np.linalg.norm(p, axis=1)
    assert r.max() <= 1.0 + 1e-5 and r.min() > 0.98  # on the faces: inside the unit sphere, close to it
    assert np.abs(p.mean(axis=0)).max() < 0.05  # spread over the whole sphere


def test_samples_lie_on_the_cube_faces():
    box = meshes.cube()
    v, f = box.vertices, box.faces
    p = np.asarray(sample(KEY, v, f, 3000))
    np.testing.assert_allclose(np.abs(p).max(axis=1), 1.0, atol=1e-6)  # on a face plane |x|, |y| or |z| = 1
    side = np.argmax(np.abs(p), axis=1) * 2 + (p[np.arange(len(p)), np.argmax(np.abs(p), axis=1)] > 0)
    counts = np.bincount(side, minlength=6)
    assert counts.min() > 3000 / 6 * 0.8  # six equal areas, about equally often


def test_area_weighting_three_to_one():
    v = np.array([(0, 0, 0), (3, 0, 0), (0, 2, 0), (10, 0, 0), (11, 0, 0), (10, 2, 0)], np.float32)  # areas 3, 1
    f = np.array([(0, 1, 2), (3, 4, 5)], np.int32)
    p = np.asarray(sample(KEY, v, f, 20000))
    big = (p[:, 0] < 5).mean()
    assert big == pytest.approx(0.75, abs=0.02)
    # uniform within each triangle: the mean sample is the centroid
    np.testing.assert_allclose(p[p[:, 0] < 5].mean(0), [1.0, 2 / 3, 0.0], atol=0.03)
    np.testing.assert_allclose(p[p[:, 0] >= 5].mean(0), [31 / 3, 2 / 3, 0.0], atol=0.03)


def test_degenerate_faces_are_never_chosen():
    v = np.array([(0, 0, 0), (1, 0, 0), (0, 1, 0), (5, 5, 5)], np.float32)
    f = np.array([(0, 1, 2), (3, 3, 3), (1, 1, 3)], np.int32)
    p = np.asarray(sample(KEY, v, f, 500))
    np.testing.assert_array_equal(p[:, 2], 0.0)


def test_sampling_gradient_and_batch():
    sphere_mesh = meshes.icosphere(1)
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    P = 256
    g = jax.jit(jax.grad(lambda x: jnp.sum(sample_points(KEY, x, f, P)[:, 0])))(jnp.asarray(v))
    assert np.isfinite(np.asarray(g)).all()
    # every point is a convex combination of its face's vertices: the x-gradients sum to P, the others to 0
    np.testing.assert_allclose(np.asarray(g).sum(0), [P, 0, 0], rtol=1e-5, atol=1e-3)
    g = jax.jit(jax.grad(lambda x: jnp.sum(sample_points(KEY, x, f, P) ** 2)))(jnp.asarray(v))
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0
    batch = jnp.stack([jnp.asarray(v), 2.0 * jnp.asarray(v)])
    p = np.asarray(jax.jit(lambda x: sample_points(KEY, x, f, 100))(batch))
    assert p.shape == (2, 100, 3)
    assert np.linalg.norm(p[1], axis=1).min() > 1.5


def test_sampling_errors():
    box = meshes.cube()
    v, f = box.vertices, box.faces
    with pytest.raises(ValueError, match="num_points must be >= 1"):
        sample_points(KEY, v, f, 0)
    with pytest.raises(TypeError, match="vertices must be a floating-point array"):
        sample_points(KEY, f, f, 10)
    with pytest.raises(ValueError, match="at least one face"):
        sample_points(KEY, v, np.zeros((0, 3), np.int32), 10)


# ---------------------------------------------------------------------------------------------------------------
# chamfer_distance
# ---------------------------------------------------------------------------------------------------------------

A = np.array([(0, 0, 0), (1, 0, 0)], np.float32)
B = np.array([(0, 0, 1)], np.float32)


def test_chamfer_identical_is_zero_and_symmetric():
    x = np.asarray(jax.random.normal(KEY, (50, 3)))
    y = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (70, 3)))
    assert float(chamfer(x, x)) == 0.0
    assert float(chamfer(x, x[::-1])) == 0.0
    assert float(chamfer(x, y)) == pytest.approx(float(chamfer(y, x)), rel=1e-6)


def test_chamfer_known_value():
    # A -> B: squared distances 1 and 2, mean 1.5; B -> A: nearest is (0, 0, 0), 1.
    assert float(chamfer_distance(A, B)) == pytest.approx(2.5)


def test_chamfer_gradient_hand_computed():
    ga, gb = jax.grad(chamfer_distance, argnums=(0, 1))(jnp.asarray(A), jnp.asarray(B))
    # d/da_p: 2 (a_p - b) / P from the first mean, plus 2 (a0 - b) / Q for a0 from the second
    np.testing.assert_allclose(ga, [(0, 0, -3), (1, 0, -1)], atol=1e-6)
    # d/db: sum_p 2 (b - a_p) / P + 2 (b - a0) / Q
    np.testing.assert_allclose(gb, [(-1, 0, 4)], atol=1e-6)


def test_chamfer_batch_broadcasts():
    x = np.asarray(jax.random.normal(KEY, (3, 20, 3)))
    d = chamfer(x, x[0])
    assert d.shape == (3,) and float(d[0]) == 0.0 and float(d[1]) > 0
    np.testing.assert_allclose(jax.jit(jax.vmap(chamfer_distance, (0, None)))(x, x[0]), d, rtol=1e-6)


def test_chamfer_errors():
    with pytest.raises(ValueError, match=r"b must have shape \[\.\.\., Q, 3\]"):
        chamfer_distance(A, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="at least one point"):
        chamfer_distance(A, np.zeros((0, 3), np.float32))


# ---------------------------------------------------------------------------------------------------------------
# marching_cubes
# ---------------------------------------------------------------------------------------------------------------

RADIUS = 0.7


def sphere_sdf(points):
    return jnp.linalg.norm(points, axis=-1) - RADIUS


def test_marching_cubes_without_scikit_image_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes ``import skimage`` raise ImportError
    with pytest.raises(ImportError, match="pip install scikit-image"):
        marching_cubes(sphere_sdf)


@needs_skimage
def test_marching_cubes_sphere_sdf():
    n = 32
    surface_mesh = marching_cubes(sphere_sdf, resolution=n, bounds=(-1.0, 1.0))
    v, f = surface_mesh.vertices, surface_mesh.faces
    assert v.dtype == np.float32 and f.dtype == np.int32 and v.ndim == 2 and f.shape[1] == 3
    spacing = 2.0 / (n - 1)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), RADIUS, atol=spacing)
    volume = signed_volume(v, f)
    assert volume > 0  # counter-clockwise seen from outside
    assert volume == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.03)
    jaxnmr.check_mesh(v, f)


@needs_skimage
def test_marching_cubes_volume_inside_above_and_bounds():
    # an occupancy-like volume (inside = high values), on an anisotropic grid offset from the origin
    lo, hi = np.array([1.0, -2.0, 0.0]), np.array([3.0, 0.0, 4.0])
    centre = (lo + hi) / 2
    axes = [np.linspace(lo[d], hi[d], (17, 21, 33)[d]) for d in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    volume = 1.0 - np.linalg.norm(grid - centre, axis=-1)  # inside the unit ball around the centre: > 0
    surface_mesh = marching_cubes(volume, bounds=(lo, hi), inside="above")
    v, f = surface_mesh.vertices, surface_mesh.faces
    assert signed_volume(v, f) > 0
    np.testing.assert_allclose(np.linalg.norm(v - centre, axis=1), 1.0, atol=0.13)
    # the same surface from the negated volume with inside="below"
    surface_mesh = marching_cubes(-volume, bounds=(lo, hi), inside="below")
    v2, f2 = surface_mesh.vertices, surface_mesh.faces
    assert signed_volume(v2, f2) == pytest.approx(signed_volume(v, f), rel=1e-5)


@needs_skimage
def test_marching_cubes_errors():
    with pytest.raises(ValueError, match="not inside the range"):
        marching_cubes(sphere_sdf, resolution=8, level=5.0)
    with pytest.raises(ValueError, match="bounds must be"):
        marching_cubes(sphere_sdf, bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match="resolution must be"):
        marching_cubes(sphere_sdf, resolution=1)
    with pytest.raises(ValueError, match="inside must be one of"):
        marching_cubes(sphere_sdf, inside="out")


@needs_skimage
def test_marching_cubes_mesh_renders():
    surface_mesh = marching_cubes(sphere_sdf, resolution=24)
    v, f = surface_mesh.vertices, surface_mesh.faces
    renderer = jaxnmr.Renderer(image_size=64, fill_back=False)  # no back copies: the winding must be outward
    silhouette = np.asarray(renderer.render_silhouettes(v, f)) > 0.5
    sphere_mesh = meshes.icosphere(3)
    ref_v, ref_f = sphere_mesh.vertices, sphere_mesh.faces
    reference = np.asarray(renderer.render_silhouettes(ref_v * RADIUS, ref_f)) > 0.5
    iou = (silhouette & reference).sum() / (silhouette | reference).sum()
    assert silhouette.sum() > 0 and iou > 0.95
    image = np.asarray(renderer.render(v, f, np.ones((f.shape[0], 2, 2, 2, 3), np.float32)))
    assert image[32, 32].min() > 0.4  # front faces lit: outward winding seen by the renderer


# --- sample_points: batch dims on any argument, one key per element ---------------------------------------------

_BOX = meshes.cube()
CUBE_V, CUBE_F = np.asarray(_BOX.vertices), np.asarray(_BOX.faces)
CUBE_F = CUBE_F.astype(np.int32)
TKEY = jax.random.key(0)  # a typed key: its batch dims are all of its dims


def _sample_loop(batch, key, vertices, faces, P=9):
    """sample_points on one element at a time (each argument indexed along its own leading dims)."""
    out = []
    for idx in np.ndindex(*batch):
        def pick(x, own):  # x's own leading dims (size 1: broadcast), indexed at this element
            return x[tuple(0 if n == 1 else i for n, i in zip(x.shape[:own], idx[len(batch) - own:]))] if own else x
        out.append(np.asarray(sample(pick(key, key.ndim), pick(vertices, vertices.ndim - 2),
                                     pick(faces, faces.ndim - 2), P)))
    return np.stack(out).reshape(batch + (P, 3))


def _jittered_cubes(batch, seed=0):
    rng = np.random.default_rng(seed)
    return (CUBE_V + rng.uniform(-0.1, 0.1, batch + CUBE_V.shape)).astype(np.float32)


def test_sample_points_batch_on_key_alone_is_one_key_per_element():
    keys = jax.random.split(TKEY, 6).reshape(3, 2)
    v = _jittered_cubes(())
    p = np.asarray(sample(keys, v, CUBE_F, 9))
    assert p.shape == (3, 2, 9, 3)
    np.testing.assert_array_equal(p, _sample_loop((3, 2), keys, v, CUBE_F))
    assert np.abs(p[0, 0] - p[1, 1]).max() > 0.1  # split keys: independent draws
    # raw uint32 keys [..., 2] (jax.random.PRNGKey and its splits) give the same numbers as their typed form
    raw = jax.random.key_data(keys)
    assert raw.shape == (3, 2, 2)
    np.testing.assert_array_equal(np.asarray(sample(raw, v, CUBE_F, 9)), p)


def test_sample_points_batch_on_vertices_alone_shares_the_key():
    v = _jittered_cubes((3, 2))
    p = np.asarray(sample(TKEY, v, CUBE_F, 9))
    assert p.shape == (3, 2, 9, 3)
    np.testing.assert_allclose(p, _sample_loop((3, 2), TKEY, v, CUBE_F), rtol=1e-6, atol=1e-6)
    # one key for all: the same faces and barycentric coordinates, so scaled vertices give scaled points
    scaled = np.asarray(sample(TKEY, np.stack([v[0, 0], 3.0 * v[0, 0]]), CUBE_F, 9))
    np.testing.assert_allclose(scaled[1], 3.0 * scaled[0], rtol=1e-5, atol=1e-6)


def test_sample_points_batch_on_faces_alone_and_broadcast():
    rng = np.random.default_rng(1)
    f = np.stack([CUBE_F[rng.permutation(12)] for _ in range(6)]).reshape(3, 2, 12, 3)
    v = _jittered_cubes(())
    p = np.asarray(sample(TKEY, v, f, 9))
    assert p.shape == (3, 2, 9, 3)
    np.testing.assert_allclose(p, _sample_loop((3, 2), TKEY, v, f), rtol=1e-6, atol=1e-6)
    # keys [3, 1], vertices [2, 8, 3], faces [1, 12, 3] -> [3, 2]
    keys = jax.random.split(TKEY, 3).reshape(3, 1)
    vb = _jittered_cubes((2,), seed=2)
    p = np.asarray(sample(keys, vb, f[0, :1], 9))
    assert p.shape == (3, 2, 9, 3)
    np.testing.assert_allclose(p, _sample_loop((3, 2), keys, vb, f[0, :1]), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"sample_points: the leading \(batch\) dims .* key \(3,\), "
                                         r"vertices \(4,\), faces \(\)"):
        sample_points(keys[:, 0], _jittered_cubes((4,)), CUBE_F, 9)


def test_sample_points_jit_vmap_and_grad_match_the_loop():
    keys = jax.random.split(TKEY, 3)
    v = _jittered_cubes((3,), seed=3)
    eager = np.asarray(sample_points(keys, v, CUBE_F, 9))
    np.testing.assert_allclose(np.asarray(sample(keys, v, CUBE_F, 9)), eager, rtol=1e-6, atol=1e-6)
    vmapped = jax.jit(jax.vmap(lambda k, x: sample_points(k, x, CUBE_F, 9)))(keys, v)
    np.testing.assert_allclose(np.asarray(vmapped), eager, rtol=1e-6, atol=1e-6)
    by_key = jax.vmap(lambda k: sample_points(k, v[0], CUBE_F, 9))(keys)
    np.testing.assert_allclose(np.asarray(by_key), np.asarray(sample(keys, v[0], CUBE_F, 9)), rtol=1e-6, atol=1e-6)
    w = np.random.default_rng(4).normal(size=(3, 9, 3)).astype(np.float32)
    loss = lambda x, k, w: jnp.sum(sample_points(k, x, CUBE_F, 9) * w)
    g = np.asarray(jax.jit(jax.grad(loss))(v, keys, w))
    per_element = np.asarray(jax.jit(jax.vmap(jax.grad(loss)))(v, keys, w))
    assert np.abs(g).max() > 0
    np.testing.assert_allclose(g, per_element, rtol=1e-5, atol=1e-6)
