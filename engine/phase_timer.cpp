#include "engine/phase_timer.h"

#include <chrono>
#include <numeric>

#include "kernels/context.h"
#include "kernels/error.h"
#include "kernels/event.h"

namespace lockstep::engine {

std::string_view phase_name(Phase p) {
  switch (p) {
    case Phase::data: return "data";
    case Phase::h2d: return "h2d";
    case Phase::forward: return "forward";
    case Phase::backward: return "backward";
    case Phase::comm: return "comm";
    case Phase::optimizer: return "optimizer";
  }
  return "?";
}

PhaseTimer::PhaseTimer(Context* ctx, Clock clock) : ctx_(ctx), clock_(std::move(clock)) {
  if (!clock_)
    clock_ = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  if (ctx_ && ctx_->is_cuda()) compute_done_ = std::make_unique<Event>(*ctx_);
}

PhaseTimer::~PhaseTimer() = default;

void PhaseTimer::wait(bool compute_only) {
  if (!ctx_) return;
  if (compute_only && compute_done_) {
    compute_done_->record(*ctx_, Stream::compute);
    compute_done_->synchronize();
  } else {
    ctx_->synchronize();
  }
}

void PhaseTimer::mark() {
  wait(false);
  last_ = clock_();
  started_ = true;
}

void PhaseTimer::lap(Phase p) {
  LS_CHECK(started_, "PhaseTimer: lap(" << phase_name(p) << ") before mark()");
  wait(p == Phase::backward);
  const double now = clock_();
  seconds_[static_cast<size_t>(p)] += now - last_;
  ++laps_[static_cast<size_t>(p)];
  last_ = now;
}

double PhaseTimer::total_seconds() const { return std::accumulate(seconds_.begin(), seconds_.end(), 0.0); }

void PhaseTimer::reset() {
  seconds_ = {};
  laps_ = {};
  started_ = false;
}

}  // namespace lockstep::engine
