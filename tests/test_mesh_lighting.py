import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
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


def test_face_normals_nmr_orientation_and_degenerate():
    faces = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], np.float32)
    n = np.asarray(face_normals(faces))
    np.testing.assert_allclose(n[0], [0, 0, -1], atol=1e-4)  # (V0 - V1) x (V2 - V1)
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
