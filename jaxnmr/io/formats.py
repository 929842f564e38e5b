"""Meshes in other formats (PLY, STL, OFF, GLB/GLTF, ...) through trimesh, an optional dependency, and
:func:`load_textured_mesh`, which reads any mesh file with its appearance.

Both return a :class:`jaxnmr.Mesh` with NumPy arrays (vertices float32, faces int32) and apply the same
normalisation as :func:`jaxnmr.load_obj`.
"""

from __future__ import annotations

import os

import numpy as np

from jaxnmr import _checks
from jaxnmr.io.obj import check_not_binary, load_textured_obj, normalize_vertices
from jaxnmr.mesh import Mesh

__all__ = ["load_mesh", "load_textured_mesh"]


def load_mesh(filename, normalization=True) -> Mesh:
    """Load a triangle mesh from any file format trimesh reads (OBJ, PLY, STL, OFF, GLB/GLTF, ...).

    Scenes with several meshes are concatenated (with their scene transforms applied); polygons are triangulated
    by trimesh; vertices are not merged or reordered (``process=False``). Textures and colours are ignored.

    OBJ files are read by trimesh too, not by jaxnmr's own OBJ parser, so the result can differ from
    :func:`jaxnmr.load_obj`'s: trimesh may split vertices at UV seams (more vertices, other indices) and
    triangulates polygons its own way. For NMR-exact OBJ loading use :func:`jaxnmr.load_obj` (fan triangulation
    ``(v0, v_i, v_{i+1})``, negative indices, NMR's texture cubes) or :func:`jaxnmr.load_textured_mesh` (the same
    parser, as a :class:`jaxnmr.Mesh` with its appearance).

    Args:
        filename: path of the mesh file (str or os.PathLike); the format is taken from the extension.
        normalization: if true, apply the same normalisation as :func:`jaxnmr.load_obj` (bounding box centred at the
            origin, longest axis spanning ``[-1, 1]``).

    Returns:
        :class:`jaxnmr.Mesh` with ``vertices [N, 3]`` float32 and ``faces [F, 3]`` int32 (0-based vertex
        indices) as NumPy arrays, no appearance.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the extension is not a format trimesh reads, the file cannot be parsed (a text format such
            as OBJ or OFF that holds binary data, or bytes trimesh rejects), or it holds no triangle faces (e.g. a
            point cloud); the message names the file.
    """
    path = _checks.path("load_mesh", filename)
    _, vertices, faces = _trimesh_load(path)
    if normalization:
        vertices = normalize_vertices(vertices)
    return Mesh(vertices, faces)



# trimesh formats that are always text (checked for NUL bytes before trimesh sees them), and how much is checked
_TEXT_FORMATS = frozenset({"obj", "off", "xyz", "stl_ascii", "gltf", "dxf"})
_BINARY_SNIFF_BYTES = 1 << 20


