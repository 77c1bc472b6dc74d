// The processes of one run: this process alone, or one of P processes started together by mpirun,
// mpiexec or srun and joined over MPI (one process per node, each driving its own workers). It
// owns MPI's lifetime (MPI_Init_thread at join, MPI_Finalize at exit) and the process-level
// communicator (MpiCommunicator, host memory) that the hierarchical group and NCCL's bootstrap
// use. Without MPI in the build, a launch of several processes is refused with a message saying
// how to build with MPI; a launch of one process then runs alone.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "engine/comm/communicator.h"
#include "engine/comm/launch.h"

namespace lockstep::engine {

class Processes {
 public:
  // This process alone (no MPI).
  Processes() = default;
  ~Processes();
  Processes(const Processes&) = delete;
  Processes& operator=(const Processes&) = delete;

  // Joins the processes the environment says were launched together (detect_process_launch);
  // one process alone when there was no launcher. MPI can be joined once per process; a second
  // call throws. `timeout` bounds every wait of the process-level communicator.
  static std::unique_ptr<Processes> join(std::chrono::milliseconds timeout);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool several() const { return size_ > 1; }
  // Joined over MPI: started by a launcher, also as its only process (mpirun -np 1 runs the
  // multi-process path end to end on one machine).
  bool joined() const { return comm_ != nullptr; }
  // The process-level communicator (rank = process rank, host tensors); null when alone.
  Communicator* comm() { return comm_.get(); }
  std::string host() const { return host_; }

  // Ends every process of the job now with `code` (MPI_Abort); this process alone: std::exit.
  [[noreturn]] void abort_job(int code) noexcept;

 private:
  int rank_ = 0, size_ = 1;
  std::string host_;
  std::unique_ptr<Communicator> comm_;
  bool mpi_ = false;
};

}  // namespace lockstep::engine
