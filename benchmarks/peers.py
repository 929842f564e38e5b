"""jaxnmr side by side with its CPU peers, in one process, on one scene (issue #6).

Scene: NMR's teapot (``common.teapot()``, 2464 faces), NMR's default camera (eye (0, 0, -2.7320508) looking at
the origin, up +y, 60 degree vertical field of view), 256x256. Timed with warm-up, medians of ``--runs``
(``--slow-runs`` for anything taking more than ~2 s a call):

1. jaxnmr ``Renderer(image_size=256)`` (anti-aliased, 512^2 internally): forward ``render_silhouettes`` and
   ``render`` (white T=4 textures); forward + backward = jitted ``jax.value_and_grad`` w.r.t. the vertices of a
   squared-error silhouette loss and of an rgb loss.
2. Mitsuba 3 (``llvm_ad_rgb``, integrator ``direct_projective``, 1 spp, constant environment light): forward
   ``mi.render`` (and an ``aov`` depth forward), and forward + vertex gradient (``dr.enable_grad`` on the mesh's
   vertex positions, squared loss to a target image, ``dr.backward``, gradient evaluated and synchronised) in
   three settings: ``sppi=0`` (primary-visibility silhouettes + continuous terms: what NMR's gradient has),
   ``guiding=none`` and the defaults (octree-guided indirect visibility, seconds a call: ``--octree-runs``).
   Criterion 1 is judged against the fastest of the three.
3. jaxrenderer 0.3.2 (pure JAX, ``Renderer.get_camera_image``): jitted forward; one call of its vertex gradient,
   checked for NaN/zero.
4. The dense pure-jnp oracle ``jaxnmr.reference`` in place of the kernel (``render_silhouettes``).

Prints a markdown table, the ratios of issue #6's criterion 1 (jaxnmr forward+backward <= Mitsuba forward +
vertex gradient) and its jaxrenderer criterion (jaxrenderer forward >= 100x jaxnmr forward+backward), the
versions and the machine, and writes ``benchmarks/peers.png`` (jaxnmr silhouette | Mitsuba | jaxrenderer).
A peer that is missing or fails is skipped with its reason; the script itself does not fail.

Camera convention: jaxnmr (like NMR) mirrors x relative to a physical camera (docs/conventions.md, "Mirroring";
from the default eye, world +x is on the image's right). Mitsuba and jaxrenderer are physical cameras, so their
images are the mirror images of jaxnmr's; the overlap (IoU) of the silhouettes is printed both as rendered and
with the peer's image mirrored, and the PNG shows the peers mirrored left-right so that they line up with jaxnmr.

Peers are installed by ``bash benchmarks/install_peers.sh`` into ``$JAXNMR_PEERS_DIR`` (default
``~/.cache/jaxnmr/peers``), which this script puts on ``sys.path``.

Usage: python benchmarks/peers.py [--runs 20] [--slow-runs 5] [--octree-runs 3] [--reference-runs 10]
                                  [--png benchmarks/peers.png] [--skip-reference] [--skip-jaxrenderer-grad]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import pathlib
import sys
import time
import traceback
import warnings
from importlib import metadata
from unittest import mock

PEERS_DIR = os.environ.get("JAXNMR_PEERS_DIR", os.path.expanduser("~/.cache/jaxnmr/peers"))
if os.path.isdir(PEERS_DIR) and PEERS_DIR not in sys.path:
    sys.path.append(PEERS_DIR)  # after the environment's own packages: never shadow its jax/numpy

import jax
import jax.numpy as jnp
import numpy as np

import jaxnmr
from jaxnmr import ffi

from common import machine, median_time, teapot

SIZE = 256
EYE = (0.0, 0.0, -(1.0 / math.tan(math.radians(30.0)) + 1.0))  # NMR's default: (0, 0, -2.7320508)
VFOV = 60.0  # NMR's viewing_angle is the half angle: 30 degrees


class Rows:
    def __init__(self):
        self.rows = []  # (peer, what, median_s, times)
        self.skipped = []  # (peer, reason)
        self.notes = []

    def add(self, peer, what, med, times):
        self.rows.append((peer, what, med, times))
        print(f"  {peer}: {what}: median {med * 1e3:.2f} ms over {len(times)} runs", flush=True)

    def get(self, peer, what):
        for p, w, med, _ in self.rows:
            if p == peer and w == what:
                return med
        return None

    def skip(self, peer, reason):
        self.skipped.append((peer, reason))
        print(f"  SKIPPED {peer}: {reason}", flush=True)


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def _time_host(fn, runs, warmup=2):
    """Median wall time of ``fn()`` (which must return only once its work is finished)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times


