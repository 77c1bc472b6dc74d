// Communicator: how the N workers of one run agree (ARCHITECTURE decisions 6, 7 and 11). One
// object per worker; the N objects of a group are created together by engine/comm/group.h.
//
// Semantics shared by every implementation:
//  - Collective: every rank of the group calls the same operation, in the same order, with the
//    same dtype and element count (and the same root). A mismatch is an Error on every rank.
//  - Ordered on the worker's comm stream. Every operation takes the worker's Context first and
//    its tensors live on ctx.device(). On a CUDA context the operation is enqueued on
//    ctx.cuda().comm after everything already queued there (the caller makes the comm stream
//    wait for the compute stream's event before it hands over a gradient bucket) and may still
//    be running when the call returns. On a CPU context it is synchronous: on return the result
//    is in place and the inputs may be reused. barrier() returns on the host in both cases.
//  - Deterministic: every rank gets bit-identical results. LocalCommunicator sums in rank
//    order 0..N-1 whatever order the threads arrive in; NCCL is deterministic for a fixed
//    world size, topology and message size.
//  - Precision: all_reduce accepts f32 and bf16. bf16 accumulates in f32 and rounds once
//    (LocalCommunicator exactly so; NCCL reduces bf16 in its own kernels). `average` is the
//    sum divided by size().
//  - Failure: any error (a timeout, a mismatch, a peer's abort, a library failure) throws
//    lockstep::Error. abort(reason) may be called from any thread, also while other ranks wait:
//    every current and future operation of every rank of the group then throws an Error that
//    carries the reason. A group once aborted stays aborted.
//  - Thread use: one thread per rank calls the operations; abort() and rank()/size() are safe
//    from any thread.
#pragma once

#include <string>
#include <string_view>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep::engine {

enum class ReduceOp { sum, average };

std::string_view reduce_op_name(ReduceOp op);

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "local" or "nccl": for logs and benchmark output.
  virtual std::string_view kind() const = 0;

  // buf <- op over ranks of buf, in place. f32 or bf16, any shape (contiguous elements).
  virtual void all_reduce(Context& ctx, Tensor& buf, ReduceOp op) = 0;
  // recv <- concat(send of rank 0, ..., send of rank size-1): recv.numel() == size * send.numel(),
  // same dtype (any dtype). send and recv must not overlap.
  virtual void all_gather(Context& ctx, const Tensor& send, Tensor& recv) = 0;
  // buf <- buf of rank `root`, on every rank (any dtype).
  virtual void broadcast(Context& ctx, Tensor& buf, int root) = 0;
  // send and recv are cut into size() equal chunks of numel/size elements (numel must divide):
  // chunk j of this rank's send goes to rank j, and chunk i of recv comes from rank i.
  // Same numel and dtype (any dtype); send and recv must not overlap.
  virtual void all_to_all(Context& ctx, const Tensor& send, Tensor& recv) = 0;
  // Returns on the host once every rank has entered it (and, on CUDA, once everything queued
  // on this rank's comm stream before it has completed).
  virtual void barrier(Context& ctx) = 0;

  // Stops the whole group: wakes every waiting rank with an Error carrying `reason`; every later
  // operation throws too. Idempotent (the first reason wins); never throws.
  virtual void abort(const std::string& reason) noexcept = 0;
  virtual bool aborted() const = 0;

 protected:
  Communicator() = default;
};

}  // namespace lockstep::engine
