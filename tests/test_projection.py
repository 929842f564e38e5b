"""The OpenCV camera: ``jaxnmr.projection`` and ``Renderer(camera_mode="projection")`` (docs/conventions.md, "OpenCV")."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from _helpers import rodrigues
from jaxnmr import meshes

ORIG = 640.0
K = np.array([[500.0, 0.5, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]], np.float32)
DIST = np.array([0.1, -0.05, 0.002, -0.003, 0.01], np.float32)  # k1, k2, p1, p2, k3
DIST8 = np.array([0.1, -0.05, 0.002, -0.003, 0.01, 0.04, -0.02, 0.015], np.float32)  # ..., k4, k5, k6


RVEC = np.array([0.1, -0.2, 0.05])
R = rodrigues(RVEC).astype(np.float32)
T = np.array([0.1, -0.05, 3.0], np.float32)
POINTS = np.array([[0.0, 0.0, 0.0], [0.5, -0.3, 0.2], [-0.7, 0.4, -0.5], [0.9, 0.8, 0.6], [-0.2, -0.9, 0.1]],
                  np.float32)


def opencv_pixels(points, K, R, t, dist):
    """The textbook OpenCV pinhole + Brown-Conrady model (cv::projectPoints), in float64: 4, 5 or 8 coefficients
    (k1, k2, p1, p2[, k3[, k4, k5, k6]]), the 8 being OpenCV's rational model."""
    k1, k2, p1, p2, k3, k4, k5, k6 = np.pad(np.asarray(dist, np.float64), (0, 8 - len(dist)))
    P = points.astype(np.float64) @ R.astype(np.float64).T + t.astype(np.float64)
    x, y = P[:, 0] / P[:, 2], P[:, 1] / P[:, 2]
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    u = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
    v = K[1, 1] * yd + K[1, 2]
    return np.stack([u, v], -1), P[:, 2]


def pixels_to_ndc(uv, orig):
    """This renderer's convention (docs/conventions.md, "OpenCV", step 5): x right, y up, the image spans [-1, 1]."""
    return np.stack([2 * uv[:, 0] / orig - 1, 1 - 2 * uv[:, 1] / orig], -1)


@pytest.mark.parametrize("dist", [np.zeros(5, np.float32), DIST], ids=["pinhole", "distorted"])
def test_matches_hand_computed_opencv_projection(dist):
    uv, z = opencv_pixels(POINTS, K, R, T, dist)
    out = np.asarray(jaxnmr.projection(POINTS, K, R, T, dist, ORIG))
    assert out.shape == (5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :2], pixels_to_ndc(uv, ORIG), atol=1e-5)
    np.testing.assert_allclose(out[:, 2], z, rtol=1e-6)  # camera z, no eps
    if not np.any(dist):  # without distortion it is the pinhole: the distortion terms really were exercised
        assert np.abs(out[:, :2] - pixels_to_ndc(opencv_pixels(POINTS, K, R, T, DIST)[0], ORIG)).max() > 1e-3


@pytest.mark.parametrize("dist", [DIST[:4], DIST, DIST8], ids=["4 coeffs", "5 coeffs", "8 coeffs"])
def test_matches_cv2_project_points(dist):
    """OpenCV's own shapes end to end: rvec and tvec as (3, 1) columns, the rotation from jaxnmr.rodrigues, 4, 5 or
    8 distortion coefficients. cv2.projectPoints ignores K's skew K[0, 1] (jaxnmr uses it), hence a K without."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed; the hand-written model is tested above")
    K0 = K.copy()
    K0[0, 1] = 0.0
    rvec, tvec = RVEC.reshape(3, 1), T.astype(np.float64).reshape(3, 1)
    uv, _ = cv2.projectPoints(POINTS.astype(np.float64), rvec, tvec, K0.astype(np.float64), dist.astype(np.float64))
    out = np.asarray(jaxnmr.projection(POINTS, K0, jaxnmr.rodrigues(rvec.astype(np.float32)), tvec.astype(np.float32),
                                       dist, ORIG))
    np.testing.assert_allclose(out[:, :2], pixels_to_ndc(uv[:, 0], ORIG), atol=1e-5)
    np.testing.assert_allclose(jaxnmr.rodrigues(rvec), cv2.Rodrigues(rvec)[0], atol=1e-6)


def test_nmr_shapes_and_broadcasting():
    """NMR's t [B, 1, 3] and dist_coeffs [1, 5]; batched cameras broadcast over one mesh."""
    ref = np.asarray(jaxnmr.projection(POINTS, K, R, T, DIST, ORIG))
    nmr = jaxnmr.projection(POINTS[None], K[None], R[None], T[None, None], DIST[None], ORIG)
    assert nmr.shape == (1, 5, 3)
    np.testing.assert_allclose(nmr[0], ref, atol=1e-6)
    ts = np.stack([T, T + np.float32([0.2, 0.0, 0.5])])
    batched = np.asarray(jaxnmr.projection(POINTS, K, R, ts, DIST, ORIG))
    assert batched.shape == (2, 5, 3)
    np.testing.assert_allclose(batched[0], ref, atol=1e-6)
    np.testing.assert_allclose(batched[1], jaxnmr.projection(POINTS, K, R, ts[1], DIST, ORIG), atol=1e-6)


