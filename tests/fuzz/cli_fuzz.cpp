// Fuzz target: command lines. The input's first byte picks the parser (train, eval, bench train,
// bench ops, bench comm), the rest is split into arguments at newlines. Every bad option must
// come out as a ConfigError naming it (exit status 2), never another exception. Parsing reads
// the filesystem (--resume, --data) but writes nothing.
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_target.h"
#include "tools/lockstep/cli_bench_comm.h"
#include "tools/lockstep/cli_bench_ops.h"
#include "tools/lockstep/cli_bench_train.h"
#include "tools/lockstep/cli_train.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  if (size == 0) return 0;
  const int which = data[0] % 5;
  static const char* const kCommands[5] = {"train", "eval", "train", "ops", "comm"};
  std::vector<std::string> args = {kCommands[which]};
  std::string current;
  for (size_t i = 1; i < size; ++i) {
    const char ch = static_cast<char>(data[i]);
    if (ch == '\n') {
      args.push_back(current);
      current.clear();
    } else {
      current += ch;
    }
  }
  if (!current.empty()) args.push_back(current);
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  const int argc = static_cast<int>(argv.size());
  std::ostringstream notes;
  try {
    fuzz::expect_clean("command line", [&] {
      switch (which) {
        case 0: (void)cli::parse_train_args(argc, argv.data(), notes); break;
        case 1: (void)cli::parse_eval_args(argc, argv.data(), notes); break;
        case 2: (void)cli::parse_bench_train_args(argc, argv.data(), notes); break;
        case 3: (void)cli::parse_bench_ops_args(argc, argv.data(), notes); break;
        default: (void)cli::parse_bench_comm_args(argc, argv.data(), notes); break;
      }
    });
  } catch (const cli::HelpRequested&) {
  }
  return 0;
}
