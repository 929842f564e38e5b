"""The OpenCV-style camera: ``jaxnmr.projection`` and ``Renderer(camera_mode="projection")`` (NMR_SPEC §2.5, §7.2)."""

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


RVEC = np.array([0.1, -0.2, 0.05])
R = rodrigues(RVEC).astype(np.float32)
T = np.array([0.1, -0.05, 3.0], np.float32)
POINTS = np.array([[0.0, 0.0, 0.0], [0.5, -0.3, 0.2], [-0.7, 0.4, -0.5], [0.9, 0.8, 0.6], [-0.2, -0.9, 0.1]],
                  np.float32)


def opencv_pixels(points, K, R, t, dist):
    """The textbook OpenCV pinhole + Brown-Conrady model (cv::projectPoints), in float64."""
    k1, k2, p1, p2, k3 = np.asarray(dist, np.float64)
    P = points.astype(np.float64) @ R.astype(np.float64).T + t.astype(np.float64)
    x, y = P[:, 0] / P[:, 2], P[:, 1] / P[:, 2]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    u = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
    v = K[1, 1] * yd + K[1, 2]
    return np.stack([u, v], -1), P[:, 2]


def pixels_to_ndc(uv, orig):
    """This renderer's convention (NMR_SPEC §2.5 steps 6-7): x right, y up, the image spans [-1, 1]."""
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


def test_matches_cv2_project_points():
    cv2 = pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed; the hand-written model is tested above")
    uv, _ = cv2.projectPoints(POINTS.astype(np.float64), RVEC, T.astype(np.float64), K.astype(np.float64),
                              DIST.astype(np.float64))
    out = np.asarray(jaxnmr.projection(POINTS, K, R, T, DIST, ORIG))
    np.testing.assert_allclose(out[:, :2], pixels_to_ndc(uv[:, 0], ORIG), atol=1e-5)


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
    return meshes.teapot(resolution=4)


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
    mirrored = look[:, ::-1]  # look_at mirrors the world (NMR_SPEC §1.2); the OpenCV camera does not
    assert iou(proj, mirrored) > 0.97
    assert iou(proj, look) < iou(proj, mirrored)
    # with the principal point at S/2 the NDC agrees with look_at's to float precision (measured: identical)
    assert (np.abs(proj - mirrored) > 0.5).sum() <= 4
    np.testing.assert_allclose(proj, mirrored, atol=1e-3)
    # an OpenCV-calibrated principal point ((S - 1) / 2, pixel centres at integers) is half a pixel off in
    # this renderer's corner-origin convention (NMR_SPEC §2.5): the picture moves half a pixel left and up
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
    assert len(leaves) == 9 + 4  # K, R, t, dist_coeffs are leaves; orig_size is static
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
        (lambda: jaxnmr.projection(POINTS, K, R, T[:2]), r"t must have shape \[\.\.\., 3\], got shape \(2,\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, T, DIST[:4]),
         r"dist_coeffs must have shape \[\.\.\., 5\], got shape \(4,\)"),
        (lambda: jaxnmr.projection(POINTS, K, R, T, DIST, 0.0), r"orig_size must be > 0, got 0\.0"),
        (lambda: jaxnmr.projection(POINTS, K, R, T, DIST, -5), r"orig_size must be > 0"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K, R=R), r"needs K, R and t; missing: t"),
        (lambda: jaxnmr.Renderer(camera_mode="projection"), r"missing: K, R, t"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K, R=R, t=T, orig_size=0), r"orig_size must be > 0"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K[:2], R=R, t=T), r"Renderer: K must have shape"),
        (lambda: jaxnmr.Renderer(camera_mode="projection", K=K, R=R, t=T, dist_coeffs=np.zeros(4)),
         r"Renderer: dist_coeffs must have shape \[\.\.\., 5\], got shape \(4,\)"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_array_intrinsics_are_a_type_error():
    with pytest.raises(TypeError, match="K must be a floating-point array"):
        jaxnmr.projection(POINTS, K.astype(np.int32), R, T)
