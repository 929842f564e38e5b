// jaxnmr CPU handlers: loops (threaded on XLA's intra-op pool) over the math in raster.h.
//
// Forward target "jaxnmr_rasterize_forward" (docs/rasterizer.md, "Visibility"), batched over L leading dimensions
// that broadcast numpy-style; the outputs' leading dimensions are authoritative (docs/conventions.md, "Batch
// dimensions"):
//   faces      f32 [*Lf, F, 3, 3]        NDC coordinates
//   textures   f32 [*Lt, F, T, T, T, 3]  read only when with_rgb (otherwise any [*, 1, 2, 2, 2, 3] placeholder)
//   background f32 [*Lb, 3]
//   -> face_index s32 [*L, S, S]   (-1 where nothing is drawn)
//      weights    f32 [*L, S, S, 3] clamped, renormalised screen-space barycentrics (0 where nothing is drawn)
//      depth      f32 [*L, S, S]   interpolated camera z (far where nothing is drawn)
//      rgb        f32 [*L, S, S, 3] sampled texture, background where nothing is drawn ([*L, 0, 0, 3] without rgb)
// Backward target "jaxnmr_rasterize_backward" (docs/rasterizer.md, "Approximate gradient"): the forward's inputs
// and maps plus the cotangents of rgb, alpha and depth (each optional) -> g_faces f32 [*L, F, 3, 3] and g_textures
// f32 [*L, F, T, T, T, 3] ([*L, 0, 1, 1, 1, 3] when no texture gradient is asked for). Each face's edge sweeps run
// on one thread and own its gradient, and then visits its own pixels for the depth and texture terms, so there are
// no races and the result is the same on every run. Visibility is found per band of rows: faces are binned by the
// rows their pixel range touches, and each band visits its faces in index order, so the strict z-test keeps the
// lowest face index on ties, and cost grows with the pixels each face's range covers, not pixels x faces.
#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "args.h"
#include "parallel.h"
#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {
namespace {

constexpr int kBandRows = 16;           // rows per unit of forward work

// ---------------------------------------------------------------------------------------------------------
// Forward.

// A drawable face as the bands of the forward visit it: its index, the pixel range its pixels must lie in
// (face_range) and a copy of its NDC coordinates, so that a band reads its faces in one sequential stream
// instead of gathering them from all over the mesh (a cache miss per face at a million faces).
struct BinnedFace {
  int32_t f;
  int32_t c0, c1, r0, r1;
  float v[9];
};

// The faces of each band, per batch element and chunk of faces: bins[(b * chunks + chunk) * bands + band],
// each in ascending face order. Kept between calls (cleared, not freed).
struct FaceBins {
  std::vector<std::vector<BinnedFace>> bins;
  int64_t Bytes() const {
    size_t entries = 0;
    for (const auto& bin : bins) entries += bin.capacity();
    return static_cast<int64_t>(entries * sizeof(BinnedFace) + bins.capacity() * sizeof(bins[0]));
  }
};
using KeptBins = KeptSets<FaceBins, int64_t{128} << 20>;

constexpr int64_t kFacesPerChunk = 1 << 16;  // faces binned per work item of the forward's first phase

// The z-test of one face against rows [r_begin, r_end) of a band, whose face index, depth and (if kept)
// weights maps start at fi, dm and wm: where the face covers a pixel nearer than what the band holds, it
// replaces it. With lanes, 8 adjacent pixels are tested at once, with the scalar loop's arithmetic lane by
// lane; the scalar loop takes the rest of each row.
void DrawFace(const ForwardArgs& a, const BinnedFace& face, int r_begin, int r_end, int32_t* fi, float* dm,
              float* wm) {
  const int S = a.S;
  const int r0 = std::max(face.r0, r_begin), r1 = std::min(face.r1, r_end - 1);
  float inv[9];
  bool have_inv = false;
  auto inverse = [&]() -> const float* {  // computed once some pixel is inside (most tiny faces cover none)
    if (!have_inv) face_inverse(face.v, S, inv);
    have_inv = true;
    return inv;
  };
  auto keep = [&](int64_t p, float z, const float* w) {
    dm[p] = z;
    fi[p] = face.f;
    if (wm) {
      for (int j = 0; j < 3; ++j) wm[3 * p + j] = w[j];
    }
  };
  for (int r = r0; r <= r1; ++r) {
    const int64_t row = static_cast<int64_t>(r - r_begin) * S;
    const float yr = pixel_center(r, S);
    int c = face.c0;
#if JAXNMR_LANES
    typedef LaneTraits<Lanes> L;
    for (; c + L::kWidth - 1 <= face.c1; c += L::kWidth) {
      const LaneMask inside = outside_mask<Lanes>(face.v, pixel_center_at(L::iota(c), S), yr) == 0;
      if (!L::any(inside)) continue;
      Lanes w[3];
      pixel_weights_at<Lanes>(inverse(), L::iota(c), (float)r, w);
      const Lanes z = pixel_depth<Lanes>(face.v, w);
      const int64_t p = row + c;
      const LaneMask accept = inside & (z > L::splat(a.near)) & (z < L::splat(a.far)) & (z < L::gather(dm, p, 1));
      if (!L::any(accept)) continue;
      for (int k = 0; k < L::kWidth; ++k) {
        const float wk[3] = {w[0][k], w[1][k], w[2][k]};
        if (accept[k]) keep(p + k, z[k], wk);
      }
    }
#endif
    for (; c <= face.c1; ++c) {
      if (!is_inside(face.v, pixel_center(c, S), yr)) continue;
      float w[3], zp;
      if (!pixel_sample(face.v, inverse(), c, r, a.near, a.far, w, &zp)) continue;
      if (zp < dm[row + c]) keep(row + c, zp, w);
    }
  }
}

// Visibility, texture sampling and background for rows [r_begin, r_end) of batch element b; `bins` points at
// this band's bin of the element's first chunk, the next chunk's `bands` bins further.
void ForwardBand(const ForwardArgs& a, const std::vector<BinnedFace>* bins, int64_t chunks, int bands, int64_t b,
                 int r_begin, int r_end) {
  const int S = a.S;
  const int64_t pix0 = (b * S + r_begin) * S;
  const int64_t npix = static_cast<int64_t>(r_end - r_begin) * S;
  int32_t* fi = a.face_index + pix0;
  // Without the maps, the z-buffer is this band's own scratch (it stays in cache) and weights are not kept.
  thread_local std::vector<float> band_depth;
  if (!a.with_maps) band_depth.resize(static_cast<size_t>(npix));
  float* wm = a.with_maps ? a.weights + 3 * pix0 : nullptr;
  float* dm = a.with_maps ? a.depth + pix0 : band_depth.data();
  std::fill(fi, fi + npix, -1);
  if (wm) std::fill(wm, wm + 3 * npix, 0.0f);
  std::fill(dm, dm + npix, a.far);

  for (int64_t chunk = 0; chunk < chunks; ++chunk) {  // chunks in order: faces in ascending index order
    for (const BinnedFace& face : bins[chunk * bands]) DrawFace(a, face, r_begin, r_end, fi, dm, wm);
  }

  if (!a.with_rgb) return;
  float* out = a.rgb + 3 * pix0;
  const float* bg = a.background + 3 * a.background_map(b);
  const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
  const float* faces_b = a.faces + a.faces_map(b) * a.F * 9;
  const float* textures_b = a.textures + a.textures_map(b) * a.F * cube;
  for (int64_t p = 0; p < npix; ++p) {
    const int32_t f = fi[p];
    if (f < 0) {
      out[3 * p + 0] = bg[0];
      out[3 * p + 1] = bg[1];
      out[3 * p + 2] = bg[2];
      continue;
    }
    sample_texture(faces_b + 9 * static_cast<int64_t>(f), textures_b + f * cube, wm + 3 * p, dm[p], a.T, a.eps,
                   out + 3 * p);
  }
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> faces, ffi::Buffer<ffi::F32> textures,
                       ffi::Buffer<ffi::F32> background, int32_t image_size, float near, float far, float eps,
                       int32_t with_rgb, int32_t with_maps, ffi::ResultBuffer<ffi::S32> face_index,
                       ffi::ResultBuffer<ffi::F32> weights, ffi::ResultBuffer<ffi::F32> depth,
                       ffi::ResultBuffer<ffi::F32> rgb) {
  ForwardArgs a;
  if (auto e = PrepareForward(faces, textures, background, image_size, near, far, eps, with_rgb, with_maps,
                              face_index, weights, depth, rgb, &a);
      e.failure()) {
    return e;
  }
  const int64_t S = a.S;
  const int64_t B = a.B;
  if (B == 0) return ffi::Error::Success();
  const int64_t F = a.F;
  const int bands = static_cast<int>((S + kBandRows - 1) / kBandRows);
  AdviseHugePages(a.face_index, B * S * S * 4);
  if (a.with_maps) {
    AdviseHugePages(a.weights, B * S * S * 12);
    AdviseHugePages(a.depth, B * S * S * 4);
  }
  if (a.with_rgb) AdviseHugePages(a.rgb, B * S * S * 12);

  // Phase 1: cull and bin the faces by band, one chunk of faces of one batch element per work item.
  const int64_t chunks = std::max<int64_t>(1, (F + kFacesPerChunk - 1) / kFacesPerChunk);
  std::vector<FaceBins> kept = KeptBins::Get().Take(1);
  std::vector<std::vector<BinnedFace>>& bins = kept[0].bins;
  bins.resize(static_cast<size_t>(B * chunks * bands));
  for (auto& bin : bins) bin.clear();
  std::vector<int64_t> work(static_cast<size_t>(B * chunks), 0);  // pixel-range visits of each item
  ParallelFor(pool, B * chunks, B * F, [&](int64_t item) {
    const int64_t b = item / chunks, chunk = item % chunks;
    const float* faces_b = a.faces + a.faces_map(b) * F * 9;
    std::vector<BinnedFace>* bin = bins.data() + item * bands;
    for (int64_t f = chunk * kFacesPerChunk; f < std::min(F, (chunk + 1) * kFacesPerChunk); ++f) {
      BinnedFace face;
      if (!face_range(faces_b + 9 * f, a.S, &face.c0, &face.c1, &face.r0, &face.r1)) continue;
      face.f = static_cast<int32_t>(f);
      std::copy(faces_b + 9 * f, faces_b + 9 * f + 9, face.v);
      work[item] += static_cast<int64_t>(face.r1 - face.r0 + 1) * (face.c1 - face.c0 + 1);
      for (int band = face.r0 / kBandRows; band <= face.r1 / kBandRows; ++band) bin[band].push_back(face);
    }
  });

  // Phase 2: visibility and shading, one band of one batch element per work item.
  int64_t total = B * S * S;
  for (int64_t w : work) total += w;
  ParallelFor(pool, B * bands, total, [&](int64_t item) {
    const int64_t b = item / bands;
    const int band = static_cast<int>(item % bands);
    const int r_begin = band * kBandRows;
    const int r_end = std::min<int>(r_begin + kBandRows, a.S);
    ForwardBand(a, bins.data() + b * chunks * bands + band, chunks, bands, b, r_begin, r_end);
  });
  KeptBins::Get().Give(std::move(kept));
  return ffi::Error::Success();
}


// ---------------------------------------------------------------------------------------------------------
// Backward.

// Copies of one batch element's images in the layouts the sweeps read fastest: transposed (column-major) so
// that sweeps over columns read memory contiguously, and the rgb image and its cotangent as three planes each,
// in both orientations, so that the outward scans load a lane's pixels of a channel at once.
struct Transposed {
  std::vector<int32_t> face_index;
  std::vector<float> g_alpha, rgb, g_rgb;  // column-major; rgb and g_rgb as planes [3, S, S]
  std::vector<float> row_rgb, row_g_rgb;   // row-major planes [3, S, S]

