// jaxnmr kernels: decoding and checking the FFI call's buffers, shared by the CPU and CUDA handlers.
//
// Every buffer has the same number L of leading (batch) dimensions; each is 1 or the output's, and the outputs'
// leading dimensions are authoritative (docs/conventions.md, "Batch dimensions"). A BatchMap turns a flat output
// batch index into the flat batch index of an input. The Prepare* functions check every shape against the
// attributes and return an ffi::Error naming the buffer, its shape and what was expected; the kernels then never
// index outside a buffer.
#ifndef JAXNMR_ARGS_H_
#define JAXNMR_ARGS_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jaxnmr {

constexpr int kMaxLeading = 8;

// Leading-dimension broadcasting: maps a flat index over the output's batch dims to a flat index into an
// input whose batch dims are each 1 or equal to the output's.
struct BatchMap {
  int rank = 0;
  int64_t out_dims[kMaxLeading] = {};
  int64_t strides[kMaxLeading] = {};

  JAXNMR_HD int64_t operator()(int64_t b) const {
    int64_t index = 0;
    for (int d = rank - 1; d >= 0; --d) {
      index += (b % out_dims[d]) * strides[d];
      b /= out_dims[d];
    }
    return index;
  }
};

inline std::string DimsString(ffi::Span<const int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Checks `dims` = [*batch, *trailing] where each batch dim is 1 or the output's, and builds its BatchMap.
// A trailing entry of -1 matches any size. Messages start with `prefix` (the primitive's name).
inline ffi::Error MakeBatchMap(const char* name, ffi::Span<const int64_t> dims, ffi::Span<const int64_t> out_batch,
                               std::initializer_list<int64_t> trailing, BatchMap* map,
                               const char* prefix = "jaxnmr rasterize") {
  const int64_t rank = static_cast<int64_t>(out_batch.size());
  const int64_t expected_rank = rank + static_cast<int64_t>(trailing.size());
  if (static_cast<int64_t>(dims.size()) != expected_rank) {
    return ffi::Error::InvalidArgument(std::string(prefix) + ": " + name + " has rank " +
                                       std::to_string(dims.size()) + ", expected " +
                                       std::to_string(expected_rank) + "; shape " + DimsString(dims));
  }
  int i = 0;
  for (int64_t t : trailing) {
    if (t >= 0 && dims[rank + i] != t) {
      return ffi::Error::InvalidArgument(std::string(prefix) + ": " + name + " has shape " +
                                         DimsString(dims) + "; trailing dimension " + std::to_string(i) +
                                         " must be " + std::to_string(t));
    }
    ++i;
  }
  map->rank = static_cast<int>(rank);
  int64_t stride = 1;
  for (int64_t d = rank - 1; d >= 0; --d) {
    if (dims[d] != 1 && dims[d] != out_batch[d]) {
      return ffi::Error::InvalidArgument(std::string(prefix) + ": " + name + " batch shape " +
                                         DimsString(dims) + " does not broadcast to " + DimsString(out_batch));
    }
    map->out_dims[d] = out_batch[d];
    map->strides[d] = dims[d] == 1 ? 0 : stride;
    stride *= dims[d];
  }
  return ffi::Error::Success();
}

inline ffi::Error CheckOutput(const char* name, ffi::Span<const int64_t> dims, ffi::Span<const int64_t> out_batch,
                              std::initializer_list<int64_t> trailing, const char* prefix = "jaxnmr rasterize") {
  const size_t rank = out_batch.size();
  bool ok = dims.size() == rank + trailing.size();
  for (size_t d = 0; ok && d < rank; ++d) ok = dims[d] == out_batch[d];
  size_t i = 0;
  for (int64_t t : trailing) {
    ok = ok && dims[rank + i] == t;
    ++i;
  }
  if (!ok) {
    std::vector<int64_t> want(out_batch.begin(), out_batch.end());
    want.insert(want.end(), trailing.begin(), trailing.end());
    return ffi::Error::InvalidArgument(std::string(prefix) + ": output " + name + " has shape " +
                                       DimsString(dims) + ", expected " +
                                       DimsString(ffi::Span<const int64_t>(want.data(), want.size())));
  }
  return ffi::Error::Success();
}

inline int64_t Product(ffi::Span<const int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims) p *= d;
  return p;
}

