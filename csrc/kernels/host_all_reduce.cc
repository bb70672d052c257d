#include "kernels/host_all_reduce.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace mft::kernels {
namespace {

// One cache line per rank, written only by that rank.
struct alignas(64) RankState {
  std::atomic<uint32_t> arrived;  // last round whose data this rank has put in its slot
  std::atomic<uint32_t> done;     // last round this rank has finished reading
};
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex words are 32-bit");

struct Header {
  RankState rank[kHostAllReduceMaxRanks];
};

constexpr size_t kAlign = 64;
size_t slot_bytes(int64_t n) { return (static_cast<size_t>(n) * sizeof(float) + kAlign - 1) / kAlign * kAlign; }

struct Segment {
  char *base = nullptr;
  size_t bytes = 0;
  int64_t n = 0;
  int size = 0, rank = 0;
  uint32_t round = 0;
  Header *header() const { return reinterpret_cast<Header *>(base); }
  float *slot(int r) const { return reinterpret_cast<float *>(base + sizeof(Header) + r * slot_bytes(n)); }
};

std::mutex g_mutex;
std::unordered_map<std::string, Segment> g_segments;

long futex(std::atomic<uint32_t> *word, int op, uint32_t val, const timespec *ts) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), op, val, ts, nullptr, 0);
}

void wake(std::atomic<uint32_t> *word) { futex(word, FUTEX_WAKE, INT_MAX, nullptr); }

using Clock = std::chrono::steady_clock;

// Waits until *word >= want (as a wrapping round counter: want - value < 2^31 means not yet).
bool wait_for(std::atomic<uint32_t> *word, uint32_t want, Clock::time_point deadline) {
  auto reached = [&](uint32_t v) { return static_cast<int32_t>(v - want) >= 0; };
  for (int spin = 0; spin < 512; ++spin) {
    if (reached(word->load(std::memory_order_acquire))) return true;
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  const timespec slice{0, 2000000};  // re-check at least every 2 ms (and the deadline)
  while (true) {
    const uint32_t v = word->load(std::memory_order_acquire);
    if (reached(v)) return true;
    if (Clock::now() > deadline) return false;
    futex(word, FUTEX_WAIT, v, &slice);  // returns at once if the word changed since the load
  }
}

std::string open_segment(const char *name, int rank, int size, int64_t n, Segment *seg) {
  const size_t bytes = sizeof(Header) + static_cast<size_t>(size) * slot_bytes(n);
  const int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
  if (fd < 0) return std::string("shm_open(") + name + "): " + std::strerror(errno);
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    return std::string("fstat(") + name + "): " + std::strerror(e);
  }
  // Every rank sizes a fresh (zero-length) object the same way; a different size means another job's segment.
  // posix_fallocate reserves the pages now: a full /dev/shm is this error, not a SIGBUS at the first write.
  if (st.st_size == 0) {
    const int e = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (e != 0) {
      close(fd);
      shm_unlink(name);
      return std::string("cannot reserve ") + std::to_string(bytes) + " bytes for " + name + " in /dev/shm: " +
             std::strerror(e);
    }
  }
  if (st.st_size != 0 && static_cast<size_t>(st.st_size) != bytes) {
    close(fd);
    return std::string("shared-memory segment ") + name + " has another size (another job's?)";
  }
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  close(fd);
  if (p == MAP_FAILED) return std::string("mmap(") + name + "): " + std::strerror(e);
  seg->base = static_cast<char *>(p);
  seg->bytes = bytes;
  seg->n = n;
  seg->size = size;
  seg->rank = rank;
  seg->round = 0;
  return "";
}

}  // namespace

std::string host_all_reduce(const char *name, int rank, int size, const float *in, float *out, int64_t n,
                            double timeout_s) {
  if (name == nullptr || name[0] != '/' || std::strchr(name + 1, '/') != nullptr)
    return "the segment name must be /NAME without further slashes";
  if (size < 1 || size > kHostAllReduceMaxRanks || rank < 0 || rank >= size || n < 0)
    return "need 0 <= rank < size <= 64 and n >= 0";
  Segment *seg;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_segments.find(name);
    if (it == g_segments.end()) {
      Segment fresh;
      const std::string err = open_segment(name, rank, size, n, &fresh);
      if (!err.empty()) return err;
      it = g_segments.emplace(name, fresh).first;
    }
    seg = &it->second;
  }
  if (seg->n != n || seg->size != size || seg->rank != rank) return std::string("segment ") + name + " was opened with another n/size/rank";
  Header *h = seg->header();
  const uint32_t k = ++seg->round;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  // 1. Every rank has finished reading the previous round: our slot may be overwritten.
  for (int r = 0; r < size; ++r)
    if (!wait_for(&h->rank[r].done, k - 1, deadline)) return "timed out waiting for a peer to finish the previous round";
  // 2. Our data in our slot, then announce it.
  std::memcpy(seg->slot(rank), in, static_cast<size_t>(n) * sizeof(float));
  h->rank[rank].arrived.store(k, std::memory_order_release);
  wake(&h->rank[rank].arrived);
  // 3. Everyone's data is there.
  for (int r = 0; r < size; ++r)
    if (!wait_for(&h->rank[r].arrived, k, deadline)) return "timed out waiting for a peer's data";
  if (k == 1 && rank == 0) shm_unlink(name);  // every rank has the segment mapped: the name can go
  // 4. The sum in rank order, the same on every rank.
  const float *s0 = seg->slot(0);
  if (size == 1) {
    std::memcpy(out, s0, static_cast<size_t>(n) * sizeof(float));
  } else {
    const float *s1 = seg->slot(1);
    for (int64_t i = 0; i < n; ++i) out[i] = s0[i] + s1[i];
    for (int r = 2; r < size; ++r) {
      const float *sr = seg->slot(r);
      for (int64_t i = 0; i < n; ++i) out[i] += sr[i];
    }
  }
  // 5. Done reading this round.
  h->rank[rank].done.store(k, std::memory_order_release);
  wake(&h->rank[rank].done);
  return "";
}

}  // namespace mft::kernels
