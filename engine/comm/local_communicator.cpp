// LocalCommunicator: threads meeting at a LocalGroup, data through host memory. The protocol
// (arrive, read peers, depart) and its memory rules are in the header.
#include "engine/comm/local_communicator.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <sstream>
#include <vector>

#include "kernels/args.h"
#include "kernels/half.h"
#if LOCKSTEP_HAVE_CUDA
#include "engine/comm/cuda/stream_copy.h"
#endif

namespace lockstep::engine {

namespace {

enum class OpKind { all_reduce, all_gather, broadcast, all_to_all, barrier };

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::all_reduce: return "all_reduce";
    case OpKind::all_gather: return "all_gather";
    case OpKind::broadcast: return "broadcast";
    case OpKind::all_to_all: return "all_to_all";
    case OpKind::barrier: return "barrier";
  }
  return "?";
}

// What one rank asked for at a meeting, and where its input lies in host memory.
struct Call {
  OpKind kind = OpKind::barrier;
  DType dtype = DType::f32;
  int64_t numel = 0;
  int root = 0;
  ReduceOp op = ReduceOp::sum;
  const void* in = nullptr;

  bool agrees_with(const Call& o) const {
    return kind == o.kind && dtype == o.dtype && numel == o.numel && root == o.root && op == o.op;
  }
  std::string str() const {
    std::ostringstream os;
    os << op_kind_name(kind);
    if (kind != OpKind::barrier) os << "(" << dtype_name(dtype) << ", " << numel << " elements";
    if (kind == OpKind::all_reduce) os << ", " << reduce_op_name(op);
    if (kind == OpKind::broadcast) os << ", root " << root;
    if (kind != OpKind::barrier) os << ")";
    return os.str();
  }
};

void check_disjoint(const Tensor& a, const Tensor& b, const char* op) {
  auto a0 = reinterpret_cast<uintptr_t>(a.raw()), b0 = reinterpret_cast<uintptr_t>(b.raw());
  LS_CHECK(a.bytes() == 0 || b.bytes() == 0 || a0 + a.bytes() <= b0 || b0 + b.bytes() <= a0,
           op << ": send and recv overlap");
}

// Host <-> ctx's device; a plain memcpy when the tensor is on the host.
void to_host(Context& ctx, void* dst, const Tensor& src) {
  if (src.device().is_cpu()) {
    std::memcpy(dst, src.raw(), src.bytes());
    return;
  }
#if LOCKSTEP_HAVE_CUDA
  comm_cuda::copy_on_comm_stream(ctx, dst, src.raw(), src.bytes());
#else
  LS_CHECK(false, "LocalCommunicator: " << src.str() << " needs the CUDA backend");
#endif
}

void from_host(Context& ctx, Tensor& dst, const void* src) {
  if (dst.device().is_cpu()) {
    std::memcpy(dst.raw(), src, dst.bytes());
    return;
  }
#if LOCKSTEP_HAVE_CUDA
  comm_cuda::copy_on_comm_stream(ctx, dst.raw(), src, dst.bytes());
#else
  LS_CHECK(false, "LocalCommunicator: " << dst.str() << " needs the CUDA backend");
#endif
}

// out[i] = (in[0][i] + in[1][i] + ... + in[n-1][i]) in that order, in f32; / n for average;
// rounded once to bf16 for bf16. Elements [begin, end).
void reduce_range(const std::vector<const void*>& in, void* out, DType dt, ReduceOp op,
                  int64_t begin, int64_t end) {
  const int n = static_cast<int>(in.size());
  const float scale_div = static_cast<float>(n);
  const bool avg = op == ReduceOp::average;
  if (dt == DType::f32) {
    float* o = static_cast<float*>(out) + begin;
    const int64_t len = end - begin;
    std::memcpy(o, static_cast<const float*>(in[0]) + begin, static_cast<size_t>(len) * 4);
    for (int j = 1; j < n; ++j) {
      const float* p = static_cast<const float*>(in[j]) + begin;
      for (int64_t i = 0; i < len; ++i) o[i] += p[i];
    }
    if (avg)
      for (int64_t i = 0; i < len; ++i) o[i] /= scale_div;
    return;
  }
  constexpr int64_t kBlock = 2048;
  float acc[kBlock];
  uint16_t* o = static_cast<uint16_t*>(out);
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t len = std::min(kBlock, end - b);
    const uint16_t* p0 = static_cast<const uint16_t*>(in[0]) + b;
    for (int64_t i = 0; i < len; ++i) acc[i] = f32_from_bf16(p0[i]);
    for (int j = 1; j < n; ++j) {
      const uint16_t* p = static_cast<const uint16_t*>(in[j]) + b;
      for (int64_t i = 0; i < len; ++i) acc[i] += f32_from_bf16(p[i]);
    }
    for (int64_t i = 0; i < len; ++i) o[b + i] = bf16_from_f32(avg ? acc[i] / scale_div : acc[i]);
  }
}

}  // namespace

std::string_view reduce_op_name(ReduceOp op) { return op == ReduceOp::sum ? "sum" : "average"; }

