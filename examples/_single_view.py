"""Shared pieces of the single-view learning examples (``learn_reconstruction``, ``learn_points``): the data
(random superquadrics rendered by jaxnmr inside the jitted train step, the input picture from one camera), the
image encoder, the learning-rate schedule, the held-out set, timing and the pictures.

The data: superquadrics ``(|x/a|^(2/e2) + |z/c|^(2/e2))^(e2/e1) + |y/b|^(2/e1) = 1`` with half-extents
``a, b, c`` uniform in EXTENT_RANGE, exponents ``e1, e2`` uniform in EXPONENT_RANGE and a uniformly random turn
about the vertical axis, as meshes: a level-TARGET_LEVEL icosphere pushed radially onto the surface. The input
picture is rendered by the input camera (azimuth 0, elevation INPUT_ELEVATION, DISTANCE away, light from the
upper left); training silhouettes by cameras at random azimuths and elevations in ELEVATION_RANGE; held-out
silhouettes by the fixed cameras of :func:`eval_eyes`. Imported as ``_single_view`` like ``_common`` (see there).
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Callable, NamedTuple

import numpy as np

from _common import contact_sheet, make_parser, to_uint8, turntable_eyes

import jax
import jax.numpy as jnp
import optax

import jaxnmr
from jaxnmr.meshes import icosphere

DISTANCE = 2.2  # camera distance of every view: the largest superquadrics still fit in the 30-degree view
INPUT_ELEVATION = 30.0  # the input camera: azimuth 0, elevation 30 degrees
ELEVATION_RANGE = (-30.0, 50.0)  # training views: elevations uniform in this range (degrees)
EXTENT_RANGE = (0.2, 0.55)  # half-extents a, b, c
EXPONENT_RANGE = (0.3, 1.4)  # exponents e1 (vertical profile), e2 (horizontal section)
TARGET_LEVEL = 3  # icosphere level of the true shapes (642 vertices)
LIGHT_DIRECTION = (-0.5, 1.0, -0.6)  # towards the light of the input pictures: above, left, camera side
SHOWN = 6  # held-out shapes in the picture grid
SHOWN_GIF = 4  # held-out shapes in the turntable GIF
PICTURE_AZIMUTHS = (45.0, 135.0, 225.0, 315.0)  # the prediction's columns in the picture grid
PICTURE_VIEWING_ANGLE = 18.0  # degrees (the data's cameras: the renderer's default, 30)
PREDICTION_COLOUR = (0.55, 0.75, 1.0)  # predictions are blue in the pictures ...
TRUTH_COLOUR = (1.0, 0.8, 0.45)  # ... the true shapes orange
TIMING_REPEATS = 10
LR_FLOOR = 0.1  # the model's learning rate decays (cosine) to this fraction of --lr
WARMUP = 0.05  # ... after a linear warm-up over this fraction of the steps


# ---------------------------------------------------------------------------------------------------------------
# Command line: presets of a default run and of --quick
# ---------------------------------------------------------------------------------------------------------------


def preset_parser(name: str, description: str, defaults: dict, quick: dict, options, size_help: str):
    """:func:`_common.make_parser` with ``--seed``, ``--quick`` and one option per ``(name, type, metavar, text)``
    of ``options`` whose default is None: :func:`resolve_presets` fills it from ``defaults`` or, with ``--quick``,
    ``quick`` (both dicts over the option names, ``size`` included). ``--size`` means ``size_help`` here."""
    parser = make_parser(name, description, size=defaults["size"], seed=0)
    for action in parser._actions:  # --size (from make_parser) has a preset too
        if "--size" in action.option_strings:
            action.default = None
            action.help = f"{size_help}, 8 to 4096 (default: {defaults['size']}; --quick: {quick['size']})"
    parser.add_argument("--quick", action="store_true",
                        help="the smoke test's small, fast settings: " + ", ".join(f"{k.replace('_', '-')} {v}"
                                                                                   for k, v in quick.items()))
    for option, kind, metavar, text in options:
        parser.add_argument("--" + option.replace("_", "-"), type=kind, default=None, metavar=metavar,
                            help=f"{text} (default: {defaults[option]}; --quick: {quick[option]})")
    return parser


def resolve_presets(args: argparse.Namespace, defaults: dict, quick: dict) -> dict:
    """The preset options of :func:`preset_parser` (each as given, else its ``--quick`` or default value), with
    ``seed`` and ``quick``."""
    preset = quick if args.quick else defaults
    settings = {k: (getattr(args, k) if getattr(args, k) is not None else preset[k]) for k in defaults}
    settings.update(seed=args.seed, quick=args.quick)
    return settings


# ---------------------------------------------------------------------------------------------------------------
# The data: superquadrics rendered by jaxnmr
# ---------------------------------------------------------------------------------------------------------------


class Batch(NamedTuple):
    """One batch of training data.

    images: float32 ``[B, H, W]`` grey input pictures in [0, 1] (input camera, ``--input-size``).
    eyes: float32 ``[B, V, 3]`` the training views' camera positions.
    targets: float32 ``[B, V, P, P]`` the true silhouettes from those views (``--size`` P px).
    vertices: float32 ``[B, Nt, 3]`` the true meshes' vertices (faces: the scene's).
    """

    images: jax.Array
    eyes: jax.Array
    targets: jax.Array
    vertices: jax.Array


def sample_shapes(key, n: int) -> jax.Array:
    """``n`` random superquadrics: float32 ``[n, 6]`` = half-extents ``a, b, c`` (x, y, z), exponents ``e1, e2``
    and the turn about +y in radians (uniform in [0, 2 pi))."""
    low = jnp.array([EXTENT_RANGE[0]] * 3 + [EXPONENT_RANGE[0]] * 2 + [0.0], jnp.float32)
    high = jnp.array([EXTENT_RANGE[1]] * 3 + [EXPONENT_RANGE[1]] * 2 + [2.0 * np.pi], jnp.float32)
    return jax.random.uniform(key, (n, 6), jnp.float32, low, high)


def superquadric(directions, shape) -> jax.Array:
    """Points of a superquadric surface along unit directions, turned about +y.

    The superquadric ``f(p) = (|x/a|^(2/e2) + |z/c|^(2/e2))^(e2/e1) + |y/b|^(2/e1) = 1`` is star-shaped about
    the origin and ``f(r u) = r^(2/e1) f(u)``, so the point along a unit direction ``u`` is ``f(u)^(-e1/2) u``.
    It is then rotated by ``shape[5]`` radians about +y (x towards -z).

    Args:
      directions: float ``[N, 3]`` unit vectors (e.g. an icosphere's vertices).
      shape: float ``[6]``: ``a, b, c, e1, e2, turn`` as :func:`sample_shapes`.
    Returns:
      float32 ``[N, 3]`` world coordinates.
    """
    u = jnp.asarray(directions, jnp.float32)
    a, b, c, e1, e2, turn = (shape[i] for i in range(6))
    horizontal = jnp.abs(u[:, 0] / a) ** (2.0 / e2) + jnp.abs(u[:, 2] / c) ** (2.0 / e2)
    f = horizontal ** (e2 / e1) + jnp.abs(u[:, 1] / b) ** (2.0 / e1)
    p = u * (f ** (-e1 / 2.0))[:, None]
    cos, sin = jnp.cos(turn), jnp.sin(turn)
    return jnp.stack([cos * p[:, 0] + sin * p[:, 2], p[:, 1], -sin * p[:, 0] + cos * p[:, 2]], axis=-1)


def input_renderer(size: int) -> jaxnmr.Renderer:
    """The input camera (azimuth 0, elevation INPUT_ELEVATION, DISTANCE away) at ``size`` px, anti-aliased, with
    a light from the upper left."""
    eye = jaxnmr.get_points_from_angles(DISTANCE, INPUT_ELEVATION, 0.0)
    return jaxnmr.Renderer(image_size=size, eye=eye, light_intensity_ambient=0.3,
                           light_intensity_directional=0.7, light_direction=LIGHT_DIRECTION)


def render_inputs(renderer: jaxnmr.Renderer, vertices, faces) -> jax.Array:
    """Grey shaded pictures ``[B, H, W]`` (float32 in [0, 1], black background) of meshes ``[B, N, 3]``."""
    white = jnp.ones((faces.shape[0], 2, 2, 2, 3), jnp.float32)
    return jax.vmap(lambda v: renderer.render(v, faces, white)[..., 0])(vertices)


def render_views(renderer: jaxnmr.Renderer, vertices, faces, eyes) -> jax.Array:
    """Silhouettes ``[B, V, H, W]`` of meshes ``[B, N, 3]`` (one topology ``faces [F, 3]``) from per-mesh cameras
    ``eyes [B, V, 3]``: vmap over the views inside vmap over the batch, one rasterizer call."""
    one_view = lambda v, eye: renderer.replace(eye=eye).render_silhouettes(v, faces)  # noqa: E731
    return jax.vmap(jax.vmap(one_view, in_axes=(None, 0)))(vertices, eyes)


def sample_eyes(key, n: int, views: int) -> jax.Array:
    """Training cameras ``[n, views, 3]``: azimuths uniform in [0, 360), elevations uniform in ELEVATION_RANGE."""
    k_az, k_el = jax.random.split(key)
    azimuth = jax.random.uniform(k_az, (n, views), jnp.float32, 0.0, 360.0)
    elevation = jax.random.uniform(k_el, (n, views), jnp.float32, *ELEVATION_RANGE)
    return jaxnmr.get_points_from_angles(DISTANCE, elevation, azimuth)


def eval_eyes(views: int) -> jax.Array:
    """Held-out cameras ``[views, 3]``: azimuths ``22.5 + 360 k / views``, elevations alternating +30 / -30."""
    azimuth = 22.5 + np.arange(views) * 360.0 / views
    elevation = np.where(np.arange(views) % 2 == 0, 30.0, -30.0)
    return jaxnmr.get_points_from_angles(DISTANCE, elevation, azimuth)


class Scene(NamedTuple):
    """Everything fixed about the data: the true shapes' topology and the renderers."""

    directions: np.ndarray  # [Nt, 3] unit directions of the true shapes' vertices
    faces: np.ndarray  # [Ft, 3] their faces
    inputs: jaxnmr.Renderer  # the input camera, --input-size
    silhouettes: jaxnmr.Renderer  # the training views' renderer, --size (eye set per view)


def make_scene(settings: dict) -> Scene:
    """The true shapes' level-TARGET_LEVEL icosphere and the renderers at ``input_size`` and ``size`` px."""
    sphere = icosphere(TARGET_LEVEL)
    return Scene(sphere.vertices, sphere.faces, input_renderer(settings["input_size"]),
                 jaxnmr.Renderer(image_size=settings["size"]))


def make_batch(scene: Scene, key, batch: int, views: int) -> Batch:
    """A fresh batch: random superquadrics, their input pictures and their silhouettes from random views."""
    k_shape, k_eye = jax.random.split(key)
    vertices = jax.vmap(lambda s: superquadric(scene.directions, s))(sample_shapes(k_shape, batch))
    eyes = sample_eyes(k_eye, batch, views)
    images = render_inputs(scene.inputs, vertices, scene.faces)
    targets = render_views(scene.silhouettes, vertices, scene.faces, eyes)
    return Batch(images, eyes, targets, vertices)


# ---------------------------------------------------------------------------------------------------------------
# The network: a small convolutional encoder and a dense decoder, the schedule, the held-out set
# ---------------------------------------------------------------------------------------------------------------


def init_network(seed: int, input_size: int, n_vertices: int, channels=(16, 32, 64), hidden: int = 256) -> dict:
    """Parameters of :func:`network`, He-initialised from numpy's generator seeded with ``seed`` (quicker than
    compiling JAX's sampler for each shape), the last layer small so that the untrained network's offsets are
    nearly zero (its prediction is nearly the template): ``{"conv": [{"w": [3, 3, Cin, Cout], "b": [Cout]}, ...],
    "dense": [{"w": [Din, Dout], "b": [Dout]}, ...]}``, float32 jax arrays; ``n_vertices`` offsets of 3."""
    rng = np.random.default_rng(seed)
    normal = lambda shape, scale: jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)  # noqa: E731
    conv, c_in, size = [], 1, input_size
    for c_out in channels:
        conv.append(dict(w=normal((3, 3, c_in, c_out), np.sqrt(2.0 / (9 * c_in))), b=jnp.zeros(c_out)))
        c_in, size = c_out, -(-size // 2)
    dims = [size * size * c_in, hidden, hidden, 3 * n_vertices]
    dense = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        scale = np.sqrt(2.0 / d_in) if i < len(dims) - 2 else 1e-3
        dense.append(dict(w=normal((d_in, d_out), scale), b=jnp.zeros(d_out)))
    return dict(conv=conv, dense=dense)


def network(params: dict, images) -> jax.Array:
    """Offsets ``[B, N, 3]`` of N template vertices or points (float32, world units) from grey pictures
    ``[B, H, W]``: three stride-2 ``lax.conv`` layers with ReLU, dense layers with ReLU, a dense output layer."""
    x = jnp.asarray(images, jnp.float32)[..., None]
    for layer in params["conv"]:
        x = jax.lax.conv_general_dilated(x, layer["w"], (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.relu(x + layer["b"])
    x = x.reshape(x.shape[0], -1)
    for layer in params["dense"][:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    last = params["dense"][-1]
    return (x @ last["w"] + last["b"]).reshape(x.shape[0], -1, 3)


def count_parameters(params) -> int:
    """How many numbers the pytree ``params`` holds."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))


def learning_rate(peak: float, steps: int):
    """The model's schedule: linear warm-up from 0 over the first WARMUP of the steps (Adam's first updates are
    otherwise full-size for every weight at once, which throws the predictions far off), then a cosine decay to
    ``LR_FLOOR * peak``."""
    warmup = max(1, int(WARMUP * steps))
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(steps, warmup + 1), LR_FLOOR * peak)


class Evaluation(NamedTuple):
    """A set of shapes to score reconstructions on, seen by the evaluation cameras.

    shapes: ``[S, 6]`` (:func:`sample_shapes`); vertices: their meshes ``[S, Nt, 3]``; images: their input
    pictures ``[S, H, W]``; eyes: the cameras ``[V, 3]`` (:func:`eval_eyes`, the same for every shape);
    silhouettes: the true silhouettes ``[S, V, E, E]`` at ``--eval-size``.
    """

    shapes: jax.Array
    vertices: jax.Array
    images: jax.Array
    eyes: jax.Array
    silhouettes: jax.Array


def make_evaluation(scene: Scene, key, settings: dict) -> Evaluation:
    """``--eval-shapes`` shapes from ``key`` with their pictures and ``--eval-views`` true silhouettes (compiled
    once per setting: another key, e.g. for a sample of training shapes, reuses the compiled function)."""
    return _evaluation(scene, key, eval_eyes(settings["eval_views"]), settings["eval_shapes"], settings["eval_size"])


@functools.partial(jax.jit, static_argnums=(3, 4))
def _evaluation(scene: Scene, key, eyes, n: int, size: int) -> Evaluation:
    shapes = sample_shapes(key, n)
    vertices = jax.vmap(lambda s: superquadric(scene.directions, s))(shapes)
    images = render_inputs(scene.inputs, vertices, scene.faces)
    silhouettes = render_views(jaxnmr.Renderer(image_size=size), vertices, scene.faces,
                               jnp.broadcast_to(eyes, (n,) + eyes.shape))
    return Evaluation(shapes, vertices, images, eyes, silhouettes)


# ---------------------------------------------------------------------------------------------------------------
# Timing and pictures
# ---------------------------------------------------------------------------------------------------------------


def best_ms(calls: dict, repeats: int = TIMING_REPEATS) -> dict:
    """For each ``name -> (fn, args)``: the shortest of ``repeats`` wall times of ``fn(*args)`` in milliseconds,
    waiting for the results. One warm-up call each, then the functions take turns, round after round, so that
    other work on the machine disturbs them alike; the shortest time is the least disturbed."""
    for fn, args in calls.values():
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.min(t)) for name, t in times.items()}


def shaded(vertices, faces, eyes, size: int, colour) -> np.ndarray:
    """uint8 ``[S, K, size, size, 3]``: meshes ``[S, N, 3]`` from cameras ``[K, 3]`` in one flat colour (a
    narrower view than the data's, so the shapes fill more of the picture)."""
    renderer = jaxnmr.Renderer(image_size=size, light_direction=LIGHT_DIRECTION,
                               viewing_angle=PICTURE_VIEWING_ANGLE)
    textures = jnp.broadcast_to(jnp.asarray(colour, jnp.float32), (faces.shape[0], 2, 2, 2, 3))
    one = lambda v, eye: renderer.replace(eye=eye).render(v, faces, textures)  # noqa: E731
    images = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))(vertices, jnp.asarray(eyes))
    return to_uint8(images)



def input_column(evaluation: Evaluation, n: int, size: int) -> np.ndarray:
    """uint8 ``[n, size, size, 3]``: the first ``n`` input pictures, scaled up by whole pixels and padded."""
    images = np.asarray(evaluation.images[:n])
    scale = max(1, size // images.shape[-1])
    inputs = to_uint8(np.repeat(np.repeat(images, scale, axis=1), scale, axis=2))[..., None].repeat(3, -1)
    return np.pad(inputs, ((0, 0), (0, size - inputs.shape[1]), (0, size - inputs.shape[2]), (0, 0)))


def grid_picture(evaluation: Evaluation, render_prediction: Callable, true_faces, size: int) -> np.ndarray:
    """uint8 ``[n size, 9 size, 3]``, ``n = min(SHOWN, S)``: per held-out shape, its input | the prediction from
    PICTURE_AZIMUTHS | the true shape from the same azimuths. ``render_prediction(n, eyes [4, 3])`` returns uint8
    ``[n, 4, size, size, 3]``: the first ``n`` predictions seen from ``eyes``."""
    n = min(SHOWN, len(evaluation.images))
    eyes = jaxnmr.get_points_from_angles(DISTANCE, 30.0, jnp.asarray(PICTURE_AZIMUTHS))
    predicted = render_prediction(n, eyes)
    truth = shaded(evaluation.vertices[:n], true_faces, eyes, size, TRUTH_COLOUR)
    inputs = input_column(evaluation, n, size)
    rows = [contact_sheet(np.concatenate([inputs[i:i + 1], predicted[i], truth[i]])) for i in range(n)]
    return np.concatenate(rows, axis=0)


def turntable_animation(evaluation: Evaluation, render_prediction: Callable, true_faces, size: int,
                        frames: int = 36) -> np.ndarray:
    """uint8 ``[frames, 2 size, n size, 3]``, ``n = min(SHOWN_GIF, S)``: true shapes on top, predictions below,
    turning. ``render_prediction(n, eyes [frames, 3])`` as in :func:`grid_picture`."""
    n = min(SHOWN_GIF, len(evaluation.images))
    eyes = jnp.asarray(turntable_eyes(frames, 30.0, DISTANCE))
    truth = shaded(evaluation.vertices[:n], true_faces, eyes, size, TRUTH_COLOUR)  # [n, frames, ...]
    predicted = render_prediction(n, eyes)
    top = np.concatenate(list(truth), axis=2)  # [frames, size, n size, 3]
    bottom = np.concatenate(list(predicted), axis=2)
    return np.concatenate([top, bottom], axis=1)
