// PhaseTimer: where the time of a training step goes, for `lockstep bench train`'s breakdown.
// A Worker holds a pointer to one (Worker::set_phase_timer; null, the default, times nothing and
// costs one branch per phase). The step's code calls mark() where a step's timed work begins and
// lap(phase) where each phase ends: the wall time since the previous mark or lap goes to that
// phase. Phases are contiguous, so they add up to the step minus what lies outside them (the
// step hook, the learning-rate lookup: microseconds).
//
// Device work is asynchronous, so before each reading of the clock the timer waits for the
// device: the whole context (every stream), except at the end of backward, where it waits for
// the compute stream only. Gradient buckets still being exchanged on the comm stream then count
// as exposed communication (the lap after the sync strategy's finish()), not as backward. These
// waits slow a step down: time the headline figure with no timer set and profile separate steps
// (lockstep bench train does both). On a CPU context the waits are no-ops; there every bucket
// exchange runs on the worker's own thread inside backward, and "comm" is what finish() adds.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace lockstep {
class Context;
class Event;
}  // namespace lockstep

namespace lockstep::engine {

// In the order a step runs them.
enum class Phase { data, h2d, forward, backward, comm, optimizer };
inline constexpr int kPhaseCount = 6;
inline constexpr std::array<Phase, kPhaseCount> kPhases = {Phase::data,     Phase::h2d,  Phase::forward,
                                                           Phase::backward, Phase::comm, Phase::optimizer};
// "data", "h2d", "forward", "backward", "comm", "optimizer" (the JSON keys of the bench).
std::string_view phase_name(Phase p);

class PhaseTimer {
 public:
  // Seconds on a monotonic clock; the default is std::chrono::steady_clock (tests pass their own).
  using Clock = std::function<double()>;

  // ctx: the device to wait for at each boundary (null: no waiting, the host clock alone). Make
  // it on the thread that drives ctx, after ctx.make_current() (its CUDA event is created there).
  explicit PhaseTimer(Context* ctx = nullptr, Clock clock = {});
  ~PhaseTimer();
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  // Waits for the device, then starts counting from now.
  void mark();
  // Waits for the device (compute stream only for backward), then adds the time since the last
  // mark() or lap() to `p` and starts the next phase. Throws if mark() was never called.
  void lap(Phase p);

  // Whether mark() has been called (since construction or reset()): a step's code marks only
  // when nobody has, so whoever installs the timer may start it at an earlier boundary.
  bool started() const { return started_; }
  double seconds(Phase p) const { return seconds_[static_cast<size_t>(p)]; }
  int64_t laps(Phase p) const { return laps_[static_cast<size_t>(p)]; }
  double total_seconds() const;
  // Forgets every lap (the next lap needs a mark() again).
  void reset();

 private:
  void wait(bool compute_only);

  Context* ctx_;
  std::unique_ptr<Event> compute_done_;  // the end of backward on the compute stream
  Clock clock_;
  std::array<double, kPhaseCount> seconds_{};
  std::array<int64_t, kPhaseCount> laps_{};
  double last_ = 0;
  bool started_ = false;
};

}  // namespace lockstep::engine
