"""jaxnmr: a differentiable mesh renderer for JAX (the Neural 3D Mesh Renderer, rebuilt on the XLA FFI).

The public API (docs/architecture.md, "Module map"); submodules ``jaxnmr.meshes`` (built-in meshes), ``jaxnmr.losses``
(mesh regularisers), ``jaxnmr.scale`` (several devices, exported renders) and ``jaxnmr.reference`` (the pure-jnp
oracle) are importable too.
"""

from jaxnmr.cameras import get_points_from_angles, look, look_at, perspective, projection
from jaxnmr.geometry import chamfer_distance, marching_cubes, sample_points
from jaxnmr.gbuffers import GBuffers, interpolate, rasterize_gbuffers
from jaxnmr.io import load_mesh, load_obj, save_obj
from jaxnmr.lights import AmbientLight, DirectionalLight, PointLight, light_faces, lighting
from jaxnmr.mesh import Mesh, check_mesh, vertex_normals, vertices_to_faces
from jaxnmr.rasterizer import RGBAD, rasterize, rasterize_depth, rasterize_rgbad, rasterize_silhouettes
from jaxnmr.renderer import RasterSettings, Renderer
from jaxnmr.shading import composite, contour, flat_normals, lighting_phong, phong, toon
from jaxnmr.voxels import voxels_to_mesh
from jaxnmr.cameras import fov_perspective, look_at_view_transform, orthographic, rodrigues, turntable_eyes
from jaxnmr.cameras import CameraSpace, FoV, Look, LookAt, OpenCV, Orthographic
from jaxnmr.io import load_textured_mesh
from jaxnmr.textures import sample_bilinear, textures_to_vertex_colors, uv_to_textures, vertex_colors_to_textures
from jaxnmr.points import PointFragments, rasterize_points
from jaxnmr.compositing import alpha_composite, gather_points, point_weights, weighted_sum_composite
from jaxnmr.unproject import pixel_centers, unproject_depth

__version__ = "0.1.0"

__all__ = [
    "get_points_from_angles",
    "look_at",
    "look",
    "perspective",
    "projection",
    "lighting",
    "light_faces",
    "AmbientLight",
    "vertices_to_faces",
    "check_mesh",
    "RGBAD",
    "rasterize_rgbad",
    "rasterize",
    "rasterize_silhouettes",
    "rasterize_depth",
    "Renderer",
    "RasterSettings",
    "LookAt",
    "Look",
    "CameraSpace",
    "OpenCV",
    "FoV",
    "Orthographic",
    "turntable_eyes",
    "load_obj",
    "save_obj",
    "load_mesh",
    "voxels_to_mesh",
    "sample_points",
    "chamfer_distance",
    "marching_cubes",
    "GBuffers",
    "rasterize_gbuffers",
    "interpolate",
    "vertex_normals",
    "DirectionalLight",
    "PointLight",
    "lighting_phong",
    "phong",
    "flat_normals",
    "toon",
    "contour",
    "composite",
    "look_at_view_transform",
    "fov_perspective",
    "orthographic",
    "rodrigues",
    "Mesh",
    "load_textured_mesh",
    "sample_bilinear",
    "uv_to_textures",
    "vertex_colors_to_textures",
    "textures_to_vertex_colors",
    "PointFragments",
    "rasterize_points",
    "point_weights",
    "gather_points",
    "alpha_composite",
    "weighted_sum_composite",
    "unproject_depth",
    "pixel_centers",
]
