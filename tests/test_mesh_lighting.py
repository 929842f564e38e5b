import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import meshes
from jaxnmr.mesh import face_normals, fill_back


def test_vertices_to_faces_gathers_and_broadcasts():
    v = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    f = np.array([[0, 1, 2], [3, 2, 1]], np.int32)
    out = np.asarray(jaxnmr.vertices_to_faces(v, f))
    assert out.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(out[1, 1], v[1, [3, 2, 1]])
    fb = np.stack([f, f[:, ::-1]])
    np.testing.assert_array_equal(np.asarray(jaxnmr.vertices_to_faces(v[0], fb))[1, 0], v[0, [2, 1, 0]])


def test_vertices_to_faces_gradient_scatters_back():
    v = jnp.ones((4, 3))
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    g = jax.grad(lambda v: jaxnmr.vertices_to_faces(v, f).sum())(v)
    np.testing.assert_array_equal(np.asarray(g)[:, 0], [2, 1, 2, 1])


def test_out_of_range_face_index_raises_eagerly_and_clamps_under_jit():
    v = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"faces\[1\] = \[0, 1, 3\].*3 vertices"):
        jaxnmr.vertices_to_faces(v, np.array([[0, 1, 2], [0, 1, 3]], np.int32))
    out = jax.jit(jaxnmr.vertices_to_faces)(np.eye(3, dtype=np.float32), np.array([[0, 1, 7]], np.int32))
    np.testing.assert_array_equal(np.asarray(out)[0, 2], [0, 0, 1])


def test_fill_back_reverses_faces_and_swaps_texture_axes():
    f = np.array([[0, 1, 2]], np.int32)
    t = np.random.default_rng(0).uniform(size=(1, 3, 3, 3, 3)).astype(np.float32)
    f2, t2 = fill_back(f, t)
    np.testing.assert_array_equal(np.asarray(f2), [[0, 1, 2], [2, 1, 0]])
    i, j, k = 0, 1, 2
    np.testing.assert_array_equal(np.asarray(t2)[1, i, j, k], t[0, k, j, i])


def test_face_normals_orientation_and_degenerate():
    faces = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], np.float32)
    n = np.asarray(face_normals(faces))
    np.testing.assert_allclose(n[0], [0, 0, 1], atol=1e-4)  # (V1 - V0) x (V2 - V0): counter-clockwise seen from +z
    np.testing.assert_array_equal(n[1], 0)
    g = jax.grad(lambda x: face_normals(x).sum())(jnp.asarray(faces))
    assert np.all(np.isfinite(g))


def test_lighting_values_and_shapes():
    faces = np.random.default_rng(0).normal(size=(64, 16, 3, 3)).astype(np.float32)  # the original's test sizes
    textures = np.random.default_rng(1).normal(size=(64, 16, 8, 8, 8, 3)).astype(np.float32)
    lit = jaxnmr.lighting(faces, textures)
    assert lit.shape == textures.shape
    up = np.array([[[1, 0, 0], [0, 0, 1], [0, 0, 0]]], np.float32)  # (V0 - V1) x (V2 - V1) = (0, 1, 0)
    one = np.ones((1, 2, 2, 2, 3), np.float32)
    np.testing.assert_allclose(np.asarray(jaxnmr.lighting(up, one)), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(jaxnmr.lighting(up[:, ::-1], one)), 0.5, atol=1e-6)
    coloured = jaxnmr.lighting(up, one, 0.2, 0.3, (1, 0, 0), (0, 1, 0))
    np.testing.assert_allclose(np.asarray(coloured)[0, 0, 0, 0], [0.2, 0.3, 0.0], atol=1e-4)


def test_lighting_rejects_mismatched_textures():
    with pytest.raises(ValueError, match="one cube per face"):
        jaxnmr.lighting(np.zeros((5, 3, 3), np.float32), np.zeros((4, 2, 2, 2, 3), np.float32))


# --- batch dims: every array argument's leading dims broadcast, equal to a loop over the batch -------------------

_BOX = meshes.cube()
CUBE_V, CUBE_F = np.asarray(_BOX.vertices), np.asarray(_BOX.faces)
CUBE_F = CUBE_F.astype(np.int32)


def _loop(fn, batch, *args):
    """``fn`` on one element at a time: an argument given as ``(x, True)`` is indexed, ``x`` alone is shared.
    Returns the per-element results, stacked into ``batch + shape`` (pytrees and dicts stacked leaf by leaf)."""
    results = [fn(*(x[idx] if batched else x for x, batched in args)) for idx in np.ndindex(*batch)]
    stack = lambda *leaves: np.stack([np.asarray(l) for l in leaves]).reshape(batch + np.shape(leaves[0]))
    return jax.tree.map(stack, *results)


