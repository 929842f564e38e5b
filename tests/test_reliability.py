"""Reliability: adversarial input never crashes or corrupts, geometry faults have defined results, every
failure explains itself, and results repeat bit for bit."""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnmr
from jaxnmr import ffi, meshes, reference
from _helpers import examples

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_ffi_forward import assert_maps_match, random_scene  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]

# --- fuzzing: 250 examples x 4 scenes = 1000 scenes against the oracle --------------------------------------

SPECIAL = np.array([0.0, 1.0, -1.0, 0.5, -0.5, 1 / 16, -1 / 16, 3 / 16, 1e-30, -1e-30, 1e30, -1e30, 2.0, 0.1,
                    np.nan, np.inf, -np.inf], np.float32)


def adversarial_scene(rng, F):
    """Faces whose coordinates are drawn from special values (pixel-centre aligned, tiny, huge, non-finite)
    mixed with random ones, plus exact duplicates: the inputs most likely to hit an edge case."""
    faces = rng.uniform(-1.2, 1.2, (4, F, 3, 3)).astype(np.float32)
    faces[..., 2] = rng.uniform(0.05, 3.0, (4, F, 3))
    special = rng.random((4, F, 3, 3)) < 0.3
    faces[special] = rng.choice(SPECIAL, special.sum())
    dup = rng.random((4, F)) < 0.15
    faces[dup] = faces[:, :1].repeat(F, 1)[dup]
    return faces


_oracle = jax.jit(reference.rasterize_forward, static_argnames=("image_size", "near", "far", "eps"))
_kernel = jax.jit(ffi.rasterize_forward, static_argnames=("image_size", "near", "far", "eps"))


@settings(max_examples=examples(250), deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), adversarial=st.booleans())
def test_fuzz_forward_against_the_oracle(seed, adversarial):
    rng = np.random.default_rng(seed)
    if adversarial:
        faces = adversarial_scene(rng, 10)
        textures = rng.uniform(0, 1, (4, 10, 2, 2, 2, 3)).astype(np.float32)
        background = rng.uniform(0, 1, (4, 3)).astype(np.float32)
    else:
        faces, textures, background = random_scene(rng, (4,), 10, 2)
    kw = dict(image_size=16, near=0.1, far=50.0, eps=1e-3)
    got = _kernel(faces, textures, background, **kw)
    assert_maps_match(got, _oracle(faces, textures, background, **kw))
    for x in (got.weights, got.depth, got.rgb):
        assert np.all(np.isfinite(np.asarray(x)))  # no NaN/inf ever reaches an image


