// The large-batch learning-rate driver (Goyal et al., "Accurate, Large Minibatch SGD") and the
// LARS trust ratio (You et al.), as pure functions of the update index: no state, so a resumed
// run asks for lr(update) and gets exactly what an uninterrupted one would have used.
//
// The schedule counts optimizer updates, not micro-batches: with --accumulate K one update
// consumes K micro-batches per worker, and the global batch is workers x batch x K.
//
//   peak      = base_lr * global_batch / 256         (linear scaling; base_lr when scaling is off)
//   W         = round(warmup_epochs * updates_per_epoch)   warmup updates
//   T         = epochs * updates_per_epoch                 total updates
//   t < W     : s + (peak - s) * t / W with s = min(base_lr, peak)   (gradual warmup, every
//               update; flat when the peak is not above base_lr)
//   t >= W    : step   : peak * 0.1^(milestones passed by epoch t / updates_per_epoch), the
//                        milestones 30, 60, 80 of 90 epochs scaled to `epochs`:
//                        max(1, round(epochs * m / 90)); one at or past `epochs` never fires
//               cosine : peak * 0.5 * (1 + cos(pi * (t - W) / (T - W)))
//               poly   : peak * (1 - (t - W) / (T - W))^power
//   t >= T    : the value at T (0 for cosine and poly)
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::engine {

enum class ScheduleKind { step, cosine, poly };

std::string_view schedule_name(ScheduleKind k);  // "step", "cosine", "poly"
// Parses the names above; throws lockstep::Error naming the text otherwise.
ScheduleKind parse_schedule(std::string_view text);

struct ScheduleConfig {
  double base_lr = 0.1;
  int64_t global_batch = 256;      // workers x batch x accumulate
  bool lr_scaling = true;          // linear scaling rule
  double warmup_epochs = 5;
  int epochs = 90;
  int64_t updates_per_epoch = 1;   // optimizer updates, not micro-batches
  ScheduleKind kind = ScheduleKind::step;
  double poly_power = 2.0;
};

// Optimizer updates in an epoch of `micro_batches` micro-batches per worker, K per update. A
// trailing partial accumulation is dropped. Throws lockstep::Error when that leaves none.
int64_t updates_per_epoch(int64_t micro_batches, int accumulate);

class LrSchedule {
 public:
  // Throws lockstep::Error on a config the formulas cannot serve (non-positive sizes, negative
  // or non-finite rates, warmup longer than training).
  explicit LrSchedule(const ScheduleConfig& c);

  float lr(int64_t update) const;  // the rate for the update with this 0-based index
  // Warmup ramps up from base_lr to the peak; when scaling makes the peak smaller than base_lr
  // (a global batch under 256) there is nothing to warm up to and the ramp is flat at the peak.
  double warmup_start() const { return std::min(c_.base_lr, peak_); }
  float peak() const { return static_cast<float>(peak_); }
  int64_t warmup_updates() const { return warmup_; }
  int64_t total_updates() const { return total_; }
  const std::vector<int>& milestones() const { return milestones_; }  // step: decay epochs
  const ScheduleConfig& config() const { return c_; }
  // One line: "lr 0.1 x 8192/256 = 3.2 (linear scaling); warmup 5 epochs (250 updates) from
  // 0.1; then step /10 at epochs 30, 60, 80; 50 updates/epoch, 4500 updates".
  std::string describe() const;

 private:
  ScheduleConfig c_;
  double peak_ = 0;
  int64_t warmup_ = 0;
  int64_t total_ = 0;
  std::vector<int> milestones_;
};

}  // namespace lockstep::engine