def test_gradient_is_finite_on_the_optical_axis():
    """NMR's r = sqrt(x'^2 + y'^2) gave NaN gradients at r = 0; the model only needs r^2."""
    on_axis = np.array([[0.0, 0.0, 0.0]], np.float32)
    loss = lambda v, d, t: jaxnmr.projection(v, K, np.eye(3, dtype=np.float32), t, d, ORIG)[..., :2].sum()
    grads = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(on_axis), jnp.asarray(DIST), jnp.float32([0, 0, 2]))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    assert np.abs(np.asarray(grads[0])).sum() > 0


# -- renderer ---------------------------------------------------------------------------------------------------

S = 64


@pytest.fixture(scope="module")
def teapot():
    pot = meshes.teapot(resolution=4)
    return pot.vertices, pot.faces


def default_view_camera(size, cx=None):
    """K, R, t reproducing the default look_at view (eye (0, 0, -2.732), 30 degree half-FOV).

    f = (size / 2) / tan(30 deg) puts x'/z = tan 30 on the image border. The OpenCV camera at the default eye
    looking at +z with world +y up has camera x = -world x and y = -world y: R = diag(-1, -1, 1), t = -R eye.
    The principal point at size / 2 is the image centre in this renderer's corner-origin pixel convention.
    """
    f = size / 2 / math.tan(math.radians(30))
    c = size / 2 if cx is None else cx
    Kd = np.array([[f, 0, c], [0, f, c], [0, 0, 1]], np.float32)
    Rd = np.diag([-1.0, -1.0, 1.0]).astype(np.float32)
    eye = np.asarray(jaxnmr.Renderer().eye)
    return Kd, Rd, (-Rd @ eye).astype(np.float32)


def iou(a, b):
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    return (a & b).sum() / (a | b).sum()


def test_renderer_projection_reproduces_the_default_view_unmirrored(teapot):
    v, f = teapot
    look = np.asarray(jaxnmr.Renderer(image_size=S).render_silhouettes(v, f))
    Kd, Rd, td = default_view_camera(S)
    r = jaxnmr.Renderer(image_size=S, camera_mode="projection", K=Kd, R=Rd, t=td, orig_size=S)
    proj = np.asarray(r.render_silhouettes(v, f))
    mirrored = look[:, ::-1]  # look_at mirrors the world (docs/conventions.md, "Mirroring"); the OpenCV camera does not
    assert iou(proj, mirrored) > 0.97
    assert iou(proj, look) < iou(proj, mirrored)
    # with the principal point at S/2 the NDC agrees with look_at's to float precision (measured: identical)
    assert (np.abs(proj - mirrored) > 0.5).sum() <= 4
    np.testing.assert_allclose(proj, mirrored, atol=1e-3)
    # an OpenCV-calibrated principal point ((S - 1) / 2, pixel centres at integers) is half a pixel off in
    # the corner-origin convention (docs/conventions.md, "OpenCV"): the picture moves half a pixel left and up
    # (measured IoU 0.88 at 64 px, 0.97 at 256 px)
    Ko, _, _ = default_view_camera(S, cx=(S - 1) / 2)
    shifted = np.asarray(r.replace(K=Ko).render_silhouettes(v, f))
    assert iou(shifted, mirrored) > 0.8 and (np.abs(shifted - mirrored) > 0.5).sum() > 4
    rows, cols = np.mgrid[:S, :S]
    centroid = lambda a: np.array([(a * rows).sum(), (a * cols).sum()]) / a.sum()
    np.testing.assert_allclose(centroid(shifted) - centroid(mirrored), [-0.5, -0.5], atol=0.1)
    # depth is camera z, the same as look_at's
    d_look = np.asarray(jaxnmr.Renderer(image_size=S, anti_aliasing=False).render_depth(v, f))[:, ::-1]
    d_proj = np.asarray(r.replace(anti_aliasing=False).render_depth(v, f))
    both = (d_look < 100) & (d_proj < 100)
    assert both.sum() > 100 and np.median(np.abs(d_look - d_proj)[both]) < 1e-4


