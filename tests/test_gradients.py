"""NMR's approximate gradient (docs/rasterizer.md, "Approximate gradient"): reference values, finite differences,
the oracle, and the JAX transformations around the custom VJP."""

import sys
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnmr
from jaxnmr import ffi, meshes, reference

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_ffi_forward import random_scene  # noqa: E402
from _helpers import adam_fitter, examples  # noqa: E402

# --- NMR's backward tests (its own suite's inputs and reference values) ---------------------------------------

GRAD_REF = {
    1: np.array([[1.6725862, -0.26021874, 0.0], [1.41986704, -1.64284933, 0.0], [0.0, 0.0, 0.0]]),
    2: np.array([[0.98646867, 1.04628897, 0.0], [-1.03415668, -0.10403691, 0.0], [3.00094461, -1.55173182, 0.0]]),
}
# The same cases through the rgb path (rasterizer_eps 1e-3), derived independently.
GRAD_RGB = {
    1: np.array([[1.6700729, -0.26015782, 0], [1.4180555, -1.6404239, 0], [0, 0, 0]]),
    2: np.array([[0.98467493, 1.0453049, 0], [-1.0331951, -0.10398687, 0], [2.9928615, -1.5495679, 0]]),
}
CASES = {
    1: (np.array([[0.8, 0.8, 1.0], [0.0, -0.5, 1.0], [0.2, -0.4, 1.0]], np.float32), (25, 35), lambda x: jnp.abs(x - 1)),
    2: (np.array([[0.8, 0.8, 1.0], [-0.5, -0.8, 1.0], [0.8, -0.8, 1.0]], np.float32), (40, 50), jnp.abs),
}


def to_minibatch(vertices):
    """The original tests' batch of 4: the data at index 2, all-zero meshes elsewhere."""
    vb = np.zeros((4, 3, 3), np.float32)
    vb[2] = vertices
    fb = np.zeros((4, 1, 3), np.int32)
    fb[2] = [0, 1, 2]
    return vb, fb


def expected_batch(ref):
    out = np.zeros((4, 3, 3))
    out[2] = ref
    return out


