// NcclCommunicator: one NCCL communicator per worker thread, one GPU each, all in this process.
// Declared without CUDA or NCCL headers; defined in nccl_communicator.cpp, built only with CUDA.
//
// Decisions:
//  - Creation: the group factory creates all N communicators together on the calling thread:
//    ncclGetUniqueId, then ncclCommInitRankConfig for every device inside one
//    ncclGroupStart/End (NCCL's "several devices per thread" pattern), so worker threads need
//    not meet to bootstrap. ncclCommInitAll is not used because it cannot take a config.
//  - Non-blocking communicators (ncclConfig_t::blocking = 0): no NCCL call ever blocks the host
//    waiting for a peer; a call that returns ncclInProgress is polled with
//    ncclCommGetAsyncError. Every poll checks the group's abort flag and NcclOptions::timeout,
//    so abort() from any thread wakes a waiting rank, and no wait is unbounded.
//  - abort() aborts every communicator of the group (ncclCommAbort under the group's exclusive
//    lock; each NCCL call of a rank holds the shared lock for its short non-blocking duration),
//    which also makes the kernels queued on the comm streams finish. Teardown is the group's:
//    when the last rank's communicator is gone, a healthy group is finalized and destroyed
//    (ncclCommFinalize, poll, ncclCommDestroy); a failed one was already aborted. A
//    communicator is therefore never destroyed while a peer may still wait on it.
//  - average is ncclAvg, bf16 is ncclBfloat16 (NCCL >= 2.10 is required at compile time).
//  - all_to_all is ncclSend/ncclRecv pairs in a group (works on every NCCL 2 that has p2p).
//  - barrier is a one-element all-reduce on the comm stream, then a polled wait for the stream.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/comm/communicator.h"
#include "kernels/memory.h"

namespace lockstep::engine {

struct NcclOptions {
  // Longest wait for one NCCL call (or the barrier's stream) to complete before the group is
  // aborted with an Error.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
};

class NcclGroup;  // the communicators of every rank, their lock and abort state

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<NcclGroup> group, int rank);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override;
  std::string_view kind() const override { return "nccl"; }
  int device() const;  // the CUDA device index of this rank

  void all_reduce(Context& ctx, Tensor& buf, ReduceOp op) override;
  void all_gather(Context& ctx, const Tensor& send, Tensor& recv) override;
  void broadcast(Context& ctx, Tensor& buf, int root) override;
  void all_to_all(Context& ctx, const Tensor& send, Tensor& recv) override;
  void barrier(Context& ctx) override;
  void abort(const std::string& reason) noexcept override;
  bool aborted() const override;

 private:
  void check_context(const Context& ctx, const char* op) const;

  std::shared_ptr<NcclGroup> group_;
  int rank_;
  Buffer barrier_word_;  // one f32 on this rank's GPU: what the barrier all-reduces
};

// One communicator per entry of `devices` (rank i drives GPU devices[i]); see the decisions above.
std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(const std::vector<int>& devices,
                                                                   const NcclOptions& options);

}  // namespace lockstep::engine
