"""Scale-out (issue 8, item 7): sharding views over devices with shard_map, and jax.export that reloads in a
fresh process. Both run their multi-device / fresh-process part in a subprocess: the test process already has
one CPU device, and a reload must not see this process's registrations or Python state."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
import jaxnmr.meshes
from jaxnmr import ffi, scale

pytestmark = pytest.mark.skipif(not ffi.kernel_available("cpu"), reason="the CPU kernel is not built")

ROOT = pathlib.Path(jaxnmr.__file__).resolve().parents[1]


def _run(code: str, *args: str, device_count: int | None = None) -> dict:
    """Runs ``code`` in a fresh Python with jaxnmr importable; returns the JSON on its ``RESULT`` line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    if device_count:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={device_count}")
    # cwd = the folder holding the imported package: `python -c` puts the cwd first on sys.path, and from the
    # repository root it would import the source tree (without its compiled library in a fresh clone)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT "):])


SHARD = """
import json
import jax, jax.numpy as jnp, numpy as np
import jaxnmr, jaxnmr.meshes
from jaxnmr import scale

assert jax.device_count() == 2, jax.devices()
_POT = jaxnmr.meshes.teapot(resolution=4)
v, f = _POT.vertices, _POT.faces
v, f = jnp.asarray(v, jnp.float32), jnp.asarray(f, jnp.int32)
tex = jnp.linspace(0.2, 1.0, f.shape[0], dtype=jnp.float32)[:, None, None, None, None] * jnp.ones((1, 2, 2, 2, 3))
r = jaxnmr.Renderer(image_size=32)
eyes = jnp.asarray([jaxnmr.get_points_from_angles(2.732, 20.0, a) for a in np.arange(8) * 45.0], jnp.float32)
mesh = scale.device_mesh(axis_name="views")

def unsharded(method, v, *extra):
    return jax.vmap(lambda e: getattr(r.replace(eye=e), method)(v, f, *extra))(eyes)

img = jax.jit(lambda e, v: scale.render_views_sharded(r, v, f, tex, e, mesh))(eyes, v)
ref = unsharded("render", v, tex)
target = unsharded("render_silhouettes", v * 1.1)

def loss_sharded(v):  # differentiating through shard_map: JAX sums the replicated vertices' cotangent
    s = scale.render_views_sharded(r, v, f, None, eyes, mesh, method="render_silhouettes")
    return jnp.sum((s - target) ** 2)

def loss_psum(v):  # the loss reduced inside the shards with psum
    def local(e, t, v):
        s = jax.vmap(lambda e: r.replace(eye=e).render_silhouettes(v, f))(e)
        return jax.lax.psum(jnp.sum((s - t) ** 2), "views")
    P = jax.sharding.PartitionSpec
    return jax.shard_map(local, mesh=mesh, in_specs=(P("views"), P("views"), P()), out_specs=P())(eyes, target, v)

def loss_views(v, k):  # the unsharded loss over a subset of the views
    s = jax.vmap(lambda e: r.replace(eye=e).render_silhouettes(v, f))(eyes[k])
    return jnp.sum((s - target[k]) ** 2)

g_sharded = np.asarray(jax.jit(jax.grad(loss_sharded))(v))
g_psum = np.asarray(jax.jit(jax.grad(loss_psum))(v))
g_ref = np.asarray(jax.jit(jax.grad(lambda v: loss_views(v, slice(None))))(v))
g_halves = sum(np.asarray(jax.grad(loss_views)(v, s)) for s in (slice(0, 4), slice(4, 8)))
g_views = sum(np.asarray(jax.grad(loss_views)(v, slice(k, k + 1))) for k in range(8))  # one view at a time
tol = lambda g: 1e-4 * np.abs(g) + 1e-4 * np.abs(g).max()
print("RESULT " + json.dumps(dict(
    shape=list(img.shape), devices=len(img.sharding.device_set), spec=str(img.sharding.spec),
    per_device=[list(s.data.shape) for s in img.addressable_shards],
    img_err=float(np.abs(np.asarray(img) - np.asarray(ref)).max()), img_mean=float(np.asarray(img).mean()),
    g_scale=float(np.abs(g_ref).max()),
    g_err=float(np.max(np.abs(g_sharded - g_views) / tol(g_views))),
    g_vmap_err=float(np.max(np.abs(g_sharded - g_ref) / tol(g_ref))),
    g_vmap_rel_l2=float(np.linalg.norm(g_sharded - g_ref) / np.linalg.norm(g_ref)),
    g_psum_err=float(np.abs(g_psum - g_sharded).max()), g_halves_err=float(np.abs(g_halves - g_sharded).max()),
)))
"""


