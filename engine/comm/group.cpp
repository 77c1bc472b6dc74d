// The group factories; the NCCL one exists only with the CUDA backend.
#include "engine/comm/group.h"

#include <thread>

#include <mutex>

#include "kernels/error.h"

namespace lockstep::engine {

std::vector<std::unique_ptr<Communicator>> make_local_group(int n, LocalOptions options) {
  LS_CHECK(n >= 1, "make_local_group: a group needs at least one rank, got " << n);
  LS_CHECK(options.timeout.count() > 0,
           "make_local_group: timeout must be > 0 ms, got " << options.timeout.count());
  auto group = make_local_group_state(n, options);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<LocalCommunicator>(group, r));
  return out;
}

std::vector<std::unique_ptr<Communicator>> make_nccl_group(const std::vector<int>& devices,
                                                           NcclOptions options, const NcclSpan& span) {
  LS_CHECK(options.timeout.count() > 0,
           "make_nccl_group: timeout must be > 0 ms, got " << options.timeout.count());
#if LOCKSTEP_HAVE_CUDA
  return make_nccl_communicators(devices, options, span);
#else
  (void)devices;
  (void)span;
  throw Error("make_nccl_group: lockstep was built without its CUDA backend (no NCCL); "
              "use a local group (--device cpu --workers N)");
#endif
}

NcclSpan nccl_span_over(Processes& procs, int world, int first_rank) {
  LS_CHECK(procs.joined(), "nccl_span_over: the processes are not joined over MPI");
#if LOCKSTEP_HAVE_CUDA
  NcclSpan span;
  span.world = world;
  span.first_rank = first_rank;
  // Every process learns the id's size from its own NCCL; process 0's bytes overwrite the rest.
  span.unique_id = nccl_unique_id();
  Context host(Device::cpu());
  Tensor id(span.unique_id.data(), Shape{static_cast<int64_t>(span.unique_id.size())}, DType::u8, Device::cpu());
  procs.comm()->broadcast(host, id, 0);
  return span;
#else
  (void)world;
  (void)first_rank;
  throw Error("nccl_span_over: lockstep was built without its CUDA backend (no NCCL)");
#endif
}

void run_on_every_rank(std::vector<std::unique_ptr<Communicator>>& comms, const std::function<void(int)>& f,
                       const std::string& who) {
  const int n = static_cast<int>(comms.size());
  std::mutex m;
  int failed_rank = -1;
  std::string reason;
  auto body = [&](int r) {
    try {
      f(r);
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(m);
        if (failed_rank < 0) {
          failed_rank = r;
          reason = e.what();
        }
      }
      comms[static_cast<size_t>(r)]->abort(who + " " + std::to_string(comms[static_cast<size_t>(r)]->rank()) +
                                           " failed: " + e.what());
    }
  };
  if (n == 1) {
    body(0);
  } else {
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r) threads.emplace_back(body, r);
    for (auto& t : threads) t.join();
  }
  if (failed_rank < 0) return;
  if (n == 1 && comms[0]->size() == 1) throw Error(reason);
  // The rank in the whole group (across processes it is not the thread's index here).
  throw Error(who + " " + std::to_string(comms[static_cast<size_t>(failed_rank)]->rank()) + " failed: " + reason);
}

}  // namespace lockstep::engine
