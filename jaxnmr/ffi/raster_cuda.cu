// jaxnmr CUDA handlers: grids over the math in raster.h. This file holds only launch structure, memory layout
// and atomics; what a pixel shows and what gradient a face gets is decided in raster.h, which the CPU handlers
// (and so CI) run too. Arguments are decoded and checked by args.h, shared with the CPU handlers.
//
// Forward (deterministic z-buffer, no locks):
//   1. one thread per face: setup_face, and the number of pixels in its range;
//   2. an exclusive scan of those counts, so that
//   3. one thread per (face, pixel of its range) runs the candidate test and does a 64-bit atomicMin of the
//      packed key (orderable depth bits, face index): the nearest depth wins, ties go to the lowest index,
//      exactly as the CPU's ordered strict z-test;
//   4. one thread per pixel resolves the key: face index, weights and depth (recomputed by the same
//      functions), texture sample, background.
// Backward: one thread per (face, edge, axis, scanline) (counted and scanned the same way) runs
// sweep_scanline and adds into g_faces atomically; one thread per pixel adds the depth and texture terms.
// Float atomics make the gradients' last bits depend on summation order; everything else is deterministic.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cub/cub.cuh>
#include <string>

#include "args.h"
#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride loops cover the rest
constexpr uint64_t kEmptyKey = ~0ull;

int Blocks(int64_t n) { return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks))); }

#define JAXNMR_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

ffi::Error LaunchError(const char* where) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return ffi::Error::Success();
  return ffi::Error::Internal(std::string("jaxnmr CUDA kernel ") + where + ": " + cudaGetErrorString(e));
}

// Scratch memory from XLA's allocator, aligned for any element type.
template <typename T>
T* Scratch(ffi::ScratchAllocator& scratch, int64_t count) {
  auto p = scratch.Allocate(static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T), 256);
  return p.has_value() ? static_cast<T*>(*p) : nullptr;
}

// In-place exclusive prefix sum of counts[0..n] (counts[n] must be 0): counts[k] becomes the first work item
// of entry k and counts[n] the total.
ffi::Error ExclusiveScan(ffi::ScratchAllocator& scratch, cudaStream_t stream, unsigned long long* counts,
                         unsigned long long* offsets, int64_t n) {
  if (n + 1 > INT32_MAX) return ffi::Error::InvalidArgument("jaxnmr CUDA: too many work entries for one call");
  size_t bytes = 0;
  cub::DeviceScan::ExclusiveSum(nullptr, bytes, counts, offsets, static_cast<int>(n + 1), stream);
  void* temp = Scratch<unsigned char>(scratch, static_cast<int64_t>(bytes));
  if (!temp) return ffi::Error::Internal("jaxnmr CUDA: out of scratch memory for the scan");
  cub::DeviceScan::ExclusiveSum(temp, bytes, counts, offsets, static_cast<int>(n + 1), stream);
  return LaunchError("scan");
}

// Index k of the entry that owns work item i: offsets[k] <= i < offsets[k + 1] (entries with no work are
// skipped because their range is empty).
__device__ int64_t OwnerOf(const unsigned long long* offsets, int64_t n, unsigned long long i) {
  int64_t lo = 0, hi = n;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (offsets[mid] <= i) lo = mid; else hi = mid;
  }
  return lo;
}

// ---------------------------------------------------------------------------------------------------------
// Forward.

// Packs (depth, face) so that unsigned order is depth order, then face order.
__device__ uint64_t DepthKey(float z, int32_t f) {
  uint32_t bits = __float_as_uint(z);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(bits) << 32) | static_cast<uint32_t>(f);
}

__global__ void SetupFacesKernel(ForwardArgs a, FaceSetup* setups, unsigned long long* counts) {
  JAXNMR_GRID_LOOP(i, a.B * a.F) {
    const int64_t b = i / a.F, f = i % a.F;
    const FaceSetup fs = setup_face(a.faces + (a.faces_map(b) * a.F + f) * 9, a.S);
    setups[i] = fs;
    counts[i] = fs.drawable ? static_cast<unsigned long long>(fs.r1 - fs.r0 + 1) * (fs.c1 - fs.c0 + 1) : 0ull;
  }
}

