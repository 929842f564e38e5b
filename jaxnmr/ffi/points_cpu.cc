// jaxnmr CPU handlers of the point rasterizer: loops (threaded on XLA's intra-op pool) over the math in points.h.
// Targets and buffers: points_args.h.
//
// Forward (docs/points.md, "Fragments" and "Cost"): each point's setup is computed once, by chunks of points in
// parallel, and the drawn points are binned by the bands of rows their boxes touch. Then each (batch element,
// band) work item visits its points' boxes within its rows, roughly front to back, and inserts every covered pixel
// into that pixel's K slots, kept sorted by the packed (z, index) key in a scratch the size of the band (in
// cache), and finally writes the band's slots out. The key is a total order, so the slots do not depend on the
// order of the points; the work is proportional to the boxes' pixels plus the output.
//
// Backward (docs/points.md, "Gradient"): every point's terms are added in the order of its pixels and slots, so
// the result is the same on every run and machine, however the work is split. With a batch element for every
// thread, each element is summed on one thread. Else each (batch element, band of rows) work item computes the
// terms of its filled slots in that order and appends them to lists by range of point indices; then each
// (batch element, range of points) work item adds its points' terms, band by band.
#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>  // before raster.h, which includes it inside its namespace where it is not yet included
#endif

#include "args.h"
#include "parallel.h"
#include "points.h"
#include "points_args.h"
#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {
namespace {

constexpr int64_t kPointsPerChunk = 1 << 12;  // points set up and binned per work item of the forward
constexpr int64_t kBandBytes = 512 << 10;     // a forward band's slot scratch (keys, dist2, counts), at most
constexpr int kMaxBandRowsLog2 = 4;
constexpr int kGradientRows = 16;             // rows per work item of the backward's first phase
constexpr int64_t kPointsPerRange = 1 << 12;  // points per work item of the backward's second phase, at least
constexpr int64_t kMaxLists = 1 << 14;        // the backward's term lists per batch element, at most

constexpr int kLanes = 8;  // columns tested at once by the forward's row loop (one AVX register of floats)

// The pixel centres of columns (and rows) 0..S-1, pixel_center computed once per call, then kLanes zeros (so
// that the forward's row loop may read a whole register past column S-1; those lanes are masked off).
std::vector<float> PixelCenters(int S) {
  std::vector<float> centers(static_cast<size_t>(S) + kLanes, 0.0f);
  for (int i = 0; i < S; ++i) centers[i] = pixel_center(i, S);
  return centers;
}

// ---------------------------------------------------------------------------------------------------------
// Forward.

// The drawn points of each band, per batch element and chunk of points: bins[(b * chunks + chunk) * bands + band],
// each in ascending point order.
using KeptPointBins = KeptSets<KeptLists<PointSetup>, int64_t{128} << 20>;

// Rows per band, as a power of two (a band's rows are then a shift away): the most that keep the band's slot
// scratch within kBandBytes (so that it stays in cache), 1 to 16.
int BandRowsLog2(int S, int K) {
  const int64_t per_row = static_cast<int64_t>(S) * (K * static_cast<int64_t>(sizeof(Count) + sizeof(float)) + 1);
  int log2 = 0;
  while (log2 < kMaxBandRowsLog2 && (per_row << (log2 + 1)) <= kBandBytes) ++log2;
  return log2;
}

// A band's slots: per pixel of its rows, K keys and dist2 (insert_slot's order) and the number filled.
struct BandSlots {
  Count* keys;
  float* d2s;
  uint8_t* filled;
};

// Inserts point s into the slots of the pixels of rows [r_begin, r_end) it covers; pixel (r, c) is number
// (r - r_begin) * S + c of the band. Rows that cannot hold a covered pixel (row_may_cover) are skipped whole.
// The setup and the band's pointers are taken by value: as locals, no store into the slots can alias them, so
// the compiler keeps them (and dy * dy) in registers across the row.
void DrawPoint(const PointSetup s, const float* centers, int S, int K, int r_begin, int r_end,
               const BandSlots band) {
  const int r0 = std::max<int>(s.r0, r_begin), r1 = std::min<int>(s.r1, r_end - 1);
  for (int r = r0; r <= r1; ++r) {
    const float cy = centers[r];
    if (!row_may_cover(s, cy)) continue;
    const int64_t row = static_cast<int64_t>(r - r_begin) * S;
#if defined(__AVX__)
    // kLanes columns at a time, with point_covers's float operations lane by lane (no FMA: the same d2 bits).
    const __m256 x = _mm256_set1_ps(s.x), r2 = _mm256_set1_ps(s.r2);
    const float dy = cy - s.y;
    const __m256 dy2 = _mm256_set1_ps(dy * dy);
    for (int c = s.c0; c <= s.c1; c += kLanes) {
      const __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(centers + c), x);
      const __m256 d2 = _mm256_add_ps(dy2, _mm256_mul_ps(dx, dx));
      unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(d2, r2, _CMP_LT_OQ)));
      if (s.c1 - c + 1 < kLanes) mask &= (1u << (s.c1 - c + 1)) - 1u;
      if (mask == 0) continue;
      do {  // (a covered lane's d2 again as a scalar, the same operations: cheaper than through memory)
        const int lane = __builtin_ctz(mask);
        mask &= mask - 1;
        const int64_t pixel = row + c + lane;
        const float dx = centers[c + lane] - s.x;
        insert_slot(band.keys + pixel * K, band.d2s + pixel * K, band.filled + pixel, K, s.key, dy * dy + dx * dx);
      } while (mask != 0);
    }
