// A run folder belongs to one run at a time (`lockstep train --out DIR`). RunDirClaim refuses what
// would mix or destroy runs, before anything is written:
//  - a folder another lockstep process is training into (an flock on DIR/.lock, released by
//    the kernel when that process ends, even killed; the file names its pid);
//  - a new run (no --resume) in a folder that already holds one (config.json, log.jsonl,
//    summary.json, tb/ or checkpoints/): re-running the first command after a crash would
//    replace its log and prune its checkpoints;
//  - resuming, in its own run folder, a checkpoint other than the one `latest` names while newer
//    valid ones exist: the run would write over or prune them (damaged ones may go).
// --overwrite allows the last two: a new run first deletes the old run's files (those five only;
// nothing else in DIR); an older checkpoint is resumed and the newer ones are left to be replaced.
#pragma once

#include <filesystem>
#include <string>

namespace lockstep::engine {

class RunDirClaim {
 public:
  // out: the run folder; resume: the checkpoint directory resumed ("" for a new run). Throws
  // ConfigError naming --out, --resume or the folder.
  RunDirClaim(const std::filesystem::path& out, const std::string& resume, bool overwrite);
  ~RunDirClaim();
  RunDirClaim(const RunDirClaim&) = delete;
  RunDirClaim& operator=(const RunDirClaim&) = delete;

 private:
  int fd_ = -1;  // DIR/.lock, held (flock) for the claim's lifetime
};

}  // namespace lockstep::engine
