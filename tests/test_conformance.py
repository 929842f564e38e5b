"""Conformance: every public function under every JAX transformation and batch layout.

The cells are generated, not listed: one table, ``CASES``, says how to build small valid inputs for each public
function (its array arguments, which of them are differentiable) and the suite crosses it with the modes below.
Every name in every module's ``__all__`` is either a case or declared in ``NOT_ARRAY_FUNCTIONS`` (types,
constants, file and command-line functions); a mode that a function legitimately cannot support is declared, with
the reason and the error it must raise instead, in ``UNSUPPORTED``.

Modes (``arg`` runs over the array arguments of the case in turn):

- ``batch1:arg``, ``batch2:arg``: one or two leading batch dims on ``arg`` only, the others unbatched. The
  result has those batch dims on every output and equals a Python loop over the batch.
- ``broadcast``: batch shapes on all array arguments drawn by hypothesis from the mutually broadcastable ones
  (``(2, 1)`` against ``(3,)``, size-1 dims, missing dims), against the loop over the broadcast batch.
- ``jit``: ``jit(f)`` equals eager ``f``.
- ``vmap:arg``: ``vmap`` over ``arg`` equals the loop.
- ``grad:arg``: for a differentiable ``arg``, the gradient of a random linear function of the outputs is finite
  and equals ``vmap(grad)`` per batch element.
- ``shard_map:arg``: ``arg``'s batch split over 2 CPU devices (the others replicated), with ``shard_map``'s
  default checks, equals the unsharded call; ``shard_grad:arg`` computes the gradient of every differentiable
  argument inside the ``shard_map`` (``psum`` for replicated ones), as data-parallel training does, and equals the
  unsharded gradient.
- ``export``: ``jax.export`` round trip (serialise, deserialise, call) equals ``jit``; with the VJP serialised,
  the gradient through the reloaded function equals ``jit(grad)``. A render's round trip is also run in a fresh
  process after only ``import jaxnmr`` (``test_export_reloads_in_a_fresh_process``).

The batch-layout cells and their loop references run jitted functions (``jit`` equals eager is its own cell), so
the comparisons are between compiled programs of different batch layouts: outputs agree to ``1e-5`` of their
scale, gradients to ``1e-4`` (float32 evaluation order differs between the layouts; integer outputs, e.g. face
indices, must be equal).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.sharding import PartitionSpec as P

import jaxnmr
from jaxnmr import scale

FORWARD_TOL = 1e-5
GRAD_TOL = 1e-4
IMAGE = 8  # pixels: every rasterizing case renders 8x8 (16x16 inside with anti-aliasing)

MODULES = ("cameras", "lights", "mesh", "rasterizer", "renderer", "io", "voxels", "geometry", "gbuffers",
           "shading", "textures", "losses", "meshes", "scale", "reference", "cli", "points", "compositing",
           "unproject")
for _module in MODULES:
    importlib.import_module(f"jaxnmr.{_module}")


# -- input makers: each returns one valid unbatched example from a numpy Generator ------------------------------

def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def _points(n, lo=-1.0, hi=1.0):
    return lambda rng: _f32(rng.uniform(lo, hi, (n, 3)))


def _in_front(n):
    """Camera-space points ahead of a camera looking along +z."""
    return lambda rng: _f32(np.concatenate([rng.uniform(-1, 1, (n, 2)), rng.uniform(2, 4, (n, 1))], -1))


def _scalar(lo, hi):
    return lambda rng: _f32(rng.uniform(lo, hi))


def _vec(lo, hi, n=3):
    return lambda rng: _f32(rng.uniform(lo, hi, n))


def _eye(rng):
    """A camera position 2-3 units from the origin, away from the +-y axis (the default up vector)."""
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(-1.0, 1.0)
    return _f32(rng.uniform(2.0, 3.0) * np.array([np.cos(el) * np.sin(az), np.sin(el), -np.cos(el) * np.cos(az)]))


def _up(rng):
    return _f32(np.array([0.0, 1.0, 0.0]) + rng.uniform(-0.2, 0.2, 3))


def _rotation(rng):
    """A rotation near the identity (so that points at z in [2, 4] stay in front of the camera)."""
    a = rng.uniform(-0.3, 0.3, 3)
    q, r = np.linalg.qr(np.eye(3) + np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]]))
    return _f32(q * np.sign(np.diag(r)))


def _intrinsics(rng):
    f = rng.uniform(400, 600)
    return _f32([[f, 0, rng.uniform(300, 340)], [0, f * rng.uniform(0.9, 1.1), rng.uniform(300, 340)], [0, 0, 1]])


def _ndc_faces(F):
    """NDC face-vertex coordinates [F, 3, 3]: large triangles inside the view, depth in [1, 5]."""
    def make(rng):
        centre = rng.uniform(-0.5, 0.5, (F, 1, 2))
        xy = centre + rng.uniform(-0.6, 0.6, (F, 3, 2))
        return _f32(np.concatenate([xy, rng.uniform(1.0, 5.0, (F, 3, 1))], -1))
    return make


def _ndc_points(P):
    """NDC points [P, 3]: inside the view, depth in [1, 5]."""
    return lambda rng: _f32(np.concatenate([rng.uniform(-0.9, 0.9, (P, 2)), rng.uniform(1.0, 5.0, (P, 1))], -1))


def _slots(C=None):
    """Per-slot arrays [IMAGE, IMAGE, 3 slots (, C)] in [0, 1] (weights or values)."""
    return lambda rng: _f32(rng.uniform(0, 1, (IMAGE, IMAGE, 3) + ((C,) if C else ())))


def _textures(F, T=2):
    return lambda rng: _f32(rng.uniform(0, 1, (F, T, T, T, 3)))


def _image(C=None):
    return lambda rng: _f32(rng.uniform(0, 1, (IMAGE, IMAGE) + ((C,) if C else ())))


def _unit_image(rng):
    n = rng.normal(size=(IMAGE, IMAGE, 3))
    return _f32(n / np.linalg.norm(n, axis=-1, keepdims=True))


def _faces_of(faces: np.ndarray):
    """Index arrays: the mesh's faces with their rows in a random order (a valid mesh for every element)."""
    return lambda rng: np.asarray(faces[rng.permutation(len(faces))], np.int32)


