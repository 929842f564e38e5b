"""Built-in triangle meshes, so the renderer has something to draw with no files.

Three procedural meshes, each returned as a :class:`jaxnmr.Mesh` (``mesh.vertices``, ``mesh.faces``; no
appearance):

* :func:`teapot` -- a tessellation of Martin Newell's public-domain Utah teapot
  Bezier patches, +y up, spout towards +x.
* :func:`icosphere` -- a subdivided regular icosahedron.
* :func:`cube` -- an axis-aligned cube.

``vertices`` is a ``float32`` numpy array of shape ``[N, 3]`` (x, y, z in world
units) and ``faces`` an ``int32`` numpy array of shape ``[F, 3]`` of indices into
``vertices``.  Every face is wound counter-clockwise when seen from outside the
surface in a right-handed frame, so the right-hand-rule normal
``cross(v1 - v0, v2 - v0)`` points outwards.  The meshes are built with numpy.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from jaxnmr.io.obj import normalize_vertices
from jaxnmr.mesh import Mesh

__all__ = ["teapot", "icosphere", "cube"]

_MAX_SUBDIVISIONS = 8
# At resolution 1 each handle and spout cross-section collapses to a single
# chord, so the mirrored halves coincide as flat, non-manifold sheets.
_MIN_RESOLUTION = 2
_MAX_RESOLUTION = 64
# Welding grid for teapot vertices, in the original teapot units (the pot is
# about 6.5 units long).  The grid is shifted by an irrational fraction of a
# cell so that exactly representable patch coordinates never sit on a cell
# boundary, where float rounding could split one seam point into two.
_WELD_TOL = 1e-5
_WELD_PHASE = 0.5 / math.pi

# 306 control points (x, y, z), z-up, in the original teapot units.
_TEAPOT_POINTS = (
    (1.4, 0.0, 2.4), (1.4, -0.784, 2.4), (0.784, -1.4, 2.4),
    (0.0, -1.4, 2.4), (1.3375, 0.0, 2.53125), (1.3375, -0.749, 2.53125),
    (0.749, -1.3375, 2.53125), (0.0, -1.3375, 2.53125), (1.4375, 0.0, 2.53125),
    (1.4375, -0.805, 2.53125), (0.805, -1.4375, 2.53125), (0.0, -1.4375, 2.53125),
    (1.5, 0.0, 2.4), (1.5, -0.84, 2.4), (0.84, -1.5, 2.4),
    (0.0, -1.5, 2.4), (-0.784, -1.4, 2.4), (-1.4, -0.784, 2.4),
    (-1.4, 0.0, 2.4), (-0.749, -1.3375, 2.53125), (-1.3375, -0.749, 2.53125),
    (-1.3375, 0.0, 2.53125), (-0.805, -1.4375, 2.53125), (-1.4375, -0.805, 2.53125),
    (-1.4375, 0.0, 2.53125), (-0.84, -1.5, 2.4), (-1.5, -0.84, 2.4),
    (-1.5, 0.0, 2.4), (-1.4, 0.784, 2.4), (-0.784, 1.4, 2.4),
    (0.0, 1.4, 2.4), (-1.3375, 0.749, 2.53125), (-0.749, 1.3375, 2.53125),
    (0.0, 1.3375, 2.53125), (-1.4375, 0.805, 2.53125), (-0.805, 1.4375, 2.53125),
    (0.0, 1.4375, 2.53125), (-1.5, 0.84, 2.4), (-0.84, 1.5, 2.4),
    (0.0, 1.5, 2.4), (0.784, 1.4, 2.4), (1.4, 0.784, 2.4),
    (0.749, 1.3375, 2.53125), (1.3375, 0.749, 2.53125), (0.805, 1.4375, 2.53125),
    (1.4375, 0.805, 2.53125), (0.84, 1.5, 2.4), (1.5, 0.84, 2.4),
    (1.75, 0.0, 1.875), (1.75, -0.98, 1.875), (0.98, -1.75, 1.875),
    (0.0, -1.75, 1.875), (2.0, 0.0, 1.35), (2.0, -1.12, 1.35),
    (1.12, -2.0, 1.35), (0.0, -2.0, 1.35), (2.0, 0.0, 0.9),
    (2.0, -1.12, 0.9), (1.12, -2.0, 0.9), (0.0, -2.0, 0.9),
    (-0.98, -1.75, 1.875), (-1.75, -0.98, 1.875), (-1.75, 0.0, 1.875),
    (-1.12, -2.0, 1.35), (-2.0, -1.12, 1.35), (-2.0, 0.0, 1.35),
    (-1.12, -2.0, 0.9), (-2.0, -1.12, 0.9), (-2.0, 0.0, 0.9),
    (-1.75, 0.98, 1.875), (-0.98, 1.75, 1.875), (0.0, 1.75, 1.875),
    (-2.0, 1.12, 1.35), (-1.12, 2.0, 1.35), (0.0, 2.0, 1.35),
    (-2.0, 1.12, 0.9), (-1.12, 2.0, 0.9), (0.0, 2.0, 0.9),
    (0.98, 1.75, 1.875), (1.75, 0.98, 1.875), (1.12, 2.0, 1.35),
    (2.0, 1.12, 1.35), (1.12, 2.0, 0.9), (2.0, 1.12, 0.9),
    (2.0, 0.0, 0.45), (2.0, -1.12, 0.45), (1.12, -2.0, 0.45),
    (0.0, -2.0, 0.45), (1.5, 0.0, 0.225), (1.5, -0.84, 0.225),
    (0.84, -1.5, 0.225), (0.0, -1.5, 0.225), (1.5, 0.0, 0.15),
    (1.5, -0.84, 0.15), (0.84, -1.5, 0.15), (0.0, -1.5, 0.15),
    (-1.12, -2.0, 0.45), (-2.0, -1.12, 0.45), (-2.0, 0.0, 0.45),
    (-0.84, -1.5, 0.225), (-1.5, -0.84, 0.225), (-1.5, 0.0, 0.225),
    (-0.84, -1.5, 0.15), (-1.5, -0.84, 0.15), (-1.5, 0.0, 0.15),
    (-2.0, 1.12, 0.45), (-1.12, 2.0, 0.45), (0.0, 2.0, 0.45),
    (-1.5, 0.84, 0.225), (-0.84, 1.5, 0.225), (0.0, 1.5, 0.225),
    (-1.5, 0.84, 0.15), (-0.84, 1.5, 0.15), (0.0, 1.5, 0.15),
    (1.12, 2.0, 0.45), (2.0, 1.12, 0.45), (0.84, 1.5, 0.225),
    (1.5, 0.84, 0.225), (0.84, 1.5, 0.15), (1.5, 0.84, 0.15),
    (-1.6, 0.0, 2.025), (-1.6, -0.3, 2.025), (-1.5, -0.3, 2.25),
    (-1.5, 0.0, 2.25), (-2.3, 0.0, 2.025), (-2.3, -0.3, 2.025),
    (-2.5, -0.3, 2.25), (-2.5, 0.0, 2.25), (-2.7, 0.0, 2.025),
    (-2.7, -0.3, 2.025), (-3.0, -0.3, 2.25), (-3.0, 0.0, 2.25),
    (-2.7, 0.0, 1.8), (-2.7, -0.3, 1.8), (-3.0, -0.3, 1.8),
    (-3.0, 0.0, 1.8), (-1.5, 0.3, 2.25), (-1.6, 0.3, 2.025),
    (-2.5, 0.3, 2.25), (-2.3, 0.3, 2.025), (-3.0, 0.3, 2.25),
    (-2.7, 0.3, 2.025), (-3.0, 0.3, 1.8), (-2.7, 0.3, 1.8),
    (-2.7, 0.0, 1.575), (-2.7, -0.3, 1.575), (-3.0, -0.3, 1.35),
    (-3.0, 0.0, 1.35), (-2.5, 0.0, 1.125), (-2.5, -0.3, 1.125),
    (-2.65, -0.3, 0.9375), (-2.65, 0.0, 0.9375), (-2.0, -0.3, 0.9),
    (-1.9, -0.3, 0.6), (-1.9, 0.0, 0.6), (-3.0, 0.3, 1.35),
    (-2.7, 0.3, 1.575), (-2.65, 0.3, 0.9375), (-2.5, 0.3, 1.125),
    (-1.9, 0.3, 0.6), (-2.0, 0.3, 0.9), (1.7, 0.0, 1.425),
    (1.7, -0.66, 1.425), (1.7, -0.66, 0.6), (1.7, 0.0, 0.6),
    (2.6, 0.0, 1.425), (2.6, -0.66, 1.425), (3.1, -0.66, 0.825),
    (3.1, 0.0, 0.825), (2.3, 0.0, 2.1), (2.3, -0.25, 2.1),
    (2.4, -0.25, 2.025), (2.4, 0.0, 2.025), (2.7, 0.0, 2.4),
    (2.7, -0.25, 2.4), (3.3, -0.25, 2.4), (3.3, 0.0, 2.4),
    (1.7, 0.66, 0.6), (1.7, 0.66, 1.425), (3.1, 0.66, 0.825),
    (2.6, 0.66, 1.425), (2.4, 0.25, 2.025), (2.3, 0.25, 2.1),
    (3.3, 0.25, 2.4), (2.7, 0.25, 2.4), (2.8, 0.0, 2.475),
    (2.8, -0.25, 2.475), (3.525, -0.25, 2.49375), (3.525, 0.0, 2.49375),
    (2.9, 0.0, 2.475), (2.9, -0.15, 2.475), (3.45, -0.15, 2.5125),
    (3.45, 0.0, 2.5125), (2.8, 0.0, 2.4), (2.8, -0.15, 2.4),
    (3.2, -0.15, 2.4), (3.2, 0.0, 2.4), (3.525, 0.25, 2.49375),
    (2.8, 0.25, 2.475), (3.45, 0.15, 2.5125), (2.9, 0.15, 2.475),
    (3.2, 0.15, 2.4), (2.8, 0.15, 2.4), (0.0, 0.0, 3.15),
    (0.0, -0.002, 3.15), (0.002, 0.0, 3.15), (0.8, 0.0, 3.15),
    (0.8, -0.45, 3.15), (0.45, -0.8, 3.15), (0.0, -0.8, 3.15),
    (0.0, 0.0, 2.85), (0.2, 0.0, 2.7), (0.2, -0.112, 2.7),
    (0.112, -0.2, 2.7), (0.0, -0.2, 2.7), (-0.002, 0.0, 3.15),
    (-0.45, -0.8, 3.15), (-0.8, -0.45, 3.15), (-0.8, 0.0, 3.15),
    (-0.112, -0.2, 2.7), (-0.2, -0.112, 2.7), (-0.2, 0.0, 2.7),
    (0.0, 0.002, 3.15), (-0.8, 0.45, 3.15), (-0.45, 0.8, 3.15),
    (0.0, 0.8, 3.15), (-0.2, 0.112, 2.7), (-0.112, 0.2, 2.7),
    (0.0, 0.2, 2.7), (0.45, 0.8, 3.15), (0.8, 0.45, 3.15),
    (0.112, 0.2, 2.7), (0.2, 0.112, 2.7), (0.4, 0.0, 2.55),
    (0.4, -0.224, 2.55), (0.224, -0.4, 2.55), (0.0, -0.4, 2.55),
    (1.3, 0.0, 2.55), (1.3, -0.728, 2.55), (0.728, -1.3, 2.55),
    (0.0, -1.3, 2.55), (1.3, 0.0, 2.4), (1.3, -0.728, 2.4),
    (0.728, -1.3, 2.4), (0.0, -1.3, 2.4), (-0.224, -0.4, 2.55),
    (-0.4, -0.224, 2.55), (-0.4, 0.0, 2.55), (-0.728, -1.3, 2.55),
    (-1.3, -0.728, 2.55), (-1.3, 0.0, 2.55), (-0.728, -1.3, 2.4),
    (-1.3, -0.728, 2.4), (-1.3, 0.0, 2.4), (-0.4, 0.224, 2.55),
    (-0.224, 0.4, 2.55), (0.0, 0.4, 2.55), (-1.3, 0.728, 2.55),
    (-0.728, 1.3, 2.55), (0.0, 1.3, 2.55), (-1.3, 0.728, 2.4),
    (-0.728, 1.3, 2.4), (0.0, 1.3, 2.4), (0.224, 0.4, 2.55),
    (0.4, 0.224, 2.55), (0.728, 1.3, 2.55), (1.3, 0.728, 2.55),
    (0.728, 1.3, 2.4), (1.3, 0.728, 2.4), (0.0, 0.0, 0.0),
    (1.5, 0.0, 0.15), (1.5, 0.84, 0.15), (0.84, 1.5, 0.15),
    (0.0, 1.5, 0.15), (1.5, 0.0, 0.075), (1.5, 0.84, 0.075),
    (0.84, 1.5, 0.075), (0.0, 1.5, 0.075), (1.425, 0.0, 0.0),
    (1.425, 0.798, 0.0), (0.798, 1.425, 0.0), (0.0, 1.425, 0.0),
    (-0.84, 1.5, 0.15), (-1.5, 0.84, 0.15), (-1.5, 0.0, 0.15),
    (-0.84, 1.5, 0.075), (-1.5, 0.84, 0.075), (-1.5, 0.0, 0.075),
    (-0.798, 1.425, 0.0), (-1.425, 0.798, 0.0), (-1.425, 0.0, 0.0),
    (-1.5, -0.84, 0.15), (-0.84, -1.5, 0.15), (0.0, -1.5, 0.15),
    (-1.5, -0.84, 0.075), (-0.84, -1.5, 0.075), (0.0, -1.5, 0.075),
    (-1.425, -0.798, 0.0), (-0.798, -1.425, 0.0), (0.0, -1.425, 0.0),
    (0.84, -1.5, 0.15), (1.5, -0.84, 0.15), (0.84, -1.5, 0.075),
    (1.5, -0.84, 0.075), (0.798, -1.425, 0.0), (1.425, -0.798, 0.0),
)

# 32 bicubic patches: 16 zero-based indices into _TEAPOT_POINTS each, a 4x4
# row-major grid of control points.
_TEAPOT_PATCHES = (
    # rim
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (3, 16, 17, 18, 7, 19, 20, 21, 11, 22, 23, 24, 15, 25, 26, 27),
    (18, 28, 29, 30, 21, 31, 32, 33, 24, 34, 35, 36, 27, 37, 38, 39),
    (30, 40, 41, 0, 33, 42, 43, 4, 36, 44, 45, 8, 39, 46, 47, 12),
    # body
    (12, 13, 14, 15, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59),
    (15, 25, 26, 27, 51, 60, 61, 62, 55, 63, 64, 65, 59, 66, 67, 68),
    (27, 37, 38, 39, 62, 69, 70, 71, 65, 72, 73, 74, 68, 75, 76, 77),
    (39, 46, 47, 12, 71, 78, 79, 48, 74, 80, 81, 52, 77, 82, 83, 56),
    (56, 57, 58, 59, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95),
    (59, 66, 67, 68, 87, 96, 97, 98, 91, 99, 100, 101, 95, 102, 103, 104),
    (68, 75, 76, 77, 98, 105, 106, 107, 101, 108, 109, 110, 104, 111, 112, 113),
    (77, 82, 83, 56, 107, 114, 115, 84, 110, 116, 117, 88, 113, 118, 119, 92),
    # handle
    (120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135),
    (123, 136, 137, 120, 127, 138, 139, 124, 131, 140, 141, 128, 135, 142, 143, 132),
    (132, 133, 134, 135, 144, 145, 146, 147, 148, 149, 150, 151, 68, 152, 153, 154),
    (135, 142, 143, 132, 147, 155, 156, 144, 151, 157, 158, 148, 154, 159, 160, 68),
    # spout
    (161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176),
    (164, 177, 178, 161, 168, 179, 180, 165, 172, 181, 182, 169, 176, 183, 184, 173),
    (173, 174, 175, 176, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196),
    (176, 183, 184, 173, 188, 197, 198, 185, 192, 199, 200, 189, 196, 201, 202, 193),
    # lid
    (203, 203, 203, 203, 206, 207, 208, 209, 210, 210, 210, 210, 211, 212, 213, 214),
    (203, 203, 203, 203, 209, 216, 217, 218, 210, 210, 210, 210, 214, 219, 220, 221),
    (203, 203, 203, 203, 218, 223, 224, 225, 210, 210, 210, 210, 221, 226, 227, 228),
    (203, 203, 203, 203, 225, 229, 230, 206, 210, 210, 210, 210, 228, 231, 232, 211),
    (211, 212, 213, 214, 233, 234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244),
    (214, 219, 220, 221, 236, 245, 246, 247, 240, 248, 249, 250, 244, 251, 252, 253),
    (221, 226, 227, 228, 247, 254, 255, 256, 250, 257, 258, 259, 253, 260, 261, 262),
    (228, 231, 232, 211, 256, 263, 264, 233, 259, 265, 266, 237, 262, 267, 268, 241),
    # bottom
    (269, 269, 269, 269, 278, 279, 280, 281, 274, 275, 276, 277, 270, 271, 272, 273),
    (269, 269, 269, 269, 281, 288, 289, 290, 277, 285, 286, 287, 273, 282, 283, 284),
    (269, 269, 269, 269, 290, 297, 298, 299, 287, 294, 295, 296, 284, 291, 292, 293),
    (269, 269, 269, 269, 299, 304, 305, 278, 296, 302, 303, 274, 293, 300, 301, 270),
)


# ---------------------------------------------------------------------------
# argument validation


def _check_int(fn: str, name: str, value, lo: int, hi: int) -> int:
    """Return ``value`` as an int if it is an integer in ``[lo, hi]``."""
    ok = (
        isinstance(value, numbers.Integral)
        and not isinstance(value, (bool, np.bool_))
        and lo <= int(value) <= hi
    )
    if not ok:
        raise ValueError(
            f"{fn}: {name} must be an int in [{lo}, {hi}], got {value!r}"
        )
    return int(value)


def _check_positive(fn: str, name: str, value) -> float:
    """Return ``value`` as a float if it is a finite real number > 0."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
        and float(value) > 0.0
    )
    if not ok:
        raise ValueError(
            f"{fn}: {name} must be a finite number > 0, got {value!r}"
        )
    return float(value)


