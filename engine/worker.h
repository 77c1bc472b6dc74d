// Worker: one device's share of training. It owns the Context (device, streams, handles), a model
// replica, the optimizer state, its batch sources (its shard of the data) and the device buffers
// of a batch, and runs micro-batches (next batch -> upload -> normalize -> forward -> loss ->
// backward) and updates. Loss, top-1 and top-5 are
// accumulated on the device and read back only when asked (every --log-every steps).
// One Worker per thread; the multi-worker engine gives each its own.
//
// On a GPU the batch goes up on the copy stream into one of two device slots while the compute
// stream still works on the previous micro-batch: no host wait inside the step. The host waits
// for an upload only before asking its source for the next batch (the source may then reuse the
// batch's memory). With --cuda-graph (train_micro_batch_graphed) everything after the upload runs
// as a CUDA graph captured at a micro-batch's second occurrence (the first one warms up eagerly)
// and replayed after that.
#pragma once

#include <array>
#include <map>
#include <set>
#include <memory>
#include <tuple>

#include "data/batch_source.h"
#include "engine/comm/communicator.h"
#include "engine/loss_scaler.h"
#include "engine/optimizer.h"
#include "engine/phase_timer.h"
#include "engine/sync/strategy.h"
#include "kernels/event.h"
#include "kernels/graph.h"
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
  ~Worker();  // waits for a pending upload: its host memory belongs to the source

  // Where this worker's batches come from: training and (optionally) validation.
  void set_sources(std::unique_ptr<BatchSource> train, std::unique_ptr<BatchSource> val);
  BatchSource* train_source() { return train_.get(); }
  // Positions the training source (BatchSource::start_epoch) once no upload still reads the
  // batch it returned last: a source may reuse that memory when it restarts.
  void start_train_epoch(int64_t epoch, int64_t position = 0);
  BatchSource* val_source() { return val_.get(); }
  // Trains on the next batch of the training source (see forward_backward).
  void train_micro_batch(bool accumulate, float loss_grad_scale);
  // Evaluates the whole validation source (the same samples every time); returns its stats.
  Stats evaluate_all();

  // One micro-batch of training. loss_grad_scale multiplies d(sum of sample losses)/dlogits:
  // loss scale / (samples per update) gives the mean over the update's samples. Returns once the
  // batch is on the device (the caller may reuse its memory).
  void forward_backward(const HostBatch& batch, bool accumulate, float loss_grad_scale);

  // --cuda-graph: the trainer's whole micro-batch as one replayed graph: sync->begin_step, the
  // micro-batch, and when `update` also sync->finish and the optimizer step at `lr` (sync may be
  // null: one worker). Each kind of micro-batch (accumulate, update, flips, upload slot) runs
  // eagerly the first time, is captured the second and replayed from then on. A phase timer
  // makes the step run eagerly (it waits for the device between phases). Only for what replays
  // exactly: no loss scaling (fp16), a sync strategy whose exchange is all on the device.
  enum class StepRun { eager, captured, replayed };
  StepRun train_micro_batch_graphed(bool accumulate, bool update, float loss_grad_scale, float lr, SyncStrategy* sync);
  // CUDA graphs captured so far (one per kind of micro-batch seen twice).
  int graphs_captured() const { return static_cast<int>(graphs_.size()); }
  // Destroys the captured graphs (a launched one finishes first); later steps capture anew.
  void drop_graphs() {
    graphs_.clear();
    warmed_.clear();
  }
  // Applies one update at lr. grad_scale unscales the accumulated gradients (1 / loss scale).
  // Returns false when fp16 gradients overflowed and the step was skipped.
  bool update(float lr, float grad_scale);
  // Evaluation of one batch (its first `count` samples) with the running BN statistics.
  void evaluate(const HostBatch& batch);

  // A collective outside the step's sync strategy (a broadcast, a model average, BN statistics):
  // begin_collective() makes the comm stream (where communicators run) wait for the work queued
  // on the compute stream, end_collective() makes the compute stream wait for the comm stream's.
  // Events only, no host wait; nothing on a CPU worker.
  void begin_collective();
  void end_collective();

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
  // The device copy of a batch (on a CPU worker, the host batch's own tensors).
  struct DeviceBatch {
    OwnedTensor images, labels, flips;      // u8 (N,H,W,3), i32 (N), u8 (N): CUDA slots only
    std::unique_ptr<Event> uploaded, used;  // copy done; last reader (compute) done
    Tensor images_view, labels_view, flips_view;  // what the step reads
    bool has_flips = false;                       // flips_view holds one per sample
    int count = 0;
  };
  // The host batch that next() returned, waited for before the source is asked again.
  void release_host_batch();
  const HostBatch& next_train_batch();
  // Queues batch's upload into the next slot; the compute stream waits for it. Returns the slot.
  DeviceBatch& stage(const HostBatch& batch);
  void normalize(const DeviceBatch& b);
  void forward_backward_staged(const DeviceBatch& b, bool accumulate, float loss_grad_scale);
  // The update after sync->finish: the optimizer with the values of the last set_step.
  void apply_update();
  Stats peek(const OwnedTensor& stats, int64_t samples);  // the device sums, left in place
  Stats take(OwnedTensor& stats, int64_t& samples);       // the same, then zeroed

  WorkerOptions opt_;
  Context ctx_;
  nets::Model model_;
  std::unique_ptr<Optimizer> optimizer_;
  LossScaler scaler_;
  std::unique_ptr<BatchSource> train_, val_;
  std::array<DeviceBatch, 2> slots_;      // alternating device batches
  int next_slot_ = 0;
  Event* pending_upload_ = nullptr;       // the last upload the host batch must outlive
  std::unique_ptr<Event> collective_ready_, collective_done_;  // begin/end_collective
  DeviceBatch host_slot_;                 // CPU: views of the host batch itself
  OwnedTensor input_;                     // normalized (N, H, W, 3), compute dtype
  OwnedTensor dlogits_;                   // (N, classes), compute dtype
  OwnedTensor train_stats_, eval_stats_;  // f32 (3): loss sum, top-1, top-5
  OwnedTensor overflow_;                  // i32 (1): fp16 gradient overflow flag
  OwnedTensor reduce_buf_;                // f32 (4): stats being summed across workers
  OwnedTensor host_scratch_, host_flag_;  // host f32 (4) and i32 (1): read-backs, allocated once
  int64_t train_samples_ = 0, eval_samples_ = 0;
  PhaseTimer* timer_ = nullptr;           // not owned; null: no timing
  // --cuda-graph: (accumulate, update, flips, slot) -> its graph; kinds seen once (warmed up).
  using GraphKey = std::tuple<bool, bool, bool, int>;
  std::map<GraphKey, CudaGraph> graphs_;
  std::set<GraphKey> warmed_;
  const void* graph_workspace_ = nullptr;  // the context workspace the graphs were captured with
};

}  // namespace lockstep::engine
