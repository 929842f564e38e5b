import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import meshes


@pytest.fixture(scope="module")
def teapot():
    pot = meshes.teapot(resolution=4)
    v, f = pot.vertices, pot.faces
    return v, f, np.ones((f.shape[0], 2, 2, 2, 3), np.float32)


def test_defaults_follow_nmr():
    r = jaxnmr.Renderer()
    np.testing.assert_allclose(r.eye, [0, 0, -2.7320508], rtol=1e-6)
    assert (r.image_size, r.anti_aliasing, r.fill_back, r.perspective) == (256, True, True, True)
    assert (r.near, r.far, r.rasterizer_eps, r.camera_mode) == (0.1, 100.0, 1e-3, "look_at")


def test_is_a_pytree_with_array_leaves_and_static_settings():
    r = jaxnmr.Renderer(image_size=32)
    leaves, treedef = jax.tree_util.tree_flatten(r)
    assert len(leaves) == 10  # LookAt: eye, viewing_angle, at, up; AmbientLight 2, DirectionalLight 3; background
    r2 = jax.tree_util.tree_unflatten(treedef, leaves)
    assert r2.image_size == 32 and np.array_equal(r2.eye, r.eye)
    other = jax.tree_util.tree_flatten(r.replace(image_size=64))[1]
    assert other != treedef  # static settings are part of the structure


def test_replace_returns_a_new_validated_renderer():
    r = jaxnmr.Renderer()
    r2 = r.replace(eye=(1.0, 2.0, 3.0))
    np.testing.assert_array_equal(r2.eye, [1, 2, 3])
    np.testing.assert_allclose(r.eye, [0, 0, -2.7320508], rtol=1e-6)
    with pytest.raises(ValueError, match="camera_mode must be one of"):
        r.replace(camera_mode="orbit")
    with pytest.raises(Exception):
        r.image_size = 5  # frozen


def test_render_outputs_and_shapes(teapot):
    v, f, t = teapot
    r = jaxnmr.Renderer(image_size=32)
    out = r.render_rgbad(v, f, t)
    assert out.rgb.shape == (32, 32, 3) and out.alpha.shape == (32, 32) and out.depth.shape == (32, 32)
    np.testing.assert_array_equal(r.render(v, f, t), out.rgb)
    np.testing.assert_array_equal(r.render_silhouettes(v, f), out.alpha)
    np.testing.assert_array_equal(r.render_depth(v, f), out.depth)
    assert 0.1 < float(out.alpha.mean()) < 0.9


def test_renderer_as_a_jit_argument_and_vmap_over_eyes_is_one_launch(teapot):
    v, f, t = teapot
    r = jaxnmr.Renderer(image_size=16)
    eyes = jaxnmr.get_points_from_angles(2.732, 30.0, jnp.arange(0.0, 360.0, 45.0))

    def render(renderer, eye):
        return renderer.replace(eye=eye).render(v, f, t)

    batched = jax.jit(jax.vmap(render, in_axes=(None, 0)))
    assert batched.lower(r, eyes).as_text().count("jaxnmr_rasterize_forward") == 1
    images = batched(r, eyes)
    assert images.shape == (8, 16, 16, 3)
    for i in (0, 3):
        np.testing.assert_allclose(images[i], r.replace(eye=eyes[i]).render(v, f, t), atol=1e-6)
    # leading-dims batching of the eye gives the same images
    np.testing.assert_allclose(r.replace(eye=eyes).render(v, f, t), images, atol=1e-6)


def test_camera_modes(teapot):
    v, f, _ = teapot
    base = jaxnmr.Renderer(image_size=16)
    cam = jaxnmr.look_at(v, base.eye)
    a = base.render_silhouettes(v, f)
    b = base.replace(camera_mode="none").render_silhouettes(cam, f)
    c = base.replace(camera_mode="look", camera_direction=-base.eye).render_silhouettes(v, f)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_silhouettes_and_depth_honour_near_and_far(teapot):
    v, f, _ = teapot
    r = jaxnmr.Renderer(image_size=16)
    assert float(r.replace(far=1.0).render_silhouettes(v, f).sum()) == 0
    depth = r.replace(far=50.0).render_depth(v, f)
    assert float(depth.max()) == 50.0


def test_fill_back_draws_outward_wound_meshes(teapot):
    v, f, _ = teapot
    r = jaxnmr.Renderer(image_size=16)
    near_side = np.asarray(r.replace(anti_aliasing=False).render_depth(v, f))
    far_side = np.asarray(r.replace(anti_aliasing=False, fill_back=False).render_depth(v, f))
    covered = (near_side < 100) & (far_side < 100)
    # NMR's mirrored camera culls the camera-facing side of a CCW-outward mesh: without fill_back the far
    # (inside) surface is what is drawn
    assert covered.sum() > 20 and (far_side[covered] > near_side[covered]).mean() > 0.9


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda r, v, f, t: r.render(v.astype(np.int32), f, t), TypeError, "vertices must be a floating-point"),
        (lambda r, v, f, t: r.render(v, f.astype(np.float32), t), TypeError, "faces must be an integer array"),
        (lambda r, v, f, t: r.render(v, f, t[:-1]), ValueError, "one cube per face"),
        (lambda r, v, f, t: r.render_silhouettes(v[:, :2], f), ValueError, r"vertices must have shape \[\.\.\., N, 3\]"),
        (lambda r, v, f, t: jaxnmr.Renderer(image_size=0), ValueError, "image_size"),
        (lambda r, v, f, t: jaxnmr.Renderer(near=5.0, far=1.0), ValueError, "near must be smaller"),
        (lambda r, v, f, t: jaxnmr.Renderer(eye=(0.0, 1.0)), ValueError, r"eye must have shape \[\.\.\., 3\]"),
    ],
)
def test_bad_inputs(teapot, call, exc, match):
    v, f, t = teapot
    with pytest.raises(exc, match=match):
        call(jaxnmr.Renderer(image_size=8), v, f, t)