def _key(rng):
    return jax.random.key(int(rng.integers(0, 2**31)))


_BOX = jaxnmr.meshes.cube()
CUBE_V, CUBE_F = np.asarray(_BOX.vertices), np.asarray(_BOX.faces)
CUBE_F = CUBE_F.astype(np.int32)
N_CUBE, F_CUBE = len(CUBE_V), len(CUBE_F)


def _cube_vertices(rng):
    """The cube's 8 vertices, jittered and scaled to fit NMR's default view."""
    return _f32(0.5 * CUBE_V + rng.uniform(-0.05, 0.05, CUBE_V.shape))


# -- the table of cases -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Arg:
    name: str
    make: Callable[[np.random.Generator], Any]
    diff: bool = True  # differentiable (float) argument
    # Must be a concrete array (e.g. faces whose adjacency is built on the host): in every mode on another
    # argument it is fixed to an example value, closed over, so that the transformations see only the others.
    concrete: bool = False
    # A translation t, where ``[..., 1, 3]`` is NMR's row form (its batch dims are those before the row;
    # docs/conventions.md, "OpenCV"): a batch shape ending in 1 would be read as that form, not as a batch, so
    # the broadcast layouts never give it one (tests/test_projection.py covers the row form itself).
    row_form: bool = False


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # the public name, "module.function" (a method: "module.Class.method")
    fn: Callable[..., Any]  # takes the array arguments positionally; every other setting is fixed inside
    args: tuple[Arg, ...]
    forward_tol: float = FORWARD_TOL
    grad_tol: float = GRAD_TOL
    concrete_only: bool = False  # reads values (check_mesh): its loop reference runs eagerly, not under jit

    def example(self, seed: int = 0) -> list:
        rng = np.random.default_rng(seed)
        return [a.make(rng) for a in self.args]

    def arg(self, name: str) -> int:
        return [a.name for a in self.args].index(name)


@functools.cache
def _closed(case: Case, keep: str | None = None) -> Case:
    """``case`` with its concrete arguments other than ``keep`` fixed to example values (closed over)."""
    fixed = {i: a.make(np.random.default_rng(0)) for i, a in enumerate(case.args) if a.concrete and a.name != keep}
    if not fixed:
        return case

    def fn(*free):
        rest = iter(free)
        return case.fn(*(fixed[i] if i in fixed else next(rest) for i in range(len(case.args))))

    return dataclasses.replace(case, fn=fn, args=tuple(a for i, a in enumerate(case.args) if i not in fixed))


def _light():
    return [jaxnmr.PointLight(position=(0.5, 2.0, -2.0)), jaxnmr.DirectionalLight(direction=(0.3, 1.0, -0.5)),
            jaxnmr.AmbientLight(intensity=0.3)]


def _gbuffers(face_vertices):
    return jaxnmr.rasterize_gbuffers(face_vertices, image_size=IMAGE)


def _renderer(**kw):
    return jaxnmr.Renderer(image_size=IMAGE, **kw)


_POT = jaxnmr.meshes.teapot(resolution=2)
TEAPOT_V, TEAPOT_F = np.asarray(_POT.vertices), np.asarray(_POT.faces)
TEAPOT_F = TEAPOT_F.astype(np.int32)
OCCUPANCY = np.zeros((2, 2, 2), bool)
OCCUPANCY[0, 0, 0] = OCCUPANCY[1, 0, 0] = True

_T = Arg("t", _vec(-0.2, 0.2), row_form=True)  # a camera's translation

