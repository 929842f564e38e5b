"""G-buffers: the kernel's face index and depth, perspective-correct barycentrics, their gradients, interpolation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import ffi, meshes, reference
from jaxnmr.mesh import fill_back


# compiled once per shape (op-by-op dispatch of these pipelines costs seconds of compilation)
gbuffers = jax.jit(jaxnmr.rasterize_gbuffers, static_argnames=("image_size", "near", "far", "eps"))
interpolate = jax.jit(jaxnmr.interpolate)


def random_face_vertices(rng, batch, F):
    """Front- and back-facing triangles in NDC at depths 1-3 (the z-buffer decides where they overlap)."""
    face_vertices = rng.uniform(-1.2, 1.2, batch + (F, 3, 3)).astype(np.float32)
    face_vertices[..., 2] = rng.uniform(1.0, 3.0, batch + (F, 3))
    return face_vertices


def pixel_centres(S):
    """NDC (x of each column, y of each row) with row 0 at the top, written out from docs/conventions.md,
    "Pixel centres" and "Output orientation"."""
    c = np.arange(S)
    return (2 * c + 1 - S) / S, (2 * (S - 1 - c) + 1 - S) / S


def test_face_index_depth_and_alpha_are_the_kernels_and_the_oracles():
    rng = np.random.default_rng(0)
    face_vertices = random_face_vertices(rng, (2,), 14)
    S = 24
    g = gbuffers(face_vertices, image_size=S)
    assert g.face_index.dtype == jnp.int32 and g.face_index.shape == (2, S, S)
    assert g.barycentrics.shape == (2, S, S, 3) and g.depth.shape == g.alpha.shape == (2, S, S)
    kernel = ffi.rasterize_forward(face_vertices, None, np.zeros(3, np.float32), image_size=S, near=0.1, far=100.0,
                                   eps=1e-4)
    oracle = reference.rasterize_forward(face_vertices, None, np.zeros(3, np.float32), image_size=S, near=0.1,
                                         far=100.0, eps=1e-4)
    fi = np.asarray(g.face_index)
    np.testing.assert_array_equal(fi, np.asarray(kernel.face_index)[:, ::-1])  # internal row 0 = bottom
    np.testing.assert_array_equal(fi, np.asarray(oracle.face_index)[:, ::-1])
    assert (fi >= 0).sum() > 200 and len(np.unique(fi)) > 8
    np.testing.assert_array_equal(g.depth, jaxnmr.rasterize_depth(face_vertices, S, anti_aliasing=False))
    np.testing.assert_allclose(g.depth, np.asarray(oracle.depth)[:, ::-1], rtol=1e-6)
    np.testing.assert_array_equal(g.alpha, jaxnmr.rasterize_silhouettes(face_vertices, S, anti_aliasing=False))
    np.testing.assert_array_equal(np.asarray(g.alpha), (fi >= 0).astype(np.float32))


def test_barycentrics_of_one_triangle_match_a_numpy_hand_computation():
    S = 32
    tri = np.array([[[-0.7, -0.6, 1.0], [0.8, -0.3, 4.0], [-0.2, 0.75, 2.0]]], np.float32)
    g = gbuffers(tri, image_size=S)
    xs, ys = pixel_centres(S)
    x, y = np.meshgrid(xs, ys)  # [S, S]: row R, column C
    M = np.concatenate([tri[0, :, :2].T.astype(np.float64), np.ones((1, 3))])  # columns (X_k, Y_k, 1)
    w = np.linalg.solve(M, np.stack([x.ravel(), y.ravel(), np.ones(S * S)])).T.reshape(S, S, 3)
    inside = (w >= 0).all(-1)
    clear = np.abs(w).min(-1) > 1e-4  # not on an edge
    covered = np.asarray(g.face_index) == 0
    np.testing.assert_array_equal(covered[clear], inside[clear])
    assert covered.sum() > 150 and (np.asarray(g.face_index)[~covered] == -1).all()
    q = np.clip(w, 0, 1) / tri[0, :, 2]
    expected = q / q.sum(-1, keepdims=True)  # perspective-correct: weights of the camera-space point
    b = np.asarray(g.barycentrics)
    np.testing.assert_allclose(b[covered], expected[covered], atol=2e-6)
    np.testing.assert_allclose(b[covered].sum(-1), 1.0, atol=1e-6)
    assert (b[~covered] == 0).all()
    # screen-space and perspective-correct weights differ where the depths differ
    assert np.abs(expected[covered] - w[covered]).max() > 0.1


def test_barycentrics_reproduce_the_kernels_depth_and_the_pixel_centres():
    rng = np.random.default_rng(1)
    face_vertices = random_face_vertices(rng, (), 20)
    S = 40
    g = gbuffers(face_vertices, image_size=S)
    fi, b, depth = np.asarray(g.face_index), np.asarray(g.barycentrics), np.asarray(g.depth)
    covered = fi >= 0
    corners = face_vertices[np.maximum(fi, 0)].astype(np.float64)  # [S, S, 3, 3]
    Z = corners[..., 2]
    z = (b * Z).sum(-1)  # camera-space points interpolate linearly in perspective-correct weights
    # the exact depth in float64: 1 / z = sum_k w_k / Z_k with the screen-space weights w of the pixel centre
    xs, ys = pixel_centres(S)
    M = np.concatenate([np.swapaxes(corners[..., :2], -1, -2), np.ones((S, S, 1, 3))], axis=-2)
    rhs = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], 1.0), -1)
    w = np.linalg.solve(M[covered], rhs[covered][..., None])[..., 0]
    exact = 1.0 / (w / Z[covered]).sum(-1)
    np.testing.assert_allclose(z[covered], exact, rtol=2e-6)
    # the kernel's float32 depth (from a pixel-space inverse) is within 2e-5 of it, also on thin faces
    np.testing.assert_allclose(depth[covered], exact, rtol=2e-5)
    np.testing.assert_allclose(z[covered], depth[covered], rtol=2e-5)
    # NDC = camera x / z (up to the field of view), so sum_k b_k X_k Z_k / z is the pixel centre
    x = (b * corners[..., 0] * Z).sum(-1)[covered] / z[covered]
    y = (b * corners[..., 1] * Z).sum(-1)[covered] / z[covered]
    np.testing.assert_allclose(x, np.broadcast_to(xs[None, :], (S, S))[covered], atol=2e-6)
    np.testing.assert_allclose(y, np.broadcast_to(ys[:, None], (S, S))[covered], atol=2e-6)


@pytest.fixture(scope="module")
def sphere_view():
    sphere = meshes.icosphere(2, radius=0.8)
    v, f = sphere.vertices, sphere.faces
    eye = np.array([0.4, 0.7, -2.5], np.float32)
    project = lambda p: jaxnmr.perspective(jaxnmr.look_at(p, eye))
    return v, f, eye, project


def test_interpolated_world_positions_project_onto_the_pixel_centres(sphere_view):
    v, f, eye, project = sphere_view
    f2 = fill_back(f)
    S = 48
    g = gbuffers(jax.jit(project)(v)[f2], image_size=S)
    positions = interpolate(v, g, f2)
    covered = np.asarray(g.face_index) >= 0
    assert covered.sum() > 400
    ndc = np.asarray(jax.jit(project)(positions.reshape(-1, 3))).reshape(S, S, 3)
    xs, ys = pixel_centres(S)
    np.testing.assert_allclose(ndc[..., 0][covered], np.broadcast_to(xs[None, :], (S, S))[covered], atol=1e-5)
    np.testing.assert_allclose(ndc[..., 1][covered], np.broadcast_to(ys[:, None], (S, S))[covered], atol=1e-5)
    np.testing.assert_allclose(ndc[..., 2][covered], np.asarray(g.depth)[covered], rtol=1e-5)
    assert (np.asarray(positions)[~covered] == 0).all()
    # per-corner attributes give the same as per-vertex attributes with the faces
    corners = jaxnmr.vertices_to_faces(v, f2)
    np.testing.assert_allclose(interpolate(corners, g), positions, rtol=1e-6, atol=1e-7)


def test_interpolate_broadcasts_attributes_over_batched_gbuffers(sphere_view):
    v, f, eye, project = sphere_view
    f2 = fill_back(f)
    face_vertices = jax.jit(project)(np.stack([v, 0.5 * v]))[:, f2]  # [2, F, 3, 3]
    g = gbuffers(face_vertices, image_size=16)
    colours = np.random.default_rng(2).uniform(size=(3, 1, v.shape[0], 4)).astype(np.float32)  # [3, 1, N, 4]
    out = interpolate(colours, g, f2)
    assert out.shape == (3, 2, 16, 16, 4)
    for i in range(3):
        for j in range(2):
            single = jaxnmr.GBuffers(*(x[j] for x in g))
            np.testing.assert_allclose(out[i, j], interpolate(colours[i, 0], single, f2), rtol=1e-6)


def test_interpolate_with_other_faces_than_were_rasterized_raises_at_trace_time(sphere_view):
    """The mesh's faces after rasterizing fill_back(faces): the face indices (up to 2F - 1) used to be clamped
    into the F faces, silently wrong at every pixel that shows a copy; now it is a trace-time error, also under
    jit and vmap and for per-corner attributes."""
    v, f, eye, project = sphere_view
    f2 = fill_back(f)
    g = gbuffers(jax.jit(project)(v)[f2], image_size=24)
    assert g.num_faces == 2 * f.shape[0]
    copies = np.asarray(g.face_index) >= f.shape[0]
    assert copies.sum() > 100  # the pixels the un-doubled faces would get wrong
    message = (rf"interpolate: faces has {f.shape[0]} faces \(shape \({f.shape[0]}, 3\)\), but the G-buffers were "
               rf"rasterized from {2 * f.shape[0]} faces.*pass fill_back\(faces\) here too")
    with pytest.raises(ValueError, match=message):
        jaxnmr.interpolate(v, g, f)
    with pytest.raises(ValueError, match=message):
        interpolate(v, g, f)  # jitted
    with pytest.raises(ValueError, match=message):
        jax.vmap(lambda gb: jaxnmr.interpolate(v, gb, f))(jax.tree_util.tree_map(lambda x: x[None], g))
    with pytest.raises(ValueError, match=r"interpolate: attributes has 320 faces \(shape \(320, 3, 3\)\).*640"):
        interpolate(jaxnmr.vertices_to_faces(v, f), g)
    with pytest.raises(ValueError, match=r"interpolate: faces has 641 faces.*640 faces"):
        interpolate(v, g, jnp.concatenate([f2, f2[:1]]))
    # the same faces pass, and G-buffers built by hand (num_faces None) are not checked
    np.testing.assert_array_equal(interpolate(v, g._replace(num_faces=None), f2), interpolate(v, g, f2))


def test_gbuffers_carry_num_faces_through_jit_vmap_grad_and_scan():
    rng = np.random.default_rng(6)
    face_vertices = random_face_vertices(rng, (2,), 7)
    attributes = rng.normal(size=(7, 3, 2)).astype(np.float32)
    g = gbuffers(face_vertices, image_size=8)
    assert g.num_faces == 7 and repr(g).endswith("num_faces=7)")
    assert jax.vmap(lambda f: jaxnmr.rasterize_gbuffers(f, 8))(face_vertices).num_faces == 7
    assert jax.jit(lambda gb: gb)(g).num_faces == 7
    # still a named tuple of four arrays
    face_index, barycentrics, depth, alpha = g
    assert len(g) == 4 and g[1] is barycentrics and g._fields == ("face_index", "barycentrics", "depth", "alpha")
    assert g._replace(depth=alpha).num_faces == 7 and g._replace(num_faces=None).num_faces is None
    assert jaxnmr.GBuffers._make(g).num_faces is None and jaxnmr.GBuffers(*g).num_faces is None
    assert [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(g)[0]] == [
        ".face_index", ".barycentrics", ".depth", ".alpha"]
    import copy
    import pickle
    assert pickle.loads(pickle.dumps(jax.tree_util.tree_map(np.asarray, g))).num_faces == 7
    assert copy.deepcopy(g).num_faces == 7
    with pytest.raises(AttributeError, match="immutable"):
        g.num_faces = 3
    with pytest.raises(TypeError, match="num_faces must be None or a Python int >= 0"):
        jaxnmr.GBuffers(*g, num_faces=-1)
    # grad with respect to G-buffers gives G-buffers; a scan carries them; the check runs inside both
    grad = jax.grad(lambda gb: jnp.sum(jaxnmr.interpolate(attributes, gb)), allow_int=True)(g)
    assert isinstance(grad, jaxnmr.GBuffers) and grad.num_faces == 7 and np.abs(grad.barycentrics).max() > 0
    _, out = jax.lax.scan(lambda gb, _: (gb, jaxnmr.interpolate(attributes, gb)), g, None, length=2)
    np.testing.assert_allclose(out[1], interpolate(attributes, g), rtol=1e-6)
    with pytest.raises(ValueError, match="interpolate: attributes has 6 faces"):
        jax.lax.scan(lambda gb, _: (gb, jaxnmr.interpolate(attributes[:6], gb)), g, None, length=2)


def test_depth_and_alpha_gradients_are_the_rasterizers():
    rng = np.random.default_rng(3)
    face_vertices = random_face_vertices(rng, (), 10)
    S = 20
    wd, wa = rng.normal(size=(2, S, S)).astype(np.float32)
    grad = lambda loss: jax.jit(jax.grad(loss))(face_vertices)
    grad_gd = grad(lambda f: jnp.sum(wd * jaxnmr.rasterize_gbuffers(f, S).depth))
    grad_d = grad(lambda f: jnp.sum(wd * jaxnmr.rasterize_depth(f, S, anti_aliasing=False)))
    np.testing.assert_array_equal(grad_gd, grad_d)
    grad_ga = grad(lambda f: jnp.sum(wa * jaxnmr.rasterize_gbuffers(f, S).alpha))
    grad_a = grad(lambda f: jnp.sum(wa * jaxnmr.rasterize_silhouettes(f, S, anti_aliasing=False)))
    np.testing.assert_array_equal(grad_ga, grad_a)
    assert np.abs(grad_a).max() > 0 and np.abs(grad_d).max() > 0
    both = grad(lambda f: jnp.sum(wd * jaxnmr.rasterize_gbuffers(f, S).depth)
                + jnp.sum(wa * jaxnmr.rasterize_gbuffers(f, S).alpha))
    np.testing.assert_allclose(both, grad_d + grad_a, rtol=1e-5, atol=1e-5 * np.abs(grad_a).max())


def test_barycentric_gradient_matches_central_differences():
    # two overlapping triangles at different, tilted depths
    face_vertices = np.array([[[-0.8, -0.7, 1.5], [0.6, -0.5, 2.5], [-0.3, 0.8, 2.0]],
                      [[-0.2, -0.9, 1.2], [0.9, 0.1, 1.4], [0.1, 0.7, 3.0]]], np.float32)
    S = 32
    c = np.random.default_rng(4).normal(size=(S, S, 3)).astype(np.float32)
    fi = np.asarray(gbuffers(face_vertices, image_size=S).face_index)
    # pixels whose 3x3 neighbourhood shows one face: a 0.01 move (0.16 pixel) cannot change their face
    pad = np.pad(fi, 1, constant_values=-2)
    same = np.all([pad[1 + dr:S + 1 + dr, 1 + dc:S + 1 + dc] == fi for dr in (-1, 0, 1) for dc in (-1, 0, 1)], 0)
    mask = (same & (fi >= 0)).astype(np.float32)
    assert mask.sum() > 150 and set(np.unique(fi[mask > 0])) == {0, 1}

    @jax.jit
    def loss(f):
        g = jaxnmr.rasterize_gbuffers(f, S)
        return jnp.sum(mask[..., None] * c * g.barycentrics), g.face_index

    grad = np.asarray(jax.jit(jax.grad(lambda f: loss(f)[0]))(face_vertices))
    h = 1e-2
    numeric = np.zeros_like(grad)
    for idx in np.ndindex(face_vertices.shape):
        plus, minus = face_vertices.copy(), face_vertices.copy()
        plus[idx] += h
        minus[idx] -= h
        (lp, fp), (lm, fm) = loss(plus), loss(minus)
        assert (np.asarray(fp)[mask > 0] == fi[mask > 0]).all() and (np.asarray(fm)[mask > 0] == fi[mask > 0]).all()
        numeric[idx] = (float(lp) - float(lm)) / (2 * h)
    # float32 losses of size ~2 differenced over 2h: ~5e-4 absolute noise, O(h^2) truncation
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=2e-3)
    assert np.abs(grad[..., :2]).min() > 0.05 and np.abs(grad[..., 2]).max() > 0.5  # x, y and z all matter


def test_jit_vmap_and_grad_use_one_forward_launch():
    rng = np.random.default_rng(5)
    face_vertices = random_face_vertices(rng, (3,), 8)
    fn = lambda f: jaxnmr.rasterize_gbuffers(f, image_size=12)
    batched = jax.jit(jax.vmap(fn))
    assert batched.lower(face_vertices).as_text().count("jaxnmr_rasterize_forward") == 1
    out = batched(face_vertices)
    for i in range(3):
        single = jax.jit(fn)(face_vertices[i])
        for name, a, b in zip(jaxnmr.GBuffers._fields, out, single):
            np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7, err_msg=name)
    def loss(f):
        g = fn(f)
        return jnp.sum(g.depth) + jnp.sum(g.alpha * 2.0) + jnp.sum(g.barycentrics[..., 0])

    hlo = jax.jit(jax.grad(loss)).lower(face_vertices[0]).as_text()
    assert hlo.count("jaxnmr_rasterize_forward") == 1 and hlo.count("jaxnmr_rasterize_backward") == 1
    assert np.isfinite(np.asarray(jax.jit(jax.grad(loss))(face_vertices[0]))).all()


def test_empty_pixels_and_undrawable_faces():
    tri = np.array([[[0.2, 0.2, 1.0], [0.9, 0.2, 1.0], [0.2, 0.9, 1.0]]], np.float32)
    face_vertices = np.concatenate([tri[:, ::-1], np.zeros((1, 3, 3), np.float32),
                                    np.full((1, 3, 3), np.nan, np.float32)])
    g = gbuffers(face_vertices, image_size=8, far=50.0)  # a back face, a point, NaN: nothing drawn
    assert (np.asarray(g.face_index) == -1).all() and not np.asarray(g.alpha).any()
    assert (np.asarray(g.barycentrics) == 0).all() and (np.asarray(g.depth) == 50.0).all()
    grad = jax.jit(jax.grad(lambda f: jnp.sum(jaxnmr.rasterize_gbuffers(f, 8).barycentrics)))(face_vertices)
    assert np.isfinite(np.asarray(grad)).all()
    assert (np.asarray(interpolate(np.ones((3, 3, 2), np.float32), g)) == 0).all()


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: jaxnmr.rasterize_gbuffers(np.zeros((4, 3), np.float32)), ValueError,
         r"rasterize_gbuffers: face_vertices must have shape \[\.\.\., F, 3, 3\], got shape \(4, 3\)"),
        (lambda: jaxnmr.rasterize_gbuffers(np.zeros((4, 3, 3), np.int32)), TypeError, "floating-point"),
        (lambda: jaxnmr.rasterize_gbuffers(np.zeros((4, 3, 3), np.float32), image_size=0), ValueError,
         "image_size must be in"),
        (lambda: jaxnmr.rasterize_gbuffers(np.zeros((4, 3, 3), np.float32), near=2.0, far=1.0), ValueError,
         "near must be smaller than far"),
        (lambda: jaxnmr.interpolate(np.zeros((4, 3, 2), np.float32), (1, 2, 3, 4)), TypeError,
         "interpolate: gbuffers must be the GBuffers"),
        (lambda: jaxnmr.interpolate(np.zeros((4, 2), np.float32), _GB), ValueError,
         r"interpolate: attributes must have shape \[\.\.\., F, 3, C\]"),
        (lambda: jaxnmr.interpolate(np.zeros((5, 2), np.float32), _GB, np.array([[0, 1, 7]])), ValueError,
         r"interpolate: faces\[0\] = \[0, 1, 7\] indexes outside the 5 vertices"),
        (lambda: jaxnmr.interpolate(np.zeros((5, 2), np.float32), _GB, np.zeros((2, 3), np.float32)), TypeError,
         "interpolate: faces must be an integer array"),
        (lambda: jaxnmr.interpolate(np.zeros((5, 2), np.float32), _GB._replace(num_faces=4), np.zeros((2, 3), int)),
         ValueError, r"interpolate: faces has 2 faces \(shape \(2, 3\)\), but the G-buffers were rasterized from 4"),
        (lambda: jaxnmr.interpolate(np.zeros((2, 5, 2), np.float32), _GB3, np.zeros((2, 2, 3), int)), ValueError,
         r"interpolate: the leading \(batch\) dims of the arguments do not broadcast \(numpy rules\): attributes \(2,\), faces "
         r"\(2,\), gbuffers \(3,\)"),
        (lambda: jaxnmr.interpolate(np.zeros((2, 4, 3, 2), np.float32), _GB3), ValueError,
         r"interpolate: the leading \(batch\) dims .*: attributes \(2,\), gbuffers \(3,\)"),
        (lambda: jaxnmr.interpolate(np.zeros((4, 3, 2), np.float32), _GB._replace(barycentrics=np.zeros((3, 2, 2, 3)))),
         ValueError, r"interpolate: gbuffers.barycentrics must have shape gbuffers.face_index.shape \+ \(3,\) = "
         r"\(2, 2, 3\), got shape \(3, 2, 2, 3\)"),
    ],
)
def test_bad_inputs_fail_at_trace_time_with_clear_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


_GB = jaxnmr.GBuffers(np.zeros((2, 2), np.int32), np.zeros((2, 2, 3), np.float32), np.zeros((2, 2), np.float32),
                      np.zeros((2, 2), np.float32))
_GB3 = jaxnmr.GBuffers(*(np.zeros((3,) + x.shape, x.dtype) for x in _GB))
