// BackupAggregator: the parameter server of `--sync backup --backup-workers b` (Algorithms 3 and 4
// of reference/sync-sgd-lecture.md; Chen et al. 2016, "Revisiting distributed synchronous SGD").
// N + b workers compute gradients of step t on distinct data; the first N gradients tagged t are
// accepted, any other is dropped (late ones of step t, stale ones of earlier steps: never applied
// late); the N-th accepted one triggers the update x <- SGD(x, average of the N), summed in rank
// order and divided by N exactly as an all-reduce average, so with b = 0 it is all-reduce SGD bit
// for bit. Workers then read the parameters of step t + 1; a late worker does not wait for its
// own step: its next read returns the newest parameters at once. Host memory; one lock.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/context.h"
#include "kernels/memory.h"

namespace lockstep::engine {

// How the accepted gradients of a step become the update direction: out = f(their ranks, sorted,
// and their vectors, in that order). The default is their average (summed in rank order, / N).
using Combiner = std::function<void(const std::vector<int>& ranks, const std::vector<const float*>& grads,
                                    float* out, int64_t n)>;

struct BackupOptions {
  int needed = 1;  // N: gradients per update
  Combiner combine;  // empty: the average
  float momentum = 0.9f;
  float weight_decay = 1e-4f;
  bool nesterov = false;
};

class BackupAggregator {
 public:
  BackupAggregator(std::vector<float> init, const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments,
                   int world, const BackupOptions& options, std::function<float(int64_t)> lr);

  // Waits until the parameters after `step` updates exist (or abort()), copies the newest into dst
  // and returns their step (>= `step`).
  int64_t read(int64_t step, float* dst);
  // Offers worker `rank`'s gradient of step `step`; returns whether it was accepted. The N-th
  // accepted gradient of the current step applies the update before push returns.
  bool push(int rank, int64_t step, const float* grad);
  int64_t step() const;
  void abort();  // wakes every reader with lockstep::Error (a failed worker)

  std::vector<int64_t> accepted() const;  // per worker
  std::vector<int64_t> dropped() const;   // per worker
  // Told, under the lock, which ranks each update used (tests record it).
  void set_update_hook(std::function<void(int64_t step, const std::vector<int>& ranks)> hook) {
    hook_ = std::move(hook);
  }

  const std::vector<float>& params() const { return params_; }  // quiescent only
  const std::vector<float>& momentum() const { return momentum_; }
  void restore(std::vector<float> params, std::vector<float> momentum, int64_t step);

 private:
  void apply();  // under m_

  BackupOptions opt_;
  std::function<float(int64_t)> lr_;
  int world_;
  std::vector<float> params_, momentum_, sum_;
  std::vector<std::vector<float>> slots_;  // the accepted gradients of the current step, by rank
  std::vector<int> ranks_;                 // who was accepted, in arrival order (sorted when applied)
  std::vector<const float*> grads_;        // their slots, for the combiner
  Context ctx_{Device::cpu(), 0};
  OwnedTensor decay_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  int64_t step_ = 0;
  bool aborted_ = false;
  std::vector<int64_t> accepted_, dropped_;
  std::function<void(int64_t, const std::vector<int>&)> hook_;
};

}  // namespace lockstep::engine
