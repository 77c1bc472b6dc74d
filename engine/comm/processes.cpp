// Processes: joining the launched processes over MPI (when built with it), or refusing a
// multi-process launch with the way to build with MPI.
#include "engine/comm/processes.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>

#include "kernels/error.h"

#if LOCKSTEP_HAVE_MPI
#include <mpi.h>

#include "engine/comm/mpi/mpi_communicator.h"
#endif

namespace lockstep::engine {

namespace {
std::atomic<bool> g_joined{false};

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}
}  // namespace

std::unique_ptr<Processes> Processes::join(std::chrono::milliseconds timeout) {
  auto p = std::make_unique<Processes>();
  p->host_ = host_name();
  const ProcessLaunch launch = detect_process_launch();
  if (launch.launcher.empty()) return p;
#if LOCKSTEP_HAVE_MPI
  LS_CHECK(!g_joined.exchange(true), "Processes::join: MPI was joined already in this process");
  int provided = 0;
  const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
  if (rc != MPI_SUCCESS)
    throw Error("launched as process " + std::to_string(launch.rank) + " of " + std::to_string(launch.size) + " (" +
                launch.launcher + ") but MPI_Init_thread failed with code " + std::to_string(rc));
  p->mpi_ = true;
  if (provided < MPI_THREAD_SERIALIZED)
    throw Error("the MPI library gives thread level " + std::to_string(provided) +
                "; lockstep calls MPI from one worker thread at a time and needs MPI_THREAD_SERIALIZED");
  p->comm_ = std::make_unique<MpiCommunicator>(timeout);
  p->rank_ = p->comm_->rank();
  p->size_ = p->comm_->size();
  return p;
#else
  (void)timeout;
  if (launch.size == 1) return p;
  throw Error("launched as process " + std::to_string(launch.rank) + " of " + std::to_string(launch.size) + " (" +
              launch.launcher + " is set) but this lockstep was built without MPI, so the processes cannot " +
              "join one run; install Open MPI (apt-get install libopenmpi-dev openmpi-bin, or tools/setup-deps.sh) " +
              "and rebuild (cmake --preset default -DLOCKSTEP_MPI=ON), or run one process");
#endif
}

Processes::~Processes() {
#if LOCKSTEP_HAVE_MPI
  comm_.reset();
  if (mpi_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
#endif
}

void Processes::abort_job(int code) noexcept {
  std::cerr.flush();
  std::cout.flush();
#if LOCKSTEP_HAVE_MPI
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

}  // namespace lockstep::engine
