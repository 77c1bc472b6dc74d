#include "engine/schedule.h"

#include <cmath>
#include <numbers>
#include <sstream>

#include "kernels/error.h"

namespace lockstep::engine {

std::string_view schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::step: return "step";
    case ScheduleKind::cosine: return "cosine";
    case ScheduleKind::poly: return "poly";
  }
  return "?";
}

ScheduleKind parse_schedule(std::string_view text) {
  if (text == "step") return ScheduleKind::step;
  if (text == "cosine") return ScheduleKind::cosine;
  if (text == "poly") return ScheduleKind::poly;
  throw Error("unknown schedule '" + std::string(text) + "' (expected step, cosine or poly)");
}

int64_t updates_per_epoch(int64_t micro_batches, int accumulate) {
  LS_CHECK(accumulate >= 1, "accumulate must be >= 1 (got " << accumulate << ")");
  int64_t u = micro_batches / accumulate;
  LS_CHECK(u >= 1, "an epoch of " << micro_batches << " micro-batches holds no full update of "
                                  << accumulate << " accumulated micro-batches");
  return u;
}

LrSchedule::LrSchedule(const ScheduleConfig& c) : c_(c) {
  LS_CHECK(std::isfinite(c.base_lr) && c.base_lr >= 0, "base lr must be finite and >= 0 (got " << c.base_lr << ")");
  LS_CHECK(c.global_batch >= 1, "global batch must be >= 1 (got " << c.global_batch << ")");
  LS_CHECK(c.epochs >= 1, "epochs must be >= 1 (got " << c.epochs << ")");
  LS_CHECK(c.updates_per_epoch >= 1, "updates per epoch must be >= 1 (got " << c.updates_per_epoch << ")");
  LS_CHECK(std::isfinite(c.warmup_epochs) && c.warmup_epochs >= 0 && c.warmup_epochs <= c.epochs,
           "warmup epochs must be in [0, epochs=" << c.epochs << "] (got " << c.warmup_epochs << ")");
  LS_CHECK(std::isfinite(c.poly_power) && c.poly_power > 0, "poly power must be > 0 (got " << c.poly_power << ")");

  peak_ = c.lr_scaling ? c.base_lr * static_cast<double>(c.global_batch) / 256.0 : c.base_lr;
  total_ = static_cast<int64_t>(c.epochs) * c.updates_per_epoch;
  warmup_ = std::llround(c.warmup_epochs * static_cast<double>(c.updates_per_epoch));
  if (warmup_ > total_) warmup_ = total_;
  // Warmup ramps from --base-lr up to the scaled rate. When the scaled rate is not above it there
  // is nothing to ramp, and a flat "warmup" would only hold back the decay (a run no longer than
  // the default 5 epochs would never decay at all).
  if (warmup_start() >= peak_) warmup_ = 0;
  if (c.kind == ScheduleKind::step) {
    for (int m : {30, 60, 80}) {
      int e = static_cast<int>(std::lround(c.epochs * m / 90.0));
      milestones_.push_back(e < 1 ? 1 : e);
    }
  }
}

float LrSchedule::lr(int64_t t) const {
  LS_CHECK(t >= 0, "lr asked for a negative update index " << t);
  if (t > total_) t = total_;
  if (t < warmup_) return static_cast<float>(warmup_start() + (peak_ - warmup_start()) * double(t) / double(warmup_));
  switch (c_.kind) {
    case ScheduleKind::step: {
      int64_t epoch = t / c_.updates_per_epoch;
      double v = peak_;
      for (int m : milestones_)
        if (epoch >= m) v *= 0.1;
      return static_cast<float>(v);
    }
    case ScheduleKind::cosine:
    case ScheduleKind::poly: {
      if (total_ == warmup_) return static_cast<float>(peak_);
      double x = double(t - warmup_) / double(total_ - warmup_);  // progress after warmup, [0, 1]
      if (c_.kind == ScheduleKind::cosine)
        return static_cast<float>(peak_ * 0.5 * (1.0 + std::cos(std::numbers::pi * x)));
      return static_cast<float>(peak_ * std::pow(1.0 - x, c_.poly_power));
    }
  }
  return 0;
}

std::string LrSchedule::describe() const {
  std::ostringstream os;
  if (c_.lr_scaling)
    os << "lr " << c_.base_lr << " x " << c_.global_batch << "/256 = " << peak_ << " (linear scaling)";
  else
    os << "lr " << peak_ << " (no scaling, global batch " << c_.global_batch << ")";
  if (warmup_ > 0)
    os << "; warmup " << c_.warmup_epochs << " epochs (" << warmup_ << " updates) from " << warmup_start();
  os << "; then " << schedule_name(c_.kind);
  if (c_.kind == ScheduleKind::step) {
    os << " /10 at epochs";
    for (size_t i = 0; i < milestones_.size(); ++i) os << (i ? ", " : " ") << milestones_[i];
  } else if (c_.kind == ScheduleKind::poly) {
    os << " power " << c_.poly_power;
  }
  os << "; " << c_.updates_per_epoch << " updates/epoch, " << total_ << " updates";
  return os.str();
}

}  // namespace lockstep::engine
