// Timing of one convolution direction for the measured algorithm search (conv_timing.h).
#include "kernels/cuda/conv_timing.h"

#include <cuda_runtime.h>

#include "kernels/cuda/check.h"

namespace lockstep::cuda {

namespace {

// Two CUDA events, destroyed on every path out.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~EventPair() {
    cudaEventDestroy(stop);
    cudaEventDestroy(start);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
};

}  // namespace

float time_runs(cudaStream_t stream, const std::function<cudnnStatus_t()>& run) {
  constexpr float kNever = std::numeric_limits<float>::infinity();
  if (run() != CUDNN_STATUS_SUCCESS) return kNever;  // the untimed first call
  CUDA_CHECK(cudaStreamSynchronize(stream));
  EventPair ev;
  float best = kNever;
  for (int i = 0; i < kTimedRuns; ++i) {
    CUDA_CHECK(cudaEventRecord(ev.start, stream));
    if (run() != CUDNN_STATUS_SUCCESS) return kNever;
    CUDA_CHECK(cudaEventRecord(ev.stop, stream));
    CUDA_CHECK(cudaEventSynchronize(ev.stop));
    float ms = 0.f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, ev.start, ev.stop));
    best = std::min(best, ms);
  }
  return best;
}

}  // namespace lockstep::cuda
