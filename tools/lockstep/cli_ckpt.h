// `lockstep ckpt inspect PATH [--tensors]`: what a checkpoint holds and whether it verifies.
// argv[0] is "ckpt". PATH is one of
//   a checkpoint directory (it has state.json)
//       verified as --resume would (engine::open_checkpoint: every file's size and SHA-256
//       against state.json, every safetensors file parsed strictly), then a summary: "valid" or
//       "INVALID: <reason>", the position (update, epoch and step in it, samples seen,
//       finished), when and by which lockstep it was saved, the model and run layout from the
//       saved config, the metrics at save time, and one line per file of state.json's `files`
//       (size, tensors, parameters for the model, SHA-256). An invalid checkpoint's file lines
//       say which file is wrong.
//   a run directory (it has checkpoints/; or PATH is that checkpoints/ folder)
//       one line per step-<N> checkpoint, newest first, each verified; what `latest` names (or
//       that it is missing, dangling or invalid); then the summary of the checkpoint --resume
//       would take (engine::resolve_checkpoint: `latest`, else the newest that verifies).
//   a .safetensors file
//       parsed strictly (engine::SafetensorsFile): tensor count, elements, bytes, metadata.
// --tensors adds every tensor (name, dtype, shape) of model.safetensors, or of the file.
//
// Exit status: run_ckpt returns 0 when what was asked about is valid - for a run directory, when
// every checkpoint verifies and `latest` names one of them. Anything found wrong is printed in
// the report ("INVALID: <reason naming the file and the problem>") and run_ckpt returns 1, so
// the report still shows everything that could be read. When there is nothing to report on
// (PATH does not exist or is none of the three) it throws lockstep::Error (exit 1). Bad usage
// (no or an unknown action, no PATH, an unknown option) is a ConfigError naming it (exit 2).
// `--help` throws HelpRequested.
#pragma once

#include <iostream>

#include "tools/lockstep/cli_train.h"

namespace lockstep::cli {

int run_ckpt(int argc, const char* const* argv, std::ostream& out);

}  // namespace lockstep::cli
