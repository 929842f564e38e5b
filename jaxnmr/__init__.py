"""jaxnmr: a differentiable mesh renderer for JAX (the Neural 3D Mesh Renderer, rebuilt on the XLA FFI).

The public API (DESIGN §3 and its extensions); submodules ``jaxnmr.meshes`` (built-in meshes), ``jaxnmr.losses``
(mesh regularisers), ``jaxnmr.scale`` (several devices, exported renders) and ``jaxnmr.reference`` (the pure-jnp
oracle) are importable too.
"""

from jaxnmr.cameras import get_points_from_angles, look, look_at, perspective, projection
from jaxnmr.geometry import chamfer_distance, marching_cubes, sample_points
from jaxnmr.io import load_mesh, load_obj, save_obj
from jaxnmr.lighting import lighting
from jaxnmr.mesh import check_mesh, vertices_to_faces
from jaxnmr.rasterize import RGBAD, rasterize, rasterize_depth, rasterize_rgbad, rasterize_silhouettes
from jaxnmr.renderer import Renderer
from jaxnmr.voxels import voxels_to_mesh

__version__ = "0.1.0"

__all__ = [
    "get_points_from_angles",
    "look_at",
    "look",
    "perspective",
    "projection",
    "lighting",
    "vertices_to_faces",
    "check_mesh",
    "RGBAD",
    "rasterize_rgbad",
    "rasterize",
    "rasterize_silhouettes",
    "rasterize_depth",
    "Renderer",
    "load_obj",
    "save_obj",
    "load_mesh",
    "voxels_to_mesh",
    "sample_points",
    "chamfer_distance",
    "marching_cubes",
]