# ----------------------------------------------------------------------------------------------------------------
# 1 and 4: jaxnmr and the dense oracle


def bench_jaxnmr(v, f, rows, images, args):
    textures = np.ones((f.shape[0], 4, 4, 4, 3), np.float32)
    renderer = jaxnmr.Renderer(image_size=SIZE)
    rng = np.random.default_rng(0)
    target_sil = jnp.asarray(rng.uniform(size=(SIZE, SIZE)).astype(np.float32))
    target_rgb = jnp.asarray(rng.uniform(size=(SIZE, SIZE, 3)).astype(np.float32))
    vj = jnp.asarray(v)

    sil = jax.jit(lambda v: renderer.render_silhouettes(v, f))
    rgb = jax.jit(lambda v: renderer.render(v, f, textures))
    sil_loss = lambda v: jnp.sum((renderer.render_silhouettes(v, f) - target_sil) ** 2)
    rgb_loss = lambda v: jnp.sum((renderer.render(v, f, textures) - target_rgb) ** 2)
    sil_vg = jax.jit(jax.value_and_grad(sil_loss))
    rgb_vg = jax.jit(jax.value_and_grad(rgb_loss))

    rows.add("jaxnmr", "forward: render_silhouettes", *median_time(sil, vj, runs=args.runs))
    rows.add("jaxnmr", "forward: render (rgb, T=4)", *median_time(rgb, vj, runs=args.runs))
    rows.add("jaxnmr", "forward+backward: silhouette loss, value_and_grad", *median_time(sil_vg, vj,
                                                                                         runs=args.runs))
    rows.add("jaxnmr", "forward+backward: rgb loss, value_and_grad", *median_time(rgb_vg, vj, runs=args.runs))
    images["jaxnmr"] = np.asarray(sil(vj))
    g = np.asarray(sil_vg(vj)[1])
    rows.notes.append(f"jaxnmr silhouette vertex gradient: finite={bool(np.isfinite(g).all())}, "
                      f"max |g| = {np.abs(g).max():.3g}, non-zero rows {int((np.abs(g).sum(1) > 0).sum())}"
                      f"/{g.shape[0]}")

    if args.skip_reference:
        rows.skip("jaxnmr.reference", "--skip-reference given")
        return
    with mock.patch.object(ffi, "kernel_available", lambda platform=None: False):
        sil_ref = jax.jit(lambda v: renderer.render_silhouettes(v, f))
        med, times = median_time(sil_ref, vj, runs=args.reference_runs, warmup=1)
    rows.add("jaxnmr.reference (dense jnp oracle)", "forward: render_silhouettes", med, times)


# ----------------------------------------------------------------------------------------------------------------
# 2: Mitsuba 3


def _libllvm19():
    for pattern in ("/usr/lib/*/libLLVM-19.so", "/usr/lib/*/libLLVM.so.19*", "/usr/lib/llvm-19/lib/libLLVM*.so*"):
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    return None


