// jaxnmr's GPU work decomposition: what one GPU thread does for one work item, written once.
//
// raster_cuda.cu launches these functions as grids; grid_cpu.cc runs the very same functions one item after
// another on the CPU, so the tests check the GPU's decomposition (work lists, the packed depth keys, the
// scalar sweep configuration) against the oracle on machines without a GPU. The per-face and per-pixel math
// itself is raster.h's, as on every back end. Atomic updates go through an `Atomics` policy: hardware atomics
// on the GPU, plain read-modify-writes in the serial CPU run.
//
// Forward (deterministic z-buffer, no locks):
//   1. setup_faces_item, one item per (batch element, face): setup_face, and the number of pixels in its range;
//   2. an exclusive scan of those counts gives each face its first work item;
//   3. raster_item, one item per (face, pixel of its range): the candidate test, then an atomic minimum of the
//      packed key (orderable depth bits, face index), so the nearest depth wins and ties go to the lowest
//      face index, exactly as the CPU's ordered strict z-test;
//   4. resolve_item, one item per pixel: face index, weights and depth recomputed from the winning face by the
//      same functions, the texture sample, the background.
// Backward:
//   1. count_scanlines_item, one item per (batch element, face, edge, axis): the scanlines of its sweep;
//   2. an exclusive scan, as above;
//   3. sweep_item, one item per scanline: raster.h's sweep_scanline, added into g_faces atomically;
//   4. pixel_gradients_item, one item per pixel: the depth and texture terms.
// Float atomics make the gradients' last bits depend on summation order; everything else is deterministic.
#ifndef JAXNMR_GRID_H_
#define JAXNMR_GRID_H_

#include <stdint.h>
#include <string.h>

#include "args.h"
#include "raster.h"

namespace jaxnmr {

// Work-item counts and offsets (the type the GPU's 64-bit atomics and CUB's scan take).
typedef unsigned long long Count;

// The key of a pixel no face has claimed (larger than every packed key).
constexpr Count kEmptyKey = ~0ull;

// Packs (depth, face) so that unsigned order is depth order, then face order: the sign bit of a float is
// flipped for positive values and all bits for negative ones.
JAXNMR_HD Count depth_key(float z, int32_t f) {
  uint32_t bits;
  memcpy(&bits, &z, sizeof(bits));
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<Count>(bits) << 32) | static_cast<uint32_t>(f);
}

JAXNMR_HD int32_t key_face(Count key) { return static_cast<int32_t>(key & 0xffffffffu); }