def _check_bool(fn: str, name: str, value) -> bool:
    """Return ``value`` as a bool if it is a Python or numpy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{fn}: {name} must be a bool, got {value!r}")
    return bool(value)


def _as_mesh(vertices, faces) -> Mesh:
    """A Mesh of fresh contiguous ``float32`` vertices and ``int32`` faces."""
    return Mesh(
        np.ascontiguousarray(vertices, dtype=np.float32).copy(),
        np.ascontiguousarray(faces, dtype=np.int32).copy(),
    )


# ---------------------------------------------------------------------------
# cube

_CUBE_FACES = (
    (0, 2, 1), (0, 3, 2),  # -z
    (4, 5, 6), (4, 6, 7),  # +z
    (0, 1, 5), (0, 5, 4),  # -y
    (3, 7, 6), (3, 6, 2),  # +y
    (0, 4, 7), (0, 7, 3),  # -x
    (1, 2, 6), (1, 6, 5),  # +x
)


def cube(size: float = 2.0) -> Mesh:
    """Axis-aligned cube centred at the origin.

    Args:
      size: edge length in world units, a finite number > 0.  The default
        gives the cube ``[-1, 1]^3``.

    Returns:
      :class:`jaxnmr.Mesh`: ``vertices`` is ``float32 [8, 3]``, the corners
      ``(+-size/2, +-size/2, +-size/2)``: first the -z square with (x, y)
      signs ``(-,-), (+,-), (+,+), (-,+)``, then the same square at +z.
      ``faces`` is ``int32 [12, 3]``, two triangles per side, wound
      counter-clockwise seen from outside (outward right-hand normals).  The
      mesh is closed: every edge is shared by exactly two faces.
    """
    h = 0.5 * _check_positive("cube", "size", size)
    square = [(-h, -h), (h, -h), (h, h), (-h, h)]
    vertices = [(x, y, -h) for x, y in square] + [(x, y, h) for x, y in square]
    return _as_mesh(vertices, _CUBE_FACES)


# ---------------------------------------------------------------------------
# icosphere


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Unit-circumradius regular icosahedron: float64 [12, 3], int64 [20, 3]."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = np.array(
        [
            (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0),
            (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
            (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
        ],
        dtype=np.float64,
    )
    f = np.array(
        [
            (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
            (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
            (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
            (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
        ],
        dtype=np.int64,
    )
    return v / np.linalg.norm(v, axis=1, keepdims=True), f


def _subdivide_sphere(v: np.ndarray, f: np.ndarray):
    """Split each triangle into 4, with new vertices on the unit sphere.

    The midpoint cache is the table of unique undirected edges: each edge gets
    exactly one new vertex, shared by the two faces on either side of it.
    Winding is preserved: ``(a, b, c)`` becomes ``(a, ab, ca)``,
    ``(b, bc, ab)``, ``(c, ca, bc)`` and ``(ab, bc, ca)``.
    """
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    edges = np.concatenate([np.stack(e, axis=1) for e in ((a, b), (b, c), (c, a))])
    edges = np.sort(edges, axis=1)
    unique_edges, edge_id = np.unique(edges, axis=0, return_inverse=True)
    edge_id = edge_id.reshape(3, -1)
    mid = v[unique_edges[:, 0]] + v[unique_edges[:, 1]]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    ab, bc, ca = (len(v) + edge_id[k] for k in range(3))
    new_f = np.concatenate(
        [
            np.stack(t, axis=1)
            for t in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))
        ]
    )
    return np.concatenate([v, mid]), new_f


@functools.lru_cache(maxsize=8)
def _unit_icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    v, f = _icosahedron()
    for _ in range(subdivisions):
        v, f = _subdivide_sphere(v, f)
    return v, f


def icosphere(
    subdivisions: int = 2, radius: float = 1.0
) -> Mesh:
    """Sphere made by subdividing a regular icosahedron, centred at the origin.

    Each subdivision level splits every triangle into four and pushes the new
    edge-midpoint vertices out onto the sphere; vertices shared between faces
    are stored once.

    Args:
      subdivisions: int in ``[0, 8]``.  Level ``n`` has ``20 * 4**n`` faces and
        ``10 * 4**n + 2`` vertices (0: 12 / 20, 2: 162 / 320).
      radius: sphere radius in world units, a finite number > 0.  Every vertex
        lies at this distance from the origin.

    Returns:
      :class:`jaxnmr.Mesh`: vertices ``float32 [10 * 4**n + 2, 3]`` and faces
      ``int32 [20 * 4**n, 3]``, wound counter-clockwise seen from outside
      (outward right-hand normals).  The mesh is closed.
    """
    n = _check_int("icosphere", "subdivisions", subdivisions, 0, _MAX_SUBDIVISIONS)
    r = _check_positive("icosphere", "radius", radius)
    v, f = _unit_icosphere(n)
    return _as_mesh(v * r, f)


# ---------------------------------------------------------------------------
# teapot


def _bernstein3(t: np.ndarray) -> np.ndarray:
    """Cubic Bernstein basis at parameters ``t [n]``: float64 ``[n, 4]``."""
    s = 1.0 - t
    return np.stack([s**3, 3.0 * t * s**2, 3.0 * t**2 * s, t**3], axis=1)


def _eval_patches(control: np.ndarray, resolution: int) -> np.ndarray:
    """Evaluate bicubic Bezier patches on a regular ``(u, v)`` grid.

    Args:
      control: ``[P, 4, 4, 3]`` control points, ``control[p, i, j]`` weighted
        by ``B_i(u) * B_j(v)``.
      resolution: cells per side; the grid has ``resolution + 1`` samples.

    Returns:
      ``[P, resolution + 1, resolution + 1, 3]`` points, indexed ``[p, u, v]``.
    """
    b = _bernstein3(np.linspace(0.0, 1.0, resolution + 1))
    return np.einsum("ui,vj,pijk->puvk", b, b, control)


def _grid_faces(n_patches: int, resolution: int) -> np.ndarray:
    """Two triangles per grid cell, same winding in every patch: ``[F, 3]``.

    Vertex ``(p, i, j)`` of the sample grid has index
    ``(p * (r + 1) + i) * (r + 1) + j`` with ``r = resolution``; the faces of
    patch ``p`` are rows ``[2 r^2 p, 2 r^2 (p + 1))``.
    """
    m = resolution + 1
    i, j = np.meshgrid(np.arange(resolution), np.arange(resolution), indexing="ij")
    v00 = (i * m + j).ravel()
    v10, v01, v11 = v00 + m, v00 + 1, v00 + m + 1
    cell = np.concatenate(
        [np.stack([v00, v10, v11], axis=1), np.stack([v00, v11, v01], axis=1)]
    )
    offsets = (np.arange(n_patches) * m * m)[:, None, None]
    return (cell[None] + offsets).reshape(-1, 3)


def _weld(points: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge points that fall in the same ``tol``-sized grid cell.

    Returns ``(unique_points [M, 3], index [N])`` with
    ``points[k] ~= unique_points[index[k]]``; unique points keep the order of
    their first occurrence and take its coordinates.
    """
    keys = np.floor(points / tol + _WELD_PHASE).astype(np.int64)
    _, first, inverse = np.unique(
        keys, axis=0, return_index=True, return_inverse=True
    )
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return points[first[order]], rank[inverse.ravel()]