CASES: tuple[Case, ...] = (
    # cameras
    Case("cameras.get_points_from_angles", jaxnmr.get_points_from_angles,
         (Arg("distance", _scalar(2, 3)), Arg("elevation", _scalar(-60, 60)), Arg("azimuth", _scalar(0, 360)))),
    Case("cameras.look_at", jaxnmr.look_at,
         (Arg("vertices", _points(5)), Arg("eye", _eye), Arg("at", _vec(-0.2, 0.2)), Arg("up", _up))),
    Case("cameras.look", jaxnmr.look,
         (Arg("vertices", _points(5)), Arg("eye", _eye), Arg("direction", _vec(0.5, 1.0)), Arg("up", _up))),
    Case("cameras.perspective", jaxnmr.perspective, (Arg("vertices", _in_front(5)), Arg("angle", _scalar(20, 40)))),
    Case("cameras.projection", jaxnmr.projection,
         (Arg("vertices", _in_front(5)), Arg("K", _intrinsics), Arg("R", _rotation), _T,
          Arg("dist_coeffs", _vec(-0.01, 0.01, 5)), Arg("orig_size", _scalar(600, 700)))),
    Case("cameras.rodrigues", jaxnmr.rodrigues, (Arg("rvec", _vec(-2, 2)),)),
    Case("cameras.look_at_view_transform", jaxnmr.look_at_view_transform,
         (Arg("distance", _scalar(2, 3)), Arg("elevation", _scalar(-60, 60)), Arg("azimuth", _scalar(0, 360)))),
    Case("cameras.look_at_view_transform(eye=)", lambda eye, at: jaxnmr.look_at_view_transform(eye=eye, at=at),
         (Arg("eye", _eye), Arg("at", _vec(-0.2, 0.2)))),
    Case("cameras.fov_perspective",
         lambda v, R, t, fov, aspect: jaxnmr.fov_perspective(v, R, t, fov=fov, aspect_ratio=aspect),
         (Arg("vertices", _in_front(5)), Arg("R", _rotation), _T, Arg("fov", _scalar(40, 80)),
          Arg("aspect_ratio", _scalar(0.8, 1.2)))),
    Case("cameras.orthographic", jaxnmr.orthographic,
         (Arg("vertices", _in_front(5)), Arg("R", _rotation), _T, Arg("scale", _scalar(0.5, 2)),
          Arg("min_x", _scalar(-1.5, -1)), Arg("max_x", _scalar(1, 1.5)))),
    # camera objects: each one's to_ndc, with its fields traced
    Case("cameras.LookAt", lambda v, eye, angle, at: jaxnmr.LookAt(eye, angle, at=at).to_ndc(v),
         (Arg("vertices", _points(5)), Arg("eye", _eye), Arg("viewing_angle", _scalar(20, 40)),
          Arg("at", _vec(-0.2, 0.2)))),
    Case("cameras.Look", lambda v, eye, offset: jaxnmr.Look(eye, offset - eye).to_ndc(v),  # toward the points
         (Arg("vertices", _points(5, -0.5, 0.5)), Arg("eye", _eye), Arg("offset", _vec(-0.2, 0.2)))),
    Case("cameras.CameraSpace", lambda v, angle: jaxnmr.CameraSpace(angle).to_ndc(v),
         (Arg("vertices", _in_front(5)), Arg("viewing_angle", _scalar(20, 40)))),
    Case("cameras.OpenCV", lambda v, K, R, t, d: jaxnmr.OpenCV(K, R, t, d, 650.0).to_ndc(v),
         (Arg("vertices", _in_front(5)), Arg("K", _intrinsics), Arg("R", _rotation), _T,
          Arg("dist_coeffs", _vec(-0.01, 0.01, 5)))),
    Case("cameras.FoV", lambda v, R, t, fov: jaxnmr.FoV(R, t, fov).to_ndc(v),
         (Arg("vertices", _in_front(5)), Arg("R", _rotation), _T, Arg("fov", _scalar(40, 80)))),
    Case("cameras.Orthographic", lambda v, R, t, scale: jaxnmr.Orthographic(R, t, scale).to_ndc(v),
         (Arg("vertices", _in_front(5)), Arg("R", _rotation), _T,
          Arg("scale", _scalar(0.5, 2)))),
    # camera inverses: each one's from_ndc, with its fields traced
    Case("cameras.LookAt.from_ndc", lambda n, eye, angle, at: jaxnmr.LookAt(eye, angle, at=at).from_ndc(n),
         (Arg("ndc", _in_front(5)), Arg("eye", _eye), Arg("viewing_angle", _scalar(20, 40)),
          Arg("at", _vec(-0.2, 0.2)))),
    Case("cameras.Look.from_ndc", lambda n, eye, offset: jaxnmr.Look(eye, offset - eye).from_ndc(n),
         (Arg("ndc", _in_front(5)), Arg("eye", _eye), Arg("offset", _vec(-0.2, 0.2)))),
    Case("cameras.CameraSpace.from_ndc", lambda n, angle: jaxnmr.CameraSpace(angle).from_ndc(n),
         (Arg("ndc", _in_front(5)), Arg("viewing_angle", _scalar(20, 40)))),
    Case("cameras.OpenCV.from_ndc", lambda n, K, R, t, d: jaxnmr.OpenCV(K, R, t, d, 650.0).from_ndc(n),
         (Arg("ndc", _in_front(5)), Arg("K", _intrinsics), Arg("R", _rotation), _T,
          Arg("dist_coeffs", _vec(-0.01, 0.01, 5)))),
    Case("cameras.FoV.from_ndc", lambda n, R, t, fov: jaxnmr.FoV(R, t, fov).from_ndc(n),
         (Arg("ndc", _in_front(5)), Arg("R", _rotation), _T, Arg("fov", _scalar(40, 80)))),
    Case("cameras.Orthographic.from_ndc", lambda n, R, t, scale: jaxnmr.Orthographic(R, t, scale).from_ndc(n),
         (Arg("ndc", _in_front(5)), Arg("R", _rotation), _T, Arg("scale", _scalar(0.5, 2)))),
    Case("unproject.unproject_depth", lambda d, eye: jaxnmr.unproject_depth(d, _renderer().replace(eye=eye)),
         (Arg("depth", lambda rng: np.float32(rng.uniform(1, 4, (IMAGE, IMAGE)))), Arg("eye", _eye))),
    Case("unproject.pixel_centers", lambda: jaxnmr.pixel_centers(IMAGE), ()),
    # lights and mesh helpers
    Case("lights.light_faces",
         lambda fv, t, pos, ambient: jaxnmr.light_faces(fv, t, (jaxnmr.AmbientLight(intensity=ambient),
                                                                 jaxnmr.PointLight(position=pos))),
         (Arg("face_vertices", _ndc_faces(3)), Arg("textures", _textures(3)), Arg("position", _vec(-2, 2)),
          Arg("intensity", _scalar(0.2, 0.6)))),
    Case("lights.lighting", jaxnmr.lighting,
         (Arg("face_vertices", _ndc_faces(3)), Arg("textures", _textures(3)), Arg("intensity_ambient", _scalar(0.2, 0.6)),
          Arg("intensity_directional", _scalar(0.2, 0.6)), Arg("color_ambient", _vec(0.5, 1)),
          Arg("color_directional", _vec(0.5, 1)), Arg("direction", _vec(0.2, 1)))),
    Case("mesh.vertices_to_faces", jaxnmr.vertices_to_faces,
         (Arg("vertices", _cube_vertices), Arg("faces", _faces_of(CUBE_F), diff=False))),
    Case("mesh.fill_back", jaxnmr.mesh.fill_back,
         (Arg("faces", _faces_of(CUBE_F), diff=False), Arg("textures", _textures(F_CUBE)))),
    Case("mesh.face_normals", jaxnmr.mesh.face_normals, (Arg("face_vertices", _ndc_faces(3)),)),
    Case("mesh.vertex_normals", jaxnmr.vertex_normals,
         (Arg("vertices", _cube_vertices), Arg("faces", _faces_of(CUBE_F), diff=False))),
    # the rasterizer
    Case("rasterizer.rasterize_rgbad",
         lambda f, t, bg: jaxnmr.rasterize_rgbad(f, t, image_size=IMAGE, background_color=bg),
         (Arg("face_vertices", _ndc_faces(3)), Arg("textures", _textures(3)), Arg("background_color", _vec(0, 1)))),
    Case("rasterizer.rasterize", lambda f, t, bg: jaxnmr.rasterize(f, t, image_size=IMAGE, background_color=bg),
         (Arg("face_vertices", _ndc_faces(3)), Arg("textures", _textures(3)), Arg("background_color", _vec(0, 1)))),
    Case("rasterizer.rasterize_silhouettes", lambda f: jaxnmr.rasterize_silhouettes(f, image_size=IMAGE),
         (Arg("face_vertices", _ndc_faces(3)),)),
    Case("rasterizer.rasterize_depth", lambda f: jaxnmr.rasterize_depth(f, image_size=IMAGE, anti_aliasing=False),
         (Arg("face_vertices", _ndc_faces(3)),)),
    # The oracle's forward is never differentiated: the rasterizer's gradient is NMR's approximate one, whose
    # oracle is reference.rasterize_backward (tests/test_gradients.py). So its arguments are not marked diff.
    Case("reference.rasterize_forward",
         lambda f, t, bg: jaxnmr.reference.rasterize_forward(f, t, bg, image_size=IMAGE, near=0.1, far=100.0,
                                                             eps=1e-4),
         (Arg("face_vertices", _ndc_faces(2), diff=False), Arg("textures", _textures(2), diff=False),
          Arg("background", _vec(0, 1), diff=False))),
    # the renderer (array settings enter through replace)
    Case("renderer.Renderer.render", lambda v, t, eye: _renderer().replace(eye=eye).render(v, CUBE_F, t),
         (Arg("vertices", _cube_vertices), Arg("textures", _textures(F_CUBE)), Arg("eye", _eye))),
    Case("renderer.Renderer.render_silhouettes", lambda v, f: _renderer().render_silhouettes(v, f),
         (Arg("vertices", _cube_vertices), Arg("faces", _faces_of(CUBE_F), diff=False))),
    Case("renderer.Renderer.render_depth", lambda v, eye: _renderer().replace(eye=eye).render_depth(v, CUBE_F),
         (Arg("vertices", _cube_vertices), Arg("eye", _eye))),
    Case("rasterizer.downsample_2x2", lambda image: jaxnmr.rasterizer.downsample_2x2(image, True),
         (Arg("image", lambda rng: _f32(rng.uniform(0, 1, (4, 6, 3)))),)),
    Case("renderer.Renderer.render(camera=FoV)",
         lambda v, t, pos, background: jaxnmr.Renderer(
             camera=jaxnmr.FoV(*jaxnmr.look_at_view_transform(2.7, 20.0, 150.0)),
             lights=(jaxnmr.AmbientLight(intensity=0.3), jaxnmr.PointLight(position=pos)),
             raster=jaxnmr.RasterSettings(image_size=IMAGE, background_color=background)).render(v, CUBE_F, t),
         (Arg("vertices", _cube_vertices), Arg("textures", _textures(F_CUBE)), Arg("position", _vec(-2, 2)),
          Arg("background", _vec(0, 1)))),
    Case("renderer.Renderer.render_rgbad",
         lambda v, t, light: _renderer(light_direction=light).render_rgbad(v, CUBE_F, t),
         (Arg("vertices", _cube_vertices), Arg("textures", _textures(F_CUBE)), Arg("light_direction", _vec(0.2, 1)))),
    # points: the primitive, compositing, and the renderer's point pipeline
    Case("points.rasterize_points", lambda p, r: jaxnmr.rasterize_points(p, r, image_size=IMAGE, points_per_pixel=3),
         (Arg("points", _ndc_points(6)), Arg("radius", _vec(0.2, 0.5, 1)))),
    Case("compositing.point_weights",
         lambda p, r: jaxnmr.point_weights(jaxnmr.rasterize_points(p, r, image_size=IMAGE, points_per_pixel=3), r),
         (Arg("points", _ndc_points(6)), Arg("radius", lambda rng: _f32(rng.uniform(0.2, 0.5, 6))))),
    Case("compositing.gather_points", jaxnmr.gather_points,
         (Arg("values", _points(5, 0, 1)),
          Arg("index", lambda rng: rng.integers(-1, 5, (IMAGE, IMAGE, 3)).astype(np.int32), diff=False))),
    Case("compositing.alpha_composite", jaxnmr.alpha_composite, (Arg("weights", _slots()), Arg("values", _slots(2)))),
    Case("compositing.coverage", jaxnmr.compositing.coverage, (Arg("weights", _slots()),)),
    Case("compositing.weighted_sum_composite", jaxnmr.weighted_sum_composite,
         (Arg("weights", _slots()), Arg("values", _slots(2)))),
    Case("renderer.Renderer.render_points",
         lambda p, f, background: jaxnmr.Renderer(image_size=IMAGE, background_color=background).render_points(
             p, f, radius=0.3, points_per_pixel=3),
         (Arg("points", _points(6, -0.6, 0.6)), Arg("features", _points(6, 0, 1)), Arg("background", _vec(0, 1)))),
    Case("reference.rasterize_points_forward",
         lambda p, r: jaxnmr.reference.rasterize_points_forward(p, r, image_size=IMAGE, points_per_pixel=3,
                                                                near=0.1, far=100.0),
         (Arg("points", _ndc_points(6), diff=False), Arg("radius", _vec(0.2, 0.5, 1), diff=False))),
    # G-buffers and shading
    Case("gbuffers.rasterize_gbuffers", _gbuffers, (Arg("face_vertices", _ndc_faces(3)),)),
    Case("gbuffers.interpolate",
         lambda v, colours: jaxnmr.interpolate(colours, _gbuffers(jaxnmr.vertices_to_faces(v, CUBE_F) * 0.6
                                                                  + jnp.asarray([0.0, 0.0, 3.0])), CUBE_F),
         (Arg("vertices", _cube_vertices), Arg("attributes", _points(N_CUBE, 0, 1)))),
    Case("gbuffers.interpolate(corners)", lambda f, corners: jaxnmr.interpolate(corners, _gbuffers(f)),
         (Arg("face_vertices", _ndc_faces(3)), Arg("attributes", lambda rng: _f32(rng.uniform(0, 1, (3, 3, 2)))))),
    Case("shading.lighting_phong", lambda f, t, eye: jaxnmr.lighting_phong(f, t, eye, _light()),
         (Arg("face_vertices", _ndc_faces(3)), Arg("textures", _textures(3)), Arg("eye", _eye))),
    Case("shading.phong", lambda n, p, a, eye: jaxnmr.phong(n, p, a, eye, _light()),
         (Arg("normals", _unit_image), Arg("positions", _image(3)), Arg("albedo", _image(3)), Arg("eye", _eye))),
    Case("shading.phong(lights)",
         lambda n, pos, colour: jaxnmr.phong(n, jnp.zeros((IMAGE, IMAGE, 3)), jnp.ones((IMAGE, IMAGE, 3)),
                                             jnp.asarray([0.0, 0.0, -3.0]),
                                             [jaxnmr.PointLight(position=pos, color=colour),
                                              jaxnmr.AmbientLight(intensity=0.3)]),
         (Arg("normals", _unit_image), Arg("light_position", _eye), Arg("light_color", _vec(0.5, 1)))),
    Case("shading.flat_normals", lambda f: jaxnmr.flat_normals(f, _gbuffers(f)), (Arg("face_vertices", _ndc_faces(3)),)),
    Case("shading.toon", lambda n, a, eye: jaxnmr.toon(n, jnp.zeros((IMAGE, IMAGE, 3)), a, eye, _light()),
         (Arg("normals", _unit_image), Arg("albedo", _image(3)), Arg("eye", _eye))),
    Case("shading.contour", lambda f, n: jaxnmr.contour(_gbuffers(f), n), (Arg("faces", _ndc_faces(3)),
                                                                            Arg("normals", _unit_image))),
    Case("shading.composite", jaxnmr.composite,
         (Arg("image", _image(3)), Arg("alpha", _image()), Arg("background", _vec(0, 1)))),
    # textures
    Case("textures.sample_bilinear", jaxnmr.sample_bilinear,
         (Arg("texture_map", lambda rng: _f32(rng.uniform(0, 1, (4, 5, 3)))),
          Arg("uv", lambda rng: _f32(rng.uniform(0.05, 0.95, (6, 2)))))),
    Case("textures.uv_to_textures", lambda m, uv: jaxnmr.uv_to_textures(m, uv, texture_size=2),
         (Arg("texture_map", lambda rng: _f32(rng.uniform(0, 1, (4, 5, 3)))),
          Arg("face_uvs", lambda rng: _f32(rng.uniform(0.05, 0.95, (3, 3, 2)))))),
    Case("textures.vertex_colors_to_textures", jaxnmr.vertex_colors_to_textures,
         (Arg("vertex_colors", _points(N_CUBE, 0, 1)), Arg("faces", _faces_of(CUBE_F), diff=False))),
    Case("textures.textures_to_vertex_colors", lambda t, f: jaxnmr.textures_to_vertex_colors(t, f, N_CUBE),
         (Arg("textures", _textures(F_CUBE)), Arg("faces", _faces_of(CUBE_F), diff=False))),
    # geometry and losses
    Case("geometry.sample_points", lambda k, v, f: jaxnmr.sample_points(k, v, f, 7),
         (Arg("key", _key, diff=False), Arg("vertices", _cube_vertices), Arg("faces", _faces_of(CUBE_F), diff=False))),
    Case("geometry.chamfer_distance", jaxnmr.chamfer_distance, (Arg("a", _points(5)), Arg("b", _points(4)))),
    Case("losses.laplacian_smoothing", jaxnmr.losses.laplacian_smoothing,
         (Arg("vertices", _cube_vertices), Arg("faces", _faces_of(CUBE_F), diff=False, concrete=True))),
    Case("losses.edge_length", jaxnmr.losses.edge_length,
         (Arg("vertices", _cube_vertices), Arg("faces", _faces_of(CUBE_F), diff=False, concrete=True),
          Arg("target", _scalar(0, 1)))),
    Case("losses.normal_consistency", jaxnmr.losses.normal_consistency,
         (Arg("vertices", lambda rng: _f32(TEAPOT_V + rng.uniform(-0.01, 0.01, TEAPOT_V.shape))),
          Arg("faces", _faces_of(TEAPOT_F), diff=False, concrete=True))),
    Case("losses.silhouette_iou", lambda a, b: jaxnmr.losses.silhouette_iou(a, b, threshold=None),
         (Arg("a", _image()), Arg("b", _image()))),
    Case("losses.silhouette_mse", jaxnmr.losses.silhouette_mse, (Arg("a", _image()), Arg("b", _image()))),
    # voxels: the colours may be traced; the occupancy fixes the mesh's size, so it is concrete (UNSUPPORTED)
    Case("voxels.voxels_to_mesh", lambda colours: jaxnmr.voxels_to_mesh(OCCUPANCY, colours),
         (Arg("colors", lambda rng: _f32(rng.uniform(0, 1, (2, 2, 2, 3)))),)),
    Case("voxels.voxels_to_mesh(occupancy)", lambda occupancy: jaxnmr.voxels_to_mesh(occupancy),
         (Arg("occupancy", lambda rng: OCCUPANCY.copy(), diff=False),), concrete_only=True),
    Case("mesh.check_mesh", jaxnmr.check_mesh,
         (Arg("vertices", _cube_vertices, diff=False), Arg("faces", _faces_of(CUBE_F), diff=False)),
         concrete_only=True),
)

