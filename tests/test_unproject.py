"""Every camera's from_ndc, the inverse of its to_ndc, and unproject_depth (docs/points.md, "Unprojecting depth").

Tolerances: points are float32. NDC round trips are compared to 1e-5 absolute (x, y in [-1, 1], z in [1, 4]:
a few dozen roundings of ~1e-7 each, amplified at most ~3x by undoing a strong lens distortion, stay near
1e-6); world round trips to 1e-5 relative to the points' spread of a few units, which also bounds the Newton
iterations of the OpenCV undistortion (they reach float32 rounding, docs in jaxnmr/cameras.py).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr.unproject import pixel_centers, unproject_depth
from _helpers import rodrigues

NDC_TOL = 1e-5
WORLD_TOL = 1e-5 * 4.0  # relative 1e-5 of coordinates up to ~4 world units
N = 12  # points per batch element
S = 32  # image side of the rendering tests


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def _stack(a, b):
    """Two pytrees of the same structure as one with a leading batch dim of 2 (numpy: nothing to compile)."""
    return jax.tree.map(lambda x, y: np.stack([np.asarray(x), np.asarray(y)]), a, b)


def _look_at_view(distance, elevation, azimuth):
    """``look_at_view_transform(distance, elevation, azimuth)`` toward the origin, in numpy: R's columns are the
    view axes (x = up x z, y = z x x, z toward the origin), ``t = -C R``."""
    el, az = np.radians(elevation), np.radians(azimuth)
    centre = distance * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    z = -centre / np.linalg.norm(centre)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z], axis=-1)
    return _f32(R), _f32(-centre @ R)


def _cameras() -> dict:
    """One camera of each kind with random valid parameters, all looking at the box [-1, 1]^3 from 2-4 units."""
    rng = np.random.default_rng(7)
    eye = _f32([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(2.5, 3.5)])
    at, up = _f32(rng.uniform(-0.2, 0.2, 3)), _f32(np.array([0.0, 1.0, 0.0]) + rng.uniform(-0.2, 0.2, 3))
    angle = _f32(rng.uniform(20, 40))
    R = _f32(rodrigues(rng.uniform(-1, 1, 3)))
    t = _f32([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 3.0])  # row and column conventions: depth >= 1.2
    f = rng.uniform(550, 650)
    K = _f32([[f, rng.uniform(-3, 3), rng.uniform(300, 340)], [0, f * rng.uniform(0.95, 1.05), rng.uniform(300, 340)],
              [0, 0, 1]])
    # Strong but calibrated lenses: barrel (k1 < 0) and the rational model; image corners (r'' < 0.9) stay well
    # inside the region where the lens model is one-to-one.
    barrel = _f32([rng.uniform(-0.3, -0.2), rng.uniform(0.08, 0.12), *rng.uniform(-2e-3, 2e-3, 2),
                   rng.uniform(-0.01, 0.01)])
    rational = _f32(np.array([2.5, 1.2, 0.005, -0.004, 0.05, 2.9, 2.0, 0.3]) * rng.uniform(0.9, 1.1, 8))
    return {
        "LookAt": jaxnmr.LookAt(eye, angle, at=at, up=up),
        "LookAt orthographic": jaxnmr.LookAt(eye, perspective=False, at=at, up=up),
        "Look": jaxnmr.Look(eye, at - eye + _f32(rng.uniform(-0.1, 0.1, 3)), angle, up=up),
        "CameraSpace": jaxnmr.CameraSpace(angle),
        "OpenCV barrel": jaxnmr.OpenCV(K, R, t, barrel, 640.0),
        "OpenCV rational, column t": jaxnmr.OpenCV(K, R, t[:, None], rational, 640.0),
        "FoV": jaxnmr.FoV(R, t, _f32(rng.uniform(40, 80))),
        "Orthographic": jaxnmr.Orthographic(R, t, _f32(rng.uniform(0.5, 2.0))),
    }


CAMERAS = _cameras()
RNG = np.random.default_rng(11)
NDC = _f32(np.concatenate([RNG.uniform(-1, 1, (2, N, 2)), RNG.uniform(1, 4, (2, N, 1))], -1))  # batch dims [2]
NDC[0, :4, :2] = [[-1, -1], [-1, 1], [1, -1], [1, 1]]  # the image corners, where a lens distorts most
BOX = _f32(RNG.uniform(-1, 1, (2, N, 3)))  # world points in front of every camera (CameraSpace: moved to z > 1)
WEIGHTS = _f32(RNG.normal(size=(2, N, 3)))
# Compiling dominates the cost of these tests, so each camera is compiled once, with (gradient, broadcast):
# * the gradient of OpenCV's from_ndc is partly written by hand (the undistortion's implicit derivative), so it
#   is checked against to_ndc's ("round trip"); the other cameras' are JAX's own, checked "finite", and the
#   variants (no perspective, the rational lens model) check values only (None);
# * broadcast: batch dims of the cameras against those of the points, once per family (NMR's cameras, OpenCV,
#   the row-vector cameras), whose members share that code.
CHECKS = {"LookAt": ("finite", False), "LookAt orthographic": (None, True), "Look": ("finite", False),
          "CameraSpace": ("finite", True), "OpenCV barrel": ("round trip", False),
          "OpenCV rational, column t": (None, True), "FoV": ("finite", True), "Orthographic": ("finite", False)}


def _round_trips(camera, ndc, points, weights=None, gradient=None) -> dict:
    """to_ndc(from_ndc(n)) ("back"), from_ndc(n) ("world"), from_ndc(to_ndc(x)) ("again") and to_ndc(x)
    ("projected"), with one from_ndc; with a ``gradient``, that of ``weights . from_ndc(n)`` ("finite") or of
    ``weights . to_ndc(from_ndc(n))`` ("round trip"), by the chain rule from the same calls ("grad": camera,
    ndc)."""
    projected = camera.to_ndc(points)
    both = jnp.concatenate([jnp.broadcast_to(ndc, projected.shape), projected], axis=-2)
    world, pull_from = jax.vjp(lambda c, m: c.from_ndc(m), camera, both)
    back, pull_to = jax.vjp(lambda c, w: c.to_ndc(w), camera, world[..., :N, :])
    out = dict(back=back, world=world[..., :N, :], again=world[..., N:, :], projected=projected)
    if gradient:
        grad_to, grad_world = pull_to(weights) if gradient == "round trip" else (None, weights)
        grad_camera, grad_both = pull_from(jnp.concatenate([grad_world, jnp.zeros_like(projected)], axis=-2))
        if grad_to is not None:
            grad_camera = jax.tree.map(jnp.add, grad_camera, grad_to)
        out["grad"] = (grad_camera, grad_both[..., :N, :])
    return out


@functools.partial(jax.jit, static_argnames=("gradient", "broadcast"))
def _suite(cameras, ndc, points, weights, gradient, broadcast):
    """Everything checked of one kind of camera, compiled once, for a batch of two cameras and points with batch
    dims [2]; every result is [2 cameras, 2 points' batch, ...]. With a ``gradient``, the round trips under vmap
    over the cameras, with the gradient ("vmapped"); with ``broadcast``, the round trips of the cameras with batch
    dims [2] against points with [2, 1] ("broadcast")."""
    out = {}
    if gradient:
        out["vmapped"] = jax.vmap(lambda c: _round_trips(c, ndc, points, weights, gradient))(cameras)
    if broadcast:  # points [2, 1, ...] against the cameras' [2]: [2 points' batch, 2 cameras], swapped
        values = _round_trips(cameras, ndc[:, None], points[:, None])
        out["broadcast"] = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), values)
    return out


@pytest.mark.parametrize("name", CAMERAS)
def test_from_ndc_inverts_to_ndc(name):
    camera = CAMERAS[name]
    cameras = _stack(camera, jax.tree.map(lambda x: np.asarray(x) * 1.02, camera))  # two of the kind
    points = BOX + _f32([0, 0, 2.5]) if isinstance(camera, jaxnmr.CameraSpace) else BOX
    gradient, broadcast = CHECKS[name]
    results = jax.tree.map(np.asarray, _suite(cameras, NDC, points, WEIGHTS, gradient=gradient, broadcast=broadcast))

    for out in results.values():
        assert out["world"].shape == (2, 2, N, 3) and out["world"].dtype == np.float32
        np.testing.assert_allclose(out["back"], np.broadcast_to(NDC, (2, 2, N, 3)), rtol=0, atol=NDC_TOL)  # n
        inside = np.all(np.abs(out["projected"][..., :2]) <= 1, axis=-1)  # the distorted lens: within the image
        assert inside.sum() >= N
        np.testing.assert_allclose(out["again"][inside], np.broadcast_to(points, (2, 2, N, 3))[inside], rtol=0,
                                   atol=WORLD_TOL)  # from_ndc(to_ndc(x)) = x
        assert not np.allclose(out["world"][0], out["world"][1])  # two cameras, two results
    if len(results) == 2:
        np.testing.assert_allclose(results["broadcast"]["world"], results["vmapped"]["world"], rtol=0, atol=1e-6)

    if gradient == "round trip":
        # The round trip is the identity, so its gradient is zero in the camera and the weights in the points.
        # Its camera part is d to_ndc / d camera + d to_ndc / d x . d from_ndc / d camera, the first non-zero: a
        # wrong, missing or NaN gradient of from_ndc leaves a non-zero (or NaN) sum.
        grad_camera, grad_ndc = results["vmapped"]["grad"]
        for g in jax.tree.leaves(grad_camera):
            np.testing.assert_allclose(g, 0.0, atol=1e-4)  # the two terms are of order 0.1-100
        np.testing.assert_allclose(grad_ndc, np.broadcast_to(WEIGHTS, (2, 2, N, 3)), rtol=0, atol=1e-4)
    elif gradient == "finite":
        grads = results["vmapped"]["grad"]
        assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
        assert max(np.abs(g).max() for g in jax.tree.leaves(grads[0])) > 0


def test_pixel_centers_layout():
    c = np.asarray(pixel_centers(4))
    assert c.shape == (16, 2) and c.dtype == np.float32
    centres = np.float32([-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_array_equal(c[:4, 0], centres)  # row 0: x left to right
    np.testing.assert_array_equal(c[:4, 1], 0.75)  # row 0 is the top: y = +0.75
    np.testing.assert_array_equal(c[::4, 1], centres[::-1])  # column 0: y top to bottom
    np.testing.assert_array_equal(np.asarray(pixel_centers(1)), [[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"pixel_centers: image_size must be >= 1, got 0"):
        pixel_centers(0)


def _square(centre, u, v, half):
    """A flat square (2 faces) centred at ``centre`` spanned by the orthonormal ``u``, ``v``, half-side ``half``."""
    corners = [centre + half * (a * u + b * v) for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return _f32(corners), np.int32([[0, 1, 2], [0, 2, 3]])


def _plane(normal):
    """The unit normal and two orthonormal vectors spanning the plane through the origin normal to ``normal``."""
    n = _f32(normal) / np.linalg.norm(normal)
    u = np.cross([0.0, 1.0, 0.0], n)
    u = _f32(u / np.linalg.norm(u))
    return n, u, _f32(np.cross(n, u))


@jax.jit
def _unproject_and_back(depth, renderer):
    points = unproject_depth(depth, renderer)
    return points, renderer.camera.to_ndc(points)


_R_FOV, _T_FOV = _look_at_view(3.0, 10.0, 200.0)
# Perspective (mirrored and not) and orthographic cameras, looking at the origin from about 3 units.
_RENDER_CAMERAS = {
    "LookAt, two eyes": jaxnmr.LookAt(_f32([[0.3, 0.4, -3.0], [-0.5, -0.2, -2.8]]), 30.0),
    "FoV": jaxnmr.FoV(_R_FOV, _T_FOV, 60.0),
    "Orthographic": jaxnmr.Orthographic(_R_FOV, _T_FOV, 1.0),
}


@pytest.mark.parametrize("name", _RENDER_CAMERAS)
@pytest.mark.parametrize("half", [3.0, 0.4])  # fills the view; an off-centre piece
def test_unprojected_depth_lies_on_the_surface(name, half):
    """Rendered depth unprojects onto the surface drawn, at the pixel centres the rasterizer sampled.

    The plane is tilted about both image axes, so that a flipped row or column, or a centre half a pixel off,
    moves the points off it; the small off-centre square checks x and y directly: its pixels unproject inside
    it. The rasterizer interpolates depth harmonically (docs/rasterizer.md, "Visibility"), exact for perspective
    cameras only, so the orthographic camera gets a plane facing it (constant depth).
    """
    camera = _RENDER_CAMERAS[name]
    normal, u, v = _plane(_R_FOV[:, 2] if isinstance(camera, jaxnmr.Orthographic) else [0.5, 0.4, 1.0])
    centre = _f32([0.0, 0.0, 0.0]) if half > 1 else _f32(0.5 * u + 0.35 * v)
    vertices, faces = _square(centre, u, v, half)
    renderer = jaxnmr.Renderer(camera=camera, lights=(), image_size=S, anti_aliasing=False)
    depth = renderer.render_depth(vertices, faces)
    points, ndc = (np.asarray(x) for x in _unproject_and_back(depth, renderer))
    depth = np.asarray(depth).reshape(depth.shape[:-2] + (S * S,))
    assert points.shape == depth.shape + (3,) and points.dtype == np.float32
    covered = depth < renderer.raster.far
    assert (0.8 if half > 1 else 0.02) < covered.mean() < (1.0001 if half > 1 else 0.5)

    p = points[covered] - centre
    np.testing.assert_allclose(p @ normal, 0.0, atol=1e-4 * 3.0)  # on the plane (relative to the depth, ~3)
    assert np.all(np.abs(p @ u) <= half + 1e-4) and np.all(np.abs(p @ v) <= half + 1e-4)
    # every pixel, covered or not, maps back to its centre at its depth
    np.testing.assert_allclose(ndc[..., :2], np.broadcast_to(pixel_centers(S), ndc.shape[:-1] + (2,)), rtol=0,
                               atol=1e-5)
    np.testing.assert_allclose(ndc[..., 2], depth, rtol=1e-5)


def test_unproject_depth_under_jit_vmap_grad_and_export():
    renderer = jaxnmr.Renderer(camera=_RENDER_CAMERAS["FoV"], lights=(), image_size=8)  # depth needs no lights
    moved = renderer.replace(camera=renderer.camera.replace(t=_T_FOV + 0.5), background_color=(1.0, 0.0, 0.0))
    both = _stack(renderer, moved)  # every leaf batched, as vmap needs
    depth = _f32(RNG.uniform(1.0, 4.0, (2, 8, 8)))
    # FoV's inverse by hand: view (-x z tan(fov / 2), y z tan(fov / 2), z), world (view - t) R^-1
    xy, z = np.asarray(pixel_centers(8), np.float64), depth.reshape(2, 64, 1).astype(np.float64)
    view = np.concatenate([xy * [-1.0, 1.0] * z * np.tan(np.radians(30.0)), z], axis=-1)
    want = (view - _T_FOV) @ np.linalg.inv(_R_FOV)

    @jax.jit
    def transformed(depth, renderer, moved, both):
        tanh_sum = lambda d, r: jnp.sum(jnp.tanh(unproject_depth(d, r)))
        return (unproject_depth(depth, renderer), jax.vmap(unproject_depth, (0, None))(depth, renderer),
                jax.vmap(unproject_depth)(depth, both), unproject_depth(depth[1], moved),
                jax.grad(tanh_sum, argnums=(0, 1))(depth, renderer))

    jitted, over_depth, over_renderers, second, grads = transformed(depth, renderer, moved, both)
    np.testing.assert_allclose(jitted, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(over_depth, jitted, rtol=0, atol=1e-6)
    np.testing.assert_allclose(over_renderers[0], jitted[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(over_renderers[1], second, rtol=0, atol=1e-6)
    assert not np.allclose(second, jitted[1])
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert np.abs(grads[0]).min() > 0 and np.abs(grads[1].camera.t).max() > 0
    exported = jax.export.deserialize(jax.export.export(jax.jit(lambda d: unproject_depth(d, renderer)))(
        jax.ShapeDtypeStruct(depth.shape, jnp.float32)).serialize())
    np.testing.assert_allclose(exported.call(depth), jitted, rtol=0, atol=1e-6)


class _NoInverse(NamedTuple):  # a camera of one's own: the Renderer needs only to_ndc and mirrored
    mirrored = False

    def to_ndc(self, vertices):
        return vertices


def test_errors():
    renderer = jaxnmr.Renderer(lights=(), image_size=S)
    with pytest.raises(ValueError, match=r"unproject_depth: depth must have shape \[\.\.\., 32, 32\] \(the "
                                         r"renderer's image_size is 32\), got shape \(2, 16, 16\)"):
        unproject_depth(np.ones((2, 16, 16), np.float32), renderer)
    with pytest.raises(TypeError, match=r"unproject_depth: depth must be a floating-point array"):
        unproject_depth(np.ones((S, S), np.int32), renderer)
    with pytest.raises(TypeError, match=r"unproject_depth: the renderer's camera \(_NoInverse\) has no from_ndc"):
        unproject_depth(np.ones((S, S), np.float32), jaxnmr.Renderer(camera=_NoInverse(), lights=(),
                                                                        image_size=S))
    with pytest.raises(TypeError, match=r"unproject_depth: renderer must be a jaxnmr.Renderer .*got LookAt"):
        unproject_depth(np.ones((S, S), np.float32), jaxnmr.LookAt())
    with pytest.raises(ValueError, match=r"LookAt.from_ndc: ndc must have shape \[\.\.\., N, 3\], got shape \(4, 2\)"):
        jaxnmr.LookAt().from_ndc(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"FoV.from_ndc: the leading \(batch\) dims .* ndc \(3,\), R \(2,\)"):
        jaxnmr.FoV(np.stack([np.eye(3, dtype=np.float32)] * 2)).from_ndc(np.zeros((3, 4, 3), np.float32))
