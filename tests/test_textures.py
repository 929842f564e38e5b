"""jaxnmr.textures (vertex colours, UV texture maps, converters) and io.load_textured_mesh."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnmr
from jaxnmr import meshes

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "nmr"
RNG = np.random.default_rng(3)

# float32 rounding of texture positions: |pos| <= ~800 pixels carries an error of a few 800 * 2^-24 ~ 1e-4 pixel,
# which moves a bilinear sample by at most that times the largest neighbour difference (1).
POSITION_ROUNDING = 2e-4


# -- vertex colours -------------------------------------------------------------------------------------------


def screen_barycentrics(points, tri):
    """Affine barycentrics of 2-D points [P, 2] in a triangle [3, 2] (float64)."""
    a, b, c = tri
    m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
    l12 = np.linalg.solve(m, (points - a).T).T
    return np.stack([1 - l12[:, 0] - l12[:, 1], l12[:, 0], l12[:, 1]], -1)


@pytest.mark.parametrize("texture_size", [2, 3, 5])
def test_vertex_color_cube_renders_perspective_correct_barycentric_interpolation(texture_size):
    """One triangle with depths 1.5, 3 and 6: every covered pixel shows b0 c0 + b1 c1 + b2 c2 for its
    perspective-correct barycentrics b, computed by hand at the pixel centres (docs/conventions.md, "Pixel centres")."""
    S, eps = 48, 1e-4
    tri = np.array([[-0.9, -0.8, 1.5], [0.85, -0.6, 3.0], [-0.2, 0.9, 6.0]], np.float32)  # NDC, CCW on screen
    colors = np.array([[1.0, 0.1, 0.0], [0.0, 0.8, 0.2], [0.3, 0.0, 1.0]], np.float32)
    cubes = jaxnmr.vertex_colors_to_textures(colors, np.array([[0, 1, 2]], np.int32), texture_size)
    assert cubes.shape == (1,) + (texture_size,) * 3 + (3,)
    rgb = np.asarray(jaxnmr.rasterize(tri[None], cubes, S, anti_aliasing=False, eps=eps))[::-1]  # row 0 = bottom
    centres = (2 * np.arange(S) + 1 - S) / S
    x, y = np.meshgrid(centres, centres)
    w = screen_barycentrics(np.stack([x.ravel(), y.ravel()], -1), tri[:, :2].astype(np.float64))
    b = (w / tri[:, 2]) / (w / tri[:, 2]).sum(-1, keepdims=True)
    expected = (b @ colors.astype(np.float64)).reshape(S, S, 3)
    # interior pixels, away from the edges (coverage ties) and from the vertices (NMR clamps the lookup there)
    interior = ((w > 0.02).all(-1) & (b < 1 - 2 * eps).all(-1)).reshape(S, S)
    assert interior.sum() > 300
    np.testing.assert_allclose(rgb[interior], expected[interior], atol=2e-6)
    # a uniform cube of the mean colour (what a per-face colour gives) is far from it
    assert np.abs(expected[interior] - colors.mean(0)).max() > 0.2


def test_vertex_colors_render_through_the_renderer_and_round_trip():
    sphere = meshes.icosphere(2)
    v, f = sphere.vertices, sphere.faces
    v, f = np.asarray(v), np.asarray(f)
    colors = (0.5 + 0.5 * v).astype(np.float32)  # a smooth colour field
    cubes = jaxnmr.vertex_colors_to_textures(colors, f)
    for size in (2, 4):
        back = jaxnmr.textures_to_vertex_colors(jaxnmr.vertex_colors_to_textures(colors, f, size), f, len(v))
        np.testing.assert_allclose(back, colors, atol=1e-6)
    # textures_to_vertex_colors is the mean of the corners, by hand; unused vertices get 0
    cubes_rand = RNG.random((f.shape[0], 3, 3, 3, 3)).astype(np.float32)
    corners = np.stack([cubes_rand[:, 2, 0, 0], cubes_rand[:, 0, 2, 0], cubes_rand[:, 0, 0, 2]], 1)
    total, count = np.zeros((len(v) + 1, 3)), np.zeros(len(v) + 1)
    np.add.at(total, f.ravel(), corners.reshape(-1, 3))
    np.add.at(count, f.ravel(), 1)
    ref = total / np.maximum(count, 1)[:, None]
    np.testing.assert_allclose(jaxnmr.textures_to_vertex_colors(cubes_rand, f, len(v) + 1), ref, atol=1e-6)
    # lit by ambient light only, the picture takes its colours from the vertex colours
    r = jaxnmr.Renderer(image_size=32, light_intensity_ambient=1.0, light_intensity_directional=0.0)
    rgb = np.asarray(r.render(v, f, cubes))
    covered = rgb.sum(-1) > 0
    assert covered.sum() > 200
    assert rgb[covered].min() >= 0 and rgb[covered].max() <= 1 + 1e-6
    assert rgb[covered].std(0).min() > 0.05  # varies smoothly, not one flat colour


def test_vertex_color_converters_jit_vmap_grad():
    sphere = meshes.icosphere(1)
    v, f = sphere.vertices, sphere.faces
    colors = jnp.asarray(RNG.random((2, len(v), 3)), jnp.float32)  # a batch of colourings, one topology
    batched = jax.jit(jax.vmap(lambda c: jaxnmr.vertex_colors_to_textures(c, f, 3)))(colors)
    np.testing.assert_allclose(batched, jaxnmr.vertex_colors_to_textures(colors, f, 3), atol=1e-7)
    weights = jnp.asarray(RNG.normal(size=batched.shape[1:]), jnp.float32)
    g = jax.grad(lambda c: jnp.sum(jaxnmr.vertex_colors_to_textures(c, f, 3) * weights))(colors[0])
    # linear: the gradient is the adjoint, each texel giving (i, j, k) / 2 of its weight to the corners' vertices
    ijk = np.indices((3, 3, 3)) / 2.0
    ref = np.zeros((len(v), 3))
    for k in range(3):
        np.add.at(ref, np.asarray(f)[:, k], np.einsum("abc,fabcd->fd", ijk[k], np.asarray(weights)))
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5)
    g_back = jax.grad(lambda t: jnp.sum(jaxnmr.textures_to_vertex_colors(t, f, len(v))))(batched[0])
    assert np.all(np.isfinite(g_back)) and np.abs(g_back).sum() > 0


# -- bilinear sampling and UV maps ----------------------------------------------------------------------------


def numpy_bilinear(image, uv):
    """The documented convention, written from the top row: x = u (W - 1), y = (1 - v) (H - 1) rows down."""
    H, W = image.shape[:2]
    out = np.zeros((len(uv), image.shape[2]))
    for n, (u, v) in enumerate(np.asarray(uv, np.float64)):
        u, v = (0.0 if not np.isfinite(u) else u), (0.0 if not np.isfinite(v) else v)
        x = min(max(u * (W - 1), 0.0), W - 1)
        y_up = min(max(v * (H - 1), 0.0), H - 1)
        y = (H - 1) - y_up
        for (xi, wx) in ((np.floor(x), 1 - (x - np.floor(x))), (np.floor(x) + 1, x - np.floor(x))):
            for (yi, wy) in ((np.floor(y), 1 - (y - np.floor(y))), (np.floor(y) + 1, y - np.floor(y))):
                if wx * wy > 0:
                    out[n] += wx * wy * image[int(yi), int(xi)]
    return out


def test_sample_bilinear_matches_numpy_and_the_uv_convention():
    image = RNG.random((5, 7, 3)).astype(np.float32)
    uv = np.concatenate([RNG.uniform(-0.2, 1.2, size=(40, 2)),
                         [[0, 0], [1, 1], [1, 0], [0, 1], [0.5, 0.5], [np.nan, 0.3], [np.inf, 1.0]]]).astype(np.float32)
    out = np.asarray(jaxnmr.sample_bilinear(image, uv))
    assert out.shape == (47, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, numpy_bilinear(image, uv), atol=1e-6)
    # u right, v up: (0, 0) is the bottom-left pixel, (1, 1) the top-right one (row 0 is the top)
    np.testing.assert_array_equal(out[40:44], image[[4, 0, 4, 0], [0, 6, 6, 0]])
    # other channel counts and leading dims (maps and points broadcast)
    maps = RNG.random((2, 4, 6, 1)).astype(np.float32)
    batched = np.asarray(jaxnmr.sample_bilinear(maps, uv[None, :10]))
    assert batched.shape == (2, 10, 1)
    np.testing.assert_allclose(batched[1], numpy_bilinear(maps[1], uv[:10]), atol=1e-6)


def test_sample_bilinear_gradients_match_finite_differences():
    image = jnp.asarray(RNG.random((6, 8, 3)), jnp.float32)
    uv = jnp.asarray(RNG.uniform(0.05, 0.95, size=(12, 2)), jnp.float32)
    weights = jnp.asarray(RNG.normal(size=(12, 3)), jnp.float32)
    loss = jax.jit(lambda m, p: jnp.sum(jaxnmr.sample_bilinear(m, p) * weights))
    g_map, g_uv = jax.grad(loss, argnums=(0, 1))(image, uv)
    h = 1e-2  # the loss is linear in the map: central differences are exact up to rounding
    for idx in [(0, 0, 0), (2, 3, 1), (5, 7, 2), (3, 4, 0)]:
        e = jnp.zeros_like(image).at[idx].set(h)
        fd = (loss(image + e, uv) - loss(image - e, uv)) / (2 * h)
        np.testing.assert_allclose(float(g_map[idx]), float(fd), atol=1e-4)
    h = 1e-4  # piecewise linear in uv: a small step stays inside one pixel cell (cells are 1/7 and 1/5 wide)
    for i in range(4):
        for c in range(2):
            e = jnp.zeros_like(uv).at[i, c].set(h)
            fd = (loss(image, uv + e) - loss(image, uv - e)) / (2 * h)
            np.testing.assert_allclose(float(g_uv[i, c]), float(fd), rtol=2e-2, atol=2e-2)


def test_uv_to_textures_matches_load_obj_for_an_image_material(tmp_path):
    """A single-material OBJ with UVs beyond 1 (wrapped) and an 8 x 10 image: uv_to_textures with the file's
    image and raw UVs gives load_obj's cubes, every texel: both place texel (0, 0, 0) at UV (0, 0) (jaxnmr._texels),
    so this fails if the two disagree on it."""
    import imageio.v3 as iio

    image = (RNG.random((8, 10, 3)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "tex.png", image)
    (tmp_path / "m.mtl").write_text("newmtl skin\nKd 1 0 0\nmap_Kd tex.png\n")
    uvs = np.array([[0.1, 0.2], [0.9, 0.15], [0.5, 0.95], [1.3, 0.4], [0.2, 1.7], [1.0, 0.0]])
    lines = ["mtllib m.mtl", "v 0 0 0", "v 1 0 0", "v 0 1 0", "v 1 1 0", "v 0 0 1"]
    lines += [f"vt {u} {v}" for u, v in uvs] + ["usemtl skin", "f 1/1 2/2 3/3", "f 2/4 4/5 3/6", "f 1/2 5/5 2/1"]
    (tmp_path / "m.obj").write_text("\n".join(lines) + "\n")
    face_uvs = uvs[np.array([[0, 1, 2], [3, 4, 5], [1, 4, 0]])].astype(np.float32)
    texture_map = image.astype(np.float32) / 255
    for size in (2, 4, 6):
        ref = jaxnmr.load_obj(tmp_path / "m.obj", load_texture=True, texture_size=size)[2]
        out = np.asarray(jaxnmr.uv_to_textures(texture_map, face_uvs, size))
        assert out.shape == ref.shape == (3,) + (size,) * 3 + (3,)
        np.testing.assert_allclose(out, ref, atol=1e-5)
        # texel (0, 0, 0): UV (0, 0), the map's bottom-left pixel, for every face
        np.testing.assert_allclose(out[:, 0, 0, 0], np.broadcast_to(texture_map[-1, 0], (3, 3)), atol=1e-6)
        np.testing.assert_allclose(ref[:, 0, 0, 0], np.broadcast_to(texture_map[-1, 0], (3, 3)), atol=1e-6)
        # the wrap matters: unwrapped UVs > 1 would clamp to the border instead
        clamped = np.asarray(jaxnmr.uv_to_textures(texture_map, np.clip(face_uvs, 0, 1), size))
        assert np.abs(out[1] - clamped[1]).max() > 0.05


def test_display_model_uv_atlas_matches_load_obj(nmr_data):
    """NMR's textured `display` model (two JPEG materials and five Kd colours) through load_textured_mesh's single
    atlas + uv_to_textures equals load_obj(load_texture=True); rendered at T = 4 the pictures agree."""
    path = nmr_data / "display" / "model.obj"
    mesh = jaxnmr.load_textured_mesh(path)
    assert isinstance(mesh, jaxnmr.Mesh) and mesh.textures is None
    vertices, faces, ref = jaxnmr.load_obj(path, load_texture=True, texture_size=4)
    np.testing.assert_array_equal(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.faces, faces)
    assert mesh.texture_map.ndim == 3 and mesh.face_uvs.shape == (3644, 3, 2) and mesh.vertex_colors is None
    out = np.asarray(mesh.to_textures(4))
    np.testing.assert_allclose(out.reshape(3644, -1, 3)[:, 1:], ref.reshape(3644, -1, 3)[:, 1:], atol=POSITION_ROUNDING)
    r = jaxnmr.Renderer(image_size=64, eye=jaxnmr.get_points_from_angles(2.0, 15.0, 30.0))
    np.testing.assert_allclose(r.render(vertices, faces, out), r.render(vertices, faces, ref), atol=POSITION_ROUNDING)


def test_uv_to_textures_gradient_matches_finite_differences_and_composes():
    rng = np.random.default_rng(5)  # its own stream: the draws must not depend on which tests ran before
    texture_map = jnp.asarray(rng.random((6, 9, 3)), jnp.float32)
    face_uvs = jnp.asarray(rng.uniform(0, 1, size=(2, 5, 3, 2)), jnp.float32)  # two UV layouts, one map
    out = jax.jit(jaxnmr.uv_to_textures, static_argnums=2)(texture_map, face_uvs, 3)
    assert out.shape == (2, 5, 3, 3, 3, 3)
    np.testing.assert_allclose(jax.vmap(lambda p: jaxnmr.uv_to_textures(texture_map, p, 3))(face_uvs), out, atol=1e-7)
    weights = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
    loss = lambda m: jnp.sum(jaxnmr.uv_to_textures(m, face_uvs, 3) * weights)
    g = jax.jit(jax.grad(loss))(texture_map)
    # The loss is linear in the map, so a central difference is exact for any step; a step of 1 keeps float32's
    # rounding of the ~800-term sums (about 1e-6 of it) far below the tolerance (with 1e-2 it was half of it).
    h = 1.0
    for idx in [(0, 0, 1), (2, 4, 0), (5, 8, 2), (3, 3, 1), (1, 6, 0)]:
        e = jnp.zeros_like(texture_map).at[idx].set(h)
        fd = (loss(texture_map + e) - loss(texture_map - e)) / (2 * h)
        np.testing.assert_allclose(float(g[idx]), float(fd), atol=2e-4)
    assert np.abs(np.asarray(g)).sum() > 0


def quad_with_uvs():
    """A unit square facing +z, two triangles, UVs spanning the whole map."""
    v = np.array([[-0.8, -0.8, 0], [0.8, -0.8, 0], [0.8, 0.8, 0], [-0.8, 0.8, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    return v, f, uv[f]


def test_uv_map_shows_upright_and_fits_by_gradient():
    v, f, face_uvs = quad_with_uvs()
    R, T = jaxnmr.look_at_view_transform(2.5, 0.0, 0.0)
    r = jaxnmr.Renderer(image_size=32, camera_mode="fov", R=R, t=T, light_intensity_ambient=1.0,
                        light_intensity_directional=0.0)
    # a map that is red in its top half: the top of the picture is red (v up, camera not mirrored)
    marker = np.zeros((8, 8, 3), np.float32)
    marker[:4, :, 0] = 1.0
    marker[:, 4:, 2] = 1.0  # and blue in its right half
    rgb = np.asarray(r.render(v, f, jaxnmr.uv_to_textures(marker, face_uvs, 4)))
    assert rgb[8, 16, 0] > 0.9 and rgb[24, 16, 0] < 0.1
    assert rgb[16, 24, 2] > 0.9 and rgb[16, 8, 2] < 0.1

    target_map = jnp.asarray(RNG.random((8, 8, 3)), jnp.float32)
    target = r.render(v, f, jaxnmr.uv_to_textures(target_map, face_uvs, 4))

    def loss(texture_map):
        return jnp.mean((r.render(v, f, jaxnmr.uv_to_textures(texture_map, face_uvs, 4)) - target) ** 2)

    optimizer = optax.adam(0.05)

    @jax.jit
    def fit(texture_map):
        def step(carry, _):
            texture_map, state = carry
            updates, state = optimizer.update(jax.grad(loss)(texture_map), state)
            return (optax.apply_updates(texture_map, updates), state), None

        return jax.lax.scan(step, (texture_map, optimizer.init(texture_map)), None, length=40)[0][0]

    start = jnp.full((8, 8, 3), 0.5, jnp.float32)
    fitted = fit(start)
    assert float(loss(fitted)) < 0.02 * float(loss(start))  # measured: 0.0042 of the start


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: jaxnmr.sample_bilinear(np.zeros((4, 4, 3), np.float32), np.zeros((5, 3), np.float32)), ValueError,
         r"sample_bilinear: uv must have shape \[\.\.\., P, 2\], got shape \(5, 3\)"),
        (lambda: jaxnmr.sample_bilinear(np.zeros((0, 4, 3), np.float32), np.zeros((5, 2), np.float32)), ValueError,
         r"sample_bilinear: texture_map must have shape \[\.\.\., H, W, C\] with H, W >= 1"),
        (lambda: jaxnmr.uv_to_textures(np.zeros((4, 4, 4), np.float32), np.zeros((2, 3, 2), np.float32)), ValueError,
         r"uv_to_textures: texture_map must have shape \[\.\.\., H, W, 3\], got shape \(4, 4, 4\)"),
        (lambda: jaxnmr.uv_to_textures(np.zeros((4, 4, 3), np.float32), np.zeros((2, 2, 2), np.float32)), ValueError,
         r"uv_to_textures: face_uvs must have shape \[\.\.\., F, 3, 2\]"),
        (lambda: jaxnmr.uv_to_textures(np.zeros((4, 4, 3), np.float32), np.zeros((2, 3, 2), np.float32), 1),
         ValueError, r"uv_to_textures: texture_size must be >= 2, got 1"),
        (lambda: jaxnmr.vertex_colors_to_textures(np.zeros((4, 3), np.int32), np.zeros((2, 3), np.int32)), TypeError,
         r"vertex_colors_to_textures: vertex_colors must be a floating-point array"),
        (lambda: jaxnmr.vertex_colors_to_textures(np.zeros((4, 3), np.float32), np.array([[0, 1, 4]])), ValueError,
         r"vertex_colors_to_textures: faces\[0\] = \[0, 1, 4\] indexes outside the 4 vertices"),
        (lambda: jaxnmr.textures_to_vertex_colors(np.zeros((3, 2, 2, 2, 3), np.float32),
                                                  np.zeros((2, 3), np.int32), 4),
         ValueError, r"textures_to_vertex_colors: textures must have one cube per face"),
    ],
)
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -- loading meshes with their appearance ---------------------------------------------------------------------

SQUARE_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.5]], np.float64)
SQUARE_F = np.array([[0, 1, 2], [1, 3, 2]], np.int64)


def test_load_ply_with_vertex_and_face_colours(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    rgba = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255], [10, 200, 30, 255]], np.uint8)
    trimesh.Trimesh(SQUARE_V, SQUARE_F, vertex_colors=rgba, process=False).export(tmp_path / "v.ply")
    mesh = jaxnmr.load_textured_mesh(tmp_path / "v.ply", normalization=False)
    np.testing.assert_array_equal(mesh.vertices, SQUARE_V.astype(np.float32))
    np.testing.assert_array_equal(mesh.faces, SQUARE_F)
    assert mesh.vertex_colors.dtype == np.float32 and mesh.texture_map is None and mesh.face_colors is None
    np.testing.assert_allclose(mesh.vertex_colors, rgba[:, :3] / 255, atol=1e-7)
    np.testing.assert_allclose(mesh.to_textures(3), jaxnmr.vertex_colors_to_textures(mesh.vertex_colors, mesh.faces, 3))
    trimesh.Trimesh(SQUARE_V, SQUARE_F, face_colors=rgba[:2], process=False).export(tmp_path / "f.ply")
    mesh = jaxnmr.load_textured_mesh(tmp_path / "f.ply")
    np.testing.assert_allclose(mesh.face_colors, rgba[:2, :3] / 255, atol=1e-7)
    assert mesh.vertex_colors is None
    np.testing.assert_allclose(mesh.to_textures(2)[1, 1, 0, 1], rgba[1, :3] / 255, atol=1e-7)


def test_load_glb_with_a_texture(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    PIL = pytest.importorskip("PIL.Image")
    image = (RNG.random((6, 9, 3)) * 255).astype(np.uint8)
    uv = RNG.uniform(0, 1, size=(4, 2))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=PIL.fromarray(image),
                                                   baseColorFactor=[255, 255, 255, 255])
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    trimesh.Trimesh(SQUARE_V, SQUARE_F, visual=visual, process=False).export(tmp_path / "t.glb")
    mesh = jaxnmr.load_textured_mesh(tmp_path / "t.glb", normalization=False)
    np.testing.assert_allclose(mesh.vertices, SQUARE_V, atol=1e-7)
    np.testing.assert_allclose(mesh.texture_map, image / 255, atol=1e-7)
    np.testing.assert_allclose(mesh.face_uvs, uv[SQUARE_F], atol=1e-6)
    np.testing.assert_allclose(mesh.to_textures(4), jaxnmr.uv_to_textures(image / 255, uv[SQUARE_F], 4), atol=1e-5)
    # glTF's base colour is the texture times baseColorFactor
    material.baseColorFactor = [255, 128, 0, 255]
    trimesh.Trimesh(SQUARE_V, SQUARE_F, visual=visual, process=False).export(tmp_path / "f.glb")
    mesh = jaxnmr.load_textured_mesh(tmp_path / "f.glb", normalization=False)
    np.testing.assert_allclose(mesh.texture_map, image / 255 * [1.0, 128 / 255, 0.0], atol=1e-6)


def test_load_obj_vertex_colours_materials_and_plain(tmp_path):
    """'v x y z r g b' lines; Kd, image and missing materials packed into one atlas that reproduces load_obj."""
    import imageio.v3 as iio

    (tmp_path / "c.obj").write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0.5 1\nf 1 2 3\n")
    mesh = jaxnmr.load_textured_mesh(tmp_path / "c.obj")
    np.testing.assert_array_equal(mesh.vertex_colors, [[1, 0, 0], [0, 1, 0], [0, 0.5, 1]])
    assert mesh.texture_map is None and mesh.face_uvs is None
    (tmp_path / "p.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    plain = jaxnmr.load_textured_mesh(tmp_path / "p.obj")
    assert plain.vertex_colors is None and plain.texture_map is None and plain.face_colors is None
    np.testing.assert_array_equal(plain.to_textures(2), np.full((1, 2, 2, 2, 3), 0.5, np.float32))

    rng = np.random.default_rng(11)  # its own stream: the result must not depend on which tests ran before
    iio.imwrite(tmp_path / "a.png", (rng.random((5, 4, 3)) * 255).astype(np.uint8))
    iio.imwrite(tmp_path / "b.png", (rng.random((3, 7, 3)) * 255).astype(np.uint8))
    (tmp_path / "m.mtl").write_text("newmtl red\nKd 0.9 0.1 0.1\nnewmtl A\nmap_Kd a.png\nnewmtl B\nKd 0 0 1\n"
                                    "map_Kd b.png\nnewmtl green\nKd 0.1 0.8 0.2\n")
    lines = ["mtllib m.mtl"] + [f"v {x} {y} {z}" for x, y, z in rng.random((6, 3))]
    lines += [f"vt {u:.4f} {v:.4f}" for u, v in rng.uniform(-0.1, 1.4, size=(6, 2))]
    lines += ["f 1/1 2/2 3/3", "usemtl red", "f 2/2 3/3 4/4", "usemtl A", "f 3/1 4/5 5/6", "f 1/4 5/5 6/6",
              "usemtl B", "f 2/6 6/3 4/2", "usemtl nowhere", "f 1/1 3/3 6/6", "usemtl green", "f 4/4 5/5 6/6"]
    (tmp_path / "m.obj").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="nowhere"):
        mesh = jaxnmr.load_textured_mesh(tmp_path / "m.obj")
    with pytest.warns(UserWarning, match="nowhere"):
        ref = jaxnmr.load_obj(tmp_path / "m.obj", load_texture=True, texture_size=5)[2]
    out = np.asarray(mesh.to_textures(5))
    # negative UVs are clamped per corner here and per sample in load_obj: compare the faces whose UVs are >= 0
    uv_min = np.array([[float(t) for t in line.split()[1:]] for line in lines if line.startswith("vt")]).min(1)
    corners = [[int(c.split("/")[1]) - 1 for c in line.split()[1:]] for line in lines if line.startswith("f")]
    same = np.array([uv_min[c].min() >= 0 for c in corners])
    assert same.sum() >= 4 and (~same).sum() >= 1
    np.testing.assert_allclose(out.reshape(7, -1, 3)[same, 1:], ref.reshape(7, -1, 3)[same, 1:], atol=1e-5)
    # texel (0, 0, 0) of every face reads UV (0, 0) (jaxnmr._texels): here the atlas's bottom-left pixel
    np.testing.assert_array_equal(out[:, 0, 0, 0], np.broadcast_to(mesh.texture_map[-1, 0], (7, 3)))
    solid = np.full((2, 5, 5, 5, 3), 0.5, np.float32)
    solid[:, 0, 0, 0] = mesh.texture_map[-1, 0]
    np.testing.assert_array_equal(out[[0, 5]], solid)  # no material, undefined
    for face, kd in ((1, [0.9, 0.1, 0.1]), (6, [0.1, 0.8, 0.2])):  # Kd only
        expected = np.array(np.broadcast_to(np.float32(kd), (5, 5, 5, 3)))
        expected[0, 0, 0] = mesh.texture_map[-1, 0]
        np.testing.assert_allclose(out[face], expected, atol=1e-6)


def test_saved_textured_obj_round_trips_through_load_textured_mesh(tmp_path):
    sphere = meshes.icosphere(1)
    v, f = sphere.vertices, sphere.faces
    colors = RNG.random((len(v), 3)).astype(np.float32)
    jaxnmr.save_obj(tmp_path / "s.obj", v, f, jaxnmr.vertex_colors_to_textures(colors, f, 2))
    mesh = jaxnmr.load_textured_mesh(tmp_path / "s.obj", normalization=False)
    ref = jaxnmr.load_obj(tmp_path / "s.obj", normalization=False, load_texture=True, texture_size=4)[2]
    out = np.asarray(mesh.to_textures(4))
    np.testing.assert_allclose(out.reshape(len(f), -1, 3)[:, 1:], ref.reshape(len(f), -1, 3)[:, 1:], atol=1e-5)
    # the vertex colours survive the trip through the atlas up to its 8-bit, 16-pixel-tile resampling
    back = np.asarray(jaxnmr.textures_to_vertex_colors(out, f, len(v)))
    assert np.abs(back - colors).max() < 0.05


def test_load_textured_mesh_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        jaxnmr.load_textured_mesh(tmp_path / "missing.ply")
    (tmp_path / "bad.obj").write_text("v 0 0\n")
    with pytest.raises(ValueError, match=r"bad\.obj:1:"):
        jaxnmr.load_textured_mesh(tmp_path / "bad.obj")
    (tmp_path / "x.unknownformat").write_text("")
    with pytest.raises(ValueError, match="unsupported mesh format"):
        jaxnmr.load_textured_mesh(tmp_path / "x.unknownformat")
