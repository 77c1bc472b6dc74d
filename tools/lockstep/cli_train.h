// Command-line parsing of `lockstep train` and `lockstep eval` into a validated TrainConfig.
// argv[0] is the subcommand's name ("train"), as main passes argv + 1; it is not parsed.
//
// Every problem is a ConfigError with one line naming the option: an unknown option, a value
// that does not parse ("--batch-size: expected an integer, got 'abc'"), or anything
// TrainConfig::validate() rejects. `--help` / `-h` throws HelpRequested carrying the text.
//
// Defaults that depend on the machine: without --device, cuda when gpu_status() finds a usable
// GPU and cpu otherwise (a note saying which, and why, goes to `notes`); without --precision,
// bf16 on cuda and fp32 on cpu.
#pragma once

#include <iostream>
#include <string>

#include "engine/config.h"

namespace lockstep::cli {

using engine::ConfigError;
using engine::TrainConfig;

struct HelpRequested {
  std::string text;
};

TrainConfig parse_train_args(int argc, const char* const* argv, std::ostream& notes = std::cerr);
TrainConfig parse_eval_args(int argc, const char* const* argv, std::ostream& notes = std::cerr);

std::string train_help();
std::string eval_help();

}  // namespace lockstep::cli
