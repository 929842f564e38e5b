"""Smoke test of examples/fit_points_multiview.py (a point cloud fitted to a mesh's silhouettes from many views)
and checks of its pieces: the held-out cameras are not training cameras, the radius schedule's ends, the numpy IoU
against jaxnmr.losses.silhouette_iou, the padded batches against one call, and the ``--quick`` presets.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _examples  # noqa: E402

from jaxnmr import cli, losses  # noqa: E402

NAME = "fit_points_multiview"


@pytest.fixture(scope="module")
def fit():
    return _examples.load_example(NAME, "fit_points_example")


def printed(lines: list[str], when: str) -> float:
    """The value of the one ``<when> heldout_iou=<x>`` line."""
    values = [float(m.group(1)) for m in map(re.compile(rf"{when} heldout_iou=([0-9.]+)").fullmatch, lines) if m]
    assert len(values) == 1, lines
    return values[0]


# -- the smoke test -------------------------------------------------------------------------------------------


def test_quick_run_fits_the_silhouettes_and_writes_its_outputs(fit, tmp_path, capsys):
    assert fit.main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"final heldout_iou=[0-9.]+", lines[-1]), lines[-1]
    initial, final = printed(lines, "initial"), printed(lines, "final")
    # From a random blob (many points outside the silhouettes) to most of the teapot, on views never trained on.
    assert initial < 0.4 and final > 0.8 and final > initial + 0.4, (initial, final)

    quick = fit.QUICK
    summary = json.loads((tmp_path / f"{NAME}.json").read_text())
    iou = summary["iou"]
    assert iou["initial"]["heldout"]["mean"] == pytest.approx(initial, abs=1e-4)
    assert iou["final"]["heldout"]["mean"] == pytest.approx(final, abs=1e-4)
    assert len(iou["final"]["training"]["per_view"]) == quick["views"]
    assert len(iou["final"]["heldout"]["per_view"]) == quick["heldout"]
    assert iou["final"]["training"]["min"] > 0.85 and iou["final"]["heldout"]["min"] > 0.75, iou
    assert summary["steps"] == quick["iterations"] and summary["settings"]["points"] == quick["points"]
    loss = np.array(summary["losses"])
    assert loss.shape == (quick["iterations"],) and np.all(np.isfinite(loss))
    assert loss[-5:].mean() < 0.1 * loss[:5].mean(), loss

    size = quick["eval_size"]
    gif = iio.imread(tmp_path / f"{NAME}.gif", index=None)
    chunks = -(-quick["iterations"] // fit.CHUNK)
    assert gif.shape == (chunks + 1 + fit.TURNTABLE_FRAMES, size, 2 * size, 3)  # target | cloud
    target, cloud = gif[:, :, :size].max(axis=-1) > 128, gif[:, :, size:].max(axis=-1) > 40
    assert cloud[0].sum() > 1.5 * target[0].sum()  # the blob covers much more than the teapot
    last = (target[-1] & cloud[-1]).sum() / (target[-1] | cloud[-1]).sum()
    assert last > 0.7, last  # the fitted cloud matches the teapot from the GIF's camera too
    sheet = iio.imread(tmp_path / f"{NAME}.png")
    shown = min(fit.PICTURE_VIEWS, quick["heldout"])
    assert sheet.shape == (3 * size, shown * size, 3)  # target, cloud, overlay rows
    overlay = sheet[2 * size:].reshape(size, shown, size, 3).astype(int)
    both = np.all(overlay > 200, axis=-1).sum()
    one = (np.abs(overlay[..., 0] - overlay[..., 2]) > 200).sum()  # red or blue: only one silhouette
    assert both > 4 * one, (both, one)

    text = (tmp_path / f"{NAME}.ply").read_text().splitlines()
    assert text[0] == "ply" and f"element vertex {quick['points']}" in text and "property float radius" in text
    rows = np.array([line.split() for line in text[text.index("end_header") + 1:]], float)
    assert rows.shape == (quick["points"], 7)
    assert rows[:, 3:6].min() >= 0 and rows[:, 3:6].max() <= 255
    radii = rows[:, 6]
    assert radii.max() <= quick["radius"] * (1 + 1e-5) and radii.min() > 0  # a disc only shrinks
    # The strays shrank: a good part of the blob, but not the points that make the teapot.
    assert 0.2 < np.mean(radii < 0.5 * quick["radius"]) < 0.9
    assert summary["shrunk_fraction"] == pytest.approx(np.mean(radii < 0.5 * quick["radius"]), abs=0.01)


def test_quick_flag_yields_to_explicit_options(fit):
    args = fit.build_parser(fit.quick_requested(["--quick", "--points", "7"])).parse_args(["--quick", "--points",
                                                                                            "7"])
    assert args.points == 7 and args.views == fit.QUICK["views"] and args.iterations == fit.QUICK["iterations"]
    args = fit.build_parser(fit.quick_requested([])).parse_args([])
    assert {k: getattr(args, k) for k in fit.DEFAULTS} == fit.DEFAULTS
    assert fit.quick_requested(["--out", "x", "--quick"]) and not fit.quick_requested(["--out", "x"])


def test_cli_lists_the_example(capsys):
    assert cli.main(["examples"]) == 0
    assert re.search(rf"^  {NAME}\.py +\S", capsys.readouterr().out, re.MULTILINE)


# -- the pieces -----------------------------------------------------------------------------------------------


def test_heldout_views_are_not_training_views(fit):
    azimuth, elevation = fit.training_angles(16)
    np.testing.assert_allclose(elevation, np.tile([30.0, -30.0], 8))
    np.testing.assert_allclose(azimuth, np.arange(16) * 22.5)
    held_azimuth, held_elevation = fit.heldout_angles(8, 16)
    np.testing.assert_allclose(held_elevation, np.tile(fit.HELDOUT_ELEVATIONS, 2))
    assert not set(held_elevation) & set(elevation)
    # Every held-out azimuth lies halfway between two training azimuths, all of them different.
    np.testing.assert_allclose(held_azimuth % 22.5, 11.25)
    assert len(np.unique(held_azimuth)) == 8 and held_azimuth.max() < 360
    # The eyes are the cameras at those angles (azimuth 0 on -z, 90 on +x), DISTANCE from the origin.
    eyes = fit.view_eyes(held_azimuth, held_elevation)
    assert eyes.shape == (8, 3) and eyes.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(eyes, axis=1), fit.DISTANCE, rtol=1e-5)
    np.testing.assert_allclose(np.degrees(np.arcsin(eyes[:, 1] / fit.DISTANCE)), held_elevation, atol=1e-3)
    np.testing.assert_allclose(np.degrees(np.arctan2(eyes[:, 0], -eyes[:, 2])) % 360, held_azimuth, atol=1e-3)


def test_radius_schedule(fit):
    import jax.numpy as jnp

    r = [float(fit.radius_schedule(i, 100, 0.2, 0.05)) for i in (0, 40, 80, 99)]
    np.testing.assert_allclose(r, [0.2, 0.1, 0.05, 0.05], rtol=1e-5)
    np.testing.assert_allclose(fit.radius_schedule(jnp.int32(40), 100, 0.2, 0.05, jnp), 0.1, rtol=1e-5)


def test_numpy_iou_equals_the_library_iou(fit):
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 16, 16)), rng.random((5, 16, 16))
    a[4], b[4] = 0.0, 0.0  # both empty: 1
    np.testing.assert_allclose(fit.per_view_iou(a, b), np.asarray(losses.silhouette_iou(a, b)), atol=1e-6)
    assert fit.per_view_iou(a, b)[4] == 1.0


def test_padded_batches_equal_one_call(fit):
    calls = []

    def draw(eyes, clouds, radii):  # stands for the jitted renderer: records its batch sizes
        calls.append(len(eyes))
        images = eyes[:, 0, None, None, None] + clouds[:, 0, 0, None, None, None] + radii[:, None, None, None]
        return np.broadcast_to(images, (len(eyes), 2, 2, 3)) / 10.0, None

    eyes, clouds, radii = np.arange(7.0)[:, None] * np.ones(3), np.ones((7, 4, 3)), np.linspace(0, 1, 7)
    out = fit.batched(draw, 3, eyes, clouds, radii)
    assert calls == [3, 3, 3] and out.shape == (7, 2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, fit.to_uint8(draw(eyes, clouds, radii)[0]))
