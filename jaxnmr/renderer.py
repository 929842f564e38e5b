"""``Renderer``: a camera, lights and raster settings, and the pipeline that renders a mesh with them
(fill_back -> per-face lighting -> camera -> rasterization), as an immutable pytree.

A renderer is three parts, each a pytree whose array fields are leaves (traced, vmapped, differentiated, e.g. to
fit a camera's ``eye`` or a light) and whose shape-deciding settings are static:

* ``camera``: any camera of :mod:`jaxnmr.cameras` (:class:`~jaxnmr.LookAt`, :class:`~jaxnmr.Look`,
  :class:`~jaxnmr.CameraSpace`, :class:`~jaxnmr.OpenCV`, :class:`~jaxnmr.FoV`, :class:`~jaxnmr.Orthographic`):
  the renderer calls only its ``to_ndc`` and ``mirrored``;
* ``lights``: a tuple of :class:`~jaxnmr.AmbientLight`, :class:`~jaxnmr.DirectionalLight`,
  :class:`~jaxnmr.PointLight` (per-face lighting, :func:`jaxnmr.light_faces`);
* ``raster``: :class:`RasterSettings` (image size, anti-aliasing, fill_back, near, far, eps, background colour).

NMR's keyword constructor ``Renderer(camera_mode=..., eye=..., light_direction=..., image_size=...)``, its
attribute names (``renderer.eye``, ``renderer.camera_mode``, ...) and ``replace(eye=...)`` are a compatibility
layer over these three parts, so NMR code ports line by line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxnmr import _checks, _pytree, ffi
from jaxnmr._linalg import safe_norm
from jaxnmr.cameras import CAMERA_TYPES, CameraSpace, FoV, Look, LookAt, OpenCV, Orthographic
from jaxnmr.compositing import COMPOSITORS, gather_points, point_weights
from jaxnmr.lights import AmbientLight, DirectionalLight, as_lights, light_faces, nmr_lights
from jaxnmr.mesh import fill_back, vertices_to_faces
from jaxnmr.points import MAX_POINTS_PER_PIXEL, rasterize_points
from jaxnmr.rasterizer import RGBAD, downsample_2x2, rasterize_rgbad

__all__ = ["Renderer", "RasterSettings", "CAMERA_MODES"]


@_pytree.register(static=("image_size", "anti_aliasing", "fill_back", "near", "far", "eps"))
@dataclasses.dataclass(frozen=True, eq=False)
class RasterSettings:
    """How a :class:`Renderer` rasterizes (defaults as NMR's).

    Attributes:
      image_size: output side in pixels, int in [1, 16384] (static).
      anti_aliasing: render at twice the size and average 2x2 blocks (static bool).
      fill_back: draw every triangle from both sides (static bool; docs/conventions.md, "fill_back").
      near, far: the depth range drawn, camera-space z (static floats, 0 <= near < far).
      eps: the rasterizer's eps (static float >= 0; docs/conventions.md, "Eps values").
      background_color: RGB ``[..., 3]`` float32 of empty pixels (a pytree leaf).
    """

    image_size: int = 256
    anti_aliasing: bool = True
    fill_back: bool = True
    near: float = 0.1
    far: float = 100.0
    eps: float = 1e-3
    background_color: object = (0.0, 0.0, 0.0)

    def __post_init__(self):
        fn = "RasterSettings"
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("image_size", _checks.positive_int(fn, "image_size", self.image_size, 16384))
        near, far, eps = _checks.depth_range(fn, self.near, self.far, self.eps, "eps")
        set_("near", near)
        set_("far", far)
        set_("eps", eps)
        for name in ("anti_aliasing", "fill_back"):
            set_(name, bool(getattr(self, name)))
        set_("background_color", _checks.float_array(fn, "background_color", self.background_color, (3,)))

    def replace(self, **changes) -> "RasterSettings":
        """A copy with some settings changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)


# -- NMR's flat settings: the compatibility layer ------------------------------------------------------------------