// Pointers and sizes of one forward call (docs/rasterizer.md, "Visibility"), after PrepareForward has checked them.
struct ForwardArgs {
  const float* faces;
  const float* textures;
  const float* background;
  int32_t* face_index;
  float* weights;
  float* depth;
  float* rgb;
  BatchMap faces_map, textures_map, background_map;
  int64_t F;
  int T;
  int S;
  float near, far, eps;
  bool with_rgb;
  bool with_maps;  // write the weights and depth maps (else they are [*batch, 0, 0(, 3)] and never touched)
  int64_t B;  // number of batch elements (product of the output's leading dims)
};

// Pointers and sizes of one backward call (docs/rasterizer.md, "Approximate gradient"), after PrepareBackward has
// checked them.
struct BackwardArgs {
  const float *faces, *textures, *weights, *depth, *rgb, *g_rgb, *g_alpha, *g_depth;
  const int32_t* face_index;
  float *g_faces, *g_textures;
  BatchMap faces_map, textures_map, fi_map, weights_map, depth_map, rgb_map, g_rgb_map, g_alpha_map, g_depth_map;
  int64_t F;
  int T, S;
  float eps;
  bool edges, depth_grad, texture_grad;  // which gradient terms to compute (unneeded ones are skipped)
  int64_t B;
};

inline ffi::Error PrepareForward(ffi::Buffer<ffi::F32>& faces, ffi::Buffer<ffi::F32>& textures,
                                 ffi::Buffer<ffi::F32>& background, int32_t image_size, float near, float far,
                                 float eps, int32_t with_rgb, int32_t with_maps,
                                 ffi::ResultBuffer<ffi::S32>& face_index,
                                 ffi::ResultBuffer<ffi::F32>& weights, ffi::ResultBuffer<ffi::F32>& depth,
                                 ffi::ResultBuffer<ffi::F32>& rgb, ForwardArgs* a) {
  if (image_size < 1 || image_size > 32768) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize: image_size (internal) must be in [1, 32768], got " +
                                       std::to_string(image_size));
  }
  if (!(near < far)) return ffi::Error::InvalidArgument("jaxnmr rasterize: near must be < far");
  if (!(eps > 0.0f)) return ffi::Error::InvalidArgument("jaxnmr rasterize: eps must be > 0");
  if (with_rgb && !with_maps) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize: with_rgb needs with_maps (texture sampling reads them)");
  }
  const auto fi_dims = face_index->dimensions();
  if (fi_dims.size() < 2 || fi_dims.size() - 2 > static_cast<size_t>(kMaxLeading)) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize: face_index output must have 2 to 10 dimensions");
  }
  const ffi::Span<const int64_t> batch = fi_dims.first(fi_dims.size() - 2);
  const int64_t S = image_size;

  if (auto e = CheckOutput("face_index", fi_dims, batch, {S, S}); e.failure()) return e;
  const int64_t M = with_maps ? S : 0;
  if (auto e = CheckOutput("weights", weights->dimensions(), batch, {M, M, 3}); e.failure()) return e;
  if (auto e = CheckOutput("depth", depth->dimensions(), batch, {M, M}); e.failure()) return e;
  if (auto e = CheckOutput("rgb", rgb->dimensions(), batch, {with_rgb ? S : 0, with_rgb ? S : 0, 3});
      e.failure()) {
    return e;
  }
  if (auto e = MakeBatchMap("faces", faces.dimensions(), batch, {-1, 3, 3}, &a->faces_map); e.failure()) return e;
  if (auto e = MakeBatchMap("background", background.dimensions(), batch, {3}, &a->background_map); e.failure()) {
    return e;
  }
  a->F = faces.dimensions()[batch.size()];
  if (a->F > INT32_MAX) return ffi::Error::InvalidArgument("jaxnmr rasterize: too many faces");
  a->T = 0;
  if (with_rgb) {
    const auto tdims = textures.dimensions();
    if (tdims.size() != batch.size() + 5) {
      return ffi::Error::InvalidArgument("jaxnmr rasterize: textures must be [*batch, F, T, T, T, 3], got " +
                                         DimsString(tdims));
    }
    const int64_t T = tdims[batch.size() + 1];
    if (T < 2 || T > 1024) {
      return ffi::Error::InvalidArgument("jaxnmr rasterize: texture size T must be in [2, 1024], got " +
                                         std::to_string(T));
    }
    if (auto e = MakeBatchMap("textures", tdims, batch, {a->F, T, T, T, 3}, &a->textures_map); e.failure()) {
      return e;
    }
    a->T = static_cast<int>(T);
  }
  a->faces = faces.typed_data();
  a->textures = textures.typed_data();
  a->background = background.typed_data();
  a->face_index = face_index->typed_data();
  a->weights = weights->typed_data();
  a->depth = depth->typed_data();
  a->rgb = rgb->typed_data();
  a->S = static_cast<int>(S);
  a->near = near;
  a->far = far;
  a->eps = eps;
  a->with_rgb = with_rgb != 0;
  a->with_maps = with_maps != 0;
  a->B = Product(batch);
  return ffi::Error::Success();
}

