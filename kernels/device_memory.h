// Device memory in use, for benchmarks that report a run's footprint. lockstep allocates every
// device buffer at setup (ARCHITECTURE decision 4) and nothing inside a step, so the memory in
// use after the steps, less what was in use before setup, is the run's peak.
#pragma once

#include <cstddef>

#include "kernels/device.h"

namespace lockstep {

struct DeviceMemoryInfo {
  size_t used = 0;   // total - free: every allocation on the GPU, by any process and library
  size_t total = 0;  // the GPU's memory
};

// cudaMemGetInfo on a CUDA device (creating the runtime's context there if there is none yet).
// Throws for a CPU device, or when the CUDA backend is not built.
DeviceMemoryInfo device_memory_info(Device device);

}  // namespace lockstep
