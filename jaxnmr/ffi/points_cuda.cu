// jaxnmr CUDA handlers of the point rasterizer: grids over the work items of points.h (docs/points.md, "Cost"),
// with no host synchronisation. This file holds only launches and the workspace's layout; grid_cpu.cc runs the
// same work items serially on the CPU, so what every thread computes is tested on machines without a GPU too.
// Arguments are decoded and checked by points_args.h, shared with the CPU handlers.
//
// Forward: per-point setups and box sizes, CUB's exclusive scan of the sizes (the work list, read on the device),
// then K rounds, each an atomic minimum of packed (z, index) keys over the covered (point, pixel) items above the
// previous round's key, and a per-pixel resolve of that slot. Device workspace: the setups, counts, offsets, the
// keys of two rounds (the previous and the current, [B, S, S] each) and the scan's storage.
// Backward: one thread per (pixel, slot), adding the slot's terms to its point atomically.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>

#include "cuda_util.cuh"
#include "points.h"
#include "points_args.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Forward.

__global__ void SetupPointsKernel(PointsForwardArgs a, PointSetup* setups, Count* counts) {
  JAXNMR_GRID_LOOP(i, a.B * a.P) setup_points_item(a, i, setups, counts);
}

__global__ void PointsRoundKernel(PointsForwardArgs a, const PointSetup* setups, const Count* offsets,
                                  const Count* prev, Count* cur) {
  const Count total = offsets[a.B * a.P];
  for (Count i = blockIdx.x * (Count)blockDim.x + threadIdx.x; i < total; i += (Count)gridDim.x * blockDim.x) {
    points_round_item<CudaAtomics>(a, setups, offsets, i, prev, cur);
  }
}

__global__ void PointsResolveKernel(PointsForwardArgs a, const Count* keys, int k) {
  JAXNMR_GRID_LOOP(p, a.B * a.S * static_cast<int64_t>(a.S)) points_resolve_item(a, keys, k, p);
}

ffi::Error PointsForwardCuda(cudaStream_t stream, DeviceMemory memory, ffi::Buffer<ffi::F32> points,
                             ffi::Buffer<ffi::F32> radius, int32_t image_size, int32_t points_per_pixel, float near,
                             float far, ffi::ResultBuffer<ffi::S32> index, ffi::ResultBuffer<ffi::F32> depth,
                             ffi::ResultBuffer<ffi::F32> dist2) {
  PointsForwardArgs a;
  if (auto e = PreparePointsForward(points, radius, image_size, points_per_pixel, near, far, index, depth, dist2,
                                    &a);
      e.failure()) {
    return e;
  }
  if (a.B == 0) return ffi::Error::Success();
  const int64_t n = a.B * a.P, pixels = a.B * a.S * static_cast<int64_t>(a.S);
  size_t scan_bytes = 0;
  if (auto e = ExclusiveScan(nullptr, &scan_bytes, nullptr, nullptr, n, stream, "batch x points"); e.failure()) {
    return e;
  }
  Workspace w;
  const size_t setups_at = w.Add<PointSetup>(n), counts_at = w.Add<Count>(n + 1), offsets_at = w.Add<Count>(n + 1);
  const size_t prev_at = w.Add<Count>(pixels), cur_at = w.Add<Count>(pixels), scan_at = w.AddBytes(scan_bytes);
  const std::string what = "point setups and work lists of " + std::to_string(n) + " points, the slot keys of " +
                           std::to_string(pixels) + " pixels";
  if (auto e = w.Allocate(memory, what.c_str()); e.failure()) return e;
  PointSetup* setups = w.At<PointSetup>(setups_at);
  Count *counts = w.At<Count>(counts_at), *offsets = w.At<Count>(offsets_at);
  Count *prev = w.At<Count>(prev_at), *cur = w.At<Count>(cur_at);

  if (auto e = CudaError(cudaMemsetAsync(counts + n, 0, sizeof(Count), stream), "clearing the work counts");
      e.failure()) {
    return e;
  }
  SetupPointsKernel<<<Blocks(n), kThreads, 0, stream>>>(a, setups, counts);
  if (auto e = LaunchError("SetupPoints"); e.failure()) return e;
  if (auto e = ExclusiveScan(w.At<void>(scan_at), &scan_bytes, counts, offsets, n, stream, "batch x points");
      e.failure()) {
    return e;
  }
  for (int k = 0; k < a.K; ++k) {
    // kEmptyKey is all bits set: every byte 0xff.
    if (auto e = CudaError(cudaMemsetAsync(cur, 0xff, static_cast<size_t>(pixels) * sizeof(Count), stream),
                           "clearing the slot keys");
        e.failure()) {
      return e;
    }
    PointsRoundKernel<<<static_cast<int>(kMaxBlocks / 8), kThreads, 0, stream>>>(a, setups, offsets,
                                                                                  k > 0 ? prev : nullptr, cur);
    if (auto e = LaunchError("PointsRound"); e.failure()) return e;
    PointsResolveKernel<<<Blocks(pixels), kThreads, 0, stream>>>(a, cur, k);
    if (auto e = LaunchError("PointsResolve"); e.failure()) return e;
    std::swap(prev, cur);
  }
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------------------
// Backward.

__global__ void PointsBackwardKernel(PointsBackwardArgs a) {
  JAXNMR_GRID_LOOP(i, a.B * a.S * static_cast<int64_t>(a.S) * a.K) points_backward_item<CudaAtomics>(a, i);
}

ffi::Error PointsBackwardCuda(cudaStream_t stream, DeviceMemory memory, ffi::Buffer<ffi::F32> points,
                              ffi::Buffer<ffi::S32> index, ffi::Buffer<ffi::F32> g_depth,
                              ffi::Buffer<ffi::F32> g_dist2, int32_t image_size, int32_t points_per_pixel,
                              int32_t has_g_depth, int32_t has_g_dist2, ffi::ResultBuffer<ffi::F32> g_points) {
  PointsBackwardArgs a;
  if (auto e = PreparePointsBackward(points, index, g_depth, g_dist2, image_size, points_per_pixel, has_g_depth,
                                     has_g_dist2, g_points, &a);
      e.failure()) {
    return e;
  }
  if (a.B == 0 || a.P == 0) return ffi::Error::Success();
  if (auto e = CudaError(cudaMemsetAsync(a.g_points, 0, static_cast<size_t>(a.B * a.P * 3) * sizeof(float), stream),
                         "clearing the point gradients");
      e.failure()) {
    return e;
  }
  const int64_t slots = a.B * a.S * static_cast<int64_t>(a.S) * a.K;
  PointsBackwardKernel<<<Blocks(slots), kThreads, 0, stream>>>(a);
  return LaunchError("PointsBackward");
}

}  // namespace
}  // namespace jaxnmr

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizePointsForwardCuda, jaxnmr::PointsForwardCuda,
                              jaxnmr::PointsForwardSignature(
                                  ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>().Ctx<jaxnmr::DeviceMemory>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizePointsBackwardCuda, jaxnmr::PointsBackwardCuda,
                              jaxnmr::PointsBackwardSignature(
                                  ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>().Ctx<jaxnmr::DeviceMemory>()));

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizePointsForwardCuda(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizePointsBackwardCuda(XLA_FFI_CallFrame*);
