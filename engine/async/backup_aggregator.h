// BackupAggregator: the parameter server of `--sync backup --backup-workers b` (Algorithms 3 and 4
// of reference/sync-sgd-lecture.md; Chen et al. 2016, "Revisiting distributed synchronous SGD").
// N + b workers compute gradients of step t on distinct data; the first N gradients tagged t are
// accepted, any other is dropped (late ones of step t, stale ones of earlier steps: never applied
// late); the N-th accepted one triggers the update x <- SGD(x, average of the N), summed in rank
// order and divided by N exactly as an all-reduce average, so with b = 0 it is all-reduce SGD bit
// for bit. Workers then read the parameters of step t + 1; a late worker does not wait for its
// own step: its next read returns the newest parameters at once. One lock decides; the state is
// cut into one shard per device of `devices` (the workers' GPUs, or host memory for CPU
// workers), each holding its slice of the parameters, momentum and every worker's gradient slot
// and doing its slice of the update on its own stream (engine/async/shard_link.h: peer copies
// ordered by events, no host wait).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <mutex>
#include <utility>
#include <vector>

#include "engine/async/shard_link.h"
#include "kernels/context.h"
#include "kernels/memory.h"

namespace lockstep::engine {

// How the accepted gradients of a step become the update direction: the coefficients of their
// weighted sum (kernels/combine.h), given their ranks sorted. Empty: their average (summed in rank
// order, / N).
using Decoder = std::function<std::vector<double>(const std::vector<int>& ranks)>;

struct BackupOptions {
  int needed = 1;  // N: gradients per update
  Decoder decode;  // empty: the average
  float momentum = 0.9f;
  float weight_decay = 1e-4f;
  bool nesterov = false;
};

class BackupAggregator {
 public:
  BackupAggregator(std::vector<float> init, const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments,
                   int world, const BackupOptions& options, std::function<float(int64_t)> lr,
                   const std::vector<Device>& devices = {Device::cpu()});
  ~BackupAggregator();

  // Waits until the parameters after `step` updates exist (or abort()), copies the newest into dst
  // (P f32 on the worker's context `ctx`: its device or the host; ordered as ParameterServer::read)
  // and returns their step (>= `step`).
  int64_t read(Context& ctx, int64_t step, Tensor& dst);
  // Offers worker `rank`'s gradient of step `step` (P f32 on ctx's device or the host); returns
  // whether it was accepted. The N-th accepted gradient of the current step applies the update
  // (queued on the shards' devices) before push returns.
  bool push(Context& ctx, int rank, int64_t step, const Tensor& grad);
  // The same with host memory (P floats), done on return.
  int64_t read(int64_t step, float* dst);
  bool push(int rank, int64_t step, const float* grad);
  int64_t step() const;
  void abort();  // wakes every reader with lockstep::Error (a failed worker)

  std::vector<int64_t> accepted() const;  // per worker
  std::vector<int64_t> dropped() const;   // per worker
  // Told, under the lock, which ranks each update used (tests record it).
  void set_update_hook(std::function<void(int64_t step, const std::vector<int>& ranks)> hook) {
    hook_ = std::move(hook);
  }

  // Host copies of the state (quiescent only); momentum is empty without momentum.
  std::vector<float> params() const;
  std::vector<float> momentum() const;
  void restore(std::vector<float> params, std::vector<float> momentum, int64_t step);
  // "host memory", or each GPU with its shard.
  std::string placement() const { return links_.placement(static_cast<int>(shards_.size())); }

 private:
  struct Shard;
  void apply();  // under m_
  std::vector<float> gather(bool momentum) const;

  BackupOptions opt_;
  std::function<float(int64_t)> lr_;
  int64_t n_ = 0;
  ShardLinks links_;
  Context host_ctx_{Device::cpu(), 0};      // the host side of the float* read / push
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<int> ranks_;                 // who was accepted, in arrival order (sorted when applied)
  std::vector<Tensor> inputs_;             // the accepted slots of one shard, for combine_gradients
  mutable std::mutex m_;
  std::condition_variable cv_;
  int64_t step_ = 0;
  bool aborted_ = false;
  std::vector<int64_t> accepted_, dropped_;
  std::function<void(int64_t, const std::vector<int>&)> hook_;
};

}  // namespace lockstep::engine