// The meeting place of one group: who has arrived at the current meeting, what each rank asked
// for, the all_reduce result, and whether the group was aborted.
class LocalGroup {
 public:
  LocalGroup(int n, LocalOptions o)
      : n_(n), opts_(o), here_(static_cast<size_t>(n), 0), calls_(static_cast<size_t>(n)),
        inputs_(static_cast<size_t>(n), nullptr) {}

  int size() const { return n_; }

  // Meeting 1. The last rank to arrive checks that all asked for the same thing and sizes the
  // result buffer (it grows only when a larger size is first seen).
  void arrive(int rank, const Call& c) {
    meet(rank, op_kind_name(c.kind), [&] {
      calls_[static_cast<size_t>(rank)] = c;
    }, [&] {
      for (int r = 1; r < n_; ++r)
        if (!calls_[static_cast<size_t>(r)].agrees_with(calls_[0])) {
          std::ostringstream os;
          os << "LocalCommunicator: ranks called different operations: rank 0 "
             << calls_[0].str() << ", rank " << r << " " << calls_[static_cast<size_t>(r)].str();
          throw Error(os.str());
        }
      for (int r = 0; r < n_; ++r) inputs_[static_cast<size_t>(r)] = calls_[static_cast<size_t>(r)].in;
      if (c.kind == OpKind::all_reduce) {
        size_t bytes = static_cast<size_t>(c.numel) * dtype_size(c.dtype);
        if (result_.bytes() < bytes) result_ = PinnedBuffer(bytes);
      }
    });
  }
  // Meeting 2: after it no rank reads another rank's input.
  void depart(int rank, const char* what) {
    meet(rank, what, [] {}, [] {});
  }

  // Valid between arrive and depart of the same operation.
  const Call& call(int r) const { return calls_[static_cast<size_t>(r)]; }
  const std::vector<const void*>& inputs() const { return inputs_; }
  void* result() const { return result_.data(); }

  void abort(const std::string& reason) noexcept {
    std::lock_guard<std::mutex> lk(m_);
    abort_locked(reason);
  }
  bool aborted() const {
    std::lock_guard<std::mutex> lk(m_);
    return aborted_;
  }

 private:
  void abort_locked(const std::string& reason) noexcept {
    if (aborted_) return;
    try {
      reason_ = reason;
    } catch (...) {
    }
    aborted_ = true;
    cv_.notify_all();
  }

  [[noreturn]] void throw_aborted(int rank, const char* what) const {
    std::ostringstream os;
    os << "LocalCommunicator rank " << rank << ": " << what << " aborted: " << reason_;
    throw Error(os.str());
  }

  template <typename Publish, typename OnLast>
  void meet(int rank, const char* what, Publish publish, OnLast on_last) {
    std::unique_lock<std::mutex> lk(m_);
    if (aborted_) throw_aborted(rank, what);
    publish();
    here_[static_cast<size_t>(rank)] = 1;
    if (++count_ == n_) {
      try {
        on_last();
      } catch (const std::exception& e) {
        abort_locked(e.what());
        throw;
      }
      count_ = 0;
      std::fill(here_.begin(), here_.end(), 0);
      ++generation_;
      cv_.notify_all();
      return;
    }
    const uint64_t gen = generation_;
    const bool met = cv_.wait_for(lk, opts_.timeout, [&] { return generation_ != gen || aborted_; });
    if (aborted_) throw_aborted(rank, what);
    if (!met) {
      std::ostringstream os;
      os << "LocalCommunicator: rank " << rank << " timed out after " << opts_.timeout.count()
         << " ms in " << what << "; ranks that did not arrive:";
      for (int r = 0; r < n_; ++r)
        if (!here_[static_cast<size_t>(r)]) os << " " << r;
      os << " (" << count_ << " of " << n_ << " arrived)";
      abort_locked(os.str());
      throw Error(os.str());
    }
  }

  const int n_;
  const LocalOptions opts_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;   // advances when a meeting is complete
  int count_ = 0;             // ranks at the current meeting
  std::vector<char> here_;    // [rank] arrived at the current meeting
  std::vector<Call> calls_;   // [rank] what it asked for at the last arrival
  std::vector<const void*> inputs_;  // [rank] calls_[rank].in, for the reduction
  PinnedBuffer result_;       // all_reduce result, dtype of the call
  bool aborted_ = false;
  std::string reason_;
};

std::shared_ptr<LocalGroup> make_local_group_state(int n, LocalOptions options) {
  return std::make_shared<LocalGroup>(n, options);
}

LocalCommunicator::LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank)
    : group_(std::move(group)), rank_(rank) {
  LS_CHECK(group_ && rank >= 0 && rank < group_->size(),
           "LocalCommunicator: rank " << rank << " outside the group");
}

LocalCommunicator::~LocalCommunicator() = default;

int LocalCommunicator::size() const { return group_->size(); }

void LocalCommunicator::abort(const std::string& reason) noexcept { group_->abort(reason); }

bool LocalCommunicator::aborted() const { return group_->aborted(); }