  int64_t Bytes() const {
    const size_t floats = g_alpha.capacity() + rgb.capacity() + g_rgb.capacity() + row_rgb.capacity() +
                          row_g_rgb.capacity();
    return static_cast<int64_t>(face_index.capacity() * sizeof(int32_t) + floats * sizeof(float));
  }
};

constexpr int kTile = 64;  // rows per work item of the backward's prologue (spans, blocks, transposed copies)
static_assert(kTile % kBlock == 0, "prologue bands own whole blocks of rows");

// Makes the copies large enough for one batch element (they only grow: every element that is read is written
// first by TransposeRows, so what a reused buffer held before does not matter).
void ResizeTransposed(const BackwardArgs& a, Transposed* out) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  auto grow = [](auto* v, int64_t n) {
    if (static_cast<int64_t>(v->size()) < n) v->resize(n);
  };
  grow(&out->face_index, SS);
  if (a.g_alpha) grow(&out->g_alpha, SS);
  if (a.g_rgb) {
    for (auto* v : {&out->rgb, &out->g_rgb, &out->row_rgb, &out->row_g_rgb}) grow(v, SS * 3);
  }
}

using KeptTransposed = KeptSets<Transposed, int64_t{256} << 20>;

// Transposes one 8x8 block of 32-bit values: out[j * S + i] = in[i * S + j] for i, j < 8.
template <class T>
void Transpose8x8(const T* in, T* out, int64_t S) {
  static_assert(sizeof(T) == 4, "32-bit elements");
#if defined(__AVX__)
  __m256 x[8];
  for (int i = 0; i < 8; ++i) x[i] = _mm256_loadu_ps(reinterpret_cast<const float*>(in + i * S));
  __m256 lo[4], hi[4], q[8];
  for (int i = 0; i < 4; ++i) {  // pairs of rows interleaved
    lo[i] = _mm256_unpacklo_ps(x[2 * i], x[2 * i + 1]);
    hi[i] = _mm256_unpackhi_ps(x[2 * i], x[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // quadruples of rows, per 128-bit half
    q[4 * i + 0] = _mm256_shuffle_ps(lo[2 * i], lo[2 * i + 1], 0x44);
    q[4 * i + 1] = _mm256_shuffle_ps(lo[2 * i], lo[2 * i + 1], 0xEE);
    q[4 * i + 2] = _mm256_shuffle_ps(hi[2 * i], hi[2 * i + 1], 0x44);
    q[4 * i + 3] = _mm256_shuffle_ps(hi[2 * i], hi[2 * i + 1], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {  // the halves of rows 0-3 and 4-7 joined
    _mm256_storeu_ps(reinterpret_cast<float*>(out + j * S), _mm256_permute2f128_ps(q[j], q[4 + j], 0x20));
    _mm256_storeu_ps(reinterpret_cast<float*>(out + (j + 4) * S), _mm256_permute2f128_ps(q[j], q[4 + j], 0x31));
  }
#else
  T block[8][8];
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 8; ++j) block[j][i] = in[i * S + j];
  }
  for (int j = 0; j < 8; ++j) std::copy(block[j], block[j] + 8, out + j * S);
#endif
}

// Copies rows [r_begin, r_end) of the row-major S x S array `in` into the column-major `out`
// (out[c * S + r] = in[r * S + c]). Eight columns are written 32 bytes at a time: element by element, the
// stores to columns S * 4 bytes apart all fall in the same few cache sets and evict each other (4x slower).
template <class T>
void TransposeBand(const T* in, T* out, int S, int r_begin, int r_end) {
  const int64_t n = S;
  const int r_full = r_begin + (r_end - r_begin) / 8 * 8, c_full = S / 8 * 8;
  for (int c = 0; c < c_full; c += 8) {
    for (int r = r_begin; r < r_full; r += 8) Transpose8x8(in + r * n + c, out + c * n + r, n);
  }
  for (int r = r_begin; r < r_end; ++r) {  // the rows and columns left over
    const int c_begin = r < r_full ? c_full : 0;
    for (int c = c_begin; c < S; ++c) out[c * n + r] = in[r * n + c];
  }
}

// Copies rows [r_begin, r_end) of batch element b's images into column-major order, and rgb and its
// cotangent into planes (both orders).
void TransposeRows(const BackwardArgs& a, int64_t b, int r_begin, int r_end, Transposed* out) {
  const int S = a.S;
  const int64_t SS = static_cast<int64_t>(S) * S;
  TransposeBand(a.face_index + a.fi_map(b) * SS, out->face_index.data(), S, r_begin, r_end);
  if (a.g_alpha) TransposeBand(a.g_alpha + a.g_alpha_map(b) * SS, out->g_alpha.data(), S, r_begin, r_end);
  if (!a.g_rgb) return;
  const float* I = a.rgb + a.rgb_map(b) * SS * 3;
  const float* gr = a.g_rgb + a.g_rgb_map(b) * SS * 3;
  for (int64_t p = static_cast<int64_t>(r_begin) * S; p < static_cast<int64_t>(r_end) * S; ++p) {
    for (int k = 0; k < 3; ++k) {
      out->row_rgb[k * SS + p] = I[3 * p + k];
      out->row_g_rgb[k * SS + p] = gr[3 * p + k];
    }
  }
  for (int k = 0; k < 3; ++k) {
    TransposeBand(out->row_rgb.data() + k * SS, out->rgb.data() + k * SS, S, r_begin, r_end);
    TransposeBand(out->row_g_rgb.data() + k * SS, out->g_rgb.data() + k * SS, S, r_begin, r_end);
  }
}

int64_t BlocksPerLine(int S) { return (S + kBlock - 1) / kBlock; }

// The sweep views of batch element b: row-major arrays for sweeps over rows; for sweeps over columns the
// transposed copy if there is one, else the same arrays read with a stride of S.
SweepImage ImageOf(const BackwardArgs& a, int64_t b, const int32_t* span, const uint8_t* blocks,
                   const Transposed* transposed) {
  const int64_t S = a.S, SS = S * S;
  SweepImage image;
  image.face_index[1] = a.face_index + a.fi_map(b) * SS;
  image.rgb[1] = a.g_rgb ? a.rgb + a.rgb_map(b) * SS * 3 : nullptr;
  image.g_rgb[1] = a.g_rgb ? a.g_rgb + a.g_rgb_map(b) * SS * 3 : nullptr;
  image.g_alpha[1] = a.g_alpha ? a.g_alpha + a.g_alpha_map(b) * SS : nullptr;
  image.line[1] = S;
  image.step[1] = 1;
  image.rgb_pixel[0] = image.rgb_pixel[1] = 3;
  image.rgb_channel[0] = image.rgb_channel[1] = 1;
  if (transposed) {
    image.face_index[0] = transposed->face_index.data();
    image.rgb[0] = a.g_rgb ? transposed->rgb.data() : nullptr;
    image.g_rgb[0] = a.g_rgb ? transposed->g_rgb.data() : nullptr;
    if (a.g_rgb) {  // planes in both orientations
      image.rgb[1] = transposed->row_rgb.data();
      image.g_rgb[1] = transposed->row_g_rgb.data();
      for (int v = 0; v < 2; ++v) {
        image.rgb_pixel[v] = 1;
        image.rgb_channel[v] = SS;
      }
    }
    image.g_alpha[0] = a.g_alpha ? transposed->g_alpha.data() : nullptr;
    image.line[0] = S;
    image.step[0] = 1;
  } else {
    image.face_index[0] = image.face_index[1];
    image.rgb[0] = image.rgb[1];
    image.g_rgb[0] = image.g_rgb[1];
    image.g_alpha[0] = image.g_alpha[1];
    image.line[0] = 1;
    image.step[0] = S;
  }
  image.span = span;
  image.blocks = blocks;
  image.blocks_per_line = BlocksPerLine(a.S);
  return image;
}

// The per-line spans of pixels that can contribute to an outward scan (SweepImage::span), [4 * S]: first
// Reset, then Update with each band of rows (bands may run in parallel: each owns its rows' entries, and the
// column entries are merged under a lock with min/max, which do not depend on the order).
void ResetSpans(int S, int32_t* span) {
  std::fill(span, span + S, S);          // first row of each column
  std::fill(span + S, span + 2 * S, -1);  // last row of each column
  std::fill(span + 2 * S, span + 3 * S, S);
  std::fill(span + 3 * S, span + 4 * S, -1);
}

void UpdateSpans(const BackwardArgs& a, int64_t b, int r_begin, int r_end, int32_t* span, uint8_t* blocks,
                 std::mutex* merge) {
  const int S = a.S;
  const SweepImage image = ImageOf(a, b, nullptr, nullptr, nullptr);
  thread_local std::vector<uint8_t> active;  // this band's pixels: can they contribute? (computed once)
  active.resize(static_cast<size_t>(r_end - r_begin) * S);
  for (int r = r_begin; r < r_end; ++r) {  // each band owns its rows' entries
    uint8_t* row = active.data() + static_cast<int64_t>(r - r_begin) * S;
    for (int c = 0; c < S; ++c) {
      row[c] = active_for_outward_scan(image, 1, static_cast<int64_t>(r) * S + c);
      if (!row[c]) continue;
      span[2 * S + r] = std::min(span[2 * S + r], c);
      span[3 * S + r] = c;
    }
  }
  // Blocks (SweepImage::blocks): the band's rows (view 1) and, since bands start at multiples of kBlock rows,
  // whole blocks of every column (view 0). `active` holds 0 or 1 per pixel.
  const int64_t per_line = BlocksPerLine(S);
  const int full = S / kBlock;  // blocks of kBlock pixels; a last partial one if S is not a multiple
  for (int r = r_begin; r < r_end; ++r) {
    const uint8_t* row = active.data() + static_cast<int64_t>(r - r_begin) * S;
    uint8_t* row_blocks = blocks + (static_cast<int64_t>(S) + r) * per_line;
    for (int k = 0; k < full; ++k) {
      uint64_t half[2];
      memcpy(half, row + k * kBlock, sizeof(half));
      row_blocks[k] = (half[0] | half[1]) != 0;
    }
    if (full < per_line) row_blocks[full] = std::any_of(row + full * kBlock, row + S, [](uint8_t x) { return x; });
  }
  thread_local std::vector<uint8_t> column_any_kept;
  column_any_kept.resize(static_cast<size_t>(S));
  uint8_t* column_any = column_any_kept.data();  // (a plain pointer: no thread-local lookup per element)
  for (int r0 = r_begin; r0 < r_end; r0 += kBlock) {
    std::fill(column_any, column_any + S, uint8_t{0});
    for (int r = r0; r < std::min(r_end, r0 + kBlock); ++r) {
      const uint8_t* row = active.data() + static_cast<int64_t>(r - r_begin) * S;
      for (int c = 0; c < S; ++c) column_any[c] |= row[c];
    }
    for (int c = 0; c < S; ++c) blocks[static_cast<int64_t>(c) * per_line + r0 / kBlock] = column_any[c];
  }
  std::vector<int32_t> first(S, S), last(S, -1);  // this band's column entries, then merged
  for (int r = r_begin; r < r_end; ++r) {
    if (span[3 * S + r] < 0) continue;
    const uint8_t* row = active.data() + static_cast<int64_t>(r - r_begin) * S;
    for (int c = span[2 * S + r]; c <= span[3 * S + r]; ++c) {
      if (!row[c]) continue;
      first[c] = std::min(first[c], r);
      last[c] = r;
    }
  }
  std::lock_guard<std::mutex> lock(*merge);
  for (int c = 0; c < S; ++c) {
    if (last[c] < 0) continue;
    span[c] = std::min(span[c], first[c]);
    span[S + c] = std::max(span[S + c], last[c]);
  }
}

// The per-pixel terms of face f (drawn at pixels of its range where face_index == f): the exact depth gradient
// (docs/rasterizer.md, "Depth gradient") into G and the trilinear texture gradient ("Texture gradient") into the
// face's own cube.
void FacePixelGradients(const BackwardArgs& a, int64_t b, int64_t f, const float* face, float* G, float* cube_f) {
  const FaceSetup fs = setup_face(face, a.S);
  if (!fs.drawable) return;
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int32_t* fi = a.face_index + a.fi_map(b) * SS;
  const float* w = a.weights + a.weights_map(b) * SS * 3;
  const float* z = a.depth + a.depth_map(b) * SS;
  const float* g_depth = a.depth_grad ? a.g_depth + a.g_depth_map(b) * SS : nullptr;
  const float* g_rgb = cube_f ? a.g_rgb + a.g_rgb_map(b) * SS * 3 : nullptr;
  for (int r = fs.r0; r <= fs.r1; ++r) {
    for (int c = fs.c0; c <= fs.c1; ++c) {
      const int64_t p = static_cast<int64_t>(r) * a.S + c;
      if (fi[p] != f) continue;
      if (g_depth && g_depth[p] != 0.0f) depth_gradient(face, fs.inv, w + 3 * p, z[p], g_depth[p], a.S, G);
      if (g_rgb) {
        int index[8];
        float weight[8];
        texture_corners(face, w + 3 * p, z[p], a.T, a.eps, index, weight);
        for (int pn = 0; pn < 8; ++pn) {
          for (int k = 0; k < 3; ++k) cube_f[3 * index[pn] + k] += weight[pn] * g_rgb[3 * p + k];
        }
      }
    }
  }
}

// Marks owned[f] = 1 for every face f drawn at some pixel of rows [r_begin, r_end) of batch element b. Bands
// run in parallel and may mark the same face: relaxed atomic stores of the same value.
void MarkOwnedFaces(const BackwardArgs& a, int64_t b, int r_begin, int r_end, uint8_t* owned) {
  const int64_t S = a.S;
  const int32_t* fi = a.face_index + a.fi_map(b) * S * S;
  for (int64_t p = r_begin * S; p < r_end * S; ++p) {
    const int32_t f = fi[p];
    if (f >= 0 && f < a.F) __atomic_store_n(owned + f, uint8_t{1}, __ATOMIC_RELAXED);
  }
}

// All gradient terms of faces [f_begin, f_end) of batch element b: the edge sweeps (docs/rasterizer.md,
// "Approximate gradient"), then the depth and texture terms of the face's own pixels. Each face is owned by one
// thread: no races, a fixed order. owned: [F] of batch element b, 1 for faces drawn at some pixel. Every gradient
// term of a face comes from its own pixels (the outward scans start at a pixel it draws, the inward scans and the
// depth and texture terms visit only pixels it draws), so a face drawn nowhere gets exactly zero and is not
// visited; at a million faces most are.
void FaceGradients(const BackwardArgs& a, int64_t b, int64_t f_begin, int64_t f_end, const int32_t* span,
                   const uint8_t* blocks, const Transposed* transposed, const uint8_t* owned) {
  const float* faces_b = a.faces + a.faces_map(b) * a.F * 9;
  const SweepImage image = ImageOf(a, b, span, blocks, transposed);
  const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
  for (int64_t f = f_begin; f < f_end; ++f) {
    float G[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    const float* face = faces_b + 9 * f;
    float* cube_f = a.texture_grad ? a.g_textures + (b * a.F + f) * cube : nullptr;
    if (cube_f) std::fill(cube_f, cube_f + cube, 0.0f);
    if (owned[f] && face_is_visible_kind(face)) {
      if (a.edges) {
        for (int edge = 0; edge < 3; ++edge) {
          for (int axis = 0; axis < 2; ++axis) {
            const EdgeSweep e = setup_sweep(face, a.S, edge, axis);
            for (int s = e.s_begin; s <= e.s_end; ++s) {
              sweep_scanline(e, s, image, static_cast<int32_t>(f), a.S, a.eps, G);
            }
          }
        }
      }
      if (a.depth_grad || cube_f) FacePixelGradients(a, b, f, face, G, cube_f);
    }
    std::copy(G, G + 9, a.g_faces + (b * a.F + f) * 9);
  }
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> faces, ffi::Buffer<ffi::F32> textures,
                        ffi::Buffer<ffi::S32> face_index, ffi::Buffer<ffi::F32> weights,
                        ffi::Buffer<ffi::F32> depth, ffi::Buffer<ffi::F32> rgb, ffi::Buffer<ffi::F32> g_rgb,
                        ffi::Buffer<ffi::F32> g_alpha, ffi::Buffer<ffi::F32> g_depth, int32_t image_size,
                        float eps, int32_t with_rgb, int32_t has_g_rgb, int32_t has_g_alpha,
                        int32_t has_g_depth, int32_t want_faces, int32_t want_textures,
                        ffi::ResultBuffer<ffi::F32> g_faces,
                        ffi::ResultBuffer<ffi::F32> g_textures) {
  BackwardArgs a;
  if (auto e = PrepareBackward(faces, textures, face_index, weights, depth, rgb, g_rgb, g_alpha, g_depth,
                               image_size, eps, with_rgb, has_g_rgb, has_g_alpha, has_g_depth, want_faces,
                               want_textures, g_faces, g_textures, &a);
      e.failure()) {
    return e;
  }
  const int64_t S = a.S, F = a.F;
  const int64_t B = a.B;
  if (B == 0) return ffi::Error::Success();
  AdviseHugePages(a.g_faces, B * F * 9 * 4);
  if (a.texture_grad) AdviseHugePages(a.g_textures, B * F * a.T * a.T * a.T * 3 * 4);
  constexpr int64_t kFacesPerItem = 32;
  const int64_t chunks = (F + kFacesPerItem - 1) / kFacesPerItem;
  std::vector<int32_t> spans(a.edges ? static_cast<size_t>(B * 4 * S) : 0);
  const int64_t block_bytes = 2 * S * BlocksPerLine(a.S);  // per batch element, both views
  std::vector<uint8_t> blocks(a.edges ? static_cast<size_t>(B * block_bytes) : 0);  // all written below
  // Column sweeps read a transposed copy of the images where it fits this budget, else strided memory; the
  // results are identical either way.
  constexpr int64_t kTransposeBudget = int64_t{256} << 20;
  const int64_t bytes_per_pixel = 4 + (a.g_alpha ? 4 : 0) + (a.g_rgb ? 48 : 0);
  const bool transpose = a.edges && B * S * S * bytes_per_pixel <= kTransposeBudget;
  std::vector<Transposed> transposed = KeptTransposed::Get().Take(transpose ? B : 0);
  std::vector<uint8_t> owned(static_cast<size_t>(B * F), 0);
  if (a.edges) {
    for (int64_t b = 0; b < B; ++b) {
      ResetSpans(a.S, spans.data() + b * 4 * S);
      if (transpose) ResizeTransposed(a, &transposed[b]);
    }
  }
  const int64_t bands = (S + kTile - 1) / kTile;
  std::mutex merge;
  ParallelFor(pool, B * bands, B * S * S, [&](int64_t item) {
    const int64_t b = item / bands;
    const int r0 = static_cast<int>((item % bands) * kTile), r1 = std::min<int>(r0 + kTile, a.S);
    MarkOwnedFaces(a, b, r0, r1, owned.data() + b * F);
    if (!a.edges) return;
    UpdateSpans(a, b, r0, r1, spans.data() + b * 4 * S, blocks.data() + b * block_bytes, &merge);
    if (transpose) TransposeRows(a, b, r0, r1, &transposed[b]);
  });
  // Each face's sweeps cost about its perimeter times S, its pixel terms its pixel range: B * F * S and the
  // image size are fair proxies for the threshold.
  ParallelFor(pool, B * chunks, (a.edges ? B * F * S : B * F) + B * S * S, [&](int64_t item) {
    const int64_t b = item / chunks, chunk = item % chunks;
    FaceGradients(a, b, chunk * kFacesPerItem, std::min(F, (chunk + 1) * kFacesPerItem),
                  a.edges ? spans.data() + b * 4 * S : nullptr, a.edges ? blocks.data() + b * block_bytes : nullptr,
                  transpose ? &transposed[b] : nullptr, owned.data() + b * F);
  });
  KeptTransposed::Get().Give(std::move(transposed));
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxnmr

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizeForward, jaxnmr::ForwardImpl,
                              jaxnmr::ForwardSignature(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizeBackward, jaxnmr::BackwardImpl,
                              jaxnmr::BackwardSignature(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>()));

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizeForward(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizeBackward(XLA_FFI_CallFrame*);