__global__ void ClearKeysKernel(int64_t n, uint64_t* keys) {
  JAXNMR_GRID_LOOP(i, n) keys[i] = kEmptyKey;
}

__global__ void RasterKernel(ForwardArgs a, const FaceSetup* setups, const unsigned long long* offsets,
                             uint64_t* keys) {
  const int64_t n = a.B * a.F;
  const unsigned long long total = offsets[n];
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < total;
       i += (unsigned long long)gridDim.x * blockDim.x) {
    const int64_t k = OwnerOf(offsets, n, i);
    const int64_t b = k / a.F, f = k % a.F;
    const FaceSetup& fs = setups[k];
    const int64_t local = static_cast<int64_t>(i - offsets[k]);
    const int width = fs.c1 - fs.c0 + 1;
    const int r = fs.r0 + static_cast<int>(local / width), c = fs.c0 + static_cast<int>(local % width);
    const float* face = a.faces + (a.faces_map(b) * a.F + f) * 9;
    float w[3], zp;
    if (pixel_candidate(face, fs.inv, c, r, a.S, a.near, a.far, w, &zp)) {
      atomicMin(reinterpret_cast<unsigned long long*>(keys) + (b * a.S + r) * a.S + c,
                static_cast<unsigned long long>(DepthKey(zp, static_cast<int32_t>(f))));
    }
  }
}

__global__ void ResolveKernel(ForwardArgs a, const FaceSetup* setups, const uint64_t* keys) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  JAXNMR_GRID_LOOP(p, a.B * SS) {
    const int64_t b = p / SS, local = p % SS;
    const int r = static_cast<int>(local / a.S), c = static_cast<int>(local % a.S);
    const uint64_t key = keys[p];
    float w[3] = {0.0f, 0.0f, 0.0f}, zp = a.far;
    int32_t f = -1;
    const float* face = nullptr;
    if (key != kEmptyKey) {
      f = static_cast<int32_t>(key & 0xffffffffu);
      face = a.faces + (a.faces_map(b) * a.F + f) * 9;
      pixel_candidate(face, setups[b * a.F + f].inv, c, r, a.S, a.near, a.far, w, &zp);
    }
    a.face_index[p] = f;
    if (a.with_maps) {
      a.depth[p] = zp;
      for (int k = 0; k < 3; ++k) a.weights[3 * p + k] = w[k];
    }
    if (!a.with_rgb) continue;
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
}

ffi::Error ForwardCuda(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::Buffer<ffi::F32> faces,
                       ffi::Buffer<ffi::F32> textures, ffi::Buffer<ffi::F32> background, int32_t image_size,
                       float near, float far, float eps, int32_t with_rgb, int32_t with_maps,
                       ffi::ResultBuffer<ffi::S32> face_index,
                       ffi::ResultBuffer<ffi::F32> weights, ffi::ResultBuffer<ffi::F32> depth,
                       ffi::ResultBuffer<ffi::F32> rgb) {
  ForwardArgs a;
  if (auto e = PrepareForward(faces, textures, background, image_size, near, far, eps, with_rgb, with_maps,
                              face_index, weights, depth, rgb, &a);
      e.failure()) {
    return e;
  }
  if (a.B == 0) return ffi::Error::Success();
  const int64_t n = a.B * a.F, pixels = a.B * a.S * static_cast<int64_t>(a.S);
  FaceSetup* setups = Scratch<FaceSetup>(scratch, n);
  unsigned long long* counts = Scratch<unsigned long long>(scratch, n + 1);
  unsigned long long* offsets = Scratch<unsigned long long>(scratch, n + 1);
  uint64_t* keys = Scratch<uint64_t>(scratch, pixels);
  if (!setups || !counts || !offsets || !keys) {
    return ffi::Error::Internal("jaxnmr CUDA forward: out of scratch memory (" + std::to_string(pixels * 8) +
                                " bytes of z-buffer)");
  }
  cudaMemsetAsync(counts + n, 0, sizeof(unsigned long long), stream);
  SetupFacesKernel<<<Blocks(n), kThreads, 0, stream>>>(a, setups, counts);
  if (auto e = LaunchError("setup"); e.failure()) return e;
  if (auto e = ExclusiveScan(scratch, stream, counts, offsets, n); e.failure()) return e;
  ClearKeysKernel<<<Blocks(pixels), kThreads, 0, stream>>>(pixels, keys);
  RasterKernel<<<static_cast<int>(kMaxBlocks / 8), kThreads, 0, stream>>>(a, setups, offsets, keys);
  if (auto e = LaunchError("raster"); e.failure()) return e;
  ResolveKernel<<<Blocks(pixels), kThreads, 0, stream>>>(a, setups, keys);
  return LaunchError("resolve");
}