def test_shard_views_over_two_devices():
    res = _run(SHARD, device_count=2)
    assert res["shape"] == [8, 32, 32, 3]
    assert res["devices"] == 2 and "views" in res["spec"]
    assert res["per_device"] == [[4, 32, 32, 3]] * 2  # each device rendered half of the views
    assert res["img_mean"] > 0.01  # the teapot is drawn
    assert res["img_err"] <= 1e-6
    assert res["g_scale"] > 1.0  # the silhouette loss has a real gradient
    # Against the unsharded gradient, summed one view at a time: rtol 1e-4 (+ 1e-4 of the largest entry) ...
    assert res["g_err"] <= 1.0, res
    # ... and against the one-launch vmap over all 8 views. That one groups the float32 sums differently and
    # differs at a few vertices by up to ~2e-4 of the largest entry (deterministically; 1-, 2- and 4-view
    # batches agree with each other to ~1e-7 of it), so: relative L2 error and a 1e-3-of-max elementwise bound.
    assert res["g_vmap_rel_l2"] <= 2e-4, res
    assert res["g_vmap_err"] <= 10.0, res
    # ... and exactly the sum of the two shards' unsharded gradients (a missing psum would halve it, a double
    # one double it), whether the loss is reduced outside the shard_map or with psum inside it.
    assert res["g_halves_err"] <= 1e-5 * res["g_scale"]
    assert res["g_psum_err"] <= 1e-5 * res["g_scale"]


LOAD = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
import jaxnmr.ffi  # to register the kernels' FFI targets (the function itself comes from the file only)
assert jaxnmr.ffi.kernel_available("cpu")
path, inputs, out = sys.argv[1:4]
exp = jax.export.deserialize(bytearray(open(path, "rb").read()))
d = np.load(inputs)
v, w = jnp.asarray(d["v"]), jnp.asarray(d["w"])
img = exp.call(v)
loss, g = jax.value_and_grad(lambda v: jnp.sum(exp.call(v) * w))(v)
img2, g2 = jax.jit(lambda v: (exp.call(v), jax.grad(lambda v: jnp.sum(exp.call(v) * w))(v)))(v)
np.savez(out, img=np.asarray(img), loss=np.asarray(loss), g=np.asarray(g), img2=np.asarray(img2),
         g2=np.asarray(g2))