#else
    for (int c = s.c0; c <= s.c1; ++c) {
      float d2;
      if (!point_covers(s, centers[c], cy, &d2)) continue;
      const int64_t pixel = row + c;
      insert_slot(band.keys + pixel * K, band.d2s + pixel * K, band.filled + pixel, K, s.key, d2);
    }
#endif
  }
}

// The points of one band (its bins of every chunk, `bands` bins apart), roughly front to back: a counting sort by
// the top bits of their keys (which order like z), into kDepthBuckets buckets spanning the band's keys. Any order
// gives the same slots (insert_slot); near to far, most insertions append to a pixel's slots or, once they are
// full, are dropped at the first comparison, instead of moving slots. The span is valid until the next call on
// this thread.
struct PointSpan {
  const PointSetup* first;
  const PointSetup* last;
  const PointSetup* begin() const { return first; }
  const PointSetup* end() const { return last; }
};

PointSpan FrontToBack(const std::vector<PointSetup>* bins, int64_t chunks, int bands) {
  constexpr int kDepthBuckets = 256;
  auto depth_bits = [](const PointSetup& s) { return static_cast<uint32_t>(s.key >> 32); };
  uint32_t lo = UINT32_MAX, hi = 0;
  int64_t n = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (const PointSetup& s : bins[chunk * bands]) {
      lo = std::min(lo, depth_bits(s));
      hi = std::max(hi, depth_bits(s));
    }
    n += static_cast<int64_t>(bins[chunk * bands].size());
  }
  thread_local std::vector<PointSetup> sorted_kept;
  if (static_cast<int64_t>(sorted_kept.size()) < n) sorted_kept.resize(static_cast<size_t>(n));
  PointSetup* sorted = sorted_kept.data();
  int shift = 0;
  while (n > 0 && ((hi - lo) >> shift) >= static_cast<uint32_t>(kDepthBuckets)) ++shift;
  int64_t start[kDepthBuckets + 1] = {};
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (const PointSetup& s : bins[chunk * bands]) ++start[((depth_bits(s) - lo) >> shift) + 1];
  }
  for (int k = 0; k < kDepthBuckets; ++k) start[k + 1] += start[k];
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (const PointSetup& s : bins[chunk * bands]) sorted[start[(depth_bits(s) - lo) >> shift]++] = s;
  }
  return PointSpan{sorted, sorted + n};
}

