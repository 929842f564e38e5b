"""Learn single-view 3D reconstruction as a point cloud: a network reads one picture and outputs P points.

The point-cloud sibling of ``learn_reconstruction``, on the same data (:mod:`_single_view`): random superquadrics
made and rendered by jaxnmr inside the jitted train step, a fresh batch at every step, each seen in ONE grey,
shaded picture from the input camera (azimuth 0, elevation 30 degrees, distance 2.2) at ``--input-size`` px. The
network (the same encoder: three stride-2 ``lax.conv`` layers of 16, 32 and 64 channels, two dense layers of 256)
decodes the picture into ``--points`` P points ``[P, 3]``, as offsets of a Fibonacci sphere of radius 0.5, in the
input camera's frame (viewer-centred, as the object's turn is only visible relative to that camera).

The loss is the chamfer distance (:func:`jaxnmr.chamfer_distance`, mean squared distance to the nearest point,
both ways) between the predicted points and ``--samples`` points drawn uniformly on the true surface
(:func:`jaxnmr.sample_points`, new points every step), plus ``--w-silhouette`` times a silhouette term: the
predicted cloud rendered with :meth:`jaxnmr.Renderer.render_points` (alpha of discs of the radius below, from
``--views`` random cameras at ``--size`` px) against the true mesh's silhouettes from the same cameras,
``1 - soft IoU``; its gradient reaches the points through the point rasterizer's backward. Adam (optax; ``--lr``
after a linear warm-up over the first 5% of the steps, cosine decay to a tenth). The train step -- sample shapes,
render their pictures and target silhouettes, sample their surfaces, predict, chamfer, render the predicted
clouds from every view, loss, gradient, Adam update (of the model and of the free cloud below) -- is ONE
``jax.jit`` function, run as compiled ``lax.scan`` chunks of CHUNK steps (``_common.optimize``).

The disc radius: a cloud of P points leaves gaps on the surface, so its rendered silhouette depends on the radius
of its discs. The radius is the one (from a grid, in NDC units) under which P points drawn on the TRUE surfaces
of a sample of training shapes -- a perfect answer -- match the true mesh silhouettes best (mean IoU > 0.5 at
``--eval-size``); it is chosen before training and then used for the silhouette term, the evaluation and the
pictures (scaled with the picture's narrower field of view, so the discs keep their size on the object).

Evaluation on ``--eval-shapes`` held-out superquadrics (a random stream of their own): the chamfer distance to
EVAL_SAMPLES points drawn on each true surface, and the silhouette IoU (> 0.5) of the predicted cloud rendered
with that radius against the true mesh from ``--eval-views`` cameras (azimuths ``22.5 + 360 k / views``,
elevations alternating +30 and -30 degrees, none the input camera) at ``--eval-size`` px, both averaged over
shapes (and views). The same scores are given for the untrained network (nearly the sphere), for the oracle (P
points drawn on the true surface: the floor of the chamfer distance and the ceiling of the IoU at this P and
radius) and for the mean-shape baseline: ONE fixed cloud used as the answer for every input. Two candidates for
it are scored on a sample of ``--eval-shapes`` training shapes (never the held-out ones): a free ``[P, 3]`` cloud
(offsets of the same sphere) trained with the same loss, in the same train steps, on the first
``--baseline-shapes`` shapes of each batch, without the pictures (Adam, ``--baseline-lr`` decaying to 0 along a
cosine: a fixed cloud has 3 P numbers to fit, far fewer than the network, and its loss has levelled off long
before the end), and the mean of the trained model's predictions on that sample (the decoder's points are
ordered, so the mean is point-wise). For each metric the baseline is the candidate better on the training
sample for that metric, the strongest fixed answer of the two; both candidates' scores are printed.

Default settings measured on a 2-core x86_64 CPU shared with other work (timings vary with the load): see the
README's gallery row. ``--quick`` is the smoke test's setting (10-20 s, mostly compilation; it shows the loss
falling and the model already ahead of the baseline, not a finished model).

Run::

    python examples/learn_points.py --out out/learn_points [--steps 500] [--points 512] [--seed 0] [--quick]

Writes, under ``--out``: ``learn_points.png`` (rows: held-out shapes; columns: the input picture | the predicted
cloud from four azimuths | the true shape from the same four), ``learn_points.gif`` (turntable: true shapes on
top, predicted clouds below) and ``learn_points.json`` (settings, the radius, the metrics of the model, baseline
candidates, untrained network and oracle, losses and timings). Prints the time per train step (with
``--time-parts`` also its parts, each jitted on its own, best of 10 calls taken in turns), then
``initial heldout_chamfer=<untrained network>``, ``baseline heldout_chamfer=... heldout_iou=...``,
``model heldout_iou=...`` and, last, ``final heldout_chamfer=<learned model>``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np

from _common import (
    Timer,
    float_where,
    int_at_least,
    optimize,
    parse_args,
    positive_int,
    report_final,
    report_initial,
    to_uint8,
    write_gif,
    write_png,
)
import _single_view as sv

import jax
import jax.numpy as jnp
import optax

import jaxnmr
from jaxnmr import losses

NAME = "learn_points"
TEMPLATE_RADIUS = 0.5  # the sphere of points the decoder moves
EVAL_SAMPLES = 1024  # points drawn on each evaluated true surface for the chamfer distance
RADII = (0.025, 0.03, 0.035, 0.04, 0.05, 0.06)  # disc radii (NDC units) the radius is chosen from
POINTS_PER_PIXEL = 8  # K of render_points
EVAL_BATCH = 8  # clouds per rasterizer call in the evaluation (all their views at once), to bound the memory
CHUNK = 25  # train steps per compiled lax.scan call

# Settings of a default run and of --quick (the smoke test); an explicit option overrides either.
DEFAULTS = dict(steps=500, batch=8, baseline_shapes=2, points=512, samples=256, views=2, size=32, input_size=32,
                eval_shapes=64, eval_views=8, eval_size=64)
QUICK = dict(steps=100, batch=8, baseline_shapes=2, points=256, samples=256, views=1, size=16, input_size=32,
             eval_shapes=32, eval_views=4, eval_size=32)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def build_parser():
    options = (
        ("steps", positive_int, "N", "training steps (of the model and, alongside, the free cloud)"),
        ("batch", positive_int, "B", "shapes per training batch"),
        ("baseline_shapes", positive_int, "N", "shapes of each batch the free cloud is trained on (at most B)"),
        ("points", int_at_least(8, 8192), "P", "points of the predicted cloud (8 to 8192)"),
        ("samples", positive_int, "Q", "points drawn on each true surface per training step"),
        ("views", positive_int, "V", "silhouette views per shape in the training loss"),
        ("input_size", int_at_least(16, 256), "PX", "input picture size (16 to 256)"),
        ("eval_shapes", positive_int, "S", "held-out shapes (and training shapes in the sample)"),
        ("eval_views", positive_int, "V", "views per held-out shape"),
        ("eval_size", int_at_least(8, 1024), "PX", "image size of the held-out IoU and the pictures"),
    )
    parser = sv.preset_parser(NAME, __doc__.split("\n\n")[0], DEFAULTS, QUICK, options,
                              "size of the training silhouettes in pixels")
    positive_float = float_where(lambda v: v > 0, "> 0")
    parser.add_argument("--lr", type=positive_float, default=1e-3, metavar="LR",
                        help="peak Adam learning rate of the network (default: %(default)s)")
    parser.add_argument("--baseline-lr", type=positive_float, default=1e-2, metavar="LR",
                        help="Adam learning rate of the free cloud, decaying to 0 (default: %(default)s)")
    parser.add_argument("--time-parts", action="store_true",
                        help="also time the parts of a train step, each jitted on its own (compiling them takes a "
                             "while)")
    parser.add_argument("--w-silhouette", type=float_where(lambda v: v >= 0, ">= 0"), default=0.01, metavar="W",
                        help="weight of the silhouette term (0: chamfer distance only; default: %(default)s)")
    return parser


def resolve(args) -> dict:
    """The run's settings: each option as given, else its ``--quick`` or default value."""
    settings = sv.resolve_presets(args, DEFAULTS, QUICK)
    settings.update(baseline_shapes=min(settings["baseline_shapes"], settings["batch"]), lr=args.lr,
                    baseline_lr=args.baseline_lr, w_silhouette=args.w_silhouette)
    return settings