print("RESULT " + json.dumps(dict(platforms=list(exp.platforms), vjp=exp.has_vjp())))
"""


def test_export_reloads_in_fresh_process(tmp_path):
    pot = jaxnmr.meshes.teapot(resolution=4)
    v, f = pot.vertices, pot.faces
    v, f = jnp.asarray(v, jnp.float32), jnp.asarray(f, jnp.int32)
    tex = jnp.linspace(0.2, 1.0, f.shape[0], dtype=jnp.float32)[:, None, None, None, None] * jnp.ones(
        (1, 2, 2, 2, 3))
    r = jaxnmr.Renderer(image_size=32, eye=jaxnmr.get_points_from_angles(2.732, 20.0, 30.0))

    def render(v):
        return r.render(v, f, tex)

    w = jax.random.normal(jax.random.key(0), (32, 32, 3), jnp.float32)
    blob = scale.export_render(render, jax.ShapeDtypeStruct(v.shape, v.dtype), with_gradient=True)
    assert isinstance(blob, bytes) and len(blob) > 1000
    (tmp_path / "render.jaxexport").write_bytes(blob)
    np.savez(tmp_path / "in.npz", v=np.asarray(v), w=np.asarray(w))

    img = np.asarray(jax.jit(render)(v))
    # jitted, as the export is: eager op-by-op dispatch rounds some float32 steps differently, and the
    # silhouette-edge gradient (1 / distance terms) amplifies that to ~1e-2 at a few vertices.
    loss, g = jax.jit(jax.value_and_grad(lambda v: jnp.sum(render(v) * w)))(v)
    assert img.mean() > 0.01 and np.abs(np.asarray(g)).max() > 0

    # The reload in this process (load_exported) agrees too.
    exp = scale.load_exported(blob)
    np.testing.assert_allclose(np.asarray(exp.call(v)), img, rtol=0, atol=1e-6)
    g_here = jax.jit(jax.grad(lambda v: jnp.sum(exp.call(v) * w)))(v)
    np.testing.assert_allclose(np.asarray(g_here), np.asarray(g), rtol=1e-6, atol=1e-6 * np.abs(g).max())

    res = _run(LOAD, str(tmp_path / "render.jaxexport"), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    assert res == {"platforms": ["cpu"], "vjp": True}
    out = np.load(tmp_path / "out.npz")
    for key in ("img", "img2"):
        np.testing.assert_allclose(out[key], img, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["loss"], np.asarray(loss), rtol=1e-6)
    for key in ("g", "g2"):
        np.testing.assert_allclose(out[key], np.asarray(g), rtol=1e-6, atol=1e-6 * np.abs(np.asarray(g)).max())


def test_export_without_gradient_has_no_vjp():
    pot = jaxnmr.meshes.teapot(resolution=4)
    v, f = pot.vertices, pot.faces
    r = jaxnmr.Renderer(image_size=16)
    blob = scale.export_render(lambda v: r.render_silhouettes(v, f), jnp.asarray(v, jnp.float32),
                               with_gradient=False)
    exp = scale.load_exported(blob)
    assert not exp.has_vjp()
    with pytest.raises(Exception, match="(?i)vjp"):
        jax.grad(lambda v: exp.call(v).sum())(jnp.asarray(v, jnp.float32))


def test_shard_batch_validates_in_axes():
    mesh = scale.device_mesh()
    fn = scale.shard_batch(lambda x: x * 2, mesh, in_axes=(1,))
    with pytest.raises(ValueError, match="0 or None"):
        fn(jnp.ones((2, 2)))
    fn = scale.shard_batch(lambda x: x * 2, mesh, in_axes=(0, None))
    with pytest.raises(ValueError, match="entries"):
        fn(jnp.ones((2, 2)))


def test_grad_inside_shard_map_with_default_checks():
    """Data-parallel training as users write it: jax.grad inside jax.shard_map, with shard_map's default checks
    (no check_vma=False). The vertices are replicated, the views split over the 2 CPU devices (tests/conftest.py
    forces them)."""
    import jaxnmr.meshes

    P = jax.sharding.PartitionSpec
    pot = jaxnmr.meshes.teapot(resolution=2)
    v, f = jnp.asarray(pot.vertices), jnp.asarray(pot.faces)
    r = jaxnmr.Renderer(image_size=16)
    eyes = jnp.asarray(jaxnmr.get_points_from_angles(2.7, 30.0, jnp.arange(4) * 90.0))

    def loss(v, e):
        return jnp.sum((jax.vmap(lambda e: r.replace(eye=e).render_silhouettes(v, f))(e) - 0.5) ** 2)

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("d",))
    expected = np.asarray(jax.jit(jax.grad(loss))(v, eyes))
    assert np.abs(expected).max() > 1.0
    # A replicated argument's gradient comes back already summed over the shards (JAX's rule under the checks).
    g = jax.jit(jax.shard_map(lambda v, e: jax.grad(loss)(v, e), mesh=mesh, in_specs=(P(), P("d")),
                              out_specs=P()))(v, eyes)
    np.testing.assert_allclose(np.asarray(g), expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    # The form with an explicit psum runs too; under the checks, psum of that (invariant) gradient multiplies it
    # by the number of devices, as for any invariant value in JAX.
    g2 = jax.jit(jax.shard_map(lambda v, e: jax.lax.psum(jax.grad(loss)(v, e), "d"), mesh=mesh,
                               in_specs=(P(), P("d")), out_specs=P()))(v, eyes)
    np.testing.assert_allclose(np.asarray(g2), 2 * np.asarray(g), rtol=1e-6, atol=1e-6)
