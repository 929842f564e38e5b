// jaxnmr point rasterizer: the per-point and per-pixel math, and the CUDA back end's work items, written once for
// every back end.
//
// The CPU handlers (points_cpu.cc) loop over the per-point and per-pixel functions; the CUDA handlers
// (points_cuda.cu) launch the work items at the end of this file as grids, and grid_cpu.cc runs the same work
// items serially on the CPU for the tests. Which pixels a point covers, in which slot it lands and what gradient
// it receives is decided here and nowhere else.
//
// Conventions as for the mesh (raster.h): points are [P, 3] float32 in NDC, x, y in [-1, 1] across the image and
// z the camera depth; internal buffers are [S, S, K] with row 0 at the bottom; pixel (r, c) is sampled at its
// centre (pixel_center(c, S), pixel_center(r, S)). All arithmetic is float32 in the order written here, compiled
// without FMA contraction, so that reference.py (pure jnp) reproduces it.
#ifndef JAXNMR_POINTS_H_
#define JAXNMR_POINTS_H_

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "grid.h"  // Count, kEmptyKey, depth_key, key_face, owner_of, batch_index
#include "points_args.h"
#include "raster.h"

namespace jaxnmr {

// Everything the pixels need about one point, computed once per point (docs/points.md, "Cost"): the centre, the
// squared radius as the coverage test compares it, the point's key and the inclusive pixel box its disc can
// cover. 32 bytes, so that the CPU's bands read their points as one compact stream.
struct PointSetup {
  Count key;               // point_key(z, p)
  float x, y, r2;          // NDC centre and radius * radius (rounded to float)
  int16_t c0, c1, r0, r1;  // inclusive pixel box; empty (c0 > c1, r0 > r1) where the point covers nothing
};

// The key that orders a pixel's slots (docs/points.md, "Fragments"): by z, then by point index, as one unsigned
// 64-bit integer (grid.h's depth_key: float bits made orderable, and the index below them). z + 0 turns -0 into
// +0, which compare equal as floats (only reachable with near < 0).
JAXNMR_HD Count point_key(float z, int32_t p) { return depth_key(z + 0.0f, p); }

JAXNMR_HD int32_t key_point(Count key) { return key_face(key); }

// The z of a key (depth_key undone).
JAXNMR_HD float key_depth(Count key) {
  uint32_t bits = static_cast<uint32_t>(key >> 32);
  bits = (bits & 0x80000000u) ? (bits & 0x7fffffffu) : ~bits;
  float z;
  memcpy(&z, &bits, sizeof(z));
  return z;
}

// Squared NDC distance from a point (x, y) to the pixel centre (cx, cy) (docs/points.md, "Fragments"): each
// square rounded before the sum.
JAXNMR_HD float point_dist2(float x, float y, float cx, float cy) {
  const float dx = cx - x, dy = cy - y;
  const float dx2 = dx * dx, dy2 = dy * dy;
  return dy2 + dx2;
}

// Inclusive range [lo, hi] of the pixels along one axis whose centres can lie within r of the coordinate x,
// widened by one pixel and clipped to [0, S-1] (docs/points.md, "Cost"); false if it misses the image.
//
// A covered pixel has |fl(c - x)| < r (fl(dx*dx) <= dist2 < fl(r*r), and rounding is monotone), so its centre lies
// within r (1 + 2^-23) of x. The float evaluation of the ends below errs by at most 2^-23 S (|x| + r + 1) pixels;
// `slack` is 8 times that, so the range holds every covered pixel for any finite x and r > 0, however large (a
// radius whose square overflows covers every pixel at a finite distance). Clamping happens on floats, before the
// int conversion, so infinities and huge values convert safely; a NaN fails the test.
JAXNMR_HD bool disc_range(float x, float r, int S, int* lo, int* hi) {
  const float slack = (fabsf(x) + r + 1.0f) * ((float)S * 0x1p-20f);  // (S 2^-20 < 1: no overflow of its own)
  const float l = ceilf(to_pixel(x - r, S) - slack) - 1.0f;
  const float h = floorf(to_pixel(x + r, S) + slack) + 1.0f;
  if (!(h >= 0.0f && l <= (float)(S - 1))) return false;
  *lo = (int)max_of(l, 0.0f);
  *hi = (int)min_of(h, (float)(S - 1));
  return true;
}

// Per-point setup of point p with coordinates pt[0..2] and radius `radius` (docs/points.md, "Fragments"): a
// point is drawn only with radius > 0 (false for NaN) and near < z < far (false for NaN), and only where its box
// meets the image (NaN or infinite x, y never do).
JAXNMR_HD PointSetup setup_point(const float* pt, float radius, int32_t p, int S, float near, float far) {
  PointSetup s;
  s.x = pt[0];
  s.y = pt[1];
  s.r2 = radius * radius;
  s.key = point_key(pt[2], p);
  s.c0 = s.r0 = 0;
  s.c1 = s.r1 = -1;
  int c0, c1, r0, r1;
  if (!(radius > 0.0f && pt[2] > near && pt[2] < far)) return s;
  if (!disc_range(s.x, radius, S, &c0, &c1) || !disc_range(s.y, radius, S, &r0, &r1)) return s;
  s.c0 = static_cast<int16_t>(c0);
  s.c1 = static_cast<int16_t>(c1);
  s.r0 = static_cast<int16_t>(r0);
  s.r1 = static_cast<int16_t>(r1);
  return s;
}

JAXNMR_HD bool point_drawn(const PointSetup& s) { return s.c0 <= s.c1 && s.r0 <= s.r1; }

// Pixels in a setup's box (0 if the point is not drawn).
JAXNMR_HD Count box_pixels(const PointSetup& s) {
  return point_drawn(s) ? static_cast<Count>(s.r1 - s.r0 + 1) * static_cast<Count>(s.c1 - s.c0 + 1) : 0ull;
}

// The coverage test (docs/points.md, "Fragments") at pixel centre (cx, cy) of a pixel in the setup's box: strict,
// so a point exactly one radius away does not cover it. *d2 is the squared distance.
JAXNMR_HD bool point_covers(const PointSetup& s, float cx, float cy, float* d2) {
  *d2 = point_dist2(s.x, s.y, cx, cy);
  return *d2 < s.r2;
}

// Whether the row with pixel-centre coordinate cy can hold a pixel the point covers: dist2 >= dy * dy (a rounded
// sum of two rounded squares is at least either), so a row with dy * dy >= r * r holds none.
JAXNMR_HD bool row_may_cover(const PointSetup& s, float cy) {
  const float dy = cy - s.y;
  return dy * dy < s.r2;
}

// Inserts `key` (with its dist2) into a pixel's K slots, of which the first *n hold keys in increasing order
// (docs/points.md, "Fragments"): with all K filled, a key not below the last one is dropped; else the larger keys
// move one slot on (the last one dropping out when all are filled). Since keys are distinct and totally ordered,
// the slots after any sequence of insertions hold the K smallest keys inserted, whatever their order.
JAXNMR_HD void insert_slot(Count* keys, float* d2s, uint8_t* n, int K, Count key, float d2) {
  int j = *n;
  if (j == K) {
    if (!(key < keys[K - 1])) return;
    --j;
  } else {
    *n = static_cast<uint8_t>(j + 1);
  }
  for (; j > 0 && keys[j - 1] > key; --j) {
    keys[j] = keys[j - 1];
    d2s[j] = d2s[j - 1];
  }
  keys[j] = key;
  d2s[j] = d2;
}

// The outputs of one slot from its key and dist2: index, depth and dist2, or -1, far and -1 where it is empty.
JAXNMR_HD void write_slot(Count key, float d2, float far, int32_t* index, float* depth, float* dist2) {
  const bool empty = key == kEmptyKey;
  *index = empty ? -1 : key_point(key);
  *depth = empty ? far : key_depth(key);
  *dist2 = empty ? -1.0f : d2;
}

// The gradient terms of one filled slot (docs/points.md, "Gradient") at the pixel centre (cx, cy), for the point
// pt[0..2] it holds, with that slot's cotangents (0 where a cotangent is absent): g[0..2] into the point's x, y, z.
JAXNMR_HD void slot_gradient(const float* pt, float cx, float cy, float g_depth, float g_dist2, float* g) {
  g[0] = g_dist2 * (2.0f * (pt[0] - cx));
  g[1] = g_dist2 * (2.0f * (pt[1] - cy));
  g[2] = g_depth;
}

// The point held by slot k of local pixel `local` = r * S + c of batch element b, or -1 where the slot is empty
// (or holds no point of this call): only slots with 0 <= index < P have a gradient.
JAXNMR_HD int32_t slot_point(const PointsBackwardArgs& a, const int32_t* index_b, int64_t local, int k) {
  const int32_t p = index_b[local * a.K + k];
  return p >= 0 && p < a.P ? p : -1;
}

// ---------------------------------------------------------------------------------------------------------
// The CUDA back end's work items (docs/points.md, "Cost"), with its atomics as the `Atomics` policy of grid.h
// (min on Count, add on float):
//   1. setup_points_item, one item per (batch element, point): setup_point and the pixels of its box;
//   2. an exclusive scan of those counts gives each point its first work item;
//   3. K rounds; in round k, points_round_item, one item per (point, pixel of its box): where the point covers
//      the pixel and its key is above the pixel's round k-1 key, an atomic minimum into the pixel's round k key,
//      which so becomes the k-th smallest key at the pixel; then points_resolve_item, one item per pixel, writes
//      slot k from it (dist2 recomputed by point_dist2);
//   4. backward: points_backward_item, one item per (pixel, slot), adds the slot's terms to its point atomically.

JAXNMR_HD const float* point_of(const PointsForwardArgs& a, int64_t b, int64_t p) {
  return a.points + (batch_index(a.points_map, b) * a.P + p) * 3;
}

JAXNMR_HD float radius_of(const PointsForwardArgs& a, int64_t b, int64_t p) {
  return a.radius[batch_index(a.radius_map, b) * a.R + (a.R == 1 ? 0 : p)];
}

// Item i = b * P + p: the point's setup and the number of pixels in its box.
JAXNMR_HD void setup_points_item(const PointsForwardArgs& a, int64_t i, PointSetup* setups, Count* counts) {
  const int64_t b = i / a.P, p = i % a.P;
  const PointSetup s = setup_point(point_of(a, b, p), radius_of(a, b, p), static_cast<int32_t>(p), a.S, a.near,
                                   a.far);
  setups[i] = s;
  counts[i] = box_pixels(s);
}

// Work item i of the scanned boxes in one round: one pixel of one point's box. prev: the pixels' keys of the
// round before ([B, S, S]), or null in the first round; cur: this round's, kEmptyKey before the round.
template <class Atomics>
JAXNMR_HD void points_round_item(const PointsForwardArgs& a, const PointSetup* setups, const Count* offsets, Count i,
                                 const Count* prev, Count* cur) {
  const int64_t owner = owner_of(offsets, a.B * a.P, i);
  const int64_t b = owner / a.P;
  const PointSetup& s = setups[owner];
  const int64_t local = static_cast<int64_t>(i - offsets[owner]);
  const int width = s.c1 - s.c0 + 1;
  const int r = s.r0 + static_cast<int>(local / width), c = s.c0 + static_cast<int>(local % width);
  const int64_t pixel = (b * a.S + r) * a.S + c;
  if (prev && !(s.key > prev[pixel])) return;  // already in an earlier slot, or the pixel has no more points
  float d2;
  if (point_covers(s, pixel_center(c, a.S), pixel_center(r, a.S), &d2)) Atomics::min(cur + pixel, s.key);
}

// Pixel `pixel` = (b * S + r) * S + c: slot k of its outputs from round k's key.
JAXNMR_HD void points_resolve_item(const PointsForwardArgs& a, const Count* keys, int k, int64_t pixel) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int64_t b = pixel / SS, local = pixel % SS;
  const int r = static_cast<int>(local / a.S), c = static_cast<int>(local % a.S);
  const Count key = keys[pixel];
  float d2 = -1.0f;
  if (key != kEmptyKey) {
    const float* pt = point_of(a, b, key_point(key));
    d2 = point_dist2(pt[0], pt[1], pixel_center(c, a.S), pixel_center(r, a.S));
  }
  const int64_t slot = pixel * a.K + k;
  write_slot(key, d2, a.far, a.index + slot, a.depth + slot, a.dist2 + slot);
}

