"""Shading: vertex normals, per-face and per-pixel Blinn-Phong with point lights, toon, contour, compositing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.segmentation import find_boundaries

import jaxnmr
from _helpers import adam_fitter
from jaxnmr import meshes
from jaxnmr.mesh import fill_back

EYE = np.array([0.0, 0.0, -3.5], np.float32)


def to_ndc(v, eye=EYE):
    return jaxnmr.perspective(jaxnmr.look_at(v, eye))


@functools.partial(jax.jit, static_argnums=2)
def render(v, f, S, eye=EYE):
    """A mesh seen from ``eye`` (with fill_back, as NMR's Renderer): its G-buffers, doubled faces f2, smooth
    normals, world positions and flat normals, all ``[S, S(, 3)]``."""
    f2 = fill_back(f)
    g = jaxnmr.rasterize_gbuffers(jaxnmr.vertices_to_faces(to_ndc(v, eye), f2), S)
    return dict(g=g, f2=f2, normals=jaxnmr.interpolate(jaxnmr.vertex_normals(v, f), g, f2),
                positions=jaxnmr.interpolate(v, g, f2), flat=jaxnmr.flat_normals(jaxnmr.vertices_to_faces(v, f2), g))


# compiled once per shape (op-by-op dispatch of these pipelines costs seconds of compilation)
phong = jax.jit(jaxnmr.phong)
toon = jax.jit(jaxnmr.toon, static_argnames="levels")
contour = jax.jit(jaxnmr.contour, static_argnames=("depth_threshold", "crease_angle", "face_edges"))


@pytest.fixture(scope="module")
def sphere():
    """A unit icosphere (1280 faces) at 64 x 64: G-buffers, smooth normals, world positions, flat normals."""
    sphere_mesh = meshes.icosphere(3)
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    scene = render(v, f, 64)
    return dict(scene, v=v, f=f, covered=np.asarray(scene["g"].face_index) >= 0)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --- vertex normals -------------------------------------------------------------------------------------------


def test_vertex_normals_match_a_hand_computation_and_point_outward():
    # a square pyramid, wound counter-clockwise seen from outside, with a flattened apex
    v = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1], [0.3, 0.5, 0.2]], np.float32)
    f = np.array([[0, 4, 1], [1, 4, 2], [2, 4, 3], [3, 4, 0], [0, 1, 2], [0, 2, 3]], np.int32)
    expected = np.zeros((5, 3))
    for a, b, c in f:
        cross = np.cross(v[b] - v[a], v[c] - v[a]).astype(np.float64)  # |cross| = twice the area
        for k in (a, b, c):
            expected[k] += cross
    expected = unit(expected)
    vertex_normals = jax.jit(jaxnmr.vertex_normals)
    n = np.asarray(vertex_normals(v, f))
    np.testing.assert_allclose(n, expected, atol=1e-6)
    assert n[4, 1] > 0.9 and n[0, 1] < 0  # the apex points up, base corners partly down
    # a sphere's smooth normals are its radial directions; batches broadcast with one topology
    sphere_mesh = meshes.icosphere(2)
    vs, fs = sphere_mesh.vertices, sphere_mesh.faces
    batch = np.asarray(vertex_normals(np.stack([vs, 2 * vs]), fs))
    assert batch.shape == (2,) + vs.shape
    assert (np.sum(batch * vs, axis=-1) > 0.9995).all()
    grad = jax.jit(jax.grad(lambda x: jnp.sum(jaxnmr.vertex_normals(x, f)[:, 0])))(v)
    assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0


# --- per-face lighting --------------------------------------------------------------------------------------


def world_faces_and_textures(rng, F=12, T=2):
    face_vertices = rng.uniform(-1, 1, (F, 3, 3)).astype(np.float32)
    textures = rng.uniform(0.2, 1, (F, T, T, T, 3)).astype(np.float32)
    return face_vertices, textures


def test_lighting_phong_with_a_directional_light_is_nmrs_lighting():
    face_vertices, textures = world_faces_and_textures(np.random.default_rng(0))
    d = unit(np.array([0.3, 0.8, -0.5], np.float32))
    want = jaxnmr.lighting(face_vertices, textures, 0.4, 0.7, (1.0, 0.9, 0.8), (0.5, 0.6, 1.0), d)
    lights = [jaxnmr.DirectionalLight(d, (0.5, 0.6, 1.0), 0.7), jaxnmr.AmbientLight((1.0, 0.9, 0.8), 0.4)]
    got = jax.jit(jaxnmr.lighting_phong)(face_vertices, textures, EYE, lights, specular=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_lighting_phong_point_light_and_highlight_match_a_hand_computation():
    face_vertices, textures = world_faces_and_textures(np.random.default_rng(1))
    light = jaxnmr.PointLight((0.5, 1.5, -2.0), (1.0, 0.8, 0.6), 1.3, (1.0, 0.2, 0.1))
    lights = [light, jaxnmr.AmbientLight((1.0, 1.0, 0.9), 0.25)]
    got = np.asarray(jax.jit(jaxnmr.lighting_phong)(face_vertices, textures, EYE, lights, specular=0.7,
                                                    shininess=12.0))
    f64 = face_vertices.astype(np.float64)
    cross = np.cross(f64[:, 0] - f64[:, 1], f64[:, 2] - f64[:, 1])  # NMR's normal (docs/conventions.md, "Winding and normals")
    n = cross / (np.linalg.norm(cross, axis=-1, keepdims=True) + 1e-5)
    p = f64.mean(axis=1)
    to_light = np.array(light.position) - p
    dist = np.linalg.norm(to_light, axis=-1, keepdims=True)
    l = to_light / dist
    radiance = 1.3 * np.array(light.color) / (1.0 + 0.2 * dist + 0.1 * dist**2)
    h = unit(l + unit(EYE - p))
    cos_l, cos_h = (n * l).sum(-1, keepdims=True), (n * h).sum(-1, keepdims=True)
    diffuse = 0.25 * np.array([1.0, 1.0, 0.9]) + radiance * np.maximum(cos_l, 0)
    highlight = 0.7 * radiance * np.where(cos_l > 0, np.maximum(cos_h, 0) ** 12.0, 0)
    want = textures * diffuse[:, None, None, None] + highlight[:, None, None, None]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert (cos_l > 0).sum() >= 3 and (cos_l < 0).sum() >= 3 and highlight.max() > 0.01


def test_light_position_gradient_through_the_rasterizer_matches_central_differences():
    sphere_mesh = meshes.icosphere(1, radius=0.8)
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    f2 = fill_back(f)
    world, ndc = jaxnmr.vertices_to_faces(v, f2), jaxnmr.vertices_to_faces(to_ndc(v), f2)
    textures = np.full((f2.shape[0], 2, 2, 2, 3), 0.8, np.float32)
    w = np.random.default_rng(2).normal(size=(32, 32, 3)).astype(np.float32)

    @jax.jit
    def loss(position):
        lights = [jaxnmr.PointLight(position, attenuation=(0.5, 0.3, 0.0)), jaxnmr.AmbientLight(intensity=0.3)]
        lit = jaxnmr.lighting_phong(world, textures, EYE, lights)
        return jnp.sum(w * jaxnmr.rasterize(ndc, lit, image_size=32, anti_aliasing=False))

    position = np.array([1.0, 1.5, -2.0], np.float32)
    grad = np.asarray(jax.jit(jax.grad(loss))(position))
    h = 1e-2
    numeric = [(float(loss(position + h * e)) - float(loss(position - h * e))) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-3)
    assert np.abs(grad).min() > 0.1


# --- per-pixel Phong ------------------------------------------------------------------------------------------


def numpy_phong(n, p, albedo, eye, lights, ks, shininess):
    """Blinn-Phong written out in numpy (float64) for pixels ``[P, 3]``."""
    n, p, albedo = (np.asarray(x, np.float64) for x in (n, p, albedo))
    view = unit(eye - p)
    out = np.zeros_like(albedo)
    for light in lights:
        if isinstance(light, jaxnmr.AmbientLight):
            out = out + albedo * np.float64(light.intensity) * np.asarray(light.color, np.float64)
            continue
        if isinstance(light, jaxnmr.PointLight):
            d = np.asarray(light.position) - p
            dist = np.linalg.norm(d, axis=-1, keepdims=True)
            l = d / dist
            c0, c1, c2 = light.attenuation
            falloff = 1.0 / (c0 + c1 * dist + c2 * dist**2)
        else:
            l = unit(np.asarray(light.direction, np.float64))[None]
            falloff = 1.0
        radiance = light.intensity * np.asarray(light.color) * falloff
        cos_l = (unit(n) * l).sum(-1, keepdims=True)
        cos_h = (unit(n) * unit(l + view)).sum(-1, keepdims=True)
        out = out + albedo * radiance * np.maximum(cos_l, 0)
        out = out + ks * radiance * np.where(cos_l > 0, np.maximum(cos_h, 0) ** shininess, 0)
    return out


def test_phong_matches_a_hand_computation_on_a_sphere(sphere):
    g, covered = sphere["g"], sphere["covered"]
    colours = np.random.default_rng(3).uniform(0.2, 1.0, sphere["v"].shape).astype(np.float32)
    albedo = jaxnmr.interpolate(colours, g, sphere["f2"])
    lights = [jaxnmr.PointLight((1.5, 1.2, -2.5), (1.0, 0.8, 0.6), 1.2, (1.0, 0.2, 0.1)),
              jaxnmr.DirectionalLight((-0.5, 0.3, -1.0), (0.4, 0.5, 1.0), 0.7),
              jaxnmr.AmbientLight((1.0, 0.9, 0.8), 0.2)]
    args = dict(specular=0.6, shininess=20.0)
    got = np.asarray(phong(sphere["normals"], sphere["positions"], albedo, EYE, lights, **args))
    want = numpy_phong(np.asarray(sphere["normals"])[covered], np.asarray(sphere["positions"])[covered],
                       np.asarray(albedo)[covered], EYE, lights, 0.6, 20.0)
    np.testing.assert_allclose(got[covered], want, rtol=1e-5, atol=1e-6)
    assert (got[~covered] == 0).all()  # empty pixels: no albedo, no normal


def test_sphere_is_brightest_towards_a_point_light_with_the_highlight_on_the_half_vector(sphere):
    normals, positions, covered = sphere["normals"], sphere["positions"], sphere["covered"]
    light_at = np.array([1.5, 1.2, -2.5], np.float32)
    light = jaxnmr.PointLight(light_at)
    ones, zeros = jnp.ones_like(positions), jnp.zeros_like(positions)
    diffuse = np.asarray(phong(normals, positions, ones, EYE, light, specular=0.0))[..., 0]
    r, c = np.unravel_index(np.argmax(diffuse), diffuse.shape)
    # the unit sphere's point nearest the light faces it (n . l = 1); one pixel spans ~2.3 degrees here
    brightest = np.asarray(positions)[r, c]
    angle = np.degrees(np.arccos(np.dot(unit(brightest), unit(light_at))))
    assert angle < 4.0
    highlight = np.asarray(phong(normals, positions, zeros, EYE, light, specular=1.0, shininess=200.0))[..., 0]
    r, c = np.unravel_index(np.argmax(highlight), highlight.shape)
    p, n = np.asarray(positions)[r, c], unit(np.asarray(normals)[r, c])
    assert np.dot(n, unit(unit(light_at - p) + unit(EYE - p))) > 0.999
    # the exact highlight point: where the sphere's normal bisects the directions to the light and the eye
    theta, phi = np.meshgrid(np.radians(np.linspace(0, 180, 721)), np.radians(np.linspace(-180, 180, 1441)))
    u = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1).reshape(-1, 3)
    bisector = unit(unit(light_at - u) + unit(EYE - u))
    exact = u[np.argmax((u * bisector).sum(-1))]
    assert np.degrees(np.arccos(np.dot(unit(p), exact))) < 2.0
    assert np.dot(unit(p), unit(brightest)) < np.cos(np.radians(10))  # the two differ: not a trivial check


def test_smooth_shading_has_no_face_to_face_jumps_and_flat_shading_has():
    sphere_mesh = meshes.icosphere(1)  # coarse: 80 faces
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    scene = render(v, f, 64)
    g, positions, flat, smooth = scene["g"], scene["positions"], scene["flat"], scene["normals"]
    light = [jaxnmr.DirectionalLight((0.3, 0.6, -1.0)), jaxnmr.AmbientLight(intensity=0.3)]
    fi = np.asarray(g.face_index)
    excess = {}
    for name, normals in (("smooth", smooth), ("flat", flat)):
        image = np.asarray(phong(normals, positions, jnp.ones_like(positions), EYE, light, specular=0.0,
                                 facing=flat))[..., 0]
        steps, slopes = [], []
        for axis in (0, 1):
            I, F = np.moveaxis(image, axis, -1), np.moveaxis(fi, axis, -1)
            # four pixels in a line: a|b on one face, c|d on the next; the jump b->c against the slopes around it
            same = (F[:, :-3] == F[:, 1:-2]) & (F[:, 2:-1] == F[:, 3:]) & (F[:, 1:-2] != F[:, 2:-1])
            sel = same & (F[:, :-3] >= 0) & (F[:, 3:] >= 0)
            steps.append(np.abs(I[:, 2:-1] - I[:, 1:-2])[sel])
            slopes.append(((np.abs(I[:, 1:-2] - I[:, :-3]) + np.abs(I[:, 3:] - I[:, 2:-1])) / 2)[sel])
        steps, slopes = np.concatenate(steps), np.concatenate(slopes)
        assert steps.size > 150
        excess[name] = steps - 2 * slopes
        if name == "flat":  # constant inside each face
            assert slopes.max() == 0
    assert excess["smooth"].max() < 0.05
    assert (excess["flat"] > 0.05).mean() > 0.8 and excess["flat"].max() > 0.3


def test_facing_gives_two_sided_shading_of_an_open_surface():
    # one triangle seen from its back: its own normal faces away from the eye (which is at z = -3.5)
    tri_world = np.array([[-0.8, -0.6, 0.0], [0.0, 0.8, 0.0], [0.8, -0.6, 0.0]], np.float32)
    f = np.array([[0, 2, 1]], np.int32)  # wound so that its normal (V1 - V0) x (V2 - V0) is +z
    scene = render(tri_world, f, 32)
    normals = scene["normals"]  # (0, 0, 1), away from the eye
    positions, flat = scene["positions"], scene["flat"]
    light = jaxnmr.DirectionalLight((0.0, 0.0, -1.0))  # behind the camera, lighting the side it sees
    covered = np.asarray(scene["g"].face_index) >= 0
    np.testing.assert_allclose(unit(np.asarray(normals)[covered]), np.tile([0.0, 0.0, 1.0], (covered.sum(), 1)),
                               atol=1e-6)
    one_sided = np.asarray(phong(normals, positions, jnp.ones_like(positions), EYE, light, specular=0.0))
    two_sided = np.asarray(phong(normals, positions, jnp.ones_like(positions), EYE, light, specular=0.0,
                                 facing=flat))
    assert covered.sum() > 30
    assert (one_sided[covered] == 0).all()
    np.testing.assert_allclose(two_sided[covered], 1.0, rtol=1e-6)


def test_phong_gradient_recovers_a_light_position_in_a_compiled_optax_loop(sphere):
    normals, positions = sphere["normals"], sphere["positions"]
    albedo = jnp.full(positions.shape, 0.8)

    def shade(position):
        light = [jaxnmr.PointLight(position, attenuation=(1.0, 0.0, 0.05)), jaxnmr.AmbientLight(intensity=0.3)]
        return jaxnmr.phong(normals, positions, albedo, EYE, light, specular=0.5, shininess=16.0)

    true = jnp.array([1.5, 1.0, -2.5])
    target = jax.jit(shade)(true)
    loss = jax.jit(lambda position: jnp.mean((shade(position) - target) ** 2))
    fit = adam_fitter(loss, 0.05, 200)

    start = jnp.array([-1.0, 0.0, -2.0])
    found, losses = fit(start)
    assert float(loss(found)) < 1e-3 * float(loss(start))
    assert float(jnp.linalg.norm(found - true)) < 0.05
    # vmap over lights: one program, the same as one by one
    positions_batch = jnp.stack([start, true])
    batched = jax.jit(jax.vmap(shade))(positions_batch)
    for i, expected in enumerate((target, jax.jit(shade)(start))[::-1]):
        np.testing.assert_allclose(batched[i], expected, rtol=1e-6, atol=1e-7)


def test_a_sphere_is_fitted_by_gradients_through_gbuffers_phong_and_composite():
    """Size and position from a shaded image: silhouette (alpha) and interior (barycentric) gradients together."""
    sphere_mesh = meshes.icosphere(2)
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    f2 = fill_back(f)
    light = [jaxnmr.PointLight((1.0, 1.5, -2.5)), jaxnmr.AmbientLight(intensity=0.3)]

    def image(params):  # params: scale, x and y shift
        x = v * params[0] + jnp.concatenate([params[1:], jnp.zeros(1)])
        g = jaxnmr.rasterize_gbuffers(jaxnmr.vertices_to_faces(to_ndc(x), f2), 32)
        normals = jaxnmr.interpolate(jaxnmr.vertex_normals(x, f), g, f2)
        positions = jaxnmr.interpolate(x, g, f2)
        rgb = jaxnmr.phong(normals, positions, jnp.full(positions.shape, 0.8), EYE, light)
        return jaxnmr.composite(rgb, g.alpha, (0.1, 0.2, 0.4))

    true = jnp.array([0.8, 0.15, -0.1])
    target = jax.jit(image)(true)
    loss = lambda params: jnp.sum((image(params) - target) ** 2)
    fit = adam_fitter(loss, 0.01, 150)

    start = jnp.array([0.6, -0.1, 0.1])
    found, losses = fit(start)
    assert float(jax.jit(loss)(found)) < 0.02 * float(losses[0])
    np.testing.assert_allclose(found, true, atol=0.02)


# --- toon, contour, composite ---------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [2, 3, 5])
def test_toon_has_exactly_n_levels_at_the_diffuse_band_edges(sphere, levels):
    normals, positions, covered = sphere["normals"], sphere["positions"], sphere["covered"]
    light = jaxnmr.DirectionalLight((0.8, 0.5, -0.4))  # the terminator crosses the visible half: s spans [0, 1]
    albedo = jnp.ones_like(positions)
    shade = np.asarray(toon(normals, positions, albedo, EYE, light, levels=levels))[..., 0]
    assert np.array_equal(np.unique(shade[covered]), (np.arange(levels, dtype=np.float32) + 1) / np.float32(levels))
    s = np.asarray(phong(normals, positions, albedo, EYE, light, specular=0.0))[..., 0]
    band = np.minimum(np.floor(np.clip(s, 0, 1) * levels), levels - 1)
    np.testing.assert_array_equal(shade[covered], ((band + 1) / np.float32(levels))[covered])
    colour = np.array([0.9, 0.5, 0.2], np.float32)
    tinted = np.asarray(toon(normals, positions, albedo * colour, EYE, light, levels=levels))
    np.testing.assert_allclose(tinted[covered], shade[covered][:, None] * colour, rtol=1e-6)
    unlit = np.asarray(toon(normals, positions, albedo, EYE, [], levels=levels))  # no light: the darkest band
    assert (unlit[covered] == np.float32(1) / np.float32(levels)).all()


def square(x0, x1, y0, y1, z):
    """Two counter-clockwise triangles in NDC."""
    a, b, c, d = [x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]
    return np.array([[a, b, c], [a, c, d]], np.float32)


def test_contour_marks_the_silhouette_outline(sphere):
    g, covered = sphere["g"], sphere["covered"]
    lines = np.asarray(contour(g, depth_threshold=None)).astype(bool)
    np.testing.assert_array_equal(lines, find_boundaries(covered, connectivity=1, mode="inner"))
    assert lines.sum() > 60
    # a smooth sphere has no creases and no depth jumps: the same lines with normals and depth (at 64 x 64 the
    # steepest neighbours, at the limb, differ by 16 degrees and 8% in depth)
    with_all = np.asarray(contour(g, sphere["normals"], depth_threshold=0.1, crease_angle=30.0))
    np.testing.assert_array_equal(with_all.astype(bool), lines)


def test_contour_marks_occluding_contours_on_the_near_side_and_face_edges():
    face_vertices = np.concatenate([square(-0.8, 0.8, -0.8, 0.8, 3.0), square(-0.3, 0.3, -0.3, 0.3, 1.5)])
    g = jaxnmr.rasterize_gbuffers(face_vertices, 32)
    fi = np.asarray(g.face_index)
    near = fi >= 2
    outline = find_boundaries(fi >= 0, connectivity=1, mode="inner")
    occluding = find_boundaries(near, connectivity=1, mode="inner")
    lines = np.asarray(contour(g, depth_threshold=0.05)).astype(bool)
    np.testing.assert_array_equal(lines, outline | occluding)
    assert occluding.sum() > 30
    no_depth = np.asarray(contour(g, depth_threshold=None)).astype(bool)
    np.testing.assert_array_equal(no_depth, outline)
    # face edges: also the diagonals, where two faces of a square meet, on the upper or left pixel of each pair
    wire = np.asarray(contour(g, depth_threshold=0.05, face_edges=True)).astype(bool)
    extra = wire & ~lines
    assert extra.sum() > 20
    pad = np.pad(fi, ((0, 1), (0, 1)), constant_values=-1)
    below, right = pad[1:, :-1], pad[:-1, 1:]
    differs = np.any([(n != fi) & (n >= 0) & ((n >= 2) == near) for n in (below, right)], axis=0) & (fi >= 0)
    np.testing.assert_array_equal(extra, differs & ~lines)


def test_contour_marks_creases_between_flat_sides():
    box = meshes.cube(1.0)
    v, f = box.vertices, box.faces
    eye = np.array([1.6, 1.3, -2.0], np.float32)  # three sides visible
    scene = render(v, f, 48, eye)
    g, flat = scene["g"], scene["flat"]
    silhouette = np.asarray(contour(g, depth_threshold=None)).astype(bool)
    creases = np.asarray(contour(g, flat, depth_threshold=None, crease_angle=45.0)).astype(bool) & ~silhouette
    assert creases.sum() > 30
    n = np.asarray(flat)
    axis = np.argmax(np.abs(n), axis=-1)  # which side of the cube: its normal's axis and sign
    side = axis * 2 + (np.take_along_axis(n, axis[..., None], -1)[..., 0] > 0)
    pad = np.pad(side, 1, constant_values=-1)
    fi = np.pad(np.asarray(g.face_index), 1, constant_values=-1)
    other_side = np.any([(pad[1 + dr:49 + dr, 1 + dc:49 + dc] != side) & (fi[1 + dr:49 + dr, 1 + dc:49 + dc] >= 0)
                         for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))], axis=0)
    assert (creases <= other_side).all()  # every crease pixel touches another side of the cube
    assert creases.sum() >= 0.4 * (other_side & ~silhouette & (np.asarray(g.face_index) >= 0)).sum()


def test_composite_values_and_its_silhouette_gradient_is_nmrs_rgb_gradient():
    rng = np.random.default_rng(5)
    face_vertices = np.concatenate([square(-0.6, 0.5, -0.5, 0.6, 2.0), square(-0.2, 0.8, -0.8, 0.1, 1.5)])
    face_vertices[..., :2] += rng.uniform(-0.05, 0.05, face_vertices[..., :2].shape).astype(np.float32)
    colour = np.array([0.9, 0.4, 0.1], np.float32)
    background = np.array([0.1, 0.2, 0.7], np.float32)
    S = 24
    w = rng.normal(size=(S, S, 3)).astype(np.float32)

    def shaded(f):  # a constant-colour shading: black where empty, as phong leaves it
        g = jaxnmr.rasterize_gbuffers(f, S)
        return jnp.where((g.face_index >= 0)[..., None], colour, 0.0), g.alpha

    image, alpha = jax.jit(shaded)(face_vertices)
    out = np.asarray(jax.jit(jaxnmr.composite)(image, alpha, background))
    np.testing.assert_allclose(out, np.where(np.asarray(alpha)[..., None] > 0, colour, background), rtol=1e-6)
    ours = jax.jit(jax.grad(lambda f: jnp.sum(w * jaxnmr.composite(*shaded(f), background))))(face_vertices)
    textures = np.broadcast_to(colour, (4, 2, 2, 2, 3))
    nmr = jax.jit(jax.grad(lambda f: jnp.sum(w * jaxnmr.rasterize_rgbad(f, textures, S, False, eps=1e-4,
                                                                         background_color=background).rgb)))
    nmr = nmr(face_vertices)
    scale = np.abs(np.asarray(nmr)).max()
    assert scale > 0
    np.testing.assert_allclose(ours, nmr, rtol=1e-5, atol=1e-5 * scale)
    # the plain formula, with black outside the silhouette, estimates the edges' moves wrongly
    naive = jax.jit(jax.grad(lambda f: jnp.sum(w * (lambda im, a: a[..., None] * im + (1 - a[..., None]) * background)(
        *shaded(f)))))(face_vertices)
    assert np.abs(np.asarray(naive) - np.asarray(nmr)).max() > 0.1 * scale


def test_composite_fill_uses_the_nearest_covered_colours():
    from jaxnmr.shading import _fill_empty

    image = np.zeros((8, 10, 3), np.float32)
    covered = np.zeros((8, 10), bool)
    image[1, 1], covered[1, 1] = (1.0, 0.0, 0.0), True
    image[6, 8], covered[6, 8] = (0.0, 0.0, 1.0), True
    filled = np.asarray(jax.jit(_fill_empty)(image, covered))
    np.testing.assert_array_equal(filled[covered], image[covered])
    assert filled[0, 0, 0] == 1.0 and filled[7, 9, 2] == 1.0  # each corner takes its nearby colour
    np.testing.assert_allclose(filled.sum(-1), 1.0, rtol=1e-6)  # everything else mixes the two


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda s: jaxnmr.phong(np.zeros((4, 4, 2)), s["positions"], s["positions"], EYE, []), ValueError,
         r"phong: normals must have shape \[\.\.\., H, W, 3\], got shape \(4, 4, 2\)"),
        (lambda s: jaxnmr.phong(s["normals"], s["positions"], s["positions"], EYE, [(1.0, 2.0, 3.0)]), TypeError,
         "phong: lights must be an AmbientLight, a DirectionalLight, a PointLight or a sequence of them"),
        (lambda s: jaxnmr.phong(s["normals"], s["positions"], s["positions"], EYE,
                                jaxnmr.PointLight((1.0, 2.0))), ValueError,
         r"PointLight: position must have shape \[\.\.\., 3\]"),
        (lambda s: jaxnmr.toon(s["normals"], s["positions"], s["positions"], EYE, [], levels=1), ValueError,
         "toon: levels must be >= 2"),
        (lambda s: jaxnmr.contour(s["g"], depth_threshold=-1.0), ValueError, "contour: depth_threshold must be > 0"),
        (lambda s: jaxnmr.contour(s["g"], s["normals"], crease_angle=200.0), ValueError,
         r"contour: crease_angle must be in \(0, 180\)"),
        (lambda s: jaxnmr.contour(s["g"].alpha), TypeError, "contour: gbuffers must be the GBuffers"),
        (lambda s: jaxnmr.composite(s["positions"], np.ones((8, 8), np.float32)), ValueError,
         "composite: alpha .* must match image"),
        (lambda s: jaxnmr.composite(s["positions"], s["g"].alpha, (0.0, 0.0)), ValueError,
         r"composite: background_color must have shape \[\.\.\., 3\]"),
        (lambda s: jaxnmr.lighting_phong(np.zeros((2, 3, 3), np.float32), np.zeros((3, 2, 2, 2, 3), np.float32),
                                         EYE, []), ValueError, "lighting_phong: textures must have one cube per face"),
        (lambda s: jaxnmr.vertex_normals(np.zeros((3, 3), np.float32), np.array([[0, 1, 3]])), ValueError,
         r"vertex_normals: faces\[0\] = \[0, 1, 3\] indexes outside the 3 vertices"),
    ],
)
def test_bad_inputs_fail_at_trace_time_with_clear_messages(sphere, call, exc, match):
    with pytest.raises(exc, match=match):
        call(sphere)


# --- batch dims on any argument, numpy broadcasting of per-pixel colours ----------------------------------------

S = 12


def _loop(fn, batch, *args):
    """``fn`` on one element at a time; an argument ``(x, True)`` is indexed over ``batch``, ``x`` is shared."""
    outs = [np.asarray(fn(*(jax.tree.map(lambda a: a[idx], x) if batched else x for x, batched in args)))
            for idx in np.ndindex(*batch)]
    return np.stack(outs).reshape(batch + outs[0].shape)


def _images(seed, batch=()):
    """Unit normals, positions and albedo ``[*batch, S, S, 3]``."""
    rng = np.random.default_rng(seed)
    n = rng.normal(size=batch + (S, S, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return (n.astype(np.float32), rng.uniform(-1, 1, batch + (S, S, 3)).astype(np.float32),
            rng.uniform(0.2, 1, batch + (S, S, 3)).astype(np.float32))


LIGHTS = [jaxnmr.PointLight((0.5, 2.0, -2.0)), jaxnmr.DirectionalLight((0.3, 1.0, -0.5)),
          jaxnmr.AmbientLight(intensity=0.3)]
TOON = jax.jit(lambda n, p, a, e: jaxnmr.toon(n, p, a, e, LIGHTS, levels=3))


def test_phong_and_toon_accept_an_albedo_colour_that_broadcasts():
    n, p, _ = _images(0)
    colour = np.array([0.9, 0.4, 0.1], np.float32)
    full = np.broadcast_to(colour, (S, S, 3))
    for shade in (phong, TOON):
        want = np.asarray(shade(n, p, full, EYE, LIGHTS) if shade is phong else shade(n, p, full, EYE))
        got = np.asarray(shade(n, p, colour, EYE, LIGHTS) if shade is phong else shade(n, p, colour, EYE))
        np.testing.assert_array_equal(got, want)
    eager = jaxnmr.phong(n, p, colour, EYE, LIGHTS)  # jit equals eager
    np.testing.assert_allclose(np.asarray(phong(n, p, colour, EYE, LIGHTS)), np.asarray(eager), rtol=1e-6, atol=1e-7)
    # one colour per image: [3, 1, 1, 3], and vmap over colours [3, 3]
    colours = np.random.default_rng(1).uniform(size=(3, 3)).astype(np.float32)
    per_image = np.asarray(phong(n, p, colours[:, None, None, :], EYE, LIGHTS))
    assert per_image.shape == (3, S, S, 3)
    np.testing.assert_allclose(per_image, _loop(lambda c: phong(n, p, c, EYE, LIGHTS), (3,), (colours, True)),
                               rtol=1e-6, atol=1e-7)
    vmapped = jax.jit(jax.vmap(lambda c: jaxnmr.phong(n, p, c, EYE, LIGHTS)))(colours)
    np.testing.assert_allclose(np.asarray(vmapped), per_image, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"phong: the per-pixel arguments' shapes do not broadcast.*albedo \(5, 3\)"):
        jaxnmr.phong(n, p, np.ones((5, 3), np.float32), EYE, LIGHTS)
    with pytest.raises(ValueError, match=r"toon: albedo must have shape \[\.\.\., 3\], got shape \(2,\)"):
        jaxnmr.toon(n, p, np.ones(2, np.float32), EYE, LIGHTS)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_phong_and_toon_batch_on_one_image_argument_alone_equal_a_loop(which):
    images = list(_images(2))
    images[which] = _images(3, (3, 2))[which]
    args = [(x, i == which) for i, x in enumerate(images)]
    shaded = np.asarray(phong(*images, EYE, LIGHTS))
    assert shaded.shape == (3, 2, S, S, 3)
    np.testing.assert_allclose(shaded, _loop(lambda *a: phong(*a, EYE, LIGHTS), (3, 2), *args), rtol=1e-6, atol=1e-6)
    bands = np.asarray(TOON(*images, EYE))
    np.testing.assert_allclose(bands, _loop(lambda *a: TOON(*a, EYE), (3, 2), *args), rtol=1e-6, atol=1e-6)
    # vmap over the first batch row of that argument
    in_axes = tuple(0 if i == which else None for i in range(3))
    row = [x[0] if i == which else x for i, x in enumerate(images)]
    vmapped = jax.jit(jax.vmap(lambda *a: jaxnmr.phong(*a, EYE, LIGHTS), in_axes=in_axes))(*row)
    np.testing.assert_allclose(np.asarray(vmapped), shaded[0], rtol=1e-6, atol=1e-6)


def _contour_scene(seed):
    """G-buffers (S x S) of two overlapping jittered squares at different depths, and unit normals."""
    rng = np.random.default_rng(seed)
    face_vertices = np.concatenate([square(-0.8, 0.7, -0.7, 0.8, 3.0), square(-0.4, 0.3, -0.2, 0.5, 1.5)])
    face_vertices[..., :2] += rng.uniform(-0.2, 0.2, (1, 1, 2)).astype(np.float32)
    return jaxnmr.rasterize_gbuffers(face_vertices, S), _images(seed)[0]


def _stack(trees, batch):
    return jax.tree.map(lambda *x: jnp.stack(x).reshape(batch + x[0].shape), *trees)


CONTOUR = jax.jit(lambda g, n: jaxnmr.contour(g, n, depth_threshold=0.1, crease_angle=60.0, face_edges=True))


def test_contour_batch_on_normals_alone_or_gbuffers_alone_equals_a_loop():
    scenes = [_contour_scene(s) for s in range(6)]
    g, n = scenes[0]
    normals = np.stack([s[1] for s in scenes]).reshape(3, 2, S, S, 3)
    got = np.asarray(CONTOUR(g, normals))
    assert got.shape == (3, 2, S, S)
    np.testing.assert_array_equal(got, _loop(CONTOUR, (3, 2), (g, False), (normals, True)))
    assert got.sum() > 0 and (got[0, 0] != got[1, 1]).any()  # the creases differ between the elements
    gb = _stack([s[0] for s in scenes], (3, 2))
    got = np.asarray(CONTOUR(gb, n))
    assert got.shape == (3, 2, S, S)
    np.testing.assert_array_equal(got, _loop(CONTOUR, (3, 2), (gb, True), (n, False)))
    # without normals, and eager equals jit
    np.testing.assert_array_equal(np.asarray(contour(gb)), _loop(contour, (3, 2), (gb, True)))
    eager = jaxnmr.contour(g, normals, depth_threshold=0.1, crease_angle=60.0, face_edges=True)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(CONTOUR(g, normals)))


def test_contour_vmap_and_mismatched_shapes():
    scenes = [_contour_scene(s) for s in range(3)]
    g = scenes[0][0]
    normals = np.stack([s[1] for s in scenes])
    vmapped = jax.jit(jax.vmap(CONTOUR, (None, 0)))(g, normals)
    np.testing.assert_array_equal(np.asarray(vmapped), np.asarray(CONTOUR(g, normals)))
    gb = _stack([s[0] for s in scenes], (3,))
    vmapped = jax.jit(jax.vmap(CONTOUR, (0, None)))(gb, normals[0])
    np.testing.assert_array_equal(np.asarray(vmapped), np.asarray(CONTOUR(gb, normals[0])))
    with pytest.raises(ValueError, match=r"contour: the per-pixel arguments' shapes do not broadcast"):
        jaxnmr.contour(g, np.ones((S + 1, S, 3), np.float32))


def test_composite_broadcasts_a_colour_and_batch_dims_on_each_argument():
    rng = np.random.default_rng(7)
    alpha = rng.uniform(0, 1, (S, S)).astype(np.float32) * (rng.uniform(size=(S, S)) > 0.3)
    colour = np.array([0.9, 0.4, 0.1], np.float32)
    background = np.array([0.1, 0.2, 0.7], np.float32)
    comp = jax.jit(jaxnmr.composite)
    np.testing.assert_array_equal(np.asarray(comp(colour, alpha, background)),
                                  np.asarray(comp(np.broadcast_to(colour, (S, S, 3)), alpha, background)))
    image = rng.uniform(0, 1, (S, S, 3)).astype(np.float32)
    batched = [rng.uniform(0, 1, (3, 2) + x.shape).astype(np.float32) for x in (image, alpha, background)]
    for which in range(3):
        args = [(batched[i], True) if i == which else (x, False) for i, x in enumerate((image, alpha, background))]
        got = np.asarray(comp(*(x for x, _ in args)))
        assert got.shape == (3, 2, S, S, 3)
        np.testing.assert_allclose(got, _loop(comp, (3, 2), *args), rtol=1e-6, atol=1e-7)
    eager = jaxnmr.composite(batched[0], alpha, background)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(comp(batched[0], alpha, background)), rtol=1e-6)
    vmapped = jax.jit(jax.vmap(jaxnmr.composite, (None, 0, None)))(colour, batched[1][0], background)
    np.testing.assert_allclose(np.asarray(vmapped), np.asarray(comp(colour, batched[1][0], background)), rtol=1e-6)
