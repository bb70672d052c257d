// Split rows across a few std::threads when the work is big enough to pay
// for starting them (~20 us each). Kernels are called from one MindSpore
// worker thread, so this is the only intra-op parallelism they get. Off by
// default (see max_threads in parallel.cc); MFT_KERNEL_THREADS=N turns it on.
#pragma once

#include <cstdint>
#include <functional>

namespace mft::kernels {

// Threads to use for `rows` rows of `row_elems` elements: 1 for small work,
// at most MFT_KERNEL_THREADS (env, default 1) otherwise.
int plan_threads(int64_t rows, int64_t row_elems);

// Calls fn(begin, end, worker) over contiguous row ranges, worker in [0, n_threads).
// The calling thread runs worker 0. Ranges depend only on (rows, n_threads),
// so results are reproducible for a given thread count.
void parallel_rows(int64_t rows, int n_threads,
                   const std::function<void(int64_t, int64_t, int)> &fn);

}  // namespace mft::kernels
