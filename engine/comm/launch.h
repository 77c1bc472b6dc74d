// How this process was launched: alone, or as one of P ranks started by mpirun / mpiexec / srun.
// Read from the launcher's environment (Open MPI, MPICH/Hydra, PMIx, SLURM), so a build without
// MPI can still tell that it was started as one of several processes and refuse clearly instead
// of training P unrelated copies of the same run.
#pragma once

#include <string>

namespace lockstep::engine {

struct ProcessLaunch {
  int rank = 0;           // this process's rank among the launched processes
  int size = 1;           // how many processes were launched together
  std::string launcher;   // "" when alone; else the variable that told us ("OMPI_COMM_WORLD_SIZE", ...)
};

ProcessLaunch detect_process_launch();

}  // namespace lockstep::engine