// Index k of the entry that owns work item i: offsets[k] <= i < offsets[k + 1], for the exclusive prefix sum
// `offsets` of n entries' counts (entries with no work are never owners: their range is empty).
JAXNMR_HD int64_t owner_of(const Count* offsets, int64_t n, Count i) {
  int64_t lo = 0, hi = n;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (offsets[mid] <= i) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

JAXNMR_HD const float* face_of(const ForwardArgs& a, int64_t b, int64_t f) {
  return a.faces + (a.faces_map(b) * a.F + f) * 9;
}

JAXNMR_HD const float* face_of(const BackwardArgs& a, int64_t b, int64_t f) {
  return a.faces + (a.faces_map(b) * a.F + f) * 9;
}

// ---------------------------------------------------------------------------------------------------------
// Forward.

// Item i = b * F + f: the face's setup and the number of pixels in its range (0 if it is not drawable).
JAXNMR_HD void setup_faces_item(const ForwardArgs& a, int64_t i, FaceSetup* setups, Count* counts) {
  const int64_t b = i / a.F, f = i % a.F;
  const FaceSetup fs = setup_face(face_of(a, b, f), a.S);
  setups[i] = fs;
  counts[i] = fs.drawable ? static_cast<Count>(fs.r1 - fs.r0 + 1) * static_cast<Count>(fs.c1 - fs.c0 + 1) : 0ull;
}

// Work item i of the scanned pixel ranges: one pixel of one face's range; claims the pixel's key if the face
// covers it with a depth in (near, far). keys: [B, S, S].
template <class Atomics>
JAXNMR_HD void raster_item(const ForwardArgs& a, const FaceSetup* setups, const Count* offsets, Count i,
                           Count* keys) {
  const int64_t k = owner_of(offsets, a.B * a.F, i);
  const int64_t b = k / a.F, f = k % a.F;
  const FaceSetup& fs = setups[k];
  const int64_t local = static_cast<int64_t>(i - offsets[k]);
  const int width = fs.c1 - fs.c0 + 1;
  const int r = fs.r0 + static_cast<int>(local / width), c = fs.c0 + static_cast<int>(local % width);
  const float* face = face_of(a, b, f);
  float w[3], zp;
  if (pixel_candidate(face, fs.inv, c, r, a.S, a.near, a.far, w, &zp)) {
    Atomics::min(keys + (b * a.S + r) * a.S + c, depth_key(zp, static_cast<int32_t>(f)));
  }
}

// Pixel p = (b * S + r) * S + c: its outputs from the winning key.
JAXNMR_HD void resolve_item(const ForwardArgs& a, const FaceSetup* setups, const Count* keys, int64_t p) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int64_t b = p / SS, local = p % SS;
  const int r = static_cast<int>(local / a.S), c = static_cast<int>(local % a.S);
  const Count key = keys[p];
  float w[3] = {0.0f, 0.0f, 0.0f}, zp = a.far;
  int32_t f = -1;
  const float* face = nullptr;
  if (key != kEmptyKey) {
    f = key_face(key);
    face = face_of(a, b, f);
    pixel_candidate(face, setups[b * a.F + f].inv, c, r, a.S, a.near, a.far, w, &zp);
  }
  a.face_index[p] = f;
  if (a.with_maps) {
    a.depth[p] = zp;
    for (int k = 0; k < 3; ++k) a.weights[3 * p + k] = w[k];
  }
  if (!a.with_rgb) return;
  float* out = a.rgb + 3 * p;
  if (f < 0) {
    const float* bg = a.background + 3 * a.background_map(b);
    out[0] = bg[0];
    out[1] = bg[1];
    out[2] = bg[2];
  } else {
    const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
    sample_texture(face, a.textures + (a.textures_map(b) * a.F + f) * cube, w, zp, a.T, a.eps, out);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Backward.

// Item i = ((b * F + f) * 3 + edge) * 2 + axis: the number of scanlines of that sweep.
JAXNMR_HD void count_scanlines_item(const BackwardArgs& a, int64_t i, Count* counts) {
  const int64_t k = i / 6, b = k / a.F, f = k % a.F;
  const int edge = static_cast<int>(i % 6) / 2, axis = static_cast<int>(i % 2);
  const float* face = face_of(a, b, f);
  Count count = 0;
  if (face_is_visible_kind(face)) {
    const EdgeSweep e = setup_sweep(face, a.S, edge, axis);
    if (e.s_end >= e.s_begin) count = static_cast<Count>(e.s_end - e.s_begin + 1);
  }
  counts[i] = count;
}

// The images of batch element b as the GPU's sweeps read them: both views on the row-major images (the sweep
// over columns, axis 0, with a stride of S), interleaved rgb, and no span or block bounds (the outward scans
// run to the image border).
JAXNMR_HD SweepImage sweep_image(const BackwardArgs& a, int64_t b) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  SweepImage image;
  for (int v = 0; v < 2; ++v) {
    image.face_index[v] = a.face_index + a.fi_map(b) * SS;
    image.rgb[v] = a.g_rgb ? a.rgb + a.rgb_map(b) * SS * 3 : nullptr;
    image.g_rgb[v] = a.g_rgb ? a.g_rgb + a.g_rgb_map(b) * SS * 3 : nullptr;
    image.g_alpha[v] = a.g_alpha ? a.g_alpha + a.g_alpha_map(b) * SS : nullptr;
    image.rgb_pixel[v] = 3;
    image.rgb_channel[v] = 1;
  }
  image.line[0] = 1;
  image.step[0] = a.S;
  image.line[1] = a.S;
  image.step[1] = 1;
  image.span = nullptr;
  image.blocks = nullptr;
  image.blocks_per_line = 0;
  return image;
}

// Work item i of the scanned sweeps: one scanline of one (face, edge, axis), with scalar lanes; its two
// gradient entries are added into g_faces.
template <class Atomics>
JAXNMR_HD void sweep_item(const BackwardArgs& a, const Count* offsets, Count i) {
  const int64_t item = owner_of(offsets, a.B * a.F * 6, i);
  const int64_t k = item / 6, b = k / a.F, f = k % a.F;
  const int edge = static_cast<int>(item % 6) / 2, axis = static_cast<int>(item % 2);
  const EdgeSweep e = setup_sweep(face_of(a, b, f), a.S, edge, axis);
  const int s = e.s_begin + static_cast<int>(i - offsets[item]);
  float G[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  sweep_scanline<float>(e, s, sweep_image(a, b), static_cast<int32_t>(f), a.S, a.eps, G);
  float* out = a.g_faces + (b * a.F + f) * 9;
  const int ia = 3 * e.a + e.comp, ic = 3 * e.c + e.comp;
  if (G[ia] != 0.0f) Atomics::add(out + ia, G[ia]);
  if (G[ic] != 0.0f) Atomics::add(out + ic, G[ic]);
}

// Pixel p: the exact depth gradient (with_depth) and the texture gradient of the face drawn there.
template <class Atomics>
JAXNMR_HD void pixel_gradients_item(const BackwardArgs& a, bool with_depth, int64_t p) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
  const int64_t b = p / SS, local = p % SS;
  const int32_t f = a.face_index[a.fi_map(b) * SS + local];
  if (f < 0 || f >= a.F) return;
  const float* face = face_of(a, b, f);
  const float* w = a.weights + (a.weights_map(b) * SS + local) * 3;
  const float zp = a.depth[a.depth_map(b) * SS + local];
  if (with_depth) {
    const float g = a.g_depth[a.g_depth_map(b) * SS + local];
    if (g != 0.0f) {
      float inv[9], G[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
      face_inverse(face, a.S, inv);
      depth_gradient(face, inv, w, zp, g, a.S, G);
      float* out = a.g_faces + (b * a.F + f) * 9;
      for (int k = 0; k < 9; ++k) Atomics::add(out + k, G[k]);
    }
  }
  if (a.texture_grad) {
    const float* g = a.g_rgb + (a.g_rgb_map(b) * SS + local) * 3;
    int index[8];
    float weight[8];
    texture_corners(face, w, zp, a.T, a.eps, index, weight);
    float* out = a.g_textures + (b * a.F + f) * cube;
    for (int pn = 0; pn < 8; ++pn) {
      for (int k = 0; k < 3; ++k) Atomics::add(out + 3 * index[pn] + k, weight[pn] * g[k]);
    }
  }
}

}  // namespace jaxnmr

#endif  // JAXNMR_GRID_H_
