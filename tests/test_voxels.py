"""jaxnmr.voxels: surface topology, winding, the coordinate mapping, colour gradients through rendering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr.voxels import voxels_to_mesh


def signed_volume(vertices, faces) -> float:
    t = np.asarray(vertices, np.float64)[np.asarray(faces)]
    return float(np.einsum("fi,fi->f", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def directed_edges(faces) -> np.ndarray:
    f = np.asarray(faces)
    return np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])


def assert_closed_and_oriented(faces):
    """Every directed edge appears once and its reverse once: closed, consistently wound."""
    e = directed_edges(faces)
    keys = {tuple(x) for x in e.tolist()}
    assert len(keys) == len(e), "a directed edge is used twice: inconsistent winding"
    assert all((b, a) in keys for a, b in keys), "an edge has no twin: the surface is open"


def test_single_voxel_is_a_closed_cube():
    mesh = voxels_to_mesh(np.ones((1, 1, 1), bool))
    v, f, t = mesh.vertices, mesh.faces, mesh.textures
    assert v.dtype == jnp.float32 and f.dtype == jnp.int32 and t.dtype == jnp.float32
    assert v.shape == (8, 3) and f.shape == (12, 3) and t.shape == (12, 2, 2, 2, 3)
    np.testing.assert_array_equal(np.sort(np.unique(np.asarray(v))), [-1.0, 1.0])  # fills [-1, 1]^3
    assert_closed_and_oriented(f)
    assert signed_volume(v, f) == pytest.approx(8.0)  # positive: counter-clockwise seen from outside
    np.testing.assert_array_equal(t, 1.0)  # colors=None: white


def test_two_adjacent_voxels_share_no_internal_faces():
    mesh = voxels_to_mesh(np.ones((2, 1, 1), bool))
    v, f = mesh.vertices, mesh.faces
    assert f.shape == (20, 3) and v.shape == (12, 3)  # 10 quads, vertices deduplicated
    assert_closed_and_oriented(f)
    assert signed_volume(v, f) == pytest.approx(2.0)  # a 2 x 1 x 1 box scaled by 2 / 2
    x = np.asarray(v)[np.asarray(f)][..., 0]  # [20, 3]: x of each face's vertices
    assert not np.all(x == 0.0, axis=1).any(), "a face lies on the shared side x = 0"


def test_outward_winding_every_face():
    rng = np.random.default_rng(0)
    occ = rng.random((4, 5, 3)) > 0.4
    mesh = voxels_to_mesh(occ)  # (voxels touching along an edge only make non-manifold edges here)
    v, f = mesh.vertices, mesh.faces
    assert signed_volume(v, f) == pytest.approx(occ.sum() * (2.0 / 5) ** 3, rel=1e-5)
    # each face's normal points from its voxel into an empty cell (or out of the grid)
    tri = np.asarray(v, np.float64)[np.asarray(f)]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    outside = tri.mean(axis=1) + 0.5 * (2.0 / 5) * normal  # the centre of the cell beyond the face
    grid = np.floor(outside / (2.0 / 5) + np.array([4, 5, 3]) / 2).astype(int)
    in_grid = np.all((grid >= 0) & (grid < occ.shape), axis=1)
    assert not occ[tuple(grid[in_grid].T)].any()


def test_coordinate_mapping_and_colour_gather():
    occ = np.zeros((2, 1, 1), bool)
    occ[1, 0, 0] = True
    colors = np.zeros((2, 1, 1, 3), np.float32)
    colors[1, 0, 0] = (0.1, 0.2, 0.3)
    mesh = voxels_to_mesh(occ, colors)
    v, f, t = mesh.vertices, mesh.faces, mesh.textures
    assert f.shape == (12, 3)
    v = np.asarray(v)
    np.testing.assert_allclose(v.min(0), [0.0, -0.5, -0.5])  # voxel (1, 0, 0): x in [1, 2] -> [0, 1]
    np.testing.assert_allclose(v.max(0), [1.0, 0.5, 0.5])
    np.testing.assert_allclose(np.asarray(t).reshape(-1, 3), np.tile([0.1, 0.2, 0.3], (12 * 8, 1)), rtol=1e-6)


def test_batched_colors_and_empty_grid():
    occ = np.ones((2, 2, 2), bool)
    colors = jnp.arange(2 * 8 * 3, dtype=jnp.float32).reshape(2, 2, 2, 2, 3)
    mesh = voxels_to_mesh(occ, colors)
    v, f, t = mesh.vertices, mesh.faces, mesh.textures
    assert v.shape == (2, 26, 3) and f.shape == (2, 48, 3)  # the colours' batch on every output
    assert t.shape == (2, 48, 2, 2, 2, 3)
    mesh = voxels_to_mesh(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3, 3), np.float32))
    v, f, t = mesh.vertices, mesh.faces, mesh.textures
    assert v.shape == (0, 3) and f.shape == (0, 3) and t.shape == (0, 2, 2, 2, 3)


def test_errors():
    with pytest.raises(ValueError, match=r"occupancy must have shape \[D, H, W\]"):
        voxels_to_mesh(np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"colors must have shape \[\.\.\., D, H, W, 3\]"):
        voxels_to_mesh(np.ones((2, 2, 2), bool), np.ones((2, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="colors must be a floating-point array"):
        voxels_to_mesh(np.ones((2, 2, 2), bool), np.ones((2, 2, 2, 3), np.int32))
    with pytest.raises(TypeError, match="occupancy must be concrete"):
        jax.jit(lambda o: voxels_to_mesh(o).vertices)(jnp.ones((2, 2, 2)))


def _grid_scene(n=3):
    occ = np.ones((n, n, n), bool)
    colors = np.random.default_rng(1).uniform(0.2, 1.0, (n, n, n, 3)).astype(np.float32)
    renderer = jaxnmr.Renderer(image_size=64)  # NMR's default eye (0, 0, -2.732): sees the k = 0 layer only
    return occ, colors, renderer


def test_render_3x3x3_grid():
    occ, colors, renderer = _grid_scene()
    mesh = voxels_to_mesh(occ, colors)
    v, f, t = mesh.vertices, mesh.faces, mesh.textures
    image = np.asarray(renderer.render(v, f, t))
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    # the grid's front side z = -1 fills this view; the centre shows voxel (1, 1, 0) under ambient light 0.5
    np.testing.assert_allclose(image[32, 32], 0.5 * colors[1, 1, 0], atol=1e-5)
    assert (image.sum(-1) > 0).mean() > 0.95


def test_colour_gradient_exactly_on_visible_voxels():
    occ, colors, renderer = _grid_scene()
    weights = jax.random.uniform(jax.random.PRNGKey(0), (64, 64, 3))

    def loss(c):
        mesh = voxels_to_mesh(occ, c)
        v, f, t = mesh.vertices, mesh.faces, mesh.textures
        return jnp.sum(renderer.render(v, f, t) * weights)

    g = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(colors)))
    assert np.isfinite(g).all()
    per_voxel = np.abs(g).sum(-1)
    visible = np.zeros(occ.shape, bool)
    visible[:, :, 0] = True  # seen from -z: only the front layer
    assert (per_voxel[visible] > 0).all()
    np.testing.assert_array_equal(per_voxel[~visible], 0.0)


def test_voxels_example_smoke(tmp_path, capsys):
    """examples/voxels_multiview.py renders its grid from several views and the colour fit improves."""
    import re
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parent))
    import _examples

    example = _examples.load_example("voxels_multiview", "voxels_example")
    assert example.main(["--out", str(tmp_path), "--iterations", "5", "--size", "32"]) in (0, None)
    out = capsys.readouterr().out
    initial = float(re.search(r"initial mse=([0-9.eE+-]+)", out).group(1))
    final = float(re.search(r"final mse=([0-9.eE+-]+)", out).group(1))
    assert final < initial
    assert any(tmp_path.glob("*.png"))


# --- batch dims on the colours reach every output, as a loop over them would --------------------------------------

FIELDS = ("vertices", "faces", "textures")


def _voxel_loop(occ, colors, batch):
    outs = [voxels_to_mesh(occ, colors[idx]) for idx in np.ndindex(*batch)]
    stacked = {k: np.stack([np.asarray(getattr(o, k)) for o in outs]) for k in FIELDS}
    return jaxnmr.Mesh(**{k: x.reshape(batch + x.shape[1:]) for k, x in stacked.items()})


def _assert_outputs_equal(actual, expected):
    assert isinstance(actual, jaxnmr.Mesh) and isinstance(expected, jaxnmr.Mesh)
    assert actual.vertex_colors is actual.face_uvs is actual.texture_map is actual.face_colors is None
    for name in FIELDS:
        a, e = getattr(actual, name), getattr(expected, name)
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def test_batched_colors_alone_equal_a_loop_on_every_output():
    occ = np.random.default_rng(0).random((3, 2, 2)) > 0.4
    colors = np.random.default_rng(1).uniform(size=(3, 2, 3, 2, 2, 3)).astype(np.float32)
    out = voxels_to_mesh(occ, colors, texture_size=2)
    F = out.faces.shape[-2]
    assert out.vertices.shape[:2] == (3, 2) and out.faces.shape == (3, 2, F, 3)
    assert out.textures.shape == (3, 2, F, 2, 2, 2, 3)
    _assert_outputs_equal(out, _voxel_loop(occ, colors, (3, 2)))


def test_batched_colors_jit_and_vmap():
    occ = np.ones((2, 1, 2), bool)
    colors = np.random.default_rng(2).uniform(size=(3, 2, 1, 2, 3)).astype(np.float32)
    eager = voxels_to_mesh(occ, colors)
    _assert_outputs_equal(jax.jit(lambda c: voxels_to_mesh(occ, c))(colors), eager)
    _assert_outputs_equal(jax.vmap(lambda c: voxels_to_mesh(occ, c))(colors), eager)
    _assert_outputs_equal(eager, _voxel_loop(occ, colors, (3,)))
    # gradients reach each element's own colours only
    w = np.random.default_rng(3).normal(size=eager.textures.shape).astype(np.float32)
    g = jax.jit(jax.grad(lambda c: jnp.sum(voxels_to_mesh(occ, c).textures * w)))(colors)
    per_element = jax.vmap(jax.grad(lambda c, w: jnp.sum(voxels_to_mesh(occ, c).textures * w)))(colors, w)
    np.testing.assert_allclose(np.asarray(g), np.asarray(per_element), rtol=1e-5, atol=1e-6)


def test_batched_occupancy_is_one_grid_per_call():
    with pytest.raises(ValueError, match=r"one occupancy grid per call.*got shape \(3, 2, 2, 2, 2\)"):
        voxels_to_mesh(np.ones((3, 2, 2, 2, 2), bool))
    with pytest.raises(ValueError, match=r"occupancy must have shape \[D, H, W\].*\(2, 2, 2, 2\)"):
        voxels_to_mesh(np.ones((2, 2, 2, 2), bool), np.ones((2, 2, 2, 2, 3), np.float32))
