"""Learn single-view 3D reconstruction end to end: a network whose loss renders its own prediction.

A miniature of NMR's single-image reconstruction (Kato, Ushiku and Harada, CVPR 2018, section 4.2): an image
encoder reads ONE grey, shaded picture of an object and a decoder outputs the object's mesh as offsets of the
vertices of an icosphere. Nothing 3D supervises it: the loss renders the predicted mesh's silhouettes from
``--views`` other cameras with jaxnmr and compares them with the object's true silhouettes (``1 - soft IoU``, as
NMR), plus the mesh regularisers of :mod:`jaxnmr.losses` (``laplacian_smoothing`` and ``normal_consistency``,
NMR's smoothness and flatten terms). The gradient reaches the network through the rasterizer's approximate
backward.

The data is made on the fly, a fresh batch at every step, by jaxnmr inside the jitted train step: superquadrics
``(|x/a|^(2/e2) + |z/c|^(2/e2))^(e2/e1) + |y/b|^(2/e1) = 1`` with half-extents ``a, b, c`` uniform in
[0.2, 0.55], exponents ``e1, e2`` uniform in [0.3, 1.4] (box-like to pinched) and a uniformly random turn about
the vertical axis (so the network sees each shape from a random azimuth and must read the image). The surface is
a level-3 icosphere pushed radially onto the superquadric (which is star-shaped: ``r(u) = f(u)^(-e1/2)``). The
input picture is rendered by the input camera (azimuth 0, elevation 30 degrees, distance 2.2; light from the
upper left) at ``--input-size`` px; the training silhouettes by ``--views`` cameras at random azimuths and
elevations in [-30, 50] degrees at ``--size`` px, anti-aliased. The prediction is in the input camera's frame
(viewer-centred), as the object's turn is only visible relative to that camera.

The network (pure JAX: three stride-2 ``lax.conv`` layers of 16, 32 and 64 channels, two dense layers of 256,
and a dense decoder to the ``3 N`` offsets of a ``--level`` 3 icosphere of radius 0.5, 642 vertices) is trained
with Adam (optax; ``--lr`` after a linear warm-up over the first 5% of the steps, decaying to a tenth along a
cosine). The train step -- sample shapes, render their input pictures and target silhouettes, predict, render
the prediction from every view, loss, gradient, Adam update -- is ONE ``jax.jit`` function, with ``jax.vmap``
over the views inside ``jax.vmap`` over the batch (one rasterizer call renders all ``batch x views``
silhouettes, one more computes their backward).

Evaluation: ``--eval-shapes`` held-out superquadrics (from a random stream of their own), each seen by
``--eval-views`` cameras (azimuths ``22.5 + 360 k / views`` degrees, elevations alternating +30 and -30, so none
is the input camera) at ``--eval-size`` px; the score is the silhouette IoU (> 0.5) of the reconstructed and the
true mesh, averaged over shapes and views. The mean-shape baseline is ONE fixed mesh used as the answer for
every input, scored the same way. It is the best, by the same IoU on a sample of training shapes (never the
held-out ones), of three candidates: the icosphere with one free ``[N, 3]`` offset array trained by the same
train step and loss on the same stream of batches (``--baseline-steps`` Adam steps from ``--baseline-lr``,
cosine decay); the mean of the trained model's reconstructions of the training sample; and the best of a grid of
ellipsoids (radii 0.25 to 0.55 across, 0.2 to 0.55 tall, steps of 0.025). All three are printed with their
scores.

Default settings measured on a 2-core x86_64 CPU shared with other work (the README section "Using jaxnmr
inside a model" has the numbers and the step-time split): held-out IoU 0.919 for the model against 0.675 for the
mean-shape baseline (0.532 for the untrained network), in 80 s (45 ms per train step; up to twice that when the
machine is busy). ``--quick`` is the smoke test's setting (10-20 s, mostly compilation; it shows the loss
falling and the model already ahead of the baseline, not a finished model).

Run::

    python examples/learn_reconstruction.py --out out/learn_reconstruction [--steps 1200] [--seed 0] [--quick]

Writes, under ``--out``: ``learn_reconstruction.png`` (rows: held-out shapes; columns: the input picture | the
reconstruction from four azimuths | the true shape from the same four), ``learn_reconstruction.gif`` (turntable:
true shapes on top, reconstructions below), ``learn_reconstruction_loss.png`` (training loss per step of the
model and of the fixed mesh trained with the same loss), ``learn_reconstruction.json`` (settings, IoUs, the
baseline candidates, losses and timings), ``learn_reconstruction.obj`` (the first held-out reconstruction) and
``learn_reconstruction_baseline.obj`` (the mean shape). Prints the time per train step and how it splits between
making the batch, the silhouette loss's render forward + backward, the network's forward + backward and the
regularisers' (each jitted on its own, best of 10 calls taken in turns), the mean step time over the training
loop, then ``initial heldout_iou=<untrained network>``, ``baseline heldout_iou=<mean shape>`` and, last,
``final heldout_iou=<learned model>``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable

import numpy as np

from _common import (
    Timer,
    float_where,
    int_at_least,
    parse_args,
    positive_int,
    progress_bar,
    report_final,
    report_initial,
    write_gif,
    write_png,
)
from _single_view import (  # noqa: F401  (the data's constants and functions, re-exported for the tests)
    DISTANCE,
    EXPONENT_RANGE,
    EXTENT_RANGE,
    PREDICTION_COLOUR,
    SHOWN,
    SHOWN_GIF,
    TARGET_LEVEL,
    TIMING_REPEATS,
    Evaluation,
    Scene,
    best_ms,
    count_parameters,
    grid_picture,
    init_network,
    learning_rate,
    make_batch,
    make_evaluation,
    make_scene,
    network,
    preset_parser,
    render_views,
    resolve_presets,
    sample_shapes,
    shaded,
    superquadric,
    turntable_animation,
)

import jax
import jax.numpy as jnp
import optax

import jaxnmr
from jaxnmr import losses
from jaxnmr.meshes import icosphere

NAME = "learn_reconstruction"
TEMPLATE_RADIUS = 0.5  # the icosphere the decoder deforms
ELLIPSOID_GRID = (np.arange(0.25, 0.5501, 0.025), np.arange(0.2, 0.5501, 0.025))  # radii (x and z, y) searched

# Settings of a default run and of --quick (the smoke test); an explicit option overrides either.
DEFAULTS = dict(steps=1200, batch=16, views=4, size=32, input_size=32, level=3, baseline_steps=300,
                eval_shapes=64, eval_views=8, eval_size=64)
QUICK = dict(steps=120, batch=8, views=2, size=16, input_size=32, level=2, baseline_steps=20,
             eval_shapes=32, eval_views=4, eval_size=32)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def build_parser():
    positive_float = float_where(lambda v: v > 0, "> 0")
    nonnegative = float_where(lambda v: v >= 0, ">= 0")
    options = (
        ("steps", positive_int, "N", "training steps of the model"),
        ("batch", positive_int, "B", "shapes per training batch"),
        ("views", positive_int, "V", "silhouette views per shape in the training loss"),
        ("input_size", int_at_least(16, 256), "PX", "input picture size (16 to 256)"),
        ("level", int_at_least(0, 5), "L", "icosphere level of the predicted mesh (3: 642 vertices)"),
        ("baseline_steps", positive_int, "N", "training steps of the fixed mesh (a mean-shape baseline candidate)"),
        ("eval_shapes", positive_int, "S", "held-out shapes"),
        ("eval_views", positive_int, "V", "views per held-out shape"),
        ("eval_size", int_at_least(8, 1024), "PX", "image size of the held-out IoU and the pictures"),
    )
    parser = preset_parser(NAME, __doc__.split("\n\n")[0], DEFAULTS, QUICK, options,
                           "size of the training silhouettes in pixels")
    parser.add_argument("--lr", type=positive_float, default=5e-4, metavar="LR",
                        help="peak Adam learning rate of the network (default: %(default)s)")
    parser.add_argument("--baseline-lr", type=positive_float, default=1e-2, metavar="LR",
                        help="Adam learning rate of the fixed mesh, decaying to 0 (default: %(default)s)")
    parser.add_argument("--w-laplacian", type=nonnegative, default=100.0, metavar="W",
                        help="weight of laplacian_smoothing (default: %(default)s)")
    parser.add_argument("--w-flatten", type=nonnegative, default=1.0, metavar="W",
                        help="weight of normal_consistency (default: %(default)s)")
    return parser


def resolve(args) -> dict:
    """The run's settings: each option as given, else its ``--quick`` or default value."""
    settings = resolve_presets(args, DEFAULTS, QUICK)
    settings.update(lr=args.lr, baseline_lr=args.baseline_lr, w_laplacian=args.w_laplacian,
                    w_flatten=args.w_flatten)
    return settings


