// The entry points of `lockstep train` and `lockstep eval`.
#include "engine/run.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "engine/comm/launch.h"
#include "engine/comm/processes.h"
#include "engine/run_dir.h"
#include "engine/trainer.h"

namespace lockstep::engine {

namespace {

std::atomic<bool> g_stop{false};

// First SIGINT/SIGTERM: ask the run to stop at the next update with a checkpoint. A second one
// exits at once (the last complete checkpoint stays valid: they are written atomically).
extern "C" void on_stop_signal(int sig) {
  if (g_stop.exchange(true)) {
    constexpr char kQuit[] =
        "\nlockstep: quitting now; a checkpoint being written is dropped, checkpoints/latest still names the last "
        "complete one\n";
    const ssize_t ignored = write(STDERR_FILENO, kQuit, sizeof kQuit - 1);
    (void)ignored;
    _exit(128 + sig);
  }
  constexpr char kMsg[] =
      "\nlockstep: stopping after this update and writing a checkpoint (again to quit at once)\n";
  const ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)ignored;
}

// Installs the handlers for the lifetime of a run and restores the previous ones after.
class StopSignals {
 public:
  StopSignals() {
    g_stop = false;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// LOCKSTEP_TEST_CRASH_AT=<stage>:<n>: SIGKILL at the n-th time a checkpoint save reaches
// <stage> (write_checkpoint's stage names). For the crash-safety tests, which must kill a real
// process at each point of a save; nothing else reads it.
StageHook crash_hook_from_env() {
  const char* spec = std::getenv("LOCKSTEP_TEST_CRASH_AT");
  if (!spec || !*spec) return {};
  std::string s = spec;
  const size_t colon = s.rfind(':');
  const std::string stage = s.substr(0, colon);
  const int nth = colon == std::string::npos ? 1 : std::atoi(s.c_str() + colon + 1);
  auto seen = std::make_shared<int>(0);
  return [stage, nth, seen](const char* at) {
    if (stage == at && ++*seen == nth) raise(SIGKILL);
  };
}


// One process's part of a training run (all of it when alone).
int train(const TrainConfig& config, Processes& procs) {
  // Only the process of global rank 0 talks to the terminal; the others' lines would repeat it.
  std::ostream quiet(nullptr);
  // Under mpirun/srun stdout looks like a terminal (Open MPI gives each process a pty) but is
  // forwarded line by line: plain lines, not a live \r line.
  Progress progress = procs.rank() != 0 ? Progress(quiet, false)
                      : procs.joined()  ? Progress(std::cout, false)
                                        : Progress::for_stdout();
  if (procs.joined())
    progress.message("processes: " + std::to_string(procs.size()) + " (MPI), this is process 0 on " + procs.host());
  // Process 0 writes the run folder (the others write nothing): it claims it before anything else.
  std::optional<RunDirClaim> claim;
  if (procs.rank() == 0) claim.emplace(config.out_dir, config.resume, config.overwrite);
  StopSignals signals;
  Trainer trainer(config, progress, &procs);
  trainer.set_stop_flag(&g_stop);
  trainer.set_checkpoint_hook(crash_hook_from_env());
  RunSummary s = trainer.run();
  if (s.stopped) {
    if (s.checkpoint.empty())
      progress.message("stopped after update " + std::to_string(s.updates) + " (--no-checkpoint: nothing saved)");
    else
      progress.message("stopped after update " + std::to_string(s.updates) + "; continue with: lockstep train --resume " +
                       config.out_dir);
  }
  return 0;
}

}  // namespace

int run_train(const TrainConfig& config) {
  std::unique_ptr<Processes> procs =
      Processes::join(std::chrono::milliseconds(static_cast<int64_t>(config.comm_timeout_s * 1000)));
  if (!procs->joined()) return train(config, *procs);
  // Several processes: a failure in one must end all of them (the others would wait for it in a
  // collective until the timeout), so it is reported here, naming the process, and the job is
  // aborted (MPI_Abort: every process exits non-zero).
  const std::string who = "process " + std::to_string(procs->rank()) + " of " + std::to_string(procs->size()) + " (" +
                          procs->host() + ")";
  try {
    TrainConfig c = config;
    c.processes = procs->size();
    c.validate();
    return train(c, *procs);
  } catch (const ConfigError& e) {
    std::cerr << "lockstep train: " << who << ": " << e.what() << std::endl;
    procs->abort_job(2);
  } catch (const std::exception& e) {
    std::cerr << "lockstep: error: " << who << ": " << e.what() << std::endl;
    procs->abort_job(1);
  }
}

int run_eval(const TrainConfig& config) {
  const ProcessLaunch launch = detect_process_launch();
  if (launch.size > 1)
    throw ConfigError("mpirun", "lockstep eval runs in one process, but " + std::to_string(launch.size) +
                                    " were launched (" + launch.launcher + "); run it without mpirun/srun");
  Progress progress = Progress::for_stdout();
  Trainer trainer(config, progress);
  EvalRecord r = trainer.evaluate(0, 0, 0.0);
  progress.eval(r);
  return 0;
}

}  // namespace lockstep::engine
