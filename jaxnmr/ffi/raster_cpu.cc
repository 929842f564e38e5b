// jaxnmr CPU handlers: loops (threaded on XLA's intra-op pool) over the math in raster.h.
//
// Forward target "jaxnmr_rasterize_forward" (NMR_SPEC §4), batched over L leading dimensions that broadcast
// numpy-style; the outputs' leading dimensions are authoritative (DESIGN §4):
//   faces      f32 [*Lf, F, 3, 3]        NDC coordinates
//   textures   f32 [*Lt, F, T, T, T, 3]  read only when with_rgb (otherwise any [*, 1, 2, 2, 2, 3] placeholder)
//   background f32 [*Lb, 3]
//   -> face_index s32 [*L, S, S]   (-1 where nothing is drawn)
//      weights    f32 [*L, S, S, 3] clamped, renormalised screen-space barycentrics (0 where nothing is drawn)
//      depth      f32 [*L, S, S]   interpolated camera z (far where nothing is drawn)
//      rgb        f32 [*L, S, S, 3] sampled texture, background where nothing is drawn ([*L, 0, 0, 3] without rgb)
// Visibility is found per band of rows: faces are binned by the rows their pixel range touches, and each band
// visits its faces in index order, so the strict z-test keeps the lowest face index on ties, and cost grows
// with the pixels each face's range covers, not pixels x faces.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "raster.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jaxnmr {
namespace {

constexpr int kBandRows = 16;           // rows per unit of forward work
constexpr int64_t kParallelWork = 1 << 15;  // below this many pixel+face visits, run on the calling thread
constexpr int kMaxLeading = 8;

// ---------------------------------------------------------------------------------------------------------
// Work distribution on XLA's intra-op pool. The calling thread works too and claims items dynamically, so the
// loop finishes even if no pool thread ever starts; it waits only for helpers that have started.
struct ParallelState {
  std::atomic<int64_t> next{0};
  std::atomic<int> active{0};
  int64_t count = 0;
  std::function<void(int64_t)> body;
  std::mutex mu;
  std::condition_variable cv;

  void Work() {
    for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(i);
  }
};

void ParallelFor(ffi::ThreadPool& pool, int64_t count, int64_t work, std::function<void(int64_t)> body) {
  const int64_t threads = pool.num_threads();
  if (count <= 1 || work < kParallelWork || threads <= 1) {
    for (int64_t i = 0; i < count; ++i) body(i);
    return;
  }
  auto state = std::make_shared<ParallelState>();
  state->count = count;
  state->body = std::move(body);
  const int64_t helpers = std::min<int64_t>(threads, count) - 1;
  for (int64_t h = 0; h < helpers; ++h) {
    pool.Schedule([state] {
      state->active.fetch_add(1);
      state->Work();
      if (state->active.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    });
  }
  state->Work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->active.load() == 0; });
}

// ---------------------------------------------------------------------------------------------------------
// Leading-dimension broadcasting: maps a flat index over the output's batch dims to a flat index into an
// input whose batch dims are each 1 or equal to the output's.
struct BatchMap {
  int rank = 0;
  int64_t out_dims[kMaxLeading] = {};
  int64_t strides[kMaxLeading] = {};

  int64_t operator()(int64_t b) const {
    int64_t index = 0;
    for (int d = rank - 1; d >= 0; --d) {
      index += (b % out_dims[d]) * strides[d];
      b /= out_dims[d];
    }
    return index;
  }
};

