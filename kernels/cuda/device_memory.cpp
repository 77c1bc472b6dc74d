// cudaMemGetInfo for kernels/device_memory.h.
#include "kernels/device_memory.h"

#include "kernels/cuda/check.h"

namespace lockstep::cuda {

DeviceMemoryInfo memory_info(int device) {
  CUDA_CHECK(cudaSetDevice(device));
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return {total_b - free_b, total_b};
}

}  // namespace lockstep::cuda
