// jaxnmr's GPU work decomposition: what one GPU thread does for one work item, written once.
//
// raster_cuda.cu launches these functions as grids; grid_cpu.cc runs the very same functions one item after
// another on the CPU, so the tests check the GPU's decomposition (work lists, the packed depth keys, the
// sweeps' prologue and lanes) against the oracle on machines without a GPU. The per-face and per-pixel math
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
// Backward (docs/rasterizer.md, "Approximate gradient"):
//   1. mark_pixel_item, one item per pixel: the face drawn there is marked visible, the pixel's activity for
//      outward scans is recorded, and (where they fit) transposed copies of the maps are written;
//   2. line_bounds_item, one item per (batch element, axis, line): the span and blocks of the line's active
//      pixels (SweepImage::span and ::blocks, as the CPU back end has them);
//   3. count_scanlines_item, one item per (batch element, face, edge, axis): the scanlines of its sweep, none
//      for a face drawn at no pixel;
//   4. an exclusive scan, as above;
//   5. sweep_lane_item, kSweepLanes items per scanline: the scanline's scans, clipped to the span and skipping
//      inactive blocks, its pixels shared among the lanes; the lanes' sums (sum_lanes' order) are added into
//      g_faces atomically;
//   6. pixel_gradients_item, one item per pixel: the depth and texture terms.
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

// BatchMap's index of batch element b, its loop unrolled: indexing the map's arrays with a loop variable
// would make the GPU copy the kernel's arguments to (slow) local memory.
JAXNMR_HD int64_t batch_index(const BatchMap& m, int64_t b) {
  int64_t index = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int d = kMaxLeading - 1; d >= 0; --d) {
    if (d >= m.rank) continue;
    index += (b % m.out_dims[d]) * m.strides[d];
    b /= m.out_dims[d];
  }
  return index;
}

JAXNMR_HD const float* face_of(const ForwardArgs& a, int64_t b, int64_t f) {
  return a.faces + (a.faces_map(b) * a.F + f) * 9;
}