CAMERA_MODES = ("look_at", "look", "projection", "none", "fov", "orthographic")
# NMR's name -> RasterSettings field
_RASTER_NAMES = {"image_size": "image_size", "anti_aliasing": "anti_aliasing", "fill_back": "fill_back",
                 "near": "near", "far": "far", "rasterizer_eps": "eps", "background_color": "background_color"}
# NMR's name -> nmr_lights argument
_LIGHT_NAMES = {"light_intensity_ambient": "intensity_ambient", "light_intensity_directional": "intensity_directional",
                "light_color_ambient": "color_ambient", "light_color_directional": "color_directional",
                "light_direction": "direction"}
# NMR's name -> camera field (where the camera has it)
_CAMERA_NAMES = {"eye": "eye", "camera_direction": "direction", "viewing_angle": "viewing_angle",
                 "perspective": "perspective", "K": "K", "R": "R", "t": "t", "dist_coeffs": "dist_coeffs",
                 "orig_size": "orig_size", "fov": "fov", "scale": "scale"}


@contextlib.contextmanager
def _reported_as(fn: str, nmr_names: dict[str, str]):
    """Re-raises the ValueError / TypeError of a part built from NMR's flat settings under the names the caller
    used: ``"FoV: fov must be ..."`` -> ``"Renderer: fov must be ..."``, and the part's argument named by NMR's
    name (``nmr_names``: NMR's name -> the part's, e.g. ``light_direction`` -> ``direction``)."""
    try:
        yield
    except (ValueError, TypeError) as error:
        part, _, rest = str(error).partition(": ")
        if part not in _PART_NAMES:
            raise
        for nmr, name in nmr_names.items():
            if rest.startswith(name + " "):
                rest = nmr + rest[len(name):]
                break
        raise type(error)(f"{fn}: {rest}") from error


_PART_NAMES = frozenset({c.__name__ for c in CAMERA_TYPES} | {"RasterSettings", "nmr_lights"})


def _nmr_camera(camera_mode="look_at", eye=None, camera_direction=(0.0, 0.0, 1.0), viewing_angle=30.0,
                perspective=True, K=None, R=None, t=None, dist_coeffs=None, orig_size=1024.0, fov=None, scale=None):
    """The camera of NMR's Renderer settings (each mode uses some of them and ignores the rest, as NMR does)."""
    _checks.one_of("Renderer", "camera_mode", camera_mode, CAMERA_MODES)
    if camera_mode == "look_at":
        return LookAt(eye, viewing_angle, perspective)
    if camera_mode == "look":
        return Look(eye, camera_direction, viewing_angle, perspective)
    if camera_mode == "none":
        return CameraSpace(viewing_angle, perspective)
    if camera_mode == "projection":
        missing = [name for name, x in (("K", K), ("R", R), ("t", t)) if x is None]
        if missing:
            raise ValueError(f"Renderer: camera_mode='projection' needs K, R and t; missing: {', '.join(missing)}")
        return OpenCV(K, R, t, dist_coeffs, orig_size)
    missing = [name for name, x in (("R", R), ("t", t)) if x is None]
    if missing:
        raise ValueError(f"Renderer: camera_mode={camera_mode!r} needs R and t (X_view = X_world @ R + t, e.g. from "
                         f"jaxnmr.look_at_view_transform); missing: {', '.join(missing)}")
    if camera_mode == "fov":
        return FoV(R, t, 60.0 if fov is None else fov)
    return Orthographic(R, t, 1.0 if scale is None else scale)