@settings(max_examples=examples(40), deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_fuzz_backward_is_finite_on_adversarial_scenes(seed):
    rng = np.random.default_rng(seed)
    faces = adversarial_scene(rng, 8)
    textures = rng.uniform(0, 1, (4, 8, 2, 2, 2, 3)).astype(np.float32)
    maps = _kernel(faces, textures, np.zeros(3, np.float32), image_size=16, near=0.1, far=50.0, eps=1e-3)
    g = [rng.normal(size=(4, 16, 16) + s).astype(np.float32) for s in ((3,), (), ())]
    g_faces, g_tex = ffi.rasterize_backward(faces, textures, maps, *g, image_size=16, eps=1e-3)
    finite_faces = np.all(np.isfinite(faces), axis=(-2, -1))
    assert np.all(np.isfinite(np.asarray(g_faces)[finite_faces]))
    assert np.all(np.asarray(g_faces)[~finite_faces] == 0)
    assert np.all(np.isfinite(np.asarray(g_tex)))


# --- geometry faults ---------------------------------------------------------------------------------------


def test_nan_and_inf_vertices_hide_their_faces_and_nothing_else():
    sphere = meshes.icosphere(1, radius=0.6)
    v, f = sphere.vertices, sphere.faces
    bad = v.copy()
    bad[3] = np.nan
    bad[7, 1] = np.inf
    renderer = jaxnmr.Renderer(image_size=32)
    textures = np.ones((f.shape[0], 2, 2, 2, 3), np.float32)
    rgb = np.asarray(renderer.render(bad, f, textures))
    assert np.all(np.isfinite(rgb))
    clean = np.asarray(renderer.render(v, f, textures))
    assert 0 < np.abs(rgb - clean).sum() < np.abs(clean).sum()  # only the touched faces went missing
    grad = np.asarray(jax.grad(lambda x: renderer.render_silhouettes(x, f).sum())(bad))
    touched = np.zeros(len(v), bool)
    touched[np.unique(f[np.isin(f, [3, 7]).any(1)])] = True
    assert np.all(np.isfinite(grad[~touched]))


def test_faces_at_or_behind_the_camera_plane_are_culled_not_garbage():
    """The original divides by z <= 0 and draws a garbage triangle across the image; such faces are culled."""
    cam = np.array([[-0.3, -0.3, 1.0], [0.3, -0.3, 1.0], [0.0, 0.3, -0.5]], np.float32)  # one vertex behind
    renderer = jaxnmr.Renderer(image_size=32, camera_mode="none", fill_back=True)
    f = np.array([[0, 1, 2]], np.int32)
    assert float(renderer.render_silhouettes(cam, f).sum()) == 0
    at_zero = cam.copy()
    at_zero[2, 2] = 0.0
    assert float(renderer.render_silhouettes(at_zero, f).sum()) == 0
    # in front of the camera but crossing `near`: clipped per pixel, the part beyond near is drawn
    crossing = cam.copy()
    crossing[2, 2] = 0.05
    depth = np.asarray(renderer.replace(anti_aliasing=False).render_depth(crossing, f))
    drawn = depth < 100
    assert drawn.sum() > 10 and depth[drawn].min() > 0.1


def test_zero_area_collinear_and_empty_meshes():
    renderer = jaxnmr.Renderer(image_size=16)
    v = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0.5, 0.5, 0], [-0.5, -0.5, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 3, 4]], np.int32)
    out = renderer.render_rgbad(v, f, np.ones((2, 2, 2, 2, 3), np.float32))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in out)
    g = jax.grad(lambda x: renderer.render_silhouettes(x, f).sum())(v)
    assert np.all(np.isfinite(np.asarray(g)))
    empty = renderer.render_rgbad(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32),
                                  np.zeros((0, 2, 2, 2, 3), np.float32))
    assert float(empty.alpha.sum()) == 0 and np.all(np.asarray(empty.depth) == 100)
    no_faces = renderer.render_silhouettes(v, np.zeros((0, 3), np.int32))
    assert float(no_faces.sum()) == 0


@pytest.mark.parametrize("scale", [1e6, 1e20, 3e38])
def test_huge_coordinates(scale):
    faces = np.array([[[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 1.0, 1.0]]], np.float32)
    faces[..., :2] *= scale
    out = jaxnmr.rasterize_rgbad(faces, np.ones((1, 2, 2, 2, 3), np.float32), image_size=8)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in out)
    g = jax.grad(lambda f: jaxnmr.rasterize_silhouettes(f, image_size=8).sum())(faces)
    assert np.all(np.isfinite(np.asarray(g)))


# --- errors that explain themselves ----------------------------------------------------------------------------


def test_image_too_large_for_memory_is_a_clear_error():
    faces = np.zeros((1000, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"image_size=16384 \(internal 32768x32768\).*GiB"):
        jaxnmr.rasterize_silhouettes(faces, image_size=16384)


def test_negative_near_is_rejected():
    with pytest.raises(ValueError, match="near must be >= 0"):
        jaxnmr.Renderer(near=-1.0)
    with pytest.raises(ValueError, match="near must be >= 0"):
        jaxnmr.rasterize_depth(np.zeros((1, 3, 3), np.float32), near=-0.5)


def test_check_mesh():
    box = meshes.cube()
    v, f = box.vertices, box.faces
    report = jaxnmr.check_mesh(v, f)
    assert report == {"num_vertices": 8, "num_faces": 12, "degenerate_faces": 0, "unused_vertices": 0}
    with pytest.raises(ValueError, match=r"faces\[3\] = .* outside the 8 vertices"):
        bad = f.copy()
        bad[3, 1] = 8
        jaxnmr.check_mesh(v, bad)
    with pytest.raises(ValueError, match=r"vertices\[5\] = .* not finite"):
        nan = v.copy()
        nan[5, 0] = np.nan
        jaxnmr.check_mesh(nan, f)
    with pytest.raises(TypeError, match="outside jit"):
        jax.jit(jaxnmr.check_mesh)(v, f)
    extra = np.concatenate([v, np.zeros((1, 3), np.float32)])
    assert jaxnmr.check_mesh(extra, np.concatenate([f, [[0, 0, 1]]]))["degenerate_faces"] == 1


def test_renderer_rejects_out_of_range_faces_eagerly():
    box = meshes.cube()
    v, f = box.vertices, box.faces
    bad = f.copy()
    bad[2, 0] = -1
    with pytest.raises(ValueError, match=r"faces\[2\]"):
        jaxnmr.Renderer(image_size=8).render_silhouettes(v, bad)


# --- determinism ---------------------------------------------------------------------------------------------


def test_render_and_gradient_are_bit_identical_on_cpu():
    pot = meshes.teapot(resolution=4)
    v, f = pot.vertices, pot.faces
    rng = np.random.default_rng(0)
    t = rng.uniform(size=(f.shape[0], 3, 3, 3, 3)).astype(np.float32)
    w = rng.normal(size=(64, 64, 3)).astype(np.float32)
    renderer = jaxnmr.Renderer(image_size=64)

    def loss(v, t):
        out = renderer.render_rgbad(v, f, t)
        return jnp.sum(out.rgb * w) + jnp.sum(out.alpha * w[..., 0]) + jnp.sum(out.depth * w[..., 1])

    images = jax.jit(lambda v, t: renderer.render_rgbad(v, f, t))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))
    first = [np.asarray(x) for x in (*images(v, t), *grads(v, t))]
    again = [np.asarray(x) for x in (*images(v, t), *grads(v, t))]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


