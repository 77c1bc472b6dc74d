// The group factories; the NCCL one exists only with the CUDA backend.
#include "engine/comm/group.h"

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

}  // namespace lockstep::engine
