// Worker: one device's share of training. It owns the Context (device, streams, handles), a model
// replica, the optimizer state, its batch sources (its shard of the data) and the device buffers
// of a batch, and runs micro-batches (next batch -> upload -> normalize -> forward -> loss ->
// backward) and updates. Loss, top-1 and top-5 are
// accumulated on the device and read back only when asked (every --log-every steps).
// One Worker per thread; the multi-worker engine gives each its own.
#pragma once

#include <memory>

#include "data/batch_source.h"
#include "engine/comm/communicator.h"
#include "engine/loss_scaler.h"
#include "engine/optimizer.h"
#include "engine/phase_timer.h"
#include "kernels/normalize.h"
#include "nets/resnet.h"

namespace lockstep::engine {

using data::BatchSource;
using data::HostBatch;

struct WorkerOptions {
  nets::ModelOptions model;
  OptimizerConfig optimizer;
  float label_smoothing = 0.f;
  Normalization normalization = Normalization::imagenet();
  uint64_t seed = 0;
  bool zero_init_residual = true;
};

struct Stats {
  double loss_sum = 0, top1 = 0, top5 = 0;
  int64_t samples = 0;
  double loss() const { return samples ? loss_sum / samples : 0; }
  double top1_acc() const { return samples ? top1 / samples : 0; }
  double top5_acc() const { return samples ? top5 / samples : 0; }
};

class Worker {
 public:
  Worker(Device device, const WorkerOptions& options);

  // Where this worker's batches come from: training and (optionally) validation.
  void set_sources(std::unique_ptr<BatchSource> train, std::unique_ptr<BatchSource> val);
  BatchSource* train_source() { return train_.get(); }
  BatchSource* val_source() { return val_.get(); }
  // Trains on the next batch of the training source (see forward_backward).
  void train_micro_batch(bool accumulate, float loss_grad_scale);
  // Evaluates the whole validation source (the same samples every time); returns its stats.
  Stats evaluate_all();

  // One micro-batch of training. loss_grad_scale multiplies d(sum of sample losses)/dlogits:
  // loss scale / (samples per update) gives the mean over the update's samples.
  void forward_backward(const HostBatch& batch, bool accumulate, float loss_grad_scale);
  // Applies one update at lr. grad_scale unscales the accumulated gradients (1 / loss scale).
  // Returns false when fp16 gradients overflowed and the step was skipped.
  bool update(float lr, float grad_scale);
  // Evaluation of one batch (its first `count` samples) with the running BN statistics.
  void evaluate(const HostBatch& batch);

  // Sums `s` over the workers of `comm` (a small device round trip; at log time only).
  Stats all_reduce_stats(Communicator& comm, const Stats& s);
  Stats take_train_stats() { return take(train_stats_, train_samples_); }
  Stats take_eval_stats() { return take(eval_stats_, eval_samples_); }
  // The training sums not yet read back, left in place (a checkpoint saves them), and putting
  // them back (a resumed run): the first logged window then averages the same steps.
  Stats pending_train_stats() { return peek(train_stats_, train_samples_); }
  void restore_train_stats(const Stats& s);

  // Times the phases of training steps (engine/phase_timer.h) from now on; null stops timing.
  void set_phase_timer(PhaseTimer* timer) { timer_ = timer; }
  PhaseTimer* phase_timer() const { return timer_; }

  Context& ctx() { return ctx_; }
  nets::Model& model() { return model_; }
  Optimizer& optimizer() { return *optimizer_; }
  LossScaler& loss_scaler() { return scaler_; }

 private:
  const Tensor& upload_and_normalize(const HostBatch& batch);
  Stats peek(const OwnedTensor& stats, int64_t samples);  // the device sums, left in place
  Stats take(OwnedTensor& stats, int64_t& samples);       // the same, then zeroed

  WorkerOptions opt_;
  Context ctx_;
  nets::Model model_;
  std::unique_ptr<Optimizer> optimizer_;
  LossScaler scaler_;
  std::unique_ptr<BatchSource> train_, val_;
  OwnedTensor images_, labels_, flips_;   // device copies of the host batch (u8, i32, u8)
  OwnedTensor input_;                     // normalized (N, H, W, 3), compute dtype
  OwnedTensor dlogits_;                   // (N, classes), compute dtype
  OwnedTensor train_stats_, eval_stats_;  // f32 (3): loss sum, top-1, top-5
  OwnedTensor overflow_;                  // i32 (1): fp16 gradient overflow flag
  OwnedTensor reduce_buf_;                // f32 (4): stats being summed across workers
  OwnedTensor host_scratch_, host_flag_;  // host f32 (4) and i32 (1): read-backs, allocated once
  int64_t train_samples_ = 0, eval_samples_ = 0;
  PhaseTimer* timer_ = nullptr;           // not owned; null: no timing
};

}  // namespace lockstep::engine
