// jaxnmr CUDA handlers: grids over the work items of grid.h (whose math is raster.h's). This file holds only
// launches and the workspace's layout (what every handler shares is cuda_util.cuh's); grid_cpu.cc runs the same
// work items serially on the CPU, so what every thread computes is tested on machines without a GPU too.
// Arguments are decoded and checked by args.h, shared with the CPU handlers.
//
// Device workspace: face setups, work counts and offsets, the z-buffer's keys, the edge sweeps' visible faces,
// active pixels, spans, blocks and transposed maps, CUB's scan storage (cuda_util.cuh, Workspace).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "args.h"
#include "cuda_util.cuh"
#include "grid.h"
#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Forward.

__global__ void SetupFacesKernel(ForwardArgs a, FaceSetup* setups, Count* counts) {
  JAXNMR_GRID_LOOP(i, a.B * a.F) setup_faces_item(a, i, setups, counts);
}

__global__ void ClearKeysKernel(int64_t n, Count* keys) {
  JAXNMR_GRID_LOOP(i, n) keys[i] = kEmptyKey;
}

__global__ void RasterKernel(ForwardArgs a, const FaceSetup* setups, const Count* offsets, Count* keys) {
  const Count total = offsets[a.B * a.F];
  for (Count i = blockIdx.x * (Count)blockDim.x + threadIdx.x; i < total; i += (Count)gridDim.x * blockDim.x) {
    raster_item<CudaAtomics>(a, setups, offsets, i, keys);
  }
}

__global__ void ResolveKernel(ForwardArgs a, const FaceSetup* setups, const Count* keys) {
  JAXNMR_GRID_LOOP(p, a.B * a.S * static_cast<int64_t>(a.S)) resolve_item(a, setups, keys, p);
}

ffi::Error ForwardCuda(cudaStream_t stream, DeviceMemory memory, ffi::Buffer<ffi::F32> faces,
                       ffi::Buffer<ffi::F32> textures, ffi::Buffer<ffi::F32> background, int32_t image_size,
                       float near, float far, float eps, int32_t with_rgb, int32_t with_maps,
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
  size_t scan_bytes = 0;
  if (auto e = ExclusiveScan(nullptr, &scan_bytes, nullptr, nullptr, n, stream, "batch x faces"); e.failure()) {
    return e;
  }
  Workspace w;
  const size_t setups_at = w.Add<FaceSetup>(n), counts_at = w.Add<Count>(n + 1), offsets_at = w.Add<Count>(n + 1);
  const size_t keys_at = w.Add<Count>(pixels), scan_at = w.AddBytes(scan_bytes);
  const std::string what = "face setups and work lists of " + std::to_string(n) + " faces, the z-buffer of " +
                           std::to_string(pixels) + " pixels";
  if (auto e = w.Allocate(memory, what.c_str()); e.failure()) return e;
  FaceSetup* setups = w.At<FaceSetup>(setups_at);
  Count *counts = w.At<Count>(counts_at), *offsets = w.At<Count>(offsets_at), *keys = w.At<Count>(keys_at);

  if (auto e = CudaError(cudaMemsetAsync(counts + n, 0, sizeof(Count), stream), "clearing the work counts");
      e.failure()) {
    return e;
  }
  SetupFacesKernel<<<Blocks(n), kThreads, 0, stream>>>(a, setups, counts);
  if (auto e = LaunchError("SetupFaces"); e.failure()) return e;
  if (auto e = ExclusiveScan(w.At<void>(scan_at), &scan_bytes, counts, offsets, n, stream, "batch x faces");
      e.failure()) {
    return e;
  }
  ClearKeysKernel<<<Blocks(pixels), kThreads, 0, stream>>>(pixels, keys);
  if (auto e = LaunchError("ClearKeys"); e.failure()) return e;
  RasterKernel<<<static_cast<int>(kMaxBlocks / 8), kThreads, 0, stream>>>(a, setups, offsets, keys);
  if (auto e = LaunchError("Raster"); e.failure()) return e;
  ResolveKernel<<<Blocks(pixels), kThreads, 0, stream>>>(a, setups, keys);
  return LaunchError("Resolve");
}

