#include "kernels/threads.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <thread>

extern "C" void openblas_set_num_threads(int num_threads);

namespace lockstep {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_cpu_threads(int threads) {
  threads = std::max(1, threads);
  omp_set_num_threads(threads);
  // OpenBLAS stays single-threaded: Debian's default build runs its own pthread pool, and that
  // pool beside our OpenMP team oversubscribes the cores. Measured on 2 cores (bench train,
  // batch 32, one worker, 2 threads): resnet20 at 32 px 63 -> 190-196 img/s, resnet18 at 64 px
  // 39 -> 57 img/s with OpenBLAS at 1 thread. Parallel GEMMs belong in our own OpenMP loops.
  openblas_set_num_threads(1);
}

}  // namespace lockstep