def test_renderer_projection_gradient_wrt_t_and_one_launch_under_vmap(teapot):
    v, f = teapot
    Kd, Rd, td = default_view_camera(S)
    r = jaxnmr.Renderer(image_size=S, camera_mode="projection", K=Kd, R=Rd, t=td, orig_size=S)
    target = np.asarray(r.render_silhouettes(v, f))

    def loss(t):
        return jnp.sum((r.replace(t=t).render_silhouettes(v, f) - target) ** 2)

    g = np.asarray(jax.grad(loss)(jnp.asarray(td) + jnp.float32([0.1, -0.05, 0.2])))
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0

    angles = np.radians([0.0, 20.0, -30.0])
    Rs = np.stack([Rd @ rodrigues([0.0, a, 0.0]) if a else Rd for a in angles]).astype(np.float32)
    ts = np.stack([td, td + [0.1, 0, 0], td + [0, 0, 0.5]]).astype(np.float32)

    def render(R_, t_):
        return r.replace(R=R_, t=t_).render_silhouettes(v, f)

    batched = jax.jit(jax.vmap(render))
    assert batched.lower(Rs, ts).as_text().count("jaxnmr_rasterize_forward") == 1
    images = np.asarray(batched(Rs, ts))
    assert images.shape == (3, S, S)
    np.testing.assert_allclose(images[2], render(Rs[2], ts[2]), atol=1e-5)
    assert np.abs(images[0] - images[1]).sum() > 1
    # leading-dims batching of R and t gives the same images
    np.testing.assert_allclose(r.replace(R=Rs, t=ts).render_silhouettes(v, f), images, atol=1e-5)


def test_renderer_projection_settings(teapot):
    v, f = teapot
    Kd, Rd, td = default_view_camera(S)
    r = jaxnmr.Renderer(image_size=S, camera_mode="projection", K=Kd, R=Rd, t=td)
    assert r.orig_size == 1024.0 and np.array_equal(r.dist_coeffs, np.zeros(5))
    assert jaxnmr.Renderer().dist_coeffs is None and jaxnmr.Renderer().K is None
    leaves, treedef = jax.tree_util.tree_flatten(r)
    assert len(jax.tree_util.tree_leaves(r.camera)) == 4  # K, R, t, dist_coeffs are leaves; orig_size is static
    assert jax.tree_util.tree_unflatten(treedef, leaves).orig_size == 1024.0
    assert jax.tree_util.tree_flatten(r.replace(orig_size=512))[1] != treedef
    # perspective / viewing_angle / eye do not affect the projection mode
    a = np.asarray(r.replace(orig_size=S).render_silhouettes(v, f))
    b = np.asarray(r.replace(orig_size=S, perspective=False, viewing_angle=60.0, eye=(1.0, 2.0, 3.0))
                   .render_silhouettes(v, f))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: jaxnmr.projection(POINTS, K[:2], R, T),
         r"projection: K must have shape \[\.\.\., 3, 3\], got shape \(2, 3\)"),
        (lambda: jaxnmr.projection(POINTS, K, R[:, :2], T), r"R must have shape \[\.\.\., 3, 3\], got shape \(3, 2\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, T[:2]),
         r"t must have shape \[\.\.\., 3\] \(NMR's row form \[\.\.\., 1, 3\] or OpenCV's column \[\.\.\., 3, 1\] "
         r"also accepted\), got shape \(2,\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, T[:2, None]), r"t must have shape .*got shape \(2, 1\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, T, np.zeros(6, np.float32)),
         r"dist_coeffs must have shape \[\.\.\., 4\], \[\.\.\., 5\] or \[\.\.\., 8\] .*got shape \(6,\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, T, np.zeros((6, 1), np.float32)), r"got shape \(6, 1\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, np.zeros((2, 3), np.float32), np.zeros((3, 5), np.float32)),
         r"projection: the leading \(batch\) dims .* vertices \(\), K \(\), R \(\), t \(2,\), dist_coeffs \(3,\), "
         r"orig_size \(\)"),
        (lambda: jaxnmr.rodrigues(np.zeros(4, np.float32)),
         r"rodrigues: rvec must have shape \[\.\.\., 3\] \(OpenCV's column \[\.\.\., 3, 1\] also accepted\), got shape \(4,\)"),
        (lambda: jaxnmr.rodrigues(np.zeros((1, 3, 3, 2), np.float32)), r"rodrigues: rvec must have shape .*\(1, 3, 3, 2\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, T, DIST, 0.0), r"orig_size must be > 0, got 0\.0"),
        (lambda: jaxnmr.projection(POINTS, K, R, T, DIST, -5), r"orig_size must be > 0"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K, R=R), r"needs K, R and t; missing: t"),
        (lambda: jaxnmr.Renderer(camera_mode="projection"), r"missing: K, R, t"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K, R=R, t=T, orig_size=0), r"orig_size must be > 0"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K[:2], R=R, t=T), r"Renderer: K must have shape"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K, R=R, t=T, dist_coeffs=np.zeros(6)),
         r"projection: dist_coeffs must have shape \[\.\.\., 4\], \[\.\.\., 5\] or \[\.\.\., 8\] .* got shape \(6,\)"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K, R=R, t=np.zeros((2, 2))), r"projection: t must"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_array_intrinsics_are_a_type_error():
    with pytest.raises(TypeError, match="K must be a floating-point array"):
        jaxnmr.projection(POINTS, K.astype(np.int32), R, T)