# ---------------------------------------------------------------------------------------------------------------
# Loss, train step, evaluation
# ---------------------------------------------------------------------------------------------------------------


def silhouette_loss(renderer: jaxnmr.Renderer, vertices, faces, eyes, targets) -> jax.Array:
    """``1 - soft IoU`` of the meshes' silhouettes with the targets, mean over views and batch: float32 scalar.
    vertices ``[B, N, 3]``, faces ``[F, 3]``, eyes ``[B, V, 3]``, targets ``[B, V, H, W]``."""
    silhouettes = render_views(renderer, vertices, faces, eyes)
    return 1.0 - jnp.mean(losses.silhouette_iou(silhouettes, targets, threshold=None))


def regularisers(vertices, faces, w_laplacian: float, w_flatten: float) -> jax.Array:
    """``w_laplacian * laplacian_smoothing + w_flatten * normal_consistency``, mean over the batch ``[B, N, 3]``."""
    return (w_laplacian * jnp.mean(losses.laplacian_smoothing(vertices, faces))
            + w_flatten * jnp.mean(losses.normal_consistency(vertices, faces)))


def make_train_step(scene: Scene, predict: Callable, template, faces, optimizer, settings: dict) -> Callable:
    """The jitted train step ``train_step(params, opt_state, key) -> (params, opt_state, loss)``.

    One compiled function: a fresh batch from ``key`` (:func:`make_batch`), the predicted meshes
    ``template + predict(params, images)``, the loss (:func:`silhouette_loss` + :func:`regularisers`), its
    gradient and the optax update. ``predict(params, images [B, H, W]) -> offsets [B, N, 3]``.
    """
    batch_size, views = settings["batch"], settings["views"]
    w_laplacian, w_flatten = settings["w_laplacian"], settings["w_flatten"]

    @jax.jit
    def train_step(params, opt_state, key):
        batch = make_batch(scene, key, batch_size, views)

        def loss_fn(params):
            vertices = template + predict(params, batch.images)
            return (silhouette_loss(scene.silhouettes, vertices, faces, batch.eyes, batch.targets)
                    + regularisers(vertices, faces, w_laplacian, w_flatten))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def constant_offsets(offsets, images) -> jax.Array:
    """The mean-shape baseline's predictor: the same offsets ``[N, 3]`` for every picture -> ``[B, N, 3]``."""
    return jnp.broadcast_to(offsets, (images.shape[0],) + offsets.shape)


