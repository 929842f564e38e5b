"""The forward kernel against the dense oracle (jaxnmr.reference) on random scenes, and the kernel's own checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnmr import ffi, reference
from _helpers import examples



def test_cpu_kernel_is_built_and_registered():
    """A missing library would silently fall back to the oracle; in the test suite it is a failure."""
    assert ffi.library_path().is_file(), f"{ffi.library_path()} missing: reinstall jaxnmr (pip install .)"
    assert ffi.kernel_available("cpu")

# (batch shape, F, S, T): a few fixed shapes so the oracle compiles once per shape.
CONFIGS = [((), 1, 8, 2), ((), 9, 17, 3), ((2,), 16, 24, 2), ((3,), 7, 13, 4), ((2, 2), 12, 16, 2), ((1,), 0, 8, 2)]
RANGES = [(0.1, 100.0), (0.5, 3.0)]


def random_scene(rng: np.random.Generator, batch, F, T):
    """Random faces in NDC with every hazard mixed in: back faces (half, by chance), slivers, collinear and
    coincident vertices, exact duplicates (depth ties), vertices behind `near` or beyond `far`, faces larger
    than the image, and non-finite vertices."""
    faces = rng.uniform(-1.3, 1.3, batch + (F, 3, 3)).astype(np.float32)
    faces[..., 2] = rng.uniform(0.2, 4.0, batch + (F, 3))
    flat = faces.reshape(-1, 3, 3)
    for face in flat:
        kind = rng.integers(0, 12)
        if kind == 0:  # sliver: third vertex almost on the first edge
            t = rng.uniform(0, 1)
            face[2, :2] = face[0, :2] + t * (face[1, :2] - face[0, :2]) + rng.normal(0, 1e-3, 2)
        elif kind == 1:  # exactly collinear
            face[2, :2] = 0.5 * (face[0, :2] + face[1, :2])
        elif kind == 2:  # all vertices coincident
            face[1] = face[0]
            face[2] = face[0]
        elif kind == 3:  # a vertex behind the camera / near plane
            face[rng.integers(0, 3), 2] = rng.uniform(-2.0, 0.15)
        elif kind == 4:  # beyond far
            face[:, 2] = rng.uniform(2.5, 200.0, 3)
        elif kind == 5:  # larger than the image
            face[:, :2] *= 4.0
        elif kind == 6 and len(flat) > 1:  # duplicate of another face: an exact depth tie
            face[:] = flat[rng.integers(0, len(flat))]
        elif kind == 7:
            face[rng.integers(0, 3), rng.integers(0, 3)] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == 8:  # axis-aligned edge through pixel centres
            face[1, 1] = face[0, 1]
    textures = rng.uniform(0, 1, batch + (F, T, T, T, 3)).astype(np.float32)
    background = rng.uniform(0, 1, batch + (3,)).astype(np.float32)
    return faces, textures, background


_oracle = jax.jit(reference.rasterize_forward, static_argnames=("image_size", "near", "far", "eps"))
_kernel = jax.jit(ffi.rasterize_forward, static_argnames=("image_size", "near", "far", "eps"))


def assert_maps_match(got, want):
    np.testing.assert_array_equal(np.asarray(got.face_index), np.asarray(want.face_index))
    for name in ("weights", "depth", "rgb"):
        g, w = getattr(got, name), getattr(want, name)
        assert (g is None) == (w is None), name
        if g is not None:
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5, err_msg=name)


@settings(max_examples=examples(240), deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    config=st.sampled_from(CONFIGS),
    depth_range=st.sampled_from(RANGES),
    with_rgb=st.booleans(),
)
def test_kernel_matches_oracle_on_random_scenes(seed, config, depth_range, with_rgb):
    batch, F, S, T = config
    near, far = depth_range
    faces, textures, background = random_scene(np.random.default_rng(seed), batch, F, T)
    textures = textures if with_rgb else None
    kw = dict(image_size=S, near=near, far=far, eps=1e-3)
    assert_maps_match(_kernel(faces, textures, background, **kw), _oracle(faces, textures, background, **kw))


def test_random_scenes_draw_something():
    """The random scenes are not vacuous: faces are drawn, some lose the z-test, some are culled."""
    faces, textures, background = random_scene(np.random.default_rng(1), (4,), 16, 2)
    maps = _kernel(faces, textures, background, image_size=24, near=0.1, far=100.0, eps=1e-3)
    fi = np.asarray(maps.face_index)
    assert (fi >= 0).mean() > 0.2
    assert len(np.unique(fi)) > 8


def test_ties_go_to_the_lowest_face_index():
    face = np.array([[-0.5, -0.5, 1.0], [0.5, -0.5, 1.0], [0.0, 0.5, 1.0]], np.float32)
    faces = np.stack([face * [1, 1, 2], face, face])  # face 0 is behind; faces 1 and 2 tie
    maps = ffi.rasterize_forward(faces, None, np.zeros(3, np.float32), image_size=16, near=0.1, far=100, eps=1e-4)
    fi = np.asarray(maps.face_index)
    assert set(np.unique(fi)) == {-1, 1}


def test_many_tiny_faces_at_high_resolution():
    """20k tiny faces at 1024^2 (what a pixels x faces loop could not do in a test's time; the speed itself is
    measured by benchmarks/scaling.py): every face is drawn where, and only where, it should be."""
    rng = np.random.default_rng(0)
    F, S = 20000, 1024
    centres = rng.uniform(-0.98, 0.98, (F, 1, 2))
    offsets = np.array([[0, 0], [0.004, 0], [0, 0.004]])
    faces = np.concatenate([centres + offsets, rng.uniform(1, 2, (F, 1, 1)).repeat(3, 1)], -1).astype(np.float32)
    maps = jax.jit(lambda f: ffi.rasterize_forward(f, None, jnp.zeros(3), image_size=S, near=0.1, far=100,
                                                   eps=1e-4))(faces)
    fi = np.asarray(maps.face_index)
    drawn = fi >= 0
    assert drawn.sum() > 1000
    # each drawn pixel's centre lies inside (the bounding box of) the face drawn there
    rows, cols = np.nonzero(drawn)
    x, y = (2 * cols + 1 - S) / S, (2 * rows + 1 - S) / S
    tri = faces[fi[rows, cols]]
    assert np.all((x >= tri[:, :, 0].min(1) - 1e-6) & (x <= tri[:, :, 0].max(1) + 1e-6))
    assert np.all((y >= tri[:, :, 1].min(1) - 1e-6) & (y <= tri[:, :, 1].max(1) + 1e-6))


# --- the kernel's own validation: bad buffers give an error, never an out-of-bounds access ----------------


def _raw_call(faces, textures, background, out_batch, S, with_rgb=1, rgb_side=None, S_attr=None):
    rgb_side = S if rgb_side is None else rgb_side
    out = (
        jax.ShapeDtypeStruct(out_batch + (S, S), jnp.int32),
        jax.ShapeDtypeStruct(out_batch + (S, S, 3), jnp.float32),
        jax.ShapeDtypeStruct(out_batch + (S, S), jnp.float32),
        jax.ShapeDtypeStruct(out_batch + (rgb_side, rgb_side, 3), jnp.float32),
    )
    call = jax.ffi.ffi_call("jaxnmr_rasterize_forward", out)
    return jax.block_until_ready(call(
        jnp.asarray(faces), jnp.asarray(textures), jnp.asarray(background),
        image_size=np.int32(S if S_attr is None else S_attr), near=np.float32(0.1), far=np.float32(100),
        eps=np.float32(1e-4), with_rgb=np.int32(with_rgb), with_maps=np.int32(1),
    ))


@pytest.mark.parametrize(
    "case, match",
    [
        (dict(faces=np.zeros((3, 4, 3, 3)), out_batch=(2,)), "does not broadcast"),
        (dict(faces=np.zeros((2, 4, 3, 2)), out_batch=(2,)), "trailing dimension"),
        (dict(textures=np.zeros((2, 5, 2, 2, 2, 3)), out_batch=(2,)), "trailing dimension"),
        (dict(textures=np.zeros((2, 4, 1, 1, 1, 3)), out_batch=(2,)), "texture size T"),
        (dict(S_attr=9, out_batch=(2,)), "output face_index has shape"),
        (dict(rgb_side=4, out_batch=(2,)), "output rgb has shape"),
        (dict(background=np.zeros((2, 4)), out_batch=(2,)), "trailing dimension"),
    ],
)
def test_kernel_rejects_inconsistent_buffers(case, match):
    args = dict(faces=np.zeros((2, 4, 3, 3)), textures=np.zeros((2, 4, 2, 2, 2, 3)), background=np.zeros((2, 3)))
    args.update({k: case[k].astype(np.float32) for k in ("faces", "textures", "background") if k in case})
    with pytest.raises(Exception, match=match):
        _raw_call(args["faces"], args["textures"], args["background"], case["out_batch"], 8,
                  rgb_side=case.get("rgb_side"), S_attr=case.get("S_attr"))


def test_kernel_rejects_bad_attributes():
    z = np.zeros((1, 1, 3, 3), np.float32)
    call = jax.ffi.ffi_call("jaxnmr_rasterize_forward", (
        jax.ShapeDtypeStruct((1, 4, 4), jnp.int32), jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32),
        jax.ShapeDtypeStruct((1, 4, 4), jnp.float32), jax.ShapeDtypeStruct((1, 0, 0, 3), jnp.float32)))
    common = dict(image_size=np.int32(4), eps=np.float32(1e-4), with_rgb=np.int32(0), with_maps=np.int32(1))
    with pytest.raises(Exception, match="near must be < far"):
        jax.block_until_ready(call(z, np.zeros((1, 1, 2, 2, 2, 3), np.float32), np.zeros((1, 3), np.float32),
                                   near=np.float32(2), far=np.float32(1), **common))


def test_forward_without_maps_gives_the_same_face_index_and_silhouette_gradient():
    """with_maps=False (the silhouette path) skips the weights and depth maps, nothing else changes."""
    rng = np.random.default_rng(7)
    faces, _, background = random_scene(rng, (2,), 24, 2)
    full = ffi.rasterize_forward(faces, None, background, image_size=32, near=0.1, far=100.0, eps=1e-4)
    lean = ffi.rasterize_forward(faces, None, background, image_size=32, near=0.1, far=100.0, eps=1e-4,
                                 with_maps=False)
    assert lean.weights is None and lean.depth is None and lean.rgb is None
    np.testing.assert_array_equal(np.asarray(lean.face_index), np.asarray(full.face_index))
    assert (np.asarray(full.face_index) >= 0).sum() > 50  # the scene draws something
    g_alpha = jnp.asarray(rng.normal(size=(2, 32, 32)).astype(np.float32))
    g_full, _ = ffi.rasterize_backward(faces, None, full, None, g_alpha, None, image_size=32, eps=1e-4)
    g_lean, _ = ffi.rasterize_backward(faces, None, lean, None, g_alpha, None, image_size=32, eps=1e-4)
    np.testing.assert_array_equal(np.asarray(g_lean), np.asarray(g_full))
    assert np.abs(np.asarray(g_full)).max() > 0
    with pytest.raises(ValueError, match="need the forward's maps"):  # a depth gradient reads them
        ffi.rasterize_backward(faces, None, lean, None, None, g_alpha, image_size=32, eps=1e-4)
    with pytest.raises(ValueError, match="with_maps=True"):
        ffi.rasterize_forward(faces, jnp.zeros((2, 24, 2, 2, 2, 3)), background, image_size=32, near=0.1,
                              far=100.0, eps=1e-4, with_maps=False)