// ---------------------------------------------------------------------------------------------------------
// Backward.

__global__ void CountScanlinesKernel(BackwardArgs a, unsigned long long* counts) {
  JAXNMR_GRID_LOOP(i, a.B * a.F * 6) {
    const int64_t k = i / 6, b = k / a.F, f = k % a.F;
    const int edge = static_cast<int>(i % 6) / 2, axis = static_cast<int>(i % 2);
    const float* face = a.faces + (a.faces_map(b) * a.F + f) * 9;
    unsigned long long count = 0;
    if (face_is_visible_kind(face)) {
      const EdgeSweep e = setup_sweep(face, a.S, edge, axis);
      if (e.s_end >= e.s_begin) count = static_cast<unsigned long long>(e.s_end - e.s_begin + 1);
    }
    counts[i] = count;
  }
}

__global__ void SweepKernel(BackwardArgs a, const unsigned long long* offsets) {
  const int64_t n = a.B * a.F * 6, SS = static_cast<int64_t>(a.S) * a.S;
  const unsigned long long total = offsets[n];
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < total;
       i += (unsigned long long)gridDim.x * blockDim.x) {
    const int64_t item = OwnerOf(offsets, n, i);
    const int64_t k = item / 6, b = k / a.F, f = k % a.F;
    const int edge = static_cast<int>(item % 6) / 2, axis = static_cast<int>(item % 2);
    const float* face = a.faces + (a.faces_map(b) * a.F + f) * 9;
    const EdgeSweep e = setup_sweep(face, a.S, edge, axis);
    const int s = e.s_begin + static_cast<int>(i - offsets[item]);
    SweepImage image;  // both views read the row-major images, axis 0 with a stride of S
    for (int v = 0; v < 2; ++v) {
      image.face_index[v] = a.face_index + a.fi_map(b) * SS;
      image.rgb[v] = a.g_rgb ? a.rgb + a.rgb_map(b) * SS * 3 : nullptr;
      image.g_rgb[v] = a.g_rgb ? a.g_rgb + a.g_rgb_map(b) * SS * 3 : nullptr;
      image.g_alpha[v] = a.g_alpha ? a.g_alpha + a.g_alpha_map(b) * SS : nullptr;
    }
    image.line[0] = 1;
    image.step[0] = a.S;
    image.rgb_pixel[0] = image.rgb_pixel[1] = 3;  // interleaved rgb
    image.rgb_channel[0] = image.rgb_channel[1] = 1;
    image.line[1] = a.S;
    image.step[1] = 1;
    image.span = nullptr;  // outward scans run to the border (each is one thread's work)
    image.blocks = nullptr;
    image.blocks_per_line = 0;
    float G[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    sweep_scanline(e, s, image, static_cast<int32_t>(f), a.S, a.eps, G);
    float* out = a.g_faces + (b * a.F + f) * 9;
    const int ia = 3 * e.a + e.comp, ic = 3 * e.c + e.comp;
    if (G[ia] != 0.0f) atomicAdd(out + ia, G[ia]);
    if (G[ic] != 0.0f) atomicAdd(out + ic, G[ic]);
  }
}