# ---------------------------------------------------------------------------------------------------------------
# Point clouds: the template, rendering, the loss, the train step
# ---------------------------------------------------------------------------------------------------------------


def sphere_points(n: int, radius: float = TEMPLATE_RADIUS) -> np.ndarray:
    """float32 ``[n, 3]``: a Fibonacci sphere (heights evenly spaced, longitudes turned by the golden angle), an
    even spread of ``n`` points on the sphere of ``radius`` about the origin."""
    i = np.arange(n) + 0.5
    y = 1.0 - 2.0 * i / n
    ring = np.sqrt(1.0 - y * y)
    longitude = i * math.pi * (3.0 - math.sqrt(5.0))
    return (radius * np.stack([ring * np.cos(longitude), y, ring * np.sin(longitude)], axis=-1)).astype(np.float32)


def render_cloud_views(renderer: jaxnmr.Renderer, points, eyes, radius) -> jax.Array:
    """Alpha ``[..., V, H, W]`` of clouds ``[..., P, 3]`` (discs of ``radius`` NDC units) seen from cameras
    ``eyes [..., V, 3]``: the views and the clouds broadcast in one ``render_points`` call (one rasterizer
    call)."""
    ones = jnp.ones(points.shape[:-1] + (1,), jnp.float32)
    camera = renderer.replace(eye=eyes)  # the camera's batch [..., V]
    return camera.render_points(points[..., None, :, :], ones[..., None, :, :], radius, POINTS_PER_PIXEL).alpha


