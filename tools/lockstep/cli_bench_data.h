// `lockstep bench data --data DIR --loader-threads T [--image-size 224] [--batch-size 64]
//                      [--batches N] [--warmup W] [--prefetch P] [--seed S]`
// Runs the training loader (random-resized crop + flip, DCT-scaled decode) over DIR/train (or DIR
// when it has no train/) and reports decoded-and-augmented images per second, per loader
// thread, and per CPU-second of the process (getrusage), over N batches after W warm-up
// batches (default 20 after 3). The consumer does nothing but take batches, so the figure is
// the loader's own throughput. argv[0] is "bench". run_bench also dispatches `bench train`
// (cli_bench_train.h) and `bench comm` (cli_bench_comm.h).
#pragma once

#include <iostream>

namespace lockstep::cli {

int run_bench(int argc, const char* const* argv, std::ostream& out);

}  // namespace lockstep::cli
