"""Smoke test of examples/learn_reconstruction.py (a network trained through the renderer) and checks of its
pieces against independent computations: the superquadric surface against its implicit equation (numpy), the
batched silhouettes against one renderer call per view, the fixed-mesh IoU shortcut against the general one.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _examples  # noqa: E402

from jaxnmr import cli, losses  # noqa: E402
from jaxnmr.meshes import icosphere  # noqa: E402


@pytest.fixture(scope="module")
def learn():
    return _examples.load_example("learn_reconstruction", "learn_example")


def small_settings(learn, **changes) -> dict:
    settings = dict(learn.QUICK, lr=1e-3, baseline_lr=1e-2, w_laplacian=1.0, w_flatten=1.0, seed=0, quick=True)
    settings.update(changes)
    return settings


# -- the smoke test -------------------------------------------------------------------------------------------


def test_quick_run_learns_and_writes_its_outputs(learn, tmp_path, capsys):
    assert learn.main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = re.fullmatch(r"final heldout_iou=([0-9.]+)", lines[-1])
    assert final, lines[-1]
    initial = [float(m.group(1)) for m in map(re.compile(r"initial heldout_iou=([0-9.]+)").fullmatch, lines) if m]
    baseline = [float(m.group(1)) for m in map(re.compile(r"baseline heldout_iou=([0-9.]+)").fullmatch, lines) if m]
    assert len(initial) == 1 and len(baseline) == 1, lines

    summary = json.loads((tmp_path / "learn_reconstruction.json").read_text())
    quick = learn.QUICK
    model_losses = np.array(summary["losses"])
    assert model_losses.shape == (quick["steps"],) and np.all(np.isfinite(model_losses))
    # The loss falls: the last steps' mean is well below the first steps'.
    assert model_losses[-10:].mean() < 0.85 * model_losses[:10].mean(), model_losses
    assert len(summary["fixed_mesh_losses"]) == quick["baseline_steps"]
    iou = summary["heldout_iou"]
    assert (iou["shapes"], iou["views"]) == (quick["eval_shapes"], quick["eval_views"])
    assert iou["model"] == pytest.approx(float(final.group(1)), abs=1e-4)
    assert iou["untrained"] == pytest.approx(initial[0], abs=1e-4)
    assert iou["baseline"] == pytest.approx(baseline[0], abs=1e-4)
    # Even this short training through the renderer reads the pictures: better than the untrained network and
    # than the best fixed mesh.
    assert iou["model"] > iou["untrained"] + 0.05 and iou["model"] > iou["baseline"], iou
    # The baseline is the candidate that scored best on the training sample.
    candidates = summary["baseline"]["candidates"]
    assert len(candidates) == 3
    assert summary["baseline"]["chosen"] == max(candidates, key=lambda name: candidates[name]["train_iou"])
    assert candidates[summary["baseline"]["chosen"]]["heldout_iou"] == pytest.approx(iou["baseline"])
    timings = summary["step_ms"]
    for part in ("train_step", "data", "render_forward_backward", "network_forward_backward",
                 "regularisers_forward_backward", "train_loop_mean"):
        assert timings[part] > 0, timings

    size = quick["eval_size"]
    grid = iio.imread(tmp_path / "learn_reconstruction.png")
    assert grid.shape == (learn.SHOWN * size, 9 * size, 3) and grid.max() > grid.min()
    gif = iio.imread(tmp_path / "learn_reconstruction.gif", index=None)
    assert gif.shape[0] >= 2 and gif.shape[1:] == (2 * size, learn.SHOWN_GIF * size, 3)
    curve = iio.imread(tmp_path / "learn_reconstruction_loss.png")
    assert curve.ndim == 3 and curve.shape[0] > 100 and curve.shape[1] > 100
    from jaxnmr import load_obj

    vertices, faces = load_obj(str(tmp_path / "learn_reconstruction.obj"), normalization=False)
    assert vertices.shape == (162, 3) and faces.shape == (320, 3)  # a level-2 icosphere's topology


def test_quick_flag_yields_to_explicit_options(learn):
    args = learn.build_parser().parse_args(["--quick", "--steps", "7", "--eval-views", "5"])
    settings = learn.resolve(args)
    assert settings["steps"] == 7 and settings["eval_views"] == 5 and settings["batch"] == learn.QUICK["batch"]
    defaults = learn.resolve(learn.build_parser().parse_args([]))
    assert {k: defaults[k] for k in learn.DEFAULTS} == learn.DEFAULTS
    assert defaults["eval_shapes"] >= 32 and defaults["eval_views"] >= 4


def test_cli_lists_the_example(capsys):
    assert cli.main(["examples"]) == 0
    assert re.search(r"^  learn_reconstruction\.py +\S", capsys.readouterr().out, re.MULTILINE)


# -- the data -------------------------------------------------------------------------------------------------


def test_superquadric_points_lie_on_the_surface(learn):
    directions = icosphere(2).vertices
    shapes = np.asarray(learn.sample_shapes(jax.random.PRNGKey(3), 5), np.float64)
    low = [learn.EXTENT_RANGE[0]] * 3 + [learn.EXPONENT_RANGE[0]] * 2 + [0.0]
    high = [learn.EXTENT_RANGE[1]] * 3 + [learn.EXPONENT_RANGE[1]] * 2 + [2 * np.pi]
    assert np.all((shapes >= low) & (shapes <= high))
    for shape in shapes:
        points = np.asarray(learn.superquadric(directions, jnp.asarray(shape, jnp.float32)), np.float64)
        a, b, c, e1, e2, turn = shape
        # Undo the turn about +y by hand, then evaluate the implicit function in numpy.
        x = np.cos(turn) * points[:, 0] - np.sin(turn) * points[:, 2]
        z = np.sin(turn) * points[:, 0] + np.cos(turn) * points[:, 2]
        y = points[:, 1]
        f = (np.abs(x / a) ** (2 / e2) + np.abs(z / c) ** (2 / e2)) ** (e2 / e1) + np.abs(y / b) ** (2 / e1)
        np.testing.assert_allclose(f, 1.0, rtol=2e-4)
        # Each point lies along its direction, turned: same height ratio, positive radius.
        unturned = np.stack([x, y, z], axis=-1)
        radius = np.linalg.norm(unturned, axis=1)
        np.testing.assert_allclose(unturned / radius[:, None], directions, atol=2e-5)
        assert radius.max() <= np.sqrt(3) * max(a, b, c) + 1e-6


def test_batched_silhouettes_equal_one_call_per_view(learn):
    settings = small_settings(learn)
    scene = learn.make_scene(settings)
    batch = jax.jit(lambda key: learn.make_batch(scene, key, 3, 2))(jax.random.PRNGKey(1))
    assert batch.images.shape == (3, settings["input_size"], settings["input_size"])
    assert batch.eyes.shape == (3, 2, 3) and batch.targets.shape == (3, 2, settings["size"], settings["size"])
    np.testing.assert_allclose(np.linalg.norm(batch.eyes, axis=-1), learn.DISTANCE, rtol=1e-5)
    shapes = learn.sample_shapes(jax.random.split(jax.random.PRNGKey(1))[0], 3)

    @jax.jit
    def alone(shape, eye):  # one shape, one camera, no vmap
        vertices = learn.superquadric(scene.directions, shape)
        return scene.silhouettes.replace(eye=eye).render_silhouettes(vertices, scene.faces)

    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(batch.targets[i, j], alone(shapes[i], batch.eyes[i, j]), atol=1e-6)
        assert 0.01 < float(jnp.mean(batch.targets[i] > 0.5)) < 0.9  # the shape is in view, not filling it
        assert float(batch.images[i].max()) > 0.3 and float(batch.images[i].min()) == 0.0


# -- the network, the loss, the baseline ----------------------------------------------------------------------


def test_network_starts_near_the_template_and_has_gradients(learn):
    params = learn.init_network(0, 32, 162)
    images = jax.random.uniform(jax.random.PRNGKey(1), (4, 32, 32))
    offsets = jax.jit(learn.network)(params, images)
    assert offsets.shape == (4, 162, 3) and offsets.dtype == jnp.float32
    assert float(jnp.abs(offsets).max()) < 0.05
    grads = jax.jit(jax.grad(lambda p: jnp.sum(learn.network(p, images) ** 2)))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    assert float(jnp.abs(grads["conv"][0]["w"]).max()) > 0  # the gradient reaches the first layer


def test_silhouette_loss_is_zero_for_the_true_meshes_and_has_a_gradient(learn):
    scene = learn.make_scene(small_settings(learn))
    batch = jax.jit(lambda key: learn.make_batch(scene, key, 2, 3))(jax.random.PRNGKey(5))
    shapes = learn.sample_shapes(jax.random.split(jax.random.PRNGKey(5))[0], 2)
    vertices = jax.vmap(lambda s: learn.superquadric(scene.directions, s))(shapes)
    eyes, targets = batch.eyes, batch.targets
    loss = jax.jit(lambda v: learn.silhouette_loss(scene.silhouettes, v, scene.faces, eyes, targets))
    soft_iou = losses.silhouette_iou(targets, targets, threshold=None)  # < 1 where the edges are anti-aliased
    np.testing.assert_allclose(loss(vertices), 1.0 - np.mean(soft_iou), atol=1e-6)
    shrunk = 0.8 * vertices
    assert float(loss(shrunk)) > float(loss(vertices)) + 0.05
    grad = jax.jit(jax.grad(loss))(shrunk)
    assert grad.shape == vertices.shape and bool(jnp.all(jnp.isfinite(grad)))
    # Growing the shrunk meshes back lowers the loss: the gradient points inwards on average.
    assert float(jnp.sum(grad * shrunk)) < 0


def test_fixed_mesh_iou_equals_the_general_iou(learn):
    settings = small_settings(learn, eval_shapes=5, eval_views=3, eval_size=24)
    scene = learn.make_scene(settings)
    evaluation = learn.make_evaluation(scene, jax.random.PRNGKey(7), settings)
    sphere = icosphere(2)
    unit, faces = sphere.vertices, sphere.faces
    meshes, radii = learn.ellipsoids(unit, [0.3, 0.45], [0.25, 0.5])
    assert meshes.shape == (4, len(unit), 3)
    np.testing.assert_allclose(radii, [[0.3, 0.25], [0.3, 0.5], [0.45, 0.25], [0.45, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(meshes[3], unit * np.array([0.45, 0.5, 0.45], np.float32), rtol=1e-6)
    shortcut = learn.fixed_mesh_iou(evaluation, meshes, faces)
    assert shortcut.shape == (4, 5, 3)
    for k in range(4):
        general = learn.reconstruction_iou(evaluation, jnp.broadcast_to(meshes[k], (5,) + meshes[k].shape), faces)
        np.testing.assert_allclose(shortcut[k], general, atol=1e-6)
    name, scores = learn.choose_baseline(evaluation, {"small": meshes[0], "large": meshes[3]}, faces)
    np.testing.assert_allclose([scores["small"], scores["large"]], shortcut[[0, 3]].mean(axis=(1, 2)), rtol=1e-6)
    assert name == max(scores, key=scores.get)