def silhouette_term(renderer: jaxnmr.Renderer, points, eyes, targets, radius) -> jax.Array:
    """``1 - soft IoU`` of the clouds' rendered alpha with the target silhouettes ``[B, V, H, W]``, mean over
    the views: float32 ``[B]``."""
    alpha = render_cloud_views(renderer, points, eyes, radius)
    return 1.0 - jnp.mean(losses.silhouette_iou(alpha, targets, threshold=None), axis=-1)


def surface_samples(key, vertices, faces, count: int) -> jax.Array:
    """``count`` points drawn uniformly on each true mesh ``vertices [B, N, 3]`` (a key per mesh, so that the
    meshes' samples are independent) -> ``[B, count, 3]``."""
    return jaxnmr.sample_points(jax.random.split(key, vertices.shape[0]), vertices, faces, count)


class Data(NamedTuple):
    """A training batch for the point loss: ``batch`` (:class:`_single_view.Batch`: pictures, cameras, target
    silhouettes, true meshes) and ``samples`` ``[B, Q, 3]``, points drawn on the true surfaces."""

    batch: sv.Batch
    samples: jax.Array


def make_data(scene: sv.Scene, key, settings: dict) -> Data:
    """A fresh batch (:func:`_single_view.make_batch`) and ``--samples`` points on each true surface."""
    k_batch, k_samples = jax.random.split(key)
    batch = sv.make_batch(scene, k_batch, settings["batch"], settings["views"])
    return Data(batch, surface_samples(k_samples, batch.vertices, scene.faces, settings["samples"]))


def cloud_loss(scene: sv.Scene, points, data: Data, radius, w_silhouette: float) -> jax.Array:
    """The training loss ``[B]`` of clouds ``[B, P, 3]``: the chamfer distance to the surface samples, plus
    ``w_silhouette`` times :func:`silhouette_term` (left out of the computation when the weight is 0)."""
    loss = jaxnmr.chamfer_distance(points, data.samples)
    if w_silhouette:
        loss = loss + w_silhouette * silhouette_term(scene.silhouettes, points, data.batch.eyes,
                                                     data.batch.targets, radius)
    return loss


class State(NamedTuple):
    """What the train step carries: the network's parameters and the free cloud's offsets ``[P, 3]``, their
    optimisers' states, and the free cloud's loss at the latest step."""

    params: dict
    free: jax.Array
    opt_state: object
    free_opt_state: object
    free_loss: jax.Array


