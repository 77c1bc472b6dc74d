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
                                                           NcclOptions options) {
  LS_CHECK(options.timeout.count() > 0,
           "make_nccl_group: timeout must be > 0 ms, got " << options.timeout.count());
#if LOCKSTEP_HAVE_CUDA
  return make_nccl_communicators(devices, options);
#else
  (void)devices;
  throw Error("make_nccl_group: lockstep was built without its CUDA backend (no NCCL); "
              "use a local group (--device cpu --workers N)");
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
      comms[static_cast<size_t>(r)]->abort(who + " " + std::to_string(r) + " failed: " + e.what());
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
  if (n == 1) throw Error(reason);
  throw Error(who + " " + std::to_string(failed_rank) + " failed: " + reason);
}

}  // namespace lockstep::engine
