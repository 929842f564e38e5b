// jaxnmr CUDA back end: what its handlers share (raster_cuda.cu for the mesh, points_cuda.cu for points):
// launch sizes and grid-stride loops, CUDA errors as ffi::Error, the atomics of the work items (grid.h,
// points.h) on the GPU, XLA's device allocator for a call's workspace, and CUB's scan of the work counts.
//
// Device workspace is one allocation per call from XLA's device allocator, at the 16-byte alignment XLA accepts,
// carved into 256-byte-aligned parts here. It is requested from the allocator directly, not through
// ffi::ScratchAllocator, so that a failure returns XLA's own message. (The workspace could instead be declared as
// extra results of the FFI call, but its size depends on CUB's temporary storage, known only here, and the CPU
// back end, which shares the call's signature, needs none.)
#ifndef JAXNMR_CUDA_UTIL_CUH_
#define JAXNMR_CUDA_UTIL_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cub/cub.cuh>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "grid.h"
#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride loops cover the rest
constexpr size_t kPartAlignment = 256;   // of each part of the workspace (CUB's own alignment)
constexpr size_t kAllocatorAlignment = 16;  // the most XLA's FFI device allocator accepts

inline int Blocks(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)));
}

#define JAXNMR_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// An error from the CUDA runtime, with its own message.
inline ffi::Error CudaError(cudaError_t e, const char* where) {
  if (e == cudaSuccess) return ffi::Error::Success();
  return ffi::Error::Internal(std::string("jaxnmr CUDA ") + where + ": " + cudaGetErrorName(e) + ": " +
                              cudaGetErrorString(e));
}

// Whether the kernel launch just made failed (invalid configuration, no kernel image for this GPU, ...).
inline ffi::Error LaunchError(const char* kernel) {
  return CudaError(cudaGetLastError(), (std::string("kernel ") + kernel).c_str());
}

// grid.h's atomic updates on the GPU (only ever called from device code; the host pass compiles them empty).
struct CudaAtomics {
  JAXNMR_HD static void min(Count* p, Count v) {
#if defined(__CUDA_ARCH__)
    atomicMin(p, v);
#endif
  }
  JAXNMR_HD static void add(float* p, float v) {
#if defined(__CUDA_ARCH__)
    atomicAdd(p, v);
#endif
  }
};