def make_step(scene: sv.Scene, template, optimizer, free_optimizer, key, radius, settings: dict) -> Callable:
    """The train step for :func:`_common.optimize`: ``step(state, i) -> (state, loss)``.

    Step ``i`` makes its data from ``fold_in(key, i)`` (:func:`make_data`); the model predicts the clouds
    ``template + network(params, pictures)``; the free cloud ``template + free`` is the answer for the first
    ``--baseline-shapes`` shapes, whatever their pictures. The loss (:func:`cloud_loss`, one call for both: they
    are independent, so the gradient of the sum of their mean losses is each one's own), gradients and each one's
    optimiser update; the loss returned is the model's. ``optimize`` compiles it, data making included, into one
    function."""
    w, n_free = settings["w_silhouette"], settings["baseline_shapes"]

    def step(state: State, i):
        data = make_data(scene, jax.random.fold_in(key, i), settings)
        both = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x[:n_free]]), data)

        def loss_fn(params, free):
            predicted = template + sv.network(params, data.batch.images)
            fixed = jnp.broadcast_to(template + free, (n_free,) + free.shape)  # the same cloud for every shape
            per_cloud = cloud_loss(scene, jnp.concatenate([predicted, fixed]), both, radius, w)
            model_loss, free_loss = jnp.mean(per_cloud[:-n_free]), jnp.mean(per_cloud[-n_free:])
            return model_loss + free_loss, (model_loss, free_loss)

        (_, (loss, free_value)), (grads, free_grads) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(
            state.params, state.free)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        free_updates, free_opt_state = free_optimizer.update(free_grads, state.free_opt_state, state.free)
        return State(optax.apply_updates(state.params, updates), optax.apply_updates(state.free, free_updates),
                     opt_state, free_opt_state, free_value), loss

    return step


def train(step: Callable, state: State, steps: int, progress: bool):
    """Runs ``steps`` train steps as compiled chunks of CHUNK steps with a progress bar. Returns ``(state,
    losses [steps] of the model, the free cloud's loss at the end of each chunk, ms)``: ``ms`` is the mean time
    per step after the first chunk (which includes compiling the chunk), None when there is only one chunk."""
    ends, free_losses = [], []

    def on_chunk(state, done):
        ends.append((time.perf_counter(), done))
        if done:
            free_losses.append(float(state.free_loss))

    result = optimize(step, state, steps, chunk=CHUNK, on_chunk=on_chunk, desc="training", progress=progress)
    (t0, done0), (t1, done1) = ends[min(1, len(ends) - 1)], ends[-1]
    ms = 1e3 * (t1 - t0) / (done1 - done0) if done1 > done0 else None
    return result.state, result.losses, np.array(free_losses), ms


# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------


@jax.jit
def _cloud_iou(points, eyes, radius, silhouettes) -> jax.Array:
    """IoU (> 0.5) ``[S, V]`` of clouds ``[S, P, 3]`` seen from ``eyes [V, 3]`` with ``silhouettes [S, V, E, E]``,
    EVAL_BATCH clouds per rasterizer call (``radius`` traced: one compilation serves every radius)."""
    renderer = jaxnmr.Renderer(image_size=silhouettes.shape[-1])
    one = lambda args: losses.silhouette_iou(render_cloud_views(renderer, args[0], eyes, radius), args[1])  # noqa: E731
    return jax.lax.map(one, (points, silhouettes), batch_size=EVAL_BATCH)


@jax.jit
def _fixed_cloud_iou(clouds, eyes, radius, silhouettes) -> jax.Array:
    """IoU (> 0.5) ``[K, S, V]`` of clouds ``[K, P, 3]``, each the answer for every shape of ``silhouettes``:
    each is rendered once per camera (it looks the same whatever the input)."""
    renderer = jaxnmr.Renderer(image_size=silhouettes.shape[-1])
    return jax.lax.map(lambda c: losses.silhouette_iou(render_cloud_views(renderer, c, eyes, radius), silhouettes),
                       clouds)


def cloud_iou(evaluation: sv.Evaluation, points, radius: float) -> np.ndarray:
    """Silhouette IoU (> 0.5) ``[S, V]`` of one predicted cloud per shape, ``points [S, P, 3]``, rendered with
    discs of ``radius``, against the true meshes' silhouettes."""
    return np.asarray(_cloud_iou(jnp.asarray(points), evaluation.eyes, radius, evaluation.silhouettes))


def fixed_cloud_iou(evaluation: sv.Evaluation, clouds, radius: float) -> np.ndarray:
    """Silhouette IoU (> 0.5) ``[K, S, V]`` of K fixed clouds ``[K, P, 3]``, each the answer for every shape."""
    return np.asarray(_fixed_cloud_iou(jnp.asarray(clouds), evaluation.eyes, radius, evaluation.silhouettes))


_chamfer = jax.jit(jaxnmr.chamfer_distance)
_surface_samples = jax.jit(surface_samples, static_argnums=3)


