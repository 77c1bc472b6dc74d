// ParameterServer: the in-process parameter server of `--sync async` (Algorithm 2 of
// reference/sync-sgd-lecture.md). It holds the master parameters, the momentum and the moving
// average, cut into shards that each have their own lock, so pushes from several workers apply to
// different shards at once. Shard j lives on devices[j % devices.size()]: host memory for CPU
// workers, the workers' GPUs for GPU workers (engine/async/shard_link.h moves the slices: peer
// copies between GPUs, ordered by events, no host wait). Every gradient pushed is applied exactly once, as it
// arrives (none is dropped), with the same SGD arithmetic as a worker's optimizer (kernels'
// sgd_update on the shard: weight decay on the same segments, PyTorch's momentum convention), so
// one worker against the server is plain SGD bit for bit.
//
// Versions: read() returns how many updates had been started when it read; push() takes the next
// update index u (the learning rate is lr(u)) and its staleness is u - read version, the number of
// updates between the worker's read and its update. A read concurrent with a push may see some
// shards before and some after it (asynchronous SGD's usual inconsistent read); under a fixed
// interleaving (engine/async/interleaving.h) reads and pushes never overlap.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/async/shard_link.h"
#include "kernels/context.h"
#include "kernels/memory.h"

namespace lockstep::engine {

struct ParameterServerOptions {
  int shards = 4;
  float momentum = 0.9f;
  float weight_decay = 1e-4f;
  bool nesterov = false;
  double ema = 0;             // decay alpha of the moving average; 0 = none kept
  bool staleness_lr = false;  // lr / (staleness + 1)
};

struct StalenessStats {
  std::vector<int64_t> histogram;  // histogram[s]: updates applied with staleness s
  int64_t updates = 0;
  int64_t sum = 0;
  int64_t max = 0;
  double mean() const { return updates ? static_cast<double>(sum) / static_cast<double>(updates) : 0.0; }
  void add(int64_t s);
  StalenessStats since(const StalenessStats& earlier) const;  // the updates after `earlier`
};

class ParameterServer {
 public:
  // `init` is the starting model (P floats); decay_segments the [begin, end) element ranges that
  // get weight decay (engine/optimizer.h's); `lr` maps an update index to its learning rate.
  // `devices`: where the shards live, in turn (default: host memory).
  ParameterServer(std::vector<float> init, const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments,
                  const ParameterServerOptions& options, std::function<float(int64_t)> lr,
                  const std::vector<Device>& devices = {Device::cpu()});
  ~ParameterServer();

  int64_t size() const { return n_; }
  // Copies the parameters into dst (P f32 on the worker's device or the host; ctx: the worker's
  // context, whose queued work the copy follows and whose later work waits for it); returns the
  // version read.
  int64_t read(Context& ctx, Tensor& dst);
  // Applies a gradient (P f32, already averaged over the worker's batch, on ctx's device or the
  // host) computed on the parameters of version `read_version`; returns the update's staleness.
  // The worker may overwrite grad once its context's next work runs (it waits for the copy).
  int64_t push(Context& ctx, const Tensor& grad, int64_t read_version);
  // The same with host memory (P floats), done on return.
  int64_t read(float* dst);
  int64_t push(const float* grad, int64_t read_version);

  int64_t updates() const;          // updates applied (completed)
  StalenessStats staleness() const;
  // The moving average (P floats); the parameters themselves when no average is kept.
  void read_ema(float* dst);
  bool has_ema() const { return opt_.ema > 0; }
  // "host memory", or each GPU with its shards and whether they reach each other directly.
  std::string placement() const { return links_.placement(static_cast<int>(shards_.size())); }

  // Checkpoints: the whole state as host copies, and putting it back (quiescent server only).
  std::vector<float> params() const;
  std::vector<float> momentum() const;  // empty without momentum
  std::vector<float> ema() const;       // empty without a moving average
  void restore(std::vector<float> params, std::vector<float> momentum, std::vector<float> ema, int64_t updates);

 private:
  struct Shard;
  std::vector<float> gather(OwnedTensor Shard::*part) const;
  ParameterServerOptions opt_;
  std::function<float(int64_t)> lr_;
  int64_t n_ = 0;
  ShardLinks links_;
  Context host_ctx_{Device::cpu(), 0};  // the host side of read(float*) / push(const float*)
  std::vector<std::unique_ptr<Shard>> shards_;
  mutable std::mutex meta_;  // started_, completed_, stats_
  int64_t started_ = 0, completed_ = 0;
  StalenessStats stats_;
};

}  // namespace lockstep::engine
