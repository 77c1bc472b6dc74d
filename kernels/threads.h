// CPU threads of the calling worker: OpenMP loops in the CPU kernels and OpenBLAS GEMMs. With N
// CPU workers each gets cores / N, so that workers x threads never exceeds the cores.
#pragma once

namespace lockstep {

// The cores this process may use (affinity-aware), at least 1.
int available_cores();
// Sets the calling thread's OpenMP team size; OpenBLAS is kept at one thread (its own pthread
// pool beside the OpenMP team oversubscribes the cores: threads.cpp has the measurement).
void set_cpu_threads(int threads);

}  // namespace lockstep
