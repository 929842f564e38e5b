"""Smoke tests of NMR's four examples (examples/multiview.py, fit_vertices.py, fit_textures.py, fit_camera.py),
their shared helpers (examples/_common.py) and the ``jaxnmr examples`` command.

Each example runs in-process through its ``main(argv)`` at a small size with few iterations, and must print a
``final <metric>=<value>`` line that improves on its ``initial`` one, and write its GIFs and PNGs. The drawn
targets are cross-checked against the original's reference images where ../shared/testdata is present.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from jaxnmr import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _examples  # noqa: E402

EXAMPLES = REPO_ROOT / "examples"


def _load(name: str):
    return _examples.load_example(name, "nmr_example")


@pytest.fixture(scope="module")
def common():
    return _load("_common")


def _metrics(out: str, metric: str) -> tuple[float | None, float]:
    """(initial, final) values of ``metric`` printed by an example; ``final`` must be the last line."""
    lines = out.strip().splitlines()
    final = re.fullmatch(rf"final {metric}=([-+0-9.eE]+)", lines[-1])
    assert final, f"last line is not 'final {metric}=...': {lines[-1]!r}"
    initial = [m for m in (re.fullmatch(rf"initial {metric}=([-+0-9.eE]+)", line) for line in lines) if m]
    return (float(initial[0].group(1)) if initial else None), float(final.group(1))


def _run(name: str, argv: list[str], capsys) -> str:
    assert _load(name).main(argv) == 0
    return capsys.readouterr().out


def _gif(path: Path) -> np.ndarray:
    assert path.is_file(), path
    frames = iio.imread(path, index=None)
    assert frames.ndim == 4 and frames.shape[0] >= 2
    return frames


# -- the examples -------------------------------------------------------------------------------------------------


def test_multiview_one_vmapped_call(tmp_path, capsys):
    out = _run("multiview", ["--out", str(tmp_path), "--views", "6", "--size", "32", "--no-progress"], capsys)
    assert "ONE vmapped renderer call (1 rasterizer kernel call" in out
    assert out.strip().splitlines()[-1] == "final views=6"
    frames = _gif(tmp_path / "multiview.gif")
    assert frames.shape[1:3] == (32, 32)
    sheet = iio.imread(tmp_path / "multiview_views.png")
    assert sheet.shape[:2] == (32, 4 * 32)


def test_fit_vertices_improves_iou(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--size", "64", "--iterations", "40", "--lr", "0.01", "--no-progress"]
    initial, final = _metrics(_run("fit_vertices", argv, capsys), "iou")
    assert initial < 0.5 and final > initial + 0.2, (initial, final)
    _gif(tmp_path / "fit_vertices.gif")
    assert _gif(tmp_path / "fit_vertices_result.gif").shape[0] == 90
    for name in ("fit_vertices_target.png", "fit_vertices_final.png", "fit_vertices.obj"):
        assert (tmp_path / name).is_file()


def test_fit_textures_lowers_error(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--size", "48", "--iterations", "20", "--no-progress"]
    initial, final = _metrics(_run("fit_textures", argv, capsys), "mse")
    assert final < 0.5 * initial, (initial, final)
    _gif(tmp_path / "fit_textures.gif")
    assert (tmp_path / "fit_textures_reference.png").is_file() and (tmp_path / "fit_textures_views.png").is_file()


def test_fit_camera_approaches_reference_with_progress_bar(tmp_path, capsys):
    assert _load("fit_camera").main(["--out", str(tmp_path), "--size", "48", "--iterations", "60"]) == 0
    captured = capsys.readouterr()
    initial, final = _metrics(captured.out, "distance")
    assert final < 0.6 * initial, (initial, final)
    assert "fit_camera" in captured.err and "loss=" in captured.err  # the tqdm bar shows the loss
    assert _gif(tmp_path / "fit_camera.gif").shape[0] == 60 // 5 + 1  # a frame before and after each chunk
    for name in ("fit_camera_reference.png", "fit_camera_init.png", "fit_camera_final.png"):
        assert (tmp_path / name).is_file()


@pytest.mark.parametrize("name", ["fit_vertices", "fit_textures", "fit_camera"])
@pytest.mark.parametrize("bad", [["--iterations", "0"], ["--size", "huge"], ["--bogus"]])
def test_bad_arguments_are_argparse_errors(name, bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _load(name).main(["--out", str(tmp_path / "o")] + bad)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_multiview_missing_mesh_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _load("multiview").main(["--out", str(tmp_path), "--mesh", str(tmp_path / "nope.obj")])
    assert exit_.value.code == 2
    assert "no such file" in capsys.readouterr().err


# -- _common ------------------------------------------------------------------------------------------------------


def test_optimize_chunks_partial_last_chunk_and_early_stop(common):
    import jax.numpy as jnp

    def step(x, i):  # loss = x; each update subtracts 1
        return x - 1.0, x

    calls = []
    result = common.optimize(step, jnp.float32(10.0), 7, chunk=3, progress=False,
                             on_chunk=lambda x, done: calls.append((float(x), done)))
    assert result.steps == result.updates == 7 and not result.stopped
    np.testing.assert_array_equal(result.losses, np.arange(10.0, 3.0, -1.0))
    assert float(result.state) == 3.0
    assert calls == [(10.0, 0), (7.0, 3), (4.0, 6), (3.0, 7)]

    # Stops at the first loss below 6.5 (step 5, loss 6) WITHOUT applying that step's update, mid-chunk.
    result = common.optimize(step, jnp.float32(10.0), 100, chunk=3, stop_below=6.5, progress=False)
    assert result.stopped and result.steps == 5 and result.updates == 4
    np.testing.assert_array_equal(result.losses, [10.0, 9.0, 8.0, 7.0, 6.0])
    assert float(result.state) == 6.0


def test_optimize_step_number_and_pytree_state(common):
    import jax.numpy as jnp

    def step(state, i):
        total, count = state
        return (total + i, count + 1), jnp.float32(i)

    result = common.optimize(step, (jnp.int32(0), jnp.int32(0)), 5, chunk=2, progress=False)
    assert [int(x) for x in result.state] == [0 + 1 + 2 + 3 + 4, 5]
    np.testing.assert_array_equal(result.losses, [0, 1, 2, 3, 4])


def test_square_mask_and_iou(common):
    mask = common.square_mask(256)
    rows = np.where(mask.any(1))[0]
    assert (rows[0], rows[-1]) == (64, 191) and mask.sum() == 128 * 128
    assert common.silhouette_iou(mask, mask) == 1.0
    shifted = np.roll(mask, 64, axis=1)
    assert common.silhouette_iou(mask, shifted) == pytest.approx(1 / 3)


# -- cross-checks with the original's example targets (skipped without ../shared/testdata) --------------------------


def _reference(nmr_data: Path, name: str) -> np.ndarray:
    path = nmr_data / "examples" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return iio.imread(path)[..., :3]


def test_square_target_equals_example2_ref(common, nmr_data):
    reference = _reference(nmr_data, "example2_ref.png").mean(-1) / 255.0
    np.testing.assert_array_equal(common.square_mask(256), reference)


def test_stripes_equal_example3_ref(nmr_data):
    reference = _reference(nmr_data, "example3_ref.png")
    drawn = _load("fit_textures").striped_reference(256)
    np.testing.assert_array_equal(np.floor(drawn * 255 + 0.5).astype(np.uint8), reference)


def test_camera_target_matches_example4_ref(common, nmr_data):
    """The fit_camera reference (this teapot, rendered) covers nearly the same pixels as NMR's example4_ref.png."""
    import jax.numpy as jnp

    import jaxnmr
    from jaxnmr.meshes import teapot

    theirs = _reference(nmr_data, "example4_ref.png").max(-1) != 0
    assert theirs.sum() == 8634
    pot = teapot()
    vertices, faces = pot.vertices, pot.faces
    textures = jnp.tanh(jnp.ones((faces.shape[0], 2, 2, 2, 3)))
    eye = jaxnmr.get_points_from_angles(2.732, 30.0, -15.0)
    ours = common.to_uint8(jaxnmr.Renderer(image_size=256, eye=eye).render(vertices, faces, textures)).max(-1) != 0
    assert common.silhouette_iou(ours, theirs) > 0.97


# -- jaxnmr examples -----------------------------------------------------------------------------------------------


def test_cli_examples_lists_all_six(capsys):
    assert cli.main(["examples"]) == 0
    out = capsys.readouterr().out
    for name in ("multiview", "fit_vertices", "fit_textures", "fit_camera", "pose_6dof", "fit_mesh_multiview"):
        assert re.search(rf"^  {name}\.py +\S", out, re.MULTILINE), f"{name} not listed:\n{out}"
    assert "examples" in out.strip().splitlines()[-1]


def test_cli_examples_without_a_checkout(monkeypatch, capsys):
    monkeypatch.setattr(cli, "examples_dir", lambda: None)
    assert cli.main(["examples"]) == 0
    out = capsys.readouterr().out
    assert "fit_camera.py" in out and "examples/ folder of the jaxnmr repository" in out
