// Dynamic loss scaling for fp16 (Micikevicius et al.): the loss gradient is multiplied by
// `scale` so small fp16 gradients survive; a step whose gradients overflow is skipped and the
// scale halved; after `growth_interval` clean steps in a row the scale doubles.
#pragma once

#include <cstdint>

namespace lockstep::engine {

class LossScaler {
 public:
  explicit LossScaler(bool enabled, float initial = 65536.f, int growth_interval = 2000)
      : enabled_(enabled), scale_(enabled ? initial : 1.f), growth_interval_(growth_interval) {}

  float scale() const { return scale_; }
  bool enabled() const { return enabled_; }
  int64_t skipped() const { return skipped_; }
  // Records one step's outcome; returns whether the step may be applied.
  bool update(bool overflow) {
    if (!enabled_) return true;
    if (overflow) {
      scale_ = scale_ > 1.f ? scale_ * 0.5f : 1.f;
      clean_ = 0;
      ++skipped_;
      return false;
    }
    if (++clean_ >= growth_interval_) {
      scale_ *= 2.f;
      clean_ = 0;
    }
    return true;
  }
  // For checkpoints.
  int clean_steps() const { return clean_; }
  void restore(float scale, int clean, int64_t skipped) {
    scale_ = scale;
    clean_ = clean;
    skipped_ = skipped;
  }

 private:
  bool enabled_;
  float scale_;
  int growth_interval_;
  int clean_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace lockstep::engine
