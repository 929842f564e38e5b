"""Smoke test of examples/learn_points.py (a network trained to output point clouds) and checks of its pieces
against independent computations: the template sphere, the one-call rendering of all views against one call per
view, the fixed-cloud IoU shortcut against the general one.
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

import jaxnmr  # noqa: E402
from jaxnmr import cli  # noqa: E402


@pytest.fixture(scope="module")
def learn():
    return _examples.load_example("learn_points", "points_learn_example")


def number(pattern: str, lines) -> float:
    """The one number that ``pattern`` (a regular expression with one group) matches on a whole line."""
    found = [float(m.group(1)) for m in map(re.compile(pattern).fullmatch, lines) if m]
    assert len(found) == 1, (pattern, lines)
    return found[0]


# -- the smoke test -------------------------------------------------------------------------------------------


def test_quick_run_learns_and_writes_its_outputs(learn, tmp_path, capsys):
    assert learn.main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = re.fullmatch(r"final heldout_chamfer=([0-9.]+)", lines[-1])
    assert final, lines[-1]
    initial = number(r"initial heldout_chamfer=([0-9.]+)", lines)
    baseline_chamfer = number(r"baseline heldout_chamfer=([0-9.]+) heldout_iou=[0-9.]+", lines)
    baseline_iou = number(r"baseline heldout_chamfer=[0-9.]+ heldout_iou=([0-9.]+)", lines)
    model_iou = number(r"model heldout_iou=([0-9.]+)", lines)

    summary = json.loads((tmp_path / "learn_points.json").read_text())
    quick = learn.QUICK
    model_losses = np.array(summary["losses"])
    assert model_losses.shape == (quick["steps"],) and np.all(np.isfinite(model_losses))
    # The loss falls: the last steps' mean is well below the first steps'.
    assert model_losses[-10:].mean() < 0.5 * model_losses[:10].mean(), model_losses
    free_losses = np.array(summary["free_cloud_losses"])  # at the end of each compiled chunk
    assert free_losses.shape == (-(-quick["steps"] // learn.CHUNK),) and np.all(np.isfinite(free_losses))
    assert free_losses[-1] < 0.8 * model_losses[:10].mean()  # it learns too: the baseline is not a straw man
    held = summary["heldout"]
    assert (held["shapes"], held["views"]) == (quick["eval_shapes"], quick["eval_views"])
    assert held["model"]["chamfer"] == pytest.approx(float(final.group(1)), abs=1e-5)
    assert held["untrained"]["chamfer"] == pytest.approx(initial, abs=1e-5)
    assert held["baseline"]["chamfer"] == pytest.approx(baseline_chamfer, abs=1e-5)
    assert held["baseline"]["iou"] == pytest.approx(baseline_iou, abs=1e-4)
    assert held["model"]["iou"] == pytest.approx(model_iou, abs=1e-4)
    # Even this short training reads the pictures: its clouds are much nearer the true surfaces than the best
    # fixed cloud's and the untrained network's, and their silhouettes match better.
    assert held["model"]["chamfer"] < 0.6 * held["baseline"]["chamfer"], held
    assert held["model"]["chamfer"] < 0.3 * held["untrained"]["chamfer"], held
    assert held["model"]["iou"] > held["baseline"]["iou"] and held["model"]["iou"] > held["untrained"]["iou"], held
    # The oracle (points drawn on the true surface) is near a perfect chamfer score; its IoU is high.
    assert held["oracle"]["chamfer"] < held["model"]["chamfer"] and held["oracle"]["iou"] > 0.6, held
    # Each metric's baseline is the candidate that scored better on the training sample.
    candidates = summary["baseline"]["candidates"]
    assert len(candidates) == 2
    chamfer_from, iou_from = summary["baseline"]["chamfer_from"], summary["baseline"]["iou_from"]
    assert chamfer_from == min(candidates, key=lambda name: candidates[name]["train"]["chamfer"])
    assert iou_from == max(candidates, key=lambda name: candidates[name]["train"]["iou"])
    assert candidates[chamfer_from]["heldout"]["chamfer"] == pytest.approx(held["baseline"]["chamfer"])
    assert candidates[iou_from]["heldout"]["iou"] == pytest.approx(held["baseline"]["iou"])
    assert summary["radius"]["ndc"] in learn.RADII
    for part in ("train_loop_mean", "train_step"):  # --quick leaves out the timing of a step's parts
        assert summary["step_ms"][part] > 0, summary["step_ms"]

    size, shown = quick["eval_size"], learn.sv.SHOWN
    grid = iio.imread(tmp_path / "learn_points.png")
    assert grid.shape == (shown * size, 9 * size, 3)
    # The predicted clouds (columns 1-4) are drawn in every row: bright, blue-dominated pixels.
    clouds = grid.reshape(shown, size, 9, size, 3)[:, :, 1:5].astype(int)
    bright = clouds.max(axis=-1) > 100
    assert np.all(bright.mean(axis=(1, 2, 3)) > 0.02), "an empty cloud picture"
    assert np.all(clouds[..., 2][bright] >= clouds[..., 0][bright])
    gif = iio.imread(tmp_path / "learn_points.gif", index=None)
    assert gif.shape[0] >= 2 and gif.shape[1:] == (2 * size, learn.sv.SHOWN_GIF * size, 3)


def test_quick_flag_yields_to_explicit_options(learn):
    args = learn.build_parser().parse_args(["--quick", "--steps", "7", "--points", "100", "--w-silhouette", "0"])
    settings = learn.resolve(args)
    assert settings["steps"] == 7 and settings["points"] == 100 and settings["w_silhouette"] == 0
    assert settings["batch"] == learn.QUICK["batch"]
    defaults = learn.resolve(learn.build_parser().parse_args([]))
    assert {k: defaults[k] for k in learn.DEFAULTS} == learn.DEFAULTS
    assert 512 <= defaults["points"] <= 1024 and defaults["eval_shapes"] >= 32 and defaults["eval_views"] >= 4


def test_cli_lists_the_example(capsys):
    assert cli.main(["examples"]) == 0
    assert re.search(r"^  learn_points\.py +\S", capsys.readouterr().out, re.MULTILINE)


# -- the pieces -----------------------------------------------------------------------------------------------


def test_the_template_is_an_even_sphere_of_points(learn):
    points = learn.sphere_points(300, 0.5)
    assert points.shape == (300, 3) and points.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 0.5, rtol=1e-5)
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=5e-3)
    d = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(300)
    nearest = d.min(axis=1)
    # Even: every point's nearest neighbour is about as far as the spacing of 300 equal areas on the sphere.
    spacing = np.sqrt(4 * np.pi * 0.25 / 300)
    assert 0.7 * spacing < nearest.min() and nearest.max() < 1.3 * spacing, (nearest.min(), nearest.max(), spacing)


def test_one_call_renders_every_view_like_one_call_per_view(learn):
    renderer = jaxnmr.Renderer(image_size=16)
    points = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 3)) * 0.3, jnp.float32)
    eyes = jaxnmr.get_points_from_angles(2.2, jnp.array([[20.0, -10.0, 40.0], [0.0, 30.0, -30.0]]),
                                         jnp.array([[0.0, 90.0, 200.0], [45.0, 135.0, 300.0]]))
    alpha = jax.jit(lambda p, e: learn.render_cloud_views(renderer, p, e, 0.08))(points, eyes)
    assert alpha.shape == (2, 3, 16, 16)
    ones = jnp.ones((64, 1))
    alone = jax.jit(lambda p, eye: renderer.replace(eye=eye).render_points(p, ones, 0.08, learn.POINTS_PER_PIXEL).alpha)
    for i in range(2):
        for j in range(3):  # one cloud, one camera, no batch
            np.testing.assert_allclose(alpha[i, j], alone(points[i], eyes[i, j]), atol=1e-6)
        assert 0.02 < float(jnp.mean(alpha[i] > 0.5)) < 0.9  # the cloud is in view, not filling it


def test_fixed_cloud_iou_equals_the_general_iou(learn):
    # Three "true" clouds and their silhouettes from two cameras stand in for the meshes' (no mesh rendering).
    truth = np.stack([learn.sphere_points(200, r) * np.array([1.0, 0.6, 1.0], np.float32) for r in (0.3, 0.4, 0.5)])
    eyes = jaxnmr.get_points_from_angles(2.2, jnp.array([30.0, -30.0]), jnp.array([22.5, 202.5]))
    render = jax.jit(lambda p, e: learn.render_cloud_views(jaxnmr.Renderer(image_size=16), p, e, 0.1))
    silhouettes = render(jnp.asarray(truth), jnp.broadcast_to(eyes, (3, 2, 3)))
    evaluation = learn.sv.Evaluation(None, None, None, eyes, silhouettes)
    np.testing.assert_allclose(learn.cloud_iou(evaluation, truth, 0.1), 1.0)  # each true cloud matches itself
    clouds = np.stack([learn.sphere_points(64, 0.3), learn.sphere_points(64, 0.45)])
    shortcut = learn.fixed_cloud_iou(evaluation, clouds, 0.1)
    assert shortcut.shape == (2, 3, 2) and np.all((shortcut >= 0) & (shortcut <= 1))
    for k in range(2):
        general = learn.cloud_iou(evaluation, np.broadcast_to(clouds[k], (3, 64, 3)), 0.1)
        np.testing.assert_allclose(shortcut[k], general, atol=1e-6)
    # The small sphere suits the small shape best, the large one the large shape.
    assert shortcut[0, 0].mean() > shortcut[1, 0].mean() and shortcut[1, 2].mean() > shortcut[0, 2].mean()


def test_the_loss_is_least_on_the_true_surface_and_its_gradient_points_back(learn):
    # An ellipsoid's surface points (as the samples) and its silhouettes; the answers: another spread of points
    # on the same surface, and a shrunk copy of it.
    scale = np.array([0.45, 0.3, 0.35], np.float32)
    samples = jnp.asarray(learn.sphere_points(256, 1.0) * scale)[None]
    answer = jnp.asarray(learn.sphere_points(180, 1.0) * scale)[None]
    eyes = jaxnmr.get_points_from_angles(2.2, jnp.array([[20.0, -10.0]]), jnp.array([[40.0, 250.0]]))
    renderer = jaxnmr.Renderer(image_size=16)
    targets = jax.jit(lambda p, e: learn.render_cloud_views(renderer, p, e, 0.1))(samples, eyes)
    data = learn.Data(learn.sv.Batch(None, eyes, targets, None), samples)
    scene = learn.sv.Scene(None, None, None, renderer)
    per_cloud = jax.jit(lambda p, w: learn.cloud_loss(scene, p, data, 0.1, w), static_argnums=1)
    assert per_cloud(answer, 1.0).shape == (1,)
    chamfer = lambda p: float(per_cloud(p, 0.0)[0])  # noqa: E731
    silhouette = lambda p: float(per_cloud(p, 1.0)[0]) - chamfer(p)  # noqa: E731
    assert chamfer(answer) < 0.4 * chamfer(0.8 * answer)
    # (1 - soft IoU is not 0 even for the targets themselves: their soft edges overlap themselves only in part.)
    assert silhouette(answer) < silhouette(samples) + 0.01 < silhouette(0.9 * answer) < silhouette(0.8 * answer)
    grad = jax.jit(jax.grad(lambda p: per_cloud(p, 0.01)[0]))(0.8 * answer)
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.sum(grad * answer)) < 0  # grow it back
