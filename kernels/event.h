// Ordering between a context's streams (compute, comm, copy) and device-side timing, without
// CUDA headers above kernels/. On a CPU context every stream is the calling thread, so record,
// wait and synchronize are no-ops and elapsed times come from the host clock.
#pragma once

#include <chrono>

#include "kernels/context.h"

namespace lockstep {

enum class Stream { compute, comm, copy };

class Event {
 public:
  // timing: the event can measure elapsed time (CUDA events without timing are cheaper).
  Event(Context& ctx, bool timing = false);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Marks the point reached by `stream`'s queued work.
  void record(Context& ctx, Stream stream);
  // Work queued on `waiter` after this call starts only after the recorded point is reached.
  void wait(Context& ctx, Stream waiter) const;
  // Blocks the host until the recorded point is reached.
  void synchronize() const;
  // Milliseconds from `start` to this event (both recorded, both timing events).
  float elapsed_ms(const Event& start) const;

 private:
  void* event_ = nullptr;  // cudaEvent_t on CUDA
  int device_ = -1;
  std::chrono::steady_clock::time_point host_time_{};
};

}  // namespace lockstep