inline ffi::Error PrepareBackward(ffi::Buffer<ffi::F32>& faces, ffi::Buffer<ffi::F32>& textures,
                                  ffi::Buffer<ffi::S32>& face_index, ffi::Buffer<ffi::F32>& weights,
                                  ffi::Buffer<ffi::F32>& depth, ffi::Buffer<ffi::F32>& rgb,
                                  ffi::Buffer<ffi::F32>& g_rgb, ffi::Buffer<ffi::F32>& g_alpha,
                                  ffi::Buffer<ffi::F32>& g_depth, int32_t image_size, float eps, int32_t with_rgb,
                                  int32_t has_g_rgb, int32_t has_g_alpha, int32_t has_g_depth, int32_t want_faces,
                                  int32_t want_textures,
                                  ffi::ResultBuffer<ffi::F32>& g_faces, ffi::ResultBuffer<ffi::F32>& g_textures,
                                  BackwardArgs* a) {
  if (image_size < 1 || image_size > 32768) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize backward: image_size must be in [1, 32768], got " +
                                       std::to_string(image_size));
  }
  if (!(eps > 0.0f)) return ffi::Error::InvalidArgument("jaxnmr rasterize backward: eps must be > 0");
  const auto gf_dims = g_faces->dimensions();
  if (gf_dims.size() < 3 || gf_dims.size() - 3 > static_cast<size_t>(kMaxLeading)) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize backward: g_faces must have 3 to 11 dimensions");
  }
  const ffi::Span<const int64_t> batch = gf_dims.first(gf_dims.size() - 3);
  const int64_t S = image_size, F = gf_dims[batch.size()];
  a->F = F;
  a->S = static_cast<int>(S);
  a->eps = eps;
  a->edges = want_faces && (has_g_rgb || has_g_alpha);
  a->depth_grad = want_faces && has_g_depth;
  a->texture_grad = want_textures && with_rgb && has_g_rgb;
  if (has_g_rgb && !with_rgb) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize backward: an rgb cotangent needs with_rgb");
  }
  if (auto e = CheckOutput("g_faces", gf_dims, batch, {F, 3, 3}); e.failure()) return e;
  if (auto e = MakeBatchMap("faces", faces.dimensions(), batch, {F, 3, 3}, &a->faces_map); e.failure()) return e;
  if (auto e = MakeBatchMap("face_index", face_index.dimensions(), batch, {S, S}, &a->fi_map); e.failure()) return e;
  // The weights and depth maps are read only for the depth and texture terms (a silhouette forward may not
  // have written them).
  const bool need_maps = a->depth_grad || a->texture_grad;
  if (need_maps) {
    if (auto e = MakeBatchMap("weights", weights.dimensions(), batch, {S, S, 3}, &a->weights_map); e.failure()) {
      return e;
    }
    if (auto e = MakeBatchMap("depth", depth.dimensions(), batch, {S, S}, &a->depth_map); e.failure()) return e;
  }
  a->T = 0;
  if (a->texture_grad) {
    const auto tdims = textures.dimensions();
    const int64_t T = tdims.size() == batch.size() + 5 ? tdims[batch.size() + 1] : 0;
    if (T < 2 || T > 1024) {
      return ffi::Error::InvalidArgument("jaxnmr rasterize backward: textures must be [*batch, F, T, T, T, 3] "
                                         "with T in [2, 1024], got " + DimsString(tdims));
    }
    if (auto e = MakeBatchMap("textures", tdims, batch, {F, T, T, T, 3}, &a->textures_map); e.failure()) return e;
    if (auto e = CheckOutput("g_textures", g_textures->dimensions(), batch, {F, T, T, T, 3}); e.failure()) {
      return e;
    }
    a->T = static_cast<int>(T);
  } else if (auto e = CheckOutput("g_textures", g_textures->dimensions(), batch, {0, 1, 1, 1, 3}); e.failure()) {
    return e;
  }
  if (has_g_rgb) {
    if (auto e = MakeBatchMap("rgb", rgb.dimensions(), batch, {S, S, 3}, &a->rgb_map); e.failure()) return e;
    if (auto e = MakeBatchMap("g_rgb", g_rgb.dimensions(), batch, {S, S, 3}, &a->g_rgb_map); e.failure()) return e;
  }
  if (has_g_alpha) {
    if (auto e = MakeBatchMap("g_alpha", g_alpha.dimensions(), batch, {S, S}, &a->g_alpha_map); e.failure()) {
      return e;
    }
  }
  if (has_g_depth) {
    if (auto e = MakeBatchMap("g_depth", g_depth.dimensions(), batch, {S, S}, &a->g_depth_map); e.failure()) {
      return e;
    }
  }
  a->faces = faces.typed_data();
  a->textures = textures.typed_data();
  a->face_index = face_index.typed_data();
  a->weights = need_maps ? weights.typed_data() : nullptr;
  a->depth = need_maps ? depth.typed_data() : nullptr;
  a->rgb = rgb.typed_data();
  a->g_rgb = has_g_rgb ? g_rgb.typed_data() : nullptr;
  a->g_alpha = has_g_alpha ? g_alpha.typed_data() : nullptr;
  a->g_depth = has_g_depth ? g_depth.typed_data() : nullptr;
  a->g_faces = g_faces->typed_data();
  a->g_textures = g_textures->typed_data();
  a->B = Product(batch);
  return ffi::Error::Success();
}

