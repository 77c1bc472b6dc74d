// Events: CUDA events on a CUDA context, host clock marks on a CPU context.
#include "kernels/event.h"

#include "kernels/dispatch.h"
#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_state.h"
#endif

namespace lockstep {

#if LOCKSTEP_HAVE_CUDA
using cuda::stream_of;
#endif

Event::Event(Context& ctx, bool timing) {
  if (!ctx.is_cuda()) return;
#if LOCKSTEP_HAVE_CUDA
  device_ = ctx.device().index;
  // An event belongs to the device current when it is made, and may only be recorded on that
  // device's streams: a Reducer built on the main thread for rank r must not take the last
  // worker's GPU.
  DeviceScope scope(ctx.device());
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  event_ = e;
#else
  (void)timing;
  throw_no_cuda_backend("Event");
#endif
}

Event::~Event() {
#if LOCKSTEP_HAVE_CUDA
  if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
#endif
}

void Event::record(Context& ctx, Stream stream) {
  if (!event_) {
    host_time_ = std::chrono::steady_clock::now();
    return;
  }
#if LOCKSTEP_HAVE_CUDA
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), stream_of(ctx, stream)));
#endif
}

void Event::wait(Context& ctx, Stream waiter) const {
  if (!event_) return;
#if LOCKSTEP_HAVE_CUDA
  CUDA_CHECK(cudaStreamWaitEvent(stream_of(ctx, waiter), static_cast<cudaEvent_t>(event_), 0));
#endif
}

void Event::synchronize() const {
  if (!event_) return;
#if LOCKSTEP_HAVE_CUDA
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
#endif
}

float Event::elapsed_ms(const Event& start) const {
  if (!event_) return std::chrono::duration<float, std::milli>(host_time_ - start.host_time_).count();
#if LOCKSTEP_HAVE_CUDA
  float ms = 0.f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.event_), static_cast<cudaEvent_t>(event_)));
  return ms;
#else
  return 0.f;
#endif
}

}  // namespace lockstep