# --- no input crashes the process ------------------------------------------------------------------------------

NASTY = textwrap.dedent(
    """
    import numpy as np, jax, jax.numpy as jnp, jaxnmr
    from jaxnmr import ffi
    results = []
    def attempt(name, fn):
        try:
            out = fn()
            jax.block_until_ready(out)
            results.append((name, "ok"))
        except Exception as e:  # a Python exception is the acceptable failure
            results.append((name, type(e).__name__))
    nan = np.full((3, 3, 3), np.nan, np.float32)
    inf = np.full((3, 3, 3), np.inf, np.float32)
    attempt("nan faces", lambda: jaxnmr.rasterize_rgbad(nan, np.ones((3, 2, 2, 2, 3), np.float32), image_size=8))
    attempt("inf faces", lambda: jax.grad(lambda f: jaxnmr.rasterize_silhouettes(f, image_size=8).sum())(inf))
    attempt("max float", lambda: jaxnmr.rasterize_depth(np.full((2, 3, 3), 3.4e38, np.float32), image_size=8))
    attempt("denormals", lambda: jaxnmr.rasterize_depth(np.full((2, 3, 3), 1e-45, np.float32), image_size=8))
    attempt("image 1", lambda: jaxnmr.rasterize_silhouettes(np.random.rand(5, 3, 3).astype(np.float32), image_size=1))
    attempt("huge image", lambda: jaxnmr.rasterize_silhouettes(np.zeros((1000, 1, 3, 3), np.float32), image_size=16384))
    attempt("bad index jit", lambda: jax.jit(jaxnmr.vertices_to_faces)(np.zeros((3, 3), np.float32), np.array([[0, 1, 99]], np.int32)))
    attempt("empty", lambda: jaxnmr.Renderer(image_size=4).render_silhouettes(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)))
    attempt("nan textures", lambda: jaxnmr.rasterize(np.random.rand(2, 3, 3).astype(np.float32) + 1, np.full((2, 2, 2, 2, 3), np.nan, np.float32), image_size=8))
    out = (jax.ShapeDtypeStruct((2, 8, 8), jnp.int32), jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32),
           jax.ShapeDtypeStruct((2, 8, 8), jnp.float32), jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32))
    ffi.kernel_available("cpu")
    raw = jax.ffi.ffi_call("jaxnmr_rasterize_forward", out)
    attempt("raw call, wrong textures", lambda: raw(np.zeros((2, 4, 3, 3), np.float32), np.zeros((2, 4, 1, 1, 1, 3), np.float32), np.zeros((2, 3), np.float32), image_size=np.int32(8), near=np.float32(0.1), far=np.float32(100), eps=np.float32(1e-4), with_rgb=np.int32(1), with_maps=np.int32(1)))
    attempt("raw call, wrong size attr", lambda: raw(np.zeros((2, 4, 3, 3), np.float32), np.zeros((2, 4, 2, 2, 2, 3), np.float32), np.zeros((2, 3), np.float32), image_size=np.int32(9999), near=np.float32(0.1), far=np.float32(100), eps=np.float32(1e-4), with_rgb=np.int32(1), with_maps=np.int32(1)))
    attempt("raw call, negative size", lambda: raw(np.zeros((2, 4, 3, 3), np.float32), np.zeros((2, 4, 2, 2, 2, 3), np.float32), np.zeros((2, 3), np.float32), image_size=np.int32(-8), near=np.float32(0.1), far=np.float32(100), eps=np.float32(1e-4), with_rgb=np.int32(1), with_maps=np.int32(1)))
    for name, outcome in results:
        print(f"{name}: {outcome}")
    """
)