std::string DimsString(ffi::Span<const int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Checks `dims` = [*batch, *trailing] where each batch dim is 1 or the output's, and builds its BatchMap.
// A trailing entry of -1 matches any size.
ffi::Error MakeBatchMap(const char* name, ffi::Span<const int64_t> dims, ffi::Span<const int64_t> out_batch,
                        std::initializer_list<int64_t> trailing, BatchMap* map) {
  const int64_t rank = static_cast<int64_t>(out_batch.size());
  const int64_t expected_rank = rank + static_cast<int64_t>(trailing.size());
  if (static_cast<int64_t>(dims.size()) != expected_rank) {
    return ffi::Error::InvalidArgument(std::string("jaxnmr rasterize: ") + name + " has rank " +
                                       std::to_string(dims.size()) + ", expected " +
                                       std::to_string(expected_rank) + "; shape " + DimsString(dims));
  }
  int i = 0;
  for (int64_t t : trailing) {
    if (t >= 0 && dims[rank + i] != t) {
      return ffi::Error::InvalidArgument(std::string("jaxnmr rasterize: ") + name + " has shape " +
                                         DimsString(dims) + "; trailing dimension " + std::to_string(i) +
                                         " must be " + std::to_string(t));
    }
    ++i;
  }
  map->rank = static_cast<int>(rank);
  int64_t stride = 1;
  for (int64_t d = rank - 1; d >= 0; --d) {
    if (dims[d] != 1 && dims[d] != out_batch[d]) {
      return ffi::Error::InvalidArgument(std::string("jaxnmr rasterize: ") + name + " batch shape " +
                                         DimsString(dims) + " does not broadcast to " + DimsString(out_batch));
    }
    map->out_dims[d] = out_batch[d];
    map->strides[d] = dims[d] == 1 ? 0 : stride;
    stride *= dims[d];
  }
  return ffi::Error::Success();
}

ffi::Error CheckOutput(const char* name, ffi::Span<const int64_t> dims, ffi::Span<const int64_t> out_batch,
                       std::initializer_list<int64_t> trailing) {
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
    return ffi::Error::InvalidArgument(std::string("jaxnmr rasterize: output ") + name + " has shape " +
                                       DimsString(dims) + ", expected " +
                                       DimsString(ffi::Span<const int64_t>(want.data(), want.size())));
  }
  return ffi::Error::Success();
}

int64_t Product(ffi::Span<const int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims) p *= d;
  return p;
}

// ---------------------------------------------------------------------------------------------------------
// Forward.

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
};

