// Reducer: averages gradients across workers bucket by bucket while backward still runs
// (ARCHITECTURE decision 7). It hears each parameter's gradient become final (nets::GradSink);
// when the last gradient of a bucket arrives, the compute stream records an event, the comm
// stream waits on it and the bucket's all-reduce (average) is queued there. finish() makes the
// compute stream wait for every exchange, so the optimizer sees averaged gradients.
// Buckets are views of the flat gradient buffer: nothing is copied. Every worker's backward
// finishes buckets in the same order, so the collectives match across ranks.
// With overlap off, every exchange is queued in finish(), after backward: the comparison run.
// Micro-batches that only accumulate (1..K-1 of K) call begin_step(false): no communication.
// It is the `--sync allreduce` strategy (engine/sync/strategy.h): bytes per step are the ring
// all-reduce formula, floor(2 (N-1) B / N) each way, summed over buckets of B = 4 x numel bytes.
#pragma once

#include <memory>
#include <vector>

#include "engine/buckets.h"
#include "engine/comm/communicator.h"
#include "engine/sync/strategy.h"
#include "kernels/event.h"
#include "nets/params.h"

namespace lockstep::engine {

struct ReducerOptions {
  double bucket_mb = 25;
  double first_bucket_mb = 1;
  bool overlap = true;
};

class Reducer : public SyncStrategy {
 public:
  Reducer(Context& ctx, nets::ParamTable& params, Communicator& comm, const ReducerOptions& options);

  std::string_view name() const override { return "allreduce"; }
  // Before each backward: communicate = false while micro-batches only accumulate.
  void begin_step(bool communicate) override;
  void grad_ready(Context& ctx, int param) override;
  // After backward: queues what is left (all of it without overlap) and makes the compute
  // stream wait for the exchanges. Throws if a bucket never completed (a missing gradient).
  void finish(Context& ctx) override;

  const BucketLayout& layout() const override { return layout_; }
  CommBytes last_step_bytes() const override { return bytes_; }
  // Order in which buckets were launched in the last step (for tests and logs).
  const std::vector<int>& launch_order() const { return launched_; }
  // Host time spent inside communication calls during the last finish() (CPU: the exchange
  // itself; CUDA: the final wait), i.e. communication not hidden behind backward.
  double exposed_seconds() const override { return exposed_seconds_; }

 private:
  void launch(Context& ctx, int bucket);

  nets::ParamTable& params_;
  Communicator& comm_;
  ReducerOptions opt_;
  BucketLayout layout_;
  std::vector<int> pending_;        // gradients still missing per bucket
  std::vector<bool> done_;          // bucket launched this step
  std::vector<int> launched_;
  std::vector<std::unique_ptr<Event>> ready_;  // compute -> comm, one per bucket
  std::unique_ptr<Event> comm_done_;           // comm -> compute
  bool communicate_ = true;
  double exposed_seconds_ = 0;
  CommBytes bytes_;
};

}  // namespace lockstep::engine