def _drop_degenerate(faces: np.ndarray, labels: np.ndarray):
    """Remove faces that repeat a vertex index (and their labels)."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    keep = (a != b) & (b != c) & (c != a)
    return faces[keep], labels[keep]


def _compact(vertices: np.ndarray, faces: np.ndarray):
    """Drop vertices no face uses, keeping the order of the rest."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces]


def _directed_edges(faces: np.ndarray) -> np.ndarray:
    """``[3F, 2]`` directed edges ``(a, b), (b, c), (c, a)``, face-major."""
    return faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)


def _patch_flips(faces: np.ndarray, labels: np.ndarray, n_labels: int):
    """Relative orientation of face groups that share edges.

    Faces within one group (one Bezier patch) are already wound consistently.
    Two groups sharing an edge agree when they traverse it in opposite
    directions.  A breadth-first walk over the group adjacency assigns each
    group a flip bit so that all shared edges agree, and a component id.

    Returns ``(flip [n_labels] bool, component [n_labels] int)``.
    """
    edges = _directed_edges(faces)
    owner = np.repeat(labels, 3)
    key = np.sort(edges, axis=1)
    _, edge_id, counts = np.unique(
        key, axis=0, return_inverse=True, return_counts=True
    )
    edge_id = edge_id.ravel()
    if counts.max() > 2:
        raise RuntimeError("teapot: non-manifold edge after welding")
    forward = edges[:, 0] < edges[:, 1]
    order = np.argsort(edge_id, kind="stable")
    shared = counts[edge_id[order]] == 2
    pairs = order[shared].reshape(-1, 2)
    adjacency: dict[int, list[tuple[int, bool]]] = {g: [] for g in range(n_labels)}
    for e0, e1 in pairs:
        g0, g1 = int(owner[e0]), int(owner[e1])
        if g0 == g1:
            if forward[e0] == forward[e1]:
                raise RuntimeError("teapot: patch wound inconsistently")
            continue
        same_direction = bool(forward[e0] == forward[e1])
        adjacency[g0].append((g1, same_direction))
        adjacency[g1].append((g0, same_direction))
    flip = np.zeros(n_labels, dtype=bool)
    component = np.full(n_labels, -1, dtype=np.int64)
    n_components = 0
    for start in range(n_labels):
        if component[start] >= 0:
            continue
        component[start] = n_components
        stack = [start]
        while stack:
            g = stack.pop()
            for h, same_direction in adjacency[g]:
                want = flip[g] ^ same_direction
                if component[h] < 0:
                    component[h], flip[h] = n_components, want
                    stack.append(h)
                elif flip[h] != want:
                    raise RuntimeError("teapot: surface is not orientable")
        n_components += 1
    return flip, component


