// jaxnmr rasterizer: the per-face and per-pixel math, written once for every back end.
//
// The CPU handlers (raster_cpu.cc) and the CUDA handlers (raster_cuda.cu) only loop over these functions;
// what a pixel shows and what gradient a face receives is decided here and nowhere else.
//
// Conventions (docs/conventions.md, "Coordinate systems" and "Pixel centres"): face vertices are [F, 3, 3] float32
// in "NDC": x, y in [-1, 1] span the image (x right, y up) and z is camera-space depth. Internal buffers are [S, S]
// with row r growing with +y (row 0 at the bottom); the Python side flips them. Pixel (r, c) is sampled at its
// centre
//     x(c) = (2c + 1 - S) / S,   y(r) = (2r + 1 - S) / S,
// and a vertex maps to continuous pixel coordinates u = (X S + S - 1) / 2, v = (Y S + S - 1) / 2.
//
// All arithmetic is float32 in the order written here; raster_cpu.cc is compiled without FMA contraction so
// that reference.py (pure jnp) can reproduce it.
#ifndef JAXNMR_RASTER_H_
#define JAXNMR_RASTER_H_

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define JAXNMR_HD __host__ __device__ __forceinline__
#else
#define JAXNMR_HD inline
#endif

namespace jaxnmr {

// The backward's outward scans evaluate their per-pixel terms for several pixels at once where the compiler
// offers vector types (GCC and Clang on the CPU: 8 floats with AVX, which jaxlib itself requires, else 4); on
// the GPU, where a group of threads shares a scanline (grid.h), each thread's lane is a single float. Code
// written for a value type V (float or Lanes) is the same source for both: element-wise arithmetic, comparisons
// giving masks, and `mask ? a : b` selects.
#if !defined(__CUDACC__) && defined(__GNUC__)
#define JAXNMR_LANES 1
#if defined(__AVX__)
#include <immintrin.h>
#define JAXNMR_LANE_WIDTH 8
#else
#define JAXNMR_LANE_WIDTH 4
#endif
typedef float Lanes __attribute__((vector_size(4 * JAXNMR_LANE_WIDTH)));
typedef int32_t LaneMask __attribute__((vector_size(4 * JAXNMR_LANE_WIDTH)));
#endif

template <class V> struct LaneTraits;
template <> struct LaneTraits<float> {
  static constexpr int kWidth = 1;
  // elements i, i + step, ... of a (one of them for a float)
  JAXNMR_HD static float gather(const float* a, int64_t i, int64_t) { return a[i]; }
  // 1 where a face is drawn at those pixels, else 0
  JAXNMR_HD static float covered(const int32_t* fi, int64_t i, int64_t) { return fi[i] >= 0 ? 1.0f : 0.0f; }
  JAXNMR_HD static float iota(int t) { return (float)t; }
  JAXNMR_HD static float splat(float x) { return x; }
  JAXNMR_HD static float sum(float x) { return x; }
  JAXNMR_HD static bool any(bool m) { return m; }
};
#if JAXNMR_LANES
template <> struct LaneTraits<Lanes> {
  static constexpr int kWidth = JAXNMR_LANE_WIDTH;
  static Lanes gather(const float* a, int64_t i, int64_t step) {
    Lanes x;
    if (step == 1) {  // adjacent elements: one vector load
      memcpy(&x, a + i, sizeof(x));
      return x;
    }
    for (int k = 0; k < kWidth; ++k) x[k] = a[i + k * step];
    return x;
  }
  static Lanes covered(const int32_t* fi, int64_t i, int64_t step) {
    LaneMask face;
    for (int k = 0; k < kWidth; ++k) face[k] = fi[i + k * step];
    return face >= 0 ? Lanes{} + 1.0f : Lanes{};
  }
  static Lanes iota(int t) {
    Lanes x;
    for (int k = 0; k < kWidth; ++k) x[k] = (float)(t + k);
    return x;
  }
  static Lanes splat(float v) {
    Lanes x;
    for (int k = 0; k < kWidth; ++k) x[k] = v;
    return x;
  }
  static float sum(Lanes x) {
    float total = x[0];
    for (int k = 1; k < kWidth; ++k) total += x[k];
    return total;
  }
  // whether any lane of a comparison's mask is set
  static bool any(LaneMask m) {
#if defined(__AVX__)
    return _mm256_movemask_ps(_mm256_castsi256_ps(reinterpret_cast<__m256i>(m))) != 0;
#else
    int32_t set = 0;
    for (int k = 0; k < kWidth; ++k) set |= m[k];
    return set != 0;
#endif
  }
};
#endif

// The value type the outward scans evaluate their per-pixel terms in on this back end.
#if JAXNMR_LANES
typedef Lanes ScanLanes;
#else
typedef float ScanLanes;
#endif

// fminf / fmaxf: a NaN operand is ignored (the other is returned). On the CPU written out as the comparisons
// glibc's x86-64 versions make (equal operands, e.g. -0 and +0, give the second), because without
// -ffinite-math-only compilers call libm for them, a call per use in the per-face and per-pixel code.
JAXNMR_HD float min_of(float a, float b) {
#if defined(__CUDACC__)
  return fminf(a, b);
#else
  return (a < b || b != b) ? a : b;
#endif
}
JAXNMR_HD float max_of(float a, float b) {
#if defined(__CUDACC__)
  return fmaxf(a, b);
#else
  return (a > b || b != b) ? a : b;
#endif
}

// Pixels per block of a scanline in SweepImage::blocks.
constexpr int kBlock = 16;

#if JAXNMR_LANES
// min_of / max_of lane by lane, against a scalar b.
inline Lanes min_of(Lanes a, float b) {
  const Lanes bs = LaneTraits<Lanes>::splat(b);
  return b != b ? a : (a < bs ? a : bs);
}
inline Lanes max_of(Lanes a, float b) {
  const Lanes bs = LaneTraits<Lanes>::splat(b);
  return b != b ? a : (a > bs ? a : bs);
}
#endif

// Everything the per-pixel loop needs about one face, computed once per face.
struct FaceSetup {
  // row k: (dw_k/du, dw_k/dv, w_k at u = v = 0), pixel units (docs/rasterizer.md, "Per-face setup")
  float inv[9];
  int c0, c1, r0, r1;  // inclusive pixel range that can pass the inside test; empty if c0 > c1 or r0 > r1
  bool drawable;     // front-facing, all coordinates finite, and the range is not empty
};

// Pixel-centre coordinate (NDC) of internal column/row i at resolution S, (2i + 1 - S) / S; with V = Lanes,
// of columns i, i + 1, ... (`i` from LaneTraits::iota). The numerator is an integer below 2^24, so it is exact
// in float however it is formed.
template <class V>
JAXNMR_HD V pixel_center_at(V i, int S) { return (2.0f * i + (float)(1 - S)) / (float)S; }
JAXNMR_HD float pixel_center(int i, int S) { return pixel_center_at<float>((float)i, S); }

// Continuous pixel coordinate of an NDC coordinate at resolution S.
JAXNMR_HD float to_pixel(float x, int S) { return 0.5f * (x * (float)S + (float)S - 1.0f); }

// Back-face test in NDC (docs/conventions.md, "Winding and normals"): strict, so zero-area faces are not culled.
// Written as a comparison of two products, as the original does:
//   A < 0  <=>  (Y2 - Y0)(X1 - X0) < (Y1 - Y0)(X2 - X0).
JAXNMR_HD bool is_back_facing(const float* f) {
  return (f[7] - f[1]) * (f[3] - f[0]) < (f[4] - f[1]) * (f[6] - f[0]);
}

JAXNMR_HD bool face_is_finite(const float* f) {
  bool ok = true;
  for (int i = 0; i < 9; ++i) ok = ok && isfinite(f[i]);
  return ok;
}

// Whether a face can be drawn at all: finite coordinates, every vertex in front of the camera plane (z > 0),
// and front-facing. A vertex at z <= 0 makes the perspective division and the 1/z depth interpolation
// meaningless (the original draws such faces as garbage triangles); faces entirely at z > 0 that cross `near`
// are clipped exactly, per pixel, by the near test.
JAXNMR_HD bool face_is_visible_kind(const float* f) {
  return face_is_finite(f) && f[2] > 0.0f && f[5] > 0.0f && f[8] > 0.0f && !is_back_facing(f);
}

// Inclusive inside test at NDC point (xp, yp): the pixel is outside iff some directed edge a->b has the point
// strictly on its right, (yp - Ya)(Xb - Xa) < (xp - Xa)(Yb - Ya). For V = Lanes, points (xp[k], yp) at once:
// the mask of the lanes outside.
template <class V>
JAXNMR_HD auto outside_mask(const float* f, V xp, float yp) {
  typedef LaneTraits<V> L;
  return (L::splat((yp - f[1]) * (f[3] - f[0])) < (xp - f[0]) * (f[4] - f[1])) |
         (L::splat((yp - f[4]) * (f[6] - f[3])) < (xp - f[3]) * (f[7] - f[4])) |
         (L::splat((yp - f[7]) * (f[0] - f[6])) < (xp - f[6]) * (f[1] - f[7]));
}

JAXNMR_HD bool is_inside(const float* f, float xp, float yp) { return !outside_mask<float>(f, xp, yp); }

// The inverse of [[u0 u1 u2] [v0 v1 v2] [1 1 1]] by the adjugate (docs/rasterizer.md, "Per-face setup"). A zero
// determinant gives inf/NaN entries; the pixel loop then never draws the face (docs/rasterizer.md, "Degenerate
// faces").
JAXNMR_HD void face_inverse(const float* f, int S, float* inv) {
  float u[3], v[3];
  for (int k = 0; k < 3; ++k) {
    u[k] = to_pixel(f[3 * k + 0], S);
    v[k] = to_pixel(f[3 * k + 1], S);
  }
  inv[0] = v[1] - v[2];
  inv[1] = u[2] - u[1];
  inv[2] = u[1] * v[2] - u[2] * v[1];
  inv[3] = v[2] - v[0];
  inv[4] = u[0] - u[2];
  inv[5] = u[2] * v[0] - u[0] * v[2];
  inv[6] = v[0] - v[1];
  inv[7] = u[1] - u[0];
  inv[8] = u[0] * v[1] - u[1] * v[0];
  const float det = u[2] * (v[0] - v[1]) + u[0] * (v[1] - v[2]) + u[1] * (v[2] - v[0]);
  for (int k = 0; k < 9; ++k) inv[k] /= det;
}

// Inclusive pixel range [lo, hi] along one axis that a face's pixels must lie in: the vertices' extent in
// pixel coordinates, widened by one pixel (so float rounding in the NDC inside test cannot accept a pixel the
// range leaves out), clamped to [0, S-1]. Part of the coverage rule, not only an optimisation: where the
// inside test's float products overflow (coordinates near 1e30), it could accept pixels far outside the face.
// Returns false if the range misses the image.
JAXNMR_HD bool pixel_range(float a, float b, float c, int S, int* lo, int* hi) {
  const float l = ceilf(min_of(min_of(to_pixel(a, S), to_pixel(b, S)), to_pixel(c, S))) - 1.0f;
  const float h = floorf(max_of(max_of(to_pixel(a, S), to_pixel(b, S)), to_pixel(c, S))) + 1.0f;
  if (!(h >= 0.0f && l <= (float)(S - 1))) return false;
  *lo = (int)max_of(l, 0.0f);
  *hi = (int)min_of(h, (float)(S - 1));
  return true;
}

// Whether a face can be drawn and, if so, the pixel range its pixels must lie in (docs/rasterizer.md, "Per-face
// setup"): back faces, non-finite faces and faces whose range misses the image are not drawn.
JAXNMR_HD bool face_range(const float* f, int S, int* c0, int* c1, int* r0, int* r1) {
  *c0 = 0; *c1 = -1; *r0 = 0; *r1 = -1;
  if (!face_is_visible_kind(f)) return false;
  if (!pixel_range(f[0], f[3], f[6], S, c0, c1)) return false;
  if (!pixel_range(f[1], f[4], f[7], S, r0, r1)) return false;
  return true;
}

// Per-face setup (docs/rasterizer.md, "Per-face setup"): face_range, and the inverse where the face is drawable.
JAXNMR_HD FaceSetup setup_face(const float* f, int S) {
  FaceSetup fs;
  for (int k = 0; k < 9; ++k) fs.inv[k] = 0.0f;
  fs.drawable = face_range(f, S, &fs.c0, &fs.c1, &fs.r0, &fs.r1);
  if (fs.drawable) face_inverse(f, S, fs.inv);
  return fs;
}

// Screen-space barycentrics of pixel (c, r), clamped to [0, 1] with fmin/fmax semantics (a NaN weight becomes 0)
// and renormalised (docs/rasterizer.md, "Visibility"). With V = Lanes, the pixels (xc[k], yr) at once.
template <class V>
JAXNMR_HD void pixel_weights_at(const float* inv, V xc, float yr, V* w) {
  V sum = LaneTraits<V>::splat(0.0f);
  for (int k = 0; k < 3; ++k) {
    V wk = inv[3 * k + 0] * xc + inv[3 * k + 1] * yr + inv[3 * k + 2];
    wk = min_of(max_of(wk, 0.0f), 1.0f);
    w[k] = wk;
    sum += wk;
  }
  for (int k = 0; k < 3; ++k) w[k] /= sum;
}

JAXNMR_HD void pixel_weights(const float* inv, int c, int r, float* w) {
  pixel_weights_at<float>(inv, (float)c, (float)r, w);
}

// Perspective-correct (harmonic) depth of the face at the pixel(s) with weights w.
template <class V>
JAXNMR_HD V pixel_depth(const float* f, const V* w) {
  return 1.0f / (w[0] / f[2] + w[1] / f[5] + w[2] / f[8]);
}

// The depth test of a pixel (c, r) the face covers (is_inside at its centre): computes the weights w and the
// depth, and returns true (with *zp the depth) if it lies in (near, far). A NaN depth is never accepted.
JAXNMR_HD bool pixel_sample(const float* f, const float* inv, int c, int r, float near, float far, float* w,
                            float* zp) {
  pixel_weights(inv, c, r, w);
  const float z = pixel_depth(f, w);
  if (!(z > near && z < far)) return false;
  *zp = z;
  return true;
}

// The whole per-pixel candidate test (docs/rasterizer.md, "Visibility"): true if the face covers pixel (c, r) with
// a depth in (near, far); then w holds the weights and *zp the depth.
JAXNMR_HD bool pixel_candidate(const float* f, const float* inv, int c, int r, int S, float near, float far,
                               float* w, float* zp) {
  if (!is_inside(f, pixel_center(c, S), pixel_center(r, S))) return false;
  return pixel_sample(f, inv, c, r, near, far, w, zp);
}

// The eight trilinear corners of a covered pixel in the face's T^3 texture cube (docs/rasterizer.md, "Texture
// sampling"): flat texel indices (axis 0 most significant) and weights, from the stored weights w, depth zp and the
// face's vertex depths. Coordinates are clamped to [0, T - 1 - eps] (fmax: NaN -> 0).
JAXNMR_HD void texture_corners(const float* f, const float* w, float zp, int T, float eps, int* index,
                               float* weight) {
  float t[3];
  int i0[3];
  const float hi = (float)(T - 1) - eps;
  for (int k = 0; k < 3; ++k) {
    float tk = w[k] * (float)(T - 1) * (zp / f[3 * k + 2]);
    tk = min_of(max_of(tk, 0.0f), hi);
    i0[k] = (int)tk;
    t[k] = tk - (float)i0[k];
  }
  for (int pn = 0; pn < 8; ++pn) {
    float wt = 1.0f;
    int idx = 0;
    for (int k = 0; k < 3; ++k) {
      const int bit = (pn >> k) & 1;
      wt *= bit ? t[k] : 1.0f - t[k];
      idx = idx * T + i0[k] + bit;
    }
    index[pn] = idx;
    weight[pn] = wt;
  }
}

// Trilinear texture sample of a covered pixel: rgb = sum over the eight corners of weight * texel.
// `texture` points at the face's cube, [T^3, 3].
JAXNMR_HD void sample_texture(const float* f, const float* texture, const float* w, float zp, int T, float eps,
                              float* rgb) {
  int index[8];
  float weight[8];
  texture_corners(f, w, zp, T, eps, index, weight);
  rgb[0] = rgb[1] = rgb[2] = 0.0f;
  for (int pn = 0; pn < 8; ++pn) {
    for (int ch = 0; ch < 3; ++ch) rgb[ch] += weight[pn] * texture[3 * index[pn] + ch];
  }
}


// =========================================================================================================
// Backward (docs/rasterizer.md, "Approximate gradient", "Texture gradient" and "Depth gradient").

// One edge a->c of a face swept along one axis (docs/rasterizer.md, "Approximate gradient"). With axis 0 the sweep
// runs over columns s = u and crosses along t = v, and the gradient goes to the vertices' y (comp 1); with axis 1
// it runs over rows s = v, crosses along t = u, and the gradient goes to x (comp 0). sigma is the direction from
// inside to outside across the edge along t (front faces are counter-clockwise).
struct EdgeSweep {
  float sa, ta, sc, tc, so, to;  // pixel coordinates of a, c and the opposite vertex o, as (s, t)
  int a, c;                      // vertex numbers of the edge's ends
  int comp;                      // coordinate that receives the gradient: 1 (y) for axis 0, 0 (x) for axis 1
  int axis;
  int sigma;
  int s_begin, s_end;            // inclusive range of scanlines; empty if s_begin > s_end
};

JAXNMR_HD EdgeSweep setup_sweep(const float* f, int S, int edge, int axis) {
  EdgeSweep e;
  e.a = edge;
  e.c = (edge + 1) % 3;
  const int o = (edge + 2) % 3;
  const int s_dim = axis == 0 ? 0 : 1, t_dim = 1 - s_dim;
  e.sa = to_pixel(f[3 * e.a + s_dim], S);
  e.ta = to_pixel(f[3 * e.a + t_dim], S);
  e.sc = to_pixel(f[3 * e.c + s_dim], S);
  e.tc = to_pixel(f[3 * e.c + t_dim], S);
  e.so = to_pixel(f[3 * o + s_dim], S);
  e.to = to_pixel(f[3 * o + t_dim], S);
  e.comp = 1 - axis;
  e.axis = axis;
  const bool increasing = e.sa < e.sc;
  e.sigma = axis == 0 ? (increasing ? -1 : 1) : (increasing ? 1 : -1);
  // first scanline: ceil(min(s)) clamped at 0; last: trunc(min(max(s), S - 1)) (C truncation, as the
  // original: an edge entirely at s in (-1, 0) still visits scanline 0). Clamped before converting to int.
  const float lo = ceilf(min_of(e.sa, e.sc));
  const float hi = min_of(max_of(e.sa, e.sc), (float)(S - 1));
  e.s_begin = 0;
  e.s_end = -1;
  if (!(lo <= (float)(S - 1))) return e;  // entirely right of the image (or NaN)
  e.s_begin = (int)max_of(lo, 0.0f);
  e.s_end = (int)max_of(hi, -1.0f);
  return e;
}

// What one scanline of a sweep needs: where the edge crosses it (t*), the pixel just inside (t_in) and just
// outside (t_out), and the inclusive ranges of the outward scan (to the image border) and of the inward scan
// (to the far side of the triangle). Returns false where the scanline contributes nothing or is undefined (an
// edge parallel to the scanline, a crossing outside the image).
struct Scanline {
  float tstar;
  int t_in, t_out;
  int out_from, out_to;
  int in_from, in_to;
  // Per-scanline factors of the vertex displacements (accumulate): (s_c - s_a) / (s_c - s) for vertex a and
  // (s_c - s_a) / (s - s_a) for vertex c, used where moves_a / moves_c; and 1/S when S is a power of two (then
  // multiplying by it is exactly dividing by S).
  float ratio_a, ratio_c, inv_S;
  bool moves_a, moves_c, pow2;
};

JAXNMR_HD bool setup_scanline(const EdgeSweep& e, int s, int S, Scanline* l) {
  const float sf = (float)s;
  const float tstar = (e.tc - e.ta) / (e.sc - e.sa) * (sf - e.sa) + e.ta;
  // Both t_in and t_out must lie in [0, S-1], so t* must lie in [-1, S]; this also rejects NaN and inf (an
  // edge parallel to the scanline through it), where the original divides by zero.
  if (!(tstar >= -1.0f && tstar <= (float)S)) return false;
  const int t_in = e.sigma > 0 ? (int)floorf(tstar) : (int)ceilf(tstar);
  const int t_out = t_in + e.sigma;
  if (t_in < 0 || t_in >= S || t_out < 0 || t_out >= S) return false;
  l->tstar = tstar;
  l->t_in = t_in;
  l->t_out = t_out;
  const int border = e.sigma > 0 ? S - 1 : 0;
  l->out_from = t_out < border ? t_out : border;
  l->out_to = t_out < border ? border : t_out;
  // far side of the triangle on this scanline: on edge a-o if s lies strictly between s_a and s_o, else o-c
  float t2 = ((sf - e.sa) * (sf - e.so) < 0.0f) ? (e.to - e.ta) / (e.so - e.sa) * (sf - e.sa) + e.ta
                                                 : (e.tc - e.to) / (e.sc - e.so) * (sf - e.so) + e.to;
  if (!(t2 == t2)) t2 = (float)t_in;        // undefined far side (degenerate face): scan t_in alone
  t2 = min_of(max_of(t2, -1.0f), (float)S);  // the range is clamped to the image below anyway
  const int t_lim = e.sigma > 0 ? (int)ceilf(t2) : (int)floorf(t2);
  const int lo = t_in < t_lim ? t_in : t_lim, hi = t_in < t_lim ? t_lim : t_in;
  l->in_from = lo > 0 ? lo : 0;
  l->in_to = hi < S - 1 ? hi : S - 1;
  l->moves_a = e.sc != sf;
  l->moves_c = e.sa != sf;
  l->ratio_a = l->moves_a ? (e.sc - e.sa) / (e.sc - sf) : 0.0f;
  l->ratio_c = l->moves_c ? (e.sc - e.sa) / (sf - e.sa) : 0.0f;
  l->pow2 = (S & (S - 1)) == 0;
  l->inv_S = 1.0f / (float)S;
  return true;
}

// The distance (NDC units) vertex a (ratio = l.ratio_a) or c (l.ratio_c) must move along the sweep's normal for
// the edge's crossing at this scanline to reach pixel t (V: one pixel or a vector of them), pushed away from 0
// by eps (d == 0 gives -eps, a large but finite slope, as in the original).
template <class V>
JAXNMR_HD V move_distance(const Scanline& l, float ratio, V t, float eps, int S) {
  const V x = ratio * (t - l.tstar) * 2.0f;
  const V d = l.pow2 ? x * l.inv_S : x / (float)S;
  return d > 0.0f ? d + eps : d - eps;
}

// Adds the finite-difference slopes -delta/d for moving vertex a alone, and vertex c alone, along the sweep's
// normal until the edge's crossing at scanline s reaches pixel t (docs/rasterizer.md, "Approximate gradient").
JAXNMR_HD void accumulate(const EdgeSweep& e, const Scanline& l, int s, int t, float delta, float eps, int S,
                          float* G) {
  if (l.moves_a) G[3 * e.a + e.comp] -= delta / move_distance(l, l.ratio_a, (float)t, eps, S);
  if (l.moves_c) G[3 * e.c + e.comp] -= delta / move_distance(l, l.ratio_c, (float)t, eps, S);
}

// The images of one batch element as the edge sweeps read them: the face index map, and the rgb image and the
// cotangents of rgb and alpha where they are in use (null otherwise); alpha is 1 where a face is drawn.
// Each sweep axis has its own view (`v`: 0 sweeps over columns, 1 over rows): pixel (s, t) of a sweep, i.e.
// scanline s and position t along it, is element s * line[v] + t * step[v] of that view's arrays. The CPU
// gives axis 0 a transposed copy so that both axes scan memory contiguously; the GPU does too where the copies
// fit its workspace budget, and reads with strides past it (grid.h, sweeps_transpose).
struct SweepImage {
  const int32_t* face_index[2];  // [S*S] per view
  const float* rgb[2];           // [S*S*3] per view, or null
  const float* g_rgb[2];         // [S*S*3] per view, or null
  const float* g_alpha[2];       // [S*S] per view, or null
  int64_t line[2], step[2];
  // Channel k of pixel p of rgb[v] and g_rgb[v] is element p * rgb_pixel[v] + k * rgb_channel[v]: (3, 1) for
  // interleaved images, (1, S * S) for three planes (whose pixels the outward scans load a lane at a time).
  int64_t rgb_pixel[2], rgb_channel[2];
  // Optional (null: no bounds): for each column c, span[c] and span[S + c] are the first and last row, and for
  // each row r, span[2S + r] and span[3S + r] the first and last column, of the pixels that can contribute to
  // an outward scan (active_for_outward_scan); an empty line has first > last.
  const int32_t* span;
  // Optional (null: no blocks): whether each block of kBlock pixels of a line holds a pixel that can contribute
  // to an outward scan; block k of line s of view v is blocks[(v * S + s) * blocks_per_line + k], nonzero if
  // some pixel t in [kBlock k, kBlock (k + 1)) of that line is active. Outward scans skip inactive blocks
  // without reading their pixels.
  const uint8_t* blocks;
  int64_t blocks_per_line;