def _assert_tree_equal(actual, expected):
    a, e = jax.tree.leaves(actual), jax.tree.leaves(expected)
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for x, y in zip(a, e):
        assert np.shape(x) == np.shape(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _permuted_faces(batch, seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(batch))
    return np.stack([CUBE_F[rng.permutation(len(CUBE_F))] for _ in range(n)]).reshape(batch + CUBE_F.shape)


def test_fill_back_batch_on_faces_alone_reaches_both_outputs():
    f = _permuted_faces((3, 2))
    t = np.random.default_rng(1).uniform(size=(len(CUBE_F), 2, 2, 2, 3)).astype(np.float32)
    out = fill_back(f, t)
    assert out[0].shape == (3, 2, 24, 3) and out[1].shape == (3, 2, 24, 2, 2, 2, 3)
    _assert_tree_equal(out, _loop(fill_back, (3, 2), (f, True), (t, False)))


def test_fill_back_batch_on_textures_alone_reaches_both_outputs():
    f = CUBE_F[::-1].copy()
    t = np.random.default_rng(2).uniform(size=(3, 2, len(CUBE_F), 2, 2, 2, 3)).astype(np.float32)
    out = fill_back(f, t)
    assert out[0].shape == (3, 2, 24, 3) and out[1].shape == (3, 2, 24, 2, 2, 2, 3)
    _assert_tree_equal(out, _loop(fill_back, (3, 2), (f, False), (t, True)))
    # broadcasting: faces [2, 1, F, 3] against textures [3, F, ...] -> [2, 3]
    f2 = _permuted_faces((2, 1), seed=3)
    out = fill_back(f2, t[:, 0])
    assert out[0].shape == (2, 3, 24, 3) and out[1].shape == (2, 3, 24, 2, 2, 2, 3)
    np.testing.assert_array_equal(out[0][1, 2], fill_back(f2[1, 0]))
    np.testing.assert_array_equal(out[1][1, 2], fill_back(f2[1, 0], t[2, 0])[1])


def test_fill_back_jit_vmap_and_errors():
    f = _permuted_faces((3,))
    t = np.random.default_rng(4).uniform(size=(len(CUBE_F), 2, 2, 2, 3)).astype(np.float32)
    _assert_tree_equal(jax.jit(fill_back)(f, t), fill_back(f, t))
    _assert_tree_equal(jax.vmap(fill_back, (0, None))(f, t), fill_back(f, t))
    _assert_tree_equal(jax.vmap(fill_back, (None, 0))(CUBE_F, np.stack([t] * 3)), fill_back(CUBE_F, np.stack([t] * 3)))
    assert fill_back(f).shape == (3, 24, 3)  # without textures: the faces alone, with their own batch
    with pytest.raises(ValueError, match=r"fill_back: the leading \(batch\) dims .* faces \(3,\), textures \(2,\)"):
        fill_back(f, np.stack([t] * 2))
    with pytest.raises(ValueError, match="fill_back: textures must have one cube per face"):
        fill_back(f, t[:5])


def _check_inputs(batch, seed=0):
    """Cube vertices [*batch, 8, 3] with a different number of degenerate faces / unused vertices per element."""
    rng = np.random.default_rng(seed)
    v = np.broadcast_to(CUBE_V, batch + CUBE_V.shape).astype(np.float32).copy()
    v += rng.uniform(-0.05, 0.05, v.shape).astype(np.float32)
    for i, idx in enumerate(np.ndindex(*batch)):
        v[idx + (1,)] = v[idx + (0,)] if i % 2 else v[idx + (1,)]  # merged vertices: degenerate faces in some
    return v


def test_check_mesh_batch_on_vertices_alone_counts_per_element():
    v = _check_inputs((3, 2))
    counts = jaxnmr.check_mesh(v, CUBE_F)
    assert set(counts) == {"num_vertices", "num_faces", "degenerate_faces", "unused_vertices"}
    assert all(np.shape(c) == (3, 2) for c in counts.values())
    _assert_tree_equal(counts, _loop(jaxnmr.check_mesh, (3, 2), (v, True), (CUBE_F, False)))
    assert counts["degenerate_faces"].min() == 0 and counts["degenerate_faces"].max() > 0
    single = jaxnmr.check_mesh(v[0, 0], CUBE_F)  # unbatched: Python ints, as before
    assert all(type(c) is int for c in single.values())


def test_check_mesh_batch_on_faces_alone_counts_per_element():
    f = _permuted_faces((3, 2))
    f[0, 1, 3] = [0, 1, 1]  # a degenerate face and, in a few elements, unused vertices
    f[2, 0, :] = [0, 1, 2]  # 5 unused vertices
    v = _check_inputs(())
    counts = jaxnmr.check_mesh(v, f)
    _assert_tree_equal(counts, _loop(jaxnmr.check_mesh, (3, 2), (v, False), (f, True)))
    assert counts["unused_vertices"][2, 0] == 5 and counts["degenerate_faces"][0, 1] == 1
    # broadcast: vertices [3, 1] x faces [2] -> [3, 2]
    vb = _check_inputs((3, 1), seed=5)
    expected = _loop(jaxnmr.check_mesh, (3, 2), (np.broadcast_to(vb, (3, 2, 8, 3)), True),
                     (np.broadcast_to(f[0], (3, 2, 12, 3)), True))
    _assert_tree_equal(jaxnmr.check_mesh(vb, f[0]), expected)


def test_check_mesh_batched_errors_name_the_element_and_stay_concrete_only():
    v, f = _check_inputs((3, 2)), _permuted_faces((3, 2))
    bad = f.copy()
    bad[1, 0, 5, 2] = 8
    with pytest.raises(ValueError, match=r"check_mesh: faces\[1, 0, 5\] = \[.*, 8\] indexes outside the 8"):
        jaxnmr.check_mesh(v, bad)
    nan = v.copy()
    nan[2, 1, 4, 0] = np.nan
    with pytest.raises(ValueError, match=r"check_mesh: vertices\[2, 1, 4\] = .* is not finite"):
        jaxnmr.check_mesh(nan, f)
    with pytest.raises(ValueError, match=r"check_mesh: the leading \(batch\) dims"):
        jaxnmr.check_mesh(v, f[:2])
    with pytest.raises(TypeError, match="check_mesh: needs concrete arrays"):
        jax.jit(jaxnmr.check_mesh)(v, f)
    with pytest.raises(TypeError, match="check_mesh: needs concrete arrays"):
        jax.vmap(jaxnmr.check_mesh)(v[0], f[0])