def chamfer(points, truth) -> np.ndarray:
    """Chamfer distance ``[S]`` of clouds ``[S, P, 3]`` (or one ``[P, 3]`` for all) to ``truth [S, Q, 3]``."""
    return np.asarray(_chamfer(jnp.asarray(points), truth))


def choose_radius(sample: sv.Evaluation, oracle) -> tuple[float, dict]:
    """The disc radius (from RADII) under which the oracle clouds ``[S, P, 3]`` (points drawn on the true
    surfaces of ``sample``, training shapes) match the true silhouettes best. Returns it and the mean IoU of
    every radius tried."""
    scores = {r: float(cloud_iou(sample, oracle, r).mean()) for r in RADII}
    return max(scores, key=scores.get), scores


class Scores(NamedTuple):
    """Scores of one answer per shape: ``chamfer [S]`` and ``iou [S, V]``."""

    chamfer: np.ndarray
    iou: np.ndarray


def score(evaluation: sv.Evaluation, truth, points, radius: float) -> Scores:
    """:class:`Scores` of per-shape clouds ``points [S, P, 3]`` against ``truth`` (surface samples)."""
    return Scores(chamfer(points, truth), cloud_iou(evaluation, points, radius))


def score_fixed(evaluation: sv.Evaluation, truth, clouds: dict, radius: float) -> dict:
    """``name -> Scores`` of fixed clouds (name -> ``[P, 3]``), each used as the answer for every shape."""
    ious = fixed_cloud_iou(evaluation, np.stack([np.asarray(c) for c in clouds.values()]), radius)
    return {name: Scores(chamfer(cloud, truth), iou) for (name, cloud), iou in zip(clouds.items(), ious)}


# ---------------------------------------------------------------------------------------------------------------
# Timing and pictures
# ---------------------------------------------------------------------------------------------------------------


def time_split(scene: sv.Scene, params, template, key, radius: float, settings: dict) -> dict:
    """Milliseconds per call (:func:`_single_view.best_ms`) of the parts of a train step: the data alone (shapes,
    their pictures and target silhouettes, surface samples); the chamfer distance's forward + backward; the
    silhouette term's forward + backward (render_points and soft IoU); the network's forward + backward (with a
    fixed cotangent). Each part is jitted on its own, on the same data, for the model's batch."""
    data_fn = jax.jit(lambda k: make_data(scene, k, settings))
    data = data_fn(key)
    points = jax.jit(lambda p, images: template + sv.network(p, images))(params, data.batch.images)
    chamfer_grad = jax.jit(jax.grad(lambda x, s: jnp.mean(jaxnmr.chamfer_distance(x, s))))
    silhouette_grad = jax.jit(jax.grad(lambda x, eyes, targets: jnp.mean(silhouette_term(
        scene.silhouettes, x, eyes, targets, radius))))
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(points.shape), jnp.float32)
    network_grad = jax.jit(jax.grad(lambda p, images, cotangent: jnp.sum(sv.network(p, images) * cotangent)))
    return sv.best_ms(dict(
        data=(data_fn, (key,)),
        chamfer_forward_backward=(chamfer_grad, (points, data.samples)),
        silhouette_forward_backward=(silhouette_grad, (points, data.batch.eyes, data.batch.targets)),
        network_forward_backward=(network_grad, (params, data.batch.images, cotangent)),
    ))


