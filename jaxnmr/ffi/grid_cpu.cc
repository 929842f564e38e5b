// The CUDA back end's algorithm run serially on the CPU: every work item of grid.h, in order, with plain
// read-modify-writes for the GPU's atomics and a plain prefix sum for CUB's scan. It is what raster_cuda.cu's
// threads compute (the packed depth keys, the work lists, the sweeps' prologue of visible faces, spans, blocks
// and transposed copies, and each scanline's lanes with their sum in the GPU's order), so the tests compare it
// with the oracle and the CPU kernels on machines without a GPU. JaxnmrGridBackward lays out the images as the
// GPU does for the call; JaxnmrGridBackwardStrided as the GPU does past its transposition budget.
// JaxnmrGridPointsForward and JaxnmrGridPointsBackward do the same for the point rasterizer's work items
// (points.h): the per-point setups and box sizes, the scanned work list, the K rounds of atomic minima of packed
// (z, index) keys with each round's resolve, and the backward's per-slot atomic sums. It is not a fast path:
// jaxnmr never calls it outside the tests.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "args.h"
#include "grid.h"
#include "points.h"
#include "points_args.h"
#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {
namespace {

struct SerialAtomics {
  static void min(Count* p, Count v) {
    if (v < *p) *p = v;
  }
  static void add(float* p, float v) { *p += v; }
};

// Exclusive prefix sum of counts[0..n] into offsets (offsets[n] is the total), as CUB computes it.
void ExclusiveScan(const std::vector<Count>& counts, std::vector<Count>* offsets) {
  Count total = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    (*offsets)[k] = total;
    total += counts[k];
  }
}

ffi::Error ForwardGrid(ffi::Buffer<ffi::F32> faces, ffi::Buffer<ffi::F32> textures, ffi::Buffer<ffi::F32> background,
                       int32_t image_size, float near, float far, float eps, int32_t with_rgb, int32_t with_maps,
                       ffi::ResultBuffer<ffi::S32> face_index, ffi::ResultBuffer<ffi::F32> weights,
                       ffi::ResultBuffer<ffi::F32> depth, ffi::ResultBuffer<ffi::F32> rgb) {
  ForwardArgs a;
  if (auto e = PrepareForward(faces, textures, background, image_size, near, far, eps, with_rgb, with_maps,
                              face_index, weights, depth, rgb, &a);
      e.failure()) {
    return e;
  }
  if (a.B == 0) return ffi::Error::Success();
  const int64_t n = a.B * a.F, pixels = a.B * a.S * static_cast<int64_t>(a.S);
  std::vector<FaceSetup> setups(static_cast<size_t>(n));
  std::vector<Count> counts(static_cast<size_t>(n + 1), 0), offsets(static_cast<size_t>(n + 1), 0);
  std::vector<Count> keys(static_cast<size_t>(pixels), kEmptyKey);
  for (int64_t i = 0; i < n; ++i) setup_faces_item(a, i, setups.data(), counts.data());
  ExclusiveScan(counts, &offsets);
  for (Count i = 0; i < offsets[n]; ++i) {
    raster_item<SerialAtomics>(a, setups.data(), offsets.data(), i, keys.data());
  }
  for (int64_t p = 0; p < pixels; ++p) resolve_item(a, setups.data(), keys.data(), p);
  return ffi::Error::Success();
}

// How the serial run lays out the sweeps' images: as the GPU decides for the call (sweeps_transpose), or
// always strided (the GPU's choice past kTransposeBudgetBytes), so that the tests check both.
enum class Layout { kAsTheGpu, kStrided };

