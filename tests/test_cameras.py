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
    """The table of NMR's look_at test (docs/conventions.md, "LookAt"), at the original test's tolerance."""
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

    pot = meshes.teapot(resolution=4)
    tv, tf = pot.vertices, pot.faces
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


# -- batch dims: every argument's reach every output --------------------------------------------------------------
#
# For each camera function and each of its array arguments in turn, batch shape (3, 2) on that argument alone (the
# others unbatched) must give outputs with leading dims (3, 2) equal to a Python loop over the batch.

BATCH = (3, 2)


def _f32(x):
    return np.asarray(x, np.float32)


def _rot(rng):
    """A rotation near the identity (points at depth 2-4 stay in front of the camera)."""
    a = rng.uniform(-0.3, 0.3, 3)
    q, r = np.linalg.qr(np.eye(3) + np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]]))
    return _f32(q * np.sign(np.diag(r)))


def _eye(rng):
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(-1.0, 1.0)
    return _f32(rng.uniform(2.0, 3.0) * np.array([np.cos(el) * np.sin(az), np.sin(el), -np.cos(el) * np.cos(az)]))


def _intrinsics(rng):
    f = rng.uniform(400, 600)
    return _f32([[f, rng.uniform(-1, 1), rng.uniform(300, 340)], [0, f * rng.uniform(0.9, 1.1), rng.uniform(300, 340)],
                 [0, 0, 1]])


POINTS_ = lambda rng: _f32(rng.uniform(-1, 1, (4, 3)))
IN_FRONT = lambda rng: _f32(np.concatenate([rng.uniform(-1, 1, (4, 2)), rng.uniform(2, 4, (4, 1))], -1))
UP = lambda rng: _f32(np.array([0.0, 1.0, 0.0]) + rng.uniform(-0.2, 0.2, 3))
SMALL_VEC = lambda rng: _f32(rng.uniform(-0.2, 0.2, 3))
scalar = lambda lo, hi: (lambda rng: _f32(rng.uniform(lo, hi)))
dist_n = lambda n: (lambda rng: _f32(rng.uniform(-0.05, 0.05, n)))

# name -> (function taking the arguments by keyword, {argument: maker of one unbatched valid value})
BATCH_CASES = {
    "get_points_from_angles": (jaxnmr.get_points_from_angles, dict(
        distance=scalar(2, 3), elevation=scalar(-60, 60), azimuth=scalar(0, 360))),
    "look_at": (jaxnmr.look_at, dict(vertices=POINTS_, eye=_eye, at=SMALL_VEC, up=UP)),
    "look": (jaxnmr.look, dict(vertices=POINTS_, eye=_eye, direction=lambda rng: _f32(rng.uniform(0.5, 1, 3)), up=UP)),
    "perspective": (jaxnmr.perspective, dict(vertices=IN_FRONT, angle=scalar(20, 40))),
    "projection": (jaxnmr.projection, dict(
        vertices=IN_FRONT, K=_intrinsics, R=_rot, t=SMALL_VEC, dist_coeffs=dist_n(5), orig_size=scalar(600, 700))),
    "projection(4 coeffs, t row [1, 3])": (jaxnmr.projection, dict(
        vertices=IN_FRONT, K=_intrinsics, R=_rot, t=lambda rng: SMALL_VEC(rng)[None], dist_coeffs=dist_n(4))),
    "projection(8 coeffs, tvec column [3, 1])": (jaxnmr.projection, dict(
        vertices=IN_FRONT, K=_intrinsics, R=_rot, t=lambda rng: SMALL_VEC(rng)[:, None], dist_coeffs=dist_n(8))),
    "projection(dist_coeffs column [5, 1])": (jaxnmr.projection, dict(
        vertices=IN_FRONT, K=_intrinsics, R=_rot, t=SMALL_VEC, dist_coeffs=lambda rng: dist_n(5)(rng)[:, None])),
    "rodrigues": (jaxnmr.rodrigues, dict(rvec=lambda rng: _f32(rng.uniform(-2, 2, 3)))),
    "rodrigues(column [3, 1])": (jaxnmr.rodrigues, dict(rvec=lambda rng: _f32(rng.uniform(-2, 2, (3, 1))))),
    "look_at_view_transform": (jaxnmr.look_at_view_transform, dict(
        distance=scalar(2, 3), elevation=scalar(-60, 60), azimuth=scalar(0, 360), at=SMALL_VEC, up=UP)),
    "look_at_view_transform(eye=)": (jaxnmr.look_at_view_transform, dict(eye=_eye, at=SMALL_VEC, up=UP)),
    "fov_perspective": (jaxnmr.fov_perspective, dict(
        vertices=IN_FRONT, R=_rot, t=SMALL_VEC, fov=scalar(40, 80), aspect_ratio=scalar(0.8, 1.2))),
    "fov_perspective(t row [1, 3])": (jaxnmr.fov_perspective, dict(
        vertices=IN_FRONT, R=_rot, t=lambda rng: SMALL_VEC(rng)[None])),
    "orthographic": (jaxnmr.orthographic, dict(
        vertices=IN_FRONT, R=_rot, t=SMALL_VEC, scale=scalar(0.5, 2), min_x=scalar(-1.5, -1), max_x=scalar(1, 1.5),
        min_y=scalar(-1.5, -1), max_y=scalar(1, 1.5))),
}
BATCH_CELLS = [pytest.param(case, arg, id=f"{case}-{arg}") for case, (_, makers) in BATCH_CASES.items()
               for arg in makers]


