"""Tests for jaxnmr.io: OBJ/MTL loading as NMR does it (docs/departures.md, "Mesh files"), save_obj, load_mesh."""

import pathlib
import warnings

import numpy as np
import pytest

import jaxnmr
from jaxnmr import io as jio

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "nmr"


@pytest.fixture(scope="module")
def data_dir():
    if not DATA.is_dir():
        pytest.skip(f"NMR reference data not found at {DATA} (expected ../shared/testdata/nmr beside the repo)")
    return DATA


def write(path, text):
    path.write_text(text)
    return path


def write_png(path, pixels):
    """Write ``pixels`` ([H, W, C] uint8, row 0 = top of the picture) as a PNG."""
    import imageio.v3 as iio

    iio.imwrite(path, np.asarray(pixels, dtype=np.uint8), extension=".png")
    return path


# ---------------------------------------------------------------------------------------------------------------
# The original test data
# ---------------------------------------------------------------------------------------------------------------

TETRA_VERTICES = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32)
TETRA_FACES = np.array([[1, 3, 2], [3, 1, 0], [2, 0, 1], [0, 2, 3]], dtype=np.int32)


def test_tetrahedron_without_normalization(data_dir):
    vertices, faces = jio.load_obj(data_dir / "tetrahedron.obj", normalization=False)
    assert vertices.dtype == np.float32 and faces.dtype == np.int32
    np.testing.assert_array_equal(vertices, TETRA_VERTICES)
    np.testing.assert_array_equal(faces, TETRA_FACES)


def test_tetrahedron_with_normalization(data_dir):
    vertices, faces = jio.load_obj(str(data_dir / "tetrahedron.obj"))
    np.testing.assert_array_equal(vertices, TETRA_VERTICES * 2 - 1)
    np.testing.assert_array_equal(faces, TETRA_FACES)


def test_teapot_counts_and_normalized_bounds(data_dir):
    vertices, faces = jio.load_obj(data_dir / "teapot.obj")
    assert vertices.shape == (1292, 3) and faces.shape == (2464, 3)
    assert faces.min() == 0 and faces.max() == 1291
    np.testing.assert_allclose(vertices.min(axis=0), [-1, -0.48991966, -0.6221197], rtol=0, atol=1e-7)
    np.testing.assert_allclose(vertices.max(axis=0), [1, 0.48991966, 0.6221197], rtol=0, atol=1e-7)


def test_display_model_textures(data_dir):
    vertices, faces, textures = jio.load_obj(data_dir / "display" / "model.obj", load_texture=True, texture_size=16)
    assert vertices.shape == (921, 3) and faces.shape == (3644, 3)
    assert textures.shape == (3644, 16, 16, 16, 3) and textures.dtype == np.float32
    assert np.isfinite(textures).all()
    assert textures.min() >= 0 and textures.max() <= 1
    assert not np.all(textures == 0.5)
    # The Kd-only material_4_24 (Kd 0 0 0.8) is the only blue one: exactly 12 faces * 16^3 texels of it.
    blue = np.all(textures == np.float32([0, 0, 0.8]), axis=-1)
    assert blue.sum() == 12 * 16**3
    # Faces of the two JPEG-mapped materials get many different colours (a Kd fill would give one).
    # The 12 faces of the two JPEG-mapped materials (4 + 8) get varied colours; all others are one Kd colour.
    spread = (textures.reshape(3644, -1, 3).astype(np.float64)).std(axis=1).max(axis=-1)  # [F]
    assert np.count_nonzero(spread > 0.1) == 12
    assert np.count_nonzero(spread > 1e-9) == 12


def test_display_model_geometry_matches_with_and_without_textures(data_dir):
    path = data_dir / "display" / "model.obj"
    v1, f1 = jio.load_obj(path)
    v2, f2, _ = jio.load_obj(path, load_texture=True, texture_size=2)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(f1, f2)


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------


def test_fan_triangulation_of_quad_and_pentagon(tmp_path):
    obj = write(
        tmp_path / "poly.obj",
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv -1 0.5 0\n"
        "f 1 2 3 4\n"
        "f 1/1 2/2/2 3//3 4 5\n",
    )
    _, faces = jio.load_obj(obj, normalization=False)
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4]])