// XLA's device memory allocator for one call. Everything allocated is freed when the handler returns, as
// XLA's own ScratchAllocator does (the work on the call's stream is ordered before any later use).
class DeviceMemory {
 public:
  DeviceMemory(const XLA_FFI_Api* api, XLA_FFI_ExecutionContext* ctx) : api_(api), ctx_(ctx) {}
  DeviceMemory(DeviceMemory&& other) noexcept
      : api_(other.api_), ctx_(other.ctx_), allocations_(std::move(other.allocations_)) {
    other.allocations_.clear();
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  DeviceMemory& operator=(DeviceMemory&&) = delete;

  ~DeviceMemory() {
    for (const auto& [data, size] : allocations_) {
      XLA_FFI_DeviceMemory_Free_Args args;
      args.struct_size = XLA_FFI_DeviceMemory_Free_Args_STRUCT_SIZE;
      args.extension_start = nullptr;
      args.ctx = ctx_;
      args.size = size;
      args.data = data;
      if (XLA_FFI_Error* error = api_->XLA_FFI_DeviceMemory_Free(&args)) Destroy(error);
    }
  }

  // `bytes` of device memory aligned to kPartAlignment, or XLA's reason for refusing them.
  ffi::Error Allocate(size_t bytes, const char* what, void** out) {
    XLA_FFI_DeviceMemory_Allocate_Args args;
    args.struct_size = XLA_FFI_DeviceMemory_Allocate_Args_STRUCT_SIZE;
    args.extension_start = nullptr;
    args.ctx = ctx_;
    args.size = bytes + kPartAlignment;  // room to align the start
    args.alignment = kAllocatorAlignment;
    args.data = nullptr;
    if (XLA_FFI_Error* error = api_->XLA_FFI_DeviceMemory_Allocate(&args)) {
      XLA_FFI_Error_GetMessage_Args message;
      message.struct_size = XLA_FFI_Error_GetMessage_Args_STRUCT_SIZE;
      message.extension_start = nullptr;
      message.error = error;
      api_->XLA_FFI_Error_GetMessage(&message);
      std::string text = std::string("jaxnmr CUDA: XLA could not allocate ") + std::to_string(args.size) +
                         " bytes of device workspace (" + what + "): " + (message.message ? message.message : "");
      Destroy(error);
      return ffi::Error(ffi::ErrorCode::kResourceExhausted, text);
    }
    allocations_.emplace_back(args.data, args.size);
    const uintptr_t start = reinterpret_cast<uintptr_t>(args.data);
    *out = reinterpret_cast<void*>((start + kPartAlignment - 1) / kPartAlignment * kPartAlignment);
    return ffi::Error::Success();
  }

 private:
  void Destroy(XLA_FFI_Error* error) {
    XLA_FFI_Error_Destroy_Args args;
    args.struct_size = XLA_FFI_Error_Destroy_Args_STRUCT_SIZE;
    args.extension_start = nullptr;
    args.error = error;
    api_->XLA_FFI_Error_Destroy(&args);
  }

  const XLA_FFI_Api* api_;
  XLA_FFI_ExecutionContext* ctx_;
  std::vector<std::pair<void*, size_t>> allocations_;
};

// The parts of one call's workspace: each added part starts at a multiple of kPartAlignment from the base.
class Workspace {
 public:
  template <typename T>
  size_t Add(int64_t count) {
    const size_t at = size_;
    size_ += RoundUp(static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T));
    return at;
  }
  size_t AddBytes(size_t bytes) {
    const size_t at = size_;
    size_ += RoundUp(std::max<size_t>(bytes, 1));
    return at;
  }
  ffi::Error Allocate(DeviceMemory& memory, const char* what) { return memory.Allocate(size_, what, &base_); }
  template <typename T>
  T* At(size_t offset) const {
    return reinterpret_cast<T*>(static_cast<unsigned char*>(base_) + offset);
  }

 private:
  static size_t RoundUp(size_t bytes) { return (bytes + kPartAlignment - 1) / kPartAlignment * kPartAlignment; }
  size_t size_ = 0;
  void* base_ = nullptr;
};

// CUB's exclusive prefix sum of n + 1 counts (counts[n] = 0): the first work item of each entry, and in
// offsets[n] the total. With temp = nullptr, only sets *temp_bytes. `entries` says what the n entries are, for
// the message when there are too many.
inline ffi::Error ExclusiveScan(void* temp, size_t* temp_bytes, const Count* counts, Count* offsets, int64_t n,
                                cudaStream_t stream, const char* entries) {
  if (n + 1 > INT32_MAX) {
    return ffi::Error::InvalidArgument("jaxnmr CUDA: " + std::to_string(n) +
                                       " work entries in one call (" + entries +
                                       ") exceed the scan's limit of 2^31 - 2; split the batch");
  }
  return CudaError(cub::DeviceScan::ExclusiveSum(temp, *temp_bytes, counts, offsets, static_cast<int>(n + 1),
                                                 stream),
                   "prefix sum of the work counts");
}

}  // namespace jaxnmr

// The handlers take jaxnmr::DeviceMemory from the call's execution context.
namespace xla::ffi {
template <>
struct CtxDecoding<jaxnmr::DeviceMemory> {
  using Type = jaxnmr::DeviceMemory;
  static std::optional<Type> Decode(const XLA_FFI_Api* api, XLA_FFI_ExecutionContext* ctx, DiagnosticEngine&) {
    return jaxnmr::DeviceMemory(api, ctx);
  }
};
}  // namespace xla::ffi

#endif  // JAXNMR_CUDA_UTIL_CUH_
