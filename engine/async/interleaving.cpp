// The fixed interleaving of `--sync async --async-round-robin`: see interleaving.h.
#include "engine/async/interleaving.h"

#include "kernels/error.h"

namespace lockstep::engine {

std::vector<AsyncEvent> round_robin_events(int world, int64_t steps) {
  std::vector<AsyncEvent> e;
  for (int r = 0; r < world; ++r) e.push_back({AsyncEvent::Op::read, r});
  for (int64_t j = 0; j < steps; ++j)
    for (int r = 0; r < world; ++r) {
      e.push_back({AsyncEvent::Op::push, r});
      if (j + 1 < steps) e.push_back({AsyncEvent::Op::read, r});
    }
  return e;
}

Interleaving::Interleaving(bool round_robin, int world, int64_t steps_per_epoch) : round_robin_(round_robin) {
  if (round_robin_) events_ = round_robin_events(world, steps_per_epoch);
}

void Interleaving::wait(AsyncEvent::Op op, int rank) {
  if (!round_robin_) return;
  std::unique_lock<std::mutex> lock(m_);
  const AsyncEvent want{op, rank};
  cv_.wait(lock, [&] { return aborted_ || (next_ < events_.size() && events_[next_] == want); });
  if (aborted_) throw Error("async: stopped because another worker failed");
}

void Interleaving::done() {
  if (!round_robin_) return;
  {
    std::lock_guard<std::mutex> lock(m_);
    ++next_;
  }
  cv_.notify_all();
}

void Interleaving::reset() {
  std::lock_guard<std::mutex> lock(m_);
  next_ = 0;
}

void Interleaving::abort() {
  {
    std::lock_guard<std::mutex> lock(m_);
    aborted_ = true;
  }
  cv_.notify_all();
}

}  // namespace lockstep::engine
