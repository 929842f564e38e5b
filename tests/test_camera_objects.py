"""Cameras as pytrees, lights as one set of types, and the Renderer as (camera, lights, raster settings), with
NMR's flat keyword constructor as a compatibility layer over them."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import cli, meshes, scale

MESH = meshes.icosphere(1, radius=0.7)
V, F = np.asarray(MESH.vertices), np.asarray(MESH.faces)
TEX = np.random.default_rng(0).uniform(0.3, 1.0, (F.shape[0], 2, 2, 2, 3)).astype(np.float32)
EYE = np.float32([0.4, 0.6, -2.5])
K = np.float32([[500.0, 0, 512], [0, 500.0, 512], [0, 0, 1]])
R_FOV, T_FOV = (np.asarray(x) for x in jaxnmr.look_at_view_transform(2.6, 15.0, 160.0))
R_CV, T_CV = np.diag([-1.0, -1.0, 1.0]).astype(np.float32) @ R_FOV.T, np.diag([-1.0, -1.0, 1.0]).astype(
    np.float32) @ T_FOV

# (camera object, NMR's flat settings of the same camera, the functional path)
CAMERAS = {
    "look_at": (jaxnmr.LookAt(EYE), dict(camera_mode="look_at", eye=EYE),
                lambda v: jaxnmr.perspective(jaxnmr.look_at(v, EYE))),
    "look_at ortho": (jaxnmr.LookAt(EYE, perspective=False), dict(camera_mode="look_at", eye=EYE, perspective=False),
                      lambda v: jaxnmr.look_at(v, EYE)),
    "look": (jaxnmr.Look(EYE, -EYE, 25.0), dict(camera_mode="look", eye=EYE, camera_direction=-EYE,
                                                viewing_angle=25.0),
             lambda v: jaxnmr.perspective(jaxnmr.look(v, EYE, -EYE), 25.0)),
    "none": (jaxnmr.CameraSpace(), dict(camera_mode="none"), lambda v: jaxnmr.perspective(v)),
    "projection": (jaxnmr.OpenCV(K, R_CV, T_CV), dict(camera_mode="projection", K=K, R=R_CV, t=T_CV),
                   lambda v: jaxnmr.projection(v, K, R_CV, T_CV)),
    "fov": (jaxnmr.FoV(R_FOV, T_FOV, 50.0), dict(camera_mode="fov", R=R_FOV, t=T_FOV, fov=50.0),
            lambda v: jaxnmr.fov_perspective(v, R_FOV, T_FOV, 50.0)),
    "orthographic": (jaxnmr.Orthographic(R_FOV, T_FOV, 1.3), dict(camera_mode="orthographic", R=R_FOV, t=T_FOV,
                                                                  scale=1.3),
                     lambda v: jaxnmr.orthographic(v, R_FOV, T_FOV, 1.3)),
}


def _points(camera):
    return V + (np.float32([0, 0, 2.5]) if isinstance(camera, jaxnmr.CameraSpace) else 0)


@pytest.mark.parametrize("name", CAMERAS)
def test_to_ndc_is_the_functional_camera(name):
    camera, _, functional = CAMERAS[name]
    v = _points(camera)
    np.testing.assert_allclose(camera.to_ndc(v), functional(v), rtol=1e-6, atol=1e-6)
    assert camera.mirrored == (name in ("look_at", "look_at ortho", "look", "none"))


@pytest.mark.parametrize("name", CAMERAS)
def test_renderer_of_a_camera_equals_nmrs_flat_constructor(name):
    camera, flat, _ = CAMERAS[name]
    v = _points(camera)
    ours = jaxnmr.Renderer(camera=camera, image_size=32)
    nmr = jaxnmr.Renderer(image_size=32, **flat)
    assert type(nmr.camera) is type(camera) and nmr.camera_mode == flat["camera_mode"]
    a, b = ours.render_rgbad(v, F, TEX), nmr.render_rgbad(v, F, TEX)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(a.alpha).sum() > 10  # the mesh is in view


@pytest.mark.parametrize("name", CAMERAS)
def test_cameras_are_pytrees_under_jit_vmap_and_grad(name):
    camera, _, _ = CAMERAS[name]
    v = _points(camera)
    leaves, tree = jax.tree.flatten(camera)
    assert leaves and all(isinstance(x, jax.Array) for x in leaves)
    np.testing.assert_allclose(jax.jit(lambda c: c.to_ndc(v))(camera), camera.to_ndc(v), rtol=1e-6, atol=1e-6)
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), camera)
    out = jax.vmap(lambda c: c.to_ndc(v))(batch)
    np.testing.assert_allclose(out[1], camera.to_ndc(v), rtol=1e-6, atol=1e-6)
    grads = jax.grad(lambda c: jnp.sum(jnp.tanh(c.to_ndc(v)[..., :2])))(camera)
    assert jax.tree.structure(grads) == tree
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert any(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(grads))


def test_a_new_camera_is_one_class():
    """A camera the library does not know, written with no jaxnmr internals (a NamedTuple is a pytree): the
    Renderer needs only its to_ndc and mirrored."""

    class Shifted(NamedTuple):  # NMR's look_at camera, moved right in the picture by `shift` NDC units
        eye: object
        shift: object = 0.25
        mirrored = True  # no annotation: a class attribute, not a field (not a leaf)

        def to_ndc(self, vertices):
            return jaxnmr.LookAt(self.eye).to_ndc(vertices) + jnp.stack([self.shift, 0.0, 0.0])

    camera = Shifted(jnp.asarray(EYE), jnp.float32(0.25))
    got = jaxnmr.Renderer(camera=camera, image_size=32, anti_aliasing=False).render_silhouettes(V, F)
    plain = jaxnmr.Renderer(camera=jaxnmr.LookAt(EYE), image_size=32, anti_aliasing=False).render_silhouettes(V, F)
    np.testing.assert_array_equal(np.asarray(got)[:, 4:], np.asarray(plain)[:, :-4])  # 0.25 NDC = 4 pixels of 32
    g = jax.grad(lambda s: jnp.sum(jaxnmr.Renderer(camera=Shifted(camera.eye, s), image_size=32)
                                   .render_silhouettes(V, F) * jnp.linspace(0, 1, 32)))(jnp.float32(0.25))
    assert np.isfinite(g) and g > 0


def test_replace_keeps_what_it_does_not_change():
    r = jaxnmr.Renderer(camera=jaxnmr.LookAt(EYE, at=(0.0, 0.2, 0.0), up=(0.0, 0.0, 1.0)), image_size=16)
    r2 = r.replace(eye=-EYE, camera_direction=(1.0, 0.0, 0.0))  # LookAt has no direction: ignored, as NMR does
    np.testing.assert_allclose(r2.camera.at, [0.0, 0.2, 0.0])
    np.testing.assert_allclose(r2.camera.up, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(r2.eye, -EYE)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'at' .*camera=renderer.camera.replace"):
        r.replace(at=(0.0, 0.0, 0.0))


def test_per_view_eyes_need_a_camera_with_an_eye():
    fov = jaxnmr.Renderer(camera=jaxnmr.FoV(R_FOV, T_FOV), image_size=16)
    eyes = np.stack([EYE, -EYE])
    with pytest.raises(TypeError, match=r"render_views: sets each view's eye, but the renderer's camera \(FoV\)"):
        cli.render_views(fov, V, F, TEX, eyes, 2)
    with pytest.raises(TypeError, match=r"render_views_sharded: .*camera \(FoV\) has no eye"):
        scale.render_views_sharded(fov, V, F, TEX, eyes, scale.device_mesh())


def test_lights_are_checked_and_converted_on_construction():
    light = jaxnmr.DirectionalLight((0, 1, 0), intensity=0.5)
    assert all(isinstance(x, jax.Array) and x.dtype == jnp.float32 for x in jax.tree.leaves(light))
    with pytest.raises(ValueError, match=r"DirectionalLight: direction must have shape \[\.\.\., 3\]"):
        jaxnmr.DirectionalLight((0.0, 1.0))
    with pytest.raises(TypeError, match=r"PointLight: position must be a floating-point array"):
        jaxnmr.PointLight(np.zeros(3, np.int32))
    explicit = jaxnmr.Renderer(camera=jaxnmr.LookAt(jaxnmr.cameras.default_eye()), lights=(
        jaxnmr.AmbientLight(intensity=0.5), jaxnmr.DirectionalLight((0.0, 1.0, 0.0), intensity=0.5)))
    nmr = jaxnmr.Renderer()
    assert jax.tree.structure(explicit) == jax.tree.structure(nmr)
    for a, b in zip(jax.tree.leaves(explicit), jax.tree.leaves(nmr)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_renderer_reads_and_replaces_nmrs_names():
    r = jaxnmr.Renderer(image_size=48, eye=EYE, light_direction=(0.0, 2.0, 0.0), light_intensity_directional=0.3,
                        background_color=(0.1, 0.2, 0.3), rasterizer_eps=1e-4)
    assert r.image_size == 48 and r.raster.image_size == 48 and r.rasterizer_eps == 1e-4 == r.raster.eps
    np.testing.assert_allclose(r.eye, EYE)
    np.testing.assert_allclose(r.background_color, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(r.light_direction, [0, 2, 0])
    np.testing.assert_allclose(r.light_intensity_directional, 0.3, rtol=1e-6)
    assert r.camera_mode == "look_at"
    r2 = r.replace(eye=-EYE, light_intensity_ambient=0.25, image_size=16)
    np.testing.assert_allclose(r2.eye, -EYE)
    np.testing.assert_allclose(r2.light_intensity_ambient, 0.25)
    np.testing.assert_allclose(r2.light_intensity_directional, 0.3, rtol=1e-6)
    assert r2.image_size == 16 and r.image_size == 48
    r3 = r.replace(camera_mode="fov", R=R_FOV, t=T_FOV)
    assert isinstance(r3.camera, jaxnmr.FoV) and r3.camera_mode == "fov"
    np.testing.assert_allclose(r3.fov, 60.0)
    assert r3.eye is None and r.fov is None  # NMR's Renderer: None where the mode does not use a setting


def test_renderer_construction_errors():
    with pytest.raises(TypeError, match=r"camera= and NMR's camera settings \(eye\) cannot be combined"):
        jaxnmr.Renderer(camera=jaxnmr.LookAt(EYE), eye=EYE)
    with pytest.raises(TypeError, match=r"lights= and NMR's lights settings"):
        jaxnmr.Renderer(lights=[jaxnmr.AmbientLight()], light_direction=(0, 1, 0))
    with pytest.raises(TypeError, match="unexpected keyword argument 'eyes'"):
        jaxnmr.Renderer(eyes=EYE)
    with pytest.raises(TypeError, match="camera must be a camera"):
        jaxnmr.Renderer(camera=EYE)
    with pytest.raises(TypeError, match="lights must be an AmbientLight, a DirectionalLight, a PointLight"):
        jaxnmr.Renderer(lights=[EYE])
    with pytest.raises(ValueError, match=r"Renderer: image_size"):
        jaxnmr.Renderer(image_size=0)
    with pytest.raises(ValueError, match=r"LookAt: eye \[0\.0, 0\.0, 0\.0\] is at the point looked at"):
        jaxnmr.LookAt((0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"Renderer: eye \[0\.0, 0\.0, 0\.0\] is at the point looked at"):
        jaxnmr.Renderer(eye=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"Look: direction must be non-zero"):
        jaxnmr.Look(EYE, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"FoV: fov must be in \(0, 180\)"):
        jaxnmr.FoV(fov=180.0)
    with pytest.raises(ValueError, match=r"OpenCV: needs K, R and t; missing: t"):
        jaxnmr.OpenCV(K, R_CV)


def test_renderer_is_a_pytree_of_its_parts():
    r = jaxnmr.Renderer(camera=jaxnmr.LookAt(EYE), image_size=32)
    leaves = jax.tree.leaves(r)
    assert len(leaves) == 4 + 2 + 3 + 1  # LookAt: eye, angle, at, up; ambient 2, directional 3; background
    out = jax.jit(lambda r: r.render_silhouettes(V, F))(r)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(r.render_silhouettes(V, F)))
    eyes = jnp.stack([EYE, EYE * 1.2])
    batched = jax.vmap(lambda e: r.replace(camera=r.camera.replace(eye=e)).render_silhouettes(V, F))(eyes)
    np.testing.assert_array_equal(np.asarray(batched[0]), np.asarray(out))


# -- lights ------------------------------------------------------------------------------------------------------


def test_nmr_lighting_is_light_faces_of_nmrs_lights_mirrored():
    rng = np.random.default_rng(3)
    fv = rng.normal(size=(9, 3, 3)).astype(np.float32)
    tex = rng.uniform(0, 1, (9, 2, 2, 2, 3)).astype(np.float32)
    d = np.float32([0.3, 1.7, -0.4])  # NMR does not normalise: its length scales the light
    want = jaxnmr.lighting(fv, tex, 0.3, 0.6, (1.0, 0.9, 0.8), (0.5, 0.7, 1.0), d)
    n = np.cross(fv[:, 0] - fv[:, 1], fv[:, 2] - fv[:, 1])  # NMR's normal: that of the reversed vertex order
    n = n / (np.linalg.norm(n, axis=-1, keepdims=True) + 1e-5)
    light = 0.3 * np.float32([1.0, 0.9, 0.8]) + 0.6 * np.float32([0.5, 0.7, 1.0]) * np.maximum(n @ d, 0)[:, None]
    np.testing.assert_allclose(want, tex * light[:, None, None, None], rtol=1e-5, atol=1e-6)
    lights = (jaxnmr.AmbientLight((1.0, 0.9, 0.8), 0.3),
              jaxnmr.DirectionalLight(d, (0.5, 0.7, 1.0), 0.6 * np.linalg.norm(d)))
    np.testing.assert_allclose(jaxnmr.light_faces(fv, tex, lights), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jaxnmr.light_faces(fv[:, ::-1], tex, lights, mirrored=False), want, rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(jaxnmr.light_faces(fv, tex, lights, mirrored=False), want, atol=1e-3)


def test_light_faces_point_light_and_no_lights():
    fv = np.float32([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]])  # normal +z (counter-clockwise seen from +z)
    tex = np.ones((1, 2, 2, 2, 3), np.float32)
    centroid = fv[0].mean(0)
    light = jaxnmr.PointLight(centroid + np.float32([0, 0, 2]), (1.0, 0.5, 0.25), 2.0, (1.0, 0.5, 0.0))
    got = np.asarray(jaxnmr.light_faces(fv, tex, [light], mirrored=False))[0, 0, 0, 0]
    cosine = 1.0 / (1.0 + 1e-5)  # n = cross / (|cross| + 1e-5), NMR's regularised normalisation; |cross| = 1
    np.testing.assert_allclose(got, 2.0 * np.float32([1.0, 0.5, 0.25]) / (1.0 + 0.5 * 2.0) * cosine, rtol=1e-6)
    assert np.all(np.asarray(jaxnmr.light_faces(fv, tex, [light], mirrored=True)) == 0)  # lit from behind
    assert np.all(np.asarray(jaxnmr.light_faces(fv, tex, [])) == 0)
    with pytest.raises(TypeError, match="light_faces: mirrored must be a Python bool"):
        jaxnmr.light_faces(fv, tex, [light], mirrored=np.bool_(True) + 1)


def test_renderer_with_a_point_light_differs_from_nmrs_lights_and_differentiates():
    light = jaxnmr.PointLight((0.0, 2.0, -2.0), (1.0, 1.0, 1.0), 3.0)
    r = jaxnmr.Renderer(camera=jaxnmr.LookAt(EYE), lights=(jaxnmr.AmbientLight(intensity=0.2), light), image_size=32)
    img = np.asarray(r.render(V, F, TEX))
    assert img.max() > 0.3 and not np.allclose(img, np.asarray(jaxnmr.Renderer(eye=EYE, image_size=32)
                                                                 .render(V, F, TEX)), atol=1e-2)

    def loss(position):
        lights = (jaxnmr.AmbientLight(intensity=0.2), light.replace(position=position))
        return jnp.sum(r.replace(lights=lights).render(V, F, TEX))

    g = jax.grad(loss)(jnp.float32([0.0, 2.0, -2.0]))
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