@pytest.mark.parametrize("case", [1, 2])
def test_nmr_backward_reference_values_silhouettes(case):
    vertices, (row, col), loss = CASES[case]
    vb, fb = to_minibatch(vertices)
    renderer = jaxnmr.Renderer(image_size=64, anti_aliasing=False, perspective=False, rasterizer_eps=1e-4)
    image = renderer.render_silhouettes(vb, fb)
    assert float(image[2, row, col]) == (0.0 if case == 1 else 1.0)  # outside / on the face
    grad = jax.grad(lambda v: loss(renderer.render_silhouettes(v, fb)[:, row, col]).sum())(vb)
    np.testing.assert_allclose(np.asarray(grad), expected_batch(GRAD_REF[case]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", [1, 2])
def test_nmr_backward_reference_values_rgb(case):
    vertices, (row, col), loss = CASES[case]
    vb, fb = to_minibatch(vertices)
    renderer = jaxnmr.Renderer(image_size=64, anti_aliasing=False, perspective=False,
                               light_intensity_ambient=1.0, light_intensity_directional=0.0)
    textures = np.ones((4, 1, 4, 4, 4, 3), np.float32)
    grad = jax.grad(lambda v: loss(renderer.render(v, fb, textures).mean(-1)[:, row, col]).sum())(vb)
    np.testing.assert_allclose(np.asarray(grad), expected_batch(GRAD_REF[case]), rtol=1e-2, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad), expected_batch(GRAD_RGB[case]), rtol=1e-5, atol=1e-7)


# --- depth (docs/rasterizer.md, "Depth gradient") -------------------------------------------------------------

DEPTH_TRIANGLE = np.array([[[-0.9, -0.9, 2.0], [-0.8, 0.8, 1.0], [0.8, 0.8, 0.5]]], np.float32)
DEPTH_RENDERER = jaxnmr.Renderer(image_size=64, anti_aliasing=False, perspective=False, camera_mode="none",
                                 rasterizer_eps=1e-4)
FACE = np.array([[[0, 1, 2]]], np.int32)


def depth_loss(v):
    return (DEPTH_RENDERER.render_depth(v, FACE)[0, 15, 20] - 1.0) ** 2


def test_depth_gradient_reference_values_and_finite_differences():
    depth = DEPTH_RENDERER.render_depth(DEPTH_TRIANGLE, FACE)
    np.testing.assert_allclose(float(depth[0, 15, 20]), 0.8318043, rtol=1e-6)
    grad = np.asarray(jax.grad(depth_loss)(DEPTH_TRIANGLE))[0]
    expected = [[-0.02433, -0.01002, -0.00973], [-0.07955, -0.03276, -0.12728], [-0.04158, -0.01712, -0.26612]]
    np.testing.assert_allclose(grad, expected, atol=1e-3)
    h = 1e-3
    fd = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            plus, minus = DEPTH_TRIANGLE.copy(), DEPTH_TRIANGLE.copy()
            plus[0, i, j] += h
            minus[0, i, j] -= h
            fd[i, j] = (float(depth_loss(plus)) - float(depth_loss(minus))) / (2 * h)
    np.testing.assert_allclose(grad, fd, atol=1e-3)
    assert np.abs(grad).max() > 0.1  # not vacuous


def test_texture_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    faces = np.array([[[-0.8, -0.7, 1.5], [0.9, -0.6, 2.0], [-0.1, 0.9, 1.0]]], np.float32)
    textures = rng.uniform(0, 1, (1, 3, 3, 3, 3)).astype(np.float32)
    weights = rng.normal(size=(16, 16, 3)).astype(np.float32)
    loss = lambda t: jnp.sum(jaxnmr.rasterize(faces, t, image_size=16) * weights)
    grad = np.asarray(jax.grad(loss)(textures))
    h = 1e-2
    for index in [(0, 0, 0, 2, 0), (0, 1, 1, 0, 1), (0, 2, 0, 0, 2), (0, 1, 0, 1, 0)]:
        plus, minus = textures.copy(), textures.copy()
        plus[index] += h
        minus[index] -= h
        fd = (float(loss(plus)) - float(loss(minus))) / (2 * h)
        np.testing.assert_allclose(grad[index], fd, rtol=1e-3, atol=1e-3)
    assert np.abs(grad).max() > 0.1


def test_texture_gradient_reaches_the_original_cube_through_fill_back():
    v = np.array([[-0.8, -0.7, 0.0], [0.9, -0.6, 0.0], [-0.1, 0.9, 0.0]], np.float32)
    f = np.array([[0, 2, 1]], np.int32)  # clockwise on screen: only the fill_back copy is drawn
    textures = np.random.default_rng(1).uniform(size=(1, 3, 3, 3, 3)).astype(np.float32)
    renderer = jaxnmr.Renderer(image_size=16, light_intensity_directional=0.0)
    grad = jax.grad(lambda t: renderer.render(v, f, t).sum())(textures)
    assert float(jnp.abs(grad).sum()) > 1.0


def test_a_step_against_the_silhouette_gradient_lowers_the_loss():
    sphere = meshes.icosphere(2, radius=0.5)
    v, f = sphere.vertices, sphere.faces
    renderer = jaxnmr.Renderer(image_size=32)
    target = renderer.render_silhouettes(v * np.float32([1.4, 0.8, 1.0]), f)
    loss = lambda v: jnp.sum((renderer.render_silhouettes(v, f) - target) ** 2)
    grad = jax.grad(loss)(v)
    assert float(jnp.abs(grad).sum()) > 0
    # the loss is piecewise constant: the step must move some vertex by a fraction of a pixel at least
    # (a pixel is ~0.02 world units here); 0.01 moves the fastest vertex by half a pixel
    step = v - 0.01 * grad / jnp.abs(grad).max()
    assert float(loss(step)) < float(loss(v))


# --- what is intentionally zero (docs/rasterizer.md, "Backward pass") -----------------------------------------


def test_intentionally_zero_gradients():
    faces = np.array([[[-0.5, -0.5, 1.0], [0.6, -0.4, 2.0], [0.0, 0.7, 1.5]],     # front face
                      [[-0.5, -0.5, 1.0], [0.0, 0.7, 1.5], [0.6, -0.4, 2.0]]],    # the same, back-facing
                     np.float32)
    textures = np.random.default_rng(2).uniform(size=(2, 2, 2, 2, 3)).astype(np.float32)
    w = np.random.default_rng(3).normal(size=(16, 16, 3)).astype(np.float32)
    bg = jnp.array([0.2, 0.3, 0.4])

    def rgb_alpha_loss(f, t, b):
        out = jaxnmr.rasterize_rgbad(f, t, image_size=16, background_color=b, return_depth=False)
        return jnp.sum(out.rgb * w) + jnp.sum(out.alpha * w[..., 0])

    gf, gt, gb = jax.grad(rgb_alpha_loss, argnums=(0, 1, 2))(faces, textures, bg)
    gf = np.asarray(gf)
    assert np.abs(gf[0, :, :2]).sum() > 0  # x, y of the drawn face move its edges
    assert np.all(gf[0, :, 2] == 0)       # rgb/alpha -> z: zero
    assert np.all(gf[1] == 0)             # back faces: zero
    assert np.all(np.asarray(gb) == 0)    # background: no gradient
    assert np.all(np.asarray(gt)[1] == 0)  # the hidden face's texture: zero
    # depth -> x, y, z is exact (no edge term): a depth loss gives gradient to z too
    gd = np.asarray(jax.grad(lambda f: jaxnmr.rasterize_depth(f, image_size=16).sum())(faces))
    assert np.abs(gd[0, :, 2]).sum() > 0 and np.all(gd[1] == 0)


# --- degenerate geometry (docs/rasterizer.md, "Numerical hazards") --------------------------------------------


@pytest.mark.parametrize(
    "face",
    [
        [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],                 # all vertices coincident
        [[-0.5, -0.5, 1.0], [0.5, 0.5, 1.0], [0.0, 0.0, 1.0]],               # collinear
        [[-0.5, 1 / 32, 1.0], [0.5, 1 / 32, 1.0], [0.0, 0.7, 1.0]],          # edge along a row of pixel centres
        [[1 / 32, -0.5, 1.0], [0.6, 0.5, 1.0], [1 / 32, 0.5, 1.0]],          # edge along a column of centres
        [[-3.0, -0.5, 1.0], [2.5, -0.6, 1.0], [0.0, 4.0, 1.0]],              # far across the image border
        [[-0.5, -0.5, 1.0], [0.5, -0.5, 1.0], [0.0, 0.5, -1.0]],             # a vertex behind the camera
    ],
)
def test_no_nan_or_inf_in_gradients_for_degenerate_faces(face):
    ok_face = [[-0.9, -0.9, 2.0], [-0.2, -0.9, 2.0], [-0.9, -0.2, 2.0]]
    faces = np.array([face, ok_face], np.float32)
    textures = np.ones((2, 2, 2, 2, 3), np.float32)
    w = np.random.default_rng(4).normal(size=(16, 16, 3)).astype(np.float32)

    def loss(f):
        out = jaxnmr.rasterize_rgbad(f, textures, image_size=16, anti_aliasing=False)
        return jnp.sum(out.rgb * w) + jnp.sum(out.alpha * w[..., 1]) + jnp.sum(jnp.where(out.depth < 100, out.depth, 0))

    grad = np.asarray(jax.grad(loss)(faces))
    assert np.all(np.isfinite(grad)), grad
    assert np.abs(grad[1]).sum() > 0


# --- the kernel against the oracle ---------------------------------------------------------------------------

_backward_kernel = jax.jit(ffi.rasterize_backward, static_argnames=("image_size", "eps"))
_backward_oracle = jax.jit(reference.rasterize_backward, static_argnames=("image_size", "eps"))


@settings(max_examples=examples(120), deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), config=st.sampled_from([((), 6, 12, 2), ((2,), 8, 16, 3), ((3,), 5, 9, 2)]),
       which=st.sampled_from(["all", "alpha", "rgb", "depth", "rgb+depth"]))
