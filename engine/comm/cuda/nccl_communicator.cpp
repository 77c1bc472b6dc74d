// NcclCommunicator and NcclGroup: non-blocking NCCL communicators, one per GPU, created together
// on one thread; every call checked, polled with a deadline, and abortable (decisions in the
// header).
#include "engine/comm/cuda/nccl_communicator.h"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <thread>

#include "kernels/args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_state.h"

static_assert(NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0), "lockstep needs NCCL >= 2.10 (ncclAvg, ncclBfloat16)");

namespace lockstep::engine {

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::f32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::u8: return ncclUint8;
    case DType::i32: return ncclInt32;
    case DType::u32: return ncclUint32;
  }
  throw Error("NcclCommunicator: no NCCL type for dtype " + std::string(dtype_name(dt)));
}

std::string library_message(ncclResult_t r, const char* stmt, const char* file, int line) {
  try {
    ::lockstep::cuda::throw_library_error("NCCL", static_cast<int>(r), ncclGetErrorString(r), stmt, file, line);
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace

class NcclGroup {
 public:
  NcclGroup(std::vector<int> devices, NcclOptions o, const NcclSpan& span)
      : devices_(std::move(devices)),
        opts_(o),
        world_(span.world > 0 ? span.world : static_cast<int>(devices_.size())),
        first_rank_(span.first_rank),
        comms_(devices_.size(), nullptr) {
    const int n = static_cast<int>(devices_.size());
    LS_CHECK(first_rank_ >= 0 && first_rank_ + n <= world_,
             "NcclGroup: ranks " << first_rank_ << ".." << first_rank_ + n - 1 << " do not fit a world of " << world_);
    LS_CHECK(span.unique_id.empty() || span.unique_id.size() == sizeof(ncclUniqueId),
             "NcclGroup: a unique id is " << sizeof(ncclUniqueId) << " bytes, got " << span.unique_id.size());
    LS_CHECK(!span.unique_id.empty() || world_ == n, "NcclGroup: a group spanning processes needs process 0's unique id");
    int previous = 0;
    CUDA_CHECK(cudaGetDevice(&previous));
    bool in_group = false;
    try {
      ncclUniqueId id;
      if (span.unique_id.empty()) NCCL_CHECK(ncclGetUniqueId(&id));
      else std::memcpy(&id, span.unique_id.data(), sizeof id);
      ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
      config.blocking = 0;
      NCCL_CHECK(ncclGroupStart());
      in_group = true;
      for (int i = 0; i < n; ++i) {
        CUDA_CHECK(cudaSetDevice(devices_[static_cast<size_t>(i)]));
        check_started(ncclCommInitRankConfig(&comms_[static_cast<size_t>(i)], world_, id, first_rank_ + i, &config),
                      "ncclCommInitRankConfig(&comm, world, id, first_rank + i, &config)", __FILE__, __LINE__);
      }
      in_group = false;
      check_started(ncclGroupEnd(), "ncclGroupEnd()", __FILE__, __LINE__);
      const auto deadline = Clock::now() + opts_.timeout;
      for (int i = 0; i < n; ++i) settle(i, "communicator creation", deadline);
      CUDA_CHECK(cudaSetDevice(previous));
      watchdog_ = std::thread([this] { watch(); });
    } catch (...) {
      if (in_group) ncclGroupEnd();
      abort_all("creation failed");
      cudaSetDevice(previous);
      throw;
    }
  }

  ~NcclGroup() {
    if (watchdog_.joinable()) {
      {
        std::lock_guard<std::mutex> w(watch_m_);
        watch_stop_ = true;
      }
      watch_cv_.notify_all();
      watchdog_.join();
    }
    std::unique_lock<std::shared_mutex> lk(m_);
    if (aborted_) return;  // every communicator was aborted already
    // Healthy: flush, wait for global quiescence, then free. Any failure here aborts instead.
    bool ok = true;
    for (ncclComm_t c : comms_) {
      ncclResult_t r = ncclCommFinalize(c);
      ok = ok && (r == ncclSuccess || r == ncclInProgress);
    }
    const auto deadline = Clock::now() + opts_.timeout;
    for (ncclComm_t c : comms_) {
      ncclResult_t state = ncclInProgress;
      while (ok) {
        if (ncclCommGetAsyncError(c, &state) != ncclSuccess || state != ncclInProgress) break;
        if (Clock::now() > deadline) break;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      ok = ok && state == ncclSuccess;
    }
    for (ncclComm_t& c : comms_) {
      ncclResult_t r = ok ? ncclCommDestroy(c) : ncclCommAbort(c);
      if (r != ncclSuccess && r != ncclInProgress)
        std::cerr << "lockstep: warning: NCCL teardown: " << ncclGetErrorString(r) << "\n";
      c = nullptr;
    }
  }

  int size() const { return world_; }
  int local_size() const { return static_cast<int>(devices_.size()); }
  int first_rank() const { return first_rank_; }
  int device(int rank) const { return devices_[static_cast<size_t>(rank)]; }

  // Runs one non-blocking NCCL call `f(comm)` of `rank` and waits until NCCL has accepted it
  // (ncclInProgress -> polled). Any failure or timeout aborts the group, then throws.
  template <typename F>
  void run(int rank, const char* what, F f, const char* stmt, const char* file, int line) {
    const auto deadline = Clock::now() + opts_.timeout;
    {
      std::shared_lock<std::shared_mutex> lk(m_);
      throw_if_aborted(rank, what);
      ncclResult_t r = f(comms_[static_cast<size_t>(rank)]);
      if (r == ncclSuccess) return;
      if (r != ncclInProgress) {
        std::string msg = library_message(r, stmt, file, line);
        lk.unlock();
        fail(rank, what, msg);
      }
    }
    settle(rank, what, deadline);
  }

  // Waits until everything queued on `stream` has completed, abortable and bounded.
  void wait_stream(int rank, cudaStream_t stream, const char* what) {
    const auto deadline = Clock::now() + opts_.timeout;
    for (;;) {
      {
        std::shared_lock<std::shared_mutex> lk(m_);
        throw_if_aborted(rank, what);
      }
      cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) {
        std::ostringstream os;
        os << "CUDA error " << static_cast<int>(e) << " (" << cudaGetErrorString(e)
           << ") waiting for the comm stream of rank " << rank;
        fail(rank, what, os.str());
      }
      if (Clock::now() > deadline) fail(rank, what, timeout_message(rank, what));
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void abort(const std::string& reason) noexcept {
    std::unique_lock<std::shared_mutex> lk(m_);
    abort_locked(reason);
  }
  bool aborted() const { return aborted_flag_.load(); }

 private:
  static void check_started(ncclResult_t r, const char* stmt, const char* file, int line) {
    if (r != ncclSuccess && r != ncclInProgress)
      ::lockstep::cuda::throw_library_error("NCCL", static_cast<int>(r), ncclGetErrorString(r), stmt, file, line);
  }

  std::string timeout_message(int rank, const char* what) const {
    std::ostringstream os;
    os << "NcclCommunicator: rank " << rank << " (cuda:" << device(rank) << ") timed out after "
       << opts_.timeout.count() << " ms in " << what;
    return os.str();
  }

  // Polls rank's communicator until its pending call has completed.
  void settle(int rank, const char* what, Clock::time_point deadline) {
    for (;;) {
      {
        std::shared_lock<std::shared_mutex> lk(m_);
        throw_if_aborted(rank, what);
        ncclResult_t state = ncclInProgress;
        ncclResult_t r = ncclCommGetAsyncError(comms_[static_cast<size_t>(rank)], &state);
        if (r != ncclSuccess) state = r;
        if (state == ncclSuccess) return;
        if (state != ncclInProgress) {
          std::string msg = library_message(state, "ncclCommGetAsyncError(comm, &state)", __FILE__, __LINE__);
          lk.unlock();
          fail(rank, what, msg);
        }
      }
      if (Clock::now() > deadline) fail(rank, what, timeout_message(rank, what));
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  [[noreturn]] void fail(int rank, const char* what, const std::string& message) {
    std::ostringstream os;
    os << "NcclCommunicator rank " << rank << ": " << what << ": " << message;
    abort(os.str());
    throw Error(os.str());
  }

  void throw_if_aborted(int rank, const char* what) const {
    if (!aborted_) return;
    std::ostringstream os;
    os << "NcclCommunicator rank " << rank << ": " << what << " aborted: " << reason_;
    throw Error(os.str());
  }

  void abort_locked(const std::string& reason) noexcept {
    if (aborted_) return;
    try {
      reason_ = reason;
    } catch (...) {
    }
    aborted_ = true;
    aborted_flag_.store(true);
    for (ncclComm_t& c : comms_) {
      if (c) ncclCommAbort(c);  // nothing to do about a failing abort: the handle is gone
      c = nullptr;
    }
  }

  // The watchdog (see the header): an asynchronous error on any communicator aborts the group.
  void watch() noexcept {
    std::unique_lock<std::mutex> w(watch_m_);
    while (!watch_stop_) {
      watch_cv_.wait_for(w, std::chrono::milliseconds(100));
      if (watch_stop_) return;
      std::string problem;
      {
        std::shared_lock<std::shared_mutex> lk(m_);
        if (aborted_) return;  // nothing left to watch
        for (size_t i = 0; i < comms_.size() && problem.empty(); ++i) {
          ncclResult_t state = ncclSuccess;
          const ncclResult_t r = ncclCommGetAsyncError(comms_[i], &state);
          if (r != ncclSuccess) state = r;
          if (state == ncclSuccess || state == ncclInProgress) continue;
          try {
            problem = "NCCL reported an error on rank " + std::to_string(first_rank_ + static_cast<int>(i)) +
                      " (cuda:" + std::to_string(devices_[i]) + ") while its collectives ran: " +
                      library_message(state, "ncclCommGetAsyncError(comm, &state)", __FILE__, __LINE__);
          } catch (...) {
            problem = "NCCL reported an asynchronous error";
          }
        }
      }
      if (!problem.empty()) {
        abort(problem);
        return;
      }
    }
  }

  void abort_all(const char* reason) noexcept {
    std::unique_lock<std::shared_mutex> lk(m_);
    abort_locked(reason);
  }

  const std::vector<int> devices_;   // [index in this process]
  const NcclOptions opts_;
  const int world_, first_rank_;     // the NCCL communicator's size; this process's first rank
  mutable std::shared_mutex m_;       // shared: one rank's NCCL call; exclusive: abort, teardown
  std::vector<ncclComm_t> comms_;     // [rank]; null once aborted
  bool aborted_ = false;              // guarded by m_
  std::atomic<bool> aborted_flag_{false};
  std::string reason_;                // guarded by m_
  std::thread watchdog_;              // watch(), from creation to teardown
  std::mutex watch_m_;
  std::condition_variable watch_cv_;
  bool watch_stop_ = false;           // guarded by watch_m_
};

#define LS_NCCL_RUN(rank, what, expr) \
  group_->run(rank, what, [&](ncclComm_t comm) { return (expr); }, #expr, __FILE__, __LINE__)

NcclCommunicator::NcclCommunicator(std::shared_ptr<NcclGroup> group, int rank)
    : group_(std::move(group)), rank_(rank) {
  LS_CHECK(group_ && rank >= 0 && rank < group_->local_size(),
           "NcclCommunicator: rank " << rank << " outside the group");
  barrier_word_ = Buffer(Device::cuda(group_->device(rank)), sizeof(float));
}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::size() const { return group_->size(); }
int NcclCommunicator::rank() const { return group_->first_rank() + rank_; }
int NcclCommunicator::device() const { return group_->device(rank_); }
void NcclCommunicator::abort(const std::string& reason) noexcept { group_->abort(reason); }
bool NcclCommunicator::aborted() const { return group_->aborted(); }

void NcclCommunicator::check_context(const Context& ctx, const char* op) const {
  LS_CHECK(ctx.is_cuda() && ctx.device().index == device(),
           op << ": NcclCommunicator rank " << rank_ << " drives cuda:" << device()
              << " but the context runs on " << ctx.device().str());
  CUDA_CHECK(cudaSetDevice(device()));
}

void NcclCommunicator::all_reduce(Context& ctx, Tensor& buf, ReduceOp op) {
  check_context(ctx, "all_reduce");
  expect_on(ctx, buf, "all_reduce", "buf");
  LS_CHECK(buf.dtype() == DType::f32 || buf.dtype() == DType::bf16,
           "all_reduce: buf must be f32 or bf16, got " << dtype_name(buf.dtype()));
  const ncclRedOp_t nop = op == ReduceOp::sum ? ncclSum : ncclAvg;
  const ncclDataType_t type = nccl_type(buf.dtype());
  cudaStream_t s = ctx.cuda().comm;
  LS_NCCL_RUN(rank_, "all_reduce",
              ncclAllReduce(buf.raw(), buf.raw(), static_cast<size_t>(buf.numel()), type, nop, comm, s));
}

void NcclCommunicator::all_gather(Context& ctx, const Tensor& send, Tensor& recv) {
  check_context(ctx, "all_gather");
  expect_on(ctx, send, "all_gather", "send");
  expect_on(ctx, recv, "all_gather", "recv");
  expect_dtype(recv, send.dtype(), "all_gather", "recv");
  expect_numel(recv, send.numel() * size(), "all_gather", "recv");
  const ncclDataType_t type = nccl_type(send.dtype());
  cudaStream_t s = ctx.cuda().comm;
  LS_NCCL_RUN(rank_, "all_gather",
              ncclAllGather(send.raw(), recv.raw(), static_cast<size_t>(send.numel()), type, comm, s));
}

void NcclCommunicator::broadcast(Context& ctx, Tensor& buf, int root) {
  check_context(ctx, "broadcast");
  expect_on(ctx, buf, "broadcast", "buf");
  LS_CHECK(root >= 0 && root < size(), "broadcast: root " << root << " outside a group of " << size());
  const ncclDataType_t type = nccl_type(buf.dtype());
  cudaStream_t s = ctx.cuda().comm;
  LS_NCCL_RUN(rank_, "broadcast",
              ncclBroadcast(buf.raw(), buf.raw(), static_cast<size_t>(buf.numel()), type, root, comm, s));
}

void NcclCommunicator::all_to_all(Context& ctx, const Tensor& send, Tensor& recv) {
  check_context(ctx, "all_to_all");
  expect_on(ctx, send, "all_to_all", "send");
  expect_on(ctx, recv, "all_to_all", "recv");
  expect_dtype(recv, send.dtype(), "all_to_all", "recv");
  expect_numel(recv, send.numel(), "all_to_all", "recv");
  const int n = size();
  LS_CHECK(send.numel() % n == 0, "all_to_all: " << send.numel()
                                      << " elements do not split into " << n << " equal chunks");
  const size_t count = static_cast<size_t>(send.numel() / n);
  const size_t chunk_bytes = count * dtype_size(send.dtype());
  const ncclDataType_t type = nccl_type(send.dtype());
  cudaStream_t s = ctx.cuda().comm;
  const char* sp = static_cast<const char*>(send.raw());
  char* rp = static_cast<char*>(recv.raw());
  auto exchange = [&](ncclComm_t comm) {
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) return r;
    for (int j = 0; j < n && r == ncclSuccess; ++j) {
      r = ncclSend(sp + static_cast<size_t>(j) * chunk_bytes, count, type, j, comm, s);
      if (r == ncclSuccess) r = ncclRecv(rp + static_cast<size_t>(j) * chunk_bytes, count, type, j, comm, s);
    }
    ncclResult_t end = ncclGroupEnd();
    return r != ncclSuccess ? r : end;
  };
  group_->run(rank_, "all_to_all", exchange, "ncclGroupStart(); ncclSend/ncclRecv x size; ncclGroupEnd()",
              __FILE__, __LINE__);
}

void NcclCommunicator::barrier(Context& ctx) {
  check_context(ctx, "barrier");
  cudaStream_t s = ctx.cuda().comm;
  void* word = barrier_word_.data();
  LS_NCCL_RUN(rank_, "barrier", ncclAllReduce(word, word, 1, ncclFloat32, ncclSum, comm, s));
  group_->wait_stream(rank_, s, "barrier");
}

std::string nccl_unique_id() {
  ncclUniqueId id;
  NCCL_CHECK(ncclGetUniqueId(&id));
  return std::string(reinterpret_cast<const char*>(&id), sizeof id);
}

std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(const std::vector<int>& devices,
                                                                   const NcclOptions& options, const NcclSpan& span) {
  const GpuStatus& gpus = gpu_status();
  LS_CHECK(gpus.available, "make_nccl_group: " << gpus.reason);
  LS_CHECK(!devices.empty(), "make_nccl_group: no devices given");
  for (size_t i = 0; i < devices.size(); ++i) {
    LS_CHECK(devices[i] >= 0 && devices[i] < gpus.count,
             "make_nccl_group: cuda:" << devices[i] << " does not exist (" << gpus.count << " GPUs)");
    for (size_t j = 0; j < i; ++j)
      LS_CHECK(devices[j] != devices[i], "make_nccl_group: cuda:" << devices[i]
                                             << " is listed twice; one NCCL rank per GPU (use "
                                                "LocalCommunicator to share a GPU between workers)");
  }
  auto group = std::make_shared<NcclGroup>(devices, options, span);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < static_cast<int>(devices.size()); ++r)
    out.push_back(std::make_unique<NcclCommunicator>(group, r));
  return out;
}

}  // namespace lockstep::engine
