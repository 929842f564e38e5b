"""Tests of the ``jaxnmr`` command (jaxnmr.cli): rendering to GIF/PNG, the demo, the helpers, and user errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import jaxnmr
from jaxnmr import cameras, cli
from jaxnmr.io.images import contact_sheet, to_uint8
from jaxnmr.meshes import cube

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 32  # every rendering test uses this size and 3 views, so the jitted batch call compiles once


def _write_cube_obj(path: Path) -> Path:
    box = cube()
    vertices, faces = box.vertices, box.faces
    lines = ["# cube"] + ["v %.6f %.6f %.6f" % tuple(v) for v in vertices]
    lines += ["f %d %d %d" % tuple(f + 1) for f in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_cube_off(path: Path) -> Path:
    box = cube()
    vertices, faces = box.vertices, box.faces
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += ["%.6f %.6f %.6f" % tuple(v) for v in vertices]
    lines += ["3 %d %d %d" % tuple(f) for f in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def _assert_turntable(frames: np.ndarray, views: int, size: int) -> None:
    assert frames.shape == (views, size, size, 3)
    assert frames.dtype == np.uint8
    for frame in frames:
        covered = frame.max(axis=-1) > 0
        assert 0.02 < covered.mean() < 0.98, "each frame shows the mesh on a black background"
    for i in range(views):
        for j in range(i + 1, views):
            assert np.abs(frames[i].astype(int) - frames[j].astype(int)).sum() > 0, f"views {i} and {j} are equal"


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxnmr: error:"), err
    assert "Traceback" not in err
    return lines[0]


# -- render ---------------------------------------------------------------------------------------------------


def test_render_teapot_gif(tmp_path, capsys):
    out = tmp_path / "t.gif"
    assert cli.main(["render", "-o", str(out), "--views", "3", "--size", str(SIZE)]) == 0
    frames = iio.imread(out, index=None)
    _assert_turntable(frames, 3, SIZE)
    meta = iio.immeta(out)
    assert meta.get("loop") == 0  # loops forever
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith(f"wrote {out} (3 views, {SIZE}x{SIZE}, 4032 faces) in ")
    assert printed.endswith(" s")


def test_render_obj_gif_and_png(tmp_path, capsys):
    mesh = _write_cube_obj(tmp_path / "cube.obj")
    gif = tmp_path / "cube.gif"
    assert cli.main(["render", str(mesh), "-o", str(gif), "--views", "3", "--size", str(SIZE)]) == 0
    _assert_turntable(iio.imread(gif, index=None), 3, SIZE)
    assert "12 faces" in capsys.readouterr().out

    png = tmp_path / "cube.png"
    assert cli.main(["render", str(mesh), "-o", str(png), "--size", str(SIZE), "--color", "1,0,0"]) == 0
    image = iio.imread(png)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert image[..., 0].max() > 100, "the cube is drawn in red"
    assert image[..., 1].max() == 0 and image[..., 2].max() == 0, "only red, on a black background"
    assert "(1 view, " in capsys.readouterr().out


def test_render_other_format_goes_through_load_mesh(tmp_path):
    mesh = _write_cube_off(tmp_path / "cube.off")
    png = tmp_path / "cube.png"
    assert cli.main(["render", str(mesh), "-o", str(png), "--size", str(SIZE)]) == 0
    assert (iio.imread(png).max(axis=-1) > 0).mean() > 0.02


def test_color_changes_the_image(tmp_path):
    white, blue = tmp_path / "white.png", tmp_path / "blue.png"
    assert cli.main(["render", "-o", str(white), "--size", str(SIZE)]) == 0
    assert cli.main(["render", "-o", str(blue), "--size", str(SIZE), "--color", "0,0,1"]) == 0
    w, b = iio.imread(white).astype(int), iio.imread(blue).astype(int)
    assert np.array_equal(b[..., 2], w[..., 2]), "blue channel of a white and a blue mesh agree"
    assert b[..., :2].max() == 0 and w[..., :2].max() > 0


def test_png_is_the_first_turntable_view(tmp_path):
    png, gif = tmp_path / "a.png", tmp_path / "a.gif"
    assert cli.main(["render", "-o", str(png), "--size", str(SIZE)]) == 0
    assert cli.main(["render", "-o", str(gif), "--size", str(SIZE), "--views", "3"]) == 0
    first = iio.imread(gif, index=0).astype(int)[..., :3]
    # the GIF's palette quantisation changes the shading a little
    assert np.abs(first - iio.imread(png).astype(int)).mean() < 4


def test_render_views_padding_matches_single_view_calls():
    box = cube()
    vertices, faces = box.vertices, box.faces
    textures = np.ones((faces.shape[0], 2, 2, 2, 3), np.float32)
    renderer = jaxnmr.Renderer(image_size=SIZE)
    eyes = cameras.turntable_eyes(3, 30.0, 2.732)
    counts = []
    batched = cli.render_views(renderer, vertices, faces, textures, eyes, 2, counts.append)  # 2 + 1 padded
    assert counts == [2, 1]
    single = cli.render_views(renderer, vertices, faces, textures, eyes, 1)
    assert batched.shape == (3, SIZE, SIZE, 3) and batched.dtype == np.uint8
    np.testing.assert_array_equal(batched, single)


def test_demo(tmp_path, capsys):
    out = tmp_path / "new" / "demo"
    assert cli.main(["demo", "--out", str(out), "--size", "16", "--views", "4"]) == 0
    _assert_turntable(iio.imread(out / "teapot.gif", index=None), 4, 16)
    sheet = iio.imread(out / "teapot_views.png")
    assert sheet.shape == (16, 64, 3)
    # azimuths 0/90/180/270 equal the 4-view turntable's frames (up to the GIF palette)
    gif = iio.imread(out / "teapot.gif", index=None).astype(int)
    assert np.abs(contact_sheet(gif) - sheet.astype(int)).mean() < 4
    assert "teapot_views.png" in capsys.readouterr().out


# -- helpers --------------------------------------------------------------------------------------------------


def test_turntable_eyes():
    eyes = cameras.turntable_eyes(4, 0.0, 2.0)
    assert eyes.shape == (4, 3) and eyes.dtype == np.float32
    np.testing.assert_allclose(eyes, [[0, 0, -2], [2, 0, 0], [0, 0, 2], [-2, 0, 0]], atol=1e-6)
    high = cameras.turntable_eyes(36, 30.0, 2.732)
    assert high.shape == (36, 3)
    np.testing.assert_allclose(np.linalg.norm(high, axis=-1), 2.732, rtol=1e-6)
    np.testing.assert_allclose(high[:, 1], 2.732 * 0.5, rtol=1e-6)  # sin(30 deg) above the y=0 plane
    np.testing.assert_allclose(high[9], [2.732 * np.cos(np.pi / 6), 1.366, 0.0], atol=1e-5)  # azimuth 90: +x
    np.testing.assert_allclose(cameras.turntable_azimuths(3), [0, 120, 240])


def test_contact_sheet():
    images = np.stack([np.full((2, 3, 3), i, np.uint8) for i in range(4)])
    images[1, 0, 2] = [7, 8, 9]
    sheet = contact_sheet(images)
    assert sheet.shape == (2, 12, 3) and sheet.dtype == np.uint8
    for i in range(4):
        np.testing.assert_array_equal(sheet[:, 3 * i:3 * i + 3], images[i])
    np.testing.assert_array_equal(contact_sheet(list(images)), sheet)
    with pytest.raises(ValueError, match="contact_sheet"):
        contact_sheet(images[0])


def test_to_uint8():
    rgb = np.array([-1.0, 0.0, 0.5, 0.2, 1.0, 2.0, np.nan, np.inf], np.float32)
    np.testing.assert_array_equal(to_uint8(rgb), [0, 0, 128, 51, 255, 255, 0, 255])
    assert to_uint8(np.zeros((2, 4, 4, 3))).shape == (2, 4, 4, 3)


def test_parse_color():
    assert cli.parse_color("1, 0.5,0") == (1.0, 0.5, 0.0)
    for bad in ["1,0", "1,0,0,0", "red", "1,2,0", "-0.1,0,0", "nan,0,0"]:
        with pytest.raises(ValueError):
            cli.parse_color(bad)


# -- errors and the command line ------------------------------------------------------------------------------


def test_missing_mesh_file(tmp_path, capsys):
    out = tmp_path / "x.gif"
    assert cli.main(["render", str(tmp_path / "nope.obj"), "-o", str(out)]) == 2
    assert "nope.obj" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["render", str(tmp_path / "nope.ply"), "-o", str(out)]) == 2
    assert "nope.ply" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_unsupported_mesh_format(tmp_path, capsys):
    mesh = tmp_path / "mesh.xyzzy"
    mesh.write_text("not a mesh\n")
    assert cli.main(["render", str(mesh), "-o", str(tmp_path / "x.gif")]) == 2
    assert "unsupported" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["x.mp4", "x", "x.jpg"])
def test_unsupported_output_suffix(tmp_path, capsys, name):
    out = tmp_path / name
    assert cli.main(["render", "-o", str(out), "--size", "8"]) == 2
    assert "unsupported output format" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--views", "0"],
        ["--views", "two"],
        ["--size", "0"],
        ["--size", "4097"],
        ["--color", "1,0"],
        ["--color", "2,0,0"],
        ["--fps", "0"],
        ["--batch", "0"],
        ["--distance", "-1"],
        ["--elevation", "90"],
        ["--bogus"],
    ],
)
def test_bad_options(tmp_path, capsys, option):
    out = tmp_path / "x.gif"
    assert cli.main(["render", "-o", str(out), *option]) == 2
    assert _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_missing_command_and_output(capsys):
    assert cli.main([]) == 2
    _one_error_line(capsys.readouterr().err)
    assert cli.main(["render"]) == 2
    assert "--output" in _one_error_line(capsys.readouterr().err)


def test_help_describes_every_option(capsys):
    assert cli.main(["render", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ["MESH", "--output", "--views", "--size", "--elevation", "--distance", "--fps", "--batch",
                   "--color"]:
        assert option in text
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "render" in text and "demo" in text


def test_python_m_version():
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "jaxnmr", "--version"], capture_output=True, text=True,
                            env=env, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"jaxnmr {jaxnmr.__version__}"
