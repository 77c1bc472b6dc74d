// LocalCommunicator: the ranks are threads of one process that meet at a shared LocalGroup and
// exchange data through host memory. It serves CPU workers, and several workers sharing one GPU
// (their tensors are staged through host memory on the comm stream: slow, for tests).
//
// Every operation is two meetings of the group (mutex + condition variable + generation count):
//   1. arrive: each rank publishes a host pointer to its input (its own tensor on the CPU, its
//      staging buffer on a GPU) and what it is calling; the last to arrive checks that all ranks
//      called the same operation with the same dtype, count and root.
//   2. each rank reads its peers' inputs: all_reduce reduces chunk r of the elements (a
//      reduce-scatter, so the work is O(numel) per rank) into the group's result buffer, summing
//      in rank order 0..N-1 in f32 (bf16 inputs are widened, the sum rounded once), so the result
//      is bit-identical on every rank whatever order the threads came in;
//   3. depart: after it nobody reads an input any more; all_reduce copies the result into each
//      rank's tensor. The next operation's arrival keeps the result buffer alive until every
//      rank has copied it out.
// Every wait is bounded by LocalOptions::timeout: the rank that times out aborts the group with a
// message naming the ranks that did not arrive, so every other waiter throws too. abort() wakes
// every waiter at once. Memory: the group's result buffer and each rank's staging buffer grow
// when a larger size is first seen and are reused afterwards; nothing is allocated per call
// after warm-up.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "engine/comm/communicator.h"
#include "kernels/memory.h"

namespace lockstep::engine {

struct LocalOptions {
  // The longest any rank waits for the others at one meeting before the group is aborted.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
};

class LocalGroup;  // the shared meeting place (local_communicator.cpp)
std::shared_ptr<LocalGroup> make_local_group_state(int n, LocalOptions options);

class LocalCommunicator final : public Communicator {
 public:
  // Made by make_local_group (engine/comm/group.h): all ranks share `group`.
  LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank);
  ~LocalCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override;
  std::string_view kind() const override { return "local"; }

  void all_reduce(Context& ctx, Tensor& buf, ReduceOp op) override;
  void all_gather(Context& ctx, const Tensor& send, Tensor& recv) override;
  void broadcast(Context& ctx, Tensor& buf, int root) override;
  void all_to_all(Context& ctx, const Tensor& send, Tensor& recv) override;
  void barrier(Context& ctx) override;
  void abort(const std::string& reason) noexcept override;
  bool aborted() const override;

 private:
  // Host staging for tensors on a GPU: [0, in_bytes) holds the input, then the output.
  void* staging(size_t bytes);

  std::shared_ptr<LocalGroup> group_;
  int rank_;
  PinnedBuffer staging_;
};

}  // namespace lockstep::engine
