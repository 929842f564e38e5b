"""Tests for the built-in meshes in jaxnmr.meshes (numpy only, no jax)."""

import itertools
import math

import numpy as np
import pytest

from jaxnmr import meshes


# ---------------------------------------------------------------------------
# helpers


def _tri(v, f):
    return v.astype(np.float64)[f]


def _face_normals(v, f):
    p = _tri(v, f)
    return np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def _areas(v, f):
    return 0.5 * np.linalg.norm(_face_normals(v, f), axis=1)


def _signed_volume(v, f):
    p = _tri(v, f)
    return float(np.einsum("fi,fi->", p[:, 0], np.cross(p[:, 1], p[:, 2])) / 6.0)


def _directed_edges(f):
    return f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)


def _undirected_edge_counts(f):
    edges = np.sort(_directed_edges(f), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def _directed_edge_counts(f):
    _, counts = np.unique(_directed_edges(f), axis=0, return_counts=True)
    return counts


def _min_close_pair_distance(v, tol):
    """Smallest distance between two distinct vertices if some pair is closer
    than ``tol``, else ``inf``.  Grid hashing with cells of 4 * tol and every
    per-axis half-cell shift, so any pair closer than tol shares a cell in at
    least one of the shifts."""
    v = v.astype(np.float64)
    best = math.inf
    h = 4.0 * tol
    for shift in itertools.product((0.0, 0.5), repeat=3):
        keys = np.floor(v / h + np.asarray(shift)).astype(np.int64)
        _, inverse, counts = np.unique(
            keys, axis=0, return_inverse=True, return_counts=True
        )
        inverse = inverse.ravel()
        for cell in np.nonzero(counts > 1)[0]:
            pts = v[inverse == cell]
            d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
            d[np.diag_indices(len(pts))] = np.inf
            best = min(best, float(d.min()))
    return best if best < tol else math.inf


def _winding_numbers(queries, v, f):
    """Generalised winding number of the surface about each query point."""
    p = _tri(v, f)
    a = p[None, :, 0] - queries[:, None]
    b = p[None, :, 1] - queries[:, None]
    c = p[None, :, 2] - queries[:, None]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    num = np.einsum("qfi,qfi->qf", a, np.cross(b, c))
    den = (
        la * lb * lc
        + np.einsum("qfi,qfi->qf", a, b) * lc
        + np.einsum("qfi,qfi->qf", a, c) * lb
        + np.einsum("qfi,qfi->qf", b, c) * la
    )
    return (2.0 * np.arctan2(num, den)).sum(axis=1) / (4.0 * np.pi)


ALL_MESHES = {
    "teapot": lambda: meshes.teapot(),
    "teapot_r3_raw": lambda: meshes.teapot(3, normalization=False),
    "icosphere": lambda: meshes.icosphere(),
    "icosphere_s0_r2": lambda: meshes.icosphere(0, radius=2.5),
    "cube": lambda: meshes.cube(),
    "cube_small": lambda: meshes.cube(0.25),
}


@pytest.fixture(params=sorted(ALL_MESHES))
def mesh(request):
    return ALL_MESHES[request.param]()


# ---------------------------------------------------------------------------
# all meshes


def test_shapes_and_dtypes(mesh):
    v, f = mesh.vertices, mesh.faces
    assert isinstance(v, np.ndarray) and isinstance(f, np.ndarray)
    assert v.dtype == np.float32 and f.dtype == np.int32
    assert v.ndim == 2 and v.shape[1] == 3 and v.shape[0] >= 4
    assert f.ndim == 2 and f.shape[1] == 3 and f.shape[0] >= 4
    assert v.flags.c_contiguous and f.flags.c_contiguous
    assert np.all(np.isfinite(v))


def test_face_indices_in_range_and_all_vertices_used(mesh):
    v, f = mesh.vertices, mesh.faces
    assert f.min() >= 0
    assert f.max() < len(v)
    assert len(np.unique(f)) == len(v)


def test_no_degenerate_faces(mesh):
    v, f = mesh.vertices, mesh.faces
    assert np.all(f[:, 0] != f[:, 1])
    assert np.all(f[:, 1] != f[:, 2])
    assert np.all(f[:, 2] != f[:, 0])
    scale = np.ptp(v, axis=0).max()
    assert _areas(v, f).min() > 1e-7 * scale**2


def test_positive_signed_volume(mesh):
    v, f = mesh.vertices, mesh.faces
    assert _signed_volume(v, f) > 0.0


def test_consistent_winding_edge_manifold(mesh):
    # Every undirected edge is used by at most two faces and every directed
    # edge at most once: neighbouring faces wind the same way.
    f = mesh.faces
    assert _undirected_edge_counts(f).max() <= 2
    assert _directed_edge_counts(f).max() == 1


def test_returns_fresh_arrays():
    for make in (meshes.teapot, meshes.icosphere, meshes.cube):
        made = make()
        v, f = made.vertices, made.faces
        v0, f0 = v.copy(), f.copy()
        v[:] = 123.0
        f[:] = 0
        remade = make()
        v1, f1 = remade.vertices, remade.faces
        np.testing.assert_array_equal(v1, v0)
        np.testing.assert_array_equal(f1, f0)


# ---------------------------------------------------------------------------
# cube


def test_cube_counts_and_corners():
    box_mesh = meshes.cube(3.0)
    v, f = box_mesh.vertices, box_mesh.faces
    assert v.shape == (8, 3) and f.shape == (12, 3)
    assert set(np.abs(v).ravel().tolist()) == {1.5}
    assert len(np.unique(v, axis=0)) == 8
    np.testing.assert_allclose(v.mean(axis=0), 0.0, atol=1e-7)


def test_cube_default_is_unit_box():
    v = meshes.cube().vertices
    np.testing.assert_array_equal(v.min(axis=0), [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(v.max(axis=0), [1.0, 1.0, 1.0])


def test_cube_closed():
    f = meshes.cube().faces
    assert np.all(_undirected_edge_counts(f) == 2)
    assert np.all(_directed_edge_counts(f) == 1)
    assert len(_undirected_edge_counts(f)) == 18  # 12 box edges + 6 diagonals


@pytest.mark.parametrize("size", [2.0, 0.5, 7])
def test_cube_volume_and_outward_normals(size):
    box_mesh = meshes.cube(size)
    v, f = box_mesh.vertices, box_mesh.faces
    assert _signed_volume(v, f) == pytest.approx(size**3, rel=1e-6)
    n = _face_normals(v, f)
    centroids = _tri(v, f).mean(axis=1)
    assert np.all(np.einsum("fi,fi->f", n, centroids) > 0)
    # Each triangle lies in one side of the box, with the normal along it.
    n_unit = n / np.linalg.norm(n, axis=1, keepdims=True)
    assert np.all(np.abs(n_unit).max(axis=1) == pytest.approx(1.0))


# ---------------------------------------------------------------------------
# icosphere


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_icosphere_counts(level):
    sphere = meshes.icosphere(level)
    v, f = sphere.vertices, sphere.faces
    assert f.shape == (20 * 4**level, 3)
    assert v.shape == (10 * 4**level + 2, 3)


def test_icosphere_default_counts():
    sphere = meshes.icosphere()
    v, f = sphere.vertices, sphere.faces
    assert v.shape == (162, 3) and f.shape == (320, 3)


@pytest.mark.parametrize("level,radius", [(0, 1.0), (2, 1.0), (3, 0.3), (1, 5)])
def test_icosphere_vertices_on_sphere(level, radius):
    v = meshes.icosphere(level, radius).vertices
    r = np.linalg.norm(v.astype(np.float64), axis=1)
    np.testing.assert_allclose(r, radius, rtol=1e-6)
    assert _min_close_pair_distance(v, 1e-6 * radius) == math.inf


@pytest.mark.parametrize("level", [0, 1, 3])
def test_icosphere_closed_and_outward(level):
    sphere = meshes.icosphere(level, radius=2.0)
    v, f = sphere.vertices, sphere.faces
    assert np.all(_undirected_edge_counts(f) == 2)
    assert np.all(_directed_edge_counts(f) == 1)
    n = _face_normals(v, f)
    centroids = _tri(v, f).mean(axis=1)
    cosine = np.einsum("fi,fi->f", n, centroids) / (
        np.linalg.norm(n, axis=1) * np.linalg.norm(centroids, axis=1)
    )
    assert cosine.min() > 0.75
    # Volume approaches the ball's from below.
    ball = 4.0 / 3.0 * math.pi * 2.0**3
    assert 0.6 * ball < _signed_volume(v, f) < ball


def test_icosphere_regular_faces_at_level_zero():
    sphere = meshes.icosphere(0)
    v, f = sphere.vertices, sphere.faces
    p = _tri(v, f)
    edge_lengths = np.linalg.norm(p - np.roll(p, 1, axis=1), axis=-1)
    np.testing.assert_allclose(edge_lengths, edge_lengths.mean(), rtol=1e-6)


def test_icosphere_accepts_numpy_int():
    sphere = meshes.icosphere(np.int64(1))
    v, f = sphere.vertices, sphere.faces
    assert f.shape == (80, 3)


# ---------------------------------------------------------------------------
# teapot


def test_teapot_default_face_count():
    pot_mesh = meshes.teapot()
    v, f = pot_mesh.vertices, pot_mesh.faces
    assert 2000 <= len(f) <= 4500
    assert 1000 <= len(v) <= len(f)


@pytest.mark.parametrize("resolution", [2, 3, 8, 11])
def test_teapot_face_count_formula(resolution):
    # 32 patches x 2 r^2 triangles, less the r collapsed triangles at each of
    # the 4 lid-knob and 4 bottom-centre patch edges.
    f = meshes.teapot(resolution).faces
    assert len(f) == 64 * resolution**2 - 8 * resolution


def test_teapot_normalised_bounding_box():
    v = meshes.teapot().vertices
    lo, hi = v.min(axis=0).astype(np.float64), v.max(axis=0).astype(np.float64)
    # x (handle to spout) is the longest side and spans exactly [-1, 1].
    assert lo[0] == pytest.approx(-1.0, abs=1e-6)
    assert hi[0] == pytest.approx(1.0, abs=1e-6)
    # Centred on every axis, shorter than x on the others.
    np.testing.assert_allclose(lo + hi, 0.0, atol=1e-6)
    assert np.all(hi[1:] < 0.9)
    # Proportions of the classic pot: about 6.43 long, 3.15 high, 4 deep.
    extent = np.array([6.433, 3.15, 4.0]) / 3.2165
    np.testing.assert_allclose(hi - lo, extent, rtol=2e-3)


def test_teapot_raw_units_y_up():
    # Original teapot units, the z-up data turned to y-up: handle back at
    # x = -3, spout tip near x = 3.43, bottom at y = 0, knob top at y = 3.15.
    v = meshes.teapot(normalization=False).vertices
    np.testing.assert_allclose(v.min(axis=0), [-3.0, 0.0, -2.0], atol=1e-5)
    np.testing.assert_allclose(v.max(axis=0), [3.433, 3.15, 2.0], atol=2e-3)
    top = v[np.argmax(v[:, 1])]
    np.testing.assert_allclose(top, [0.0, 3.15, 0.0], atol=1e-6)  # lid knob


def test_teapot_normalize_matches_formula():
    pot_mesh = meshes.teapot(5, normalization=False)
    raw, f_raw = pot_mesh.vertices, pot_mesh.faces
    pot_mesh = meshes.teapot(5)
    v, f = pot_mesh.vertices, pot_mesh.faces
    np.testing.assert_array_equal(f, f_raw)
    x = raw.astype(np.float64)
    x -= x.min(0)
    x /= np.abs(x).max()
    x *= 2
    x -= x.max(0) / 2
    np.testing.assert_allclose(v, x, atol=1e-6)


def test_teapot_orientation_spout_plus_x_lid_up():
    v = meshes.teapot().vertices
    tip = v[np.argmax(v[:, 0])]
    assert tip[1] > 0.0  # spout tip is above the centre
    back = v[np.argmin(v[:, 0])]
    assert back[0] < -0.99 and abs(back[2]) < 0.2  # handle at -x, in the xy plane
    top = v[np.argmax(v[:, 1])]
    assert abs(top[0]) < 0.1 and abs(top[2]) < 1e-6  # lid knob, mid-pot
    # Left-right (z) mirror symmetry of the pot.
    mirrored = v * np.array([1.0, 1.0, -1.0], dtype=np.float32)
    a = np.round(v.astype(np.float64), 4)
    b = np.round(mirrored.astype(np.float64), 4)
    shared = {tuple(r) for r in a.tolist()} & {tuple(r) for r in b.tolist()}
    assert len(shared) > 0.95 * len(v)


@pytest.mark.parametrize("resolution", [2, 5, 8, 13])
def test_teapot_seams_welded(resolution):
    v = meshes.teapot(resolution).vertices
    assert _min_close_pair_distance(v, 1e-6) == math.inf


@pytest.mark.parametrize("resolution", [2, 4, 8, 16])
def test_teapot_edge_manifold_with_documented_openings(resolution):
    # Not watertight: the lid-rim gap (4 + 4 patch edges), the spout's two
    # ends and the handle's two ends (2 patch edges each) are open; every
    # other edge is shared by exactly two consistently wound faces.
    f = meshes.teapot(resolution).faces
    counts = _undirected_edge_counts(f)
    assert counts.max() == 2
    assert np.sum(counts == 1) == 16 * resolution
    assert _directed_edge_counts(f).max() == 1


def test_teapot_outward_by_winding_number():
    # Points just outside each face (along its right-hand normal) have winding
    # number ~0 and points just inside ~1.  A few body faces inside the spout
    # and handle roots are legitimately "outside" only with respect to the
    # body, hence the 97% threshold on the outer side.
    pot_mesh = meshes.teapot(6)
    v, f = pot_mesh.vertices, pot_mesh.faces
    v = v.astype(np.float64)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(f), size=300, replace=False)
    n = _face_normals(v, f[pick])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    centroids = _tri(v, f[pick]).mean(axis=1)
    eps = 1e-3
    outer = _winding_numbers(centroids + eps * n, v, f)
    inner = _winding_numbers(centroids - eps * n, v, f)
    assert np.mean(outer < 0.5) > 0.97
    assert np.all(inner > 0.5)


def test_teapot_per_part_normals():
    pot_mesh = meshes.teapot(8)
    v, f = pot_mesh.vertices, pot_mesh.faces
    n = _face_normals(v, f)
    c = _tri(v, f).mean(axis=1)
    # Bottom faces (y at the minimum) face down.
    bottom = c[:, 1] < v[:, 1].min() + 1e-3
    assert bottom.sum() > 0 and np.all(n[bottom, 1] < 0)
    # Lid faces near the knob face up.
    knob = (c[:, 1] > v[:, 1].max() - 0.02) & (np.hypot(c[:, 0], c[:, 2]) < 0.2)
    assert knob.sum() > 0 and np.all(n[knob, 1] > 0)
    # Body belly faces face away from the vertical axis.
    belly = (np.abs(c[:, 1] - (-0.04)) < 0.1) & (np.hypot(c[:, 0], c[:, 2]) > 0.55)
    belly &= np.abs(c[:, 0]) < 0.5  # away from spout and handle
    radial = np.einsum("fi,fi->f", n[belly][:, [0, 2]], c[belly][:, [0, 2]])
    assert belly.sum() > 10 and np.all(radial > 0)


def test_teapot_deterministic():
    pot_mesh = meshes.teapot(4)
    v1, f1 = pot_mesh.vertices, pot_mesh.faces
    pot_mesh = meshes.teapot(4)
    v2, f2 = pot_mesh.vertices, pot_mesh.faces
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(f1, f2)


# ---------------------------------------------------------------------------
# argument validation


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: meshes.icosphere(-1), "subdivisions"),
        (lambda: meshes.icosphere(9), "subdivisions"),
        (lambda: meshes.icosphere(2.0), "subdivisions"),
        (lambda: meshes.icosphere(True), "subdivisions"),
        (lambda: meshes.icosphere("2"), "subdivisions"),
        (lambda: meshes.icosphere(2, radius=0.0), "radius"),
        (lambda: meshes.icosphere(2, radius=-1.0), "radius"),
        (lambda: meshes.icosphere(2, radius=float("nan")), "radius"),
        (lambda: meshes.icosphere(2, radius=float("inf")), "radius"),
        (lambda: meshes.icosphere(2, radius="1"), "radius"),
        (lambda: meshes.teapot(0), "resolution"),
        (lambda: meshes.teapot(1), "resolution"),
        (lambda: meshes.teapot(65), "resolution"),
        (lambda: meshes.teapot(8.0), "resolution"),
        (lambda: meshes.teapot(None), "resolution"),
        (lambda: meshes.teapot(8, normalization="yes"), "normalization"),
        (lambda: meshes.teapot(8, normalization=1), "normalization"),
        (lambda: meshes.cube(0.0), "size"),
        (lambda: meshes.cube(-2.0), "size"),
        (lambda: meshes.cube(float("nan")), "size"),
        (lambda: meshes.cube([2.0]), "size"),
    ],
)
def test_invalid_arguments_raise(call, name):
    with pytest.raises(ValueError, match=name) as info:
        call()
    message = str(info.value)
    assert "got" in message and "must be" in message