def test_nastiest_inputs_raise_python_exceptions_never_signals(tmp_path):
    script = tmp_path / "nasty.py"
    script.write_text(NASTY)
    # the same jaxnmr this process imported (installed, or the checkout during development)
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(jaxnmr.__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, f"process died (return code {proc.returncode}):\n{proc.stderr[-3000:]}"
    outcomes = dict(line.split(": ", 1) for line in proc.stdout.strip().splitlines())
    assert len(outcomes) == 12, proc.stdout
    assert outcomes["huge image"] == "ValueError"
    assert outcomes["raw call, wrong textures"] != "ok" and outcomes["raw call, wrong size attr"] != "ok"
    assert outcomes["raw call, negative size"] != "ok"
    assert outcomes["nan faces"] == "ok" and outcomes["empty"] == "ok"


# -- a camera that can see nothing, and other first-hour findings ----------------------------------------------

@pytest.mark.parametrize("settings, message", [
    (dict(viewing_angle=0.0), r"viewing_angle .* must be in \(0, 90\), got 0.0"),
    (dict(viewing_angle=90.0), r"viewing_angle .* must be in \(0, 90\), got 90.0"),
    (dict(viewing_angle=-10.0, eye=(0.0, 0.0, -3.0)), r"viewing_angle .* must be in \(0, 90\)"),
    (dict(eye=(0.0, 0.0, 0.0)), r"eye \[0.0, 0.0, 0.0\] is at the point looked at"),
    (dict(eye=[[0.0, 0.0, -3.0], [0.0, 0.0, 0.0]]), r"eye .* is at the point looked at"),
    (dict(camera_mode="look", camera_direction=(0.0, 0.0, 0.0)), r"camera_direction must be non-zero"),
])
def test_a_camera_that_sees_nothing_raises(settings, message):
    with pytest.raises(ValueError, match=message):
        jaxnmr.Renderer(image_size=8, **settings)


def test_a_camera_that_sees_nothing_under_jit_renders_background_with_zero_gradients():
    """Under jit the values are unknown when the checks run: the documented result is an empty image."""
    box = meshes.cube()
    v, f = box.vertices, box.faces
    v = np.asarray(v, np.float32) * 0.5

    def loss(v, angle, eye):
        r = jaxnmr.Renderer(image_size=8, viewing_angle=angle, eye=eye)
        return jnp.sum(r.render_silhouettes(v, f)), r.render_silhouettes(v, f)

    for angle, eye in ((0.0, (0.0, 0.0, -3.0)), (90.0, (0.0, 0.0, -3.0)), (30.0, (0.0, 0.0, 0.0))):
        (value, image), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(v, jnp.float32(angle),
                                                                              jnp.asarray(eye, jnp.float32))
        assert float(np.abs(np.asarray(image)).max()) == 0.0, (angle, eye)
        assert np.isfinite(np.asarray(g)).all() and float(np.abs(np.asarray(g)).max()) == 0.0, (angle, eye)


def test_rasterize_defaults_to_the_same_eps_as_its_siblings():
    import inspect

    for fn in (jaxnmr.rasterize, jaxnmr.rasterize_rgbad, jaxnmr.rasterize_silhouettes, jaxnmr.rasterize_depth):
        assert inspect.signature(fn).parameters["eps"].default == 1e-4, fn.__name__


def test_downsample_of_an_odd_image_names_the_shape():
    from jaxnmr.rasterizer import downsample_2x2

    with pytest.raises(ValueError, match=r"downsample_2x2: image must be \[\.\.\., 2H, 2W, C\] with an even "
                                         r"height and width .* got shape \(5, 4, 3\)"):
        downsample_2x2(jnp.zeros((5, 4, 3)))
    with pytest.raises(ValueError, match=r"\[\.\.\., 2H, 2W\] .* got shape \(4, 7\)"):
        downsample_2x2(jnp.zeros((4, 7)), channels=False)
    assert downsample_2x2(jnp.ones((2, 4, 6)), channels=False).shape == (2, 2, 3)