def shaded_clouds(points, eyes, size: int, radius: float) -> np.ndarray:
    """uint8 ``[S, K, size, size, 3]``: clouds ``[S, P, 3]`` from cameras ``[K, 3]`` in the prediction colour,
    each point lit as if its normal pointed away from the cloud's centre (enough for these star-shaped clouds),
    with the pictures' narrower field of view (the radius grows with it, so the discs keep their size)."""
    points = jnp.asarray(points)
    outward = points - jnp.mean(points, axis=1, keepdims=True)
    outward = outward / jnp.maximum(jnp.linalg.norm(outward, axis=-1, keepdims=True), 1e-6)
    light = jnp.asarray(sv.LIGHT_DIRECTION, jnp.float32) / np.linalg.norm(sv.LIGHT_DIRECTION)
    brightness = 0.45 + 0.55 * jnp.maximum(outward @ light, 0.0)
    colours = brightness[..., None] * jnp.asarray(sv.PREDICTION_COLOUR, jnp.float32)
    scale = math.tan(math.radians(30.0)) / math.tan(math.radians(sv.PICTURE_VIEWING_ANGLE))
    renderer = jaxnmr.Renderer(image_size=size, viewing_angle=sv.PICTURE_VIEWING_ANGLE,
                               eye=jnp.asarray(eyes))  # the cameras' batch [K]
    render = jax.jit(lambda p, c: renderer.render_points(p[:, None], c[:, None], radius * scale,
                                                         POINTS_PER_PIXEL).rgb)
    return to_uint8(render(points, colours))


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    settings = resolve(args)
    timer = Timer()

    scene = sv.make_scene(settings)
    P = settings["points"]
    template = jnp.asarray(sphere_points(P))
    keys = jax.random.split(jax.random.PRNGKey(settings["seed"]), 7)
    key_train, key_held_out, key_sample, key_time, key_truth, key_oracle, key_sample_truth = keys
    params = sv.init_network(settings["seed"], settings["input_size"], P)
    print(f"data: superquadrics on a level-{sv.TARGET_LEVEL} icosphere ({len(scene.directions)} vertices), input "
          f"{settings['input_size']} px, {settings['samples']} surface samples and {settings['views']} views x "
          f"{settings['size']} px per shape, batch {settings['batch']}; model: {sv.count_parameters(params)} "
          f"parameters -> {P} points")

    # The held-out shapes (a random stream of their own), a sample of training shapes, points on their surfaces.
    held_out = sv.make_evaluation(scene, key_held_out, settings)
    sample = sv.make_evaluation(scene, key_sample, settings)
    truth = _surface_samples(key_truth, held_out.vertices, scene.faces, EVAL_SAMPLES)
    sample_truth = _surface_samples(key_sample_truth, sample.vertices, scene.faces, EVAL_SAMPLES)
    radius, radius_scores = choose_radius(sample, _surface_samples(key_oracle, sample.vertices, scene.faces, P))
    pixels = radius * settings["eval_size"] / 2.0
    print(f"disc radius {radius} NDC units ({pixels:.2f} px at {settings['eval_size']} px): the best of {len(RADII)} "
          f"for {P} points drawn on the true surfaces of training shapes (their mean IoU {radius_scores[radius]:.4f})")
    oracle = score(held_out, truth, _surface_samples(key_oracle, held_out.vertices, scene.faces, P), radius)
    predict = jax.jit(lambda params, images: template + sv.network(params, images))  # [S, P, 3]
    untrained = score(held_out, truth, predict(params, held_out.images), radius)

    # The model and, alongside it on the same batches, the free cloud (a mean-shape baseline candidate).
    optimizer = optax.adam(sv.learning_rate(settings["lr"], settings["steps"]))
    free_optimizer = optax.adam(optax.cosine_decay_schedule(settings["baseline_lr"], settings["steps"]))
    free = jnp.zeros_like(template)
    state = State(params, free, optimizer.init(params), free_optimizer.init(free), jnp.zeros(()))
    step = make_step(scene, template, optimizer, free_optimizer, key_train, radius, settings)
    training = Timer()
    state, model_losses, free_losses, step_ms = train(step, state, settings["steps"], args.progress)
    params = state.params
    timings = dict(train_loop_mean=1e3 * training.seconds / settings["steps"], train_step=step_ms)
    print(f"training: {settings['steps']} steps in {training.seconds:.1f} s ({timings['train_loop_mean']:.1f} ms "
          f"per step with compilation, {step_ms or float('nan'):.1f} ms after the first chunk)")
    if args.time_parts:
        timings.update(time_split(scene, params, template, key_time, radius, settings))
        print(f"separately jitted parts of the model's step: data {timings['data']:.1f} ms (shapes, pictures, target "
              f"silhouettes, surface samples), chamfer forward+backward {timings['chamfer_forward_backward']:.1f}, "
              f"silhouette term forward+backward {timings['silhouette_forward_backward']:.1f}, network "
              f"forward+backward {timings['network_forward_backward']:.1f} (best of 10 calls each)")

    # The mean-shape baseline: one fixed cloud for every input, the better candidate per metric on training shapes.
    candidates = {
        "free cloud trained with the same loss": template + state.free,
        "mean of the model's predictions": jnp.mean(predict(params, sample.images), axis=0),
    }
    on_sample = score_fixed(sample, sample_truth, candidates, radius)
    on_held_out = score_fixed(held_out, truth, candidates, radius)
    chamfer_from = min(candidates, key=lambda name: on_sample[name].chamfer.mean())
    iou_from = max(candidates, key=lambda name: on_sample[name].iou.mean())
    baseline = Scores(on_held_out[chamfer_from].chamfer, on_held_out[iou_from].iou)

    predicted = np.asarray(predict(params, held_out.images))
    model = score(held_out, truth, predicted, radius)
    first, last = (float(np.mean(x)) for x in (model_losses[:10], model_losses[-10:]))
    print(f"model: {settings['steps']} steps, loss {first:.5f} -> {last:.5f} (means of the first and last 10); free "
          f"cloud's loss at the end {free_losses[-1]:.5f}")
    print("mean-shape baseline candidates, chamfer / IoU on training shapes -> held-out shapes:")
    for name in candidates:
        marks = " and ".join(m for m, chosen in (("chamfer", chamfer_from), ("IoU", iou_from)) if chosen == name)
        print(f"  {name}: {on_sample[name].chamfer.mean():.5f} / {on_sample[name].iou.mean():.4f} -> "
              f"{on_held_out[name].chamfer.mean():.5f} / {on_held_out[name].iou.mean():.4f}"
              f"{'  <- baseline ' + marks if marks else ''}")
    better = float(np.mean(model.chamfer < baseline.chamfer))
    print(f"held-out, {model.iou.shape[0]} shapes, chamfer distance to {EVAL_SAMPLES} surface points / silhouette IoU "
          f"over {model.iou.shape[1]} views at {settings['eval_size']} px: model {model.chamfer.mean():.5f} / "
          f"{model.iou.mean():.4f}, baseline {baseline.chamfer.mean():.5f} / {baseline.iou.mean():.4f}, untrained "
          f"{untrained.chamfer.mean():.5f} / {untrained.iou.mean():.4f}, oracle ({P} points on the true surface) "
          f"{oracle.chamfer.mean():.5f} / {oracle.iou.mean():.4f}; the model's chamfer distance is below the "
          f"baseline's on {100 * better:.0f}% of the shapes")

    out, size = args.out, settings["eval_size"]
    render_prediction = lambda n, eyes: shaded_clouds(predicted[:n], eyes, size, radius)  # noqa: E731
    write_png(os.path.join(out, f"{NAME}.png"), sv.grid_picture(held_out, render_prediction, scene.faces, size))
    write_gif(os.path.join(out, f"{NAME}.gif"), sv.turntable_animation(held_out, render_prediction, scene.faces, size),
              args.fps)
    metrics = lambda s: dict(chamfer=float(s.chamfer.mean()), iou=float(s.iou.mean()))  # noqa: E731
    summary = dict(
        settings=settings,
        radius=dict(ndc=radius, eval_pixels=pixels, oracle_train_iou={str(r): v for r, v in radius_scores.items()}),
        heldout=dict(model=metrics(model), baseline=metrics(baseline), untrained=metrics(untrained),
                     oracle=metrics(oracle), shapes=int(model.iou.shape[0]), views=int(model.iou.shape[1]),
                     size=size, surface_samples=EVAL_SAMPLES, model_beats_baseline_chamfer_fraction=better),
        baseline=dict(chamfer_from=chamfer_from, iou_from=iou_from,
                      candidates={name: dict(train=metrics(on_sample[name]), heldout=metrics(on_held_out[name]))
                                  for name in candidates}),
        loss=dict(first10=first, last10=last, free_cloud_last=float(free_losses[-1])),
        step_ms=timings,
        losses=[round(float(x), 7) for x in model_losses],
        free_cloud_losses=[round(float(x), 7) for x in free_losses],
        parameters=sv.count_parameters(params),
        seconds=round(timer.seconds, 1),
        device=str(jax.devices()[0]),
    )
    with open(os.path.join(out, f"{NAME}.json"), "w") as file:
        json.dump(summary, file, indent=1)
    print(f"wrote {NAME}.png, {NAME}.gif and {NAME}.json to {out} in {timer.seconds:.1f} s")
    report_initial("heldout_chamfer", float(untrained.chamfer.mean()), ".5f")
    print(f"baseline heldout_chamfer={baseline.chamfer.mean():.5f} heldout_iou={baseline.iou.mean():.4f}")
    print(f"model heldout_iou={model.iou.mean():.4f}")
    report_final("heldout_chamfer", float(model.chamfer.mean()), ".5f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