def test_error_message_format():
    with pytest.raises(ValueError) as info:
        meshes.icosphere(-1)
    assert str(info.value) == "icosphere: subdivisions must be an int in [0, 8], got -1"


# ---------------------------------------------------------------------------
# the mesh type jaxnmr.Mesh


def test_generators_return_a_mesh_that_is_not_a_tuple():
    import jaxnmr

    for mesh in (meshes.cube(), meshes.icosphere(0), meshes.teapot(2)):
        assert isinstance(mesh, jaxnmr.Mesh)
        assert mesh.textures is mesh.vertex_colors is mesh.face_uvs is mesh.texture_map is mesh.face_colors is None
        with pytest.raises(TypeError, match="not iterable"):
            v, f = mesh
    assert "Mesh(vertices=float32[8, 3], faces=int32[12, 3])" == repr(meshes.cube())


def test_mesh_is_a_pytree_through_jit_vmap_and_grad():
    import jax
    import jax.numpy as jnp

    import jaxnmr

    cube = meshes.cube()
    colors = np.random.default_rng(0).random((12, 3)).astype(np.float32)
    mesh = cube.replace(face_colors=colors)
    leaves, tree = jax.tree.flatten(mesh)
    assert len(leaves) == 3  # vertices, faces, face_colors; the absent fields are None, not leaves
    assert jax.tree.unflatten(tree, leaves).face_colors is colors
    moved = jax.jit(lambda m: m.replace(vertices=m.vertices + 1.0))(mesh)
    assert isinstance(moved, jaxnmr.Mesh) and moved.texture_map is None
    np.testing.assert_allclose(moved.vertices, cube.vertices + 1.0)
    np.testing.assert_array_equal(moved.faces, cube.faces)
    batch = jaxnmr.Mesh(jnp.stack([cube.vertices, 2 * cube.vertices]), cube.faces)  # leading dims allowed
    tri = jax.vmap(lambda v: jaxnmr.Mesh(v, cube.faces).face_vertices)(batch.vertices)
    np.testing.assert_allclose(batch.face_vertices, tri)
    np.testing.assert_allclose(tri, np.stack([cube.vertices[cube.faces], 2 * cube.vertices[cube.faces]]))
    loss = lambda m: jnp.sum(m.face_vertices[..., 0])
    g = jax.grad(loss, allow_int=True)(jaxnmr.Mesh(jnp.asarray(cube.vertices), cube.faces))  # faces: float0
    assert isinstance(g, jaxnmr.Mesh)
    np.testing.assert_allclose(np.asarray(g.vertices)[:, 0], np.bincount(cube.faces.ravel(), minlength=8))


