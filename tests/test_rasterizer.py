"""Entry points: orientation, anti-aliasing, background, depth, batching, transformations, input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import reference
from jaxnmr.rasterizer import downsample_2x2

# A counter-clockwise (front-facing) triangle in the upper-right quarter of the image.
TRI = np.array([[[0.2, 0.2, 1.0], [0.9, 0.2, 1.0], [0.2, 0.9, 1.0]]], np.float32)


def test_row_zero_is_the_top_and_column_zero_the_left():
    alpha = np.asarray(jaxnmr.rasterize_silhouettes(TRI, image_size=16, anti_aliasing=False))
    rows, cols = np.nonzero(alpha)
    assert rows.max() < 8 and cols.min() >= 8  # upper-right quarter
    assert alpha.sum() > 5


def test_back_faces_are_culled_and_fill_back_is_not_applied_here():
    alpha = jaxnmr.rasterize_silhouettes(TRI[:, ::-1], image_size=16, anti_aliasing=False)
    assert float(alpha.sum()) == 0


def test_anti_aliasing_is_the_mean_of_2x2_blocks():
    full = jaxnmr.rasterize_rgbad(TRI, np.full((1, 2, 2, 2, 3), 0.7, np.float32), image_size=32,
                                  anti_aliasing=False, background_color=(0.1, 0.2, 0.3))
    aa = jaxnmr.rasterize_rgbad(TRI, np.full((1, 2, 2, 2, 3), 0.7, np.float32), image_size=16,
                                anti_aliasing=True, background_color=(0.1, 0.2, 0.3))
    for name in ("rgb", "alpha", "depth"):
        f, a = np.asarray(getattr(full, name)), np.asarray(getattr(aa, name))
        expected = f.reshape(16, 2, 16, 2, *f.shape[2:]).mean(axis=(1, 3))
        np.testing.assert_allclose(a, expected, rtol=1e-6, err_msg=name)
    alpha = np.asarray(aa.alpha)
    assert ((alpha > 0) & (alpha < 1)).any()  # edges are fractional
    depth = np.asarray(aa.depth)
    assert depth.max() == 100.0 and ((depth > 1.0) & (depth < 100.0)).any()  # edge pixels mix in far


def test_downsample_2x2_shapes():
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    assert downsample_2x2(x, True).shape == (2, 2, 3, 3)
    assert downsample_2x2(x[..., 0], False).shape == (2, 2, 3)
    assert float(downsample_2x2(x, True)[0, 0, 0, 0]) == float(x[0, :2, :2, 0].mean())


def test_background_and_texture_colours():
    rgb = np.asarray(jaxnmr.rasterize(TRI, np.full((1, 3, 3, 3, 3), 0.25, np.float32), image_size=16,
                                      anti_aliasing=False, background_color=(0.0, 0.5, 1.0)))
    assert np.allclose(rgb[0, 0], [0.0, 0.5, 1.0])
    assert np.allclose(rgb[5, 10], 0.25, atol=1e-6)  # NDC (0.31, 0.31), inside the triangle


def test_near_and_far_clip_by_interpolated_depth():
    tilted = np.array([[[-1, -1, 0.5], [1, -1, 0.5], [-1, 1, 5.0]]], np.float32)
    d_all = np.asarray(jaxnmr.rasterize_depth(tilted, image_size=32, anti_aliasing=False))
    d_far = np.asarray(jaxnmr.rasterize_depth(tilted, image_size=32, anti_aliasing=False, far=1.0))
    d_near = np.asarray(jaxnmr.rasterize_depth(tilted, image_size=32, anti_aliasing=False, near=1.0))
    drawn = d_all < 100
    assert (d_far < 1.0).sum() == ((d_all < 1.0) & drawn).sum() > 0
    assert ((d_near < 100) == (drawn & (d_all > 1.0))).all()


def test_batching_by_leading_dims_matches_one_by_one():
    rng = np.random.default_rng(0)
    face_vertices = rng.uniform(-1, 1, (2, 3, 10, 3, 3)).astype(np.float32)
    face_vertices[..., 2] = rng.uniform(1, 3, (2, 3, 10, 3))
    textures = rng.uniform(0, 1, (10, 2, 2, 2, 3)).astype(np.float32)  # shared by every batch element
    batched = jaxnmr.rasterize_rgbad(face_vertices, textures, image_size=12)
    for i in range(2):
        for j in range(3):
            single = jaxnmr.rasterize_rgbad(face_vertices[i, j], textures, image_size=12)
            for name in RGBAD_FIELDS:
                np.testing.assert_array_equal(getattr(batched, name)[i, j], getattr(single, name), err_msg=name)


RGBAD_FIELDS = ("rgb", "alpha", "depth")


def test_numpy_and_jax_inputs_and_jit_agree():
    face_vertices = np.asarray(TRI)
    a = jaxnmr.rasterize_silhouettes(face_vertices, image_size=8)
    b = jaxnmr.rasterize_silhouettes(jnp.asarray(face_vertices), image_size=8)
    c = jax.jit(jaxnmr.rasterize_silhouettes, static_argnames="image_size")(face_vertices, image_size=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a.dtype == jnp.float32


def _launches(fn, *args) -> int:
    return jax.jit(fn).lower(*args).as_text().count("jaxnmr_rasterize_forward")


def test_vmap_is_one_kernel_launch_and_matches_the_loop():
    rng = np.random.default_rng(1)
    face_vertices = rng.uniform(-1, 1, (5, 8, 3, 3)).astype(np.float32)
    face_vertices[..., 2] = 2.0
    textures = rng.uniform(0, 1, (8, 2, 2, 2, 3)).astype(np.float32)
    fn = lambda f: jaxnmr.rasterize(f, textures, image_size=8)
    assert _launches(jax.vmap(fn), face_vertices) == 1
    out = jax.vmap(fn)(face_vertices)
    for i in range(5):
        np.testing.assert_array_equal(out[i], fn(face_vertices[i]))
    nested = jax.vmap(jax.vmap(fn))
    assert _launches(nested, face_vertices.reshape(5, 1, 8, 3, 3)) == 1
    np.testing.assert_array_equal(nested(face_vertices.reshape(5, 1, 8, 3, 3))[:, 0], out)


def test_vmap_over_textures_only_broadcasts_the_faces():
    rng = np.random.default_rng(2)
    textures = rng.uniform(0, 1, (3, 4, 2, 2, 2, 3)).astype(np.float32)
    face_vertices = np.concatenate([TRI] * 4)
    out = jax.vmap(lambda t: jaxnmr.rasterize(face_vertices, t, image_size=8))(textures)
    for i in range(3):
        np.testing.assert_array_equal(out[i], jaxnmr.rasterize(face_vertices, textures[i], image_size=8))


def test_empty_mesh_renders_background():
    out = jaxnmr.rasterize_rgbad(np.zeros((0, 3, 3), np.float32), np.zeros((0, 2, 2, 2, 3), np.float32),
                                 image_size=4, background_color=(1, 0, 0))
    assert np.allclose(out.rgb, [1, 0, 0]) and float(out.alpha.sum()) == 0 and np.all(out.depth == 100)


def test_reference_fallback_matches_the_entry_point():
    """The oracle path used on back ends without a kernel gives the same public images."""
    rng = np.random.default_rng(3)
    face_vertices = rng.uniform(-1, 1, (6, 3, 3)).astype(np.float32)
    face_vertices[..., 2] = rng.uniform(1, 2, (6, 3))
    maps = reference.rasterize_forward(face_vertices, None, np.zeros(3, np.float32), image_size=16, near=0.1, far=100,
                                       eps=1e-4)
    alpha = (np.asarray(maps.face_index) >= 0).astype(np.float32)[::-1]
    np.testing.assert_array_equal(alpha, jaxnmr.rasterize_silhouettes(face_vertices, image_size=16,
                                                                      anti_aliasing=False))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(face_vertices=np.zeros((4, 3), np.float32)), ValueError,
         r"face_vertices must have shape \[\.\.\., F, 3, 3\], got shape \(4, 3\)"),
        (dict(face_vertices=np.zeros((4, 3, 3), np.int32)), TypeError, "face_vertices must be a floating-point array"),
        (dict(textures=np.zeros((5, 2, 2, 2, 3), np.float32)), ValueError, "one cube per face: face_vertices has F=4"),
        (dict(textures=np.zeros((4, 2, 3, 2, 3), np.float32)), ValueError, "textures must be cubes"),
        (dict(textures=np.zeros((4, 1, 1, 1, 3), np.float32)), ValueError, "T >= 2"),
        (dict(image_size=0), ValueError, r"image_size must be in \[1, 16384\], got 0"),
        (dict(image_size=2.5), TypeError, "image_size must be a Python int"),
        (dict(near=2.0, far=1.0), ValueError, "near must be smaller than far"),
        (dict(eps=0.0), ValueError, "eps must be > 0"),
        (dict(background_color=(1, 0)), ValueError, "background_color must have shape"),
        (dict(return_rgb=False, return_alpha=False, return_depth=False), ValueError, "at least one"),
        (dict(face_vertices=np.zeros((2, 4, 3, 3), np.float32), background_color=np.zeros((3, 3), np.float32)),
         ValueError, "do not broadcast"),
    ],
)
def test_bad_inputs_fail_at_trace_time_with_clear_messages(kwargs, exc, match):
    args = dict(face_vertices=np.zeros((4, 3, 3), np.float32), textures=np.zeros((4, 2, 2, 2, 3), np.float32))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        jaxnmr.rasterize_rgbad(**args)


def test_anti_aliasing_pool_gradient_is_a_quarter_per_pixel_as_autodiff_gives():
    """The renderer's 2x2 pool has a hand-written VJP (one broadcast); it must equal autodiff of the mean."""
    from jaxnmr.rasterizer import _finish

    rng = np.random.default_rng(3)
    image = jnp.asarray(rng.normal(size=(2, 8, 6, 3)).astype(np.float32))
    weights = jnp.asarray(rng.normal(size=(2, 4, 3, 3)).astype(np.float32))
    for channels in (True, False):
        x = image if channels else image[..., 0]
        w = weights if channels else weights[..., 0]
        ours = jax.grad(lambda a: jnp.sum(_finish(a, channels, True) * w))(x)
        autodiff = jax.grad(lambda a: jnp.sum(jnp.flip(downsample_2x2(a, channels), -3 if channels else -2) * w))(x)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(autodiff))
        np.testing.assert_array_equal(np.asarray(_finish(x, channels, True)),
                                      np.asarray(jnp.flip(downsample_2x2(x, channels), -3 if channels else -2)))
        assert float(jnp.abs(ours).max()) > 0
