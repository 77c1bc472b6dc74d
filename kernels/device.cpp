// Device parsing and GPU discovery.
#include "kernels/device.h"

#include <charconv>

#include "kernels/dispatch.h"  // throw_no_cuda_backend
#include "kernels/dtype.h"
#include "kernels/error.h"
#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace lockstep {

Device Device::parse(std::string_view text) {
  if (text == "cpu") return cpu();
  if (text == "cuda" || text == "gpu") return cuda(0);
  if (text.starts_with("cuda:")) {
    std::string_view num = text.substr(5);
    int i = -1;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), i);
    if (ec == std::errc() && p == num.data() + num.size() && i >= 0) return cuda(i);
  }
  throw Error("unknown device '" + std::string(text) + "' (expected cpu, cuda or cuda:N)");
}

DType parse_dtype(std::string_view text) {
  if (text == "f32" || text == "fp32") return DType::f32;
  if (text == "bf16") return DType::bf16;
  if (text == "f16" || text == "fp16") return DType::f16;
  throw Error("unknown precision '" + std::string(text) + "' (expected fp32, bf16 or fp16)");
}

bool cuda_backend_built() { return LOCKSTEP_HAVE_CUDA != 0; }

const GpuStatus& gpu_status() {
  static const GpuStatus status = [] {
#if LOCKSTEP_HAVE_CUDA
    return cuda::probe_gpus();
#else
    GpuStatus s;
    s.reason = "lockstep was built without the CUDA backend (LOCKSTEP_CUDA found no toolkit)";
    return s;
#endif
  }();
  return status;
}

DeviceScope::DeviceScope(Device device) {
  if (!device.is_cuda()) return;
#if LOCKSTEP_HAVE_CUDA
  previous_ = cuda::current_device();
  cuda::set_device(device.index);
#else
  throw_no_cuda_backend("DeviceScope");
#endif
}

DeviceScope::~DeviceScope() {
#if LOCKSTEP_HAVE_CUDA
  if (previous_ >= 0) cuda::set_device_noexcept(previous_);
#endif
}

bool enable_peer_access(Device a, Device b) {
  if (!a.is_cuda() || !b.is_cuda()) return false;
  if (a == b) return true;
#if LOCKSTEP_HAVE_CUDA
  return cuda::enable_peer_access(a.index, b.index);
#else
  throw_no_cuda_backend("enable_peer_access");
#endif
}

void throw_no_cuda_backend(const char* op) {
  throw Error(std::string(op) + ": this build of lockstep has no CUDA backend; rebuild with "
              "-DLOCKSTEP_CUDA=ON on a machine with the CUDA toolkit, cuDNN 9 and NCCL 2");
}

}  // namespace lockstep