def test_mesh_face_vertices_replace_and_to_textures():
    import jaxnmr

    cube = meshes.cube()
    np.testing.assert_array_equal(cube.face_vertices, cube.vertices[cube.faces])
    with pytest.raises(Exception):
        cube.vertices = cube.vertices  # frozen
    grey = np.asarray(cube.to_textures())
    assert grey.shape == (12, 4, 4, 4, 3) and grey.dtype == np.float32 and (grey == 0.5).all()
    colors = np.random.default_rng(1).random((8, 3)).astype(np.float32)
    coloured = cube.replace(vertex_colors=colors)
    np.testing.assert_allclose(coloured.to_textures(2), jaxnmr.vertex_colors_to_textures(colors, cube.faces, 2))
    face_colors = np.random.default_rng(2).random((12, 3)).astype(np.float32)
    flat = np.asarray(cube.replace(face_colors=face_colors).to_textures(3))
    np.testing.assert_array_equal(flat, np.broadcast_to(face_colors[:, None, None, None], (12, 3, 3, 3, 3)))
    cubes = np.random.default_rng(3).random((12, 2, 2, 2, 3)).astype(np.float32)
    textured = cube.replace(textures=cubes, face_colors=face_colors)
    np.testing.assert_array_equal(textured.to_textures(), cubes)  # stored cubes come first
    np.testing.assert_array_equal(textured.to_textures(2), cubes)
    with pytest.raises(ValueError, match=r"Mesh.to_textures: the mesh holds texture cubes with T = 2"):
        textured.to_textures(4)
    texture_map = np.random.default_rng(4).random((5, 6, 3)).astype(np.float32)
    face_uvs = np.random.default_rng(5).random((12, 3, 2)).astype(np.float32)
    mapped = cube.replace(texture_map=texture_map, face_uvs=face_uvs, vertex_colors=colors)
    np.testing.assert_allclose(mapped.to_textures(3), jaxnmr.uv_to_textures(texture_map, face_uvs, 3))


