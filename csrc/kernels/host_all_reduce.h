// Sum all-reduce of float32 buffers among the processes of one group on one
// host, through a POSIX shared-memory segment (the data-parallel gradient
// all-reduce on CPU: mft.parallel.comm.HostAllReduce).
//
// Segment `name` (one per call site: the same name, rank, size and n on every
// call) holds a header of per-rank counters and one slot of n floats per
// rank. Round k on rank r: wait until every rank has finished reading round
// k-1, copy `in` into slot r, publish arrived[r] = k, wait for every rank's
// arrival, sum the slots in rank order into `out` (so every rank gets the
// same bits: slot 0 + slot 1 + ...), publish done[r] = k. Waits spin briefly
// and then sleep on a futex. Rank 0 unlinks the name once every rank has
// arrived in round 1 (all have it mapped); the mapping lives until the
// process exits. Memory traffic per call and rank: n floats copied in,
// size * n read, n written - on CPU several times cheaper than a ring over
// TCP, which copies every chunk through sockets and message buffers.
#pragma once

#include <cstdint>
#include <string>

namespace mft::kernels {

// Empty string on success, else what went wrong (bad arguments, a segment of
// another size under the name, shm/mmap errors, or no peer within timeout_s).
std::string host_all_reduce(const char *name, int rank, int size, const float *in, float *out, int64_t n,
                            double timeout_s);

constexpr int kHostAllReduceMaxRanks = 64;

}  // namespace mft::kernels