__global__ void PixelGradientsKernel(BackwardArgs a, bool with_depth) {
  const int64_t SS = static_cast<int64_t>(a.S) * a.S;
  const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
  JAXNMR_GRID_LOOP(p, a.B * SS) {
    const int64_t b = p / SS, local = p % SS;
    const int32_t f = a.face_index[a.fi_map(b) * SS + local];
    if (f < 0 || f >= a.F) continue;
    const float* face = a.faces + (a.faces_map(b) * a.F + f) * 9;
    const float* w = a.weights + (a.weights_map(b) * SS + local) * 3;
    const float zp = a.depth[a.depth_map(b) * SS + local];
    if (with_depth) {
      const float g = a.g_depth[a.g_depth_map(b) * SS + local];
      if (g != 0.0f) {
        float inv[9], G[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
        face_inverse(face, a.S, inv);
        depth_gradient(face, inv, w, zp, g, a.S, G);
        float* out = a.g_faces + (b * a.F + f) * 9;
        for (int k = 0; k < 9; ++k) atomicAdd(out + k, G[k]);
      }
    }
    if (a.texture_grad) {
      const float* g = a.g_rgb + (a.g_rgb_map(b) * SS + local) * 3;
      int index[8];
      float weight[8];
      texture_corners(face, w, zp, a.T, a.eps, index, weight);
      float* out = a.g_textures + (b * a.F + f) * cube;
      for (int pn = 0; pn < 8; ++pn) {
        for (int k = 0; k < 3; ++k) atomicAdd(out + 3 * index[pn] + k, weight[pn] * g[k]);
      }
    }
  }
}

ffi::Error BackwardCuda(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::Buffer<ffi::F32> faces,
                        ffi::Buffer<ffi::F32> textures, ffi::Buffer<ffi::S32> face_index,
                        ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::F32> depth, ffi::Buffer<ffi::F32> rgb,
                        ffi::Buffer<ffi::F32> g_rgb, ffi::Buffer<ffi::F32> g_alpha, ffi::Buffer<ffi::F32> g_depth,
                        int32_t image_size, float eps, int32_t with_rgb, int32_t has_g_rgb, int32_t has_g_alpha,
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
  if (a.B == 0) return ffi::Error::Success();
  cudaMemsetAsync(a.g_faces, 0, static_cast<size_t>(a.B * a.F * 9) * sizeof(float), stream);
  const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
  if (a.texture_grad) cudaMemsetAsync(a.g_textures, 0, static_cast<size_t>(a.B * a.F * cube) * sizeof(float), stream);
  if (a.edges && a.F > 0) {
    const int64_t n = a.B * a.F * 6;
    unsigned long long* counts = Scratch<unsigned long long>(scratch, n + 1);
    unsigned long long* offsets = Scratch<unsigned long long>(scratch, n + 1);
    if (!counts || !offsets) return ffi::Error::Internal("jaxnmr CUDA backward: out of scratch memory");
    cudaMemsetAsync(counts + n, 0, sizeof(unsigned long long), stream);
    CountScanlinesKernel<<<Blocks(n), kThreads, 0, stream>>>(a, counts);
    if (auto e = LaunchError("count scanlines"); e.failure()) return e;
    if (auto e = ExclusiveScan(scratch, stream, counts, offsets, n); e.failure()) return e;
    SweepKernel<<<static_cast<int>(kMaxBlocks / 8), kThreads, 0, stream>>>(a, offsets);
    if (auto e = LaunchError("edge sweeps"); e.failure()) return e;
  }
  if ((a.texture_grad || a.depth_grad) && a.F > 0) {
    const int64_t pixels = a.B * a.S * static_cast<int64_t>(a.S);
    PixelGradientsKernel<<<Blocks(pixels), kThreads, 0, stream>>>(a, a.depth_grad);
    if (auto e = LaunchError("pixel gradients"); e.failure()) return e;
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxnmr

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizeForwardCuda, jaxnmr::ForwardCuda,
                              jaxnmr::ForwardSignature(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>().Ctx<ffi::ScratchAllocator>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizeBackwardCuda, jaxnmr::BackwardCuda,
                              jaxnmr::BackwardSignature(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>().Ctx<ffi::ScratchAllocator>()));

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizeForwardCuda(XLA_FFI_CallFrame*);
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizeBackwardCuda(XLA_FFI_CallFrame*);