def test_negative_indices_are_relative(tmp_path):
    obj = write(
        tmp_path / "neg.obj",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\n"
        "f -3 -2 -1\n"
        "v 0 0 1\n"
        "f -1 -4/-1/-1 2\n",
    )
    _, faces = jio.load_obj(obj, normalization=False)
    np.testing.assert_array_equal(faces, [[0, 1, 2], [3, 0, 1]])


def test_comments_blank_lines_unknown_types_and_extra_values(tmp_path):
    obj = write(
        tmp_path / "misc.obj",
        "# comment\r\n\r\no thing\r\ng group\r\ns off\r\nvn 0 0 1\r\nvp 0.5\r\n"
        "v 1 2 3 0.5 0.5 0.5  # vertex colour and a comment\r\n"
        "v 4 5 6\r\nv 7 8 10\r\nl 1 2\r\nf 1 2 3 # tail\r\n",
    )
    vertices, faces = jio.load_obj(obj, normalization=False)
    np.testing.assert_array_equal(vertices, [[1, 2, 3], [4, 5, 6], [7, 8, 10]])
    np.testing.assert_array_equal(faces, [[0, 1, 2]])


def test_forward_references_are_allowed(tmp_path):
    obj = write(tmp_path / "fwd.obj", "f 1 2 3\nv 0 0 0\nv 1 0 0\nv 0 1 0\n")
    _, faces = jio.load_obj(obj, normalization=False)
    np.testing.assert_array_equal(faces, [[0, 1, 2]])


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("v 1 2", "needs 3 numbers"),
        ("v 1 two 3", "non-numeric"),
        ("f 1 2", "at least 3 vertices"),
        ("f 1 2 x", "not an integer"),
        ("f 1 2 9", "face index 9 out of range (file has 4 vertices)"),
        ("f 0 1 2", "index 0 is invalid"),
        ("f -5 1 2", "relative face index -5 out of range"),
    ],
)
def test_malformed_lines_raise_with_file_and_line(tmp_path, bad_line, message):
    obj = write(tmp_path / "bad.obj", "# header\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n\n" + bad_line + "\nf 1 2 3\n")
    with pytest.raises(ValueError) as info:
        jio.load_obj(obj)
    text = str(info.value)
    assert "bad.obj:7:" in text
    assert message in text
    assert repr(bad_line) in text