def test_backward_kernel_matches_oracle_on_random_scenes(seed, config, which):
    batch, F, S, T = config
    rng = np.random.default_rng(seed)
    faces, textures, background = random_scene(rng, batch, F, T)
    maps = ffi.rasterize_forward(faces, textures, background, image_size=S, near=0.1, far=100.0, eps=1e-3)
    g = {
        "rgb": rng.normal(size=batch + (S, S, 3)).astype(np.float32) if "rgb" in which or which == "all" else None,
        "alpha": rng.normal(size=batch + (S, S)).astype(np.float32) if which in ("alpha", "all") else None,
        "depth": rng.normal(size=batch + (S, S)).astype(np.float32) if "depth" in which or which == "all" else None,
    }
    args = (faces, textures, maps, g["rgb"], g["alpha"], g["depth"])
    got = _backward_kernel(*args, image_size=S, eps=1e-3)
    want = _backward_oracle(*args, image_size=S, eps=1e-3)
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            a, b = np.asarray(a), np.asarray(b)
            # 1e-4 relative to the gradient's scale: the two sum the same terms in different orders
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()))


@settings(max_examples=examples(20), deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), S=st.sampled_from([64, 90]), which=st.sampled_from(["alpha", "rgb", "all"]))
def test_backward_kernel_matches_oracle_with_sparse_cotangents(seed, S, which):
    """Cotangents that are zero outside a few patches, on images of several 16-pixel blocks per line (90: a
    partial last block): the kernel's outward scans clip to the lines' active spans and skip blocks without an
    active pixel, which must leave the result unchanged."""
    rng = np.random.default_rng(seed)
    faces, textures, background = random_scene(rng, (), 12, 2)
    maps = ffi.rasterize_forward(faces, textures, background, image_size=S, near=0.1, far=100.0, eps=1e-3)
    mask = np.zeros((S, S), np.float32)
    for _ in range(12):  # small patches, so that many 16-pixel groups hold active pixels in one block only
        r, c = rng.integers(0, S - 6, 2)
        h, w = rng.integers(1, 7), rng.integers(1, 4)
        mask[r:r + h, c:c + w] = 1.0
        mask[c:c + w, r:r + h] = 1.0  # and the same patch transposed, for the sweeps over columns
    g_alpha = (rng.normal(size=(S, S)) * mask).astype(np.float32) if which in ("alpha", "all") else None
    g_rgb = (rng.normal(size=(S, S, 3)) * mask[..., None]).astype(np.float32) if which in ("rgb", "all") else None
    args = (faces, textures, maps, g_rgb, g_alpha, None)
    got = _backward_kernel(*args, image_size=S, eps=1e-3)
    want = _backward_oracle(*args, image_size=S, eps=1e-3)
    assert np.abs(np.asarray(want[0])).max() > 0  # the patches do reach some edges
    for a, b in zip(got, want):
        if a is not None:
            a, b = np.asarray(a), np.asarray(b)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()))


