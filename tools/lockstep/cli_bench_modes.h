// `lockstep bench modes [--modes allreduce,sign,backup,average,async] [train options]`: the source
// material's comparison ("synchronous SGD is simple and typically works better than asynchronous
// SGD") on the user's own model and data. Every mode trains the same network on the same data
// for the same epochs and straggler pattern (--straggler; the train options, parsed as `lockstep train` parses them; default: the
// default job, Fashion-MNIST on resnet20), each with its recommended learning rate:
//   allreduce  --base-lr as given, linear scaling with the global batch
//   sign       1e-4, unscaled (Signum's rate; a sign step moves every weight by lr)
//   backup     as allreduce, one of the workers a backup (each update takes the first N-1)
//   average    as allreduce, models averaged every --average-every updates (default 0: at the end)
//   async      scaled with one worker's batch (each update is one worker's); workers ramp up over
//              a third of the epochs (at most 3), as the source recommends
// Each run's folder is <out>/<mode>/ (config, log, checkpoint). Into <out> go modes.json (every
// evaluation of every mode), modes.md (the table) and two PNG plots: test top-1 against epochs
// and against wall time, one line per mode. argv[0] is "modes".
#pragma once

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace lockstep::cli {

struct ModeResult {
  std::string mode;
  std::vector<int> epochs;
  std::vector<double> top1, top5, loss, time;  // per evaluation
  double seconds = 0, img_per_s = 0;
  int64_t updates = 0, bytes_sent = 0;
};

// The comparison's files from finished runs: modes.json, modes.md, accuracy_vs_epoch.png,
// accuracy_vs_time.png in `out`.
void write_mode_report(const std::filesystem::path& out, const std::vector<ModeResult>& results,
                       const std::string& title);

int run_bench_modes(int argc, const char* const* argv, std::ostream& out);

// `lockstep bench stragglers [--modes allreduce,backup,coded] [--target ACC] [train options]`:
// the same run (and --straggler pattern) under each straggler-tolerant mode (backup: one backup
// worker; coded: one straggler tolerated), reporting the time between updates (median, p90,
// p99; intervals across an epoch's end, where evaluation runs, are left out), images/s at the
// median, and with --target the wall time until the test top-1 first reached it. Writes
// <out>/stragglers.json and <out>/stragglers.md. argv[0] is "stragglers".
int run_bench_stragglers(int argc, const char* const* argv, std::ostream& out);

}  // namespace lockstep::cli
