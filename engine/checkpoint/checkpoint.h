// Checkpoints of a run (ARCHITECTURE decisions 9-11): <run>/checkpoints/step-<N>/ after N updates,
//   model.safetensors      rank 0's weights and BN statistics, torchvision names and layouts
//   optimizer.safetensors  momentum under each parameter's name (SGD/LARS, the same on every
//                          worker); --sync sign: each worker's Signum momentum as rank<r>.<name>
//   workers.safetensors    (more than one worker) the BN running statistics of ranks >= 1, as
//                          rank<r>.<name>: they follow each worker's own batches between evals
//   state.json             format, version, position, RNG and scaler state, the resolved config,
//                          metrics at save time, and the SHA-256 and size of every other file
// and <run>/checkpoints/latest, a one-line file naming the newest complete step-<N>. A checkpoint
// is built in a temporary directory, every file fsync'd, renamed into place, the parent fsync'd,
// and only then `latest` replaced atomically (engine/checkpoint/atomic_dir.h): a crash at any
// moment leaves `latest` naming a complete checkpoint. open_checkpoint() verifies every hash and
// parses every file strictly before returning, so a bad checkpoint is never half-loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_dir.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/weights.h"

namespace lockstep::engine {

inline constexpr int kCheckpointFormat = 1;

// A checkpoint that cannot be used: what() names the file and the field.
class CheckpointError : public Error {
 public:
  using Error::Error;
};
// Contents write_checkpoint refuses to write: a value is NaN or infinite (what() names it).
class NonFiniteCheckpoint : public CheckpointError {
 public:
  using CheckpointError::CheckpointError;
};

// What one worker carries from step to step besides the shared state.
struct WorkerCheckpoint {
  uint64_t rng_offset = 0;     // its Context's Philox counter
  // Training loss / accuracy sums since the last log read-back, so the first logged window of a
  // resumed run averages the same steps as an uninterrupted run's.
  double loss_sum = 0, top1 = 0, top5 = 0;
  int64_t samples = 0;
};

struct CheckpointState {
  int format = kCheckpointFormat;
  std::string lockstep_version;
  std::string created;          // UTC, ISO 8601
  int64_t update = 0;           // optimizer updates done: the N of step-<N>
  int epoch = 1;                // the epoch the run continues in (1-based)
  int64_t epoch_step = 0;       // micro-batches of that epoch already done (per worker)
  int64_t samples_seen = 0;     // training images, all workers
  int64_t bn_batches = 0;       // training micro-batches run (num_batches_tracked)
  bool finished = false;        // written at the end of training
  // Where the data continues: loader epoch (0-based) and batch position per worker.
  int64_t loader_epoch = 0, loader_position = 0;
  int64_t updates_per_epoch = 0;  // of the run that saved it (0: not recorded, an older checkpoint)
  int world = 1;
  int batch_size = 0, accumulate = 1;
  std::string sync = "allreduce";
  uint64_t seed = 0;
  std::vector<WorkerCheckpoint> workers;  // by rank
  float lr = 0;                 // the rate of the last update
  // Loss scaler (fp16).
  bool scaler_enabled = false;
  float scaler_scale = 1;
  int scaler_clean = 0;
  int64_t scaler_skipped = 0;
  int64_t sign_updates = 0;     // --sync sign: communicating steps so far (warmup counts them)
  nlohmann::json metrics = nlohmann::json::object();  // last train record and evaluation
  nlohmann::json config = nlohmann::json::object();   // TrainConfig::to_json()

  nlohmann::json to_json() const;
  // Throws CheckpointError naming `file` and the first missing or mistyped field.
  static CheckpointState from_json(const nlohmann::json& j, const std::string& file);
};

// The files of one checkpoint, ready to write.
struct CheckpointContents {
  CheckpointState state;
  HostTensors model, optimizer, workers;  // workers may be empty (one worker)
  std::map<std::string, std::string> model_meta;  // arch, classes, image_size: model.safetensors says what it is
};

// "step-<N>", and the inverse (nullopt for other names).
std::string checkpoint_name(int64_t update);
std::optional<int64_t> checkpoint_step(std::string_view name);
std::filesystem::path checkpoints_dir(const std::filesystem::path& run_dir);

// Writes <run>/checkpoints/step-<update>/ atomically, then `latest`. Refuses contents with a
// non-finite value (NonFiniteCheckpoint naming the first, e.g. "model.safetensors tensor
// 'fc.weight' element 12 is NaN", before touching the disk): a diverged run has them, and such a
// checkpoint would replace good ones (JSON cannot hold NaN either). An existing step-<N> (a
// resumed run saving the same update again) is replaced atomically. Stages for crash tests:
// "files-written", "dir-synced", "renamed", "parent-synced" (the directory), then
// "latest-files-written", "latest-renamed", "latest-parent-synced" (the pointer). Throws IoError
// (disk full included) leaving the previous checkpoints and `latest` as they were.
std::filesystem::path write_checkpoint(const std::filesystem::path& run_dir, CheckpointContents& contents,
                                       const StageHook& hook = {});

struct LoadedCheckpoint {
  std::filesystem::path dir;
  CheckpointState state;
  SafetensorsFile model, optimizer;
  std::optional<SafetensorsFile> workers;
};

// Reads and verifies a checkpoint directory: state.json, every file's size and SHA-256, every
// safetensors file strictly. Throws CheckpointError / SafetensorsError / IoError naming the file.
LoadedCheckpoint open_checkpoint(const std::filesystem::path& dir);

// What <run>/checkpoints/latest names: the checkpoint's directory name ("step-N"), or the
// reason there is none ("missing", "'x' does not name a checkpoint", a read error) in `problem`.
struct LatestPointer {
  std::string name;     // "" when there is none
  std::string problem;  // "" when name is set
};
LatestPointer read_latest(const std::filesystem::path& run_dir);

// The checkpoint directories of a run, newest (largest N) first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_dir);

// --resume PATH: a checkpoint directory (it has state.json), or a run directory: the one `latest`
// names, or - when that is missing or does not verify - the newest checkpoint that does, with a
// line in `warnings` per checkpoint passed over. Throws CheckpointError when none verifies.
LoadedCheckpoint resolve_checkpoint(const std::filesystem::path& path, std::vector<std::string>* warnings);

// Removes the oldest checkpoints so that at most `keep_last` remain; never `keep` (the one just
// written). Returns what it removed. keep_last <= 0 keeps everything.
std::vector<std::filesystem::path> prune_checkpoints(const std::filesystem::path& run_dir, int keep_last,
                                                     const std::filesystem::path& keep);

// The run directory a checkpoint directory belongs to (<run>/checkpoints/step-N -> <run>).
std::filesystem::path run_dir_of(const std::filesystem::path& checkpoint_dir);

}  // namespace lockstep::engine