void* LocalCommunicator::staging(size_t bytes) {
  if (staging_.bytes() < bytes) staging_ = PinnedBuffer(bytes);
  return staging_.data();
}

void LocalCommunicator::all_reduce(Context& ctx, Tensor& buf, ReduceOp op) {
  expect_on(ctx, buf, "all_reduce", "buf");
  LS_CHECK(buf.dtype() == DType::f32 || buf.dtype() == DType::bf16,
           "all_reduce: buf must be f32 or bf16, got " << dtype_name(buf.dtype()));
  const void* in = buf.raw();
  if (buf.device().is_cuda()) {
    void* host = staging(buf.bytes());
    to_host(ctx, host, buf);
    in = host;
  }
  const int n = size();
  group_->arrive(rank_, Call{OpKind::all_reduce, buf.dtype(), buf.numel(), 0, op, in});
  const int64_t begin = buf.numel() * rank_ / n, end = buf.numel() * (rank_ + 1) / n;
  if (end > begin) reduce_range(group_->inputs(), group_->result(), buf.dtype(), op, begin, end);
  void* result = group_->result();
  group_->depart(rank_, "all_reduce");
  from_host(ctx, buf, result);
}

void LocalCommunicator::all_gather(Context& ctx, const Tensor& send, Tensor& recv) {
  expect_on(ctx, send, "all_gather", "send");
  expect_on(ctx, recv, "all_gather", "recv");
  expect_dtype(recv, send.dtype(), "all_gather", "recv");
  expect_numel(recv, send.numel() * size(), "all_gather", "recv");
  check_disjoint(send, recv, "all_gather");
  const size_t sb = send.bytes();
  const void* in = send.raw();
  char* out = static_cast<char*>(recv.raw());
  if (send.device().is_cuda()) {
    char* host = static_cast<char*>(staging(sb + recv.bytes()));
    to_host(ctx, host, send);
    in = host;
    out = host + sb;
  }
  group_->arrive(rank_, Call{OpKind::all_gather, send.dtype(), send.numel(), 0, ReduceOp::sum, in});
  for (int j = 0; j < size(); ++j)
    if (sb) std::memcpy(out + static_cast<size_t>(j) * sb, group_->call(j).in, sb);
  group_->depart(rank_, "all_gather");
  if (recv.device().is_cuda()) from_host(ctx, recv, out);
}

void LocalCommunicator::broadcast(Context& ctx, Tensor& buf, int root) {
  expect_on(ctx, buf, "broadcast", "buf");
  LS_CHECK(root >= 0 && root < size(), "broadcast: root " << root << " outside a group of " << size());
  const void* in = nullptr;
  void* out = buf.raw();
  if (buf.device().is_cuda()) {
    void* host = staging(buf.bytes());
    if (rank_ == root) to_host(ctx, host, buf);
    in = out = host;
  } else if (rank_ == root) {
    in = buf.raw();
  }
  group_->arrive(rank_, Call{OpKind::broadcast, buf.dtype(), buf.numel(), root, ReduceOp::sum,
                             rank_ == root ? in : nullptr});
  if (rank_ != root && buf.bytes()) std::memcpy(out, group_->call(root).in, buf.bytes());
  group_->depart(rank_, "broadcast");
  if (rank_ != root && buf.device().is_cuda()) from_host(ctx, buf, out);
}

void LocalCommunicator::all_to_all(Context& ctx, const Tensor& send, Tensor& recv) {
  expect_on(ctx, send, "all_to_all", "send");
  expect_on(ctx, recv, "all_to_all", "recv");
  expect_dtype(recv, send.dtype(), "all_to_all", "recv");
  expect_numel(recv, send.numel(), "all_to_all", "recv");
  LS_CHECK(send.numel() % size() == 0, "all_to_all: " << send.numel()
                                           << " elements do not split into " << size() << " equal chunks");
  check_disjoint(send, recv, "all_to_all");
  const size_t cb = send.bytes() / static_cast<size_t>(size());
  const void* in = send.raw();
  char* out = static_cast<char*>(recv.raw());
  if (send.device().is_cuda()) {
    char* host = static_cast<char*>(staging(send.bytes() + recv.bytes()));
    to_host(ctx, host, send);
    in = host;
    out = host + send.bytes();
  }
  group_->arrive(rank_, Call{OpKind::all_to_all, send.dtype(), send.numel(), 0, ReduceOp::sum, in});
  for (int j = 0; j < size(); ++j)
    if (cb)
      std::memcpy(out + static_cast<size_t>(j) * cb,
                  static_cast<const char*>(group_->call(j).in) + static_cast<size_t>(rank_) * cb, cb);
  group_->depart(rank_, "all_to_all");
  if (recv.device().is_cuda()) from_host(ctx, recv, out);
}

void LocalCommunicator::barrier(Context& ctx) {
#if LOCKSTEP_HAVE_CUDA
  if (ctx.is_cuda()) comm_cuda::sync_comm_stream(ctx);
#endif
  group_->arrive(rank_, Call{});
}

}  // namespace lockstep::engine