def test_backward_is_deterministic():
    rng = np.random.default_rng(5)
    pot = meshes.teapot(resolution=4)
    v, f = pot.vertices, pot.faces
    t = rng.uniform(size=(f.shape[0], 2, 2, 2, 3)).astype(np.float32)
    w = rng.normal(size=(64, 64, 3)).astype(np.float32)
    renderer = jaxnmr.Renderer(image_size=64)
    grad = jax.jit(jax.grad(lambda v, t: jnp.sum(renderer.render(v, f, t) * w), argnums=(0, 1)))
    first = jax.block_until_ready(grad(v, t))
    for _ in range(3):
        again = grad(v, t)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- transformations -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_scene():
    sphere = meshes.icosphere(1, radius=0.6)
    v, f = sphere.vertices, sphere.faces
    return v, f, jaxnmr.Renderer(image_size=16)


def test_vmap_of_grad_is_one_backward_launch_and_matches_the_loop(small_scene):
    v, f, renderer = small_scene
    eyes = jaxnmr.get_points_from_angles(2.732, 20.0, jnp.array([0.0, 70.0, 200.0]))
    loss = lambda v, eye: jnp.sum(renderer.replace(eye=eye).render_silhouettes(v, f) * jnp.arange(16.0))
    batched = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))
    hlo = batched.lower(v, eyes).as_text()
    assert hlo.count("jaxnmr_rasterize_backward") == 1 and hlo.count("jaxnmr_rasterize_forward") == 1
    grads = batched(v, eyes)
    for i in range(3):
        # batched and single programs sum the per-face terms in different orders (float32, large terms)
        single = jax.grad(loss)(v, eyes[i])
        np.testing.assert_allclose(grads[i], single, rtol=1e-4, atol=1e-4 * float(jnp.abs(single).max()))