def bench_mitsuba(v, f, rows, images, versions, args):
    peer = "Mitsuba 3 (llvm_ad_rgb)"
    llvm = _libllvm19()
    if "DRJIT_LIBLLVM_PATH" not in os.environ and llvm:
        os.environ["DRJIT_LIBLLVM_PATH"] = llvm  # LLVM 15 (also present on these machines) crashes its kernels
    try:
        import drjit as dr
        import mitsuba as mi
    except ImportError as e:
        rows.skip(peer, f"not installed ({e}); run `bash benchmarks/install_peers.sh`")
        return
    try:
        mi.set_variant("llvm_ad_rgb")
    except Exception as e:  # no usable LLVM
        rows.skip(peer, f"variant llvm_ad_rgb unavailable ({type(e).__name__}: {e}); Dr.Jit needs libllvm19 "
                        f"(apt-get install libllvm19, or DRJIT_LIBLLVM_PATH)")
        return
    versions["mitsuba"] = mi.__version__
    versions["drjit"] = dr.__version__
    try:
        versions["LLVM (Dr.Jit)"] = ".".join(map(str, dr.detail.llvm_version()))
    except Exception:
        versions["LLVM (Dr.Jit)"] = os.environ.get("DRJIT_LIBLLVM_PATH", "?")

    sensor = {
        "type": "perspective", "fov": VFOV, "fov_axis": "y", "near_clip": 0.1, "far_clip": 100.0,
        "to_world": mi.ScalarTransform4f().look_at(origin=list(EYE), target=[0, 0, 0], up=[0, 1, 0]),
        "film": {"type": "hdrfilm", "width": SIZE, "height": SIZE, "rfilter": {"type": "box"},
                 "pixel_format": "rgb"},
        "sampler": {"type": "independent", "sample_count": 1},
    }

    def make_scene(integrator, emitter=True):
        mesh = mi.Mesh("teapot", vertex_count=v.shape[0], face_count=f.shape[0], has_vertex_normals=False,
                       has_vertex_texcoords=False)
        mp = mi.traverse(mesh)
        mp["vertex_positions"] = dr.ravel(mi.TensorXf(np.ascontiguousarray(v, np.float32)))
        mp["faces"] = dr.ravel(mi.TensorXu(np.ascontiguousarray(f, np.uint32)))
        mp.update()
        desc = {"type": "scene", "integrator": integrator, "sensor": sensor, "teapot": mesh}
        if emitter:
            desc["emitter"] = {"type": "constant"}  # radiance 1 everywhere; the teapot is diffuse, albedo 0.5
        return mi.load_dict(desc)

    scene = make_scene({"type": "direct_projective"})
    aov_scene = make_scene({"type": "aov", "aovs": "dd.y:depth"}, emitter=False)
    rows.notes.append(f"Mitsuba integrator: {scene.integrator()}".replace("\n", " ") + "; mi.render(spp=1) sets "
                      "its sppc/sppp/sppi (samples for the continuous, primary-silhouette and indirect-visibility "
                      "gradient terms) to 1 unless they are 0")

    counter = [0]

    def forward(sc):
        counter[0] += 1
        img = mi.render(sc, spp=1, seed=counter[0])
        dr.eval(img)
        dr.sync_thread()
        return img

    rows.add(peer, "forward: mi.render, direct_projective (rgb), 1 spp", *_time_host(lambda: forward(scene),
                                                                                     args.runs))
    rows.add(peer, "forward: mi.render, aov depth, 1 spp", *_time_host(lambda: forward(aov_scene), args.runs))
    images["mitsuba"] = np.array(forward(scene))
    images["mitsuba_mask"] = np.array(forward(aov_scene))[..., 0] > 0

    rng = np.random.default_rng(0)
    target = mi.TensorXf(rng.uniform(size=(SIZE, SIZE, 3)).astype(np.float32))
    key = "teapot.vertex_positions"

    def forward_backward_fn(sc):
        params = mi.traverse(sc)
        base = mi.Float(params[key])

        def forward_backward():
            counter[0] += 1
            pos = mi.Float(base)
            dr.enable_grad(pos)
            params[key] = pos
            params.update()
            image = mi.render(sc, params, spp=1, seed=counter[0])
            loss = dr.sum(dr.square(image - target), axis=None)
            dr.backward(loss)
            grad = dr.grad(pos)
            dr.eval(loss, grad)
            dr.sync_thread()
            return grad

        return forward_backward

    # Three settings of the same integrator. NMR's gradient has only the image-space (primary visibility) edge
    # terms and the smooth shading terms; `sppi: 0` gives Mitsuba exactly those. The defaults add the
    # indirect-visibility term (shadows / occluded environment), with an octree guiding structure that is
    # rebuilt every call because the shape moved; that costs seconds per call.
    configs = [
        ("forward+vertex gradient: direct_projective sppi=0 (primary silhouettes + continuous)",
         {"type": "direct_projective", "sppi": 0}, args.runs, 2),
        ("forward+vertex gradient: direct_projective guiding=none (+ unguided indirect visibility)",
         {"type": "direct_projective", "guiding": "none"}, args.runs, 2),
        ("forward+vertex gradient: direct_projective defaults (+ octree-guided indirect visibility)",
         {"type": "direct_projective"}, args.octree_runs, 1),
    ]
    for what, integrator, runs, warmup in configs:
        if runs <= 0:
            rows.skip(f"{peer}: {what}", "not run (--octree-runs 0)")
            continue
        fb = forward_backward_fn(scene if integrator == {"type": "direct_projective"} else make_scene(integrator))
        rows.add(peer, what, *_time_host(fb, runs, warmup=warmup))
        g = np.array(fb()).reshape(-1, 3)
        rows.notes.append(f"Mitsuba vertex gradient ({what.split(': ', 1)[1]}): finite="
                          f"{bool(np.isfinite(g).all())}, max |g| = {np.abs(g).max():.3g}, non-zero rows "
                          f"{int((np.abs(g).sum(1) > 0).sum())}/{g.shape[0]}")


