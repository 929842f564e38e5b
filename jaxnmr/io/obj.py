"""Wavefront OBJ files: NMR's loader (with MTL colours and image textures), the writer, and the texture atlas.

Plain NumPy (float64 while sampling textures; the outputs are float32).

* :func:`load_obj` reads an OBJ file the way the Neural 3D Mesh Renderer (NMR) does: vertices,
  fan-triangulated faces, an optional normalisation into ``[-1, 1]``, and optionally one ``T x T x T`` RGB
  colour cube per face filled from the MTL file (``Kd`` colours and ``map_Kd`` images; docs/conventions.md,
  texture cubes).
* :func:`save_obj` writes vertices and faces, and with textures also an MTL file and a PNG texture atlas.
* :func:`load_textured_obj` reads an OBJ with its appearance as a :class:`jaxnmr.Mesh` (all materials packed
  into one texture map with face UVs); :func:`jaxnmr.load_textured_mesh` calls it for ``.obj`` files.

Coordinates are unitless model units; after normalisation the longest bounding-box axis spans exactly
``[-1, 1]`` and the box is centred at the origin. Faces are 0-based ``int32`` vertex indices. Texture values are
``float32`` linear colour in ``[0, 1]`` (image bytes divided by 255).

Departures from the original, all deliberate (docs/departures.md):

* Negative (relative) OBJ indices are supported (``-1`` is the last vertex defined before the line).
* Malformed lines raise :class:`ValueError` naming the file and 1-based line number; bytes that are not UTF-8
  are replaced instead of crashing the decoder, and a leading UTF-8 byte-order mark is dropped.
* A file that is not an OBJ raises :class:`ValueError` naming the file and what is wrong instead of giving an
  empty mesh: binary data (a NUL byte: an image, random bytes), a line that does not start with a keyword, or
  no ``v`` or no ``f`` lines at all. Lines with an unknown keyword (``vn``, ``o``, ``l``, ...) are ignored.
* Texel ``(0, 0, 0)`` of the cube (barycentric sum 0) samples UV ``(0, 0)`` instead of becoming NaN (the PyTorch
  port's guard; :mod:`jaxnmr._texels`).
* UV wrapping is the Chainer original's: every coordinate ``> 1`` is replaced by ``u mod 1``; ``0`` and exactly
  ``1`` are kept and negative coordinates are not wrapped. The sampling position is then clamped into the image,
  so negative coordinates read the first row/column instead of indexing out of bounds, and the ``+1`` bilinear
  neighbour is clamped to the last row/column.
* Missing MTL files, missing or unreadable texture images, and OBJ files with image materials but no ``vt``
  lines give a :class:`UserWarning` and fall back to the ``Kd`` colour or to 0.5 grey instead of raising.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from jaxnmr import _checks, _texels
from jaxnmr.io.images import read_image, to_uint8, write_png
from jaxnmr.mesh import Mesh

__all__ = ["load_obj", "save_obj", "load_textured_obj", "normalize_vertices", "check_not_binary"]

_ATLAS_TILE = 16  # side in pixels of each face's tile in save_obj's atlas (NMR's create_texture_image)
_ATLAS_EPS = 1e-5  # upper clamp and barycentric-sum epsilon of the atlas sampler
_MATERIAL_NAME = "material_1"
_POINTS_PER_CHUNK = 1 << 18  # texels sampled per vectorised chunk (bounds temporary memory to ~100 MB)
_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")  # every OBJ statement starts with one (v, vt, f, usemtl, ...)


# ---------------------------------------------------------------------------------------------------------------
# Reading text
# ---------------------------------------------------------------------------------------------------------------


def _read_text(path: str, kind: str) -> str:
    """Read a text file as UTF-8 (a leading byte-order mark dropped); undecodable bytes become U+FFFD.

    ``kind`` names the format for messages ("OBJ", "MTL"). Raises FileNotFoundError for a missing file and
    ValueError for a binary one (one holding a NUL byte, which no text file has: an image, an archive, random
    bytes), naming the file and the offset of the first NUL byte.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}")
    with open(path, "rb") as handle:
        data = handle.read()
    check_not_binary(path, data, kind)
    return data.decode("utf-8-sig", errors="replace")


