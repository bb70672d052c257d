#include "kernels/parallel.h"

#include <algorithm>
#include <cstdlib>
#include <system_error>
#include <thread>
#include <vector>

namespace mft::kernels {
namespace {

// Below this many elements per thread, thread start-up costs more than it saves.
constexpr int64_t kMinElemsPerThread = 1 << 15;

// Default 1: on the 2-core reference machine a second thread never paid off
// (these kernels are memory-bound and MindSpore keeps the other core busy);
// measured with MFT_KERNEL_THREADS=1 vs 2 on 0.1M-8M element tensors.
int max_threads() {
  static const int n = [] {
    if (const char *env = std::getenv("MFT_KERNEL_THREADS")) {
      const int v = std::atoi(env);
      if (v >= 1) return std::min(v, 256);
    }
    return 1;
  }();
  return n;
}

}  // namespace

int plan_threads(int64_t rows, int64_t row_elems) {
  if (rows <= 1) return 1;
  const int64_t by_work = (rows * row_elems) / kMinElemsPerThread;
  const int64_t n = std::min<int64_t>({static_cast<int64_t>(max_threads()), by_work, rows});
  return n < 1 ? 1 : static_cast<int>(n);
}

void parallel_rows(int64_t rows, int n_threads,
                   const std::function<void(int64_t, int64_t, int)> &fn) {
  if (n_threads <= 1) {
    fn(0, rows, 0);
    return;
  }
  const int64_t chunk = (rows + n_threads - 1) / n_threads;
  std::vector<std::thread> workers;
  workers.reserve(n_threads - 1);
  for (int t = 1; t < n_threads; ++t) {
    const int64_t begin = std::min(rows, t * chunk);
    const int64_t end = std::min(rows, begin + chunk);
    try {
      workers.emplace_back(fn, begin, end, t);
    } catch (const std::system_error &) {
      fn(begin, end, t);  // out of threads: do this range here instead of failing
    }
  }
  fn(0, std::min(rows, chunk), 0);
  for (auto &w : workers) w.join();
}

}  // namespace mft::kernels