// ---------------------------------------------------------------------------------------------------------
// Backward.

__global__ void MarkPixelsKernel(BackwardArgs a, SweepBuffers buf) {
  JAXNMR_GRID_LOOP(p, a.B * a.S * static_cast<int64_t>(a.S)) mark_pixel_item(a, buf, p);
}

__global__ void LineBoundsKernel(BackwardArgs a, SweepBuffers buf) {
  JAXNMR_GRID_LOOP(i, a.B * 2 * static_cast<int64_t>(a.S)) line_bounds_item(a, buf, i);
}

__global__ void CountScanlinesKernel(BackwardArgs a, const uint8_t* visible, Count* counts) {
  JAXNMR_GRID_LOOP(i, a.B * a.F * 6) count_scanlines_item(a, visible, i, counts);
}

// kSweepLanes consecutive threads (a group, within one warp) per scanline: each computes its lane's part,
// the group adds them by a butterfly of shuffles (sum_lanes' order), and its first lane adds the sums into
// g_faces. All lanes of a group take the same scanlines, so they reach the shuffles together.
__global__ void SweepKernel(BackwardArgs a, SweepBuffers buf, const Count* offsets) {
  static_assert(32 % kSweepLanes == 0, "groups do not straddle warps");
  const Count total = offsets[a.B * a.F * 6];
  const int lane = static_cast<int>(threadIdx.x % kSweepLanes);
  const unsigned group = ((1u << kSweepLanes) - 1u) << (threadIdx.x % 32 / kSweepLanes * kSweepLanes);
  const Count stride = static_cast<Count>(gridDim.x) * blockDim.x / kSweepLanes;
  for (Count i = (blockIdx.x * (Count)blockDim.x + threadIdx.x) / kSweepLanes; i < total; i += stride) {
    float ga, gc;
    int64_t ia, ic;
    sweep_lane_item(a, buf, offsets, i, lane, kSweepLanes, &ga, &gc, &ia, &ic);
    for (int offset = kSweepLanes / 2; offset > 0; offset /= 2) {
      ga += __shfl_xor_sync(group, ga, offset, kSweepLanes);
      gc += __shfl_xor_sync(group, gc, offset, kSweepLanes);
    }
    if (lane == 0) {
      if (ga != 0.0f) atomicAdd(a.g_faces + ia, ga);
      if (gc != 0.0f) atomicAdd(a.g_faces + ic, gc);
    }
  }
}

__global__ void PixelGradientsKernel(BackwardArgs a, bool with_depth) {
  JAXNMR_GRID_LOOP(p, a.B * a.S * static_cast<int64_t>(a.S)) pixel_gradients_item<CudaAtomics>(a, with_depth, p);
}

