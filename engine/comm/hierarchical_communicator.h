// HierarchicalCommunicator: CPU workers spread over several processes (mpirun -np P, N workers
// each) as one group of P x N ranks, rank = process x N + local rank. Each operation runs inside
// the process first (the in-process LocalCommunicator), then across processes on the local
// leader (local rank 0, through the process-level communicator: MpiCommunicator), then back
// inside the process. Built from any two Communicators, so the composition is tested in one
// process with local groups standing in for MPI.
//
// Costs and promises: all_reduce moves each process's partial sum once across processes
// (local sums in rank order, then the cross-process reduction; bit-identical on every rank,
// though the summation order differs from one flat group's); all_gather and broadcast move each
// block once; all_to_all is an all_gather of every send (world x count per rank: simple, meant
// for the CPU path). Host tensors only: GPUs across processes share one NCCL communicator.
// Every operation of every rank must be called in the same order (communicator.h), and only the
// leader's thread touches the process-level communicator, so MPI sees one caller at a time.
#pragma once

#include <memory>
#include <vector>

#include "engine/comm/communicator.h"

namespace lockstep::engine {

class HierarchicalCommunicator final : public Communicator {
 public:
  // local: this worker's rank in its process's group. cross: the process-level communicator
  // (rank = process), shared by the process's workers and used by local rank 0 alone.
  HierarchicalCommunicator(std::unique_ptr<Communicator> local, Communicator& cross);

  int rank() const override { return process_ * local_->size() + local_->rank(); }
  int size() const override { return cross_.size() * local_->size(); }
  std::string_view kind() const override { return "local+mpi"; }

  void all_reduce(Context& ctx, Tensor& buf, ReduceOp op) override;
  void all_gather(Context& ctx, const Tensor& send, Tensor& recv) override;
  void broadcast(Context& ctx, Tensor& buf, int root) override;
  void all_to_all(Context& ctx, const Tensor& send, Tensor& recv) override;
  void barrier(Context& ctx) override;
  void abort(const std::string& reason) noexcept override;
  bool aborted() const override { return local_->aborted() || cross_.aborted(); }

 private:
  bool leader() const { return local_->rank() == 0; }
  template <typename F>
  void guarded(F f);
  void all_reduce_parts(Context& ctx, Tensor& buf, ReduceOp op);
  Tensor scratch(int64_t numel, DType dtype);  // grows once, reused: no allocation per call after warm-up

  std::unique_ptr<Communicator> local_;
  Communicator& cross_;
  int process_;
  std::vector<char> scratch_;   // the leader's copy of its process block (all_gather)
  std::vector<char> gathered_;  // all_to_all's gathered sends
};

// This process's N ranks of the P x N: its local group's communicators, each joined to `cross`.
std::vector<std::unique_ptr<Communicator>> make_hierarchical_group(std::vector<std::unique_ptr<Communicator>> local,
                                                                   Communicator& cross);

}  // namespace lockstep::engine