// The FFI signatures of the two targets, shared by the back ends: `binding` is ffi::Ffi::Bind() with the
// back end's context (thread pool, or stream and scratch allocator) already added.
template <typename Binding>
auto ForwardSignature(Binding binding) {
  return std::move(binding).template Arg<ffi::Buffer<ffi::F32>>()  // faces
      .template Arg<ffi::Buffer<ffi::F32>>()            // textures
      .template Arg<ffi::Buffer<ffi::F32>>()            // background
      .template Attr<int32_t>("image_size")
      .template Attr<float>("near")
      .template Attr<float>("far")
      .template Attr<float>("eps")
      .template Attr<int32_t>("with_rgb")
      .template Attr<int32_t>("with_maps")
      .template Ret<ffi::Buffer<ffi::S32>>()  // face_index
      .template Ret<ffi::Buffer<ffi::F32>>()  // weights
      .template Ret<ffi::Buffer<ffi::F32>>()  // depth
      .template Ret<ffi::Buffer<ffi::F32>>();  // rgb
}

template <typename Binding>
auto BackwardSignature(Binding binding) {
  return std::move(binding).template Arg<ffi::Buffer<ffi::F32>>()  // faces
      .template Arg<ffi::Buffer<ffi::F32>>()            // textures
      .template Arg<ffi::Buffer<ffi::S32>>()            // face_index
      .template Arg<ffi::Buffer<ffi::F32>>()            // weights
      .template Arg<ffi::Buffer<ffi::F32>>()            // depth
      .template Arg<ffi::Buffer<ffi::F32>>()            // rgb
      .template Arg<ffi::Buffer<ffi::F32>>()            // g_rgb
      .template Arg<ffi::Buffer<ffi::F32>>()            // g_alpha
      .template Arg<ffi::Buffer<ffi::F32>>()            // g_depth
      .template Attr<int32_t>("image_size")
      .template Attr<float>("eps")
      .template Attr<int32_t>("with_rgb")
      .template Attr<int32_t>("has_g_rgb")
      .template Attr<int32_t>("has_g_alpha")
      .template Attr<int32_t>("has_g_depth")
      .template Attr<int32_t>("want_faces")
      .template Attr<int32_t>("want_textures")
      .template Ret<ffi::Buffer<ffi::F32>>()   // g_faces
      .template Ret<ffi::Buffer<ffi::F32>>();  // g_textures
}

}  // namespace jaxnmr

#endif  // JAXNMR_ARGS_H_