@pytest.mark.parametrize("changes, error, message", [
    (dict(vertices=np.zeros((8, 2), np.float32)), ValueError,
     r"Mesh: vertices must have shape \[\.\.\., N, 3\], got shape \(8, 2\)"),
    (dict(faces=np.zeros((12,), np.int32)), ValueError,
     r"Mesh: faces must have shape \[\.\.\., F, 3\], got shape \(12,\)"),
    (dict(faces=np.zeros((12, 3), np.float32)), TypeError, r"Mesh: faces must be an integer array .*float32"),
    (dict(vertices=np.zeros((8, 3), np.int32)), TypeError, r"Mesh: vertices must be a floating-point array"),
    (dict(textures=np.zeros((11, 2, 2, 2, 3), np.float32)), ValueError,
     r"Mesh: textures must have F = 12 \(as faces\), got shape \(11, 2, 2, 2, 3\)"),
    (dict(textures=np.zeros((12, 2, 3, 2, 3), np.float32)), ValueError,
     r"Mesh: textures must have shape .*cubes"),
    (dict(vertex_colors=np.zeros((7, 3), np.float32)), ValueError,
     r"Mesh: vertex_colors must have N = 8 \(as vertices\)"),
    (dict(face_colors=np.zeros((12, 4), np.float32)), ValueError,
     r"Mesh: face_colors must have shape \[\.\.\., F, 3\]"),
    (dict(face_uvs=np.zeros((12, 3, 2), np.float32)), ValueError, r"Mesh: face_uvs needs texture_map"),
    (dict(texture_map=np.zeros((4, 4, 3), np.float32)), ValueError, r"Mesh: texture_map needs face_uvs"),
])
def test_mesh_checks_its_fields(changes, error, message):
    with pytest.raises(error, match=message):
        meshes.cube().replace(**changes)
