// HierarchicalCommunicator: inside the process, across processes on the leader, inside again.
#include "engine/comm/hierarchical_communicator.h"

#include <cstring>

#include "kernels/error.h"

namespace lockstep::engine {

namespace {
char* bytes_of(const Tensor& t) { return static_cast<char*>(t.raw()); }

void host_only(const Context& ctx, const char* op) {
  LS_CHECK(ctx.device().is_cpu(), "HierarchicalCommunicator::" << op << ": host tensors only, got "
                                                                 << ctx.device().str()
                                                                 << "; GPUs across processes use one NCCL communicator");
}
}  // namespace

HierarchicalCommunicator::HierarchicalCommunicator(std::unique_ptr<Communicator> local, Communicator& cross)
    : local_(std::move(local)), cross_(cross), process_(cross.rank()) {}

Tensor HierarchicalCommunicator::scratch(int64_t numel, DType dtype) {
  const size_t bytes = static_cast<size_t>(numel) * dtype_size(dtype);
  if (scratch_.size() < bytes) scratch_.resize(bytes);
  return Tensor(scratch_.data(), Shape{numel}, dtype, Device::cpu());
}

// A failure in either half stops both: a leader that gets an error across processes must wake the
// workers of its process waiting for it inside, and the other way round.
template <typename F>
void HierarchicalCommunicator::guarded(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    abort(e.what());
    throw;
  }
}

void HierarchicalCommunicator::all_reduce(Context& ctx, Tensor& buf, ReduceOp op) {
  host_only(ctx, "all_reduce");
  guarded([&] { all_reduce_parts(ctx, buf, op); });
}

void HierarchicalCommunicator::all_reduce_parts(Context& ctx, Tensor& buf, ReduceOp op) {
  local_->all_reduce(ctx, buf, ReduceOp::sum);
  if (leader()) {
    cross_.all_reduce(ctx, buf, ReduceOp::sum);
    if (op == ReduceOp::average) {
      LS_CHECK(buf.dtype() == DType::f32, "HierarchicalCommunicator::all_reduce: average needs f32");
      float* p = buf.data<float>();
      const float n = static_cast<float>(size());
      for (int64_t i = 0; i < buf.numel(); ++i) p[i] /= n;
    }
  }
  local_->broadcast(ctx, buf, 0);
}

void HierarchicalCommunicator::all_gather(Context& ctx, const Tensor& send, Tensor& recv) {
  host_only(ctx, "all_gather");
  LS_CHECK(recv.dtype() == send.dtype() && recv.numel() == send.numel() * size(),
           "HierarchicalCommunicator::all_gather: recv must hold " << size() << " x " << send.numel() << " elements, got "
                                                                   << recv.numel());
  guarded([&] {
    const int64_t block = send.numel() * local_->size();
    Tensor mine = recv.slice(process_ * block, block);
    local_->all_gather(ctx, send, mine);
    if (leader()) {
      Tensor staged = scratch(block, send.dtype());  // MPI may not read and write overlapping buffers
      std::memcpy(bytes_of(staged), bytes_of(mine), mine.bytes());
      cross_.all_gather(ctx, staged, recv);
    }
    local_->broadcast(ctx, recv, 0);
  });
}

void HierarchicalCommunicator::broadcast(Context& ctx, Tensor& buf, int root) {
  host_only(ctx, "broadcast");
  LS_CHECK(root >= 0 && root < size(), "HierarchicalCommunicator::broadcast: root " << root << " out of " << size());
  guarded([&] {
    const int root_process = root / local_->size();
    if (process_ == root_process) local_->broadcast(ctx, buf, root % local_->size());  // to this leader (and all here)
    if (leader()) cross_.broadcast(ctx, buf, root_process);
    if (process_ != root_process) local_->broadcast(ctx, buf, 0);
  });
}

void HierarchicalCommunicator::all_to_all(Context& ctx, const Tensor& send, Tensor& recv) {
  host_only(ctx, "all_to_all");
  const int n = size();
  LS_CHECK(send.dtype() == recv.dtype() && send.numel() == recv.numel() && send.numel() % n == 0,
           "HierarchicalCommunicator::all_to_all: send and recv need the same dtype and a count divisible by "
               << n << ", got " << send.numel() << " and " << recv.numel());
  // The gathered sends live in a buffer of this rank's own (scratch_ is the leader's staging
  // inside all_gather, so it cannot hold them).
  const size_t bytes = static_cast<size_t>(send.numel()) * static_cast<size_t>(n) * dtype_size(send.dtype());
  if (gathered_.size() < bytes) gathered_.resize(bytes);
  Tensor all(gathered_.data(), Shape{send.numel() * n}, send.dtype(), Device::cpu());
  all_gather(ctx, send, all);
  const size_t chunk = send.bytes() / static_cast<size_t>(n);
  for (int i = 0; i < n; ++i)  // chunk `rank()` of rank i's send
    std::memcpy(bytes_of(recv) + static_cast<size_t>(i) * chunk,
                gathered_.data() + static_cast<size_t>(i) * send.bytes() + static_cast<size_t>(rank()) * chunk, chunk);
}

void HierarchicalCommunicator::barrier(Context& ctx) {
  guarded([&] {
    local_->barrier(ctx);
    if (leader()) cross_.barrier(ctx);
    local_->barrier(ctx);
  });
}

void HierarchicalCommunicator::abort(const std::string& reason) noexcept {
  local_->abort(reason);
  cross_.abort(reason);
}

std::vector<std::unique_ptr<Communicator>> make_hierarchical_group(std::vector<std::unique_ptr<Communicator>> local,
                                                                   Communicator& cross) {
  std::vector<std::unique_ptr<Communicator>> out;
  for (auto& c : local) out.push_back(std::make_unique<HierarchicalCommunicator>(std::move(c), cross));
  return out;
}

}  // namespace lockstep::engine