# -- the reported batching failure -------------------------------------------------------------------------------


def test_finding_batch_dims_of_the_camera_reach_the_depth_too():
    """vertices [1, 3], t [1, 3] (NMR's row form: no batch) and dist_coeffs [1, 5] (batch (1,)) raised "Cannot stack
    arrays with different numbers of dimensions": the camera's batch dims reached u and v but not z."""
    v, t = POINTS[:1], T[None]
    out = jaxnmr.projection(v, K, R, t, DIST[None], 640)
    assert out.shape == (1, 1, 3)
    np.testing.assert_array_equal(out, np.asarray(jaxnmr.projection(v, K, R, t, DIST, 640))[None])


@pytest.mark.parametrize("arg", ["K", "dist_coeffs", "orig_size"])
def test_batch_dims_on_one_camera_parameter_alone(arg):
    """dist_coeffs [3, 2, 5] (or K [3, 2, 3, 3], orig_size [3, 2]) with unbatched others: outputs [3, 2, N, 3]
    equal to the loop."""
    rng = np.random.default_rng(5)
    one = dict(K=K, dist_coeffs=DIST, orig_size=np.float32(ORIG))
    jitter = dict(K=lambda: K + np.float32(rng.uniform(-5, 5, (3, 3)) * [[1, 0.1, 1], [0, 1, 1], [0, 0, 0]]),
                  dist_coeffs=lambda: DIST + rng.uniform(-0.02, 0.02, 5).astype(np.float32),
                  orig_size=lambda: np.float32(ORIG + rng.uniform(-50, 50)))
    batch = np.stack([jitter[arg]() for _ in range(6)]).reshape((3, 2) + np.shape(one[arg]))
    call = lambda value: jaxnmr.projection(POINTS, **dict(one, **{arg: value}), R=R, t=T)
    out = np.asarray(call(batch))
    assert out.shape == (3, 2, len(POINTS), 3)
    for i, j in np.ndindex(3, 2):
        np.testing.assert_allclose(out[i, j], call(batch[i, j]), rtol=1e-6, atol=1e-6)
    assert np.abs(out[0, 0] - out[2, 1]).max() > 1e-4


def test_t_row_form_and_its_elements_agree():
    """NMR's [B, 1, 3] t has batch (B,): its element t[i], a [1, 3] row, behaves as the vector t[i, 0]."""
    ts = (T + np.random.default_rng(6).uniform(-0.2, 0.2, (4, 1, 3))).astype(np.float32)
    out = np.asarray(jaxnmr.projection(POINTS, K, R, ts, DIST, ORIG))
    assert out.shape == (4, len(POINTS), 3)
    for i in range(4):
        np.testing.assert_array_equal(jaxnmr.projection(POINTS, K, R, ts[i], DIST, ORIG), out[i])
        np.testing.assert_array_equal(jaxnmr.projection(POINTS, K, R, ts[i, 0], DIST, ORIG), out[i])


# -- OpenCV's shapes and models ------------------------------------------------------------------------------------