def test_grad_of_vmap_with_shared_faces(small_scene):
    v, f, renderer = small_scene
    vs = np.stack([v, v * 0.9, v * 1.1])
    loss = lambda vs: jnp.sum(jax.vmap(lambda x: renderer.render_silhouettes(x, f))(vs) ** 2)
    grads = jax.grad(loss)(vs)
    for i in range(3):
        single = jax.grad(lambda x: jnp.sum(renderer.render_silhouettes(x, f) ** 2))(vs[i])
        np.testing.assert_allclose(grads[i], single, rtol=1e-5, atol=1e-6)


def test_gradient_through_leading_dim_broadcasting(small_scene):
    """One mesh, several eyes by leading dims: the gradient sums over the views."""
    v, f, renderer = small_scene
    eyes = jaxnmr.get_points_from_angles(2.732, 20.0, jnp.array([0.0, 90.0]))
    g_both = jax.grad(lambda v: renderer.replace(eye=eyes).render_silhouettes(v, f).sum())(v)
    g_sum = sum(jax.grad(lambda v: renderer.replace(eye=e).render_silhouettes(v, f).sum())(v) for e in eyes)
    np.testing.assert_allclose(g_both, g_sum, rtol=1e-5, atol=1e-5)


def test_jacrev_on_a_small_image():
    faces = np.array([[[-0.6, -0.5, 1.0], [0.7, -0.4, 1.5], [0.0, 0.6, 1.2]]], np.float32)
    fn = lambda f: jaxnmr.rasterize_silhouettes(f, image_size=6, anti_aliasing=False)
    jac = np.asarray(jax.jacrev(fn)(faces))
    assert jac.shape == (6, 6, 1, 3, 3)
    for r in (1, 3):
        for c in (0, 4):
            row = jax.grad(lambda f: fn(f)[r, c])(faces)
            np.testing.assert_allclose(jac[r, c], row, rtol=1e-6, atol=1e-7)
    assert np.abs(jac).sum() > 0


def test_checkpoint(small_scene):
    v, f, renderer = small_scene
    loss = lambda v: jnp.sum(renderer.render_silhouettes(v, f) ** 2)
    np.testing.assert_allclose(jax.grad(jax.checkpoint(loss))(v), jax.grad(loss)(v), rtol=1e-6)