JAXNMR_HD const float* face_of(const BackwardArgs& a, int64_t b, int64_t f) {
  return a.faces + (batch_index(a.faces_map, b) * a.F + f) * 9;
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

// The edge sweeps' prologue and buffers. Every gradient term of a face comes from pixels it draws (the
// outward scans start at one, the inward scans and the pixel terms visit only those), so faces drawn at no
// pixel get exactly zero and are skipped; and an outward scan adds nothing at pixels that cannot contribute
// (active_for_outward_scan), so it is clipped to the span of its line's active pixels and skips blocks of
// kBlock pixels that hold none. Both are raster.h's structures (SweepImage::span and ::blocks), built here
// from the forward's face index map and the cotangents, exactly as the CPU back end builds them.

// Pixels an image may hold for its sweeps over columns to read a transposed copy (column-major; then both
// axes read their scanlines contiguously), over the whole batch: beyond it they read the row-major images
// with a stride of S. The results are the same either way.
constexpr int64_t kTransposeBudgetBytes = int64_t{256} << 20;

// Bytes per pixel of the transposed copies: face index, alpha cotangent, rgb and its cotangent (interleaved).
inline int64_t transposed_bytes_per_pixel(const BackwardArgs& a) {
  return 4 + (a.g_alpha ? 4 : 0) + (a.g_rgb ? 24 : 0);
}

// Whether the GPU's sweeps over columns read transposed copies for this call.
inline bool sweeps_transpose(const BackwardArgs& a) {
  return a.B * static_cast<int64_t>(a.S) * a.S * transposed_bytes_per_pixel(a) <= kTransposeBudgetBytes;
}

JAXNMR_HD int64_t blocks_per_line(int S) { return (S + kBlock - 1) / kBlock; }

// The device buffers of the edge sweeps, per output batch element b (null where unused):
struct SweepBuffers {
  uint8_t* visible;        // [B, F]: 1 where the face is drawn at some pixel (cleared to 0 first)
  uint8_t* active;         // [B, S, S]: 1 where the pixel can contribute to an outward scan
  int32_t* span;           // [B, 4 S]: SweepImage::span of each element
  uint8_t* blocks;         // [B, 2, S, blocks_per_line]: SweepImage::blocks of each element
  int32_t* t_face_index;   // [B, S, S] column-major copies (transposed), or null
  float* t_g_alpha;        // [B, S, S] column-major, or null
  float* t_rgb;            // [B, S, S, 3] column-major, channels interleaved, or null
  float* t_g_rgb;          // [B, S, S, 3] likewise, or null
};

// Batch element b's images as the rows' sweeps (view 1) read them, for the prologue.
JAXNMR_HD SweepImage row_image(const BackwardArgs& a, int64_t b) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int32_t* face_index = a.face_index + batch_index(a.fi_map, b) * SS;
  const float* rgb = a.g_rgb ? a.rgb + batch_index(a.rgb_map, b) * SS * 3 : nullptr;
  const float* g_rgb = a.g_rgb ? a.g_rgb + batch_index(a.g_rgb_map, b) * SS * 3 : nullptr;
  const float* g_alpha = a.g_alpha ? a.g_alpha + batch_index(a.g_alpha_map, b) * SS : nullptr;
  SweepImage image;
  for (int v = 0; v < 2; ++v) {
    image.face_index[v] = face_index;
    image.rgb[v] = rgb;
    image.g_rgb[v] = g_rgb;
    image.g_alpha[v] = g_alpha;
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

// One axis of batch element b's images as the GPU's sweeps along it read them (a view of raster.h's
// SweepImage, its arrays picked for the axis once): pixel (s, t) is element s * line + t * step; with the
// axis' spans and blocks.
struct SweepAxis {
  SweepView w;
  int64_t line, step;
  const int32_t* first;  // first[s], first[S + s]: the span of line s (SweepImage::span of this view)
  const uint8_t* blocks;  // the blocks of line s start at blocks + s * blocks_per_line
  int64_t blocks_per_line;

  JAXNMR_HD int64_t pixel(int s, int t) const { return s * line + t * step; }
};

// Axis v (0: sweeps over columns, 1: over rows) of batch element b: rows read the row-major images; columns
// the transposed copies where there are (then both read contiguously), else the row-major images with a
// stride of S.
JAXNMR_HD SweepAxis sweep_axis(const BackwardArgs& a, const SweepBuffers& buf, int64_t b, int v) {
  const int64_t S = a.S, SS = S * S;
  const bool copy = v == 0 && buf.t_face_index;
  SweepAxis x;
  x.w.face_index = copy ? buf.t_face_index + b * SS : a.face_index + batch_index(a.fi_map, b) * SS;
  x.w.g_alpha = !a.g_alpha ? nullptr : copy ? buf.t_g_alpha + b * SS : a.g_alpha + batch_index(a.g_alpha_map, b) * SS;
  x.w.rgb = !a.g_rgb ? nullptr : copy ? buf.t_rgb + b * SS * 3 : a.rgb + batch_index(a.rgb_map, b) * SS * 3;
  x.w.g_rgb = !a.g_rgb ? nullptr : copy ? buf.t_g_rgb + b * SS * 3 : a.g_rgb + batch_index(a.g_rgb_map, b) * SS * 3;
  x.w.rgb_pixel = 3;
  x.w.rgb_channel = 1;
  x.line = v == 0 && !copy ? 1 : S;
  x.step = v == 0 && !copy ? S : 1;
  x.blocks_per_line = blocks_per_line(a.S);
  x.first = buf.span + (4 * b + 2 * v) * S;
  x.blocks = buf.blocks + (2 * b + v) * S * x.blocks_per_line;
  return x;
}

// Pixel p = (b * S + r) * S + c of the prologue's first pass: marks the face drawn there as visible, records
// whether the pixel is active for outward scans, and writes its transposed copies (where buf has them).
// Many pixels mark the same face: every write stores the same value 1.
JAXNMR_HD void mark_pixel_item(const BackwardArgs& a, const SweepBuffers& buf, int64_t p) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int64_t b = p / SS, local = p % SS;
  const SweepImage image = row_image(a, b);
  const int32_t f = image.face_index[1][local];
  if (f >= 0 && f < a.F) buf.visible[b * a.F + f] = 1;
  buf.active[p] = active_for_outward_scan(image, 1, local) ? 1 : 0;
  if (!buf.t_face_index) return;
  const int64_t r = local / a.S, c = local % a.S, q = b * SS + c * a.S + r;
  buf.t_face_index[q] = f;
  if (a.g_alpha) buf.t_g_alpha[q] = image.g_alpha[1][local];
  if (a.g_rgb) {
    for (int k = 0; k < 3; ++k) {
      buf.t_rgb[3 * q + k] = image.rgb[1][3 * local + k];
      buf.t_g_rgb[3 * q + k] = image.g_rgb[1][3 * local + k];
    }
  }
}

// Line i = (b * 2 + v) * S + s of the prologue's second pass (after every pixel's first): the span of the
// active pixels of line s of view v (v = 0: column s, v = 1: row s) and its blocks, in the layout of
// SweepImage (an empty line has span first S, last -1, as the CPU back end's).
JAXNMR_HD void line_bounds_item(const BackwardArgs& a, const SweepBuffers& buf, int64_t i) {
  const int S = a.S;
  const int64_t SS = static_cast<int64_t>(S) * S, per_line = blocks_per_line(S);
  const int64_t b = i / (2 * S);
  const int v = static_cast<int>(i / S % 2), s = static_cast<int>(i % S);
  const uint8_t* active = buf.active + b * SS;
  const int64_t base = v == 1 ? static_cast<int64_t>(s) * S : s, step = v == 1 ? 1 : S;
  uint8_t* line_blocks = buf.blocks + (b * 2 * S + static_cast<int64_t>(v) * S + s) * per_line;
  int first = S, last = -1;
  for (int64_t k = 0; k < per_line; ++k) {
    uint8_t any = 0;
    const int end = static_cast<int>((k + 1) * kBlock < S ? (k + 1) * kBlock : S);
    for (int t = static_cast<int>(k * kBlock); t < end; ++t) {
      if (!active[base + t * step]) continue;
      if (first == S) first = t;
      last = t;
      any = 1;
    }
    line_blocks[k] = any;
  }
  int32_t* span = buf.span + b * 4 * S + static_cast<int64_t>(v) * 2 * S;
  span[s] = first;
  span[S + s] = last;
}

// Item i = ((b * F + f) * 3 + edge) * 2 + axis: the number of scanlines of that sweep; 0 for faces drawn at no
// pixel (visible: buf.visible, or null to sweep every face).
JAXNMR_HD void count_scanlines_item(const BackwardArgs& a, const uint8_t* visible, int64_t i, Count* counts) {
  const int64_t k = i / 6, b = k / a.F, f = k % a.F;
  const int edge = static_cast<int>(i % 6) / 2, axis = static_cast<int>(i % 2);
  const float* face = face_of(a, b, f);
  Count count = 0;
  if ((!visible || visible[k]) && face_is_visible_kind(face)) {
    const EdgeSweep e = setup_sweep(face, a.S, edge, axis);
    if (e.s_end >= e.s_begin) count = static_cast<Count>(e.s_end - e.s_begin + 1);
  }
  counts[i] = count;
}

// ---------------------------------------------------------------------------------------------------------
// The sweep of one scanline by a group of kSweepLanes threads (lanes): the lanes set up the same scanline
// (setup_scanline, redundantly: it is cheap and keeps them in step), then share its pixels, lane j taking
// the pixels t with t % lanes == j, so that neighbouring lanes read neighbouring pixels; the group's partial
// sums are added by sum_lanes and one lane adds them into g_faces. Per pixel the terms are raster.h's
// (add_outward_terms, pixel_delta, move_distance), as on the CPU; only the order of the sums differs.

// Threads per scanline on the GPU. It divides kBlock, so the lanes of one step of an outward scan lie in one
// block and skip it together.
constexpr int kSweepLanes = 8;
static_assert(kBlock % kSweepLanes == 0, "a step of the lanes lies in one block");

// Lane `lane` of `lanes` of the outward scan (A) over [from, to] of a scanline (base and step as in
// outward_scan): its sums of accumulate()'s terms for vertex a and vertex c. Steps t0 = multiples of `lanes`;
// a step in a block without active pixels is skipped with the rest of the block, unread (the same decision in
// every lane).
template <bool kRgb, bool kAlpha>
JAXNMR_HD void outward_lane(const SweepView& w, int64_t base, int64_t step, int from, int to, const float* I_in,
                            const uint8_t* line_blocks, const Scanline& l, float eps, int S, int lane, int lanes,
                            float* sum_a, float* sum_c) {
  int t0 = from - from % lanes;
  while (t0 <= to) {
    if (line_blocks && !line_blocks[t0 / kBlock]) {
      t0 = (t0 / kBlock + 1) * kBlock;
      continue;
    }
    const int t = t0 + lane;
    if (t >= from && t <= to) {
      add_outward_terms<kRgb, kAlpha, float>(w, base + t * step, step, t, I_in, l, eps, S, sum_a, sum_c);
    }
    t0 += lanes;
  }
}

// Lane `lane` of `lanes` of both scans of scanline s of face f's edge e (sweep_scanline's work, its pixels
// shared out): *ga and *gc receive the lane's part of the gradient of the sweep's coordinate of vertex e.a and
// e.c (zero where nothing is added).
JAXNMR_HD void sweep_scanline_lane(const EdgeSweep& e, int s, const SweepAxis& x, int32_t f, int S, float eps,
                                   int lane, int lanes, float* ga, float* gc) {
  *ga = 0.0f;
  *gc = 0.0f;
  Scanline l;
  if (!setup_scanline(e, s, S, &l)) return;
  const SweepView& w = x.w;
  const int64_t p_in = x.pixel(s, l.t_in), p_out = x.pixel(s, l.t_out);
  float sum_a = 0.0f, sum_c = 0.0f;  // (A): the outward scan, where the edge is visible
  if (w.face_index[p_in] == f) {
    const int from = l.out_from > x.first[s] ? l.out_from : x.first[s];
    const int to = l.out_to < x.first[S + s] ? l.out_to : x.first[S + s];
    if (from <= to) {
      float I_in[3];
      reference_colour(w, p_in, I_in);
      const uint8_t* line_blocks = x.blocks + s * x.blocks_per_line;
      with_cotangents(w, [&](auto use) {
        outward_lane<decltype(use)::kRgb, decltype(use)::kAlpha>(w, x.pixel(s, 0), x.step, from, to, I_in,
                                                                 line_blocks, l, eps, S, lane, lanes, &sum_a,
                                                                 &sum_c);
      });
    }
  }
  float in_a = 0.0f, in_c = 0.0f;  // (B): the inward scan over the face's own pixels
  float I_out[3];
  reference_colour(w, p_out, I_out);
  const float a_out = w.face_index[p_out] >= 0 ? 1.0f : 0.0f;
  with_cotangents(w, [&](auto use) {
    for (int t = l.in_from + lane; t <= l.in_to; t += lanes) {
      const int64_t p = x.pixel(s, t);
      if (w.face_index[p] != f) continue;
      const float delta = pixel_delta<decltype(use)::kRgb, decltype(use)::kAlpha, float>(w, p, 1, I_out, a_out);
      if (!(delta > 0.0f)) continue;
      if (l.moves_a) in_a -= delta / move_distance(l, l.ratio_a, (float)t, eps, S);
      if (l.moves_c) in_c -= delta / move_distance(l, l.ratio_c, (float)t, eps, S);
    }
  });
  if (l.moves_a) *ga = in_a - sum_a;
  if (l.moves_c) *gc = in_c - sum_c;
}

// Lane `lane` of `lanes` of work item i of the scanned sweeps (one scanline of one (face, edge, axis)): the
// lane's part of the two gradient entries, and their indices in g_faces.
JAXNMR_HD void sweep_lane_item(const BackwardArgs& a, const SweepBuffers& buf, const Count* offsets, Count i,
                               int lane, int lanes, float* ga, float* gc, int64_t* ia, int64_t* ic) {
  const int64_t item = owner_of(offsets, a.B * a.F * 6, i);
  const int64_t k = item / 6, b = k / a.F, f = k % a.F;
  const int edge = static_cast<int>(item % 6) / 2, axis = static_cast<int>(item % 2);
  const EdgeSweep e = setup_sweep(face_of(a, b, f), a.S, edge, axis);
  const int s = e.s_begin + static_cast<int>(i - offsets[item]);
  sweep_scanline_lane(e, s, sweep_axis(a, buf, b, axis), static_cast<int32_t>(f), a.S, a.eps, lane, lanes, ga, gc);
  *ia = k * 9 + 3 * e.a + e.comp;
  *ic = k * 9 + 3 * e.c + e.comp;
}

// The sum of the lanes' values v[0..lanes) (lanes a power of two) in the order a butterfly of
// __shfl_xor_sync gives every lane: for offsets lanes/2, ..., 1, each lane adds the value of the lane `offset`
// away (x + y == y + x exactly, so all lanes agree). v is overwritten.
JAXNMR_HD float sum_lanes(float* v, int lanes) {
  for (int offset = lanes / 2; offset > 0; offset /= 2) {
    float next[32];
    for (int j = 0; j < lanes; ++j) next[j] = v[j] + v[j ^ offset];
    for (int j = 0; j < lanes; ++j) v[j] = next[j];
  }
  return v[0];
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