# Public names that are not functions of arrays, with the reason; the tests of their own modules cover them.
NOT_ARRAY_FUNCTIONS = {
    "rasterizer.RGBAD": "a NamedTuple type (the rasterizer's outputs are checked through it)",
    "gbuffers.GBuffers": "a NamedTuple type (checked as rasterize_gbuffers' output)",
    "lights.AmbientLight": "a NamedTuple type (its fields are traced in lights.light_faces)",
    "lights.DirectionalLight": "a NamedTuple type (its fields are traced in the lighting cases)",
    "lights.PointLight": "a NamedTuple type (its fields are traced in shading.phong(lights))",
    "renderer.RasterSettings": "a pytree of settings (its background is traced in the Renderer cases)",
    "mesh.Mesh": "the mesh type (a pytree of arrays; tests/test_meshes.py), returned by voxels.voxels_to_mesh",
    "renderer.Renderer": "a pytree of settings; its methods are cases",
    "renderer.CAMERA_MODES": "a constant",
    "scale.TARGETS": "a constant",
    "io.load_obj": "reads a file (host numpy)", "io.save_obj": "writes a file", "io.load_mesh": "reads a file",
    "io.load_textured_mesh": "reads a file",
    "meshes.teapot": "builds a mesh in numpy from integer settings", "meshes.icosphere": "as teapot",
    "meshes.cube": "as teapot",
    "geometry.marching_cubes": "host algorithm: the mesh's size depends on the values (numpy in and out)",
    "scale.device_mesh": "builds a device mesh", "scale.shard_batch": "wraps a function in shard_map",
    "scale.render_views_sharded": "is itself a shard_map (tests/test_scale.py)",
    "scale.export_render": "exports a function (tests/test_scale.py)", "scale.load_exported": "as export_render",
    "reference.rasterize_backward": "the oracle's backward, reached by grad through reference.rasterize_forward "
                                    "in tests/test_gradients.py",
    "cli.main": "the command line", "cli.build_parser": "the command line", "cli.parse_color": "parses text",
    "cameras.turntable_eyes": "numpy from integer settings",
    "cli.render_views": "host loop with a progress callback (tests/test_cli.py)",
    "points.PointFragments": "a NamedTuple type (checked as rasterize_points' output)",
    "points.MAX_POINTS_PER_PIXEL": "a constant",
    "compositing.COMPOSITORS": "a constant (its two functions are cases)",
    "reference.rasterize_points_backward": "the oracle's point backward, compared with the kernel's in "
                                           "tests/test_points_kernels.py",
    "cli.int_in": "an argparse type (parses text)", "cli.float_where": "an argparse type (parses text)",
}

