"""Smoke tests of the inverse-problem examples examples/pose_6dof.py and examples/fit_mesh_multiview.py.

Each runs in-process through its ``main(argv)`` with few iterations at a small size and must print an
``initial <metric>=`` line and, last, a ``final <metric>=`` line that improves on it, and write its outputs.
Their small helpers (rotations, the default target, the views) are checked against numpy.
"""

from __future__ import annotations

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

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    return _examples.load_example(name, "fit_example")


@pytest.fixture(scope="module")
def pose():
    return load_example("pose_6dof")


@pytest.fixture(scope="module")
def fit():
    return load_example("fit_mesh_multiview")


def metric(stdout: str, name: str) -> tuple[float, float]:
    """(initial, final) of ``name``; the final line must be the last one printed."""
    lines = stdout.strip().splitlines()
    final = re.fullmatch(rf"final {name}=([-+0-9.eE]+)", lines[-1])
    assert final, f"last line is not 'final {name}=...': {lines[-1]!r}"
    initial = [m for m in (re.fullmatch(rf"initial {name}=([-+0-9.eE]+)", line) for line in lines) if m]
    assert len(initial) == 1, stdout
    return float(initial[0].group(1)), float(final.group(1))


def frames(path: Path) -> np.ndarray:
    assert path.is_file(), path
    images = iio.imread(path, index=None)
    assert images.ndim == 4 and images.shape[0] >= 2 and images.max() > images.min()
    return images


# -- pose_6dof ------------------------------------------------------------------------------------------------


def test_pose_6dof_reduces_the_rotation_error(pose, tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--iterations", "40", "--size", "32", "--poses", "3", "--no-progress"]
    assert pose.main(argv) == 0
    initial, final = metric(capsys.readouterr().out, "median_rotation_error_deg")
    assert 15.0 <= initial <= 30.0
    assert final < 0.5 * initial, (initial, final)
    gif = frames(tmp_path / "pose_6dof.gif")
    assert gif.shape[1:] == (2 * 64, 3 * 64, 3)  # targets over estimates, three poses at twice the size
    png = iio.imread(tmp_path / "pose_6dof.png")
    assert png.shape == (3 * 64, 3 * 64, 3)  # rows: poses; columns: target | initial | final
    # The final estimate looks more like the target than the initialisation does.
    target, initial_img, final_img = (png[:64, 64 * c:64 * (c + 1)].astype(float) for c in range(3))
    assert np.abs(final_img - target).mean() < np.abs(initial_img - target).mean()


def test_rotation_helpers_agree(pose):
    rng = np.random.default_rng(3)
    axes = pose.random_unit_vectors(rng, 5)
    degrees = np.array([0.0, 1e-3, 17.0, 90.0, 179.0])
    matrices = pose.axis_angle_matrices(axes, degrees)
    np.testing.assert_allclose(matrices @ np.swapaxes(matrices, 1, 2), np.broadcast_to(np.eye(3), (5, 3, 3)),
                               atol=1e-12)
    via_jax = jax.vmap(pose.rodrigues)(jnp.asarray(axes * np.radians(degrees)[:, None], jnp.float32))
    np.testing.assert_allclose(via_jax, matrices, atol=2e-6)
    np.testing.assert_allclose(pose.rotation_error_deg(matrices, np.eye(3)), degrees, atol=1e-4)
    r = pose.random_rotations(rng, 4)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    # Rodrigues' formula has a finite, correct derivative at w = 0: d(R)/dw_z = [e_z]x.
    jac = jax.jacfwd(pose.rodrigues)(jnp.zeros(3))
    np.testing.assert_allclose(jac[..., 2], [[0, -1, 0], [1, 0, 0], [0, 0, 0]], atol=1e-6)


def test_pose_problem_is_within_the_requested_angle(pose):
    r_true, t_true, r_init, t_init = pose.make_problem(np.random.default_rng(0), 32, 30.0, 0.15)
    err = pose.rotation_error_deg(r_init, r_true)
    assert err.min() >= 15.0 - 1e-6 and err.max() <= 30.0 + 1e-6
    np.testing.assert_allclose(np.linalg.norm(t_init - t_true, axis=1), 0.15, rtol=1e-9)
    assert np.abs(t_true).max() <= pose.TRANSLATION_RANGE


# -- fit_mesh_multiview ---------------------------------------------------------------------------------------


def test_fit_mesh_multiview_raises_the_iou(fit, tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--iterations", "60", "--size", "32", "--eval-size", "32", "--views", "4",
            "--level", "2", "--no-progress"]
    assert fit.main(argv) == 0
    initial, final = metric(capsys.readouterr().out, "min_view_iou")
    assert initial < 0.5 and final > initial + 0.2, (initial, final)
    turntable = frames(tmp_path / "fit_mesh_multiview.gif")
    assert turntable.shape[1:] == (32, 64, 3)  # target | fitted
    frames(tmp_path / "fit_mesh_multiview_progress.gif")
    sheet = iio.imread(tmp_path / "fit_mesh_multiview.png")
    assert sheet.shape == (3 * 32, 4 * 32, 3)  # targets, fitted, overlay; one column per view
    from jaxnmr import load_obj

    vertices, faces = load_obj(str(tmp_path / "fit_mesh_multiview.obj"), normalization=False)
    assert vertices.shape == (162, 3) and faces.shape == (320, 3)
    radii = np.linalg.norm(vertices, axis=1)
    assert radii.max() > 0.6  # moved out from the radius-0.5 sphere towards the lobes


def test_fit_target_errors(fit, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit.main(["--out", str(tmp_path), "--target", str(tmp_path / "missing.obj")])
    assert exit_info.value.code == 2
    assert "--target: expected 'lobes', 'teapot' or a mesh file; no such file" in capsys.readouterr().err


def test_lobes_target_is_closed_and_star_shaped(fit):
    vertices, faces = fit.lobes()
    assert vertices.dtype == np.float32 and faces.shape == (5120, 3)
    np.testing.assert_allclose(np.abs(vertices).max(), 0.95, rtol=1e-6)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)  # closed
    assert len(vertices) - len(counts) + len(faces) == 2  # Euler characteristic 2: genus 0
    tri = vertices[faces].astype(np.float64)
    volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert volume > 0  # still wound outwards after the radial push


def test_views_alternate_elevation(fit):
    eyes = fit.view_eyes(12)
    assert eyes.shape == (12, 3)
    np.testing.assert_allclose(np.linalg.norm(eyes, axis=1), fit.DISTANCE, rtol=1e-5)
    elevation = np.degrees(np.arcsin(eyes[:, 1] / fit.DISTANCE))
    np.testing.assert_allclose(elevation, np.tile([30.0, -30.0], 6), atol=1e-3)