// Visibility, texture sampling and background for rows [r_begin, r_end) of batch element b.
void ForwardBand(const ForwardArgs& a, const FaceSetup* setups, const std::vector<int32_t>& faces_in_band,
                 int64_t b, int r_begin, int r_end) {
  const int S = a.S;
  const int64_t pix0 = (b * S + r_begin) * S;
  const int64_t npix = static_cast<int64_t>(r_end - r_begin) * S;
  int32_t* fi = a.face_index + pix0;
  float* wm = a.weights + 3 * pix0;
  float* dm = a.depth + pix0;
  std::fill(fi, fi + npix, -1);
  std::fill(wm, wm + 3 * npix, 0.0f);
  std::fill(dm, dm + npix, a.far);

  const float* faces_b = a.faces + a.faces_map(b) * a.F * 9;
  for (int32_t f : faces_in_band) {
    const FaceSetup& fs = setups[f];
    const float* face = faces_b + 9 * static_cast<int64_t>(f);
    const int r0 = std::max(fs.r0, r_begin), r1 = std::min(fs.r1, r_end - 1);
    for (int r = r0; r <= r1; ++r) {
      const int64_t row = static_cast<int64_t>(r - r_begin) * S;
      for (int c = fs.c0; c <= fs.c1; ++c) {
        float w[3], zp;
        if (!pixel_candidate(face, fs.inv, c, r, S, a.near, a.far, w, &zp)) continue;
        const int64_t p = row + c;
        if (zp < dm[p]) {
          dm[p] = zp;
          fi[p] = f;
          wm[3 * p + 0] = w[0];
          wm[3 * p + 1] = w[1];
          wm[3 * p + 2] = w[2];
        }
      }
    }
  }

  if (!a.with_rgb) return;
  float* out = a.rgb + 3 * pix0;
  const float* bg = a.background + 3 * a.background_map(b);
  const int64_t cube = static_cast<int64_t>(a.T) * a.T * a.T * 3;
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
                       int32_t with_rgb, ffi::ResultBuffer<ffi::S32> face_index,
                       ffi::ResultBuffer<ffi::F32> weights, ffi::ResultBuffer<ffi::F32> depth,
                       ffi::ResultBuffer<ffi::F32> rgb) {
  if (image_size < 1 || image_size > 32768) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize: image_size (internal) must be in [1, 32768], got " +
                                       std::to_string(image_size));
  }
  if (!(near < far)) return ffi::Error::InvalidArgument("jaxnmr rasterize: near must be < far");
  if (!(eps > 0.0f)) return ffi::Error::InvalidArgument("jaxnmr rasterize: eps must be > 0");
  const auto fi_dims = face_index->dimensions();
  if (fi_dims.size() < 2 || fi_dims.size() - 2 > static_cast<size_t>(kMaxLeading)) {
    return ffi::Error::InvalidArgument("jaxnmr rasterize: face_index output must have 2 to 10 dimensions");
  }
  const ffi::Span<const int64_t> batch = fi_dims.first(fi_dims.size() - 2);
  const int64_t S = image_size;

  ForwardArgs a;
  if (auto e = CheckOutput("face_index", fi_dims, batch, {S, S}); e.failure()) return e;
  if (auto e = CheckOutput("weights", weights->dimensions(), batch, {S, S, 3}); e.failure()) return e;
  if (auto e = CheckOutput("depth", depth->dimensions(), batch, {S, S}); e.failure()) return e;
  if (auto e = CheckOutput("rgb", rgb->dimensions(), batch, {with_rgb ? S : 0, with_rgb ? S : 0, 3});
      e.failure()) {
    return e;
  }
  if (auto e = MakeBatchMap("faces", faces.dimensions(), batch, {-1, 3, 3}, &a.faces_map); e.failure()) return e;
  if (auto e = MakeBatchMap("background", background.dimensions(), batch, {3}, &a.background_map); e.failure()) {
    return e;
  }
  a.F = faces.dimensions()[batch.size()];
  if (a.F > INT32_MAX) return ffi::Error::InvalidArgument("jaxnmr rasterize: too many faces");
  a.T = 0;
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
    if (auto e = MakeBatchMap("textures", tdims, batch, {a.F, T, T, T, 3}, &a.textures_map); e.failure()) {
      return e;
    }
    a.T = static_cast<int>(T);
  }
  a.faces = faces.typed_data();
  a.textures = textures.typed_data();
  a.background = background.typed_data();
  a.face_index = face_index->typed_data();
  a.weights = weights->typed_data();
  a.depth = depth->typed_data();
  a.rgb = rgb->typed_data();
  a.S = static_cast<int>(S);
  a.near = near;
  a.far = far;
  a.eps = eps;
  a.with_rgb = with_rgb != 0;

  const int64_t B = Product(batch);
  if (B == 0) return ffi::Error::Success();
  const int64_t F = a.F;
  const int bands = static_cast<int>((S + kBandRows - 1) / kBandRows);

  // Phase 1: per-face setup and binning by band, one batch element per work item.
  std::vector<FaceSetup> setups(static_cast<size_t>(B * F));
  std::vector<std::vector<int32_t>> bins(static_cast<size_t>(B * bands));
  ParallelFor(pool, B, B * F, [&](int64_t b) {
    const float* faces_b = a.faces + a.faces_map(b) * F * 9;
    FaceSetup* fs = setups.data() + b * F;
    std::vector<int32_t>* bin = bins.data() + b * bands;
    for (int64_t f = 0; f < F; ++f) {
      fs[f] = setup_face(faces_b + 9 * f, a.S);
      if (!fs[f].drawable) continue;
      for (int band = fs[f].r0 / kBandRows; band <= fs[f].r1 / kBandRows; ++band) {
        bin[band].push_back(static_cast<int32_t>(f));
      }
    }
  });

  // Phase 2: visibility and shading, one band of one batch element per work item.
  int64_t work = B * S * S;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t f = 0; f < F; ++f) {
      const FaceSetup& fs = setups[b * F + f];
      if (fs.drawable) work += static_cast<int64_t>(fs.r1 - fs.r0 + 1) * (fs.c1 - fs.c0 + 1);
    }
  }
  ParallelFor(pool, B * bands, work, [&](int64_t item) {
    const int64_t b = item / bands;
    const int band = static_cast<int>(item % bands);
    const int r_begin = band * kBandRows;
    const int r_end = std::min<int>(r_begin + kBandRows, a.S);
    ForwardBand(a, setups.data() + b * F, bins[b * bands + band], b, r_begin, r_end);
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxnmr

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnmrRasterizeForward, jaxnmr::ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // faces
                                  .Arg<ffi::Buffer<ffi::F32>>()  // textures
                                  .Arg<ffi::Buffer<ffi::F32>>()  // background
                                  .Attr<int32_t>("image_size")
                                  .Attr<float>("near")
                                  .Attr<float>("far")
                                  .Attr<float>("eps")
                                  .Attr<int32_t>("with_rgb")
                                  .Ret<ffi::Buffer<ffi::S32>>()   // face_index
                                  .Ret<ffi::Buffer<ffi::F32>>()   // weights
                                  .Ret<ffi::Buffer<ffi::F32>>()   // depth
                                  .Ret<ffi::Buffer<ffi::F32>>());  // rgb

extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* JaxnmrRasterizeForward(XLA_FFI_CallFrame*);