def test_malformed_vt_raises_only_when_loading_textures(tmp_path):
    obj = write(tmp_path / "badvt.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt a b\nf 1 2 3\n")
    jio.load_obj(obj)  # vt lines are not needed for geometry
    with pytest.raises(ValueError, match=r"badvt\.obj:4:"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jio.load_obj(obj, load_texture=True)


def test_vt_index_out_of_range(tmp_path):
    obj = write(tmp_path / "vtr.obj", "mtllib none.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/2\n")
    with pytest.raises(ValueError, match=r"vtr\.obj:6: texture index 2 out of range"):
        jio.load_obj(obj, load_texture=True)


def test_non_utf8_bytes_do_not_crash(tmp_path):
    obj = tmp_path / "latin1.obj"
    obj.write_bytes(b"# caf\xe9 \xff\xfe\no m\xe9sh\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl mat\xe9\nf 1 2 3\n")
    vertices, faces = jio.load_obj(obj, normalization=False)
    assert vertices.shape == (3, 3)
    np.testing.assert_array_equal(faces, [[0, 1, 2]])


def test_missing_obj_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.obj"):
        jio.load_obj(tmp_path / "nothing.obj")


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True, "4", None])
def test_texture_size_is_validated(tmp_path, bad):
    obj = write(tmp_path / "t.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises((TypeError, ValueError), match="texture_size"):
        jio.load_obj(obj, texture_size=bad)


def test_filename_type_is_validated():
    with pytest.raises(TypeError, match="filename"):
        jio.load_obj(42)


def test_normalization_of_degenerate_meshes(tmp_path):
    obj = write(tmp_path / "point.obj", "v 3 3 3\nv 3 3 3\nv 3 3 3\nf 1 2 3\n")
    vertices, _ = jio.load_obj(obj)
    np.testing.assert_array_equal(vertices, np.zeros((3, 3)))


def _random_bytes(nul: bool) -> bytes:
    """2000 random bytes, with NUL bytes or (nul=False) without any."""
    rng = np.random.default_rng(7)
    return rng.integers(0 if nul else 1, 256, 2000, dtype=np.uint8).tobytes()


def _png_bytes(tmp_path) -> bytes:
    return write_png(tmp_path / "picture.png", np.zeros((4, 4, 3))).read_bytes()


NOT_OBJ = {  # name -> (file contents, what the message must say)
    "random_bytes": (lambda tmp: _random_bytes(True), r"not a valid OBJ file: it is binary \(a NUL byte at offset"),
    "png": (_png_bytes, r"not a valid OBJ file: it is binary \(a NUL byte at offset 8\)"),
    "random_bytes_without_nul": (lambda tmp: _random_bytes(False),
                                 r":1: not valid OBJ \(each line starts with a keyword such as 'v' or 'f'\)"),
    "text": (lambda tmp: b"hello world\nthis is not an OBJ file\n", r"no vertices found \(no 'v' lines\)"),
    "empty": (lambda tmp: b"", r"no vertices found \(no 'v' lines\)"),
    "comments_only": (lambda tmp: b"# nothing\n\n", r"no vertices found"),
    "vertices_only": (lambda tmp: b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", r"no faces found \(no 'f' lines, 3 vertices\)"),
    "numbers_without_keyword": (lambda tmp: b"v 0 0 0\n1 0 0\n", r":2: not valid OBJ .*: '1 0 0'"),
}


@pytest.mark.parametrize("loader", ["load_obj", "load_obj_textured", "load_textured_mesh"])
@pytest.mark.parametrize("name", sorted(NOT_OBJ))
def test_a_file_that_is_not_an_obj_raises_naming_the_file_and_the_problem(tmp_path, name, loader):
    contents, message = NOT_OBJ[name]
    path = tmp_path / f"{name}.obj"
    path.write_bytes(contents(tmp_path))
    load = {"load_obj": jio.load_obj, "load_obj_textured": lambda p: jio.load_obj(p, load_texture=True),
            "load_textured_mesh": jio.load_textured_mesh}[loader]
    with pytest.raises(ValueError, match=message) as info:
        load(path)
    assert str(info.value).startswith(str(path))


def test_a_long_offending_line_is_quoted_cut_short(tmp_path):
    path = tmp_path / "long.obj"
    path.write_bytes(b"v 0 0 0\n\x01" + b"x" * 5000 + b"\n")
    with pytest.raises(ValueError, match=r"long\.obj:2: not valid OBJ") as info:
        jio.load_obj(path)
    assert "(5001 characters)" in str(info.value) and len(str(info.value)) < 400


def test_a_byte_order_mark_does_not_hide_the_first_vertex(tmp_path):
    path = tmp_path / "bom.obj"
    path.write_bytes(b"\xef\xbb\xbfv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    vertices, faces = jio.load_obj(path, normalization=False)
    np.testing.assert_array_equal(vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(faces, [[0, 1, 2]])


def test_a_binary_mtl_file_raises_naming_it(tmp_path):
    (tmp_path / "m.mtl").write_bytes(_random_bytes(True))
    obj = write(tmp_path / "m.obj", "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl a\nf 1 2 3\n")
    with pytest.raises(ValueError, match=r"m\.mtl: not a valid MTL file: it is binary"):
        jio.load_obj(obj, load_texture=True)


# ---------------------------------------------------------------------------------------------------------------
# Materials and textures
# ---------------------------------------------------------------------------------------------------------------

TRIANGLES = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\n"


def test_kd_only_material_fills_its_faces_exactly(tmp_path):
    write(tmp_path / "m.mtl", "newmtl red\nKd 0.9 0.1 0.2\nnewmtl grey1\nKd 0.25\n")
    obj = write(
        tmp_path / "kd.obj",
        "mtllib m.mtl\n" + TRIANGLES + "f 1 2 3\nusemtl red\nf 2 4 3\nf 1 2 4\nusemtl grey1\nf 1 3 4\n",
    )
    _, faces, textures = jio.load_obj(obj, load_texture=True, texture_size=3)
    assert textures.shape == (4, 3, 3, 3, 3) and textures.dtype == np.float32
    np.testing.assert_array_equal(textures[0], np.full((3, 3, 3, 3), 0.5, np.float32))  # before any usemtl
    np.testing.assert_array_equal(textures[1:3], np.broadcast_to(np.float32([0.9, 0.1, 0.2]), (2, 3, 3, 3, 3)))
    np.testing.assert_array_equal(textures[3], np.full((3, 3, 3, 3), 0.25, np.float32))


def test_last_mtllib_wins(tmp_path):
    write(tmp_path / "a.mtl", "newmtl m\nKd 1 0 0\n")
    write(tmp_path / "b.mtl", "newmtl m\nKd 0 1 0\n")
    obj = write(tmp_path / "two.obj", "mtllib a.mtl\n" + TRIANGLES + "usemtl m\nf 1 2 3\nmtllib b.mtl\n")
    _, _, textures = jio.load_obj(obj, load_texture=True)
    np.testing.assert_array_equal(textures[0, 0, 0, 0], [0, 1, 0])


def image_obj(tmp_path, uvs, face_line, image_name="tex.png"):
    write(tmp_path / "img.mtl", f"newmtl pic\nKd 0.1 0.2 0.3\nmap_Kd {image_name}\n")
    vt = "".join(f"vt {u} {v}\n" for u, v in uvs)
    return write(tmp_path / "img.obj", "mtllib img.mtl\n" + TRIANGLES + vt + "usemtl pic\n" + face_line + "\n")


# A 3-wide, 2-high picture; row 0 is the TOP of the picture, so UV v = 0 is the bottom row.
PICTURE = np.array(
    [
        [[255, 0, 0], [0, 255, 0], [0, 0, 255]],  # top row: v = 1
        [[10, 20, 30], [110, 120, 130], [210, 220, 230]],  # bottom row: v = 0
    ],
    dtype=np.uint8,
)


def test_image_texture_sampling_at_vertices_and_midpoints(tmp_path):
    write_png(tmp_path / "tex.png", PICTURE)
    obj = image_obj(tmp_path, [(0, 0), (1, 0), (0.5, 1)], "f 1/1 2/2 3/3")
    _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=3)
    pic = PICTURE.astype(np.float64) / 255
    bottom, top = pic[1], pic[0]
    # Corner texels: UV of each vertex. pos = uv * (W-1, H-1) = (0,0), (2,0), (1,1).
    np.testing.assert_allclose(textures[0, 2, 0, 0], bottom[0], atol=1e-6)
    np.testing.assert_allclose(textures[0, 0, 2, 0], bottom[2], atol=1e-6)
    np.testing.assert_allclose(textures[0, 0, 0, 2], top[1], atol=1e-6)
    # Texel (1, 1, 0): beta = (1/2, 1/2, 0) -> uv (0.5, 0) -> pos (1, 0): the bottom-middle pixel.
    np.testing.assert_allclose(textures[0, 1, 1, 0], bottom[1], atol=1e-6)
    # Texel (0, 1, 1): uv (0.75, 0.5) -> pos (1.5, 0.5): bilinear mean of the four right-hand pixels.
    expected = (bottom[1] + bottom[2] + top[1] + top[2]) / 4
    np.testing.assert_allclose(textures[0, 0, 1, 1], expected, atol=1e-6)
    # Texel (1, 0, 0): beta = (1, 0, 0) -> vertex 0's UV; texel (0, 0, 0) keeps beta = 0 -> UV (0, 0).
    np.testing.assert_allclose(textures[0, 1, 0, 0], bottom[0], atol=1e-6)
    np.testing.assert_allclose(textures[0, 0, 0, 0], bottom[0], atol=1e-6)
    # Texel (1, 0, 1): uv (0.25, 0.5) -> pos (0.5, 0.5): bilinear mean of the four left-hand pixels.
    expected = (bottom[0] + bottom[1] + top[0] + top[1]) / 4
    np.testing.assert_allclose(textures[0, 1, 0, 1], expected, atol=1e-6)
    # An interior texel (i + j + k < T - 1) samples the same point as its projection onto the face.
    np.testing.assert_allclose(textures[0, 0, 1, 0], textures[0, 0, 2, 0], atol=1e-7)


def test_texel_origin_samples_uv_origin_not_nan(tmp_path):
    write_png(tmp_path / "tex.png", PICTURE)
    obj = image_obj(tmp_path, [(1, 1), (1, 1), (1, 1)], "f 1/1 2/2 3/3")
    _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    assert np.isfinite(textures).all()
    np.testing.assert_allclose(textures[0, 0, 0, 0], PICTURE[1, 0] / 255, atol=1e-6)  # bottom-left pixel
    np.testing.assert_allclose(textures[0, 1, 1, 1], PICTURE[0, 2] / 255, atol=1e-6)  # UV (1, 1): top-right


def test_uv_wrapping_follows_chainer(tmp_path):
    write_png(tmp_path / "tex.png", PICTURE)
    # u = 1.5 -> 0.5 (middle column); v = 1.0 stays 1.0 (top row, not wrapped to 0); v = 2.0 -> 0 (bottom row);
    # u = -0.7 is not wrapped and clamps to the first column.
    obj = image_obj(tmp_path, [(1.5, 1.0), (-0.7, 2.0), (2.0, 0.0)], "f 1/1 2/2 3/3")
    _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    pic = PICTURE / 255
    np.testing.assert_allclose(textures[0, 1, 0, 0], pic[0, 1], atol=1e-6)
    np.testing.assert_allclose(textures[0, 0, 1, 0], pic[1, 0], atol=1e-6)
    np.testing.assert_allclose(textures[0, 0, 0, 1], pic[1, 0], atol=1e-6)


def test_corners_without_vt_use_the_last_vt(tmp_path):
    write_png(tmp_path / "tex.png", PICTURE)
    obj = image_obj(tmp_path, [(0, 0), (1, 1)], "f 1 2//1 3/1")
    _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    pic = PICTURE / 255
    np.testing.assert_allclose(textures[0, 1, 0, 0], pic[0, 2], atol=1e-6)  # 'v' -> last vt (1, 1)
    np.testing.assert_allclose(textures[0, 0, 1, 0], pic[0, 2], atol=1e-6)  # 'v//vn' -> last vt
    np.testing.assert_allclose(textures[0, 0, 0, 1], pic[1, 0], atol=1e-6)  # explicit vt 1 = (0, 0)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_grayscale_and_alpha_images(tmp_path, mode):
    from PIL import Image

    gray = np.array([[200, 200], [50, 50]], dtype=np.uint8)  # bottom row 50
    image = Image.fromarray(gray, mode="L").convert(mode)
    image.save(tmp_path / "tex.png")
    obj = image_obj(tmp_path, [(0, 0), (1, 0), (0, 0)], "f 1/1 2/2 3/3")
    _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    np.testing.assert_allclose(textures[0, 1, 0, 0], [50 / 255] * 3, atol=1e-6)


def test_missing_mtl_warns_and_returns_grey(tmp_path):
    obj = write(tmp_path / "nomtl.obj", "mtllib gone.mtl\n" + TRIANGLES + "usemtl a\nf 1 2 3\n")
    with pytest.warns(UserWarning, match="gone.mtl"):
        _, _, textures = jio.load_obj(obj, load_texture=True)
    np.testing.assert_array_equal(textures, np.full((1, 4, 4, 4, 3), 0.5, np.float32))


def test_loader_warnings_name_the_callers_line(tmp_path):
    obj = write(tmp_path / "nomtl.obj", "mtllib gone.mtl\n" + TRIANGLES + "usemtl a\nf 1 2 3\n")
    for load in (lambda: jio.load_obj(obj, load_texture=True), lambda: jio.load_textured_mesh(obj)):
        with pytest.warns(UserWarning, match="gone.mtl") as record:
            load()
        assert [w.filename for w in record] == [__file__]


def test_no_mtllib_warns_and_returns_grey(tmp_path):
    obj = write(tmp_path / "plain.obj", TRIANGLES + "f 1 2 3\nf 2 4 3\n")
    with pytest.warns(UserWarning, match="mtllib"):
        _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    np.testing.assert_array_equal(textures, np.full((2, 2, 2, 2, 3), 0.5, np.float32))


def test_missing_image_warns_and_falls_back_to_kd(tmp_path):
    obj = image_obj(tmp_path, [(0, 0), (1, 0), (0, 1)], "f 1/1 2/2 3/3", image_name="images/lost.jpg")
    with pytest.warns(UserWarning, match="lost.jpg"):
        _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    np.testing.assert_array_equal(textures[0], np.broadcast_to(np.float32([0.1, 0.2, 0.3]), (2, 2, 2, 3)))


def test_missing_image_without_kd_warns_and_returns_grey(tmp_path):
    write(tmp_path / "g.mtl", "newmtl pic\nmap_Kd lost.png\n")
    obj = write(tmp_path / "g.obj", "mtllib g.mtl\n" + TRIANGLES + "vt 0 0\nusemtl pic\nf 1/1 2/1 3/1\n")
    with pytest.warns(UserWarning, match="lost.png"):
        _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    np.testing.assert_array_equal(textures, np.full((1, 2, 2, 2, 3), 0.5, np.float32))


def test_image_material_without_vt_warns(tmp_path):
    write_png(tmp_path / "tex.png", PICTURE)
    obj = image_obj(tmp_path, [], "f 1 2 3")
    with pytest.warns(UserWarning, match="vt"):
        _, _, textures = jio.load_obj(obj, load_texture=True, texture_size=2)
    np.testing.assert_array_equal(textures[0], np.broadcast_to(np.float32([0.1, 0.2, 0.3]), (2, 2, 2, 3)))


# ---------------------------------------------------------------------------------------------------------------
# save_obj
# ---------------------------------------------------------------------------------------------------------------


def random_mesh(rng, num_vertices=30, num_faces=41):
    vertices = rng.uniform(-1, 1, size=(num_vertices, 3)).astype(np.float32)
    faces = rng.integers(0, num_vertices, size=(num_faces, 3)).astype(np.int32)
    return vertices, faces


def test_save_obj_round_trip_without_textures(tmp_path):
    vertices, faces = random_mesh(np.random.default_rng(0))
    path = tmp_path / "mesh.obj"
    jio.save_obj(path, vertices, faces)
    text = path.read_text().splitlines()
    assert text[:3] == ["# mesh.obj", "#", ""]
    assert text[3].startswith("v ") and len(text[3].split()[1].split(".")[1]) == 8
    assert text[-1] == "f %d %d %d" % tuple(faces[-1] + 1)
    loaded_vertices, loaded_faces = jio.load_obj(path, normalization=False)
    np.testing.assert_allclose(loaded_vertices, vertices, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(loaded_faces, faces)
    assert not (tmp_path / "mesh.mtl").exists() and not (tmp_path / "mesh.png").exists()


def test_save_obj_teapot_round_trip(data_dir, tmp_path):
    vertices, faces = jio.load_obj(data_dir / "teapot.obj")
    jio.save_obj(str(tmp_path / "teapot2.obj"), vertices, faces)
    vertices2, faces2 = jio.load_obj(tmp_path / "teapot2.obj", normalization=False)
    np.testing.assert_allclose(vertices2, vertices, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(faces2, faces)


def test_save_obj_round_trip_with_constant_face_textures(tmp_path):
    rng = np.random.default_rng(1)
    vertices, faces = random_mesh(rng)
    colours = rng.integers(0, 256, size=(faces.shape[0], 3)) / 255.0
    textures = np.broadcast_to(colours[:, None, None, None, :], (faces.shape[0], 4, 4, 4, 3)).astype(np.float32)
    path = tmp_path / "tex.obj"
    jio.save_obj(path, vertices, faces, textures)
    assert (tmp_path / "tex.mtl").exists() and (tmp_path / "tex.png").exists()
    mtl = (tmp_path / "tex.mtl").read_text()
    assert "newmtl material_1" in mtl and "map_Kd tex.png" in mtl
    obj_text = path.read_text()
    assert "mtllib tex.mtl" in obj_text and "usemtl material_1" in obj_text
    assert obj_text.count("\nvt ") == 3 * faces.shape[0]
    assert "f %d/1 %d/2 %d/3" % tuple(faces[0] + 1) in obj_text

    import imageio.v3 as iio

    atlas = iio.imread(tmp_path / "tex.png")
    tile_w = int(np.sqrt(faces.shape[0] - 1)) + 1
    tile_h = (faces.shape[0] - 1) // tile_w + 1
    assert atlas.shape == (tile_h * 16, tile_w * 16, 3) and atlas.dtype == np.uint8

    v2, f2, t2 = jio.load_obj(path, normalization=False, load_texture=True, texture_size=4)
    np.testing.assert_allclose(v2, vertices, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(f2, faces)
    # Texel (0, 0, 0) samples UV (0, 0), face 0's atlas corner (docs/conventions.md, "Texture maps and UVs"); it is
    # never read by the renderer for T >= 4. Every other texel comes back up to float rounding.
    np.testing.assert_allclose(t2[:, 0, 0, 0], np.broadcast_to(textures[0, 0, 0, 0], (41, 3)), rtol=0, atol=1e-4)
    t2[:, 0, 0, 0] = textures[:, 0, 0, 0]
    np.testing.assert_allclose(t2, textures, rtol=0, atol=1e-4)


def test_save_obj_round_trip_with_varying_textures(tmp_path):
    rng = np.random.default_rng(2)
    vertices, faces = random_mesh(rng, num_faces=7)
    textures = rng.uniform(0, 1, size=(7, 16, 16, 16, 3)).astype(np.float32)
    jio.save_obj(tmp_path / "rt.obj", vertices, faces, textures)
    _, _, loaded = jio.load_obj(tmp_path / "rt.obj", load_texture=True, texture_size=16)
    # Texels on the face (i + j + k = T - 1) land on atlas pixel centres: only 8-bit quantisation remains.
    i, j, k = np.indices((16, 16, 16))
    on_face = i + j + k == 15
    np.testing.assert_allclose(loaded[:, on_face], textures[:, on_face], rtol=0, atol=0.6 / 255 + 1e-4)


def test_save_obj_atlas_layout_and_seam(tmp_path):
    # Face n has one grey level on every texel; tile (row, col) of the unflipped atlas holds face row*tile_w + col.
    faces = np.array([[0, 1, 2]] * 5, dtype=np.int32)
    vertices = np.eye(3, dtype=np.float32)
    levels = np.array([10, 50, 90, 130, 250])
    shades = levels / 255
    textures = np.broadcast_to(shades[:, None, None, None, None], (5, 2, 2, 2, 3)).astype(np.float32)
    jio.save_obj(tmp_path / "layout.obj", vertices, faces, textures)
    import imageio.v3 as iio

    atlas = iio.imread(tmp_path / "layout.png")[::-1]  # undo the vertical flip
    assert atlas.shape == (2 * 16, 3 * 16, 3)  # tile_w = int(sqrt(4)) + 1 = 3, tile_h = 4 // 3 + 1 = 2
    for n in range(5):
        row, col = divmod(n, 3)
        tile = atlas[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16, 0]
        np.testing.assert_array_equal(tile, np.full((16, 16), levels[n]))


def test_save_obj_atlas_seam_fix(tmp_path):
    # The diagonal just above each tile's hypotenuse (local x = y + 1) copies its left neighbour (NMR's seam fix).
    rng = np.random.default_rng(4)
    vertices, faces = random_mesh(rng, num_faces=2)
    textures = rng.uniform(0, 1, size=(2, 4, 4, 4, 3)).astype(np.float32)
    jio.save_obj(tmp_path / "seam.obj", vertices, faces, textures)
    import imageio.v3 as iio

    atlas = iio.imread(tmp_path / "seam.png")[::-1].astype(int)  # undo the vertical flip
    assert atlas.shape == (16, 32, 3)
    for col in range(2):
        tile = atlas[:, col * 16 : (col + 1) * 16]
        y = np.arange(15)
        np.testing.assert_array_equal(tile[y, y + 1], tile[y, y])
        assert np.any(tile[y[:-1], y[:-1] + 2] != tile[y[:-1], y[:-1] + 1])  # the next diagonal is not copied


def test_save_obj_validates_shapes(tmp_path):
    vertices, faces = random_mesh(np.random.default_rng(3), num_faces=4)
    with pytest.raises(ValueError, match=r"vertices must have shape \[N, 3\], got shape \[30, 2\]"):
        jio.save_obj(tmp_path / "x.obj", vertices[:, :2], faces)
    with pytest.raises(ValueError, match=r"faces must have shape \[F, 3\], got shape \[12\]"):
        jio.save_obj(tmp_path / "x.obj", vertices, faces.ravel())
    with pytest.raises(ValueError, match=r"textures must have shape \[F, T, T, T, 3\].*got shape \[4, 2, 2, 2\]"):
        jio.save_obj(tmp_path / "x.obj", vertices, faces, np.zeros((4, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"textures.*got shape \[3, 2, 2, 2, 3\]"):
        jio.save_obj(tmp_path / "x.obj", vertices, faces, np.zeros((3, 2, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"textures.*got shape \[4, 2, 3, 2, 3\]"):
        jio.save_obj(tmp_path / "x.obj", vertices, faces, np.zeros((4, 2, 3, 2, 3)))
    with pytest.raises(ValueError, match=r"faces must index vertices in \[0, 30\)"):
        jio.save_obj(tmp_path / "x.obj", vertices, faces + 30)
    assert not (tmp_path / "x.obj").exists()


# ---------------------------------------------------------------------------------------------------------------
# load_mesh
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["ply", "stl", "off"])
def test_load_mesh_reads_trimesh_formats(tmp_path, extension):
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=(2.0, 1.0, 4.0))
    box.apply_translation((5.0, -3.0, 1.0))
    path = tmp_path / f"box.{extension}"
    box.export(path)
    loaded_mesh = jio.load_mesh(path, normalization=False)
    assert isinstance(loaded_mesh, jaxnmr.Mesh) and loaded_mesh.textures is None
    vertices, faces = loaded_mesh.vertices, loaded_mesh.faces
    assert vertices.dtype == np.float32 and faces.dtype == np.int32
    assert faces.shape == (12, 3)
    np.testing.assert_allclose(vertices[faces], np.asarray(box.vertices)[box.faces], atol=1e-6)

    normalized = jio.load_mesh(path).vertices
    np.testing.assert_allclose(normalized.min(axis=0), [-0.5, -0.25, -1.0], atol=1e-6)
    np.testing.assert_allclose(normalized.max(axis=0), [0.5, 0.25, 1.0], atol=1e-6)


def test_load_mesh_and_load_obj_agree_on_normalization(data_dir):
    pytest.importorskip("trimesh")
    v1, f1 = jio.load_obj(data_dir / "tetrahedron.obj")
    loaded_mesh = jio.load_mesh(data_dir / "tetrahedron.obj")
    v2, f2 = loaded_mesh.vertices, loaded_mesh.faces
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(f1, f2)


def test_load_mesh_unknown_format(tmp_path):
    pytest.importorskip("trimesh")
    path = write(tmp_path / "mesh.xyzzy", "v 0 0 0\n")
    with pytest.raises(ValueError, match=r"mesh\.xyzzy.*unsupported.*ply"):
        jio.load_mesh(path)


def test_load_mesh_point_cloud_has_no_faces(tmp_path):
    pytest.importorskip("trimesh")
    path = write(tmp_path / "points.xyz", "0 0 0\n1 0 0\n0 1 0\n")
    with pytest.raises(ValueError, match=r"points\.xyz.*no triangle faces"):
        jio.load_mesh(path)


@pytest.mark.parametrize("name, contents, message", [
    ("random.obj", _random_bytes(True), r"random\.obj: not a valid OBJ file: it is binary \(a NUL byte at offset"),
    ("random.off", _random_bytes(True), r"random\.off: not a valid OFF file: it is binary"),
    ("random.obj", _random_bytes(False), r"random\.obj: trimesh could not read the file"),
    ("random.stl", _random_bytes(False), r"random\.stl: trimesh could not read the file"),
    ("random.ply", _random_bytes(True), r"random\.ply: trimesh could not read the file"),
    ("text.obj", b"hello world\n", r"text\.obj: the file holds no triangle faces"),
])
def test_load_mesh_of_a_file_that_is_not_a_mesh_raises_naming_it(tmp_path, name, contents, message):
    pytest.importorskip("trimesh")
    path = tmp_path / name
    path.write_bytes(contents)
    with pytest.raises(ValueError, match=message) as info:
        jio.load_mesh(path)
    assert "as a mesh (No module named" not in str(info.value)  # the cause is the file, not a missing module


def test_load_mesh_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.ply"):
        jio.load_mesh(tmp_path / "gone.ply")
