"""The edge-pixel bound the GPU pipeline tests use (tests/_edges.py), checked on the CPU: renders whose NDC
coordinates differ in their last bits differ only where the bound allows, and the bound catches a pixel it
should not allow."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxnmr
from jaxnmr import meshes
from _edges import (assert_coverage_within_bound, assert_values_within_bound, edge_distance_px,
                    unexplained_differences)


def test_edge_distance_by_hand():
    S = 8
    # a triangle whose pixel-space vertices are (1, 1), (5, 1), (1, 5): NDC x = (2u + 1 - S) / S
    to_ndc = lambda u: (2 * u + 1 - S) / S
    face = np.array([[[to_ndc(1), to_ndc(1), 1.0], [to_ndc(5), to_ndc(1), 1.0], [to_ndc(1), to_ndc(5), 1.0]]])
    d = edge_distance_px(np.array([1, 3, 2, 0]), np.array([3, 1, 2, 0]), face, S)
    np.testing.assert_allclose(d, [0.0, 0.0, 1.0, np.sqrt(2.0)])
    # a back-facing copy is never drawn, so its edges do not count
    assert np.isinf(edge_distance_px(np.array([3]), np.array([3]), face[:, ::-1], S)).all()


EYE = (1.2, 1.4, -2.1)  # 2.732 from the origin


def _teapot():
    pot = meshes.teapot(resolution=8)
    v, f = pot.vertices, pot.faces
    return np.asarray(v), np.asarray(jaxnmr.mesh.fill_back(jnp.asarray(f)))


def _teapot_ndc():
    """NDC face-vertex coordinates [F, 3, 3] of the teapot from EYE by jaxnmr (float32)."""
    v, f = _teapot()
    ndc = jaxnmr.perspective(jaxnmr.look_at(jnp.asarray(v), np.asarray(EYE, np.float32)))
    return np.asarray(jaxnmr.vertices_to_faces(ndc, f))


def _teapot_ndc_float64():
    """The same camera evaluated in float64 by hand and rounded to float32: coordinates that differ from
    jaxnmr's in their last bits, as a GPU's evaluation order makes them (most by an ulp or two, near-zero ones
    by many)."""
    v, f = _teapot()
    v = v.astype(np.float64)
    eye = np.asarray(np.float32(EYE), np.float64)
    unit = lambda x: x / (np.linalg.norm(x) + 1e-5)
    z = unit(-eye)
    x = unit(np.cross([0.0, 1.0, 0.0], z))
    y = unit(np.cross(z, x))
    cam = (v - eye) @ np.stack([x, y, z]).T
    width = np.tan(np.radians(np.float32(30.0)))
    ndc = np.stack([cam[:, 0] / (cam[:, 2] * width), cam[:, 1] / (cam[:, 2] * width), cam[:, 2]], -1)
    return ndc.astype(np.float32)[f]


def test_the_two_evaluations_differ_in_their_last_bits():
    a, b = _teapot_ndc(), _teapot_ndc_float64()
    assert (a != b).mean() > 0.3
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size, anti_aliasing", [(2048, False), (1024, True)])
def test_renders_of_the_two_evaluations_differ_only_where_the_bound_allows(size, anti_aliasing):
    face_vertices, other = _teapot_ndc(), _teapot_ndc_float64()
    textures = np.random.default_rng(0).uniform(0, 1, (face_vertices.shape[0], 2, 2, 2, 3)).astype(np.float32)
    want = jaxnmr.rasterize_rgbad(face_vertices, textures, size, anti_aliasing)
    got = jaxnmr.rasterize_rgbad(other, textures, size, anti_aliasing)
    report = assert_coverage_within_bound(np.asarray(got.alpha), np.asarray(want.alpha), face_vertices, anti_aliasing)
    assert report["differing"] > 0  # some pixels do flip, so the check is not vacuous
    covered = np.asarray(want.alpha) > 0
    assert assert_values_within_bound(got.rgb, want.rgb, covered)["mean"] > 0
    assert_values_within_bound(got.depth, want.depth, covered, relative=True)


def test_the_value_bound_rejects_a_uniform_shift():
    want = np.random.default_rng(0).uniform(0, 1, (32, 32, 3))
    covered = np.ones((32, 32), bool)
    assert_values_within_bound(want + 1e-4, want, covered)
    with pytest.raises(AssertionError):
        assert_values_within_bound(want + 1e-3, want, covered)
    with pytest.raises(AssertionError):  # two visible differences are more than 0.1% of 1024 pixels
        shifted = want.copy()
        shifted[0, 0] += 0.1
        shifted[5, 5] += 0.1
        assert_values_within_bound(shifted, want, covered)


def test_the_bound_rejects_an_interior_difference():
    face_vertices = _teapot_ndc()
    want = np.asarray(jaxnmr.rasterize_silhouettes(face_vertices, 128, anti_aliasing=False))
    rows, cols = np.nonzero(want > 0)
    got = want.copy()
    # a pixel deep inside the silhouette: all eight neighbours covered too
    inner = np.array([(r, c) for r, c in zip(rows, cols) if want[r - 1:r + 2, c - 1:c + 2].sum() == 9])
    distance = edge_distance_px(127 - inner[:, 0], inner[:, 1], face_vertices, 128)
    r, c = inner[np.argmax(distance)]
    assert distance.max() > 0.1
    got[r, c] = 0.0
    report = unexplained_differences(got, want, face_vertices, False, 1e-4)
    assert report["differing"] == 1 and report["unexplained"] == 1, report
    with pytest.raises(AssertionError):
        assert_coverage_within_bound(got, want, face_vertices, False)