def train(train_step: Callable, params, optimizer, key, steps: int, desc: str, progress: bool):
    """Runs ``steps`` train steps (step ``i`` draws its batch from ``fold_in(key, i)``) with a progress bar.
    Returns ``(params, losses float64 [steps])``."""
    opt_state = optimizer.init(params)
    history = np.zeros(steps)
    with progress_bar(steps, desc, progress) as bar:
        for i in range(steps):
            params, opt_state, loss = train_step(params, opt_state, jax.random.fold_in(key, i))
            history[i] = float(loss)
            if (i + 1) % 10 == 0 or i + 1 == steps:
                bar.set_postfix(loss=f"{np.mean(history[max(0, i - 9):i + 1]):.4f}", refresh=False)
                bar.update((i + 1) - bar.n)
    return params, history


def reconstruction_iou(evaluation: Evaluation, vertices, faces) -> np.ndarray:
    """Silhouette IoU (> 0.5) ``[S, V]`` of one predicted mesh per shape, ``vertices [S, N, 3]``."""
    renderer = jaxnmr.Renderer(image_size=evaluation.silhouettes.shape[-1])
    eyes_b = jnp.broadcast_to(evaluation.eyes, (vertices.shape[0],) + evaluation.eyes.shape)
    predicted = jax.jit(lambda v: render_views(renderer, v, faces, eyes_b))(vertices)
    return np.asarray(losses.silhouette_iou(predicted, evaluation.silhouettes))


