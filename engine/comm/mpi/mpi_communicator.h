// MpiCommunicator: the processes of a run as one Communicator group (rank = process rank), on
// MPI's own collectives over host memory. It carries the cross-process half of the hierarchical
// group (engine/comm/hierarchical_communicator.h: CPU workers across processes) and NCCL's unique
// id. Declared without mpi.h; built only with MPI (cmake/LockstepMpi.cmake).
//
// Decisions:
//  - Host tensors only (a CPU Context): GPUs across processes talk through one NCCL communicator.
//  - Every operation first all-gathers a small header (operation, dtype, count, root) and checks
//    that every process called the same thing, so a mismatch is an Error on every process rather
//    than memory corruption inside MPI.
//  - all_reduce is a reduce-scatter then an all-gather (each chunk is reduced once, by one
//    process), so every process gets bit-identical sums; f32 only (bf16 across processes is
//    NCCL's job).
//  - Non-blocking MPI calls polled with a growing sleep (up to 1 ms): a wait never spins a core
//    the workers need, checks abort(), and is bounded by `timeout`; past it the call throws an
//    Error saying which collective got no answer (the caller then ends the job, engine/run.cpp).
//  - Counts above INT_MAX bytes are refused (MPI counts are int).
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "engine/comm/communicator.h"

namespace lockstep::engine {

class MpiCommunicator final : public Communicator {
 public:
  // Over MPI_COMM_WORLD, which must be initialized (Processes::join does it).
  explicit MpiCommunicator(std::chrono::milliseconds timeout);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view kind() const override { return "mpi"; }

  void all_reduce(Context& ctx, Tensor& buf, ReduceOp op) override;
  void all_gather(Context& ctx, const Tensor& send, Tensor& recv) override;
  void broadcast(Context& ctx, Tensor& buf, int root) override;
  void all_to_all(Context& ctx, const Tensor& send, Tensor& recv) override;
  void barrier(Context& ctx) override;
  void abort(const std::string& reason) noexcept override;
  bool aborted() const override { return aborted_.load(); }

 private:
  // Checks that every process called `op` with the same dtype, count and root.
  void agree(const char* op, const Tensor& t, int root);
  void throw_if_aborted(const char* op) const;

  int rank_ = 0, size_ = 1;
  std::chrono::milliseconds timeout_;
  std::atomic<bool> aborted_{false};
  mutable std::mutex reason_mutex_;
  std::string reason_;
  std::vector<long long> header_;  // size * 4: every process's (op, dtype, count, root)
  std::vector<float> scratch_;     // all_reduce's padded reduce-scatter buffer
};

}  // namespace lockstep::engine