ffi::Error BackwardCuda(cudaStream_t stream, DeviceMemory memory, ffi::Buffer<ffi::F32> faces,
                        ffi::Buffer<ffi::F32> textures, ffi::Buffer<ffi::S32> face_index,
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
  if (auto e = CudaError(cudaMemsetAsync(a.g_faces, 0, static_cast<size_t>(a.B * a.F * 9) * sizeof(float), stream),
                         "clearing the face gradients");
      e.failure()) {
    return e;
  }
  if (a.texture_grad) {
    const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
    if (auto e = CudaError(cudaMemsetAsync(a.g_textures, 0, static_cast<size_t>(a.B * a.F * cube) * sizeof(float),
                                           stream),
                           "clearing the texture gradients");
        e.failure()) {
      return e;
    }
  }
  if (a.edges && a.F > 0) {
    const int64_t n = a.B * a.F * 6, pixels = a.B * a.S * static_cast<int64_t>(a.S);
    const int64_t lines = a.B * 2 * static_cast<int64_t>(a.S);
    const bool transpose = sweeps_transpose(a);
    size_t scan_bytes = 0;
    if (auto e = ExclusiveScan(nullptr, &scan_bytes, nullptr, nullptr, n, stream, "batch x faces x 6");
        e.failure()) {
      return e;
    }
    Workspace w;
    const size_t counts_at = w.Add<Count>(n + 1), offsets_at = w.Add<Count>(n + 1), scan_at = w.AddBytes(scan_bytes);
    const size_t visible_at = w.Add<uint8_t>(a.B * a.F), active_at = w.Add<uint8_t>(pixels);
    const size_t span_at = w.Add<int32_t>(a.B * 4 * static_cast<int64_t>(a.S));
    const size_t blocks_at = w.Add<uint8_t>(lines * blocks_per_line(a.S));
    const size_t t_fi_at = w.Add<int32_t>(transpose ? pixels : 0);
    const size_t t_alpha_at = w.Add<float>(transpose && a.g_alpha ? pixels : 0);
    const size_t t_rgb_at = w.Add<float>(transpose && a.g_rgb ? 3 * pixels : 0);
    const size_t t_g_rgb_at = w.Add<float>(transpose && a.g_rgb ? 3 * pixels : 0);
    const std::string what = "work lists of " + std::to_string(n) + " edge sweeps, the sweeps' maps of " +
                             std::to_string(pixels) + " pixels" + (transpose ? " (with transposed copies)" : "");
    if (auto e = w.Allocate(memory, what.c_str()); e.failure()) return e;
    Count *counts = w.At<Count>(counts_at), *offsets = w.At<Count>(offsets_at);
    SweepBuffers buf{w.At<uint8_t>(visible_at), w.At<uint8_t>(active_at), w.At<int32_t>(span_at),
                     w.At<uint8_t>(blocks_at), transpose ? w.At<int32_t>(t_fi_at) : nullptr,
                     transpose && a.g_alpha ? w.At<float>(t_alpha_at) : nullptr,
                     transpose && a.g_rgb ? w.At<float>(t_rgb_at) : nullptr,
                     transpose && a.g_rgb ? w.At<float>(t_g_rgb_at) : nullptr};
    if (auto e = CudaError(cudaMemsetAsync(counts + n, 0, sizeof(Count), stream), "clearing the work counts");
        e.failure()) {
      return e;
    }
    if (auto e = CudaError(cudaMemsetAsync(buf.visible, 0, static_cast<size_t>(a.B * a.F), stream),
                           "clearing the visible faces");
        e.failure()) {
      return e;
    }
    MarkPixelsKernel<<<Blocks(pixels), kThreads, 0, stream>>>(a, buf);
    if (auto e = LaunchError("MarkPixels"); e.failure()) return e;
    LineBoundsKernel<<<Blocks(lines), kThreads, 0, stream>>>(a, buf);
    if (auto e = LaunchError("LineBounds"); e.failure()) return e;
    CountScanlinesKernel<<<Blocks(n), kThreads, 0, stream>>>(a, buf.visible, counts);
    if (auto e = LaunchError("CountScanlines"); e.failure()) return e;
    if (auto e = ExclusiveScan(w.At<void>(scan_at), &scan_bytes, counts, offsets, n, stream, "batch x faces x 6");
        e.failure()) {
      return e;
    }
    SweepKernel<<<static_cast<int>(kMaxBlocks / 8), kThreads, 0, stream>>>(a, buf, offsets);
    if (auto e = LaunchError("Sweep"); e.failure()) return e;
  }
  if ((a.texture_grad || a.depth_grad) && a.F > 0) {
    const int64_t pixels = a.B * a.S * static_cast<int64_t>(a.S);
    PixelGradientsKernel<<<Blocks(pixels), kThreads, 0, stream>>>(a, a.depth_grad);
    if (auto e = LaunchError("PixelGradients"); e.failure()) return e;
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxnmr

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxnmrRasterizeForwardCuda, jaxnmr::ForwardCuda,
    jaxnmr::ForwardSignature(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>().Ctx<jaxnmr::DeviceMemory>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JaxnmrRasterizeBackwardCuda, jaxnmr::BackwardCuda,
    jaxnmr::BackwardSignature(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>().Ctx<jaxnmr::DeviceMemory>()));

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizeForwardCuda(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizeBackwardCuda(XLA_FFI_CallFrame*);