// The slots of rows [r_begin, r_end) of batch element b; `bins` points at this band's bin of the element's first
// chunk, the next chunk's `bands` bins further.
void ForwardBand(const PointsForwardArgs& a, const float* centers, const std::vector<PointSetup>* bins,
                 int64_t chunks, int bands, int64_t b, int r_begin, int r_end) {
  const int S = a.S, K = a.K;
  const int64_t pixels = static_cast<int64_t>(r_end - r_begin) * S;
  thread_local std::vector<Count> keys_kept;
  thread_local std::vector<float> d2s_kept;
  thread_local std::vector<uint8_t> filled_kept;
  auto grow = [](auto* v, int64_t n) {  // (kept from one band to the next, only ever grown)
    if (static_cast<int64_t>(v->size()) < n) v->resize(static_cast<size_t>(n));
  };
  grow(&keys_kept, pixels * K);
  grow(&d2s_kept, pixels * K);
  grow(&filled_kept, pixels);
  // (plain pointers: no thread-local lookup per pixel)
  const BandSlots band{keys_kept.data(), d2s_kept.data(), filled_kept.data()};
  std::fill(band.filled, band.filled + pixels, uint8_t{0});
  for (const PointSetup& s : FrontToBack(bins, chunks, bands)) DrawPoint(s, centers, S, K, r_begin, r_end, band);
  const int64_t base = (b * S + r_begin) * static_cast<int64_t>(S) * K;
  int32_t* index = a.index + base;
  float* depth = a.depth + base;
  float* dist2 = a.dist2 + base;
  // The filled slots from their keys (write_slot without its test for an empty key: kEmptyKey is never
  // inserted), then the empty tail with write_slot's empty values.
  const float far = a.far;
  for (int64_t pixel = 0; pixel < pixels; ++pixel) {
    const int64_t first = pixel * K, n = band.filled[pixel];
    for (int64_t i = first; i < first + n; ++i) {
      index[i] = key_point(band.keys[i]);
      depth[i] = key_depth(band.keys[i]);
      dist2[i] = band.d2s[i];
    }
    for (int64_t i = first + n; i < first + K; ++i) index[i] = -1;
    for (int64_t i = first + n; i < first + K; ++i) depth[i] = far;
    for (int64_t i = first + n; i < first + K; ++i) dist2[i] = -1.0f;
  }
}

