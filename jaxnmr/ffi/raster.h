// jaxnmr rasterizer: the per-face and per-pixel math, written once for every back end.
//
// The CPU handlers (raster_cpu.cc) and the CUDA handlers (raster_cuda.cu) only loop over these functions;
// what a pixel shows and what gradient a face receives is decided here and nowhere else.
//
// Conventions (NMR_SPEC §1): faces are [F, 3, 3] float32 in "NDC": x, y in [-1, 1] span the image (x right,
// y up) and z is camera-space depth. Internal buffers are [S, S] with row r growing with +y (row 0 at the
// bottom); the Python side flips them. Pixel (r, c) is sampled at its centre
//     x(c) = (2c + 1 - S) / S,   y(r) = (2r + 1 - S) / S,
// and a vertex maps to continuous pixel coordinates u = (X S + S - 1) / 2, v = (Y S + S - 1) / 2.
//
// All arithmetic is float32 in the order written here; raster_cpu.cc is compiled without FMA contraction so
// that reference.py (pure jnp) can reproduce it.
#ifndef JAXNMR_RASTER_H_
#define JAXNMR_RASTER_H_

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define JAXNMR_HD __host__ __device__ __forceinline__
#else
#define JAXNMR_HD inline
#endif

namespace jaxnmr {

// Everything the per-pixel loop needs about one face, computed once per face.
struct FaceSetup {
  float inv[9];      // row k: (dw_k/du, dw_k/dv, w_k at u = v = 0), pixel units (NMR_SPEC §4.2)
  int c0, c1, r0, r1;  // inclusive pixel range that can pass the inside test; empty if c0 > c1 or r0 > r1
  bool drawable;     // front-facing, all coordinates finite, and the range is not empty
};

// Pixel-centre coordinate (NDC) of internal column/row i at resolution S.
JAXNMR_HD float pixel_center(int i, int S) { return (float)(2 * i + 1 - S) / (float)S; }

// Continuous pixel coordinate of an NDC coordinate at resolution S.
JAXNMR_HD float to_pixel(float x, int S) { return 0.5f * (x * (float)S + (float)S - 1.0f); }

// Back-face test in NDC (NMR_SPEC §1.5): strict, so zero-area faces are not culled. Written as a comparison
// of two products, as the original does: A < 0  <=>  (Y2 - Y0)(X1 - X0) < (Y1 - Y0)(X2 - X0).
JAXNMR_HD bool is_back_facing(const float* f) {
  return (f[7] - f[1]) * (f[3] - f[0]) < (f[4] - f[1]) * (f[6] - f[0]);
}

JAXNMR_HD bool face_is_finite(const float* f) {
  bool ok = true;
  for (int i = 0; i < 9; ++i) ok = ok && isfinite(f[i]);
  return ok;
}

// Inclusive inside test at NDC point (xp, yp): the pixel is outside iff some directed edge a->b has the point
// strictly on its right, (yp - Ya)(Xb - Xa) < (xp - Xa)(Yb - Ya).
JAXNMR_HD bool is_inside(const float* f, float xp, float yp) {
  if ((yp - f[1]) * (f[3] - f[0]) < (xp - f[0]) * (f[4] - f[1])) return false;
  if ((yp - f[4]) * (f[6] - f[3]) < (xp - f[3]) * (f[7] - f[4])) return false;
  if ((yp - f[7]) * (f[0] - f[6]) < (xp - f[6]) * (f[1] - f[7])) return false;
  return true;
}

// The inverse of [[u0 u1 u2] [v0 v1 v2] [1 1 1]] by the adjugate (NMR_SPEC §4.2). A zero determinant gives
// inf/NaN entries; the pixel loop then never draws the face (§4.8).
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

// Inclusive pixel range [lo, hi] along one axis whose centres can lie inside the face: the vertices' extent in
// exact (double) pixel coordinates, widened by one pixel so that float rounding in the NDC inside test can never
// accept a pixel outside it, clamped to [0, S-1]. Returns false if the range misses the image.
JAXNMR_HD bool pixel_range(float a, float b, float c, int S, int* lo, int* hi) {
  const double mn = fmin(fmin((double)a, (double)b), (double)c);
  const double mx = fmax(fmax((double)a, (double)b), (double)c);
  const double s = (double)S;
  const double l = ceil(0.5 * (mn * s + s - 1.0)) - 1.0;
  const double h = floor(0.5 * (mx * s + s - 1.0)) + 1.0;
  if (h < 0.0 || l > s - 1.0) return false;
  *lo = (int)fmax(l, 0.0);
  *hi = (int)fmin(h, s - 1.0);
  return true;
}

// Per-face setup (NMR_SPEC §4.2): cull back faces and non-finite faces, compute the inverse and pixel range.
JAXNMR_HD FaceSetup setup_face(const float* f, int S) {
  FaceSetup fs;
  fs.c0 = 0; fs.c1 = -1; fs.r0 = 0; fs.r1 = -1;
  fs.drawable = false;
  for (int k = 0; k < 9; ++k) fs.inv[k] = 0.0f;
  if (!face_is_finite(f) || is_back_facing(f)) return fs;
  if (!pixel_range(f[0], f[3], f[6], S, &fs.c0, &fs.c1)) return fs;
  if (!pixel_range(f[1], f[4], f[7], S, &fs.r0, &fs.r1)) return fs;
  face_inverse(f, S, fs.inv);
  fs.drawable = true;
  return fs;
}

// Screen-space barycentrics of pixel (c, r), clamped to [0, 1] with fmin/fmax semantics (a NaN weight becomes
// 0) and renormalised (NMR_SPEC §4.3).
JAXNMR_HD void pixel_weights(const float* inv, int c, int r, float* w) {
  const float xc = (float)c, yr = (float)r;
  float sum = 0.0f;
  for (int k = 0; k < 3; ++k) {
    float wk = inv[3 * k + 0] * xc + inv[3 * k + 1] * yr + inv[3 * k + 2];
    wk = fminf(fmaxf(wk, 0.0f), 1.0f);
    w[k] = wk;
    sum += wk;
  }
  for (int k = 0; k < 3; ++k) w[k] /= sum;
}

// Perspective-correct (harmonic) depth of the face at the pixel with weights w.
JAXNMR_HD float pixel_depth(const float* f, const float* w) {
  return 1.0f / (w[0] / f[2] + w[1] / f[5] + w[2] / f[8]);
}

// The whole per-pixel candidate test of NMR_SPEC §4.3: true if the face covers pixel (c, r) with a depth in
// (near, far); then w holds the weights and *zp the depth. A NaN depth is never accepted.
JAXNMR_HD bool pixel_candidate(const float* f, const float* inv, int c, int r, int S, float near, float far,
                               float* w, float* zp) {
  if (!is_inside(f, pixel_center(c, S), pixel_center(r, S))) return false;
  pixel_weights(inv, c, r, w);
  const float z = pixel_depth(f, w);
  if (!(z > near && z < far)) return false;
  *zp = z;
  return true;
}

// The eight trilinear corners of a covered pixel in the face's T^3 texture cube (NMR_SPEC §4.5): flat texel
// indices (axis 0 most significant) and weights, from the stored weights w, depth zp and the face's vertex
// depths. Coordinates are clamped to [0, T - 1 - eps] (fmax: NaN -> 0).
JAXNMR_HD void texture_corners(const float* f, const float* w, float zp, int T, float eps, int* index,
                               float* weight) {
  float t[3];
  int i0[3];
  const float hi = (float)(T - 1) - eps;
  for (int k = 0; k < 3; ++k) {
    float tk = w[k] * (float)(T - 1) * (zp / f[3 * k + 2]);
    tk = fminf(fmaxf(tk, 0.0f), hi);
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

}  // namespace jaxnmr

#endif  // JAXNMR_RASTER_H_