template <Layout kLayout>
ffi::Error BackwardGrid(ffi::Buffer<ffi::F32> faces, ffi::Buffer<ffi::F32> textures, ffi::Buffer<ffi::S32> face_index,
                        ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::F32> depth, ffi::Buffer<ffi::F32> rgb,
                        ffi::Buffer<ffi::F32> g_rgb, ffi::Buffer<ffi::F32> g_alpha, ffi::Buffer<ffi::F32> g_depth,
                        int32_t image_size, float eps, int32_t with_rgb, int32_t has_g_rgb, int32_t has_g_alpha,
                        int32_t has_g_depth, int32_t want_faces, int32_t want_textures,
                        ffi::ResultBuffer<ffi::F32> g_faces, ffi::ResultBuffer<ffi::F32> g_textures) {
  BackwardArgs a;
  if (auto e = PrepareBackward(faces, textures, face_index, weights, depth, rgb, g_rgb, g_alpha, g_depth,
                               image_size, eps, with_rgb, has_g_rgb, has_g_alpha, has_g_depth, want_faces,
                               want_textures, g_faces, g_textures, &a);
      e.failure()) {
    return e;
  }
  if (a.B == 0) return ffi::Error::Success();
  for (int64_t k = 0; k < a.B * a.F * 9; ++k) a.g_faces[k] = 0.0f;
  if (a.texture_grad) {
    const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
    for (int64_t k = 0; k < a.B * a.F * cube; ++k) a.g_textures[k] = 0.0f;
  }
  if (a.edges && a.F > 0) {
    // The prologue: visibility, active pixels, spans and blocks, transposed copies (the GPU's buffers).
    const int64_t SS = static_cast<int64_t>(a.S) * a.S, pixels = a.B * SS;
    const bool transpose = kLayout == Layout::kAsTheGpu && sweeps_transpose(a);
    std::vector<uint8_t> visible(static_cast<size_t>(a.B * a.F), 0), active(static_cast<size_t>(pixels));
    std::vector<int32_t> span(static_cast<size_t>(a.B * 4 * a.S)), t_face_index(transpose ? pixels : 0);
    std::vector<uint8_t> blocks(static_cast<size_t>(a.B * 2 * a.S * blocks_per_line(a.S)));
    std::vector<float> t_g_alpha(transpose && a.g_alpha ? pixels : 0);
    std::vector<float> t_rgb(transpose && a.g_rgb ? 3 * pixels : 0), t_g_rgb(t_rgb.size());
    SweepBuffers buf{visible.data(), active.data(), span.data(), blocks.data(),
                     transpose ? t_face_index.data() : nullptr, t_g_alpha.empty() ? nullptr : t_g_alpha.data(),
                     t_rgb.empty() ? nullptr : t_rgb.data(), t_g_rgb.empty() ? nullptr : t_g_rgb.data()};
    for (int64_t p = 0; p < pixels; ++p) mark_pixel_item(a, buf, p);
    for (int64_t i = 0; i < a.B * 2 * a.S; ++i) line_bounds_item(a, buf, i);
    // The work lists and the sweeps: each scanline's kSweepLanes lanes, then their sum, as one GPU group.
    const int64_t n = a.B * a.F * 6;
    std::vector<Count> counts(static_cast<size_t>(n + 1), 0), offsets(static_cast<size_t>(n + 1), 0);
    for (int64_t i = 0; i < n; ++i) count_scanlines_item(a, visible.data(), i, counts.data());
    ExclusiveScan(counts, &offsets);
    for (Count i = 0; i < offsets[n]; ++i) {
      float ga[kSweepLanes], gc[kSweepLanes];
      int64_t ia = 0, ic = 0;
      for (int lane = 0; lane < kSweepLanes; ++lane) {
        sweep_lane_item(a, buf, offsets.data(), i, lane, kSweepLanes, &ga[lane], &gc[lane], &ia, &ic);
      }
      const float sum_a = sum_lanes(ga, kSweepLanes), sum_c = sum_lanes(gc, kSweepLanes);
      if (sum_a != 0.0f) SerialAtomics::add(a.g_faces + ia, sum_a);
      if (sum_c != 0.0f) SerialAtomics::add(a.g_faces + ic, sum_c);
    }
  }
  if ((a.texture_grad || a.depth_grad) && a.F > 0) {
    const int64_t pixels = a.B * a.S * static_cast<int64_t>(a.S);
    for (int64_t p = 0; p < pixels; ++p) pixel_gradients_item<SerialAtomics>(a, a.depth_grad, p);
  }
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------------------
// Points (points.h, as points_cuda.cu launches them).

ffi::Error PointsForwardGrid(ffi::Buffer<ffi::F32> points, ffi::Buffer<ffi::F32> radius, int32_t image_size,
                             int32_t points_per_pixel, float near, float far, ffi::ResultBuffer<ffi::S32> index,
                             ffi::ResultBuffer<ffi::F32> depth, ffi::ResultBuffer<ffi::F32> dist2) {
  PointsForwardArgs a;
  if (auto e = PreparePointsForward(points, radius, image_size, points_per_pixel, near, far, index, depth, dist2,
                                    &a);
      e.failure()) {
    return e;
  }
  if (a.B == 0) return ffi::Error::Success();
  const int64_t n = a.B * a.P, pixels = a.B * a.S * static_cast<int64_t>(a.S);
  std::vector<PointSetup> setups(static_cast<size_t>(n));
  std::vector<Count> counts(static_cast<size_t>(n + 1), 0), offsets(static_cast<size_t>(n + 1), 0);
  for (int64_t i = 0; i < n; ++i) setup_points_item(a, i, setups.data(), counts.data());
  ExclusiveScan(counts, &offsets);
  std::vector<Count> prev(static_cast<size_t>(pixels)), cur(static_cast<size_t>(pixels));
  for (int k = 0; k < a.K; ++k) {
    std::fill(cur.begin(), cur.end(), kEmptyKey);
    for (Count i = 0; i < offsets[n]; ++i) {
      points_round_item<SerialAtomics>(a, setups.data(), offsets.data(), i, k > 0 ? prev.data() : nullptr,
                                       cur.data());
    }
    for (int64_t p = 0; p < pixels; ++p) points_resolve_item(a, cur.data(), k, p);
    std::swap(prev, cur);
  }
  return ffi::Error::Success();
}

ffi::Error PointsBackwardGrid(ffi::Buffer<ffi::F32> points, ffi::Buffer<ffi::S32> index,
                              ffi::Buffer<ffi::F32> g_depth, ffi::Buffer<ffi::F32> g_dist2, int32_t image_size,
                              int32_t points_per_pixel, int32_t has_g_depth, int32_t has_g_dist2,
                              ffi::ResultBuffer<ffi::F32> g_points) {
  PointsBackwardArgs a;
  if (auto e = PreparePointsBackward(points, index, g_depth, g_dist2, image_size, points_per_pixel, has_g_depth,
                                     has_g_dist2, g_points, &a);
      e.failure()) {
    return e;
  }
  std::fill(a.g_points, a.g_points + a.B * a.P * 3, 0.0f);
  const int64_t slots = a.B * a.S * static_cast<int64_t>(a.S) * a.K;
  for (int64_t i = 0; i < slots; ++i) points_backward_item<SerialAtomics>(a, i);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxnmr

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrGridForward, jaxnmr::ForwardGrid, jaxnmr::ForwardSignature(ffi::Ffi::Bind()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrGridBackward, jaxnmr::BackwardGrid<jaxnmr::Layout::kAsTheGpu>,
                              jaxnmr::BackwardSignature(ffi::Ffi::Bind()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrGridBackwardStrided, jaxnmr::BackwardGrid<jaxnmr::Layout::kStrided>,
                              jaxnmr::BackwardSignature(ffi::Ffi::Bind()));

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrGridForward(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrGridBackward(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrGridBackwardStrided(XLA_FFI_CallFrame*);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrGridPointsForward, jaxnmr::PointsForwardGrid,
                              jaxnmr::PointsForwardSignature(ffi::Ffi::Bind()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrGridPointsBackward, jaxnmr::PointsBackwardGrid,
                              jaxnmr::PointsBackwardSignature(ffi::Ffi::Bind()));

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrGridPointsForward(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrGridPointsBackward(XLA_FFI_CallFrame*);
