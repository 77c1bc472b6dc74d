// SignSync: `--sync sign`, majority-vote signSGD / Signum (Bernstein et al., "signSGD with
// majority vote", reference/sync-sgd-lecture.md). Per gradient bucket, as soon as backward has
// written its last gradient (the same bucketing and overlap as all-reduce):
//   1. momentum on this worker: m <- beta m + (1 - beta) g (Bernstein et al.'s Signum code,
//      buf.mul_(beta).add_(1 - beta, grad); beta = 0 is plain signSGD, m = g), zero-initialized;
//   2. pack sign(m) 32 per u32 word (kernels/sign.h: bit 1 for m >= 0, so sign(0) = +);
//   3. exchange and vote, by one of two algorithms:
//      allgather: all_gather every worker's W packed words, vote over the N rows locally;
//      sharded:   W is padded to Wp = N * S words (pad words stay 0); all_to_all sends shard j
//                 (S words) of every worker to worker j, which votes on its shard ("server" of
//                 shard j in the source's parameter-server algorithm); all_gather returns the
//                 voted shards to everyone;
//      the tie rule (even N): the vote takes rank 0's bit (row 0 of every vote is rank 0's);
//   4. unpack the vote to +1 / -1 into the bucket's view of the flat gradient buffer.
// The worker's Optimizer then applies x <- x - lr (vote + wd x): SGD with momentum 0 (the
// Trainer configures it so in sign mode) computes exactly that, weight decay after the vote as in
// the paper's code, on the same weight-decay segments as SGD.
//
// Warmup (--sign-warmup-steps S): the first S updates exchange uncompressed, through an
// all-reduce Reducer, and apply Signum to the average gradient (momentum of the average, its
// sign, the same update); then the vote takes over with the momentum buffers warmed up. One
// learning rate fits both phases, which a switch from SGD would not give (sign steps need an lr
// ~1000x smaller). With one worker there is nothing to exchange: the vote over one row is the
// worker's own signs, and warmup changes nothing.
//
// Bytes per worker per step, by strategy.h's formulas, summed over buckets of n elements,
// W = ceil(n / 32) words, S = ceil(W / N):
//   allgather:  sent = received = (N-1) * 4W                 ~ (N-1) n / 8
//   sharded:    all_to_all of 4NS bytes + all_gather of 4S:  sent = received = 2 (N-1) * 4S ~ n / 4
//   warmup:     all_reduce of 4n bytes: floor(2 (N-1) 4n / N)
//   N = 1:      0.
// On CUDA the momentum/pack run on the compute stream, the collectives on the comm stream; the
// votes, the sharded mode's second exchange and the unpacks run in finish(), after backward.
#pragma once

#include <memory>
#include <vector>

#include "engine/comm/communicator.h"
#include "engine/reducer.h"
#include "engine/sync/strategy.h"
#include "kernels/event.h"
#include "kernels/memory.h"

namespace lockstep::engine {

enum class SignExchange { allgather, sharded };
std::string_view sign_exchange_name(SignExchange e);  // "allgather", "sharded"

struct SignSyncOptions {
  float momentum = 0.9f;  // beta; 0 = signSGD
  SignExchange exchange = SignExchange::allgather;
  int64_t warmup_steps = 0;
  ReducerOptions buckets;  // bucket sizes and overlap, as for all-reduce
};

class SignSync : public SyncStrategy {
 public:
  SignSync(Context& ctx, nets::ParamTable& params, Communicator& comm, const SignSyncOptions& options);

  std::string_view name() const override { return "sign"; }
  void begin_step(bool communicate) override;
  void grad_ready(Context& ctx, int param) override;
  void finish(Context& ctx) override;
  const BucketLayout& layout() const override { return layout_; }
  double exposed_seconds() const override { return exposed_seconds_; }
  CommBytes last_step_bytes() const override { return bytes_; }

  // Communicating steps finished so far (warmup included).
  int64_t updates() const { return updates_; }
  // A resumed run continues the count (warmup ends at the same update as without the stop).
  void restore_updates(int64_t n) { updates_ = n; }
  // Whether the current (or last) communicating step exchanged uncompressed (warmup).
  bool in_warmup() const { return warm_; }
  Tensor& momentum() { return momentum_.view(); }  // f32 (P), under the params' layout

 private:
  struct BucketBuffers {
    int64_t words = 0;        // W
    int64_t shard_words = 0;  // S (sharded)
    OwnedTensor packed;       // u32 (W) allgather, (N * S) sharded; pad words stay 0
    OwnedTensor rows;         // u32 (N, W) allgather, (N, S) sharded: what the first exchange brought
    OwnedTensor shard_vote;   // u32 (S) sharded
    OwnedTensor vote;         // u32 (W) allgather, (N * S) sharded
  };
  void launch(Context& ctx, int bucket);
  void warmup_update(Context& ctx);

  nets::ParamTable& params_;
  Communicator& comm_;
  SignSyncOptions opt_;
  BucketLayout layout_;
  std::unique_ptr<Reducer> warmup_;  // N > 1 and warmup_steps > 0
  OwnedTensor momentum_;             // f32 (P)
  std::vector<BucketBuffers> buf_;
  std::vector<int> pending_;
  std::vector<bool> done_;
  std::vector<std::unique_ptr<Event>> ready_;  // compute -> comm, per bucket
  std::unique_ptr<Event> comm_done_, votes_done_;
  bool communicate_ = true, warm_ = false;
  int64_t updates_ = 0;
  double exposed_seconds_ = 0;
  CommBytes bytes_;
};

}  // namespace lockstep::engine