def check_not_binary(path: str, data: bytes, kind: str) -> None:
    """Raise ValueError if ``data`` (a file's first bytes or all of them) holds a NUL byte: not a text file."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise ValueError(
            f"{path}: not a valid {kind} file: it is binary (a NUL byte at offset {nul}), but {kind} files are text"
        )


def _iter_lines(text: str):
    """Yield ``(1-based line number, raw line, tokens without the comment)`` for every non-empty line."""
    for lineno, raw in enumerate(_LINE_BREAK.split(text), start=1):
        tokens = raw.split("#", 1)[0].split()
        if tokens:
            yield lineno, raw, tokens


_MAX_QUOTED = 80  # characters of an offending line quoted in an error message


def _line_error(path: str, lineno: int, message: str, raw: str) -> ValueError:
    """``path:lineno: message: 'the line'`` (a long line cut to its first characters)."""
    line = raw.strip()
    quoted = repr(line) if len(line) <= _MAX_QUOTED else repr(line[:_MAX_QUOTED]) + f" ... ({len(line)} characters)"
    return ValueError(f"{path}:{lineno}: {message}: {quoted}")


# ---------------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------------


def normalize_vertices(vertices: np.ndarray, dtype=np.float32) -> np.ndarray:
    """NMR's normalisation, computed in ``dtype`` (float32 for the loaders, float64 for
    :func:`jaxnmr.meshes.teapot`): centre the bounding box, longest axis spans [-1, 1].

    1. ``v -= min(v)`` per axis; 2. ``v /= max(|v|)`` (one scalar); 3. ``v *= 2``; 4. ``v -= max(v) / 2`` per axis.
    A mesh with no vertices is returned unchanged; a mesh whose vertices all coincide is moved to the origin and
    not scaled (instead of dividing by zero).
    """
    v = np.array(vertices, dtype=dtype, copy=True)
    if v.shape[0] == 0:
        return v
    v -= v.min(axis=0, keepdims=True)
    scale = np.abs(v).max()
    if scale > 0:
        v /= scale
    v *= v.dtype.type(2)
    v -= v.max(axis=0, keepdims=True) / v.dtype.type(2)
    return v


# ---------------------------------------------------------------------------------------------------------------
# OBJ parsing
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _ObjData:
    """Everything :func:`load_obj` needs from one pass over the OBJ text."""

    vertices: np.ndarray  # [N, 3] float32
    faces: np.ndarray  # [F, 3] int32, 0-based
    face_uv_index: np.ndarray | None = None  # [F, 3] int64, 0-based; -1 = token without vt (-> the last vt)
    face_material: list[str] = field(default_factory=list)  # [F] material name per face ('' before any usemtl)
    uvs: np.ndarray | None = None  # [M, 2] float64
    mtllib: str | None = None  # the argument of the last mtllib line
    vertex_colors: np.ndarray | None = None  # [N, 3] float32 from 'v x y z r g b' lines, if every v has them


def _parse_floats(tokens: list[str], count: int, path: str, lineno: int, raw: str, what: str) -> list[float]:
    """Parse ``tokens[:count]`` as floats; fewer tokens or a non-number raise a ValueError with the line."""
    if len(tokens) < count:
        raise _line_error(path, lineno, f"'{what}' needs {count} numbers, got {len(tokens)}", raw)
    try:
        return [float(token) for token in tokens[:count]]
    except ValueError:
        raise _line_error(path, lineno, f"'{what}' has a non-numeric value", raw) from None


def _resolve_index(text: str, defined: int, kind: str, path: str, lineno: int, raw: str) -> int:
    """Turn one OBJ index (1-based, or negative = relative) into a 0-based index.

    Positive indices are range-checked later against the whole file (forward references are allowed, as in NMR);
    relative indices must refer to an element defined before this line.
    """
    try:
        index = int(text)
    except ValueError:
        raise _line_error(path, lineno, f"{kind} index {text!r} is not an integer", raw) from None
    if index > 0:
        return index - 1
    if index == 0:
        raise _line_error(path, lineno, f"{kind} index 0 is invalid (OBJ indices start at 1)", raw)
    if defined + index < 0:
        raise _line_error(
            path, lineno, f"relative {kind} index {index} out of range ({defined} defined before this line)", raw
        )
    return defined + index


def _vertex_color(tokens: list[str]) -> list[float] | None:
    """The colour of a ``v x y z r g b`` line (a common OBJ extension); None for ``v x y z [w]`` lines."""
    if len(tokens) < 7:
        return None
    try:
        return [float(token) for token in tokens[4:7]]
    except ValueError:
        return None


def _parse_obj(text: str, path: str, with_uv: bool) -> _ObjData:
    """Parse OBJ text (with the ``vt`` lines and face UV indices when ``with_uv``). Raises ValueError on malformed
    lines."""
    vertices: list[list[float]] = []
    colors: list[list[float] | None] = []  # the 'v x y z r g b' extension; None where a v line has no colour
    faces: list[tuple[int, int, int]] = []
    face_uv: list[tuple[int, int, int]] = []
    face_material: list[str] = []
    uvs: list[list[float]] = []
    uv_count = 0
    material = ""
    mtllib = None
    forward_refs: list[tuple[int, str, int, int]] = []  # (lineno, raw, max vertex index, max vt index)

    for lineno, raw, tokens in _iter_lines(text):
        keyword = tokens[0]
        if not _KEYWORD.match(keyword):
            raise _line_error(path, lineno, "not valid OBJ (each line starts with a keyword such as 'v' or 'f')", raw)
        if keyword == "v":
            vertices.append(_parse_floats(tokens[1:], 3, path, lineno, raw, "v"))
            colors.append(_vertex_color(tokens))
        elif keyword == "vt":
            uv_count += 1
            if with_uv:
                u_v = _parse_floats(tokens[1:], 1, path, lineno, raw, "vt")
                if len(tokens) >= 3:
                    u_v = _parse_floats(tokens[1:], 2, path, lineno, raw, "vt")
                else:
                    u_v.append(0.0)  # OBJ: a missing v defaults to 0
                uvs.append(u_v)
        elif keyword == "f":
            corners = tokens[1:]
            if len(corners) < 3:
                raise _line_error(path, lineno, f"face needs at least 3 vertices, got {len(corners)}", raw)
            v_index = []
            t_index = []
            for corner in corners:
                fields = corner.split("/")
                v_index.append(_resolve_index(fields[0], len(vertices), "face", path, lineno, raw))
                if with_uv:
                    # No '/' or an empty vt field ('v//vn'): NMR's index 0 - 1 = -1, i.e. the last vt of the file.
                    has_uv = len(fields) > 1 and fields[1] != ""
                    t_index.append(_resolve_index(fields[1], uv_count, "texture", path, lineno, raw) if has_uv else -1)
            max_v = max(v_index)
            max_t = max(t_index) if with_uv else -1
            if max_v >= len(vertices) or max_t >= uv_count:
                forward_refs.append((lineno, raw, max_v, max_t))
            for i in range(1, len(corners) - 1):  # fan triangulation (v0, v_i, v_{i+1})
                faces.append((v_index[0], v_index[i], v_index[i + 1]))
                face_material.append(material)
                if with_uv:
                    face_uv.append((t_index[0], t_index[i], t_index[i + 1]))
        elif keyword == "usemtl":
            material = tokens[1] if len(tokens) > 1 else ""
        elif keyword == "mtllib" and len(tokens) > 1:
            mtllib = raw.split("#", 1)[0].strip()[len("mtllib") :].strip()  # last mtllib wins

    for lineno, raw, max_v, max_t in forward_refs:
        if max_v >= len(vertices):
            raise _line_error(
                path, lineno, f"face index {max_v + 1} out of range (file has {len(vertices)} vertices)", raw
            )
        if max_t >= uv_count:
            raise _line_error(
                path, lineno, f"texture index {max_t + 1} out of range (file has {uv_count} vt lines)", raw
            )

    if not vertices:
        raise ValueError(f"{path}: not a valid OBJ mesh: no vertices found (no 'v' lines)")
    if not faces:
        raise ValueError(f"{path}: not a valid OBJ mesh: no faces found (no 'f' lines, {len(vertices)} vertices)")

    data = _ObjData(
        vertices=np.asarray(vertices, dtype=np.float32).reshape(-1, 3),
        faces=np.asarray(faces, dtype=np.int32).reshape(-1, 3),
        face_material=face_material,
        mtllib=mtllib,
    )
    if colors and all(color is not None for color in colors):
        data.vertex_colors = np.asarray(colors, dtype=np.float32).reshape(-1, 3)
    if with_uv:
        data.face_uv_index = np.asarray(face_uv, dtype=np.int64).reshape(-1, 3)
        data.uvs = np.asarray(uvs, dtype=np.float64).reshape(-1, 2)
    return data


# ---------------------------------------------------------------------------------------------------------------
# MTL parsing and file lookup
# ---------------------------------------------------------------------------------------------------------------


def _find_file(argument: str, folders: list[str]) -> str | None:
    """Find the file an MTL/OBJ statement names; None if no candidate exists.

    Candidates, in order: the first token (NMR), the whole argument (names with spaces), the last token (a name
    after options such as ``-s 1 1 1``), each also with backslashes turned into slashes, in each of ``folders``.
    """
    tokens = argument.split()
    names = [tokens[0], argument, tokens[-1]] if tokens else []
    names += [name.replace("\\", "/") for name in names]
    for folder in folders:
        for name in names:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def _parse_mtl(text: str, path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse MTL text into ``(Kd colour per material, map_Kd argument per material)``."""
    colors: dict[str, np.ndarray] = {}
    texture_files: dict[str, str] = {}
    material = ""
    for lineno, raw, tokens in _iter_lines(text):
        keyword = tokens[0]
        if keyword == "newmtl":
            material = tokens[1] if len(tokens) > 1 else ""
        elif keyword == "Kd":
            values = tokens[1:]
            count = 3 if len(values) >= 3 else 1  # MTL: 'Kd r' means r = g = b
            rgb = _parse_floats(values, count, path, lineno, raw, "Kd")
            colors[material] = np.asarray(rgb * (3 // count), dtype=np.float32)
        elif keyword == "map_Kd" and len(tokens) > 1:
            texture_files[material] = raw.split("#", 1)[0].strip()[len("map_Kd") :].strip()
    return colors, texture_files


# ---------------------------------------------------------------------------------------------------------------
# Texture filling
# ---------------------------------------------------------------------------------------------------------------


def _fill_from_image(
    textures: np.ndarray, face_ids: np.ndarray, face_uvs: np.ndarray, image: np.ndarray, texture_size: int
) -> None:
    """Write the image colour at every texel's UV into ``textures[face_ids]`` (in place), in bounded chunks.

    ``face_uvs [Fm, 3, 2]`` are the raw (unwrapped) corner UVs; ``image`` is stored bottom row first.
    """
    chunk = max(1, _POINTS_PER_CHUNK // texture_size**3)
    for start in range(0, len(face_ids), chunk):
        ids = face_ids[start : start + chunk]
        uv = _texels.texel_uvs(face_uvs[start : start + chunk], texture_size, np)  # [c, T^3, 2]
        colors = _texels.bilinear_bottom_up(image, uv.reshape(-1, 2), np)
        textures[ids] = colors.reshape((len(ids),) + (texture_size,) * 3 + (3,))


def _warn(message: str) -> None:
    """A UserWarning attributed to the first caller outside jaxnmr.io (the caller of the public loader)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("jaxnmr.io"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _resolve_materials(obj: _ObjData, path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """The MTL appearance of the materials an OBJ's faces use, with load_obj's warnings.

    Returns ``(colors, images)``: the ``Kd`` colour ``[3]`` float32 and the readable ``map_Kd`` image (float64
    ``[H, W, 3]``, bottom row first) of each used material; an image replaces its material's ``Kd``. Materials
    in neither dict stay 0.5 grey. None (with a warning) when the ``mtllib`` file is missing; the caller has
    checked that there is an ``mtllib`` line.
    """
    obj_dir = os.path.dirname(os.path.abspath(path))
    mtl_path = _find_file(obj.mtllib, [obj_dir])
    if mtl_path is None:
        missing = os.path.join(obj_dir, obj.mtllib.split()[0])
        _warn(f"{path}: material file {missing!r} not found; textures are uniform {_texels.GREY} grey")
        return None
    colors, texture_files = _parse_mtl(_read_text(mtl_path, "MTL"), mtl_path)

    used = set(obj.face_material) - {""}
    undefined = sorted(used - set(colors) - set(texture_files))
    if undefined:
        _warn(f"{path}: materials not defined in {mtl_path!r} stay {_texels.GREY} grey: {', '.join(undefined)}")

    images: dict[str, np.ndarray] = {}
    mtl_dir = os.path.dirname(mtl_path)
    for name, argument in texture_files.items():  # step 7: map_Kd
        if name not in used:
            continue
        fallback = "its Kd colour" if name in colors else f"{_texels.GREY} grey"
        image_path = _find_file(argument, [mtl_dir, obj_dir])
        if image_path is None:
            missing = os.path.join(mtl_dir, argument.split()[0])
            _warn(f"{path}: texture image {missing!r} of material {name!r} not found; using {fallback}")
            continue
        if obj.uvs.shape[0] == 0:
            _warn(f"{path}: material {name!r} has an image but the file has no 'vt' lines; using {fallback}")
            continue
        try:
            images[name] = read_image(image_path)[::-1]  # bottom row first
        except Exception as error:  # unreadable or corrupt image: same fallback as a missing one
            _warn(f"{path}: cannot read texture image {image_path!r} of material {name!r} ({error}); "
                  f"using {fallback}")
    return {name: color for name, color in colors.items() if name in used}, images


def _load_textures(obj: _ObjData, path: str, texture_size: int) -> np.ndarray:
    """Build the ``[F, T, T, T, 3]`` float32 textures of a parsed OBJ, falling back with warnings."""
    num_faces = obj.faces.shape[0]
    textures = np.full((num_faces,) + (texture_size,) * 3 + (3,), _texels.GREY, dtype=np.float32)
    if obj.mtllib is None:
        _warn(f"{path}: no 'mtllib' line; textures are uniform {_texels.GREY} grey")
        return textures
    resolved = _resolve_materials(obj, path)
    if resolved is None:
        return textures
    colors, images = resolved
    materials = np.asarray(obj.face_material, dtype=object)
    for name, color in colors.items():  # step 6: Kd fills every texel
        textures[materials == name] = color
    for name, image in images.items():  # step 7: map_Kd
        face_ids = np.flatnonzero(materials == name)
        face_uvs = obj.uvs[obj.face_uv_index[face_ids]]  # [Fm, 3, 2]; -1 -> the last vt
        _fill_from_image(textures, face_ids, face_uvs, image, texture_size)
    return textures


# ---------------------------------------------------------------------------------------------------------------
# Public loaders
# ---------------------------------------------------------------------------------------------------------------


def load_obj(filename, normalization=True, load_texture=False, texture_size=4):
    """Load a Wavefront OBJ file as NMR does (docs/conventions.md, "Texture cubes").

    Args:
        filename: path of the ``.obj`` file (str or os.PathLike).
        normalization: if true, translate and scale uniformly so the bounding box is centred at the origin and its
            longest axis spans exactly ``[-1, 1]`` (NMR's four steps, computed in float32).
        load_texture: if true, also build per-face colour cubes from the ``mtllib`` file: ``Kd`` colours and
            ``map_Kd`` images sampled bilinearly at each texel's UV. Missing pieces (no ``mtllib``, a missing MTL
            or image file, image materials without ``vt`` lines) give a UserWarning and fall back to the ``Kd``
            colour or 0.5 grey.
        texture_size: ``T``, the side of each face's texture cube; an int >= 2.

    Returns:
        ``(vertices, faces)`` or, with ``load_texture``, ``(vertices, faces, textures)``:

        * vertices: ``[N, 3]`` float32, model units (normalised units if ``normalization``);
        * faces: ``[F, 3]`` int32, 0-based vertex indices; polygons are fan-triangulated ``(v0, v_i, v_{i+1})``;
        * textures: ``[F, T, T, T, 3]`` float32 RGB in ``[0, 1]``; cube axis k belongs to face vertex k.

    Raises:
        FileNotFoundError: the OBJ file does not exist.
        ValueError: the file is not an OBJ mesh: binary (a NUL byte), a line that does not start with a keyword,
            a malformed ``v``, ``vt`` or ``f`` line or ``Kd`` statement (the message names the file and the
            1-based line number), an index that is 0 or out of range, or no vertices or no faces at all.
        TypeError: an argument of the wrong type.

    Notes:
        Negative (relative) indices are supported. A face corner without a texture index (``v`` or ``v//vn``)
        uses the file's last ``vt``, as in NMR. UVs greater than 1 are taken ``mod 1``; 0, exactly 1 and negative
        values are kept, and sampling positions are clamped into the image. Texture paths are looked up relative
        to the MTL file's folder, then the OBJ's. Line continuations (``\\``) are not supported.
    """
    path = _checks.path("load_obj", filename)
    texture_size = _checks.texture_size("load_obj", texture_size)
    obj = _parse_obj(_read_text(path, "OBJ"), path, with_uv=bool(load_texture))
    vertices = normalize_vertices(obj.vertices) if normalization else obj.vertices
    if not load_texture:
        return vertices, obj.faces
    return vertices, obj.faces, _load_textures(obj, path, texture_size)


# ---------------------------------------------------------------------------------------------------------------
# An OBJ with its appearance as one texture map
# ---------------------------------------------------------------------------------------------------------------


def _obj_atlas(obj: _ObjData, colors: dict[str, np.ndarray], images: dict[str, np.ndarray]):
    """One texture map holding every material of an OBJ, and each face's UVs into it.

    The material images stand side by side (bottom-aligned, each padded by one replicated column on either side
    and by replicated rows up to the tallest), followed by a 3-pixel-wide column per solid colour (the ``Kd``
    of materials without an image, and 0.5 grey for faces with no material), whose faces get all three UVs on
    the centre column. Face UVs are wrapped as load_obj wraps them (> 1 taken mod 1) and then clamped into
    [0, 1] per corner (load_obj clamps each sample instead, which differs only for faces whose UVs cross 0).
    Bilinear samples of the atlas therefore equal samples of the material's own image. Returns
    ``(texture_map [H, W, 3] float32, row 0 at the top; face_uvs [F, 3, 2] float32)``.
    """
    materials = np.asarray(obj.face_material, dtype=object)
    height = max([image.shape[0] for image in images.values()], default=1)
    position = np.zeros((materials.shape[0], 3, 2))  # atlas pixel coordinates (x, y from the bottom row)
    covered = np.zeros(materials.shape[0], dtype=bool)
    blocks, offset = [], 0
    for name, image in images.items():
        rows, cols = image.shape[:2]
        blocks.append(np.pad(image, ((0, height - rows), (1, 1), (0, 0)), mode="edge"))
        mask = materials == name
        uv = np.clip(_texels.wrap_uv(obj.uvs[obj.face_uv_index[mask]], np), 0.0, 1.0)
        position[mask] = np.stack([offset + 1 + uv[..., 0] * (cols - 1), uv[..., 1] * (rows - 1)], axis=-1)
        covered |= mask
        offset += cols + 2
    solids = [(color, materials == name) for name, color in colors.items() if name not in images]
    solids.append((np.full(3, _texels.GREY), ~covered & ~np.isin(materials, list(colors))))
    for color, mask in solids:
        if mask.any():
            blocks.append(np.broadcast_to(np.asarray(color, np.float64), (height, 3, 3)))
            position[mask] = (offset + 1, 0.0)
            offset += 3
    atlas = np.concatenate(blocks, axis=1)
    face_uvs = position / np.array([max(offset - 1, 1), max(height - 1, 1)], dtype=np.float64)
    return np.ascontiguousarray(atlas[::-1], dtype=np.float32), face_uvs.astype(np.float32)


def _obj_appearance(obj: _ObjData, path: str):
    """``(texture_map, face_uvs)`` of a parsed OBJ with an ``mtllib`` (None, None if its MTL file is missing)."""
    resolved = _resolve_materials(obj, path)
    if resolved is None or obj.faces.shape[0] == 0:
        return None, None
    return _obj_atlas(obj, *resolved)


def load_textured_obj(filename, normalization=True) -> Mesh:
    """Load an OBJ file with its appearance as a :class:`jaxnmr.Mesh` (what :func:`jaxnmr.load_textured_mesh`
    does for ``.obj`` files).

    ``v x y z r g b`` lines give ``vertex_colors``; with an ``mtllib``, every material (``map_Kd`` images, ``Kd``
    colours, 0.5 grey for faces without one) is packed into one ``texture_map`` with ``face_uvs`` into it, such
    that ``mesh.to_textures(T)`` equals ``load_obj(filename, load_texture=True, texture_size=T)[2]`` (up to float32
    rounding; except for faces whose UVs cross 0, which load_obj clamps per sample and this per corner, and
    texel (0, 0, 0), which reads the atlas's bottom-left pixel). Missing MTL or image files warn as in load_obj.
    Raises as :func:`load_obj`.
    """
    # load_textured_mesh checks its own filename first, so each function's errors name the function called
    path = _checks.path("load_textured_obj", filename)
    obj = _parse_obj(_read_text(path, "OBJ"), path, with_uv=True)
    appearance = {"vertex_colors": obj.vertex_colors}
    if obj.mtllib is not None:
        appearance["texture_map"], appearance["face_uvs"] = _obj_appearance(obj, path)
    vertices = normalize_vertices(obj.vertices) if normalization else obj.vertices
    return Mesh(vertices, obj.faces, **appearance)


# ---------------------------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------------------------


def _atlas_layout(num_faces: int) -> tuple[int, int]:
    """Tiles per row and rows of the atlas: ``tile_w = int(sqrt(F-1)) + 1``, ``tile_h = (F-1) // tile_w + 1``."""
    tile_w = math.isqrt(num_faces - 1) + 1
    tile_h = (num_faces - 1) // tile_w + 1
    return tile_w, tile_h


def _tile_triangle(tile: int) -> np.ndarray:
    """The face triangle inside one tile, local pixel coordinates ``(x, y)`` (y down): ``[3, 2]`` float64."""
    last = tile - 1
    return np.array([[0, 0], [0, last], [last, last]], dtype=np.float64)


def _barycentric_weights(points: np.ndarray, triangle: np.ndarray) -> np.ndarray:
    """Affine barycentrics ``[P, 3]`` of ``points [P, 2]`` w.r.t. ``triangle [3, 2]`` via the adjugate."""
    (u0, v0), (u1, v1), (u2, v2) = triangle
    det = u0 * (v1 - v2) + u1 * (v2 - v0) + u2 * (v0 - v1)
    inverse = np.array(
        [
            [v1 - v2, u2 - u1, u1 * v2 - u2 * v1],
            [v2 - v0, u0 - u2, u2 * v0 - u0 * v2],
            [v0 - v1, u1 - u0, u0 * v1 - u1 * v0],
        ]
    ) / det
    homogeneous = np.concatenate([points, np.ones((points.shape[0], 1))], axis=1)
    return homogeneous @ inverse.T


def _texture_atlas(textures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NMR's ``create_texture_image``: the atlas image and the per-face UVs.

    Returns ``(image [H, W, 3] float64, already flipped vertically, uvs [F, 3, 2] float64)``. Tiles past the last
    face are black.
    """
    num_faces, texture_size = textures.shape[0], textures.shape[1]
    tile = _ATLAS_TILE
    tile_w, tile_h = _atlas_layout(num_faces)
    triangle = _tile_triangle(tile)

    # Every tile has the same local geometry, so the cube coordinates of its pixels are computed once.
    y_local, x_local = np.mgrid[0:tile, 0:tile]
    points = np.stack([x_local.ravel(), y_local.ravel()], axis=1).astype(np.float64)
    weights = _barycentric_weights(points, triangle)
    weights = weights / (weights.sum(axis=1, keepdims=True) + _ATLAS_EPS)
    t = np.clip(weights * (texture_size - 1), 0.0, texture_size - 1 - _ATLAS_EPS)
    tiles = _texels.sample_trilinear(textures.astype(np.float64), t).reshape(num_faces, tile, tile, 3)

    # Seam fix: the diagonal just above the hypotenuse copies its left neighbour.
    rows, cols = np.nonzero(y_local + 1 == x_local)
    tiles[:, rows, cols] = tiles[:, rows, cols - 1]

    padded = np.zeros((tile_w * tile_h, tile, tile, 3), dtype=np.float64)
    padded[:num_faces] = tiles
    image = padded.reshape(tile_h, tile_w, tile, tile, 3).transpose(0, 2, 1, 3, 4)
    image = image.reshape(tile_h * tile, tile_w * tile, 3)

    face = np.arange(num_faces)
    origin = np.stack([face % tile_w, face // tile_w], axis=1)[:, None, :] * tile  # [F, 1, 2] (x, y)
    corners = origin + triangle[None]  # [F, 3, 2] atlas pixels, y down (before the flip)
    uvs = corners / np.array([tile_w * tile - 1, tile_h * tile - 1], dtype=np.float64)
    return image[::-1], uvs


def save_obj(filename, vertices, faces, textures=None):
    """Write a mesh as Wavefront OBJ; with textures also ``<name>.mtl`` and a ``<name>.png`` atlas.

    Args:
        filename: output path (str or os.PathLike), normally ending in ``.obj``; the MTL and PNG files are written
            beside it with the same stem.
        vertices: ``[N, 3]`` float array (any array-like, e.g. a jax array), written with ``%.8f``.
        faces: ``[F, 3]`` integer array of 0-based vertex indices in ``[0, N)``; written 1-based.
        textures: optional ``[F, T, T, T, 3]`` float array (T >= 2), RGB in [0, 1]. Each face's cube is resampled
            into a 16x16 tile of the atlas; values are clipped to [0, 1] and stored as 8-bit. The round trip
            through :func:`load_obj` is therefore approximate. With ``F == 0`` the textures are ignored.

    Raises:
        ValueError: an array has the wrong shape (the message names the argument, the expected and the given
            shape), faces are not integral or out of range, or textures do not match the faces.
        TypeError: ``filename`` is not a path.
    """
    fn = "save_obj"
    path = _checks.path(fn, filename)
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    _checks.exact_shape(fn, "vertices", vertices.shape, ("N", 3))
    _checks.exact_shape(fn, "faces", faces.shape, ("F", 3))
    if not (np.issubdtype(vertices.dtype, np.floating) or np.issubdtype(vertices.dtype, np.integer)):
        raise ValueError(f"{fn}: vertices must be a real-valued array, got dtype {vertices.dtype}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        if not np.issubdtype(faces.dtype, np.floating) or not np.all(np.equal(np.mod(faces, 1), 0)):
            raise ValueError(f"{fn}: faces must hold integer vertex indices, got dtype {faces.dtype}")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= vertices.shape[0]):
        raise ValueError(
            f"{fn}: faces must index vertices in [0, {vertices.shape[0]}), got values in [{faces.min()}, {faces.max()}]"
        )
    if textures is not None:
        textures = np.asarray(textures)
        _checks.exact_shape(fn, "textures", textures.shape, ("F", "T", "T", "T", 3))
        t = textures.shape[1]
        if textures.shape[:4] != (faces.shape[0], t, t, t) or t < 2:
            raise ValueError(
                f"{fn}: textures must have shape [F, T, T, T, 3] with F = {faces.shape[0]} (the number of faces) and a "
                f"cubic T >= 2, got shape {list(textures.shape)}"
            )
        if faces.shape[0] == 0:
            textures = None

    stem, _ = os.path.splitext(path)
    base = os.path.basename(stem)
    lines = [f"# {os.path.basename(path)}", "#", ""]
    if textures is not None:
        image, uvs = _texture_atlas(textures)
        write_png(stem + ".png", to_uint8(image))
        with open(stem + ".mtl", "w", encoding="utf-8") as handle:
            handle.write(f"# {base}.mtl\n#\n\nnewmtl {_MATERIAL_NAME}\nmap_Kd {base}.png\n")
        lines += [f"mtllib {base}.mtl", ""]
    lines += ["v %.8f %.8f %.8f" % tuple(vertex) for vertex in vertices.astype(np.float64)]
    lines.append("")
    one_based = faces + 1
    if textures is not None:
        lines += ["vt %.8f %.8f" % tuple(uv) for uv in uvs.reshape(-1, 2)]
        lines += ["", f"usemtl {_MATERIAL_NAME}"]
        uv_index = np.arange(3 * faces.shape[0]).reshape(-1, 3) + 1
        lines += [
            "f %d/%d %d/%d %d/%d" % (f[0], u[0], f[1], u[1], f[2], u[2]) for f, u in zip(one_based, uv_index)
        ]
    else:
        lines += ["f %d %d %d" % tuple(face) for face in one_based]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
