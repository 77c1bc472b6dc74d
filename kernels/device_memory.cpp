#include "kernels/device_memory.h"

#include "kernels/dispatch.h"
#include "kernels/error.h"

namespace lockstep {

#if LOCKSTEP_HAVE_CUDA
namespace cuda {
DeviceMemoryInfo memory_info(int device);  // kernels/cuda/device_memory.cpp
}
#endif

DeviceMemoryInfo device_memory_info(Device device) {
  LS_CHECK(device.is_cuda(), "device_memory_info: " << device.str() << " is not a CUDA device");
#if LOCKSTEP_HAVE_CUDA
  return cuda::memory_info(device.index);
#else
  throw_no_cuda_backend("device_memory_info");
#endif
}

}  // namespace lockstep