def test_jvp_is_a_clear_error(small_scene):
    v, f, renderer = small_scene
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda v: renderer.render_silhouettes(v, f), (v,), (jnp.ones_like(v),))


def test_fit_the_camera_eye_in_one_compiled_scan():
    """Recover the eye from a target silhouette of the teapot, starting 15 degrees off in azimuth."""
    pot = meshes.teapot(resolution=4)
    v, f = pot.vertices, pot.faces
    renderer = jaxnmr.Renderer(image_size=64)
    target = renderer.replace(eye=jaxnmr.get_points_from_angles(2.732, 30.0, 0.0)).render_silhouettes(v, f)

    def loss(eye):
        return jnp.sum((renderer.replace(eye=eye).render_silhouettes(v, f) - target) ** 2)

    fit = adam_fitter(loss, 0.01, 300)
    start = jaxnmr.get_points_from_angles(2.732, 30.0, 15.0)
    assert fit.lower(start).as_text().count("jaxnmr_rasterize_backward") == 1  # inside the scan body
    eye, losses = fit(start)

    def iou(eye):
        a = renderer.replace(eye=eye).render_silhouettes(v, f) > 0.5
        return float((a & (target > 0.5)).sum() / (a | (target > 0.5)).sum())

    assert iou(start) < 0.9
    assert iou(eye) > 0.95, (iou(eye), eye)
    assert float(losses[-1]) < 0.1 * float(losses[0])


def test_only_the_gradients_asked_for_are_computed():
    """Differentiating w.r.t. textures alone (or faces alone) gives the same values as the joint gradient; the
    kernel is told which terms to skip (the edge sweeps for a texture-only fit)."""
    rng = np.random.default_rng(7)
    faces = rng.uniform(-0.9, 0.9, (2, 8, 3, 3)).astype(np.float32)
    faces[..., 2] = rng.uniform(1.0, 3.0, (2, 8, 3))
    X, Y = faces[..., 0], faces[..., 1]
    clockwise = (X[..., 1] - X[..., 0]) * (Y[..., 2] - Y[..., 0]) < (Y[..., 1] - Y[..., 0]) * (X[..., 2] - X[..., 0])
    faces[clockwise] = faces[clockwise][:, ::-1]  # every face front-facing, so the scene is not empty
    textures = rng.uniform(0, 1, (2, 8, 3, 3, 3, 3)).astype(np.float32)
    background = np.zeros((2, 3), np.float32)
    w = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    loss = lambda f, t: jnp.sum(jaxnmr.rasterize(f, t, image_size=8) * w)
    g_joint = jax.grad(loss, argnums=(0, 1))(faces, textures)
    g_tex = jax.grad(loss, argnums=1)(faces, textures)
    g_faces = jax.grad(loss, argnums=0)(faces, textures)
    np.testing.assert_array_equal(np.asarray(g_tex), np.asarray(g_joint[1]))
    np.testing.assert_array_equal(np.asarray(g_faces), np.asarray(g_joint[0]))
    assert np.abs(np.asarray(g_faces)).sum() > 0 and np.abs(np.asarray(g_tex)).sum() > 0
    maps = ffi.rasterize_forward(faces, textures, background, image_size=16, near=0.1, far=100.0, eps=1e-3)
    g = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    only_tex = ffi.rasterize_backward(faces, textures, maps, g, None, None, image_size=16, eps=1e-3,
                                      want_faces=False)
    full = ffi.rasterize_backward(faces, textures, maps, g, None, None, image_size=16, eps=1e-3)
    assert np.all(np.asarray(only_tex[0]) == 0)
    np.testing.assert_array_equal(np.asarray(only_tex[1]), np.asarray(full[1]))
    only_faces = ffi.rasterize_backward(faces, textures, maps, g, None, None, image_size=16, eps=1e-3,
                                        want_textures=False)
    assert only_faces[1] is None
    np.testing.assert_array_equal(np.asarray(only_faces[0]), np.asarray(full[0]))
