"""Mesh and image files.

* :func:`load_obj` and :func:`save_obj` (:mod:`jaxnmr.io.obj`): Wavefront OBJ read and written as NMR does,
  with MTL colours, image textures and the texture atlas.
* :func:`load_mesh` and :func:`load_textured_mesh` (:mod:`jaxnmr.io.formats`): any format trimesh reads (and
  OBJ), as a :class:`jaxnmr.Mesh`, with its appearance for the latter.
* :mod:`jaxnmr.io.images`: reading texture images, writing PNG and GIF files, ``to_uint8``, ``contact_sheet``.
"""

from jaxnmr.io.formats import load_mesh, load_textured_mesh
from jaxnmr.io.obj import load_obj, save_obj

__all__ = ["load_obj", "save_obj", "load_mesh", "load_textured_mesh"]