def fixed_mesh_iou(evaluation: Evaluation, meshes, faces) -> np.ndarray:
    """Silhouette IoU (> 0.5) ``[K, S, V]`` of K fixed meshes ``[K, N, 3]``, each used as the answer for every
    shape. A fixed mesh looks the same whatever the input, so each is rendered once per camera."""
    renderer = jaxnmr.Renderer(image_size=evaluation.silhouettes.shape[-1])

    def one(vertices):  # [N, 3] -> [S, V]
        views = jax.vmap(lambda eye: renderer.replace(eye=eye).render_silhouettes(vertices, faces))(evaluation.eyes)
        return losses.silhouette_iou(views, evaluation.silhouettes)

    return np.asarray(jax.jit(lambda m: jax.lax.map(one, m))(jnp.asarray(meshes)))


def ellipsoids(unit_sphere, radii_xz, radii_y) -> tuple[np.ndarray, np.ndarray]:
    """Ellipsoids from a unit sphere's vertices ``[N, 3]``: radius ``r`` along x and z and ``r_y`` along y, for
    every pair (x/z-symmetric, as the shapes' turns are uniform). Returns the meshes' vertices float32
    ``[K, N, 3]`` and the pairs ``(r, r_y)`` float32 ``[K, 2]``, K = ``len(radii_xz) * len(radii_y)``, r-major."""
    pairs = np.array([(r, ry) for r in radii_xz for ry in radii_y], np.float32)
    scale = np.stack([pairs[:, 0], pairs[:, 1], pairs[:, 0]], axis=-1)  # [K, 3]
    return (np.asarray(unit_sphere, np.float32)[None] * scale[:, None]).astype(np.float32), pairs


def choose_baseline(sample: Evaluation, candidates: dict, faces) -> tuple[str, dict]:
    """The candidate fixed mesh (name -> ``[N, 3]``) with the highest mean IoU on ``sample`` (training shapes):
    returns its name and every candidate's mean IoU there."""
    names = list(candidates)
    scores = fixed_mesh_iou(sample, np.stack([np.asarray(candidates[n]) for n in names]), faces).mean(axis=(1, 2))
    return names[int(np.argmax(scores))], {n: float(x) for n, x in zip(names, scores)}


# ---------------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------------


def time_split(scene: Scene, train_step, params, optimizer, template, faces, key, settings: dict) -> dict:
    """Milliseconds per call (:func:`best_ms`) of: the whole train step; the batch alone (sampling the shapes and
    rendering their inputs and target silhouettes, forward only); the silhouette loss's render forward + backward
    w.r.t. the vertices; the network's forward + backward (a vector-Jacobian product with a fixed cotangent); the
    regularisers' forward + backward. Each part is jitted on its own, on the same batch as the step's."""
    opt_state = optimizer.init(params)
    batch_fn = jax.jit(lambda k: make_batch(scene, k, settings["batch"], settings["views"]))
    batch = batch_fn(key)
    vertices = jax.jit(lambda p, images: template + network(p, images))(params, batch.images)
    render_grad = jax.jit(jax.grad(lambda v, eyes, targets: silhouette_loss(scene.silhouettes, v, faces, eyes,
                                                                            targets)))
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(vertices.shape), jnp.float32)
    network_grad = jax.jit(jax.grad(lambda p, images, cotangent: jnp.sum(network(p, images) * cotangent)))
    regulariser_grad = jax.jit(jax.grad(lambda v: regularisers(v, faces, settings["w_laplacian"],
                                                               settings["w_flatten"])))
    return best_ms(dict(
        train_step=(train_step, (params, opt_state, key)),
        data=(batch_fn, (key,)),
        render_forward_backward=(render_grad, (vertices, batch.eyes, batch.targets)),
        network_forward_backward=(network_grad, (params, batch.images, cotangent)),
        regularisers_forward_backward=(regulariser_grad, (vertices,)),
    ))


# ---------------------------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------------------------


def picture_grid(evaluation: Evaluation, predicted, faces, true_faces, size: int) -> np.ndarray:
    """uint8 ``[SHOWN size, 9 size, 3]``: per held-out shape, its input | reconstruction from PICTURE_AZIMUTHS |
    the true shape from the same azimuths."""
    return grid_picture(evaluation, lambda n, eyes: shaded(predicted[:n], faces, eyes, size, PREDICTION_COLOUR),
                        true_faces, size)