def _nmr_light_settings(lights: tuple) -> dict:
    """NMR's five light settings of an ``(AmbientLight, DirectionalLight)`` pair, as :func:`nmr_lights` made it."""
    if len(lights) != 2 or not isinstance(lights[0], AmbientLight) or not isinstance(lights[1], DirectionalLight):
        raise AttributeError("Renderer: NMR's light settings (light_intensity_ambient, ...) exist only for NMR's two "
                             "lights (an AmbientLight and a DirectionalLight); this renderer has "
                             f"{', '.join(type(l).__name__ for l in lights) or 'no lights'}: use renderer.lights")
    ambient, directional = lights
    length = safe_norm(directional.direction)[..., 0]
    return {"intensity_ambient": ambient.intensity, "color_ambient": ambient.color,
            "intensity_directional": jnp.where(length > 0, directional.intensity / jnp.where(length > 0, length, 1.0),
                                               0.0),
            "color_directional": directional.color, "direction": directional.direction}


def _split(fn: str, settings: dict) -> tuple[dict, dict, dict]:
    """NMR's flat settings split into (camera, lights, raster) arguments; an unknown name is a TypeError."""
    camera, lights, raster = {}, {}, {}
    for name, value in settings.items():
        if name == "camera_mode" or name in _CAMERA_NAMES:
            camera[name] = value
        elif name in _LIGHT_NAMES:
            lights[_LIGHT_NAMES[name]] = value
        elif name in _RASTER_NAMES:
            raster[_RASTER_NAMES[name]] = value
        else:
            raise TypeError(f"{fn} got an unexpected keyword argument {name!r} (NMR's settings, or camera=, lights=, "
                            f"raster=; a camera's own fields change with camera=renderer.camera.replace(...))")
    return camera, lights, raster