# ----------------------------------------------------------------------------------------------------------------
# 3: jaxrenderer


def _import_jaxrenderer():
    """jaxrenderer 0.3.2 targets jax 0.4 and sets the since-removed ``jax_array`` option at import; ignore just
    that (jax arrays have been the only kind for years) and silence its jaxtyping deprecation warnings."""
    original = jax.config.update

    def update(name, value):
        if name == "jax_array":
            return None
        return original(name, value)

    jax.config.update = update
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import renderer as jr
    finally:
        jax.config.update = original
    if not hasattr(jr, "Renderer") or not hasattr(jr.Renderer, "get_camera_image"):
        raise ImportError(f"the module 'renderer' at {getattr(jr, '__file__', '?')} is not jaxrenderer")
    return jr


def bench_jaxrenderer(v, f, rows, images, versions, args):
    peer = "jaxrenderer"
    if _version("jaxrenderer") is None:
        rows.skip(peer, "not installed; run `bash benchmarks/install_peers.sh`")
        return
    try:
        jr = _import_jaxrenderer()
    except Exception as e:
        rows.skip(peer, f"import failed ({type(e).__name__}: {e})")
        return
    versions["jaxrenderer"] = _version("jaxrenderer")
    versions["jaxtyping (for jaxrenderer)"] = _version("jaxtyping")

    # Smooth vertex normals (area-weighted), white 2x2 texture, default Phong lighting.
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    vn = (vn / (np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12)).astype(np.float32)
    norms = jnp.asarray(vn)
    uvs = jnp.zeros((v.shape[0], 2), jnp.float32)
    faces = jnp.asarray(f, jnp.int32)
    texture = jnp.ones((2, 2, 3), jnp.float32)
    camera = jr.CameraParameters(viewWidth=SIZE, viewHeight=SIZE, viewDepth=1.0, position=jnp.asarray(EYE),
                                 target=jnp.zeros(3), up=jnp.array([0.0, 1.0, 0.0]), hfov=VFOV, vfov=VFOV,
                                 near=0.1, far=100.0)
    background = jnp.full(3, -1.0, jnp.float32)  # a sentinel, so the silhouette can be read off the image

    def render(verts):
        model = jr.Model.create(verts=verts, norms=norms, uvs=uvs, faces=faces, diffuse_map=texture)
        canvas = jr.Renderer.get_camera_image(objects=[jr.ModelObject(model=model)], light=jr.LightParameters(),
                                              camera=camera, width=SIZE, height=SIZE, colour_default=background)
        return jr.transpose_for_display(canvas)  # [H, W, 3], row 0 at the top

    fwd = jax.jit(render)
    vj = jnp.asarray(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        img = np.asarray(jax.block_until_ready(fwd(vj)))
        first = time.perf_counter() - t0
        print(f"  jaxrenderer: first call (compile + run) {first:.1f} s", flush=True)
        rows.add(peer, "forward: Renderer.get_camera_image (Phong, no AA)",
                 *median_time(fwd, vj, runs=args.slow_runs, warmup=1))
    images["jaxrenderer_mask"] = img[..., 0] >= 0
    images["jaxrenderer"] = np.clip(img, 0, 1)

    if args.skip_jaxrenderer_grad:
        rows.notes.append("jaxrenderer vertex gradient: not checked (--skip-jaxrenderer-grad)")
        return
    rng = np.random.default_rng(0)
    target = jnp.asarray(rng.uniform(size=(SIZE, SIZE, 3)).astype(np.float32))
    loss = lambda verts: jnp.sum((jnp.clip(render(verts), 0.0, 1.0) - target) ** 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            g = np.asarray(jax.block_until_ready(jax.jit(jax.grad(loss))(vj)))
            took = time.perf_counter() - t0
        finite = np.isfinite(g)
        rows.notes.append(f"jaxrenderer vertex gradient (one call incl. compile, {took:.1f} s): "
                          f"NaN entries {int((~finite).sum())}/{g.size}, max |finite g| = "
                          f"{(np.abs(g[finite]).max() if finite.any() else float('nan')):.3g}, non-zero finite "
                          f"entries {int((np.abs(np.where(finite, g, 0)) > 0).sum())}")
    except Exception as e:
        rows.notes.append(f"jaxrenderer vertex gradient: failed ({type(e).__name__}: {str(e)[:200]})")


# ----------------------------------------------------------------------------------------------------------------
# Output


def save_png(images, path):
    from PIL import Image, ImageDraw

    def tile(arr, title):
        canvas = Image.new("RGB", (SIZE, SIZE + 18), (255, 255, 255))
        if arr is None:
            body = Image.new("RGB", (SIZE, SIZE), (200, 200, 200))
            ImageDraw.Draw(body).text((10, SIZE // 2), "not available", fill=(0, 0, 0))
        else:
            a = np.asarray(arr, np.float32)
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, axis=-1)
            body = Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8))
        canvas.paste(body, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), title, fill=(0, 0, 0))
        return canvas

    mirror = lambda a: None if a is None else np.asarray(a)[:, ::-1]
    tiles = [tile(images.get("jaxnmr"), "jaxnmr render_silhouettes"),
             tile(mirror(images.get("mitsuba")), "Mitsuba 3, 1 spp (mirrored L-R)"),
             tile(mirror(images.get("jaxrenderer")), "jaxrenderer (mirrored L-R)")]
    out = Image.new("RGB", (3 * SIZE + 8, SIZE + 18), (255, 255, 255))
    for i, t in enumerate(tiles):
        out.paste(t, (i * (SIZE + 4), 0))
    out.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs for everything under ~2 s a call")
    parser.add_argument("--slow-runs", type=int, default=5, help="timed runs for jaxrenderer (seconds a call)")
    parser.add_argument("--reference-runs", type=int, default=10, help="timed runs for the dense oracle")
    parser.add_argument("--png", default=str(pathlib.Path(__file__).with_name("peers.png")))
    parser.add_argument("--octree-runs", type=int, default=3,
                        help="timed runs for Mitsuba's default (octree-guided) gradient, seconds a call; 0 skips")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-jaxrenderer-grad", action="store_true")
    args = parser.parse_args()

    load_start = os.getloadavg()
    v, f, name = teapot()
    v = np.asarray(v, np.float32)
    f = np.asarray(f, np.int32)
    rows, images = Rows(), {}
    versions = {"jaxnmr": getattr(jaxnmr, "__version__", "?"), "jax": jax.__version__,
                "jaxlib": _version("jaxlib"), "numpy": np.__version__}
    started = time.perf_counter()

    for label, fn in (("jaxnmr", lambda: bench_jaxnmr(v, f, rows, images, args)),
                      ("Mitsuba 3", lambda: bench_mitsuba(v, f, rows, images, versions, args)),
                      ("jaxrenderer", lambda: bench_jaxrenderer(v, f, rows, images, versions, args))):
        print(f"[{label}]", flush=True)
        try:
            fn()
        except Exception as e:
            traceback.print_exc()
            rows.skip(label, f"failed: {type(e).__name__}: {str(e)[:300]}")

    load_end = os.getloadavg()
    print()
    print(f"Scene: {name}, {SIZE}x{SIZE}, NMR default camera (eye {tuple(round(x, 7) for x in EYE)} -> origin, "
          f"up +y, vertical FOV {VFOV:g} deg); jaxnmr anti-aliased (internal {2 * SIZE}^2)")
    print(f"Machine: {machine()}")
    print("Versions: " + ", ".join(f"{k} {val}" for k, val in versions.items()))
    print(f"Load average (1/5/15 min): {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f} at start, "
          f"{load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f} at end; whole run "
          f"{time.perf_counter() - started:.0f} s")
    print()
    print("| peer | what | median (ms) | min (ms) | runs |")
    print("|---|---|---:|---:|---:|")
    for peer, what, med, times in rows.rows:
        print(f"| {peer} | {what} | {med * 1e3:.2f} | {min(times) * 1e3:.2f} | {len(times)} |")
    for peer, reason in rows.skipped:
        print(f"| {peer} | skipped: {reason} | | | |")
    print()

    sil_fb = rows.get("jaxnmr", "forward+backward: silhouette loss, value_and_grad")
    rgb_fb = rows.get("jaxnmr", "forward+backward: rgb loss, value_and_grad")
    mi_rows = [(w, med) for p, w, med, _ in rows.rows
               if p == "Mitsuba 3 (llvm_ad_rgb)" and w.startswith("forward+vertex gradient")]
    mi_fb = min((med for _, med in mi_rows), default=None)
    jr_fwd = rows.get("jaxrenderer", "forward: Renderer.get_camera_image (Phong, no AA)")
    print("Ratios:")
    if mi_fb and sil_fb and rgb_fb:
        worst = max(sil_fb, rgb_fb)
        print(f"- criterion 1 (jaxnmr forward+backward <= Mitsuba forward+vertex gradient; Mitsuba's fastest "
              f"setting, {mi_fb * 1e3:.1f} ms): silhouette "
              f"{sil_fb / mi_fb:.3f}x, rgb {rgb_fb / mi_fb:.3f}x of Mitsuba's time "
              f"(Mitsuba / jaxnmr: {mi_fb / sil_fb:.1f}x and {mi_fb / rgb_fb:.1f}x) -> "
              f"{'HOLDS' if worst <= mi_fb else 'FAILS'}")
    else:
        print("- criterion 1: not evaluated (a row is missing)")
    if jr_fwd and sil_fb and rgb_fb:
        worst = max(sil_fb, rgb_fb)
        print(f"- jaxrenderer forward / jaxnmr forward+backward: {jr_fwd / sil_fb:.0f}x (silhouette), "
              f"{jr_fwd / rgb_fb:.0f}x (rgb); needs >= 100x -> {'HOLDS' if jr_fwd >= 100 * worst else 'FAILS'}")
    else:
        print("- jaxrenderer criterion: not evaluated (a row is missing)")
    ref = rows.get("jaxnmr.reference (dense jnp oracle)", "forward: render_silhouettes")
    jx = rows.get("jaxnmr", "forward: render_silhouettes")
    if ref and jx:
        print(f"- dense oracle / jaxnmr kernel (render_silhouettes forward): {ref / jx:.0f}x")
    mi_f = rows.get("Mitsuba 3 (llvm_ad_rgb)", "forward: mi.render, direct_projective (rgb), 1 spp")
    if mi_f and jx:
        print(f"- Mitsuba forward (rgb) / jaxnmr render_silhouettes forward: {mi_f / jx:.2f}x")
    print()

    print("Scene check (silhouettes at 256^2; jaxnmr alpha > 0.5):")
    if "jaxnmr" in images:
        ours = images["jaxnmr"] > 0.5
        for key, label in (("mitsuba_mask", "Mitsuba (aov depth > 0)"),
                           ("jaxrenderer_mask", "jaxrenderer (pixel drawn)")):
            if key in images:
                theirs = images[key]
                print(f"- {label}: IoU with jaxnmr {_iou(ours, theirs):.3f} as rendered, "
                      f"{_iou(ours, theirs[:, ::-1]):.3f} with the peer mirrored left-right "
                      f"(covered pixels: jaxnmr {int(ours.sum())}, peer {int(theirs.sum())})")
    for note in rows.notes:
        print(f"- {note}")
    try:
        save_png(images, args.png)
        print(f"\nWrote {args.png} (jaxnmr silhouette | Mitsuba | jaxrenderer; peers mirrored left-right)")
    except Exception as e:
        print(f"\nCould not write {args.png}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