def turntable(evaluation: Evaluation, predicted, faces, true_faces, size: int, frames: int = 36) -> np.ndarray:
    """uint8 ``[frames, 2 size, SHOWN_GIF size, 3]``: true shapes on top, reconstructions below, turning."""
    return turntable_animation(evaluation, lambda n, eyes: shaded(predicted[:n], faces, eyes, size,
                                                                  PREDICTION_COLOUR), true_faces, size, frames)


def plot_losses(path: str, model_losses, fixed_losses) -> str:
    """Training loss per step (thin) and its 25-step running mean (thick): the model and the fixed mesh trained
    with the same loss."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("learn_reconstruction: the loss curve needs matplotlib: pip install matplotlib "
                          "(or, from a checkout, pip install '.[examples]')") from error

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for losses_, label, colour in ((model_losses, "learned model", "tab:blue"),
                                   (fixed_losses, "one fixed mesh, same loss", "tab:orange")):
        steps = np.arange(1, len(losses_) + 1)
        ax.plot(steps, losses_, color=colour, alpha=0.25, linewidth=0.8)
        window = min(25, len(losses_))
        smooth = np.convolve(losses_, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color=colour, linewidth=2, label=label)
    ax.set_xlabel("train step")
    ax.set_ylabel("loss (1 - soft IoU + regularisers)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    settings = resolve(args)
    timer = Timer()

    scene = make_scene(settings)
    unit_sphere = icosphere(settings["level"])
    faces = unit_sphere.faces
    template = jnp.asarray(unit_sphere.vertices * TEMPLATE_RADIUS)
    key_train, key_held_out, key_sample, key_time = jax.random.split(jax.random.PRNGKey(settings["seed"]), 4)
    params = init_network(settings["seed"], settings["input_size"], len(template))
    print(f"data: superquadrics on a level-{TARGET_LEVEL} icosphere ({len(scene.directions)} vertices), input "
          f"{settings['input_size']} px, {settings['views']} views x {settings['size']} px per shape, batch "
          f"{settings['batch']}; model: {count_parameters(params)} parameters -> offsets of a level-"
          f"{settings['level']} icosphere ({len(template)} vertices, {len(faces)} faces)")

    # The model and its jitted train step; the held-out shapes (a random stream of their own).
    optimizer = optax.adam(learning_rate(settings["lr"], settings["steps"]))
    train_step = make_train_step(scene, network, template, faces, optimizer, settings)
    held_out = make_evaluation(scene, key_held_out, settings)
    reconstruct = jax.jit(lambda params, images: template + network(params, images))  # [S, N, 3]
    iou_untrained = reconstruction_iou(held_out, reconstruct(params, held_out.images), faces)

    timings = time_split(scene, train_step, params, optimizer, template, faces, key_time, settings)
    rest = timings["train_step"] - sum(v for k, v in timings.items() if k != "train_step")
    print(f"time per train step: {timings['train_step']:.1f} ms; separately jitted parts: data "
          f"{timings['data']:.1f} (sample shapes, render inputs and target silhouettes, forward), silhouette loss "
          f"render forward+backward {timings['render_forward_backward']:.1f}, network forward+backward "
          f"{timings['network_forward_backward']:.1f}, regularisers forward+backward "
          f"{timings['regularisers_forward_backward']:.1f}, rest {rest:.1f} (Adam, what fuses or overlaps; best of "
          f"{TIMING_REPEATS} calls each)")
    training = Timer()
    params, model_losses = train(train_step, params, optimizer, key_train, settings["steps"], "model",
                                 args.progress)
    timings["train_loop_mean"] = 1e3 * training.seconds / settings["steps"]
    print(f"training: {settings['steps']} steps in {training.seconds:.1f} s, {timings['train_loop_mean']:.1f} ms "
          "per step on average")

    # The mean-shape baseline: the best of three fixed meshes on training shapes (see the module docstring).
    fixed_optimizer = optax.adam(optax.cosine_decay_schedule(settings["baseline_lr"], settings["baseline_steps"]))
    fixed_step = make_train_step(scene, constant_offsets, template, faces, fixed_optimizer, settings)
    fixed_offsets, fixed_losses = train(fixed_step, jnp.zeros_like(template), fixed_optimizer, key_train,
                                        settings["baseline_steps"], "fixed mesh", args.progress)
    sample = make_evaluation(scene, key_sample, settings)  # training shapes, not held out
    grid, radii = ellipsoids(unit_sphere.vertices, *ELLIPSOID_GRID)
    best = int(np.argmax(fixed_mesh_iou(sample, grid, faces).mean(axis=(1, 2))))
    candidates = {
        "fixed mesh trained with the same loss": template + fixed_offsets,
        "mean of the model's reconstructions": jnp.mean(reconstruct(params, sample.images), axis=0),
        f"best ellipsoid (radii {radii[best, 0]:.3f}, {radii[best, 1]:.3f}, {radii[best, 0]:.3f})": grid[best],
    }
    chosen, train_scores = choose_baseline(sample, candidates, faces)
    baseline = np.asarray(candidates[chosen])
    held_out_scores = fixed_mesh_iou(held_out, np.stack([np.asarray(v) for v in candidates.values()]), faces)
    iou_baseline = held_out_scores[list(candidates).index(chosen)]

    predicted = np.asarray(reconstruct(params, held_out.images))
    iou_model = reconstruction_iou(held_out, predicted, faces)
    better = float(np.mean(iou_model.mean(axis=1) > iou_baseline.mean(axis=1)))
    first, last = (float(np.mean(x)) for x in (model_losses[:10], model_losses[-10:]))
    print(f"model: {settings['steps']} steps, loss {first:.4f} -> {last:.4f} (means of the first and last 10)")
    print("mean-shape baseline candidates, mean IoU on training shapes / held-out shapes:")
    for (name, train_score), scores in zip(train_scores.items(), held_out_scores):
        print(f"  {name}: {train_score:.4f} / {scores.mean():.4f}{'  <- baseline' if name == chosen else ''}")
    print(f"held-out silhouette IoU over {iou_model.shape[0]} shapes x {iou_model.shape[1]} views at "
          f"{settings['eval_size']} px: model {iou_model.mean():.4f} (worst shape {iou_model.mean(1).min():.3f}), "
          f"mean-shape baseline {iou_baseline.mean():.4f}, untrained network {iou_untrained.mean():.4f}; the "
          f"model beats the baseline on {100 * better:.0f}% of the shapes")

    out = args.out
    size = settings["eval_size"]
    write_png(os.path.join(out, f"{NAME}.png"), picture_grid(held_out, predicted, faces, scene.faces, size))
    write_gif(os.path.join(out, f"{NAME}.gif"), turntable(held_out, predicted, faces, scene.faces, size), args.fps)
    plot_losses(os.path.join(out, f"{NAME}_loss.png"), model_losses, fixed_losses)
    jaxnmr.save_obj(os.path.join(out, f"{NAME}.obj"), predicted[0], faces)
    jaxnmr.save_obj(os.path.join(out, f"{NAME}_baseline.obj"), baseline, faces)
    summary = dict(
        settings=settings,
        heldout_iou=dict(model=float(iou_model.mean()), baseline=float(iou_baseline.mean()),
                         untrained=float(iou_untrained.mean()), shapes=int(iou_model.shape[0]),
                         views=int(iou_model.shape[1]), size=size, model_beats_baseline_fraction=better),
        baseline=dict(chosen=chosen, candidates={name: dict(train_iou=train_scores[name], heldout_iou=float(x.mean()))
                                                 for name, x in zip(candidates, held_out_scores)}),
        loss=dict(first10=first, last10=last),
        step_ms=dict(timings, rest=rest),
        losses=[round(float(x), 6) for x in model_losses],
        fixed_mesh_losses=[round(float(x), 6) for x in fixed_losses],
        parameters=count_parameters(params),
        seconds=round(timer.seconds, 1),
        device=str(jax.devices()[0]),
    )
    with open(os.path.join(out, f"{NAME}.json"), "w") as file:
        json.dump(summary, file, indent=1)
    print(f"wrote {NAME}.png, {NAME}.gif, {NAME}_loss.png, {NAME}.json, {NAME}.obj and {NAME}_baseline.obj to "
          f"{out} in {timer.seconds:.1f} s")
    report_initial("heldout_iou", float(iou_untrained.mean()))
    print(f"baseline heldout_iou={iou_baseline.mean():.4f}")
    report_final("heldout_iou", float(iou_model.mean()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
