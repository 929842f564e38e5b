import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr

SQ = np.sqrt(2) / 2


@pytest.mark.parametrize(
    "eye, expected",
    [((1, 0, 1), (-SQ, 0, SQ)), ((0, 0, -10), (1, 0, 10)), ((-1, 1, 0), (0, SQ, 3 * SQ))],
)
def test_look_at_reference_values(eye, expected):
    """NMR_SPEC §2.1's table, at the original test's tolerance."""
    out = jaxnmr.look_at(np.array([[1.0, 0.0, 0.0]], np.float32), np.array(eye, np.float32))
    np.testing.assert_allclose(np.asarray(out)[0], expected, atol=1e-5, rtol=1e-4)


def test_look_at_batched_eyes_broadcast_over_vertices():
    eyes = np.array([[1, 0, 1], [0, 0, -10], [-1, 1, 0]], np.float32)
    out = jaxnmr.look_at(np.array([[1.0, 0.0, 0.0]], np.float32), eyes)
    assert out.shape == (3, 1, 3)
    np.testing.assert_allclose(np.asarray(out)[:, 0], [(-SQ, 0, SQ), (1, 0, 10), (0, SQ, 3 * SQ)], atol=1e-5, rtol=1e-4)


def test_look_matches_look_at_toward_the_origin():
    v = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    eye = np.array([0.3, 0.4, -3.0], np.float32)
    np.testing.assert_allclose(jaxnmr.look(v, eye, -eye), jaxnmr.look_at(v, eye), atol=1e-6)


def test_eye_parallel_to_up_falls_back_to_another_up_vector():
    """Departure from NMR (whose basis degenerates to an empty image): looking straight down renders, with
    image up = world +z, and stays finite and differentiable."""
    v = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    out = np.asarray(jaxnmr.look_at(v, np.array([0.0, 3.0, 0.0], np.float32)))
    np.testing.assert_allclose(out, [[1, 0, 3], [0, 1, 3]], atol=1e-4)  # +x right, +z up, depth 3
    g = jax.grad(lambda e: jaxnmr.look_at(v, e).sum())(jnp.array([0.0, 3.0, 0.0]))
    assert np.all(np.isfinite(g))
    from jaxnmr import meshes

    tv, tf = meshes.teapot(resolution=4)
    top = jaxnmr.Renderer(image_size=32, eye=jaxnmr.get_points_from_angles(2.732, 90.0, 0.0))
    assert float(top.render_silhouettes(tv, tf).sum()) > 50
    # just off the pole the ordinary basis is used and agrees with the fallback up to the roll it picks
    near_pole = jaxnmr.get_points_from_angles(2.732, 89.0, 0.0)
    assert float(top.replace(eye=near_pole).render_silhouettes(tv, tf).sum()) > 50


def test_perspective_reference_value():
    out = jaxnmr.perspective(np.array([[1.0, 2.0, 10.0]], np.float32))
    np.testing.assert_allclose(np.asarray(out)[0], [np.sqrt(3) / 10, 2 * np.sqrt(3) / 10, 10], atol=1e-5, rtol=1e-4)


def test_get_points_from_angles():
    np.testing.assert_allclose(jaxnmr.get_points_from_angles(2.0, 0.0, 0.0), [0, 0, -2], atol=1e-6)
    np.testing.assert_allclose(jaxnmr.get_points_from_angles(2.0, 0.0, 90.0), [2, 0, 0], atol=1e-6)
    np.testing.assert_allclose(jaxnmr.get_points_from_angles(2.0, 90.0, 0.0), [0, 2, 0], atol=1e-6)
    np.testing.assert_allclose(jaxnmr.get_points_from_angles(2.0, 0.0, np.pi / 2, degrees=False), [2, 0, 0], atol=1e-6)
    batch = jaxnmr.get_points_from_angles(2.732, 30.0, np.arange(0, 360, 90.0))
    assert batch.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=-1), 2.732, rtol=1e-6)


def test_camera_functions_are_differentiable_in_the_eye():
    v = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    f = lambda e: jnp.sum(jaxnmr.perspective(jaxnmr.look_at(v, e)) ** 2)
    g = jax.grad(f)(jnp.array([0.5, 0.5, -3.0]))
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: jaxnmr.look_at(np.zeros((4, 2), np.float32), (0, 0, -1)), ValueError, r"vertices must have shape \[\.\.\., N, 3\]"),
        (lambda: jaxnmr.look_at(np.zeros((4, 3), np.int32), (0, 0, -1)), TypeError, "floating-point"),
        (lambda: jaxnmr.look_at(np.zeros((4, 3), np.float32), (0, -1)), ValueError, r"eye must have shape \[\.\.\., 3\]"),
        (lambda: jaxnmr.perspective(np.zeros((3,), np.float32)), ValueError, "perspective: vertices"),
    ],
)
def test_bad_inputs_name_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
