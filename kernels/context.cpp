// Context construction and the workspace; CUDA streams and handles come from kernels/cuda.
#include "kernels/context.h"

#include "kernels/dispatch.h"
#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/runtime.h"
#endif

namespace lockstep {

#if !LOCKSTEP_HAVE_CUDA
struct CudaState {};  // never created without the CUDA backend; complete so unique_ptr can delete
#endif

Context::Context(Device device, uint64_t seed, ContextLibraries libraries) : device_(device), seed_(seed) {
  if (device.is_cpu()) return;
#if LOCKSTEP_HAVE_CUDA
  const GpuStatus& g = gpu_status();
  LS_CHECK(g.available, "cannot use " << device.str() << ": " << g.reason);
  LS_CHECK(device.index < g.count, "cannot use " << device.str() << ": only " << g.count
                                                 << " GPU(s) present");
  cuda_ = cuda::make_state(device.index, libraries == ContextLibraries::all);
#else
  (void)libraries;
  throw_no_cuda_backend("Context");
#endif
}

Context::~Context() {
#if LOCKSTEP_HAVE_CUDA
  if (cuda_) {
    try {
      cuda::synchronize(*cuda_);
    } catch (...) {
      // a destructor must not throw; the error was already reported by whoever queued the work
    }
    workspace_ = Buffer();
    cuda::destroy_state(cuda_.get());
  }
#endif
}

void Context::reserve_workspace(size_t bytes) {
  if (bytes <= workspace_.bytes()) return;
  synchronize();  // queued work may still read the old workspace
  workspace_ = Buffer(device_, bytes);
}

void Context::synchronize() {
#if LOCKSTEP_HAVE_CUDA
  if (cuda_) cuda::synchronize(*cuda_);
#endif
}

void Context::make_current() {
#if LOCKSTEP_HAVE_CUDA
  if (cuda_) cuda::set_device(cuda_->device);
#endif
}

CudaState& Context::cuda() const {
  LS_CHECK(cuda_ != nullptr, "Context on " << device_.str() << " has no CUDA state");
  return *cuda_;
}

}  // namespace lockstep