def _closed_signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume of a surface closed by coning its boundary to a point.

    The apex is the mean of the boundary vertices (the origin for a closed
    surface), so an open cup or tube is capped across its openings.  Positive
    when the faces are wound counter-clockwise seen from outside.
    """
    edges = _directed_edges(faces)
    key = np.sort(edges, axis=1)
    unique_edges, counts = np.unique(key, axis=0, return_counts=True)
    boundary = np.unique(unique_edges[counts == 1])
    apex = vertices[boundary].mean(axis=0) if len(boundary) else np.zeros(3)
    p = vertices[faces] - apex
    return float(np.einsum("fi,fi->", p[:, 0], np.cross(p[:, 1], p[:, 2])) / 6.0)


def _orient_outward(vertices, faces, labels, n_labels):
    """Wind every face counter-clockwise seen from outside.

    Patches are first made mutually consistent across shared seams; then each
    connected piece (body, lid, handle, spout) is flipped as a whole if its
    capped signed volume is negative.
    """
    flip, component = _patch_flips(faces, labels, n_labels)
    faces = np.where(flip[labels][:, None], faces[:, ::-1], faces)
    face_component = component[labels]
    for c in np.unique(face_component):
        sel = face_component == c
        if _closed_signed_volume(vertices, faces[sel]) < 0.0:
            faces[sel] = faces[sel][:, ::-1]
    return faces


@functools.lru_cache(maxsize=8)
def _teapot_mesh(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Welded, outward-wound teapot in z-up teapot units (float64, int64)."""
    points = np.asarray(_TEAPOT_POINTS, dtype=np.float64)
    patches = np.asarray(_TEAPOT_PATCHES, dtype=np.int64)
    control = points[patches].reshape(len(patches), 4, 4, 3)
    samples = _eval_patches(control, resolution).reshape(-1, 3)
    faces = _grid_faces(len(patches), resolution)
    labels = np.repeat(np.arange(len(patches)), 2 * resolution * resolution)
    vertices, index = _weld(samples, _WELD_TOL)
    faces = index[faces]
    faces, labels = _drop_degenerate(faces, labels)
    vertices, faces = _compact(vertices, faces)
    faces = _orient_outward(vertices, faces, labels, len(patches))
    return vertices, faces


