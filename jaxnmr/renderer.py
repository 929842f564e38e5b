"""``Renderer``: NMR's rendering pipeline (fill_back -> lighting -> camera -> perspective -> rasterize) as an
immutable pytree (NMR_SPEC §7, DESIGN §3).

Array-valued settings (eye, camera_direction, viewing_angle, K, R, t, dist_coeffs, fov, scale, the light's
intensities, colours and direction, background_color) are pytree leaves: they can be traced, vmapped and
differentiated, e.g. to optimise ``eye``.
Settings that decide shapes or code paths (image_size, anti_aliasing, fill_back, perspective, camera_mode,
near, far, rasterizer_eps, orig_size) are static.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnmr import _checks, ffi
from jaxnmr.cameras import _angle_in_open_range, fov_perspective, look, look_at, orthographic, perspective, projection
from jaxnmr.lighting import lighting
from jaxnmr.mesh import fill_back, vertices_to_faces
from jaxnmr.rasterize import RGBAD, rasterize_rgbad

__all__ = ["Renderer", "CAMERA_MODES"]

CAMERA_MODES = ("look_at", "look", "projection", "none", "fov", "orthographic")
_LEAVES = (
    "eye",
    "camera_direction",
    "viewing_angle",
    "K",
    "R",
    "t",
    "dist_coeffs",
    "light_intensity_ambient",
    "light_intensity_directional",
    "light_color_ambient",
    "light_color_directional",
    "light_direction",
    "background_color",
    "fov",
    "scale",
)
# Camera modes whose pictures are not mirrored and which light faces by the normal of the reversed vertex order.
_UNMIRRORED_LIGHTING = ("fov", "orthographic")
_STATIC = ("image_size", "anti_aliasing", "fill_back", "perspective", "camera_mode", "near", "far",
           "rasterizer_eps", "orig_size")


def default_eye(viewing_angle: float = 30.0) -> tuple[float, float, float]:
    """NMR's default camera position ``(0, 0, -(1 / tan(angle) + 1))``: the unit cube's near face fills the view."""
    return (0.0, 0.0, -(1.0 / math.tan(math.radians(viewing_angle)) + 1.0))


@dataclasses.dataclass(frozen=True, eq=False)
class Renderer:
    """NMR's renderer as a frozen pytree. Build once, ``replace(...)`` to change settings.

    Attributes (defaults as NMR's):
      image_size: output size in pixels (int >= 1). anti_aliasing: render at 2x and average 2x2.
      background_color: RGB ``[..., 3]``. fill_back: draw every triangle from both sides.
      perspective: apply :func:`jaxnmr.perspective` (else orthographic with half-width 1).
      viewing_angle: half field of view, degrees. eye: camera position ``[..., 3]`` (None: NMR's default for a
        30 degree view, ``(0, 0, -2.732)``, computed once from ``viewing_angle`` at construction).
      camera_mode: "look_at" (at the origin), "look" (along camera_direction), "projection" (an OpenCV camera,
        :func:`jaxnmr.projection`), "none" (vertices already in camera space), "fov" or "orthographic" (below).
        camera_direction: ``[..., 3]`` for "look".
      K, R, t, dist_coeffs, orig_size: the "projection" camera (NMR_SPEC §2.5, §7.2): K ``[..., 3, 3]``,
        R ``[..., 3, 3]`` and t ``[..., 3]`` (or NMR's ``[..., 1, 3]``, OpenCV's ``[..., 3, 1]``) are required in
        that mode (ValueError otherwise) and are pytree leaves; dist_coeffs ``[..., 4 | 5 | 8]`` (OpenCV's order
        k1, k2, p1, p2[, k3[, k4, k5, k6]]) defaults to zeros there
        (it stays None in the other modes); orig_size (static, > 0, default 1024) is the side of the frame K
        refers to. In "projection" mode ``perspective``, ``viewing_angle`` and ``eye`` are not used, and the
        picture is a non-mirrored physical view (look_at/look mirror it, NMR_SPEC §1.2).
      camera_mode "fov" / "orthographic": PyTorch3D's FoV perspective / orthographic cameras
        (:func:`jaxnmr.fov_perspective`, :func:`jaxnmr.orthographic`), pictures not mirrored. They reuse the
        fields ``R`` and ``t``, **in PyTorch3D's row-vector convention** ``X_view = X_world @ R + t`` (view +x
        left, +y up, +z into the scene), e.g. ``R, t = jaxnmr.look_at_view_transform(dist, elev, azim)``;
        both are required (ValueError otherwise). This is not the "projection" mode's OpenCV convention
        (``P = R X + t``, y down): the same camera has ``R_opencv = diag(-1, -1, 1) R.T`` and
        ``t_opencv = diag(-1, -1, 1) t``. fov: full vertical field of view in degrees ``[...]``, default 60 in
        "fov" mode (equal to NMR's default ``viewing_angle`` of 30, a half angle). scale: ``[...]``, default 1
        in "orthographic" mode, which shows the view-space square ``[-1, 1]^2 / scale``. Both stay None in the
        other modes; ``perspective``, ``viewing_angle`` and ``eye`` are not used in these modes, and the
        Renderer's near / far take the part of PyTorch3D's znear / zfar. Lighting in these modes takes each
        face's normal with the orientation opposite to NMR's (``(V2 - V1) x (V0 - V1)``): the picture is not
        mirrored, so with fill_back the copy that survives culling is the other one of each pair, and this keeps
        NMR's two-sided lighting (the drawn copy lit by its normal toward the viewer, NMR_SPEC §1.6). A scene
        then looks as under look_at from the same eye, mirrored left-right.
      near, far: depth range. light_*: see :func:`jaxnmr.lighting`. rasterizer_eps: the rasterizer's eps.

    Departures from NMR (DESIGN §3): render_silhouettes and render_depth honour near, far and rasterizer_eps
    (NMR always used 0.1, 100 and 1e-4 there); images are channels-last ``[..., H, W, 3]``.
    """

    image_size: int = 256
    anti_aliasing: bool = True
    background_color: object = (0.0, 0.0, 0.0)
    fill_back: bool = True
    perspective: bool = True
    viewing_angle: object = 30.0
    eye: object = None
    camera_mode: str = "look_at"
    camera_direction: object = (0.0, 0.0, 1.0)
    near: float = 0.1
    far: float = 100.0
    light_intensity_ambient: object = 0.5
    light_intensity_directional: object = 0.5
    light_color_ambient: object = (1.0, 1.0, 1.0)
    light_color_directional: object = (1.0, 1.0, 1.0)
    light_direction: object = (0.0, 1.0, 0.0)
    rasterizer_eps: float = 1e-3
    K: object = None
    R: object = None
    t: object = None
    dist_coeffs: object = None
    orig_size: float = 1024.0
    fov: object = None
    scale: object = None

    def __post_init__(self):
        fn = "Renderer"
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("image_size", _checks.positive_int(fn, "image_size", self.image_size, 16384))
        _checks.one_of(fn, "camera_mode", self.camera_mode, CAMERA_MODES)
        near, far, eps = _checks.depth_range(fn, self.near, self.far, self.rasterizer_eps, "rasterizer_eps")
        set_("near", near)
        set_("far", far)
        set_("rasterizer_eps", eps)
        for name in ("anti_aliasing", "fill_back", "perspective"):
            set_(name, bool(getattr(self, name)))
        if self.eye is None:
            angle = self.viewing_angle
            if isinstance(angle, jax.core.Tracer):
                raise TypeError(f"{fn}: eye=None needs a concrete viewing_angle to compute the default eye")
            _check_viewing_angle(angle)
            set_("eye", default_eye(float(angle)))
        vectors = ("eye", "camera_direction", "light_color_ambient", "light_color_directional",
                   "light_direction", "background_color")
        for name in vectors:
            set_(name, _checks.float_array(fn, name, getattr(self, name), (3,)))
        for name in ("viewing_angle", "light_intensity_ambient", "light_intensity_directional"):
            set_(name, _checks.float_array(fn, name, getattr(self, name), ()))
        self._check_camera_values()
        set_("orig_size", _checks.static_float(fn, "orig_size", self.orig_size))
        if not self.orig_size > 0:
            raise ValueError(f"{fn}: orig_size must be > 0, got {self.orig_size}")
        if self.camera_mode == "projection":
            missing = [name for name in ("K", "R", "t") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"{fn}: camera_mode='projection' needs K, R and t; missing: {', '.join(missing)}")
            if self.dist_coeffs is None:
                set_("dist_coeffs", jnp.zeros(5, jnp.float32))
        if self.camera_mode in ("fov", "orthographic"):
            missing = [name for name in ("R", "t") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"{fn}: camera_mode={self.camera_mode!r} needs R and t (X_view = X_world @ R + t, "
                                 f"e.g. from jaxnmr.look_at_view_transform); missing: {', '.join(missing)}")
            if self.camera_mode == "fov" and self.fov is None:
                set_("fov", 60.0)
            if self.camera_mode == "orthographic" and self.scale is None:
                set_("scale", 1.0)
        # t and dist_coeffs take several layouts in "projection" mode (OpenCV's (3, 1) tvec, 4, 5 or 8
        # coefficients; jaxnmr.projection checks them); R and t are PyTorch3D's row-vector pair in "fov" and
        # "orthographic" modes.
        t_shape = ("n",) if self.camera_mode == "projection" else (3,)
        for name, trailing in (("K", (3, 3)), ("R", (3, 3)), ("t", t_shape), ("dist_coeffs", ("n",)), ("fov", ()),
                               ("scale", ())):
            if getattr(self, name) is not None:
                set_(name, _checks.float_array(fn, name, getattr(self, name), trailing))
        if self.fov is not None:
            _angle_in_open_range(fn, "fov", self.fov, 180.0)
        if self.camera_mode == "projection":  # the layouts of t and dist_coeffs, checked on shapes only
            jax.eval_shape(lambda *camera: projection(jnp.zeros((1, 3), jnp.float32), *camera, self.orig_size),
                           self.K, self.R, self.t, self.dist_coeffs)

    def _check_camera_values(self) -> None:
        """Raises ValueError for a camera that can see nothing, where the values are concrete (not traced).

        Under ``jit`` the values are unknown when this runs; such a camera then renders the background only (no
        face has finite NDC coordinates in front of it, so none is drawn) and every gradient is zero.
        """
        fn = "Renderer"
        angle, eye, direction = (_checks.concrete(x) for x in (self.viewing_angle, self.eye, self.camera_direction))
        if self._uses_viewing_angle and angle is not None:
            _check_viewing_angle(angle)
        if self.camera_mode == "look_at" and eye is not None and np.any(np.all(eye == 0, axis=-1)):
            # look_at looks at the origin: an eye there has no viewing direction.
            raise ValueError(f"{fn}: eye {eye.tolist()!r} is at the point looked at (the origin in "
                             "camera_mode='look_at'), so there is no viewing direction; move the eye away")
        if self.camera_mode == "look" and direction is not None and np.any(np.all(direction == 0, axis=-1)):
            raise ValueError(f"{fn}: camera_direction must be non-zero in camera_mode='look', got "
                             f"{direction.tolist()!r}")

    def replace(self, **changes) -> "Renderer":
        """A copy with some settings changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    # -- pipeline -------------------------------------------------------------------------------------------

    @property
    def _uses_viewing_angle(self) -> bool:
        return self.camera_mode in ("look_at", "look", "none") and self.perspective

    def _to_ndc(self, vertices: jax.Array) -> jax.Array:
        mode = self.camera_mode
        if mode in ("look_at", "look", "none"):
            return self._to_ndc_nmr(vertices)
        if mode == "projection":
            return projection(vertices, self.K, self.R, self.t, self.dist_coeffs, self.orig_size)
        if mode == "fov":
            return fov_perspective(vertices, self.R, self.t, self.fov)
        return orthographic(vertices, self.R, self.t, self.scale)

    def _to_ndc_nmr(self, vertices: jax.Array) -> jax.Array:
        """NMR's cameras (look_at, look, none; then perspective). A camera that sees nothing (the eye at the
        point looked at, a zero direction, a viewing angle outside (0, 90)) raises where its values are
        concrete; traced, it gets harmless stand-in values and every face NaN coordinates: nothing is drawn and
        every gradient is exactly zero (no NaN)."""
        mode = self.camera_mode
        seen = jnp.ones((), bool)
        eye, direction, angle = self.eye, self.camera_direction, self.viewing_angle
        if mode != "none":
            axis = -eye if mode == "look_at" else direction  # look_at looks at the origin
            seen = jnp.any(axis != 0, axis=-1)
        if self.perspective:
            seen = seen & (angle > 0) & (angle < 90)
        if mode == "look_at":
            vertices = look_at(vertices, jnp.where(seen[..., None], eye, jnp.asarray(default_eye(), jnp.float32)))
        elif mode == "look":
            vertices = look(vertices, eye, jnp.where(seen[..., None], direction, jnp.asarray([0.0, 0.0, 1.0])))
        if self.perspective:
            vertices = perspective(vertices, jnp.where(seen, angle, 30.0))
        return jnp.where(seen[..., None, None], vertices, jnp.nan)

    def _rasterize(self, faces_ndc, textures, rgb, alpha, depth) -> RGBAD:
        return rasterize_rgbad(
            faces_ndc, textures, self.image_size, self.anti_aliasing, self.near, self.far, self.rasterizer_eps,
            self.background_color, return_rgb=rgb, return_alpha=alpha, return_depth=depth,
        )

    def _lit(self, vertices, faces, textures):
        faces_world = vertices_to_faces(vertices, faces)
        if self.camera_mode in _UNMIRRORED_LIGHTING:  # the normal from the reversed vertex order (see above)
            faces_world = faces_world[..., ::-1, :]
        return lighting(
            faces_world, textures, self.light_intensity_ambient,
            self.light_intensity_directional, self.light_color_ambient, self.light_color_directional,
            self.light_direction,
        )

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

    def _traced_pipeline(self, vertices, faces, textures, outputs: tuple[bool, bool, bool]) -> RGBAD:
        if self.fill_back:
            if textures is None:
                faces = fill_back(faces)
            else:
                faces, textures = fill_back(faces, textures)
        lit = self._lit(vertices, faces, textures) if textures is not None else None
        return self._rasterize(vertices_to_faces(self._to_ndc(vertices), faces), lit, *outputs)

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


@functools.partial(jax.jit, static_argnames=("outputs", "kernels"))
def _render(renderer: Renderer, vertices, faces, textures, outputs: tuple[bool, bool, bool],
            kernels: tuple[str, ...]) -> RGBAD:
    """The Renderer's pipeline after validation: fill_back, lighting, camera, rasterization (compiled).

    ``kernels`` (the platforms whose kernels are registered) is part of the cache key: tracing chooses kernel or
    reference per platform, so a trace must not outlive the registrations it was made with."""
    del kernels
    return renderer._traced_pipeline(vertices, faces, textures, outputs)


def _check_viewing_angle(angle) -> None:
    angle = np.asarray(angle)
    if not np.all((angle > 0) & (angle < 90)):
        raise ValueError(f"Renderer: viewing_angle is the half field of view in degrees and must be in (0, 90), "
                         f"got {angle.tolist()!r} (0 sees nothing, 90 sees everything at one point)")


def _flatten(r: Renderer):
    return tuple(getattr(r, k) for k in _LEAVES), tuple(getattr(r, k) for k in _STATIC)


def _unflatten(static, leaves) -> Renderer:
    r = object.__new__(Renderer)
    for k, v in zip(_LEAVES, leaves):
        object.__setattr__(r, k, v)
    for k, v in zip(_STATIC, static):
        object.__setattr__(r, k, v)
    return r


jax.tree_util.register_pytree_node(Renderer, _flatten, _unflatten)