// Item i = pixel * K + k, pixel = (b * S + r) * S + c: the slot's gradient terms added to its point's.
template <class Atomics>
JAXNMR_HD void points_backward_item(const PointsBackwardArgs& a, int64_t i) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int64_t pixel = i / a.K, b = pixel / SS, local = pixel % SS;
  const int k = static_cast<int>(i % a.K);
  const int32_t p = slot_point(a, a.index + batch_index(a.index_map, b) * SS * a.K, local, k);
  if (p < 0) return;
  const int64_t slot = local * a.K + k;
  const float gd = a.g_depth ? a.g_depth[batch_index(a.g_depth_map, b) * SS * a.K + slot] : 0.0f;
  const float gs = a.g_dist2 ? a.g_dist2[batch_index(a.g_dist2_map, b) * SS * a.K + slot] : 0.0f;
  const int r = static_cast<int>(local / a.S), c = static_cast<int>(local % a.S);
  float g[3];
  slot_gradient(a.points + (batch_index(a.points_map, b) * a.P + p) * 3, pixel_center(c, a.S), pixel_center(r, a.S),
                gd, gs, g);
  float* out = a.g_points + (b * a.P + p) * 3;
  for (int j = 0; j < 3; ++j) {
    if (g[j] != 0.0f) Atomics::add(out + j, g[j]);  // a zero changes no sum (they start at +0)
  }
}

}  // namespace jaxnmr

#endif  // JAXNMR_POINTS_H_