@_pytree.register()
@dataclasses.dataclass(frozen=True, eq=False, init=False)
class Renderer:
    """A camera, lights and raster settings; renders meshes (images channels-last, float32).

    Two ways to build one:

    * ``Renderer(camera=jaxnmr.LookAt(eye), lights=(jaxnmr.AmbientLight(intensity=0.5),
      jaxnmr.DirectionalLight((0, 1, 0), intensity=0.5)), raster=jaxnmr.RasterSettings(image_size=128))``; raster
      settings may also be given flat (``Renderer(camera=..., image_size=128)``). Parts not given are NMR's: the
      camera :class:`jaxnmr.LookAt` with NMR's default eye, NMR's two lights (exactly those of the example),
      :class:`RasterSettings`' defaults. The camera may be any pytree with ``to_ndc(vertices)`` and ``mirrored``.
    * NMR's keyword constructor: ``Renderer(camera_mode="look_at", eye=..., viewing_angle=30, perspective=True,
      camera_direction=..., K=..., R=..., t=..., dist_coeffs=..., orig_size=1024, fov=..., scale=...,
      light_intensity_ambient=0.5, light_intensity_directional=0.5, light_color_ambient=(1, 1, 1),
      light_color_directional=(1, 1, 1), light_direction=(0, 1, 0), image_size=256, anti_aliasing=True,
      fill_back=True, near=0.1, far=100, rasterizer_eps=1e-3, background_color=(0, 0, 0))``. camera_mode picks
      the camera: "look_at" :class:`jaxnmr.LookAt`, "look" :class:`jaxnmr.Look`, "none"
      :class:`jaxnmr.CameraSpace`, "projection" :class:`jaxnmr.OpenCV` (K, R, t required), "fov"
      :class:`jaxnmr.FoV` and "orthographic" :class:`jaxnmr.Orthographic` (R, t required, in the row-vector
      convention ``X_view = X_world @ R + t``, e.g. from :func:`jaxnmr.look_at_view_transform`); settings a mode
      does not use are ignored, as in NMR. Those names also read (``renderer.eye``) and ``replace`` them
      (``renderer.replace(eye=...)``).

    Departures from NMR (docs/departures.md): render_silhouettes and render_depth honour near, far and eps
    (NMR always used 0.1, 100 and 1e-4 there); images are channels-last ``[..., H, W, 3]``.
    """

    camera: object
    lights: tuple
    raster: RasterSettings

    def __init__(self, camera=None, lights=None, raster=None, **nmr_settings):
        fn = "Renderer"
        camera_args, light_args, raster_args = _split(fn, nmr_settings)
        for given, name, flat in ((camera, "camera", camera_args), (lights, "lights", light_args),
                                  (raster, "raster", raster_args)):
            if given is not None and flat:
                raise TypeError(f"{fn}: {name}= and NMR's {name} settings ({', '.join(nmr_settings)}) cannot be "
                                f"combined; set them on the {name} object")
        if camera is None:
            with _reported_as(fn, _CAMERA_NAMES):
                camera = _nmr_camera(**camera_args)
        if not (hasattr(camera, "to_ndc") and hasattr(camera, "mirrored")):
            raise TypeError(f"{fn}: camera must be a camera (jaxnmr.LookAt, jaxnmr.OpenCV, ...: anything with "
                            f"to_ndc and mirrored), got {type(camera).__name__}")
        if lights is None:
            with _reported_as(fn, _LIGHT_NAMES):
                lights = nmr_lights(**light_args)
        lights = tuple(as_lights(fn, lights))
        if raster is None:
            with _reported_as(fn, _RASTER_NAMES):
                raster = RasterSettings(**raster_args)
        if not isinstance(raster, RasterSettings):
            raise TypeError(f"{fn}: raster must be a jaxnmr.RasterSettings, got {type(raster).__name__}")
        object.__setattr__(self, "camera", camera)
        object.__setattr__(self, "lights", lights)
        object.__setattr__(self, "raster", raster)

    # -- NMR's names ---------------------------------------------------------------------------------------------

    def __getattr__(self, name: str):
        """NMR's flat attribute names, read from the camera, lights and raster settings."""
        if name.startswith("__") or name in ("camera", "lights", "raster"):
            raise AttributeError(name)
        if name == "camera_mode":
            return getattr(self.camera, "nmr_mode", type(self.camera).__name__)
        if name in _RASTER_NAMES:
            return getattr(self.raster, _RASTER_NAMES[name])
        if name in _LIGHT_NAMES:
            return _nmr_light_settings(self.lights)[_LIGHT_NAMES[name]]
        if name in _CAMERA_NAMES:  # None where the camera has no such setting (NMR: None in the other modes)
            return getattr(self.camera, _CAMERA_NAMES[name], None)
        raise AttributeError(f"'Renderer' object has no attribute {name!r}")

    def replace(self, **changes) -> "Renderer":
        """A copy with some parts or settings changed, validated like the constructor: ``camera=``, ``lights=``,
        ``raster=``, or any of NMR's flat names (``eye=``, ``image_size=``, ``light_direction=``, ...; changing
        ``camera_mode`` builds that mode's camera from the current NMR settings)."""
        fn = "Renderer"
        parts = {name: changes.pop(name) for name in ("camera", "lights", "raster") if name in changes}
        camera_args, light_args, raster_args = _split(fn, changes)
        camera = parts.get("camera", self.camera)
        if "camera_mode" in camera_args:  # a new mode: its camera from the current NMR settings and the changes
            current = {k: getattr(camera, f) for k, f in _CAMERA_NAMES.items() if hasattr(camera, f)}
            with _reported_as(fn, _CAMERA_NAMES):
                camera = _nmr_camera(**{**current, **camera_args})
        elif camera_args:  # settings this camera has change; the others are ignored, as NMR's modes ignore them
            fields = {_CAMERA_NAMES[k]: v for k, v in camera_args.items() if hasattr(camera, _CAMERA_NAMES[k])}
            if fields and not hasattr(camera, "replace"):
                raise TypeError(f"{fn}: the camera ({type(camera).__name__}) has no replace(); pass camera=...")
            if fields:
                with _reported_as(fn, _CAMERA_NAMES):
                    camera = camera.replace(**fields)
        lights = parts.get("lights", self.lights)
        if light_args:
            with _reported_as(fn, _LIGHT_NAMES):
                lights = nmr_lights(**{**_nmr_light_settings(tuple(lights)), **light_args})
        raster = parts.get("raster", self.raster)
        if raster_args:
            with _reported_as(fn, _RASTER_NAMES):
                raster = raster.replace(**raster_args)
        return Renderer(camera, lights, raster)

    # -- pipeline -------------------------------------------------------------------------------------------

    def _pipeline(self, fn: str, vertices, faces, textures, outputs: tuple[bool, bool, bool]) -> RGBAD:
        """Validation (and, on concrete faces, the index check) here; the rest compiled once per shape and
        settings by :func:`_render`, so that a first eager call costs one compilation, not hundreds of
        op-by-op dispatches. Inside a caller's ``jit`` the inner ``jit`` is inlined."""
        vertices = _checks.float_array(fn, "vertices", vertices, ("N", 3))
        faces = _checks.index_array(fn, "faces", faces, ("F", 3))
        if textures is not None:
            textures = _checks.textures_per_face(f"Renderer.{fn}", textures, faces.shape, -2)
        _checks.indices_in_range(f"Renderer.{fn}", faces, vertices.shape[-2])
        return _render(self, vertices, faces, textures, outputs, kernels=ffi.registered_platforms())

    def render_rgbad(self, vertices, faces, textures) -> RGBAD:
        """rgb ``[..., H, W, 3]``, alpha and depth ``[..., H, W]`` (float32) of a textured mesh.

        Args:
          vertices: float ``[..., N, 3]`` world coordinates. faces: int ``[..., F, 3]``.
          textures: float ``[..., F, T, T, T, 3]``. Leading dims broadcast (e.g. one mesh, many eyes).
        """
        return self._pipeline("render_rgbad", vertices, faces, textures, (True, True, True))

    def render(self, vertices, faces, textures) -> jax.Array:
        """Lit, textured colour image ``[..., H, W, 3]`` float32; arguments as :meth:`render_rgbad`."""
        return self._pipeline("render", vertices, faces, textures, (True, False, False)).rgb

    def render_silhouettes(self, vertices, faces) -> jax.Array:
        """Silhouette ``[..., H, W]`` float32 in [0, 1]; vertices ``[..., N, 3]``, faces int ``[..., F, 3]``."""
        return self._pipeline("render_silhouettes", vertices, faces, None, (False, True, False)).alpha

    def render_depth(self, vertices, faces) -> jax.Array:
        """Depth ``[..., H, W]`` float32 (camera-space z; ``far`` where empty)."""
        return self._pipeline("render_depth", vertices, faces, None, (False, False, True)).depth

    def render_points(self, points, features, radius=None, points_per_pixel: int = 8,
                      compositor: str = "alpha") -> RGBAD:
        """Renders a point cloud: composited features, alpha and depth (docs/points.md, "Rendering points").

        The camera maps the points to NDC, each pixel keeps its ``points_per_pixel`` nearest covering points
        (:func:`jaxnmr.rasterize_points`, at twice the size with anti-aliasing), the compositor blends their
        features front to back (:mod:`jaxnmr.compositing`), the background fills what alpha leaves (3 channels
        only) and, with anti-aliasing, 2x2 blocks are averaged. No lighting: features are shown as given.

        Args:
          points: float ``[..., P, 3]`` world coordinates.
          features: float ``[..., P, C]`` per-point features (C = 3 for colours; any C is composited).
          radius: each point's disc radius in NDC units (one pixel of the output is ``2 / image_size``): a
            scalar, ``[..., 1]`` or ``[..., P]``; None (default) is one output pixel, which closes the gaps of a
            sample dense enough to put a point in every pixel.
          points_per_pixel: K, the nearest points blended per (internal) pixel, int in [1, 64].
          compositor: "alpha" (front-to-back alpha compositing) or "weighted_sum" (normalised weighted sum).
        Returns:
          :class:`jaxnmr.RGBAD`: rgb float32 ``[..., H, W, C]`` (the composited features, over
          ``background_color`` when C = 3), alpha ``[..., H, W]`` and depth ``[..., H, W]`` (z of the nearest
          covering point, ``far`` where none; averaged over 2x2 blocks with anti-aliasing, like a mesh's).
          Leading dims broadcast between points, features, radius and the camera's fields.
        """
        fn = "Renderer.render_points"
        points = _checks.float_array(fn, "points", points, ("P", 3))
        features = _checks.float_array(fn, "features", features, ("P", "C"))
        if features.shape[-2] != points.shape[-2]:
            raise ValueError(f"{fn}: features must have one row per point: points has P={points.shape[-2]} "
                             f"(shape {points.shape}), features has {features.shape[-2]} (shape {features.shape})")
        if radius is None:
            radius = 2.0 / self.raster.image_size
        radius = _checks.point_radius(fn, radius, points.shape)
        K = _checks.positive_int(fn, "points_per_pixel", points_per_pixel, MAX_POINTS_PER_PIXEL)
        _checks.one_of(fn, "compositor", compositor, tuple(COMPOSITORS))
        _checks.broadcast_batch(fn, points=points.shape[:-2], features=features.shape[:-2],
                                radius=radius.shape[:-1])
        return _render_points(self, points, features, radius, K, compositor, kernels=ffi.registered_platforms())


