// Checks the shared-memory all-reduce with real processes: `size` forked
// children run many rounds (several call sites, sizes that are not a multiple
// of anything, one empty buffer) and each checks every round's result against
// the sum in rank order of the data every rank derives from (rank, round), bit
// for bit; the parent requires every child to exit 0. Also: bad arguments are
// refused, and a lone rank times out instead of hanging.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/host_all_reduce.h"

namespace {

float value(int rank, int round, int site, int64_t i) {
  // Distinct, not exactly representable sums, so the summation order matters for the bits.
  return static_cast<float>(((rank + 1) * 7919 + round * 104729 + site * 31 + i * 13) % 100003) / 997.0f +
         0.1f * static_cast<float>(rank);
}

int child(const std::string &tag, int rank, int size) {
  const int64_t sizes[] = {1000, 3, 0, 70001};
  for (int round = 0; round < 40; ++round) {
    for (int site = 0; site < 4; ++site) {
      const int64_t n = sizes[site];
      std::vector<float> in(n), out(n, -1.f), want(n);
      for (int64_t i = 0; i < n; ++i) in[i] = value(rank, round, site, i);
      for (int64_t i = 0; i < n; ++i) {
        float s = value(0, round, site, i);
        for (int r = 1; r < size; ++r) s += value(r, round, site, i);
        want[i] = s;
      }
      const std::string name = "/mft_test_" + tag + "_" + std::to_string(site);
      const std::string err =
          mft::kernels::host_all_reduce(name.c_str(), rank, size, in.data(), out.data(), n, 60.0);
      if (!err.empty()) {
        std::printf("FAIL rank %d round %d site %d: %s\n", rank, round, site, err.c_str());
        return 1;
      }
      if (n && std::memcmp(out.data(), want.data(), sizeof(float) * n) != 0) {
        std::printf("FAIL rank %d round %d site %d: sum differs\n", rank, round, site);
        return 1;
      }
    }
  }
  return 0;
}

int run_group(int size) {
  const std::string tag = std::to_string(getpid()) + "_" + std::to_string(size);
  std::vector<pid_t> kids;
  for (int r = 0; r < size; ++r) {
    const pid_t pid = fork();
    if (pid == 0) _exit(child(tag, r, size));
    kids.push_back(pid);
  }
  int failures = 0;
  for (pid_t pid : kids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  if (failures) std::printf("FAIL group of %d: %d rank(s) failed\n", size, failures);
  return failures;
}

}  // namespace

int main() {
  int failures = 0;
  for (int size : {2, 3, 1}) failures += run_group(size);
  float x = 1.f, y = 0.f;
  const char *bad[] = {"no_slash", "/a/b"};
  for (const char *name : bad)
    if (mft::kernels::host_all_reduce(name, 0, 2, &x, &y, 1, 1.0).empty()) {
      std::printf("FAIL name %s accepted\n", name);
      ++failures;
    }
  if (mft::kernels::host_all_reduce("/mft_test_bad_rank", 2, 2, &x, &y, 1, 1.0).empty()) {
    std::printf("FAIL rank 2 of 2 accepted\n");
    ++failures;
  }
  // A rank whose peer never comes: an error after the timeout, not a hang.
  const std::string lone = "/mft_test_lone_" + std::to_string(getpid());
  const std::string err = mft::kernels::host_all_reduce(lone.c_str(), 0, 2, &x, &y, 1, 0.2);
  shm_unlink(lone.c_str());
  if (err.find("timed out") == std::string::npos) {
    std::printf("FAIL lone rank: got '%s'\n", err.c_str());
    ++failures;
  }
  if (failures) return 1;
  std::printf("host_all_reduce: all checks passed\n");
  return 0;
}
