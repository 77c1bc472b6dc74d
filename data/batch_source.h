// BatchSource: the seam between the trainer and where samples come from (synthetic data now,
// the ImageNet loader later). A source yields host batches of u8 NHWC images and i32 labels in an
// order that is a pure function of (seed, epoch) (ARCHITECTURE decision 9); the worker moves them
// to its device. `count` < N marks the last, partial batch of an evaluation pass.
#pragma once

#include <string>
#include <vector>

#include <cstdint>

#include "kernels/tensor.h"

namespace lockstep::data {

struct HostBatch {
  Tensor images;   // u8 (N, H, W, 3), host memory owned by the source (pinned where it can)
  Tensor labels;   // i32 (N)
  Tensor flips;    // u8 (N): mirror sample n; may be undefined (no flips)
  int count = 0;   // valid samples, from the front
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t batches_per_epoch() const = 0;
  // Positions the source at batch `position` of `epoch` (a resumed run); batches follow in a
  // fixed order, so the rest of the epoch is what an uninterrupted run would have seen.
  virtual void start_epoch(int64_t epoch, int64_t position) = 0;
  void start_epoch(int64_t epoch) { start_epoch(epoch, 0); }
  // The next batch of the epoch; the tensors stay valid until the next call.
  virtual const HostBatch& next() = 0;
  // Seconds next() has spent waiting for batches so far (0 for sources that never wait).
  virtual double wait_seconds() const { return 0; }
  // Unreadable samples skipped so far (--bad-images skip) and the first of them as "path: reason"
  // (none for sources that read no files).
  virtual int64_t bad_samples() const { return 0; }
  virtual std::vector<std::string> bad_sample_paths() const { return {}; }
};

}  // namespace lockstep::data