_CONCRETE = r"concrete"
# (case, mode pattern) -> (reason, the error it raises instead: exception type and a regex its message matches)
UNSUPPORTED: dict[tuple[str, str], tuple[str, type, str]] = {
    ("voxels.voxels_to_mesh(occupancy)", r"(jit|vmap|grad|shard|export).*"):
        ("the number of faces depends on the occupancy's values", TypeError, _CONCRETE),
    ("voxels.voxels_to_mesh(occupancy)", r"batch[12]:occupancy"):
        ("one occupancy grid per call: the mesh's size depends on its values", ValueError, r"occupancy"),
    ("mesh.check_mesh", r"(jit|vmap|grad|shard|export).*"):
        ("checks values and raises on them: it runs on concrete arrays only", TypeError, _CONCRETE),
    **{(f"losses.{name}", r"(vmap|shard_map|shard_grad):faces"):
       ("the mesh adjacency is built on the host from concrete faces (one topology per call)", TypeError, _CONCRETE)
       for name in ("laplacian_smoothing", "edge_length", "normal_consistency")},
    **{(f"losses.{name}", r"batch[12]:faces"):
       ("one topology per call: the adjacency is built once, on the host", ValueError, r"one topology")
       for name in ("laplacian_smoothing", "edge_length", "normal_consistency")},
}


