// `lockstep bench train`: training throughput through the same code path as `lockstep train`.
// The options other than --warmup, --steps, --profile-steps and --json are `lockstep train`'s
// (parsed by parse_train_args into a TrainConfig): any --arch, --batch-size, --precision,
// --device, --workers / --gpus, --sync, --data DIR ... The bench adds --epochs 1, --no-checkpoint,
// no evaluation and --stop-after at the last step it needs; options that would change the shape of
// the run (--epochs, --steps-per-epoch, --accumulate, --resume, ...) are refused.
//
// One Trainer runs warmup + steps + profile-steps + 1 steps (the last only closes the one before):
//  - warm-up steps are not timed;
//  - timed steps: a step hook on every worker records an event on its compute stream at each
//    step's start (a host clock mark on a CPU worker) and never waits for the device, as
//    `lockstep train` does not, so each upload runs on the copy stream under the step before.
//    A step's time is the slowest worker's, from its mark at the step's start to its mark at the
//    next step's (the workers are in lockstep through the gradient exchange). images/s of a
//    step = global batch / its time; the median is the lower middle step of the sorted times
//    (a real step, so images/s x step time = global batch exactly); min and max likewise;
//  - profiled steps: each worker's PhaseTimer (engine/phase_timer.h) waits for the device at every
//    phase boundary, which costs a little, so these steps give the breakdown only (rank 0's
//    mean per step) and never the headline.
// Synthetic data (the default): each worker's synthetic source (the same as `lockstep train
// --synthetic`) makes 4 batches once, which are then replayed, so the bench measures the
// training step rather than the generator; uploads, normalisation and flips still run every step
// as in training. --data DIR reads a folder through the loader as training does.
// Peak memory: CPU: the process's peak resident set (getrusage ru_maxrss); CUDA: device memory in
// use (cudaMemGetInfo) after the steps less before setup, the most of any GPU (lockstep allocates
// nothing inside a step, so this is the run's peak; it includes cuDNN, cuBLAS and NCCL memory).
// argv[0] is "train" (run_bench passes argv + 1).
#pragma once

#include <cstdint>
#include <iostream>
#include <string>

#include "engine/config.h"

namespace lockstep::cli {

struct BenchTrainConfig {
  engine::TrainConfig train;  // as `lockstep train` would run it, with the bench's additions
  int64_t warmup = 5;         // steps not timed
  int64_t steps = 20;         // timed steps (no phase timer)
  int64_t profile_steps = 5;  // steps timed phase by phase, after the timed ones (0: no breakdown)
  std::string json;           // --json FILE: one JSON object; "" = none
  bool keep_out = false;      // --out given: keep the run folder (otherwise a temporary one)
  int64_t total_steps() const { return warmup + steps + profile_steps + 1; }
};

BenchTrainConfig parse_bench_train_args(int argc, const char* const* argv, std::ostream& notes = std::cerr);
std::string bench_train_help();
// Runs the bench, prints the table to `out`, writes --json. Errors are thrown.
int run_bench_train(const BenchTrainConfig& c, std::ostream& out);

}  // namespace lockstep::cli
