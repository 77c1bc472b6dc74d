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
//  - A watchdog thread per group polls every communicator's ncclCommGetAsyncError (every 100 ms,
//    as PyTorch's does) and aborts the group on an error: a collective already queued on a comm
//    stream (which the host may be waiting behind, e.g. a peer process that died mid-all-reduce)
//    then ends, and the next call of every rank throws with the watchdog's reason instead of the
//    run hanging. A peer that stalls without an error is still not detected while its peers'
//    kernels wait for it (only the host-side polls above have deadlines).
//  - average is ncclAvg, bf16 is ncclBfloat16 (NCCL >= 2.10 is required at compile time).
//  - all_to_all is ncclSend/ncclRecv pairs in a group (works on every NCCL 2 that has p2p).
//  - barrier is a one-element all-reduce on the comm stream, then a polled wait for the stream.
//  - Across processes (mpirun, engine/comm/processes.h): NcclSpan gives the unique id (made by
//    process 0 with nccl_unique_id() and broadcast over MPI), the world size and this process's
//    first global rank; the process's communicators are then ranks first_rank.. of one NCCL
//    communicator spanning every GPU of every process, still created in one group call.
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

// One NCCL communicator over several processes: what this process's share of it is.
struct NcclSpan {
  std::string unique_id;  // nccl_unique_id()'s bytes from process 0; empty: one process, make one
  int world = 0;          // ranks over all processes; 0: devices.size() (one process)
  int first_rank = 0;     // the global rank of this process's first device
};

// A fresh ncclUniqueId as bytes (NCCL_UNIQUE_ID_BYTES), for process 0 to broadcast.
std::string nccl_unique_id();

class NcclGroup;  // the communicators of every rank, their lock and abort state

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<NcclGroup> group, int rank);
  ~NcclCommunicator() override;

  int rank() const override;  // global: the span's first_rank + this process's index
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
  int rank_;  // this process's index: which of the group's communicators and devices
  Buffer barrier_word_;  // one f32 on this rank's GPU: what the barrier all-reduces
};

// One communicator per entry of `devices` (rank i drives GPU devices[i]); see the decisions above.
std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(const std::vector<int>& devices,
                                                                   const NcclOptions& options,
                                                                   const NcclSpan& span = {});

}  // namespace lockstep::engine
