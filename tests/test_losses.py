"""jaxnmr.losses: hand-computed values, invariances, gradients and input errors."""

import math

import jax
import numpy as np
import pytest

from jaxnmr import losses, meshes

# Unit right-angle tetrahedron, faces wound outwards.
TETRA_V = np.array([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], np.float32)
TETRA_F = np.array([(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)], np.int32)

MESH_LOSSES = (losses.laplacian_smoothing, losses.edge_length, losses.normal_consistency)


def grid(n: int, spacing: float = 1.0):
    """Flat regular (n x n)-vertex grid in the z = 0 plane, every cell split along the same diagonal."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    v = np.stack([i.ravel() * spacing, j.ravel() * spacing, np.zeros(n * n)], axis=1).astype(np.float32)
    a = (i[:-1, :-1] * n + j[:-1, :-1]).ravel()
    b, c, d = a + n, a + n + 1, a + 1
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    return v, f


def hexagon_fan(center=(0.0, 0.0, 0.0)):
    """A centre vertex and a unit regular hexagon around the origin, six triangles."""
    ring = [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3), 0.0) for k in range(6)]
    v = np.array([center] + ring, np.float32)
    f = np.array([(0, 1 + k, 1 + (k + 1) % 6) for k in range(6)], np.int32)
    return v, f


def folded_pair(angle_deg: float):
    """Two triangles on the edge (0,0,0)-(1,0,0), consistently wound, the second rotated by angle_deg."""
    t = math.radians(angle_deg)
    v = np.array([(0, 0, 0), (1, 0, 0), (0.5, 1, 0), (0.5, -math.cos(t), math.sin(t))], np.float32)
    f = np.array([(0, 1, 2), (1, 0, 3)], np.int32)
    return v, f


def bumpy_sphere():
    sphere = meshes.icosphere(2)
    v, f = sphere.vertices, sphere.faces
    rng = np.random.default_rng(0)
    return (v * (1 + 0.1 * rng.standard_normal((len(v), 1)))).astype(np.float32), f


# -- hand-computed values -------------------------------------------------------------------------------------


def test_tetrahedron_values():
    # Laplacian: vertex 0's neighbours' centroid is (1,1,1)/3 -> 1/3; vertex 1's is (0,1,1)/3 -> 11/9; mean 1.
    np.testing.assert_allclose(losses.laplacian_smoothing(TETRA_V, TETRA_F), 1.0, rtol=1e-6)
    # Edges: three of length 1 and three of length sqrt(2).
    np.testing.assert_allclose(losses.edge_length(TETRA_V, TETRA_F), 1.5, rtol=1e-6)
    np.testing.assert_allclose(losses.edge_length(TETRA_V, TETRA_F, 1.0), (math.sqrt(2) - 1) ** 2 / 2, rtol=1e-5)
    # Normals -x, -y, -z, (1,1,1)/sqrt3: three pairs at cos 0, three at cos -1/sqrt3.
    np.testing.assert_allclose(losses.normal_consistency(TETRA_V, TETRA_F), 1 + 1 / (2 * math.sqrt(3)), rtol=1e-6)


def test_cube_values():
    box = meshes.cube(2.0)  # 12 edges of length 2 at right angles, 6 face diagonals of length 2 sqrt2, flat
    v, f = box.vertices, box.faces
    np.testing.assert_allclose(losses.normal_consistency(v, f), 12 / 18, rtol=1e-6)
    np.testing.assert_allclose(losses.edge_length(v, f), (12 * 4 + 6 * 8) / 18, rtol=1e-6)
    np.testing.assert_allclose(losses.edge_length(v, f, 2.0), 6 * (2 * math.sqrt(2) - 2) ** 2 / 18, rtol=1e-5)


def test_laplacian_hexagon_fan_center_at_centroid():
    # Ring vertex k: neighbours 0, k-1, k+1 with centroid p_k / 3, so |2/3 p_k|^2 = 4/9; the centre adds 0.
    v, f = hexagon_fan()
    np.testing.assert_allclose(losses.laplacian_smoothing(v, f), 6 * (4 / 9) / 7, rtol=1e-6)
    moved, _ = hexagon_fan(center=(0.2, 0.0, 0.0))
    assert losses.laplacian_smoothing(moved, f) > 6 * (4 / 9) / 7 + 1e-3


def test_laplacian_zero_in_flat_grid_interior():
    # A vertex whose neighbours and itself all sit at their neighbours' centroid gets zero gradient, which is
    # only true if the Laplacian is zero at those interior vertices.
    n = 7
    v, f = grid(n)
    g = np.asarray(jax.grad(losses.laplacian_smoothing)(v, f)).reshape(n, n, 3)
    np.testing.assert_allclose(g[2:-2, 2:-2], 0.0, atol=1e-6)
    assert np.abs(g[0, 0]).max() > 1e-3  # the boundary is not at its centroid


def test_laplacian_ignores_unused_vertices():
    v = np.concatenate([TETRA_V, [[5.0, 5.0, 5.0]]]).astype(np.float32)
    np.testing.assert_allclose(losses.laplacian_smoothing(v, TETRA_F), 1.0, rtol=1e-6)


@pytest.mark.parametrize("spacing", [1.0, 1e-3])
def test_normal_consistency_zero_on_a_plane(spacing):
    v, f = grid(5, spacing)
    np.testing.assert_allclose(losses.normal_consistency(v, f), 0.0, atol=1e-6)


@pytest.mark.parametrize("angle", [30.0, 60.0, 90.0, 150.0])
def test_normal_consistency_folded_pair(angle):
    v, f = folded_pair(angle)
    np.testing.assert_allclose(losses.normal_consistency(v, f), 1 - math.cos(math.radians(angle)), atol=1e-6)
    flat, _ = folded_pair(0.0)
    np.testing.assert_allclose(losses.normal_consistency(flat, f), 0.0, atol=1e-6)


# -- invariances, batching, jit -------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", MESH_LOSSES)
def test_translation_invariance(loss):
    v, f = bumpy_sphere()
    base = loss(v, f)
    assert base > 1e-4
    np.testing.assert_allclose(loss(v + np.float32([3.0, -2.0, 7.5]), f), base, rtol=1e-4)


def test_scaling():
    v, f = bumpy_sphere()
    for loss, power in zip(MESH_LOSSES, (2, 2, 0)):
        np.testing.assert_allclose(loss(2.0 * v, f), 2.0**power * loss(v, f), rtol=1e-5)


@pytest.mark.parametrize("loss", MESH_LOSSES)
def test_batch_jit_and_vmap(loss):
    v, f = bumpy_sphere()
    batch = np.stack([v, 1.5 * v, v[::-1] * 0 + v]).astype(np.float32)
    out = loss(batch, f)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, [loss(b, f) for b in batch], rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda x: loss(x, f)))(batch), out, rtol=1e-6)


# -- gradients ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", MESH_LOSSES)
def test_gradients_finite_for_degenerate_meshes(loss):
    f = TETRA_F
    for v in (np.zeros_like(TETRA_V), np.array([(0, 0, 0), (0, 0, 0), (0, 1, 0), (0, 1, 0)], np.float32)):
        value, g = jax.value_and_grad(loss)(v, f)
        assert np.isfinite(value) and np.all(np.isfinite(g)), (loss.__name__, v)
    g = jax.grad(lambda x: losses.edge_length(x, f, 1.0))(np.zeros_like(TETRA_V))
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("loss", MESH_LOSSES)
def test_gradient_matches_finite_differences(loss):
    v, f = bumpy_sphere()
    direction = np.random.default_rng(1).standard_normal(v.shape).astype(np.float32)
    g = np.asarray(jax.grad(loss)(v, f), np.float64)
    h = 1e-3
    v64 = v.astype(np.float64)
    fd = (float(loss(v64 + h * direction, f)) - float(loss(v64 - h * direction, f))) / (2 * h)
    np.testing.assert_allclose(np.sum(g * direction), fd, rtol=2e-2)


def test_regularisers_pull_a_noisy_sphere_smooth():
    v, f = bumpy_sphere()
    smooth = meshes.icosphere(2).vertices
    for loss in (losses.laplacian_smoothing, losses.normal_consistency):
        assert loss(v, f) > 2 * loss(smooth, f)


# -- silhouette IoU -------------------------------------------------------------------------------------------


def test_silhouette_iou_hard_values():
    a = np.zeros((4, 4), np.float32)
    b = np.zeros((4, 4), np.float32)
    a[1:3, 0:2] = 1
    b[1:3, 1:3] = 1
    np.testing.assert_allclose(losses.silhouette_iou(a, b), 2 / 6)
    np.testing.assert_allclose(losses.silhouette_iou(a, a), 1.0)
    np.testing.assert_allclose(losses.silhouette_iou(a, 1 - a), 0.0)
    # Threshold 0.5 is strict: 0.51 counts as inside, 0.5 does not.
    np.testing.assert_allclose(losses.silhouette_iou(a, 0.51 * a), 1.0)
    np.testing.assert_allclose(losses.silhouette_iou(a, 0.5 * a), 0.0)
    np.testing.assert_allclose(losses.silhouette_iou(a, 0.25 * a, threshold=0.2), 1.0)
    np.testing.assert_allclose(losses.silhouette_iou(np.zeros((4, 4), np.float32), np.zeros((4, 4))), 1.0)


def test_silhouette_iou_soft_and_batched():
    half = np.full((3, 3), 0.5, np.float32)
    np.testing.assert_allclose(losses.silhouette_iou(half, half, threshold=None), 0.25 / 0.75, rtol=1e-6)
    stack = np.stack([half, np.ones((3, 3), np.float32)])
    out = losses.silhouette_iou(stack, np.ones((3, 3), np.float32), threshold=None)
    np.testing.assert_allclose(out, [0.5, 1.0], rtol=1e-6)
    g = jax.grad(lambda x: losses.silhouette_iou(x, half, threshold=None))(half)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
    np.testing.assert_allclose(losses.silhouette_mse(stack, half), [0.0, 0.25])


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", MESH_LOSSES)
def test_shape_and_dtype_errors(loss):
    name = loss.__name__
    with pytest.raises(ValueError, match=rf"{name}: vertices must have shape \[\.\.\., N, 3\], got shape \(4, 2\)"):
        loss(TETRA_V[:, :2], TETRA_F)
    with pytest.raises(ValueError, match=rf"{name}: faces must have shape \[\.\.\., F, 3\], got shape \(4, 4\)"):
        loss(TETRA_V, np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match=rf"{name}: faces must have shape \[F, 3\].*got shape \(2, 4, 3\)"):
        loss(TETRA_V, np.stack([TETRA_F, TETRA_F]))
    with pytest.raises(TypeError, match=rf"{name}: faces must be an integer array"):
        loss(TETRA_V, TETRA_F.astype(np.float32))
    with pytest.raises(TypeError, match=rf"{name}: vertices must be a floating-point array"):
        loss(TETRA_V.astype(np.int32), TETRA_F)
    with pytest.raises(ValueError, match=rf"{name}: faces\[0\] = \[0, 2, 9\] indexes outside the 4 vertices"):
        loss(TETRA_V, np.array([(0, 2, 9)], np.int32))
    with pytest.raises(TypeError, match=rf"{name}: faces must be concrete"):
        jax.jit(loss)(TETRA_V, TETRA_F)


def test_silhouette_errors():
    with pytest.raises(ValueError, match=r"silhouette_iou: a and b must have the same image size.*\(4, 4\).*\(4, 5\)"):
        losses.silhouette_iou(np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"silhouette_iou: a must have shape \[\.\.\., H, W\], got shape \(4,\)"):
        losses.silhouette_iou(np.zeros(4, np.float32), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"silhouette_mse: the leading dims"):
        losses.silhouette_mse(np.zeros((2, 4, 4), np.float32), np.zeros((3, 4, 4), np.float32))
    with pytest.raises(TypeError, match=r"edge_length: target must be a floating-point array"):
        losses.edge_length(TETRA_V, TETRA_F, target=np.array([1], dtype=np.int32))