  JAXNMR_HD int64_t pixel(int v, int s, int t) const { return s * line[v] + t * step[v]; }
  JAXNMR_HD int32_t face(int v, int64_t p) const { return face_index[v][p]; }
};

// One view of a SweepImage, as the per-pixel terms read it.
struct SweepView {
  const int32_t* face_index;
  const float *rgb, *g_rgb, *g_alpha;
  int64_t rgb_pixel, rgb_channel;

  JAXNMR_HD int64_t channel(int64_t p, int k) const { return p * rgb_pixel + k * rgb_channel; }
};

JAXNMR_HD SweepView view_of(const SweepImage& image, int v) {
  return SweepView{image.face_index[v], image.rgb[v], image.g_rgb[v], image.g_alpha[v], image.rgb_pixel[v],
                   image.rgb_channel[v]};
}

// delta(p, q) = sum over the images in use of (I(p) - I(q)) * g(p), alpha first, for pixel(s) p (with V =
// Lanes: p, p + step, ...) of view `w` against a reference pixel q of colour I_q and alpha a_q. kRgb / kAlpha:
// whether the rgb / alpha cotangent is in use. The outward and inward scans both compute it here.
template <bool kRgb, bool kAlpha, class V>
JAXNMR_HD V pixel_delta(const SweepView& w, int64_t p, int64_t step, const float* I_q, float a_q) {
  typedef LaneTraits<V> L;
  V d = V{};
  if (kAlpha) d += (L::covered(w.face_index, p, step) - a_q) * L::gather(w.g_alpha, p, step);
  if (kRgb) {
    for (int k = 0; k < 3; ++k) {
      const int64_t i = w.channel(p, k), di = step * w.rgb_pixel;
      d += (L::gather(w.rgb, i, di) - I_q[k]) * L::gather(w.g_rgb, i, di);
    }
  }
  return d;
}

// The cotangents in use, as compile-time flags for pixel_delta.
template <bool kRgbFlag, bool kAlphaFlag>
struct Cotangents {
  static constexpr bool kRgb = kRgbFlag, kAlpha = kAlphaFlag;
};

// Calls body(Cotangents<rgb in use, alpha in use>{}) for view w; nothing if neither is in use.
template <class Body>
JAXNMR_HD void with_cotangents(const SweepView& w, Body body) {
  if (w.g_rgb && w.g_alpha) {
    body(Cotangents<true, true>{});
  } else if (w.g_rgb) {
    body(Cotangents<true, false>{});
  } else if (w.g_alpha) {
    body(Cotangents<false, true>{});
  }
}

// The colour of a scan's reference pixel q (zeros where no rgb cotangent is in use).
JAXNMR_HD void reference_colour(const SweepView& w, int64_t q, float* I_q) {
  for (int k = 0; k < 3; ++k) I_q[k] = w.g_rgb ? w.rgb[w.channel(q, k)] : 0.0f;
}

// Whether pixel p can contribute to an outward scan (A) at all. The scan's reference pixel t_in is drawn by
// the face, so alpha(t_in) = 1 and the alpha term (alpha(p) - 1) g_alpha(p) vanishes where p is covered; the
// rgb term vanishes where g_rgb(p) = 0. Skipping pixels for which this is false leaves the result unchanged.
JAXNMR_HD bool active_for_outward_scan(const SweepImage& image, int v, int64_t p) {
  bool active = false;
  if (image.g_alpha[v]) active = active || (image.face_index[v][p] < 0 && image.g_alpha[v][p] != 0.0f);
  if (image.g_rgb[v]) {
    const SweepView w = view_of(image, v);
    for (int k = 0; k < 3; ++k) active = active || w.g_rgb[w.channel(p, k)] != 0.0f;
  }
  return active;
}

// The outward scan (A) of one scanline over pixels t in [from, to] (pixel base + t * step): the sums over t with
// delta(t, t_in) > 0 of accumulate()'s terms for vertex a and vertex c. The hot loop of the backward pass (it
// runs to the image border wherever a cotangent is non-zero), so it evaluates V's lanes at once, selecting
// rather than branching between them, with two independent partial sums; the lanes and sums are added in a
// fixed order at the end, so results are deterministic.
template <bool kRgb, bool kAlpha, class V>
JAXNMR_HD void add_outward_terms(const SweepView& w, int64_t p, int64_t step, int t, const float* I_in,
                                 const Scanline& l, float eps, int S, V* sum_a, V* sum_c) {
  typedef LaneTraits<V> L;
  const V delta = pixel_delta<kRgb, kAlpha, V>(w, p, step, I_in, 1.0f);
  const auto positive = delta > 0.0f;
  // Pixels whose delta is not positive add nothing (+0, and the sums start at +0): where no lane has one, the
  // two divisions are skipped. Silhouette cotangents are zero on most pixels of a line.
  if (!L::any(positive)) return;
  const V term_a = delta / move_distance(l, l.ratio_a, L::iota(t), eps, S);
  const V term_c = delta / move_distance(l, l.ratio_c, L::iota(t), eps, S);
  *sum_a += positive ? term_a : V{};  // selects between lanes: where delta <= 0 the terms (which may even be
  *sum_c += positive ? term_c : V{};  // NaN there for huge inputs) are dropped
}

template <bool kRgb, bool kAlpha, class V>
JAXNMR_HD void outward_sums(const SweepView& w, int64_t base, int64_t step, int from, int to, const float* I_in,
                            const uint8_t* line_blocks, const Scanline& l, float eps, int S, float* total_a,
                            float* total_c) {
  typedef LaneTraits<V> L;
  constexpr int W = L::kWidth;
  static_assert(2 * W <= kBlock, "a group of pixels spans at most two blocks");
  V sum_a[2] = {V{}, V{}}, sum_c[2] = {V{}, V{}};
  int t = from;
  for (; t + 2 * W - 1 <= to; t += 2 * W) {
    // a group with no active pixel adds nothing (+0): skipped unread where the line's blocks say so
    if (line_blocks && !line_blocks[t / kBlock] && !line_blocks[(t + 2 * W - 1) / kBlock]) continue;
    for (int h = 0; h < 2; ++h) {
      const int t_h = t + h * W;
      add_outward_terms<kRgb, kAlpha, V>(w, base + t_h * step, step, t_h, I_in, l, eps, S, &sum_a[h], &sum_c[h]);
    }
  }
  float rest_a = 0.0f, rest_c = 0.0f;  // the last pixels, fewer than two lanes' worth, one at a time
  for (; t <= to; ++t) {
    add_outward_terms<kRgb, kAlpha, float>(w, base + t * step, step, t, I_in, l, eps, S, &rest_a, &rest_c);
  }
  *total_a = (L::sum(sum_a[0]) + L::sum(sum_a[1])) + rest_a;
  *total_c = (L::sum(sum_c[0]) + L::sum(sum_c[1])) + rest_c;
}

// The outward scan (A) of face f's edge e on scanline s over [from, to] (p_in: the pixel just inside, drawn by
// f), added into G.
// V: the value type of its per-pixel terms (ScanLanes by default; the CPU tests also run float, the GPU's).
template <class V = ScanLanes, class Image>
JAXNMR_HD void outward_scan(const EdgeSweep& e, const Scanline& l, int s, int from, int to, const Image& image,
                            int64_t p_in, float eps, int S, float* G) {
  if (from > to) return;
  const int v = e.axis;
  const SweepView w = view_of(image, v);
  float I_in[3];
  reference_colour(w, p_in, I_in);
  const int64_t base = image.pixel(v, s, 0), step = image.step[v];
  const uint8_t* line_blocks =
      image.blocks ? image.blocks + (static_cast<int64_t>(v) * S + s) * image.blocks_per_line : nullptr;
  float ta = 0.0f, tc = 0.0f;
  with_cotangents(w, [&](auto use) {
    outward_sums<decltype(use)::kRgb, decltype(use)::kAlpha, V>(w, base, step, from, to, I_in, line_blocks, l,
                                                               eps, S, &ta, &tc);
  });
  if (l.moves_a) G[3 * e.a + e.comp] -= ta;
  if (l.moves_c) G[3 * e.c + e.comp] -= tc;
}

// The inward scan (B) of face f's edge e on scanline s: each pixel t in [l.in_from, l.in_to] drawn by f whose
// delta against the pixel just outside (p_out) is positive adds accumulate()'s terms into G.
template <class Image>
JAXNMR_HD void inward_scan(const EdgeSweep& e, const Scanline& l, int s, const Image& image, int64_t p_out,
                           int32_t f, float eps, int S, float* G) {
  const int v = e.axis;
  const SweepView w = view_of(image, v);
  float I_out[3];
  reference_colour(w, p_out, I_out);
  const float a_out = w.face_index[p_out] >= 0 ? 1.0f : 0.0f;
  with_cotangents(w, [&](auto use) {
    for (int t = l.in_from; t <= l.in_to; ++t) {
      const int64_t p = image.pixel(v, s, t);
      if (w.face_index[p] != f) continue;
      const float delta = pixel_delta<decltype(use)::kRgb, decltype(use)::kAlpha, float>(w, p, 1, I_out, a_out);
      if (delta > 0.0f) accumulate(e, l, s, t, delta, eps, S, G);
    }
  });
}

// Both scans of one scanline for face f (the outward and inward scans of docs/rasterizer.md, "Approximate
// gradient"), accumulating into the face's 3x3 gradient G. `image` is a SweepImage; V as in outward_scan.
template <class V = ScanLanes, class Image>
JAXNMR_HD void sweep_scanline(const EdgeSweep& e, int s, const Image& image, int32_t f, int S, float eps,
                              float* G) {
  Scanline l;
  if (!setup_scanline(e, s, S, &l)) return;
  const int v = e.axis;
  const int64_t p_in = image.pixel(v, s, l.t_in);
  const int64_t p_out = image.pixel(v, s, l.t_out);
  if (image.face(v, p_in) == f) {  // (A) the edge is visible here: moving it outward covers pixels beyond it
    int from = l.out_from, to = l.out_to;
    if (image.span) {  // only the part of the line where some pixel can contribute
      const int32_t* first = image.span + (e.axis == 0 ? 0 : 2 * S);
      from = from > first[s] ? from : first[s];
      to = to < first[S + s] ? to : first[S + s];
    }
    outward_scan<V>(e, l, s, from, to, image, p_in, eps, S, G);
  }
  inward_scan(e, l, s, image, p_out, f, eps, S, G);  // (B) moving it inward uncovers the face's own pixels
}

// Exact gradient of the interpolated depth of a covered pixel w.r.t. its face's NDC vertices (docs/rasterizer.md,
// "Depth gradient"), scaled by the cotangent g and added to G: dz/dZ_k = w_k z^2 / Z_k^2, dz/dX_k = -w_k z^2 a_u
// S/2 with a_u = -sum_l inv[l][0] / Z_l (and likewise y with inv[l][1]).
JAXNMR_HD void depth_gradient(const float* f, const float* inv, const float* w, float zp, float g, int S,
                              float* G) {
  const float z2 = zp * zp;
  float a[2] = {0.0f, 0.0f};
  for (int d = 0; d < 2; ++d) {
    for (int l = 0; l < 3; ++l) a[d] += -inv[3 * l + d] / f[3 * l + 2];
  }
  for (int k = 0; k < 3; ++k) {
    const float zk = f[3 * k + 2];
    G[3 * k + 2] += g * w[k] * z2 / (zk * zk);
    for (int d = 0; d < 2; ++d) G[3 * k + d] += -g * w[k] * z2 * a[d] * (float)S / 2.0f;
  }
}

}  // namespace jaxnmr

#endif  // JAXNMR_RASTER_H_
