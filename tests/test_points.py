"""Point clouds: rasterize_points, the compositors and Renderer.render_points (docs/points.md).

The kernels themselves are compared with the oracle in tests/test_points_kernels.py; here the public functions:
orientation, validation, compositing against a plain loop, gradients against central differences, one launch per
vmapped batch, every camera against the mesh it samples, and the default radius.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import meshes, reference

K = 4


def _ndc_points(rng, P, spread=0.8):
    return np.concatenate([rng.uniform(-spread, spread, (P, 2)), rng.uniform(1.0, 3.0, (P, 1))], -1).astype(np.float32)


# -- the primitive ---------------------------------------------------------------------------------------------


def test_fragments_are_the_oracles_with_row_zero_at_the_top():
    rng = np.random.default_rng(0)
    points = _ndc_points(rng, 40)
    radius = rng.uniform(0.05, 0.3, 40).astype(np.float32)
    got = jaxnmr.rasterize_points(points, radius, image_size=12, points_per_pixel=K)
    want = reference.rasterize_points_forward(points, radius, image_size=12, points_per_pixel=K, near=0.1, far=100.0)
    np.testing.assert_array_equal(np.asarray(got.index), np.asarray(want.index)[::-1])
    np.testing.assert_allclose(np.asarray(got.depth), np.asarray(want.depth)[::-1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got.dist2), np.asarray(want.dist2)[::-1], rtol=1e-5, atol=1e-7)
    # a point near the top-left corner lands in the first row and column
    corner = jaxnmr.rasterize_points(np.array([[-0.9, 0.9, 2.0]], np.float32), 0.1, image_size=10,
                                     points_per_pixel=1)
    assert int(corner.index[0, 0, 0]) == 0 and int(corner.index[-1, -1, 0]) == -1


def test_slots_are_nearest_first_with_lower_index_on_ties():
    points = np.array([[0, 0, 3.0], [0, 0, 1.0], [0, 0, 2.0], [0, 0, 1.0]], np.float32)
    f = jaxnmr.rasterize_points(points, 0.5, image_size=4, points_per_pixel=3)
    centre = f.index[1, 1]
    assert centre.tolist() == [1, 3, 2]
    assert f.depth[1, 1].tolist() == [1.0, 1.0, 2.0]
    assert f.dist2[0, 0].tolist() == [-1.0, -1.0, -1.0] and f.depth[0, 0].tolist() == [100.0] * 3


@pytest.mark.parametrize("call, match", [
    (lambda: jaxnmr.rasterize_points(np.zeros((5, 2), np.float32), 0.1), r"points must have shape \[..., P, 3\]"),
    (lambda: jaxnmr.rasterize_points(np.zeros((5, 3), np.float32), np.ones(4, np.float32)),
     r"radius must be .* \[..., P\] with P = 5 .* got shape \(4,\)"),
    (lambda: jaxnmr.rasterize_points(np.zeros((5, 3), np.float32), -0.1), r"radius must be finite and >= 0 .*got -0.1"),
    (lambda: jaxnmr.rasterize_points(np.zeros((5, 3), np.float32), np.nan), r"radius must be finite"),
    (lambda: jaxnmr.rasterize_points(np.zeros((5, 3), np.float32), 0.1, points_per_pixel=65),
     r"points_per_pixel must be in \[1, 64\], got 65"),
    (lambda: jaxnmr.rasterize_points(np.zeros((5, 3), np.int32), 0.1), r"points must be a floating-point array"),
    (lambda: jaxnmr.rasterize_points(np.zeros((2, 5, 3), np.float32), np.ones((3, 1), np.float32)),
     r"leading \(batch\) dims .* do not broadcast .* points \(2,\), radius \(3,\)"),
    (lambda: jaxnmr.Renderer(image_size=8).render_points(np.zeros((5, 3)), np.zeros((4, 3))),
     r"features must have one row per point: points has P=5"),
    (lambda: jaxnmr.Renderer(image_size=8).render_points(np.zeros((5, 3)), np.zeros((5, 3)), compositor="max"),
     r"compositor must be one of 'alpha', 'weighted_sum', got 'max'"),
    (lambda: jaxnmr.alpha_composite(np.zeros((2, 2, 0)), np.zeros((2, 2, 0, 3))),
     r"alpha_composite: weights \[..., H, W, K\] need at least one slot \(K >= 1\), got shape \(2, 2, 0\)"),
    (lambda: jaxnmr.compositing.coverage(np.zeros((2, 2, 0))), r"coverage: .* need at least one slot"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# -- compositing -----------------------------------------------------------------------------------------------


def _loop_composite(weights, values, kind):
    H, W, Ks = weights.shape
    out = np.zeros((H, W, values.shape[-1]))
    alpha = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            left, acc, total = 1.0, 0.0, 0.0
            for k in range(Ks):
                w = weights[i, j, k]
                acc = acc + (w * left if kind == "alpha" else w) * values[i, j, k]
                total += w
                left *= 1.0 - w
            out[i, j] = acc if kind == "alpha" else (acc / total if total > 0 else 0.0)
            alpha[i, j] = 1.0 - left
    return out, alpha


@pytest.mark.parametrize("kind", ["alpha", "weighted_sum"])
def test_compositors_are_the_loop(kind):
    rng = np.random.default_rng(1)
    weights = rng.uniform(0, 1, (3, 4, 5)).astype(np.float32)
    weights[0, 0] = 0.0  # a pixel no slot covers
    weights[1, 1, 0] = 1.0  # an opaque front slot hides the rest
    values = rng.uniform(-1, 1, (3, 4, 5, 2)).astype(np.float32)
    out, alpha = jaxnmr.compositing.COMPOSITORS[kind](weights, values)
    want_out, want_alpha = _loop_composite(weights, values, kind)
    np.testing.assert_allclose(np.asarray(out), want_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(alpha), want_alpha, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["alpha", "weighted_sum"])
def test_compositor_gradients_are_those_of_the_plain_formula(kind):
    """The blend's hand-written VJP against JAX's derivative of the formula written plainly (a cumulative
    product), on random weights with the edge values 0 and 1 (an opaque slot: nothing behind it gets a
    gradient) and a batch dim."""
    rng = np.random.default_rng(2)
    weights = rng.uniform(0, 1, (2, 3, 4, 5)).astype(np.float32)
    weights[0, 0, 0] = 0.0
    weights[1, 1, 1, 2] = 1.0
    weights[0, 2, 3, 0] = 0.0
    weights[1, 2, 0, 1] = weights[1, 2, 0, 3] = 1.0  # two opaque slots: no gradient at all to alpha
    values = rng.uniform(-1, 1, (2, 3, 4, 5, 3)).astype(np.float32)
    g = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)

    def plain(w, v):
        if kind == "alpha":
            left = jnp.cumprod(jnp.concatenate([jnp.ones_like(w[..., :1]), 1.0 - w[..., :-1]], axis=-1), axis=-1)
            return jnp.sum((w * left)[..., None] * v, axis=-2)
        total = jnp.sum(w, axis=-1)
        return jnp.sum(w[..., None] * v, axis=-2) / jnp.where(total > 0, total, 1.0)[..., None]

    composite = jaxnmr.compositing.COMPOSITORS[kind]
    got = jax.jit(jax.grad(lambda w, v: jnp.sum(composite(w, v)[0] * g), argnums=(0, 1)))(weights, values)
    want = jax.jit(jax.grad(lambda w, v: jnp.sum(plain(w, v) * g), argnums=(0, 1)))(weights, values)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    got_vmap = jax.jit(jax.vmap(jax.grad(lambda w, v, g: jnp.sum(composite(w, v)[0] * g))))(weights, values, g)
    np.testing.assert_allclose(np.asarray(got_vmap), np.asarray(want[0]), rtol=1e-5, atol=1e-6)
    # alpha (both compositors'): the gradient of 1 - Π (1 - w), exact where a weight is 1
    h = rng.normal(size=(2, 3, 4)).astype(np.float32)
    got = jax.jit(jax.grad(lambda w: jnp.sum(composite(w, values)[1] * h)))(weights)
    want = jax.jit(jax.grad(lambda w: jnp.sum((1.0 - jnp.prod(1.0 - w, axis=-1)) * h)))(weights)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(got)[1, 1, 1, 3:] == 0.0) and np.asarray(got)[1, 1, 1, 2] != 0.0  # behind the opaque slot


def test_weights_use_each_slots_own_radius_and_vanish_at_the_rim():
    points = np.array([[0.0, 0.0, 1.0], [0.5, 0.5, 2.0]], np.float32)
    radius = np.array([0.6, 0.2], np.float32)
    f = jaxnmr.rasterize_points(points, radius, image_size=8, points_per_pixel=2)
    w = np.asarray(jaxnmr.point_weights(f, radius))
    index, dist2 = np.asarray(f.index), np.asarray(f.dist2)
    filled = index >= 0
    want = np.where(filled, 1.0 - dist2 / radius[np.maximum(index, 0)] ** 2, 0.0)
    np.testing.assert_allclose(w, want, rtol=1e-6, atol=1e-7)
    assert (w >= 0).all() and (w <= 1).all() and (w[~filled] == 0).all()
    gathered = np.asarray(jaxnmr.gather_points(np.array([[1.0], [2.0]], np.float32), f.index))[..., 0]
    np.testing.assert_array_equal(gathered, np.where(filled, index + 1.0, 0.0))


# -- gradients ---------------------------------------------------------------------------------------------------


def _central(f, x, h):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (float(f((x + e).astype(np.float32))) - float(f((x - e).astype(np.float32)))) / (2 * h)
    return g


def test_fragment_gradients_are_central_differences():
    """depth and dist2 are smooth in the positions while no point crosses a pixel centre's rim: checked where the
    coverage at +-h equals the coverage at the point itself."""
    rng = np.random.default_rng(2)
    points = _ndc_points(rng, 6, 0.5)
    a, b = rng.normal(size=(2, 10, 10, 3)).astype(np.float32)
    render = jax.jit(lambda p: jaxnmr.rasterize_points(p, 0.35, image_size=10, points_per_pixel=3))

    def loss(p):
        f = render(p)
        return jnp.sum(jnp.where(f.index >= 0, a * f.depth + b * f.dist2, 0.0))

    h = 1e-3
    grad = np.asarray(jax.grad(loss)(points))
    numeric = _central(loss, points, h)
    base = np.asarray(render(points).index)
    checked = 0
    for i in np.ndindex(*points.shape):
        e = np.zeros_like(points)
        e[i] = h
        if all(np.array_equal(np.asarray(render(points + s * e).index), base) for s in (1, -1)):
            np.testing.assert_allclose(grad[i], numeric[i], rtol=2e-2, atol=2e-2, err_msg=str(i))
            checked += 1
    assert checked >= points.size * 2 // 3, f"only {checked} of {points.size} coordinates were smooth"
    assert np.abs(grad).max() > 0


def test_rendered_points_gradients_are_central_differences():
    """The composited image is continuous in positions, radius and features (weights fall to 0 at the rim), and
    smooth between the events where two points swap depth order; the points here have distinct depths."""
    rng = np.random.default_rng(3)
    renderer = jaxnmr.Renderer(camera=jaxnmr.CameraSpace(), image_size=8, background_color=(0.2, 0.3, 0.4))
    points = np.concatenate([rng.uniform(-0.25, 0.25, (5, 2)), np.linspace(2.0, 2.8, 5)[:, None]], -1)
    points = points.astype(np.float32)
    colors = rng.uniform(0, 1, (5, 3)).astype(np.float32)
    target = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)

    @jax.jit
    def loss(p, c, r):
        out = renderer.render_points(p, c, radius=r, points_per_pixel=5)
        return jnp.sum((out.rgb - target) ** 2) + jnp.sum(out.alpha)

    radius = np.float32(0.3)
    g_p, g_c, g_r = jax.grad(loss, argnums=(0, 1, 2))(points, colors, radius)
    np.testing.assert_allclose(g_p, _central(lambda p: loss(p, colors, radius), points, 1e-3), rtol=5e-2, atol=5e-2)
    np.testing.assert_allclose(g_c, _central(lambda c: loss(points, c, radius), colors, 1e-3), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(g_r, _central(lambda r: loss(points, colors, r), radius, 1e-4), rtol=5e-2)
    assert np.abs(g_p[:, :2]).max() > 0.1  # positions do get a gradient


# -- batching ------------------------------------------------------------------------------------------------------


def test_64_views_are_one_launch_forward_and_one_backward():
    points = jnp.asarray(meshes.icosphere(1).vertices) * 0.8
    colors = jnp.ones_like(points)
    renderer = jaxnmr.Renderer(image_size=16)
    eyes = jnp.asarray(jaxnmr.turntable_eyes(64, distance=2.7, elevation=20.0))

    def loss(p):
        views = jax.vmap(lambda eye: renderer.replace(eye=eye).render_points(p, colors, radius=0.1).alpha)(eyes)
        return jnp.sum(views)

    hlo = jax.jit(jax.value_and_grad(loss)).lower(points).as_text()
    assert hlo.count("jaxnmr_rasterize_points_forward") == 1
    assert hlo.count("jaxnmr_rasterize_points_backward") == 1
    per_view = jnp.stack([loss_one for loss_one in
                          (jnp.sum(renderer.replace(eye=e).render_points(points, colors, radius=0.1).alpha)
                           for e in eyes[:3])])
    batched = jax.vmap(lambda eye: renderer.replace(eye=eye).render_points(points, colors, radius=0.1).alpha)(eyes)
    np.testing.assert_allclose(np.asarray(batched[:3].sum(axis=(1, 2))), np.asarray(per_view), rtol=1e-5)


# -- the renderer ---------------------------------------------------------------------------------------------


def _cameras():
    R, t = jaxnmr.look_at_view_transform(2.7, 25.0, 40.0)
    K_ = np.array([[300.0, 0, 128], [0, 300.0, 128], [0, 0, 1]], np.float32)
    R_cv = np.asarray(R).T  # OpenCV's column-vector rotation from the row-vector R
    return {
        "LookAt": jaxnmr.LookAt(jaxnmr.get_points_from_angles(2.7, 25.0, 40.0)),
        "LookAt(orthographic)": jaxnmr.LookAt(jaxnmr.get_points_from_angles(2.7, 25.0, 40.0), perspective=False),
        "Look": jaxnmr.Look((0.3, 0.4, -2.7), (-0.1, -0.15, 1.0)),
        "CameraSpace": jaxnmr.CameraSpace(),
        "OpenCV": jaxnmr.OpenCV(K_, R_cv, np.asarray(t), np.array([0.01, -0.01, 0, 0, 0], np.float32), 256),
        "FoV": jaxnmr.FoV(R, t, 50.0),
        "Orthographic": jaxnmr.Orthographic(R, t, 0.8),
    }


def _dilate(mask):
    """Each pixel or-ed with its 8 neighbours."""
    out = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(mask, (dy, dx), (0, 1))
    return out


def footprint(depth):
    """Per pixel, the largest depth difference to its 8 neighbours: how much depth changes within one pixel."""
    out = np.zeros_like(depth)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out = np.maximum(out, np.abs(depth - np.roll(depth, (dy, dx), (0, 1))))
    return out


def _erode(mask):
    return ~_dilate(~mask)


@pytest.fixture(scope="module")
def sphere_and_samples():
    sphere = meshes.icosphere(3)
    v, f = jnp.asarray(sphere.vertices) * 0.7, jnp.asarray(sphere.faces)
    points = jaxnmr.sample_points(jax.random.key(0), v, f, 30000)
    return v, f, points


@pytest.mark.parametrize("name", list(_cameras()))
def test_every_camera_draws_points_where_it_draws_their_mesh(name, sphere_and_samples):
    """A dense sample of a sphere, drawn with the default radius (one pixel), covers what the sphere covers, give
    or take the one-pixel rim its discs add, and its depth is the sphere's within one pixel's footprint (the
    nearest point of a disc one pixel wide), with every camera."""
    v, f, points = sphere_and_samples
    camera = _cameras()[name]
    if name == "CameraSpace":
        v, points = v + jnp.array([0.0, 0.0, 2.7]), points + jnp.array([0.0, 0.0, 2.7])
    renderer = jaxnmr.Renderer(camera=camera, image_size=32, anti_aliasing=False)
    mesh_depth = np.asarray(renderer.render_depth(v, f))
    cloud = renderer.render_points(points, jnp.ones_like(points))
    a, b = mesh_depth < renderer.far, np.asarray(cloud.alpha) > 0
    assert a.sum() > 50, "the sphere must be in view"
    assert b[_erode(a)].all(), "holes inside the silhouette"
    assert not (b & ~_dilate(a)).any(), "points drawn more than a pixel outside the silhouette"
    inner = _erode(a)
    err = np.abs(np.asarray(cloud.depth) - mesh_depth)[inner]
    assert (err <= footprint(mesh_depth)[inner] + 1e-4 * mesh_depth[inner]).all()


def test_default_radius_closes_the_gaps_of_a_dense_sample(sphere_and_samples):
    """30000 samples of a sphere filling ~1/4 of a 64-pixel image put more than one point in each pixel: the
    default radius (one pixel) leaves no hole inside the silhouette, where half a pixel does."""
    v, f, points = sphere_and_samples
    renderer = jaxnmr.Renderer(image_size=64, anti_aliasing=False)
    inner = _erode(np.asarray(renderer.render_silhouettes(v, f)) > 0)  # away from the rim
    colors = jnp.ones_like(points)
    default = np.asarray(renderer.render_points(points, colors).alpha)
    assert (default[inner] > 0.5).all()
    assert (default[inner] > 0.5).mean() > (np.asarray(
        renderer.render_points(points, colors, radius=0.25 * 2 / 64).alpha)[inner] > 0.5).mean()


def test_background_anti_aliasing_and_feature_channels():
    points = np.array([[0.0, 0.0, 0.0]], np.float32)
    r = jaxnmr.Renderer(image_size=8, background_color=(0.1, 0.2, 0.3))
    out = r.render_points(points, np.array([[1.0, 1.0, 1.0]], np.float32), radius=0.3)
    np.testing.assert_allclose(np.asarray(out.rgb[0, 0]), [0.1, 0.2, 0.3], rtol=1e-6)
    assert float(out.alpha[0, 0]) == 0.0 and float(out.depth[0, 0]) == r.far
    assert 0 < float(out.alpha[4, 4]) <= 1
    # any number of channels, composited over zero
    two = r.render_points(points, np.array([[2.0, -1.0]], np.float32), radius=0.3)
    assert two.rgb.shape == (8, 8, 2) and float(two.rgb[0, 0, 0]) == 0.0
    # without anti-aliasing the images are the internal ones: alpha is exactly the front weight's alpha
    sharp = r.replace(anti_aliasing=False).render_points(points, np.ones((1, 3), np.float32), radius=0.3)
    assert sharp.alpha.shape == (8, 8)
    f = jaxnmr.rasterize_points(r.camera.to_ndc(points), 0.3, image_size=8, points_per_pixel=8)
    np.testing.assert_allclose(np.asarray(sharp.alpha), np.asarray(jaxnmr.point_weights(f, 0.3)[..., 0]),
                               rtol=1e-6)


@pytest.mark.parametrize("name", list(_cameras()))
def test_depth_round_trip_reproduces_the_mesh_depth_within_one_pixel(name, sphere_and_samples):
    """render_depth -> unproject_depth -> render_points gives back the mesh's depth image: at every pixel the mesh
    covers, the points cover it too, and their depth differs from the mesh's by at most the depth change across
    one pixel (to a neighbour), for every camera. (The default radius is one pixel, so a pixel shows its own
    point or one of its four nearest neighbours, whichever is nearer.)"""
    v, f, _ = sphere_and_samples
    camera = _cameras()[name]
    if name == "CameraSpace":
        v = v + jnp.array([0.0, 0.0, 2.7])
    renderer = jaxnmr.Renderer(camera=camera, image_size=32, anti_aliasing=False)
    depth = np.asarray(renderer.render_depth(v, f))
    covered = depth < renderer.far
    points = np.asarray(jaxnmr.unproject_depth(depth, renderer))[covered.reshape(-1)]
    again = renderer.render_points(points, np.ones_like(points))
    assert covered.sum() > 50
    assert (np.asarray(again.alpha)[covered] > 0).all()
    err = np.abs(np.asarray(again.depth) - depth)[covered]
    assert (err <= footprint(depth)[covered] + 1e-5 * depth[covered]).all(), err.max()
