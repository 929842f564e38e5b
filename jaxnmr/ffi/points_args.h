// jaxnmr point kernels: decoding and checking the FFI call's buffers, shared by the CPU and CUDA handlers (and
// the serial run of the GPU's work items, grid_cpu.cc).
//
// Forward (docs/points.md, "Fragments"):
//   points  f32 [*Lp, P, 3]   NDC x, y and camera depth z
//   radius  f32 [*Lr, R]      R = 1 (one radius for every point) or R = P
//   attrs   image_size S, points_per_pixel K (1..64), near, far
//   -> index s32 [*L, S, S, K] (-1 in empty slots), depth f32 [*L, S, S, K] (far), dist2 f32 [*L, S, S, K] (-1)
// Backward (docs/points.md, "Gradient"):
//   points  f32 [*, P, 3], index s32 [*, S, S, K], g_depth and g_dist2 f32 [*, S, S, K] (each a [*, 1, 1, 1]
//   placeholder where its attribute has_g_depth / has_g_dist2 is 0)
//   -> g_points f32 [*L, P, 3]
// Leading dimensions broadcast as for the mesh primitive (args.h); the outputs' are authoritative.
#ifndef JAXNMR_POINTS_ARGS_H_
#define JAXNMR_POINTS_ARGS_H_

#include <cstdint>
#include <string>
#include <utility>

#include "args.h"
#include "xla/ffi/api/ffi.h"

