// detect_process_launch: the first launcher variable present wins; malformed values are ignored
// (treated as absent) rather than guessed at.
#include "engine/comm/launch.h"

#include <cstdlib>
#include <string>

namespace lockstep::engine {

namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return (*end == '\0' && x >= 0 && x < (1 << 24)) ? static_cast<int>(x) : fallback;
}
}  // namespace

ProcessLaunch detect_process_launch() {
  // (size variable, rank variable): Open MPI, MPICH/Hydra and Intel MPI, PMIx, SLURM's srun.
  static constexpr const char* kVars[][2] = {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
                                             {"PMI_SIZE", "PMI_RANK"},
                                             {"PMIX_SIZE", "PMIX_RANK"},
                                             {"SLURM_STEP_NUM_TASKS", "SLURM_PROCID"}};
  for (const auto& v : kVars) {
    const int size = env_int(v[0], -1);
    if (size < 1) continue;
    ProcessLaunch l;
    l.size = size;
    l.rank = env_int(v[1], 0);
    l.launcher = v[0];
    if (l.rank >= l.size) continue;
    return l;
  }
  return {};
}

}  // namespace lockstep::engine