def _outputs(out):
    return [np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("case, arg", BATCH_CELLS)
def test_batch_dims_of_each_argument_reach_every_output(case, arg):
    fn, makers = BATCH_CASES[case]
    rng = np.random.default_rng(11)
    kwargs = {name: make(rng) for name, make in makers.items()}
    elements = [makers[arg](rng) for _ in range(int(np.prod(BATCH)))]
    batched = dict(kwargs, **{arg: np.stack(elements).reshape(BATCH + elements[0].shape)})
    out = _outputs(fn(**batched))
    loop = [_outputs(fn(**dict(kwargs, **{arg: batched[arg][idx]}))) for idx in np.ndindex(*BATCH)]
    assert len(out) == len(loop[0])
    for k, o in enumerate(out):
        expected = np.stack([element[k] for element in loop]).reshape(BATCH + loop[0][k].shape)
        assert o.shape == expected.shape, f"output {k}: shape {o.shape}, expected {expected.shape}"
        np.testing.assert_allclose(o, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_batch_dims_of_all_arguments_broadcast_together():
    """Batch shapes on every argument at once, with size-1 and missing dims, against the loop over the broadcast."""
    rng = np.random.default_rng(12)
    layouts = {
        "look_at": dict(vertices=(2, 1), eye=(3,), at=(1, 1), up=(2, 3)),
        "projection": dict(vertices=(2, 1), K=(1, 3), R=(), t=(3,), dist_coeffs=(2, 1), orig_size=(1,)),
        "fov_perspective": dict(vertices=(), R=(2, 1), t=(3,), fov=(1, 3), aspect_ratio=(2, 3)),
        "look_at_view_transform": dict(distance=(2, 1), elevation=(), azimuth=(3,), at=(1, 1), up=(2, 3)),
    }
    for case, shapes in layouts.items():
        fn, makers = BATCH_CASES[case]
        full = np.broadcast_shapes(*shapes.values())
        args = {}
        for name, shape in shapes.items():
            elements = [makers[name](rng) for _ in range(int(np.prod(shape)))]
            args[name] = np.stack(elements).reshape(shape + elements[0].shape)
        out = _outputs(fn(**args))
        for k, o in enumerate(out):
            assert o.shape[: len(full)] == full, f"{case}: output {k} has shape {o.shape}, batch {full}"
        for idx in np.ndindex(*full):
            one = {name: args[name][tuple(0 if s == 1 else i for s, i in zip(shape, idx[len(full) - len(shape):]))]
                   for name, shape in shapes.items()}
            for o, e in zip(out, _outputs(fn(**one))):
                np.testing.assert_allclose(o[idx], e, rtol=1e-5, atol=1e-5 * np.abs(e).max(), err_msg=f"{case} {idx}")


def test_up_batched_alone_reaches_look_at_and_look():
    """The reported failure: up [3, 2, 3] with everything else unbatched could not be stacked."""
    v = np.random.default_rng(13).uniform(-1, 1, (4, 3)).astype(np.float32)
    ups = np.random.default_rng(14).uniform(-0.2, 0.2, (3, 2, 3)).astype(np.float32) + np.float32([0, 1, 0])
    eye = np.float32([0.5, 0.5, -3.0])
    for fn, third in ((jaxnmr.look_at, np.zeros(3, np.float32)), (jaxnmr.look, -eye)):
        out = np.asarray(fn(v, eye, third, ups))
        assert out.shape == (3, 2, 4, 3)
        np.testing.assert_allclose(out[2, 1], fn(v, eye, third, ups[2, 1]), atol=1e-6)
        assert np.abs(out[0, 0] - out[2, 1]).max() > 1e-3  # the up vectors really differ per element


def test_batch_dims_that_do_not_broadcast_name_every_argument():
    v = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"look_at: the leading \(batch\) dims .* vertices \(\), eye \(2,\), "
                                         r"at \(\), up \(3,\)"):
        jaxnmr.look_at(v, np.ones((2, 3), np.float32), (0, 0, 0), np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"perspective: the leading \(batch\) dims .* vertices \(2,\), angle \(3,\)"):
        jaxnmr.perspective(np.ones((2, 4, 3), np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"get_points_from_angles: .* distance \(2,\), elevation \(\), azimuth \(3,\)"):
        jaxnmr.get_points_from_angles(np.ones(2), 0.0, np.ones(3))


def test_degrees_must_be_a_static_bool():
    """`if degrees:` on an array would be a Python bool of a (possibly traced) value: a clear TypeError instead."""
    with pytest.raises(TypeError, match=r"get_points_from_angles: degrees must be a Python bool"):
        jaxnmr.get_points_from_angles(2.0, 0.0, 0.0, np.float32(1.0))
    with pytest.raises(TypeError, match=r"degrees must be a Python bool"):
        jax.jit(lambda d: jaxnmr.get_points_from_angles(2.0, 0.0, 0.0, d))(True)
    assert np.allclose(jaxnmr.get_points_from_angles(2.0, 0.0, 90.0, np.bool_(True)), [2, 0, 0], atol=1e-6)