@functools.partial(jax.jit, static_argnames=("outputs", "kernels"))
def _render(renderer: Renderer, vertices, faces, textures, outputs: tuple[bool, bool, bool],
            kernels: tuple[str, ...]) -> RGBAD:
    """The Renderer's pipeline after validation: fill_back, lighting, camera, rasterization (compiled).

    ``kernels`` (the platforms whose kernels are registered) is part of the cache key: tracing chooses kernel or
    reference per platform, so a trace must not outlive the registrations it was made with."""
    del kernels
    raster, camera = renderer.raster, renderer.camera
    if raster.fill_back:
        if textures is None:
            faces = fill_back(faces)
        else:
            faces, textures = fill_back(faces, textures)
    if textures is not None:
        textures = light_faces(vertices_to_faces(vertices, faces), textures, renderer.lights, mirrored=camera.mirrored)
    rgb, alpha, depth = outputs
    return rasterize_rgbad(
        vertices_to_faces(camera.to_ndc(vertices), faces), textures, raster.image_size, raster.anti_aliasing,
        raster.near, raster.far, raster.eps, raster.background_color, return_rgb=rgb, return_alpha=alpha,
        return_depth=depth,
    )


@functools.partial(jax.jit, static_argnames=("points_per_pixel", "compositor", "kernels"))
def _render_points(renderer: Renderer, points, features, radius, points_per_pixel: int, compositor: str,
                   kernels: tuple[str, ...]) -> RGBAD:
    """:meth:`Renderer.render_points` after validation (compiled; ``kernels`` as in :func:`_render`)."""
    del kernels
    raster = renderer.raster
    size = raster.image_size * (2 if raster.anti_aliasing else 1)
    fragments = rasterize_points(renderer.camera.to_ndc(points), radius, size, points_per_pixel, raster.near,
                                 raster.far)
    weights = point_weights(fragments, radius)
    out, alpha = COMPOSITORS[compositor](weights, gather_points(features, fragments.index))
    if out.shape[-1] == 3:
        out = out + (1.0 - alpha)[..., None] * raster.background_color[..., None, None, :]
    depth = fragments.depth[..., 0]
    if raster.anti_aliasing:
        out, alpha, depth = downsample_2x2(out), downsample_2x2(alpha, False), downsample_2x2(depth, False)
    batch = jnp.broadcast_shapes(out.shape[:-3], alpha.shape[:-2], depth.shape[:-2])  # every input's batch dims
    image = batch + alpha.shape[-2:]
    return RGBAD(jnp.broadcast_to(out, image + out.shape[-1:]), jnp.broadcast_to(alpha, image),
                 jnp.broadcast_to(depth, image))