namespace jaxnmr {

constexpr int kMaxPointsPerPixel = 64;  // jaxnmr.ffi.MAX_POINTS_PER_PIXEL

// Pointers and sizes of one forward call, after PreparePointsForward has checked them.
struct PointsForwardArgs {
  const float* points;   // [*, P, 3]
  const float* radius;   // [*, R]
  int32_t* index;        // [B, S, S, K]
  float* depth;          // [B, S, S, K]
  float* dist2;          // [B, S, S, K]
  BatchMap points_map, radius_map;
  int64_t P;
  int64_t R;             // 1 or P
  int S, K;
  float near, far;
  int64_t B;             // number of batch elements (product of the outputs' leading dims)
};

// Pointers and sizes of one backward call, after PreparePointsBackward has checked them.
struct PointsBackwardArgs {
  const float* points;   // [*, P, 3]
  const int32_t* index;  // [*, S, S, K]
  const float* g_depth;  // [*, S, S, K], or null (no depth cotangent)
  const float* g_dist2;  // [*, S, S, K], or null (no dist2 cotangent)
  float* g_points;       // [B, P, 3]
  BatchMap points_map, index_map, g_depth_map, g_dist2_map;
  int64_t P;
  int S, K;
  int64_t B;
};

// The start of every error message of the forward and of the backward.
constexpr const char* kPointsForwardPrefix = "jaxnmr rasterize_points";
constexpr const char* kPointsBackwardPrefix = "jaxnmr rasterize_points backward";

// The attributes both directions share: S and K in range.
inline ffi::Error CheckPointsSizes(const char* prefix, int32_t image_size, int32_t points_per_pixel) {
  if (image_size < 1 || image_size > 32768) {
    return ffi::Error::InvalidArgument(std::string(prefix) + ": image_size (internal) must be in [1, 32768], got " +
                                       std::to_string(image_size));
  }
  if (points_per_pixel < 1 || points_per_pixel > kMaxPointsPerPixel) {
    return ffi::Error::InvalidArgument(std::string(prefix) + ": points_per_pixel must be in [1, " +
                                       std::to_string(kMaxPointsPerPixel) + "], got " +
                                       std::to_string(points_per_pixel));
  }
  return ffi::Error::Success();
}

// The leading dimensions of an output with `trailing` trailing dimensions: all but those, at most kMaxLeading.
inline ffi::Error OutputBatch(const char* prefix, const char* name, ffi::Span<const int64_t> dims, size_t trailing,
                              ffi::Span<const int64_t>* batch) {
  if (dims.size() < trailing || dims.size() - trailing > static_cast<size_t>(kMaxLeading)) {
    return ffi::Error::InvalidArgument(std::string(prefix) + ": output " + name + " has shape " + DimsString(dims) +
                                       "; expected " + std::to_string(trailing) + " to " +
                                       std::to_string(trailing + kMaxLeading) + " dimensions");
  }
  *batch = dims.first(dims.size() - trailing);
  return ffi::Error::Success();
}

inline ffi::Error PreparePointsForward(ffi::Buffer<ffi::F32>& points, ffi::Buffer<ffi::F32>& radius,
                                       int32_t image_size, int32_t points_per_pixel, float near, float far,
                                       ffi::ResultBuffer<ffi::S32>& index, ffi::ResultBuffer<ffi::F32>& depth,
                                       ffi::ResultBuffer<ffi::F32>& dist2, PointsForwardArgs* a) {
  const char* prefix = kPointsForwardPrefix;
  if (auto e = CheckPointsSizes(prefix, image_size, points_per_pixel); e.failure()) return e;
  if (!(near < far)) {
    return ffi::Error::InvalidArgument(std::string(prefix) + ": near must be < far, got near " +
                                       std::to_string(near) + ", far " + std::to_string(far));
  }
  ffi::Span<const int64_t> batch;
  if (auto e = OutputBatch(prefix, "index", index->dimensions(), 3, &batch); e.failure()) return e;
  const int64_t S = image_size, K = points_per_pixel;
  if (auto e = CheckOutput("index", index->dimensions(), batch, {S, S, K}, prefix); e.failure()) return e;
  if (auto e = CheckOutput("depth", depth->dimensions(), batch, {S, S, K}, prefix); e.failure()) return e;
  if (auto e = CheckOutput("dist2", dist2->dimensions(), batch, {S, S, K}, prefix); e.failure()) return e;
  if (auto e = MakeBatchMap("points", points.dimensions(), batch, {-1, 3}, &a->points_map, prefix); e.failure()) {
    return e;
  }
  a->P = points.dimensions()[batch.size()];
  if (a->P > INT32_MAX) {
    return ffi::Error::InvalidArgument(std::string(prefix) + ": points has shape " +
                                       DimsString(points.dimensions()) + "; at most 2^31 - 1 points");
  }
  if (auto e = MakeBatchMap("radius", radius.dimensions(), batch, {-1}, &a->radius_map, prefix); e.failure()) {
    return e;
  }
  a->R = radius.dimensions()[batch.size()];
  if (a->R != 1 && a->R != a->P) {
    return ffi::Error::InvalidArgument(std::string(prefix) + ": radius has shape " +
                                       DimsString(radius.dimensions()) + "; its last dimension must be 1 or P = " +
                                       std::to_string(a->P));
  }
  a->points = points.typed_data();
  a->radius = radius.typed_data();
  a->index = index->typed_data();
  a->depth = depth->typed_data();
  a->dist2 = dist2->typed_data();
  a->S = static_cast<int>(S);
  a->K = static_cast<int>(K);
  a->near = near;
  a->far = far;
  a->B = Product(batch);
  return ffi::Error::Success();
}

inline ffi::Error PreparePointsBackward(ffi::Buffer<ffi::F32>& points, ffi::Buffer<ffi::S32>& index,
                                        ffi::Buffer<ffi::F32>& g_depth, ffi::Buffer<ffi::F32>& g_dist2,
                                        int32_t image_size, int32_t points_per_pixel, int32_t has_g_depth,
                                        int32_t has_g_dist2, ffi::ResultBuffer<ffi::F32>& g_points,
                                        PointsBackwardArgs* a) {
  const char* prefix = kPointsBackwardPrefix;
  if (auto e = CheckPointsSizes(prefix, image_size, points_per_pixel); e.failure()) return e;
  ffi::Span<const int64_t> batch;
  if (auto e = OutputBatch(prefix, "g_points", g_points->dimensions(), 2, &batch); e.failure()) return e;
  const int64_t S = image_size, K = points_per_pixel, P = g_points->dimensions()[batch.size()];
  if (auto e = CheckOutput("g_points", g_points->dimensions(), batch, {P, 3}, prefix); e.failure()) return e;
  if (auto e = MakeBatchMap("points", points.dimensions(), batch, {P, 3}, &a->points_map, prefix); e.failure()) {
    return e;
  }
  if (auto e = MakeBatchMap("index", index.dimensions(), batch, {S, S, K}, &a->index_map, prefix); e.failure()) {
    return e;
  }
  // An absent cotangent is a [*, 1, 1, 1] placeholder, never read.
  const int64_t gd = has_g_depth ? S : 1, gk = has_g_depth ? K : 1;
  if (auto e = MakeBatchMap("g_depth", g_depth.dimensions(), batch, {gd, gd, gk}, &a->g_depth_map, prefix);
      e.failure()) {
    return e;
  }
  const int64_t gs = has_g_dist2 ? S : 1, gsk = has_g_dist2 ? K : 1;
  if (auto e = MakeBatchMap("g_dist2", g_dist2.dimensions(), batch, {gs, gs, gsk}, &a->g_dist2_map, prefix);
      e.failure()) {
    return e;
  }
  a->points = points.typed_data();
  a->index = index.typed_data();
  a->g_depth = has_g_depth ? g_depth.typed_data() : nullptr;
  a->g_dist2 = has_g_dist2 ? g_dist2.typed_data() : nullptr;
  a->g_points = g_points->typed_data();
  a->P = P;
  a->S = static_cast<int>(S);
  a->K = static_cast<int>(K);
  a->B = Product(batch);
  return ffi::Error::Success();
}

// The FFI signatures of the two targets, shared by the back ends: `binding` is ffi::Ffi::Bind() with the back
// end's context (thread pool, or stream and device memory) already added.
template <typename Binding>
auto PointsForwardSignature(Binding binding) {
  return std::move(binding).template Arg<ffi::Buffer<ffi::F32>>()  // points
      .template Arg<ffi::Buffer<ffi::F32>>()                       // radius
      .template Attr<int32_t>("image_size")
      .template Attr<int32_t>("points_per_pixel")
      .template Attr<float>("near")
      .template Attr<float>("far")
      .template Ret<ffi::Buffer<ffi::S32>>()   // index
      .template Ret<ffi::Buffer<ffi::F32>>()   // depth
      .template Ret<ffi::Buffer<ffi::F32>>();  // dist2
}

template <typename Binding>
auto PointsBackwardSignature(Binding binding) {
  return std::move(binding).template Arg<ffi::Buffer<ffi::F32>>()  // points
      .template Arg<ffi::Buffer<ffi::S32>>()                       // index
      .template Arg<ffi::Buffer<ffi::F32>>()                       // g_depth
      .template Arg<ffi::Buffer<ffi::F32>>()                       // g_dist2
      .template Attr<int32_t>("image_size")
      .template Attr<int32_t>("points_per_pixel")
      .template Attr<int32_t>("has_g_depth")
      .template Attr<int32_t>("has_g_dist2")
      .template Ret<ffi::Buffer<ffi::F32>>();  // g_points
}

}  // namespace jaxnmr

#endif  // JAXNMR_POINTS_ARGS_H_