def test_opencv_column_tvec_and_dist_coeffs():
    """cv2.solvePnP returns tvec (3, 1) (a column, told apart from NMR's (1, 3) row by its last dim of 1); OpenCV
    also takes dist_coeffs as a (n, 1) column."""
    ref = np.asarray(jaxnmr.projection(POINTS, K, R, T, DIST, ORIG))
    np.testing.assert_array_equal(jaxnmr.projection(POINTS, K, R, T.reshape(3, 1), DIST, ORIG), ref)
    np.testing.assert_array_equal(jaxnmr.projection(POINTS, K, R, T, DIST.reshape(5, 1), ORIG), ref)
    np.testing.assert_array_equal(jaxnmr.projection(POINTS, K, R, T.reshape(1, 3), DIST, ORIG), ref)
    columns = np.stack([T, T + np.float32([0.2, 0.0, 0.5])])[..., None]  # [2, 3, 1]: a batch of two columns
    out = np.asarray(jaxnmr.projection(POINTS, K, R, columns, DIST, ORIG))
    assert out.shape == (2, len(POINTS), 3)
    np.testing.assert_array_equal(out[0], ref)
    np.testing.assert_array_equal(out[1], jaxnmr.projection(POINTS, K, R, columns[1, :, 0], DIST, ORIG))


def test_four_and_eight_coefficients():
    ref5 = np.asarray(jaxnmr.projection(POINTS, K, R, T, DIST, ORIG))
    # 4 = (k1, k2, p1, p2) with k3 = 0
    no_k3 = DIST.copy()
    no_k3[4] = 0.0
    np.testing.assert_array_equal(jaxnmr.projection(POINTS, K, R, T, DIST[:4], ORIG),
                                  jaxnmr.projection(POINTS, K, R, T, no_k3, ORIG))
    assert np.abs(np.asarray(jaxnmr.projection(POINTS, K, R, T, DIST[:4], ORIG)) - ref5).max() > 1e-6
    # 8 with k4 = k5 = k6 = 0 is the 5-coefficient model
    np.testing.assert_allclose(jaxnmr.projection(POINTS, K, R, T, np.pad(DIST, (0, 3)), ORIG), ref5, rtol=1e-7,
                               atol=1e-7)
    # 8: OpenCV's rational model, against numpy in float64; its denominator really matters
    out = np.asarray(jaxnmr.projection(POINTS, K, R, T, DIST8, ORIG))
    uv, z = opencv_pixels(POINTS, K, R, T, DIST8)
    np.testing.assert_allclose(out[:, :2], pixels_to_ndc(uv, ORIG), atol=1e-5)
    np.testing.assert_allclose(out[:, 2], z, rtol=1e-6)
    assert np.abs(out - np.asarray(jaxnmr.projection(POINTS, K, R, T, DIST8[:5], ORIG))).max() > 1e-4
    # and the numpy reference itself is the 5-coefficient one with the denominator set to 1
    np.testing.assert_allclose(opencv_pixels(POINTS, K, R, T, np.pad(DIST, (0, 3)))[0],
                               opencv_pixels(POINTS, K, R, T, DIST)[0], rtol=1e-12)


def test_eight_coefficient_gradients_are_finite():
    loss = lambda d, v: jnp.sum(jaxnmr.projection(v, K, R, T, d, ORIG)[..., :2])
    g_d, g_v = jax.grad(loss, argnums=(0, 1))(jnp.asarray(DIST8), jnp.asarray(POINTS))
    assert np.all(np.isfinite(g_d)) and np.all(np.isfinite(g_v)) and np.abs(np.asarray(g_d)[5:]).sum() > 0


def test_orig_size_is_checked_only_where_concrete():
    """Under jit orig_size is a Tracer: no check (no Python bool of a traced value); 0 gives inf / NaN there."""
    with pytest.raises(ValueError, match="orig_size must be > 0"):
        jaxnmr.projection(POINTS, K, R, T, DIST, np.float32([640.0, 0.0]))
    out = jax.jit(lambda s: jaxnmr.projection(POINTS, K, R, T, DIST, s))(jnp.float32(0.0))
    assert not np.all(np.isfinite(np.asarray(out)[:, :2]))
    np.testing.assert_array_equal(jax.jit(lambda s: jaxnmr.projection(POINTS, K, R, T, DIST, s))(jnp.float32(ORIG)),
                                  jax.jit(lambda: jaxnmr.projection(POINTS, K, R, T, DIST, ORIG))())


# -- rodrigues ------------------------------------------------------------------------------------------------------