def _unsupported(case: Case, mode: str):
    for (name, pattern), why in UNSUPPORTED.items():
        if name == case.name and re.fullmatch(pattern, mode):
            return why
    return None


# -- comparisons ---------------------------------------------------------------------------------------------------

def _leaves(out) -> list:
    if isinstance(out, dict):  # check_mesh's counts
        out = [out[k] for k in sorted(out)]
    return [np.asarray(x) for x in jax.tree.leaves(out)]


def _assert_close(actual, expected, tol: float, what: str) -> None:
    a_leaves, e_leaves = _leaves(actual), _leaves(expected)
    assert len(a_leaves) == len(e_leaves), f"{what}: {len(a_leaves)} outputs, expected {len(e_leaves)}"
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        assert a.shape == e.shape, f"{what}: output {i} has shape {a.shape}, expected {e.shape}"
        if not np.issubdtype(e.dtype, np.inexact):
            np.testing.assert_array_equal(a, e, err_msg=f"{what}: output {i}")
            continue
        assert np.array_equal(np.isfinite(a), np.isfinite(e)), f"{what}: output {i}: non-finite values differ"
        scale_ = max(float(np.abs(e[np.isfinite(e)]).max(initial=0.0)), 1e-30)
        err = float(np.abs(np.where(np.isfinite(e), a - e, 0.0)).max(initial=0.0))
        assert err <= tol * scale_, f"{what}: output {i} differs by {err:.3g} (allowed {tol:g} x {scale_:.3g})"


def _stack(elements: list, batch: tuple[int, ...]):
    flat = jnp.stack([jnp.asarray(e) for e in elements]) if not isinstance(elements[0], np.ndarray) \
        else np.stack(elements)
    return flat.reshape(batch + flat.shape[1:])


def _batched(case: Case, batches: dict[int, tuple[int, ...]], seed: int = 1) -> list:
    """The case's arguments, argument i with batch shape batches.get(i, ()) of distinct valid examples."""
    rng = np.random.default_rng(seed)
    out = []
    for i, a in enumerate(case.args):
        shape = batches.get(i, ())
        n = int(np.prod(shape, dtype=int))
        out.append(_stack([a.make(rng) for _ in range(n)], shape) if shape else a.make(rng))
    return out


@functools.cache
def _jitted(case: Case) -> Callable:
    """``jax.jit(case.fn)``, one per case, so that its compilations are shared by the case's cells."""
    return jax.jit(case.fn)


def _compiled(case: Case) -> Callable:
    """How the batch-layout cells call a case: jitted (``jit`` equals eager is its own cell, and op-by-op eager
    calls compile every operation for every new shape), eagerly for functions that read values."""
    concrete = case.concrete_only or any(a.concrete for a in case.args)  # a concrete argument kept as an argument
    return case.fn if concrete else _jitted(case)