def _trimesh_load(path: str):
    """``(trimesh mesh, vertices [N, 3] float32, faces [F, 3] int32)`` of any file trimesh reads, for load_mesh."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}")
    import trimesh

    formats = sorted(trimesh.available_formats())
    name = os.path.basename(path).lower()
    extension = next((fmt for fmt in sorted(formats, key=len, reverse=True) if name.endswith("." + fmt)), None)
    if extension is None:
        raise ValueError(f"{path}: unsupported mesh format; trimesh reads {', '.join(formats)}")
    if extension in _TEXT_FORMATS:
        with open(path, "rb") as handle:
            check_not_binary(path, handle.read(_BINARY_SNIFF_BYTES), extension.upper())
    try:
        mesh = trimesh.load(path, file_type=extension, force="mesh", process=False)
    except ImportError as error:  # trimesh guesses the encoding of non-UTF-8 text with an optional module
        name = extension.upper()
        what = "not UTF-8 text" if extension in _TEXT_FORMATS else f"neither binary {name} nor UTF-8 text"
        raise ValueError(
            f"{path}: trimesh could not read the file as {name}: it is {what} (trimesh would try other text "
            f"encodings with a module that is not installed: {error})"
        ) from error
    except Exception as error:
        raise ValueError(f"{path}: trimesh could not read the file as a mesh ({error})") from error
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int32).reshape(-1, 3)
    if faces.shape[0] == 0:  # e.g. a point cloud, which force="mesh" turns into an empty mesh
        raise ValueError(f"{path}: the file holds no triangle faces")
    return mesh, np.asarray(mesh.vertices, dtype=np.float32).reshape(-1, 3), faces




def _rgb(colors) -> np.ndarray:
    """trimesh colours (uint8 RGBA, or floats in [0, 1]) as float32 RGB in [0, 1]."""
    colors = np.asarray(colors)
    scale = 255.0 if np.issubdtype(colors.dtype, np.integer) else 1.0
    return (colors[..., :3].astype(np.float64) / scale).astype(np.float32)


def _trimesh_appearance(mesh, faces: np.ndarray) -> dict:
    """The colours or texture of a trimesh mesh as :class:`jaxnmr.Mesh` fields (glTF: texture x baseColorFactor)."""
    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        return {"vertex_colors": _rgb(visual.vertex_colors)}
    if kind == "face":
        return {"face_colors": _rgb(visual.face_colors)}
    if kind != "texture":
        return {}
    material = getattr(visual, "material", None)
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    if image is not None and getattr(visual, "uv", None) is not None:
        texture = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
        factor = getattr(material, "baseColorFactor", None)
        if factor is not None:
            texture = texture * _rgb(factor)
        uv = np.asarray(visual.uv, dtype=np.float32).reshape(-1, 2)
        return {"texture_map": texture.astype(np.float32), "face_uvs": uv[faces]}
    color = getattr(material, "main_color", None)
    if color is None:
        return {}
    return {"vertex_colors": np.broadcast_to(_rgb(color), (len(mesh.vertices), 3)).copy()}


def load_textured_mesh(filename, normalization=True) -> Mesh:
    """Load a mesh with its appearance: per-vertex colours, face colours, or UVs and a texture map.

    * ``.obj``: read by the same parser as :func:`jaxnmr.load_obj` (:func:`jaxnmr.io.obj.load_textured_obj`).
      ``v x y z r g b`` lines give ``vertex_colors``; with an ``mtllib``, every material (``map_Kd`` images,
      ``Kd`` colours, 0.5 grey for faces without one) is packed into one ``texture_map`` with ``face_uvs`` into
      it, such that ``mesh.to_textures(T)`` equals ``load_obj(filename, load_texture=True, texture_size=T)[2]``
      (up to float32 rounding; except for faces whose UVs cross 0, which load_obj clamps per sample and this per
      corner, and texel (0, 0, 0), which reads the atlas's bottom-left pixel). Missing MTL or image files warn
      as in load_obj.
    * any other format trimesh reads (PLY, GLB/GLTF, OFF, ...), loaded as :func:`load_mesh` does: vertex colours,
      face colours, or a texture image with per-vertex UVs (glTF's baseColorTexture times baseColorFactor).

    Args:
        filename: path (str or os.PathLike). normalization: as in :func:`jaxnmr.load_obj`.
    Returns:
        :class:`jaxnmr.Mesh` (NumPy arrays) with ``vertices``, ``faces`` and whichever of ``vertex_colors``,
        ``face_colors``, ``face_uvs`` with ``texture_map`` the file holds; image bytes are divided by 255 (no
        colour-space conversion). ``mesh.to_textures(T)`` gives the renderer's colour cubes.
    Raises:
        FileNotFoundError: no such file. ValueError: an OBJ that load_obj rejects (binary data, a malformed
        line, no vertices or no faces), a format trimesh does not read or cannot parse, or a file without
        triangles; the message names the file.
    """
    path = _checks.path("load_textured_mesh", filename)
    if path.lower().endswith(".obj"):
        return load_textured_obj(path, normalization)
    mesh, vertices, faces = _trimesh_load(path)
    appearance = _trimesh_appearance(mesh, faces)
    if normalization:
        vertices = normalize_vertices(vertices)
    return Mesh(vertices, faces, **appearance)


