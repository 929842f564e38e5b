// jaxnmr CPU back end: work distribution on XLA's intra-op pool and memory kept between calls, shared by the
// mesh handlers (raster_cpu.cc) and the point handlers (points_cpu.cc).
#ifndef JAXNMR_PARALLEL_H_
#define JAXNMR_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jaxnmr {

constexpr int64_t kParallelWork = 1 << 15;  // below this much work (visits of pixels), run on the calling thread

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

// body(i) for i in [0, count), on the pool's threads and the calling one; `work` estimates the whole loop's
// cost, in the same units as kParallelWork.
inline void ParallelFor(ffi::ThreadPool& pool, int64_t count, int64_t work, std::function<void(int64_t)> body) {
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

// Output buffers of large images are usually fresh memory from the OS, which the first write faults in 4 KiB
// at a time (a 4096^2 map: 16384 faults, a third of the forward's time). Asking for huge pages on the
// 2 MiB-aligned interior of such a buffer, before writing it, lets the kernel map it 2 MiB at a time. Only a
// hint: where transparent huge pages are off, or the memory is already mapped, nothing changes.
inline void AdviseHugePages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (data == nullptr || bytes < static_cast<int64_t>(4 * kHuge)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// Scratch kept from one call to the next: getting tens of megabytes from the OS on every call (page faults,
// zeroing) costs a good part of a call with large images or meshes. Calls running at the same time take
// different sets; at most kBudget bytes (as set.Bytes() counts them) are kept of each kind.
template <class Set, int64_t kBudget>
class KeptSets {
 public:
  std::vector<Set> Take(int64_t count) {
    std::vector<Set> sets;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (!kept_.empty() && static_cast<int64_t>(sets.size()) < count) {
        sets.push_back(std::move(kept_.back()));
        kept_.pop_back();
      }
    }
    sets.resize(count);
    return sets;
  }
  void Give(std::vector<Set> sets) {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t kept_bytes = 0;
    for (const auto& set : kept_) kept_bytes += set.Bytes();
    for (auto& set : sets) {
      if (kept_bytes + set.Bytes() > kBudget) continue;  // freed when `sets` goes
      kept_bytes += set.Bytes();
      kept_.push_back(std::move(set));
    }
  }
  static KeptSets& Get() {
    static KeptSets* kept = new KeptSets;  // never destroyed: safe at process exit
    return *kept;
  }

 private:
  std::mutex mutex_;
  std::vector<Set> kept_;
};

// Lists of items, a set for KeptSets: kept between calls, cleared rather than freed.
template <class T>
struct KeptLists {
  std::vector<std::vector<T>> lists;
  int64_t Bytes() const {
    size_t entries = 0;
    for (const auto& list : lists) entries += list.capacity();
    return static_cast<int64_t>(entries * sizeof(T) + lists.capacity() * sizeof(lists[0]));
  }
  // count empty lists (those of the call before, emptied; more if needed)
  std::vector<std::vector<T>>& Reset(int64_t count) {
    lists.resize(static_cast<size_t>(count));
    for (auto& list : lists) list.clear();
    return lists;
  }
};

}  // namespace jaxnmr

#endif  // JAXNMR_PARALLEL_H_