def teapot(
    resolution: int = 8, normalization: bool = True
) -> Mesh:
    """The Utah teapot, tessellated from Martin Newell's public-domain Utah
    teapot Bezier patches (rim, body, handle, spout, lid and bottom: 32
    bicubic patches on 306 control points).

    Each patch is sampled on a ``(resolution + 1)^2`` grid in ``(u, v)`` with
    two triangles per grid cell.  Coincident vertices along patch seams are
    welded, triangles that collapse after welding (around the lid knob and the
    centre of the bottom) are dropped, and all faces are wound
    counter-clockwise seen from outside (outward right-hand normals; the
    signed volume is positive).

    Orientation: +y is up, the spout points to +x and the handle to -x.

    The mesh is NOT closed (watertight), as in the original patch data: there
    is an annular gap between the lid and the rim, the spout tip is open, and
    the handle and spout pass into the body without being stitched to it.
    Every edge is used by at most two faces and every directed edge at most
    once (consistently wound, edge-manifold with boundary).

    Args:
      resolution: int in ``[2, 64]``, grid cells per patch side (at 1 the
        handle and spout would flatten into coincident sheets).  The default
        8 gives 4032 triangles on 2081 vertices; the count of triangles is
        ``2 * 32 * resolution**2 - 8 * resolution``.
      normalization: if True (default) translate and scale uniformly so that
        the bounding box is centred at the origin and its longest side (x,
        from handle to spout) spans exactly [-1, 1], as the loaders'
        ``normalization`` does (:func:`jaxnmr.io.obj.normalize_vertices`,
        computed here in float64):
        ``v -= v.min(0); v /= abs(v).max(); v *= 2; v -= v.max(0) / 2``.
        If False the vertices are in the original teapot units (x from -3 to
        about 3.43, y up from 0 to 3.15, z from -2 to 2).

    Returns:
      :class:`jaxnmr.Mesh`: ``vertices`` is ``float32 [N, 3]``, ``faces`` is
      ``int32 [F, 3]`` indices into ``vertices``.
    """
    r = _check_int("teapot", "resolution", resolution, _MIN_RESOLUTION, _MAX_RESOLUTION)
    normalization = _check_bool("teapot", "normalization", normalization)
    v, f = _teapot_mesh(r)
    # z-up -> y-up: (x, y, z) -> (x, z, -y), a proper rotation about x, so
    # winding (and outwardness) is unchanged.
    v = np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)
    if normalization:
        v = normalize_vertices(v, dtype=np.float64)
    return _as_mesh(v, f)