def _loop(case: Case, args: list, batches: dict[int, tuple[int, ...]]):
    """The Python loop over the broadcast batch: the jitted function on one element at a time."""
    full = np.broadcast_shapes(*batches.values()) if batches else ()
    one = _compiled(case)
    results = []
    for idx in np.ndindex(*full):
        element = []
        for i, x in enumerate(args):
            shape = batches.get(i, ())
            own = idx[len(full) - len(shape):]
            element.append(x[tuple(0 if s == 1 else j for s, j in zip(shape, own))] if shape else x)
        results.append(one(*element))
    leaves = [jax.tree.leaves(r if not isinstance(r, dict) else [r[k] for k in sorted(r)]) for r in results]
    return [np.stack([np.asarray(l[k]) for l in leaves]).reshape(full + np.shape(leaves[0][k]))
            for k in range(len(leaves[0]))]


def _weights(out, seed: int = 2):
    """Random weights for a linear function of the outputs (zeros for integer outputs)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype)
                        if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.zeros(x.shape, jnp.float32), out)


def _linear(out, w):
    return sum(jnp.sum(x * wx) for x, wx in zip(jax.tree.leaves(out), jax.tree.leaves(w))
               if jnp.issubdtype(x.dtype, jnp.inexact))


# -- the cells -----------------------------------------------------------------------------------------------------

def _modes(case: Case) -> list[str]:
    modes = ["jit", "export"]
    differentiable = any(a.diff for a in case.args)
    for a in case.args:
        modes += [f"batch1:{a.name}", f"batch2:{a.name}", f"vmap:{a.name}", f"shard_map:{a.name}"]
        if differentiable:  # the gradient of every differentiable argument, with this one's batch sharded
            modes.append(f"shard_grad:{a.name}")
        if a.diff:
            modes.append(f"grad:{a.name}")
    return modes


def _all_cells():
    return [pytest.param(c, m, id=f"{c.name}-{m}") for c in CASES for m in _modes(c)]


def run_cell(case: Case, mode: str) -> None:
    """Runs one (function, mode) cell; raises AssertionError (or the function's error) where it fails."""
    kind, _, arg = mode.partition(":")
    case = _closed(case, keep=arg or None)
    if kind == "jit":
        args = case.example()
        _assert_close(_jitted(case)(*args), case.fn(*args), case.forward_tol, "jit vs eager")
    elif kind in ("batch1", "batch2"):
        i = case.arg(arg)
        # batch 4: the same program as shard_map's unsharded reference (one compilation for both cells)
        batches = {i: (4,) if kind == "batch1" else (3, 2)}
        args = _batched(case, batches)
        _assert_close(_compiled(case)(*args), _loop(case, args, batches), case.forward_tol, f"batch dims on {arg}")
    elif kind == "vmap":
        i = case.arg(arg)
        batches = {i: (4,)}
        args = _batched(case, batches)
        in_axes = tuple(0 if j == i else None for j in range(len(args)))
        _assert_close(jax.vmap(case.fn, in_axes=in_axes)(*args), _loop(case, args, batches), case.forward_tol,
                      f"vmap over {arg}")
    elif kind == "grad":
        _grad_cell(case, case.arg(arg))
    elif kind == "shard_map":
        _shard_cell(case, case.arg(arg), gradient=False)
    elif kind == "shard_grad":
        _shard_cell(case, case.arg(arg), gradient=True)
    elif kind == "export":
        _export_cell(case)
    else:
        raise AssertionError(f"unknown mode {mode}")


def _diff_indices(case: Case) -> list[int]:
    return [i for i, a in enumerate(case.args) if a.diff]


def _grad_cell(case: Case, i: int) -> None:
    """grad of a random linear function of the batched outputs w.r.t. argument i, against vmap(grad)."""
    batches = {i: (2,)}
    args = _batched(case, batches)
    w = _weights(jax.eval_shape(case.fn, *args))

    def loss(x, w):
        return _linear(case.fn(*args[:i], x, *args[i + 1:]), w)

    g = jax.jit(jax.grad(loss))(args[i], w)
    assert np.isfinite(np.asarray(g)).all(), f"grad w.r.t. {case.args[i].name} is not finite"
    per_element = jax.jit(jax.vmap(jax.grad(loss)))(args[i], w)
    _assert_close(g, per_element, case.grad_tol, f"grad vs vmap(grad) w.r.t. {case.args[i].name}")


def _device_mesh():
    if jax.device_count() < 2:
        pytest.fail("the shard_map cells need 2 CPU devices (tests/conftest.py forces them; was JAX started "
                    "before it?)")
    return jax.sharding.Mesh(np.array(jax.devices()[:2]), ("d",))  # automatic axes, as scale.device_mesh


def _shard_cell(case: Case, i: int, gradient: bool) -> None:
    """Argument i's batch of 4 split over 2 devices (two elements each: a batch of one would read as NMR's
    ``[1, 3]`` row form of ``projection``'s t), the other arguments replicated."""
    batches = {i: (4,)}
    args = _batched(case, batches)
    mesh = _device_mesh()
    specs = tuple(P("d") if j == i else P() for j in range(len(args)))
    if not gradient:
        sharded = jax.jit(jax.shard_map(case.fn, mesh=mesh, in_specs=specs, out_specs=P("d")))
        _assert_close(sharded(*args), _compiled(case)(*args), case.forward_tol, f"shard_map over {case.args[i].name}")
        return
    diff = _diff_indices(case)
    w = _weights(jax.eval_shape(case.fn, *args))

    def loss(diff_values, rest, w):
        full = list(rest)
        for j, x in zip(diff, diff_values):
            full[j] = x
        return _linear(case.fn(*full), w)

    def per_shard(*flat):
        # With shard_map's checks on, a replicated argument enters each shard as "invariant", and its gradient
        # comes back summed over the shards already (the transpose of the implicit pvary is a psum).
        shard_args, w_local = list(flat[:-1]), flat[-1]
        return jax.grad(loss)([shard_args[j] for j in diff], shard_args, w_local)

    w_spec = jax.tree.map(lambda _: P("d"), w)
    sharded = jax.jit(jax.shard_map(per_shard, mesh=mesh, in_specs=specs + (w_spec,),
                                    out_specs=[P("d") if j == i else P() for j in diff]))
    expected = jax.jit(jax.grad(loss))([args[j] for j in diff], args, w)
    _assert_close(sharded(*args, w), expected, case.grad_tol, f"grad inside shard_map over {case.args[i].name}")


def _export_cell(case: Case) -> None:
    from jax import export

    args = case.example()
    checks = [export.DisabledSafetyCheck.custom_call(name) for name in scale.TARGETS]
    diff = _diff_indices(case)
    exported = export.export(jax.jit(case.fn), disabled_checks=checks)(*args)
    reloaded = export.deserialize(exported.serialize(vjp_order=1 if diff else 0))
    _assert_close(reloaded.call(*args), _jitted(case)(*args), case.forward_tol, "export round trip")
    if diff:
        w = _weights(jax.eval_shape(case.fn, *args))
        grad = lambda f: jax.jit(jax.grad(lambda *a: _linear(f(*a), w), argnums=tuple(diff)))(*args)
        _assert_close(grad(reloaded.call), grad(case.fn), case.grad_tol, "gradient through the reloaded export")


@pytest.mark.parametrize("case,mode", _all_cells())
def test_cell(case: Case, mode: str) -> None:
    why = _unsupported(case, mode)
    if why is None:
        run_cell(case, mode)
        return
    reason, error, message = why
    with pytest.raises(error, match=message):
        run_cell(case, mode)


# -- broadcast layouts, drawn by hypothesis ----------------------------------------------------------------------

_BROADCAST_CASES = [c for c in CASES if len(_closed(c).args) > 1 and _unsupported(c, "broadcast") is None]


@pytest.mark.parametrize("case", _BROADCAST_CASES, ids=[c.name for c in _BROADCAST_CASES])
@settings(max_examples=3, deadline=None, derandomize=True)
@given(data=st.data())
def test_broadcast(case: Case, data) -> None:
    """Batch shapes on every argument at once, mutually broadcastable (size-1 and missing dims), equal to the
    loop over the broadcast batch."""
    case = _closed(case)
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=len(case.args), min_dims=0, max_dims=2,
                                                         min_side=1, max_side=2)
                       .filter(lambda s: not any(a.row_form and shape[-1:] == (1,)
                                                 for a, shape in zip(case.args, s.input_shapes))),
                       label="batch shapes")
    batches = {i: s for i, s in enumerate(shapes.input_shapes) if s}
    args = _batched(case, batches)
    _assert_close(_compiled(case)(*args), _loop(case, args, batches), case.forward_tol,
                  f"batch shapes {shapes.input_shapes}")


