// SyntheticSource: a learnable synthetic image-classification problem, deterministic in
// (seed, epoch, sample index). Each class has a fixed random template image; a sample is its
// class's template plus Gaussian pixel noise, clamped to 0..255, with a random horizontal flip.
// Labels are uniform over the classes. With the default noise the classes overlap enough to
// need training and little enough that a small net fits them.
// Sharding: batch b of worker r holds global samples ((b * world + r) * batch + i), so the union of
// the workers' batches b is exactly what one worker with world x batch would see as its batch b.
#pragma once

#include <vector>

#include "data/batch_source.h"
#include "kernels/memory.h"

namespace lockstep::data {

struct SyntheticSpec {
  int classes = 10;
  int image_size = 32;
  int batch = 32;
  int64_t batches_per_epoch = 10;
  uint64_t seed = 0;
  float noise = 48.0f;         // pixel noise standard deviation (0..255 scale)
  bool flips = true;
  uint64_t stream = 0;         // distinct streams (train / val) draw distinct samples
  int rank = 0, world = 1;     // worker `rank` of `world` takes its slice of each global batch
};

class SyntheticSource : public BatchSource {
 public:
  explicit SyntheticSource(const SyntheticSpec& spec);
  int64_t batches_per_epoch() const override { return spec_.batches_per_epoch; }
  using BatchSource::start_epoch;
  void start_epoch(int64_t epoch, int64_t position) override;
  const HostBatch& next() override;
  // The label and pixels of one sample, for tests: the same as it appears in a batch.
  int label_of(int64_t epoch, int64_t index) const;

 private:
  void make_sample(int64_t epoch, int64_t index, uint8_t* pixels, int32_t* label, uint8_t* flip) const;

  SyntheticSpec spec_;
  std::vector<uint8_t> templates_;  // (classes, H, W, 3)
  PinnedBuffer images_, labels_, flips_;
  HostBatch batch_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
};

}  // namespace lockstep::data
