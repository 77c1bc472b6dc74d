// `lockstep`: subcommand dispatch and the mapping from errors to exit codes.
//   0  success (and --help, --version)
//   1  a failure while working (lockstep::Error): "lockstep: error: <message>"
//   2  bad usage or an invalid option (ConfigError), before any work: "lockstep <cmd>: <message>"
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "engine/comm/launch.h"
#include "engine/run.h"
#include "tools/lockstep/cli_bench_data.h"
#include "tools/lockstep/cli_ckpt.h"
#include "tools/lockstep/cli_dataset.h"
#include "tools/lockstep/cli_train.h"

namespace {

constexpr const char* kUsage =
    "usage: lockstep <command> [options]\n"
    "\n"
    "commands:\n"
    "  train    train a ResNet (lockstep train --help)\n"
    "  eval     evaluate trained weights (or a fresh ResNet) on a validation set (lockstep eval --help)\n"
    "  dataset  import-idx, make-synthetic, inspect (lockstep dataset --help)\n"
    "  bench    train: training images/s; ops: time per layer and per op; comm: all-reduce bandwidth;\n"
    "           data: loader throughput; modes: the sync modes compared; stragglers: update times under\n"
    "           injected stragglers (lockstep bench train|ops|comm|data|modes|stragglers --help)\n"
    "  ckpt     inspect a checkpoint, a run's checkpoints or a .safetensors file (lockstep ckpt inspect --help)\n"
    "\n"
    "  lockstep --help | --version\n";

// " (process r of n)" when mpirun/srun started several of us, so each line says whose it is.
std::string process_note() {
  const lockstep::engine::ProcessLaunch l = lockstep::engine::detect_process_launch();
  return l.size > 1 ? " (process " + std::to_string(l.rank) + " of " + std::to_string(l.size) + ")" : "";
}

int dispatch(int argc, char** argv) {
  using namespace lockstep;
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "lockstep " << LOCKSTEP_VERSION << (cuda_backend_built() ? " (CUDA backend)" : " (CPU only)")
              << "\n";
    return 0;
  }
  if (cmd != "train" && cmd != "eval" && cmd != "dataset" && cmd != "bench" && cmd != "ckpt") {
    std::cerr << "lockstep: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  }
  try {
    if (cmd == "train") return engine::run_train(cli::parse_train_args(argc - 1, argv + 1));
    if (cmd == "dataset") return cli::run_dataset(argc - 1, argv + 1, std::cout);
    if (cmd == "bench") return cli::run_bench(argc - 1, argv + 1, std::cout);
    if (cmd == "ckpt") return cli::run_ckpt(argc - 1, argv + 1, std::cout);
    return engine::run_eval(cli::parse_eval_args(argc - 1, argv + 1));
  } catch (const cli::HelpRequested& h) {
    std::cout << h.text;
    return 0;
  } catch (const engine::ConfigError& e) {
    std::cerr << "lockstep " << cmd << process_note() << ": " << e.what() << "\n";
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const lockstep::Error& e) {
    std::cerr << "lockstep: error" << process_note() << ": " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "lockstep: error: " << e.what() << "\n";
    return 1;
  }
}
