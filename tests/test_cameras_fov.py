"""PyTorch3D-convention cameras: look_at_view_transform, fov_perspective, orthographic and the Renderer's "fov" and
"orthographic" camera modes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from _helpers import rodrigues
from jaxnmr import meshes

RNG = np.random.default_rng(7)
POINTS = RNG.uniform(-0.8, 0.8, size=(6, 3)).astype(np.float32)


ROT = rodrigues([0.3, -0.5, 0.2]).astype(np.float32)
TRANS = np.array([0.2, -0.1, 3.5], np.float32)


def numpy_look_at_view(distance, elevation, azimuth, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)):
    """R, t by hand (float64): camera on a sphere (+z at azimuth 0), axes as columns, t = -C R."""
    el, az = np.radians(elevation), np.radians(azimuth)
    centre = np.asarray(at) + distance * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    z = np.asarray(at) - centre
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)
    return R, -centre @ R, centre


# -- pure functions -------------------------------------------------------------------------------------------


def test_look_at_view_transform_front_view_is_the_known_matrix():
    """A camera on +z looking at the origin: view +x is world -x (left), R = diag(-1, 1, -1), t = (0, 0, d)."""
    R, t = jaxnmr.look_at_view_transform(2.5, 0.0, 0.0)
    np.testing.assert_allclose(R, np.diag([-1.0, 1.0, -1.0]), atol=1e-7)
    np.testing.assert_allclose(t, [0.0, 0.0, 2.5], atol=1e-7)


@pytest.mark.parametrize("distance, elevation, azimuth", [(3.0, 20.0, 40.0), (2.0, -35.0, 200.0), (4.5, 70.0, -120.0)])
def test_look_at_view_transform_matches_hand_computation(distance, elevation, azimuth):
    R, t = jaxnmr.look_at_view_transform(distance, elevation, azimuth)
    R_ref, t_ref, centre = numpy_look_at_view(distance, elevation, azimuth)
    np.testing.assert_allclose(R, R_ref, atol=1e-6)
    np.testing.assert_allclose(t, t_ref, atol=1e-5)
    R = np.asarray(R, np.float64)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-6)
    assert abs(np.linalg.det(R) - 1.0) < 1e-6
    # the camera centre maps to the view origin and the look-at point lies straight ahead at depth `distance`
    np.testing.assert_allclose(centre @ R + np.asarray(t), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(t), [0.0, 0.0, distance], atol=1e-5)


def test_look_at_view_transform_at_eye_radians_and_batches():
    at = np.array([0.3, -0.2, 0.5], np.float32)
    R, t = jaxnmr.look_at_view_transform(3.0, np.radians(25.0), np.radians(60.0), degrees=False, at=at)
    R_ref, t_ref, centre = numpy_look_at_view(3.0, 25.0, 60.0, at=at)
    np.testing.assert_allclose(R, R_ref, atol=1e-6)
    np.testing.assert_allclose(t, t_ref, atol=1e-5)
    R_eye, t_eye = jaxnmr.look_at_view_transform(eye=centre.astype(np.float32), at=at)
    np.testing.assert_allclose(R_eye, R_ref, atol=1e-6)
    np.testing.assert_allclose(t_eye, t_ref, atol=1e-5)
    Rb, Tb = jaxnmr.look_at_view_transform(3.0, 10.0, np.array([0.0, 90.0, 180.0]))
    assert Rb.shape == (3, 3, 3) and Tb.shape == (3, 3)
    np.testing.assert_allclose(Rb[1], numpy_look_at_view(3.0, 10.0, 90.0)[0], atol=1e-6)


def test_fov_perspective_hand_computed():
    # a view-space point (1, 2, 10), fov 60: x -> -1 / (10 tan 30) (view +x is image-left), y -> 2 / (10 tan 30)
    out = np.asarray(jaxnmr.fov_perspective(np.array([[1.0, 2.0, 10.0]], np.float32)))
    np.testing.assert_allclose(out[0], [-math.sqrt(3) / 10, 2 * math.sqrt(3) / 10, 10.0], rtol=1e-6)
    # a general camera, fov 50 and a non-square pixel aspect ratio, against numpy in float64
    view = POINTS.astype(np.float64) @ ROT + TRANS
    half = math.tan(math.radians(50.0) / 2)
    ref = np.stack([-view[:, 0] / (view[:, 2] * half * 1.5), view[:, 1] / (view[:, 2] * half), view[:, 2]], -1)
    np.testing.assert_allclose(jaxnmr.fov_perspective(POINTS, ROT, TRANS, 50.0, aspect_ratio=1.5), ref, rtol=1e-5,
                               atol=1e-6)
    rad = jaxnmr.fov_perspective(POINTS, ROT, TRANS, math.radians(50.0), degrees=False, aspect_ratio=1.5)
    np.testing.assert_allclose(rad, ref, rtol=1e-5, atol=1e-6)
    # NMR's [..., 1, 3] translation form
    np.testing.assert_allclose(jaxnmr.fov_perspective(POINTS, ROT, TRANS[None], 50.0, aspect_ratio=1.5), ref,
                               rtol=1e-5, atol=1e-6)


def test_orthographic_hand_computed():
    # view (0.5, -0.25, 4) with scale 2: x -> -1 (the left border), y -> -0.5, depth kept
    out = np.asarray(jaxnmr.orthographic(np.array([[0.5, -0.25, 4.0]], np.float32), scale=2.0))
    np.testing.assert_allclose(out[0], [-1.0, -0.5, 4.0], atol=1e-7)
    view = POINTS.astype(np.float64) @ ROT + TRANS
    s, (x0, x1, y0, y1) = 1.3, (-0.5, 1.5, -2.0, 0.5)
    ref = np.stack([-(2 * s * view[:, 0] - (x1 + x0)) / (x1 - x0), (2 * s * view[:, 1] - (y1 + y0)) / (y1 - y0),
                    view[:, 2]], -1)
    out = jaxnmr.orthographic(POINTS, ROT, TRANS, scale=s, min_x=x0, max_x=x1, min_y=y0, max_y=y1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_agrees_with_nmr_look_at_up_to_the_x_flip():
    """Same view axes as jaxnmr.look_at (to NMR's 1e-5 normalisation); the NDC x is mirrored."""
    distance, elevation, azimuth = 3.0, 25.0, 130.0
    R, t = jaxnmr.look_at_view_transform(distance, elevation, azimuth)
    centre = -np.asarray(R, np.float64) @ np.asarray(t, np.float64)
    # NMR's get_points_from_angles mirrors z: its azimuth a is look_at_view_transform's 180 - a
    np.testing.assert_allclose(centre, jaxnmr.get_points_from_angles(distance, elevation, 180.0 - azimuth), atol=1e-5)
    view = POINTS @ np.asarray(R) + np.asarray(t)
    np.testing.assert_allclose(view, jaxnmr.look_at(POINTS, centre.astype(np.float32)), atol=1e-4)
    nmr = np.asarray(jaxnmr.perspective(jaxnmr.look_at(POINTS, centre.astype(np.float32)), 30.0))
    fov = np.asarray(jaxnmr.fov_perspective(POINTS, R, t, 60.0))
    np.testing.assert_allclose(fov, nmr * [-1.0, 1.0, 1.0], atol=1e-4)
    assert np.abs(fov[:, 0] - nmr[:, 0]).max() > 0.1  # really mirrored, not equal


def test_agrees_with_the_equivalent_opencv_projection():
    """R_cv = diag(-1, -1, 1) R^T and t_cv = diag(-1, -1, 1) t with f = (S / 2) / tan(fov / 2), c = S / 2."""
    S, fov = 512.0, 50.0
    f = S / 2 / math.tan(math.radians(fov / 2))
    K = np.array([[f, 0, S / 2], [0, f, S / 2], [0, 0, 1]], np.float32)
    D = np.diag([-1.0, -1.0, 1.0]).astype(np.float32)
    opencv = jaxnmr.projection(POINTS, K, D @ ROT.T, D @ TRANS, np.zeros(5, np.float32), S)
    np.testing.assert_allclose(jaxnmr.fov_perspective(POINTS, ROT, TRANS, fov), opencv, atol=1e-5)


def test_gradients_jit_and_broadcasting():
    R, t = jaxnmr.look_at_view_transform(3.0, 20.0, 30.0)
    weights = jnp.asarray(RNG.normal(size=(6, 3)), jnp.float32)

    def loss(t, R, fn):
        return jnp.sum(fn(POINTS, R, t) * weights)

    for fn in (jaxnmr.fov_perspective, jaxnmr.orthographic):
        g_t, g_R = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(t, R, fn)
        assert np.all(np.isfinite(g_t)) and np.all(np.isfinite(g_R)) and np.abs(g_t).sum() > 0
        # central differences of the same loss written in float64 numpy
        if fn is jaxnmr.fov_perspective:
            half = math.tan(math.radians(30.0))
            project = lambda view: np.stack([-view[:, 0] / (view[:, 2] * half), view[:, 1] / (view[:, 2] * half),
                                             view[:, 2]], -1)
        else:
            project = lambda view: view * [-1.0, 1.0, 1.0]
        ref_loss = lambda T_: np.sum(project(POINTS.astype(np.float64) @ np.asarray(R, np.float64) + T_) *
                                     np.asarray(weights, np.float64))
        for i in range(3):
            e = np.zeros(3)
            e[i] = 1e-6
            fd = (ref_loss(np.asarray(t, np.float64) + e) - ref_loss(np.asarray(t, np.float64) - e)) / 2e-6
            np.testing.assert_allclose(float(g_t[i]), fd, rtol=1e-4, atol=1e-4)
    # gradients reach the spherical parameters through look_at_view_transform
    spin = lambda azimuth: jnp.sum(jaxnmr.fov_perspective(POINTS, *jaxnmr.look_at_view_transform(3.0, 20.0, azimuth)))
    g = jax.jit(jax.grad(spin))(30.0)
    assert np.isfinite(g) and g != 0
    # leading dims broadcast: a batch of cameras over one set of points
    Rb, Tb = jax.jit(jaxnmr.look_at_view_transform)(3.0, 20.0, np.array([30.0, 60.0]))
    out = jax.jit(jaxnmr.fov_perspective)(POINTS, Rb, Tb)
    assert out.shape == (2, 6, 3)
    np.testing.assert_allclose(out[1], jaxnmr.fov_perspective(POINTS, Rb[1], Tb[1]), atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: jaxnmr.fov_perspective(POINTS, ROT[:2], TRANS), r"fov_perspective: R must have shape \[\.\.\., 3, 3"),
        (lambda: jaxnmr.fov_perspective(POINTS, ROT, TRANS[:2]), r"fov_perspective: t must have shape \[\.\.\., 3\]"),
        (lambda: jaxnmr.fov_perspective(POINTS, ROT, TRANS, 180.0), r"fov must be in \(0, 180\), got 180\.0"),
        (lambda: jaxnmr.fov_perspective(POINTS, ROT, TRANS, 3.5, degrees=False), r"fov must be in \(0, 3\.14"),
        (lambda: jaxnmr.orthographic(POINTS[:, :2]), r"orthographic: vertices must have shape \[\.\.\., N, 3\]"),
        (lambda: jaxnmr.orthographic(POINTS, min_x=1.0, max_x=1.0), r"max_x must differ from min_x"),
        (lambda: jaxnmr.look_at_view_transform(3.0, 0.0, 0.0, at=(0.0, 0.0)), r"at must have shape \[\.\.\., 3\]"),
        (lambda: jaxnmr.look_at_view_transform(3.0, 0.0, 0.0, up=(0.0, 1.0)), r"up must have shape \[\.\.\., 3\]"),
        (lambda: jaxnmr.fov_perspective(POINTS, ROT, TRANS, np.float32([50.0, 0.0])), r"fov must be in \(0, 180\)"),
        (lambda: jaxnmr.fov_perspective(POINTS, ROT, TRANS, aspect_ratio=0.0), r"aspect_ratio must be > 0, got 0\.0"),
        (lambda: jaxnmr.orthographic(POINTS, min_y=np.float32([0.0, 0.5]), max_y=0.5),
         r"max_y must differ from min_y, both are 0\.5 at batch index \(1,\)"),
        (lambda: jaxnmr.fov_perspective(POINTS, np.stack([ROT, ROT]), TRANS, np.float32([40.0, 50.0, 60.0])),
         r"fov_perspective: the leading \(batch\) dims .* vertices \(\), R \(2,\), t \(\), fov \(3,\), "
         r"aspect_ratio \(\)"),
        (lambda: jaxnmr.look_at_view_transform(np.ones(2), 0.0, np.zeros(3)),
         r"look_at_view_transform: the leading \(batch\) dims .* distance \(2,\), elevation \(\), azimuth \(3,\)"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_value_checks_are_skipped_under_jit_and_the_formula_result_comes_out():
    """fov, aspect_ratio and min/max are checked where concrete; under jit they are Tracers: no check (and no Python
    bool of a traced value), and the documented results come out: fov past 180 degrees or a negative aspect ratio
    flips the picture, equal bounds give inf / NaN."""
    fov = jax.jit(lambda f, a: jaxnmr.fov_perspective(POINTS, ROT, TRANS, f, aspect_ratio=a))
    ok = np.asarray(fov(60.0, 1.0))
    flipped = np.asarray(fov(200.0, 1.0))  # tan(100 degrees) < 0: x and y change sign
    assert np.all(np.sign(flipped[:, :2]) == -np.sign(ok[:, :2]))
    mirrored = np.asarray(fov(60.0, -1.0))
    np.testing.assert_allclose(mirrored, ok * [-1.0, 1.0, 1.0], rtol=1e-6)
    ortho = jax.jit(lambda lo, hi: jaxnmr.orthographic(POINTS, ROT, TRANS, min_x=lo, max_x=hi))
    assert not np.all(np.isfinite(np.asarray(ortho(1.0, 1.0))[:, 0]))
    # vmap and grad trace too: no check, no error
    g = jax.grad(lambda f: jnp.sum(jaxnmr.fov_perspective(POINTS, ROT, TRANS, f)))(jnp.float32(60.0))
    assert np.isfinite(g)
    out = jax.vmap(lambda f: jaxnmr.fov_perspective(POINTS, ROT, TRANS, f))(jnp.float32([50.0, 60.0]))
    np.testing.assert_allclose(out[1], jaxnmr.fov_perspective(POINTS, ROT, TRANS, 60.0), rtol=1e-6)


def test_degrees_is_a_static_bool():
    """An array for `degrees` (e.g. an aspect ratio passed positionally into it) is a TypeError naming it, eager or
    traced, instead of a Python bool of a possibly traced value."""
    with pytest.raises(TypeError, match=r"fov_perspective: degrees must be a Python bool"):
        jaxnmr.fov_perspective(POINTS, ROT, TRANS, 50.0, np.float32(1.2))
    with pytest.raises(TypeError, match=r"fov_perspective: degrees must be a Python bool"):
        jax.jit(lambda a: jaxnmr.fov_perspective(POINTS, ROT, TRANS, 50.0, a))(np.float32(1.2))
    with pytest.raises(TypeError, match=r"look_at_view_transform: degrees must be a Python bool"):
        jaxnmr.look_at_view_transform(3.0, 0.0, 0.0, jnp.float32(1.0))


def test_look_at_view_transform_up_and_at_batch_alone():
    """up [3, 2, 3] alone (others unbatched) reaches R and t, with the sphere and with eye."""
    ups = (np.float32([0, 1, 0]) + RNG.uniform(-0.3, 0.3, (3, 2, 3))).astype(np.float32)
    for kwargs in (dict(distance=3.0, elevation=20.0, azimuth=40.0), dict(eye=np.float32([1.0, 2.0, 3.0]))):
        R, t = jaxnmr.look_at_view_transform(up=ups, **kwargs)
        assert R.shape == (3, 2, 3, 3) and t.shape == (3, 2, 3)
        R1, t1 = jaxnmr.look_at_view_transform(up=ups[1, 0], **kwargs)
        np.testing.assert_allclose(R[1, 0], R1, atol=1e-6)
        np.testing.assert_allclose(t[1, 0], t1, atol=1e-5)
        assert np.abs(np.asarray(R[0, 0]) - np.asarray(R[2, 1])).max() > 1e-3


# -- the Renderer's camera modes ----------------------------------------------------------------------------

S = 64


@pytest.fixture(scope="module")
def teapot():
    pot = meshes.teapot(resolution=4)
    return pot.vertices, pot.faces


def test_fov_mode_is_nmr_default_view_mirrored_and_equals_projection_mode(teapot):
    v, f = teapot
    look = np.asarray(jaxnmr.Renderer(image_size=S).render_silhouettes(v, f))
    R, t = jaxnmr.look_at_view_transform(2.7320508, 0.0, 180.0)  # NMR's default eye (0, 0, -2.732)
    r = jaxnmr.Renderer(image_size=S, camera_mode="fov", R=R, t=t)
    assert float(r.fov) == 60.0 and r.scale is None
    fov = np.asarray(r.render_silhouettes(v, f))
    assert fov.sum() > 200
    np.testing.assert_allclose(fov, look[:, ::-1], atol=1e-5)  # measured: identical
    assert np.abs(fov - look).max() > 0.5  # and not NMR's mirrored picture
    D = np.diag([-1.0, -1.0, 1.0]).astype(np.float32)
    focal = S / 2 / math.tan(math.radians(30.0))
    K = np.array([[focal, 0, S / 2], [0, focal, S / 2], [0, 0, 1]], np.float32)
    proj = jaxnmr.Renderer(image_size=S, camera_mode="projection", K=K, R=D @ np.asarray(R).T, t=D @ np.asarray(t),
                           orig_size=S)
    np.testing.assert_allclose(proj.render_silhouettes(v, f), fov, atol=1e-4)


@pytest.mark.parametrize("mode", ["fov", "orthographic"])
def test_lit_textured_pictures_are_nmr_look_at_pictures_mirrored(teapot, mode):
    """The same eye through look_at (NMR, mirrored; perspective=False is its orthographic view) and through
    look_at_view_transform's R, t: the lit, textured pictures are mirror images. The lighting needs the normal
    of the reversed vertex order in these modes: NMR's own would light the drawn faces from behind."""
    v, f = teapot
    textures = RNG.random((len(f), 2, 2, 2, 3)).astype(np.float32)
    R, t = jaxnmr.look_at_view_transform(3.0, 35.0, 30.0)
    eye = (-np.asarray(R, np.float64) @ np.asarray(t, np.float64)).astype(np.float32)
    lights = dict(light_direction=(0.3, 1.0, -0.4), light_intensity_ambient=0.3, light_intensity_directional=0.7)
    nmr = jaxnmr.Renderer(image_size=S, eye=eye, perspective=mode == "fov", **lights).render(v, f, textures)
    ours = np.asarray(jaxnmr.Renderer(image_size=S, camera_mode=mode, R=R, t=t, **lights).render(v, f, textures))
    assert (ours.sum(-1) > 0).sum() > 300
    # look_at's axes are normalised as NMR does (x / (|x| + 1e-5)), these exactly: the vertices differ by ~1e-5,
    # which flips a few pixel centres lying on a shared edge to the neighbouring face (measured: 0 pixels with
    # fov, 5 with orthographic, each face having its own random colour); all other pixels agree to 4e-4
    differs = np.abs(ours - np.asarray(nmr)[:, ::-1]).max(-1) > 2e-3
    assert differs.sum() <= 8
    # NMR's normal orientation would light the visible faces from behind: most of the picture would change
    flipped = jaxnmr.Renderer(image_size=S, eye=eye, perspective=mode == "fov", **lights)
    flipped = flipped.replace(light_direction=-np.float32(lights["light_direction"])).render(v, f, textures)
    assert (np.abs(ours - np.asarray(flipped)[:, ::-1]).max(-1) > 2e-3).sum() > 200


def _box(centre, half=0.15):
    box = meshes.cube(2 * half)
    v, f = box.vertices, box.faces
    return (np.asarray(v) + np.asarray(centre, np.float32)).astype(np.float32), f


def _centroid(alpha):
    rows, cols = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    return np.array([(alpha * rows).sum(), (alpha * cols).sum()]) / alpha.sum()


@pytest.mark.parametrize("mode", ["fov", "orthographic"])
def test_off_centre_object_appears_where_a_physical_camera_sees_it(mode):
    """Camera on +z looking at the origin (up +y): world +x is on the right, +y at the top. From -z, +x is on the
    left; NMR's look_at from -z shows it on the right (its mirror, docs/conventions.md, "Mirroring")."""
    v, f = _box((0.5, 0.3, 0.0))

    def alpha(azimuth):
        R, t = jaxnmr.look_at_view_transform(3.0, 0.0, azimuth)
        return np.asarray(jaxnmr.Renderer(image_size=S, camera_mode=mode, R=R, t=t).render_silhouettes(v, f))

    row, col = _centroid(alpha(0.0))
    assert col > S / 2 + 5 and row < S / 2 - 3
    row, col = _centroid(alpha(180.0))
    assert col < S / 2 - 5 and row < S / 2 - 3
    row, col = _centroid(np.asarray(jaxnmr.Renderer(image_size=S, eye=(0.0, 0.0, -3.0)).render_silhouettes(v, f)))
    assert col > S / 2 + 5 and row < S / 2 - 3


def _pixel_centres_inside(half_width_ndc):
    """Pixels centred in the NDC square |x|, |y| < h, counted by hand (docs/conventions.md, "Pixel centres")."""
    centres = (2 * np.arange(S) + 1 - S) / S
    inside = np.abs(centres) < half_width_ndc
    return int(inside.sum()) ** 2


def test_orthographic_size_does_not_change_with_distance_perspective_does():
    half = 0.3  # a square of side 0.6 in the plane z = 0, facing the camera on +z
    v = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    counts = {}
    for mode in ("fov", "orthographic"):
        for distance in (2.0, 4.0):
            R, t = jaxnmr.look_at_view_transform(distance, 0.0, 0.0)
            r = jaxnmr.Renderer(image_size=S, anti_aliasing=False, camera_mode=mode, R=R, t=t, fov=50.0, scale=1.5)
            counts[mode, distance] = int(np.asarray(r.render_silhouettes(v, f)).sum())
    tan = math.tan(math.radians(25.0))
    assert counts["fov", 2.0] == _pixel_centres_inside(half / (2.0 * tan))
    assert counts["fov", 4.0] == _pixel_centres_inside(half / (4.0 * tan))
    assert counts["orthographic", 2.0] == counts["orthographic", 4.0] == _pixel_centres_inside(1.5 * half)
    assert counts["fov", 2.0] > 3 * counts["fov", 4.0]


def test_renderer_gradients_wrt_R_and_t_and_batched_cameras(teapot):
    v, f = teapot
    R, t = jaxnmr.look_at_view_transform(2.7, 15.0, 30.0)
    for mode in ("fov", "orthographic"):
        r = jaxnmr.Renderer(image_size=32, camera_mode=mode, R=R, t=t)
        target = r.render_silhouettes(v, f)

        def loss(R, t):
            return jnp.sum((r.replace(R=R, t=t).render_silhouettes(v, f) - target) ** 2)

        R2, t2 = jaxnmr.look_at_view_transform(2.7, 15.0, 40.0)
        g_R, g_t = jax.jit(jax.grad(loss, argnums=(0, 1)))(R2, t2)
        assert np.all(np.isfinite(g_R)) and np.all(np.isfinite(g_t))
        assert np.abs(g_R).sum() > 0 and np.abs(g_t).sum() > 0
        # a batch of cameras as leading dims gives the images of the cameras one at a time
        Rb, Tb = jaxnmr.look_at_view_transform(2.7, 15.0, np.array([30.0, 120.0]))
        images = np.asarray(r.replace(R=Rb, t=Tb).render_silhouettes(v, f))
        assert images.shape == (2, 32, 32)
        np.testing.assert_allclose(images[1], r.replace(R=Rb[1], t=Tb[1]).render_silhouettes(v, f), atol=1e-6)
        # fov and scale are leaves too
        zoom = "fov" if mode == "fov" else "scale"
        g = jax.grad(lambda z: jnp.sum(r.replace(**{zoom: z}).render_silhouettes(v, f) * target))(
            jnp.float32(60.0 if mode == "fov" else 1.0))
        assert np.isfinite(g) and g != 0


def test_renderer_settings_and_errors():
    R, t = jaxnmr.look_at_view_transform(3.0, 0.0, 0.0)
    default = jaxnmr.Renderer()
    assert default.fov is None and default.scale is None and default.R is None
    ortho = jaxnmr.Renderer(camera_mode="orthographic", R=R, t=t)
    assert float(ortho.scale) == 1.0 and ortho.fov is None
    assert len(jax.tree_util.tree_leaves(ortho.camera)) == 3  # R, t, scale
    assert jax.tree_util.tree_structure(ortho.lights) == jax.tree_util.tree_structure(default.lights)
    with pytest.raises(ValueError, match=r"camera_mode='fov' needs R and t .*missing: t"):
        jaxnmr.Renderer(camera_mode="fov", R=R)
    with pytest.raises(ValueError, match=r"camera_mode='orthographic' needs R and t .*missing: R, t"):
        jaxnmr.Renderer(camera_mode="orthographic")
    with pytest.raises(ValueError, match=r"Renderer: fov must be in \(0, 180\)"):
        jaxnmr.Renderer(camera_mode="fov", R=R, t=t, fov=0.0)
    with pytest.raises(ValueError, match=r"Renderer: R must have shape \[\.\.\., 3, 3\]"):
        jaxnmr.Renderer(camera_mode="fov", R=R[:2], t=t)