ffi::Error PointsForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> points, ffi::Buffer<ffi::F32> radius,
                             int32_t image_size, int32_t points_per_pixel, float near, float far,
                             ffi::ResultBuffer<ffi::S32> index, ffi::ResultBuffer<ffi::F32> depth,
                             ffi::ResultBuffer<ffi::F32> dist2) {
  PointsForwardArgs a;
  if (auto e = PreparePointsForward(points, radius, image_size, points_per_pixel, near, far, index, depth, dist2,
                                    &a);
      e.failure()) {
    return e;
  }
  const int64_t B = a.B, P = a.P, S = a.S;
  if (B == 0) return ffi::Error::Success();
  const int64_t slots = B * S * S * a.K;
  AdviseHugePages(a.index, slots * 4);
  AdviseHugePages(a.depth, slots * 4);
  AdviseHugePages(a.dist2, slots * 4);
  const int shift = BandRowsLog2(a.S, a.K), rows = 1 << shift;
  const int bands = static_cast<int>((S + rows - 1) >> shift);
  const std::vector<float> centers = PixelCenters(a.S);

  // Phase 1: set up and bin the points by band, one chunk of points of one batch element per work item.
  const int64_t chunks = std::max<int64_t>(1, (P + kPointsPerChunk - 1) / kPointsPerChunk);
  std::vector<KeptLists<PointSetup>> kept = KeptPointBins::Get().Take(1);
  std::vector<std::vector<PointSetup>>& bins = kept[0].Reset(B * chunks * bands);
  std::vector<int64_t> work(static_cast<size_t>(B * chunks), 0);  // box pixels of each item's points
  ParallelFor(pool, B * chunks, B * P, [&](int64_t item) {
    const int64_t b = item / chunks, chunk = item % chunks;
    std::vector<PointSetup>* bin = bins.data() + item * bands;
    int64_t box_work = 0;  // (a local: work[item] shares a cache line with other threads' items)
    for (int64_t p = chunk * kPointsPerChunk; p < std::min(P, (chunk + 1) * kPointsPerChunk); ++p) {
      const PointSetup s = setup_point(point_of(a, b, p), radius_of(a, b, p), static_cast<int32_t>(p), a.S,
                                       a.near, a.far);
      if (!point_drawn(s)) continue;
      box_work += static_cast<int64_t>(box_pixels(s));
      for (int band = s.r0 >> shift; band <= s.r1 >> shift; ++band) bin[band].push_back(s);
    }
    work[item] = box_work;
  });

  // Phase 2: the slots, one band of one batch element per work item.
  int64_t total = slots;
  for (int64_t w : work) total += w;
  ParallelFor(pool, B * bands, total, [&](int64_t item) {
    const int64_t b = item / bands;
    const int band = static_cast<int>(item % bands);
    const int r_begin = band * rows, r_end = std::min<int>(r_begin + rows, a.S);
    ForwardBand(a, centers.data(), bins.data() + b * chunks * bands + band, chunks, bands, b, r_begin, r_end);
  });
  KeptPointBins::Get().Give(std::move(kept));
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------------------
// Backward.

// One slot's gradient terms, for point p.
struct SlotTerm {
  int32_t p;
  float g[3];
};

// The terms of each (batch element, band) by range of points: lists[((b * bands) + band) * ranges + range], each
// in pixel and slot order.
using KeptTermLists = KeptSets<KeptLists<SlotTerm>, int64_t{256} << 20>;

// The terms of the filled slots of rows [r_begin, r_end) of batch element b, in pixel and slot order:
// add(p, g) for each. A zero term changes no sum (they start at +0), so it is not passed on.
template <class Add>
void SlotTerms(const PointsBackwardArgs& a, const float* centers, int64_t b, int r_begin, int r_end, Add add) {
  const int S = a.S, K = a.K;
  const int64_t SSK = static_cast<int64_t>(S) * S * K;
  const int32_t* index_b = a.index + a.index_map(b) * SSK;
  const float* g_depth = a.g_depth ? a.g_depth + a.g_depth_map(b) * SSK : nullptr;
  const float* g_dist2 = a.g_dist2 ? a.g_dist2 + a.g_dist2_map(b) * SSK : nullptr;
  const float* points_b = a.points + a.points_map(b) * a.P * 3;
  for (int r = r_begin; r < r_end; ++r) {
    for (int c = 0; c < S; ++c) {
      const int64_t local = static_cast<int64_t>(r) * S + c;
      for (int k = 0; k < K; ++k) {
        const int32_t p = slot_point(a, index_b, local, k);
        if (p < 0) continue;
        const int64_t slot = local * K + k;
        float g[3];
        slot_gradient(points_b + 3 * static_cast<int64_t>(p), centers[c], centers[r], g_depth ? g_depth[slot] : 0.0f,
                      g_dist2 ? g_dist2[slot] : 0.0f, g);
        if (g[0] == 0.0f && g[1] == 0.0f && g[2] == 0.0f) continue;
        add(p, g);
      }
    }
  }
}

ffi::Error PointsBackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> points, ffi::Buffer<ffi::S32> index,
                              ffi::Buffer<ffi::F32> g_depth, ffi::Buffer<ffi::F32> g_dist2, int32_t image_size,
                              int32_t points_per_pixel, int32_t has_g_depth, int32_t has_g_dist2,
                              ffi::ResultBuffer<ffi::F32> g_points) {
  PointsBackwardArgs a;
  if (auto e = PreparePointsBackward(points, index, g_depth, g_dist2, image_size, points_per_pixel, has_g_depth,
                                     has_g_dist2, g_points, &a);
      e.failure()) {
    return e;
  }
  const int64_t B = a.B, P = a.P, S = a.S;
  if (B == 0 || P == 0) return ffi::Error::Success();
  AdviseHugePages(a.g_points, B * P * 12);
  const std::vector<float> centers = PixelCenters(a.S);
  const int64_t slots = B * S * S * a.K;

  // With a batch element for every thread, or too little work to share: each element on one thread, its terms
  // added as they come (pixel and slot order).
  if (B >= pool.num_threads() || slots < kParallelWork) {
    ParallelFor(pool, B, slots, [&](int64_t b) {
      float* g = a.g_points + b * P * 3;
      std::fill(g, g + P * 3, 0.0f);
      SlotTerms(a, centers.data(), b, 0, a.S, [g](int32_t p, const float* t) {
        for (int j = 0; j < 3; ++j) g[3 * static_cast<int64_t>(p) + j] += t[j];
      });
    });
    return ffi::Error::Success();
  }

  // Else in two phases, with the same sums in the same order. Ranges of at least kPointsPerRange points, at most
  // kMaxRanges of them per band.
  const int bands = static_cast<int>((S + kGradientRows - 1) / kGradientRows);
  const int64_t ranges = std::clamp<int64_t>((P + kPointsPerRange - 1) / kPointsPerRange, 1,
                                             std::max<int64_t>(1, kMaxLists / bands));
  const int64_t per_range = (P + ranges - 1) / ranges;
  std::vector<KeptLists<SlotTerm>> kept = KeptTermLists::Get().Take(1);
  std::vector<std::vector<SlotTerm>>& lists = kept[0].Reset(B * bands * ranges);
  // Phase 1: the terms, one band of one batch element per work item, into lists by range of points.
  ParallelFor(pool, B * bands, slots, [&](int64_t item) {
    const int r_begin = static_cast<int>(item % bands) * kGradientRows;
    std::vector<SlotTerm>* band_lists = lists.data() + item * ranges;
    SlotTerms(a, centers.data(), item / bands, r_begin, std::min<int>(r_begin + kGradientRows, a.S),
              [band_lists, per_range](int32_t p, const float* t) {
                band_lists[p / per_range].push_back(SlotTerm{p, {t[0], t[1], t[2]}});
              });
  });
  // Phase 2: the sums, one range of points of one batch element per work item, its bands in order.
  int64_t terms = B * P;
  for (const auto& list : lists) terms += static_cast<int64_t>(list.size());
  ParallelFor(pool, B * ranges, terms, [&](int64_t item) {
    const int64_t b = item / ranges, range = item % ranges;
    float* g = a.g_points + b * P * 3;
    std::fill(g + range * per_range * 3, g + std::min(P, (range + 1) * per_range) * 3, 0.0f);
    for (int band = 0; band < bands; ++band) {
      for (const SlotTerm& t : lists[(b * bands + band) * ranges + range]) {
        for (int j = 0; j < 3; ++j) g[3 * static_cast<int64_t>(t.p) + j] += t.g[j];
      }
    }
  });
  KeptTermLists::Get().Give(std::move(kept));
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxnmr

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizePointsForward, jaxnmr::PointsForwardImpl,
                              jaxnmr::PointsForwardSignature(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizePointsBackward, jaxnmr::PointsBackwardImpl,
                              jaxnmr::PointsBackwardSignature(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>()));

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizePointsForward(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizePointsBackward(XLA_FFI_CallFrame*);
