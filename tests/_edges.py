"""The bound on pixels that may differ between two renders of the same scene whose NDC coordinates differ in
their last bits (not tests themselves; tests/test_edges.py checks the bound on the CPU, tests/test_gpu.py uses
it to compare whole pipelines on a GPU with the CPU).

Why: given identical NDC faces, the CUDA and CPU kernels agree bit for bit. But XLA evaluates the camera
transform (look_at, perspective) on a GPU in another order than on the CPU, so whole pipelines see NDC
coordinates that differ in their last bits (measured on an H200: up to ~1e4 ulp on near-zero coordinates;
most by an ulp or none). Then

  * coverage (alpha, silhouettes) can change only at pixels whose centre lies on a face edge: every differing
    pixel must lie within EDGE_TOLERANCE_PX pixels of an edge of a drawable face (with anti-aliasing, one of
    the four internal pixels behind an output pixel), and at most MAX_FRACTION of the covered pixels differ;
  * colour and depth follow the barycentrics, which faces seen edge-on turn into large changes, and the
    visible face can change where two surfaces meet at equal depth: at most MAX_FRACTION of the covered pixels
    may differ by more than VISIBLE (1e-2; relative for depth), and the mean absolute difference over the
    covered pixels is at most MEAN (relative for depth).
"""

from __future__ import annotations

import numpy as np

EDGE_TOLERANCE_PX = 0.01
MAX_FRACTION = 1e-3
VISIBLE = 1e-2
MEAN = 2e-4


def drawable(faces_ndc: np.ndarray) -> np.ndarray:
    """Faces [F, 3, 3] the kernels can draw: finite, in front of the camera, counter-clockwise in NDC."""
    f = np.asarray(faces_ndc, np.float64)
    finite = np.isfinite(f).all(axis=(1, 2))
    front = (f[:, :, 2] > 0).all(axis=1)
    area = (f[:, 1, 0] - f[:, 0, 0]) * (f[:, 2, 1] - f[:, 0, 1]) - (f[:, 2, 0] - f[:, 0, 0]) * (f[:, 1, 1] - f[:, 0, 1])
    return finite & front & (area >= 0)


def edge_distance_px(rows: np.ndarray, cols: np.ndarray, faces_ndc: np.ndarray, S: int,
                     chunk: int = 64) -> np.ndarray:
    """Distance in pixels from the centres of internal pixels (rows [K], cols [K]; row 0 at the bottom) at
    resolution S to the nearest edge segment of any drawable face of faces_ndc [F, 3, 3]. float64 [K]."""
    f = np.asarray(faces_ndc, np.float64)[drawable(faces_ndc)]
    uv = 0.5 * (f[:, :, :2] * S + S - 1)  # [F, 3, 2] vertices in pixel coordinates
    a, b = uv, np.roll(uv, -1, axis=1)  # the three edges a -> b of each face
    ab = b - a
    length2 = np.maximum((ab**2).sum(-1), 1e-300)
    points = np.stack([np.asarray(cols, np.float64), np.asarray(rows, np.float64)], -1)  # [K, 2] as (u, v)
    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk, None, None, :]  # [k, 1, 1, 2]
        t = np.clip(((p - a) * ab).sum(-1) / length2, 0.0, 1.0)
        nearest = a + t[..., None] * ab
        out[start:start + chunk] = np.sqrt(((p - nearest) ** 2).sum(-1)).min(axis=(1, 2)) if len(f) else np.inf
    return out


def internal_blocks(out_rows: np.ndarray, out_cols: np.ndarray, size: int, anti_aliasing: bool):
    """Internal pixels (rows, cols [K, n]; row 0 at the bottom) behind output pixels (row 0 at the top) of a
    size x size image: n = 4 with anti-aliasing (the 2x2 block), else 1."""
    flipped = size - 1 - np.asarray(out_rows)
    cols = np.asarray(out_cols)
    if not anti_aliasing:
        return flipped[:, None], cols[:, None]
    rows = np.stack([2 * flipped, 2 * flipped, 2 * flipped + 1, 2 * flipped + 1], -1)
    cols = np.stack([2 * cols, 2 * cols + 1, 2 * cols, 2 * cols + 1], -1)
    return rows, cols


def unexplained_differences(got: np.ndarray, want: np.ndarray, faces_ndc: np.ndarray, anti_aliasing: bool,
                            atol: float = 1e-4) -> dict:
    """Compares two coverage images [H, W] of the same view: which pixels differ by more than atol, and which
    of those lie farther than EDGE_TOLERANCE_PX from every drawable face edge. Counts, for the message."""
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    out_rows, out_cols = np.nonzero(diff > atol)
    size = diff.shape[0]
    S = 2 * size if anti_aliasing else size
    rows, cols = internal_blocks(out_rows, out_cols, size, anti_aliasing)
    distance = edge_distance_px(rows.ravel(), cols.ravel(), faces_ndc, S).reshape(rows.shape).min(-1)
    far = distance > EDGE_TOLERANCE_PX
    return {
        "differing": int(len(out_rows)),
        "unexplained": int(far.sum()),
        "unexplained_at": list(zip(out_rows[far][:10].tolist(), out_cols[far][:10].tolist())),
        "worst_edge_distance_px": float(distance.max()) if len(distance) else 0.0,
    }


def assert_coverage_within_bound(got, want, faces_ndc, anti_aliasing: bool) -> dict:
    """Coverage images [H, W] (alpha or silhouettes; covered = want > 0) differ only at edge pixels, at no more
    than MAX_FRACTION of the covered pixels (at least one pixel allowed). Returns the counts."""
    report = unexplained_differences(got, want, faces_ndc, anti_aliasing)
    covered = int((np.asarray(want) > 0).sum())
    assert report["unexplained"] == 0, report
    assert report["differing"] <= max(1, MAX_FRACTION * covered), (report, covered)
    return report


def assert_values_within_bound(got, want, covered, relative: bool = False) -> dict:
    """rgb [H, W, 3] or depth [H, W] images: at most MAX_FRACTION of the ``covered`` [H, W] pixels differ by
    more than VISIBLE, and the mean absolute difference over them is at most MEAN (both relative to the
    reference value with ``relative``, for depth). Returns the figures."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    diff = np.abs(got - want) / (np.abs(want) if relative else 1.0)
    diff = diff.max(-1) if diff.ndim == 3 else diff
    covered = np.asarray(covered, bool)
    report = {"visible": int((diff[covered] > VISIBLE).sum()), "covered": int(covered.sum()),
              "mean": float(diff[covered].mean()) if covered.any() else 0.0}
    assert report["visible"] <= max(1, MAX_FRACTION * report["covered"]), report
    assert report["mean"] <= MEAN, report
    return report