def test_rodrigues_matches_scipy_for_random_vectors():
    Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    rvecs = np.random.default_rng(8).normal(size=(4, 2, 3)) * [[[1.0]], [[2.0]], [[0.1]], [[3.0]]]
    out = np.asarray(jaxnmr.rodrigues(rvecs.astype(np.float32)))
    assert out.shape == (4, 2, 3, 3) and out.dtype == np.float32
    ref = Rotation.from_rotvec(rvecs.reshape(-1, 3)).as_matrix().reshape(4, 2, 3, 3)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_allclose(np.einsum("...ji,...jk->...ik", out, out), np.broadcast_to(np.eye(3), out.shape),
                               atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-6)
    # the tests' own float64 helper (used to build R above) agrees
    np.testing.assert_allclose(jaxnmr.rodrigues(RVEC.astype(np.float32)), rodrigues(RVEC), atol=1e-6)


@pytest.mark.parametrize("angle", [1e-6, 1e-3, 9.9e-3, 1.01e-2, 0.3])
def test_rodrigues_small_angles_value_and_gradient(angle):
    """Around the switch to the Taylor series (angle 0.01): value against scipy, Jacobian against central
    differences of scipy's float64 rotation."""
    Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    axis = np.array([0.3, -0.8, 0.5]) / np.linalg.norm([0.3, -0.8, 0.5])
    rvec = angle * axis
    np.testing.assert_allclose(jaxnmr.rodrigues(rvec.astype(np.float32)), Rotation.from_rotvec(rvec).as_matrix(),
                               atol=1e-7)
    jac = np.asarray(jax.jacfwd(jaxnmr.rodrigues)(jnp.asarray(rvec, jnp.float32)))  # [3, 3, 3]
    h = 1e-6
    fd = np.stack([(Rotation.from_rotvec(rvec + h * e).as_matrix() - Rotation.from_rotvec(rvec - h * e).as_matrix())
                   / (2 * h) for e in np.eye(3)], -1)
    np.testing.assert_allclose(jac, fd, atol=1e-5)


def test_rodrigues_at_zero_is_the_identity_with_a_finite_gradient():
    np.testing.assert_array_equal(jaxnmr.rodrigues(np.zeros(3, np.float32)), np.eye(3))
    np.testing.assert_array_equal(jaxnmr.rodrigues(np.zeros((3, 1), np.float32)), np.eye(3))
    w = jnp.asarray(np.random.default_rng(9).normal(size=(3, 3)), jnp.float32)
    g = np.asarray(jax.jit(jax.grad(lambda r: jnp.sum(jaxnmr.rodrigues(r) * w)))(jnp.zeros(3)))
    assert np.all(np.isfinite(g))
    # dR/dr_i at 0 is the cross-product generator [e_i]x: the gradient of sum(R * w) is w's antisymmetric part
    np.testing.assert_allclose(g, [w[2, 1] - w[1, 2], w[0, 2] - w[2, 0], w[1, 0] - w[0, 1]], atol=1e-6)
    jac = np.asarray(jax.jit(jax.jacrev(jaxnmr.rodrigues))(jnp.zeros(3)))
    assert np.all(np.isfinite(jac))
    # second derivatives too
    hess = jax.jit(jax.hessian(lambda r: jnp.sum(jaxnmr.rodrigues(r) * w)))(jnp.zeros(3))
    assert np.all(np.isfinite(np.asarray(hess)))


def test_rodrigues_column_rvec_and_projection():
    """OpenCV's rvec (3, 1) as solvePnP returns it; R from rodrigues feeds projection (which takes no rvec)."""
    col = RVEC.reshape(3, 1).astype(np.float32)
    np.testing.assert_array_equal(jaxnmr.rodrigues(col), jaxnmr.rodrigues(RVEC.astype(np.float32)))
    batch = np.stack([col, 2 * col])  # [2, 3, 1]
    out = np.asarray(jaxnmr.rodrigues(batch))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[1], jaxnmr.rodrigues(2 * RVEC.astype(np.float32)))
    np.testing.assert_allclose(jaxnmr.projection(POINTS, K, jaxnmr.rodrigues(col), T.reshape(3, 1), DIST, ORIG),
                               jaxnmr.projection(POINTS, K, R, T, DIST, ORIG), atol=1e-6)
    with pytest.raises(TypeError, match="rodrigues: rvec must be a floating-point array"):
        jaxnmr.rodrigues(np.zeros(3, np.int32))
