// How the workers of a run agree on an update (ARCHITECTURE decision 8): one strategy object per
// worker, hooked into its model as the nets::GradSink, so each bucket's exchange starts as soon
// as backward has written the bucket's last gradient (decision 7).
//
// The contract, for every strategy:
//  - begin_step(communicate) before each backward; communicate = false for micro-batches that
//    only accumulate (no exchange, no state change).
//  - grad_ready(ctx, param) as gradients become final; finish(ctx) after backward.
//  - After finish(), the flat gradient buffer holds the agreed update direction, identical on
//    every worker, and the worker's own Optimizer applies it (Worker::update). allreduce leaves
//    the average gradient for SGD; sign leaves the ±1 majority vote for an optimizer configured
//    with momentum 0 (see engine/sync/sign_sync.h).
//  - last_step_bytes(): what this worker sent and received through its Communicator in the last
//    communicating step, by the per-collective formulas below.
//
// Bytes per worker of one collective among N ranks (the standard ring/pairwise algorithms, which
// NCCL uses; nccl-tests' "bus bandwidth" counts the same bytes). A rank's own share never
// leaves it:
//   all_reduce of B bytes:                 sent = received = floor(2 (N-1) B / N)  (reduce-scatter + all-gather)
//   all_gather, B bytes from each rank:    sent = received = (N-1) B
//   all_to_all of a B-byte buffer:         sent = received = (N-1) B / N        (B divides by N)
// N = 1 moves nothing.
#pragma once

#include <cstdint>
#include <string_view>

#include "engine/buckets.h"
#include "nets/params.h"

namespace lockstep::engine {

struct CommBytes {
  int64_t sent = 0, received = 0;
  CommBytes& operator+=(const CommBytes& o) {
    sent += o.sent;
    received += o.received;
    return *this;
  }
  bool operator==(const CommBytes&) const = default;
};

CommBytes all_reduce_bytes(int64_t bytes, int N);
CommBytes all_gather_bytes(int64_t bytes_per_rank, int N);
CommBytes all_to_all_bytes(int64_t bytes, int N);

class SyncStrategy : public nets::GradSink {
 public:
  // "allreduce", "sign": for logs.
  virtual std::string_view name() const = 0;
  virtual void begin_step(bool communicate) = 0;
  virtual void finish(Context& ctx) = 0;
  virtual const BucketLayout& layout() const = 0;
  // Host time spent in communication during the last finish() (not hidden behind backward).
  virtual double exposed_seconds() const = 0;
  // Bytes this worker moved through its Communicator in the last communicating step.
  virtual CommBytes last_step_bytes() const = 0;
};

}  // namespace lockstep::engine
