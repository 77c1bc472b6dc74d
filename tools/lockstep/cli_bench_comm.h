// `lockstep bench comm`: all-reduce time, algorithm bandwidth and bus bandwidth (as nccl-tests
// reports them: algbw = bytes / time, busbw = algbw * 2(N-1)/N) over sizes doubling from
// --min-bytes to --max-bytes, one thread per rank, with a correctness check on seeded data.
//   --gpus N                 NCCL over GPUs 0..N-1 (the default when a GPU is usable: all GPUs)
//   --device cpu --workers N LocalCommunicator over N CPU threads (the default otherwise: 2)
//   --sync sign              instead: per f32 gradient size, all-reduce (average) against the 1-bit
//                            sign exchanges (pack, allgather or sharded all-to-all + all-gather,
//                            vote, unpack), with the bytes each rank sends and receives
// argv[0] is "comm" (main passes argv + 2). Problems are ConfigErrors naming the option.
#pragma once

#include <cstdint>
#include <iostream>
#include <string>

#include "engine/config.h"
#include "tools/lockstep/cli_train.h"
#include "kernels/dtype.h"

namespace lockstep::cli {

struct BenchCommConfig {
  bool nccl = false;        // --gpus: NCCL; otherwise a local group on the CPU
  int ranks = 2;            // --gpus N or --workers N
  int64_t min_bytes = 1024;
  int64_t max_bytes = int64_t{256} << 20;
  int iters = 20;           // timed iterations per size (after 2 untimed, the first checked)
  DType dtype = DType::f32;
  bool sign = false;        // --sync sign: all-reduce vs sign exchanges
};

BenchCommConfig parse_bench_comm_args(int argc, const char* const* argv, std::ostream& notes = std::cerr);
std::string bench_comm_help();
// Prints the table to `out`; throws lockstep::Error when a correctness check fails.
int run_bench_comm(const BenchCommConfig& c, std::ostream& out);

}  // namespace lockstep::cli
