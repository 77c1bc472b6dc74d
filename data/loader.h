// Loader: a BatchSource over an ImageNet-style folder. Decode threads fill a ring of `prefetch`
// pinned NHWC u8 batches ahead of the worker; the worker's wait for a batch is measured.
// Determinism (ARCHITECTURE decision 9): the epoch's sample order is a permutation that is a pure
// function of (seed, epoch); worker `rank` of `world` takes the samples at positions
// rank, rank + world, ... of each global batch (so shards are disjoint and cover the epoch);
// augmentation draws from (seed, epoch, sample index). Thread count and timing never change what
// a batch holds, and start_epoch(epoch, position) resumes mid-epoch exactly.
// Train drops the last partial global batch; val (no shuffle, centre crops) covers every image
// exactly once across workers, its last batch partial (`count` < batch) where it must be.
// Bad images: `skip` counts and logs them by path and fills the slot with the next good sample of
// the same shard (deterministically); `fail` throws at the first. More than max_bad_fraction of an
// epoch bad stops the run with the list.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/batch_source.h"
#include "data/image_folder.h"

namespace lockstep::data {

enum class BadImagePolicy { skip, fail };

struct LoaderConfig {
  bool train = true;         // random-resized crop + flip, shuffled; false: val centre crop, in order
  int image_size = 224;
  int batch = 32;            // per worker
  int rank = 0, world = 1;
  uint64_t seed = 0;
  int threads = 1;           // decode threads
  int prefetch = 4;          // batches decoded ahead
  BadImagePolicy bad_images = BadImagePolicy::skip;
  double max_bad_fraction = 0.01;
  AugmentSpec augment;
};

struct LoaderStats {
  double wait_seconds = 0;   // time next() spent waiting for a batch
  int64_t batches = 0;
  int64_t images = 0;
  int64_t bad_images = 0;
  std::vector<std::string> bad_paths;  // capped at the first 100
};

class Loader : public BatchSource {
 public:
  Loader(FolderIndex index, const LoaderConfig& config);
  ~Loader() override;  // stops and joins the threads

  int64_t batches_per_epoch() const override;
  using BatchSource::start_epoch;
  void start_epoch(int64_t epoch, int64_t position) override;
  const HostBatch& next() override;
  double wait_seconds() const override { return stats().wait_seconds; }
  int64_t bad_samples() const override { return stats().bad_images; }
  std::vector<std::string> bad_sample_paths() const override { return stats().bad_paths; }

  const FolderIndex& index() const;
  LoaderStats stats() const;
  // The sample indices (into index().samples) of this worker's batch `b` of `epoch`, for tests.
  std::vector<int64_t> batch_samples(int64_t epoch, int64_t b) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::data