# -- the table covers the public API ---------------------------------------------------------------------------

def test_every_public_name_is_covered() -> None:
    names = {f"{m}.{n}" for m in MODULES for n in importlib.import_module(f"jaxnmr.{m}").__all__}
    covered = {c.name.split("(")[0] for c in CASES}
    covered |= {c.name.rsplit(".", 1)[0] for c in CASES if c.name.startswith("renderer.Renderer.")}
    missing = sorted(names - covered - set(NOT_ARRAY_FUNCTIONS))
    assert not missing, f"public names with no conformance case and no declared reason: {missing}"
    stale = sorted(set(NOT_ARRAY_FUNCTIONS) - names)
    assert not stale, f"NOT_ARRAY_FUNCTIONS names that are not public: {stale}"
    top = set(jaxnmr.__all__)
    exported = {n.rsplit(".", 1)[1] for n in names}
    assert top <= exported, f"jaxnmr.__all__ names from no module's __all__: {sorted(top - exported)}"
    methods = {f"renderer.Renderer.{m}" for m in dir(jaxnmr.Renderer)
               if m.startswith("render") and callable(getattr(jaxnmr.Renderer, m))}
    named = {c.name for c in CASES}
    assert methods <= named, f"Renderer methods with no case: {sorted(methods - named)}"


def test_unsupported_table_names_real_cells() -> None:
    for (name, pattern), (reason, _, _) in UNSUPPORTED.items():
        case = next((c for c in CASES if c.name == name), None)
        assert case is not None, f"UNSUPPORTED names {name}, which is no case"
        assert any(re.fullmatch(pattern, m) for m in _modes(case)), f"UNSUPPORTED {name}: {pattern} matches no mode"
        assert reason


# -- export, reloaded in a fresh process after only `import jaxnmr` ------------------------------------------

FRESH = """
import sys, json
import numpy as np, jax, jax.numpy as jnp
import jaxnmr  # nothing else: the kernels must be registered by this import
blob, data = open(sys.argv[1], "rb").read(), np.load(sys.argv[2])
exp = jax.export.deserialize(bytearray(blob))
v, w = jnp.asarray(data["vertices"]), jnp.asarray(data["weights"])
image = exp.call(v)
g = jax.jit(jax.grad(lambda v: jnp.sum(exp.call(v) * w)))(v)
np.savez(sys.argv[3], image=np.asarray(image), grad=np.asarray(g))
print("RESULT ok")
"""


def test_export_reloads_in_a_fresh_process(tmp_path: pathlib.Path) -> None:
    from jax import export

    case = next(c for c in CASES if c.name == "renderer.Renderer.render")
    v, t, eye = case.example()
    fn = lambda v: case.fn(v, t, eye)
    checks = [export.DisabledSafetyCheck.custom_call(name) for name in scale.TARGETS]
    blob = export.export(jax.jit(fn), disabled_checks=checks)(v).serialize(vjp_order=1)
    w = np.random.default_rng(3).normal(size=(IMAGE, IMAGE, 3)).astype(np.float32)
    (tmp_path / "render.jaxexport").write_bytes(blob)
    np.savez(tmp_path / "in.npz", vertices=v, weights=w)
    root = pathlib.Path(jaxnmr.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FRESH), str(tmp_path / "render.jaxexport"),
                           str(tmp_path / "in.npz"), str(tmp_path / "out.npz")], env=env, capture_output=True,
                          text=True, timeout=180, cwd=str(root))
    assert proc.returncode == 0 and "RESULT ok" in proc.stdout, proc.stderr[-4000:]
    out = np.load(tmp_path / "out.npz")
    _assert_close(out["image"], jax.jit(fn)(v), FORWARD_TOL, "image from the reloaded export")
    expected = jax.jit(jax.grad(lambda v: jnp.sum(fn(v) * w)))(v)
    _assert_close(out["grad"], expected, GRAD_TOL, "gradient from the reloaded export")
