// MpiCommunicator: MPI-3 non-blocking collectives on host memory, polled with a deadline
// (decisions in the header).
#include "engine/comm/mpi/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <sstream>
#include <thread>

#include "kernels/error.h"

namespace lockstep::engine {

namespace {
char* bytes_of(const Tensor& t) { return static_cast<char*>(t.raw()); }


using Clock = std::chrono::steady_clock;

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}

#define LS_MPI_CALL(call)                                                                             \
  do {                                                                                                \
    const int ls_rc_ = (call);                                                                        \
    if (ls_rc_ != MPI_SUCCESS) throw Error(std::string(#call) + " failed: " + mpi_error(ls_rc_) +     \
                                           " (" + __FILE__ + ":" + std::to_string(__LINE__) + ")"); \
  } while (0)

int int_count(size_t bytes, const char* op) {
  LS_CHECK(bytes <= static_cast<size_t>(INT_MAX),
           "MpiCommunicator::" << op << ": " << bytes << " bytes is more than one MPI call carries (INT_MAX)");
  return static_cast<int>(bytes);
}

void host_only(const Context& ctx, const char* op) {
  LS_CHECK(ctx.device().is_cpu(), "MpiCommunicator::" << op << ": host tensors only (a CPU context), got "
                                                       << ctx.device().str()
                                                       << "; GPUs across processes use one NCCL communicator");
}

enum OpCode : long long { kAllReduce = 1, kAllGather, kBroadcast, kAllToAll, kBarrier };

}  // namespace

MpiCommunicator::MpiCommunicator(std::chrono::milliseconds timeout) : timeout_(timeout) {
  int initialized = 0;
  LS_MPI_CALL(MPI_Initialized(&initialized));
  LS_CHECK(initialized, "MpiCommunicator: MPI is not initialized (Processes::join does it)");
  // Errors come back as codes (checked) instead of MPI's default of aborting the job silently.
  LS_MPI_CALL(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  LS_MPI_CALL(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  LS_MPI_CALL(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  header_.resize(static_cast<size_t>(size_) * 4);
}

MpiCommunicator::~MpiCommunicator() = default;

void MpiCommunicator::abort(const std::string& reason) noexcept {
  std::lock_guard<std::mutex> lock(reason_mutex_);
  if (aborted_.load()) return;
  reason_ = reason;
  aborted_ = true;
}

void MpiCommunicator::throw_if_aborted(const char* op) const {
  if (!aborted_.load()) return;
  std::lock_guard<std::mutex> lock(reason_mutex_);
  throw Error(std::string("MpiCommunicator::") + op + ": the group was aborted: " + reason_);
}

namespace {
// Polls `req` until it completes, the group is aborted, or the deadline passes. The sleep grows
// from 0 to 1 ms so a short collective costs little latency and a long wait costs no core.
template <typename Aborted>
void wait_request(MPI_Request& req, const char* op, int rank, std::chrono::milliseconds timeout, Aborted aborted) {
  const auto deadline = Clock::now() + timeout;
  int spins = 0;
  for (;;) {
    int done = 0;
    LS_MPI_CALL(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    aborted(op);
    if (Clock::now() > deadline) {
      std::ostringstream os;
      os << "process " << rank << ": " << op << " across processes got no answer within "
         << std::chrono::duration<double>(timeout).count()
         << " s (--comm-timeout): another process has died, hangs, or called a different collective";
      throw Error(os.str());
    }
    if (++spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, (spins - 64) * 10)));
    else std::this_thread::yield();
  }
}
}  // namespace

void MpiCommunicator::agree(const char* op, const Tensor& t, int root) {
  throw_if_aborted(op);
  long long mine[4] = {0, static_cast<long long>(t.dtype()), static_cast<long long>(t.numel()), root};
  const std::string name = op;
  mine[0] = name == "all_reduce" ? kAllReduce : name == "all_gather" ? kAllGather : name == "broadcast" ? kBroadcast
            : name == "all_to_all" ? kAllToAll : kBarrier;
  MPI_Request req;
  LS_MPI_CALL(MPI_Iallgather(mine, 4, MPI_LONG_LONG, header_.data(), 4, MPI_LONG_LONG, MPI_COMM_WORLD, &req));
  wait_request(req, op, rank_, timeout_, [this](const char* o) { throw_if_aborted(o); });
  for (int p = 0; p < size_; ++p) {
    const long long* h = &header_[static_cast<size_t>(p) * 4];
    if (std::equal(h, h + 4, mine)) continue;
    std::ostringstream os;
    os << "MpiCommunicator: process " << rank_ << " called " << op << " (dtype " << dtype_name(t.dtype()) << ", "
       << t.numel() << " elements, root " << root << ") but process " << p << " called op " << h[0] << " (dtype code "
       << h[1] << ", " << h[2] << " elements, root " << h[3] << ")";
    abort(os.str());
    throw Error(os.str());
  }
}

void MpiCommunicator::all_reduce(Context& ctx, Tensor& buf, ReduceOp op) {
  host_only(ctx, "all_reduce");
  LS_CHECK(buf.dtype() == DType::f32, "MpiCommunicator::all_reduce: f32 only across processes, got "
                                          << dtype_name(buf.dtype()));
  agree("all_reduce", buf, -1);
  const int64_t n = buf.numel();
  const int64_t chunk = (n + size_ - 1) / size_;
  const size_t padded = static_cast<size_t>(chunk * size_);
  if (scratch_.size() < padded + static_cast<size_t>(chunk)) scratch_.resize(padded + static_cast<size_t>(chunk));
  float* in = scratch_.data();
  float* mine = scratch_.data() + padded;  // this process's reduced chunk
  std::memcpy(in, buf.data<float>(), static_cast<size_t>(n) * sizeof(float));
  std::fill(in + n, in + padded, 0.f);
  const int c = int_count(static_cast<size_t>(chunk) * sizeof(float), "all_reduce") / static_cast<int>(sizeof(float));
  MPI_Request req;
  LS_MPI_CALL(MPI_Ireduce_scatter_block(in, mine, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req));
  wait_request(req, "all_reduce", rank_, timeout_, [this](const char* o) { throw_if_aborted(o); });
  LS_MPI_CALL(MPI_Iallgather(mine, c, MPI_FLOAT, in, c, MPI_FLOAT, MPI_COMM_WORLD, &req));
  wait_request(req, "all_reduce", rank_, timeout_, [this](const char* o) { throw_if_aborted(o); });
  float* out = buf.data<float>();
  if (op == ReduceOp::average) {
    const float inv = 1.f / static_cast<float>(size_);
    for (int64_t i = 0; i < n; ++i) out[i] = in[i] * inv;
  } else {
    std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float));
  }
}

void MpiCommunicator::all_gather(Context& ctx, const Tensor& send, Tensor& recv) {
  host_only(ctx, "all_gather");
  LS_CHECK(recv.dtype() == send.dtype() && recv.numel() == send.numel() * size_,
           "MpiCommunicator::all_gather: recv must hold " << size_ << " x " << send.numel() << " "
                                                          << dtype_name(send.dtype()) << ", got " << recv.numel() << " "
                                                          << dtype_name(recv.dtype()));
  agree("all_gather", send, -1);
  const int bytes = int_count(send.bytes(), "all_gather");
  int_count(recv.bytes(), "all_gather");
  MPI_Request req;
  LS_MPI_CALL(MPI_Iallgather(bytes_of(send), bytes, MPI_BYTE, bytes_of(recv), bytes, MPI_BYTE, MPI_COMM_WORLD,
                             &req));
  wait_request(req, "all_gather", rank_, timeout_, [this](const char* o) { throw_if_aborted(o); });
}

void MpiCommunicator::broadcast(Context& ctx, Tensor& buf, int root) {
  host_only(ctx, "broadcast");
  LS_CHECK(root >= 0 && root < size_, "MpiCommunicator::broadcast: root " << root << " out of " << size_ << " processes");
  agree("broadcast", buf, root);
  MPI_Request req;
  LS_MPI_CALL(MPI_Ibcast(bytes_of(buf), int_count(buf.bytes(), "broadcast"), MPI_BYTE, root, MPI_COMM_WORLD, &req));
  wait_request(req, "broadcast", rank_, timeout_, [this](const char* o) { throw_if_aborted(o); });
}

void MpiCommunicator::all_to_all(Context& ctx, const Tensor& send, Tensor& recv) {
  host_only(ctx, "all_to_all");
  LS_CHECK(send.dtype() == recv.dtype() && send.numel() == recv.numel() && send.numel() % size_ == 0,
           "MpiCommunicator::all_to_all: send and recv need the same dtype and a count divisible by "
               << size_ << ", got " << send.numel() << " and " << recv.numel());
  agree("all_to_all", send, -1);
  const int chunk = int_count(send.bytes(), "all_to_all") / size_;
  MPI_Request req;
  LS_MPI_CALL(MPI_Ialltoall(bytes_of(send), chunk, MPI_BYTE, bytes_of(recv), chunk, MPI_BYTE, MPI_COMM_WORLD,
                            &req));
  wait_request(req, "all_to_all", rank_, timeout_, [this](const char* o) { throw_if_aborted(o); });
}

void MpiCommunicator::barrier(Context& ctx) {
  host_only(ctx, "barrier");
  throw_if_aborted("barrier");
  MPI_Request req;
  LS_MPI_CALL(MPI_Ibarrier(MPI_COMM_WORLD, &req));
  wait_request(req, "barrier", rank_, timeout_, [this](const char* o) { throw_if_aborted(o); });
}

}  // namespace lockstep::engine
