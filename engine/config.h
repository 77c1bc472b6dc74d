// TrainConfig: every setting of a `lockstep train` or `lockstep eval` run, as one plain struct
// with defaults. validate() checks it once, before any work starts (ARCHITECTURE decision 11):
// the first problem found throws ConfigError, whose message is one line naming the option as
// the user types it ("--batch-size must be > 0 (got 0)"); tools/ prints it and exits 2.
//
// Units: batch_size is per worker and per micro-batch; one optimizer update consumes
// `accumulate` micro-batches on each of `workers` workers, so global_batch() is what the
// learning-rate scaling rule sees. steps_per_epoch counts micro-batches per worker.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/schedule.h"
#include "kernels/batchnorm.h"
#include "kernels/conv.h"
#include "kernels/device.h"
#include "kernels/dtype.h"
#include "kernels/error.h"

namespace lockstep::engine {

// An invalid setting. option() is the flag as typed ("--batch-size"); what() the whole line.
class ConfigError : public Error {
 public:
  ConfigError(std::string option, const std::string& message)
      : Error(message), option_(std::move(option)) {}
  const std::string& option() const { return option_; }

 private:
  std::string option_;
};

enum class OptimizerKind { sgd, lars };
std::string_view optimizer_name(OptimizerKind k);  // "sgd", "lars"
OptimizerKind parse_optimizer(std::string_view text);  // throws lockstep::Error

enum class Command { train, eval };

// How workers agree on an update (engine/sync/): average the gradients, majority-vote signs, or
// train independently and average the models (every K updates, or once at the end).
enum class SyncKind { allreduce, sign, average, async, backup, coded };
std::string_view sync_name(SyncKind k);          // "allreduce", "sign", "average", "async", "backup", "coded"
SyncKind parse_sync(std::string_view text);      // throws lockstep::Error
// --sign-exchange: auto = sharded for more than 2 workers, allgather otherwise.
enum class SignExchangeKind { auto_, allgather, sharded };
std::string_view sign_exchange_kind_name(SignExchangeKind k);  // "auto", "allgather", "sharded"
SignExchangeKind parse_sign_exchange(std::string_view text);   // throws lockstep::Error

// "runs/<UTC now as YYYYmmdd-HHMMSS>".
std::string default_out_dir();
// Where the default job keeps Fashion-MNIST: $LOCKSTEP_CACHE, else $XDG_CACHE_HOME/lockstep, else
// $HOME/.cache/lockstep, else .lockstep-cache; then "/fashion-mnist".
std::string default_dataset_dir();

struct TrainConfig {
  Command command = Command::train;  // eval checks only what evaluation uses

  // model and data
  std::string arch = "resnet50";
  int classes = 1000;
  int image_size = 224;
  bool synthetic = false;       // deterministic random batches instead of a dataset
  std::string data_dir;         // ImageNet-style folder (the loader's issue); "" with synthetic
  int64_t steps_per_epoch = 0;  // micro-batches per worker per epoch; required with synthetic,
                                // 0 = the whole dataset otherwise
  int64_t eval_steps = 0;       // synthetic validation batches per evaluation; 0 = no evaluation
  bool default_dataset = false; // the default job: Fashion-MNIST, imported into data_dir on first use
  int loader_threads = 0;       // decode threads per worker; 0 = the cores divided among workers
  int prefetch = 4;             // batches decoded ahead of each worker
  double crop_scale_min = 0.08; // random-resized crop: smallest area fraction (Inception's 0.08)
  std::string bad_images = "skip";  // skip (count, log, go on) | fail (stop at the first)
  double max_bad_fraction = 0.01;   // more bad images than this in an epoch stops the run

  // devices and batch
  Device device = Device::cuda();
  int workers = 1;               // this process's workers; on CUDA = devices x workers_per_gpu
  int processes = 1;             // processes of the run (mpirun -np P): set from the launch, not a flag
  std::vector<int> devices;     // GPUs of a multi-GPU run (--gpus N -> 0..N-1, or --devices 0,2,3)
  int workers_per_gpu = 1;      // >1: several workers share each GPU (LocalCommunicator; for tests)
  double bucket_mb = 25;        // gradient bucket cap (the first bucket is 1 MB)
  bool overlap = true;          // all-reduce buckets while backward runs (--no-overlap: after it)
  double comm_timeout_s = 600;  // how long a worker waits for its peers before the run fails
  SyncKind sync = SyncKind::allreduce;
  double sign_momentum = 0.9;   // Signum's beta; 0 = signSGD (--sync sign)
  SignExchangeKind sign_exchange = SignExchangeKind::auto_;
  int64_t sign_warmup_steps = 0;  // updates exchanged uncompressed before the vote takes over
  int64_t average_every = 0;    // --sync average: average the models every K updates; 0 = once, at the end
  // --sync async (engine/async/): parameter-server SGD, each gradient applied as it arrives
  double ema = 0;               // decay of the parameters' moving average kept by the server; 0 = none
  bool eval_ema = false;        // evaluate the moving average instead of the parameters
  int async_ramp_epochs = 3;    // active workers grow from 1 to all over these epochs
  bool staleness_lr = false;    // divide the rate by (staleness + 1)
  bool async_round_robin = false;  // a fixed interleaving of reads and updates (tests, reproducible runs)
  int ps_shards = 4;            // parameter-server shards (each with its own lock)
  int backup_workers = 0;       // --sync backup: b of the workers are backups (each update takes the first workers - b)
  std::string straggler;        // --straggler SPEC (engine/straggler.h); "" = none
  int stragglers = 1;           // --sync coded: s, the stragglers every step tolerates
  std::string code = "cyclic";  // --sync coded: cyclic | fractional (needs (s+1) | workers)
  int batch_size = 32;          // per worker, per micro-batch
  int accumulate = 1;           // micro-batches per optimizer update
  DType precision = DType::bf16;  // activations on GPU: bf16 | f16 | f32; CPU is f32 only
  // How cuDNN algorithms are chosen (kernels/conv.h). heuristic: the choice measured fastest on
  // an H100 (bench/RESULTS.md, 2026-11-26) and the one that repeats bit for bit.
  ConvAlgoSearch conv_algo = ConvAlgoSearch::heuristic;
  // > 3: the stem's convolution reads the images padded with zero channels to this (4 or 8 for
  // cuDNN's NHWC kernels); 0: it reads the 3. The same function, weights and checkpoints.
  int stem_channels = 0;
  // The stem's stride-2 convolution run as a stride-1 one over the images' 2x2 blocks (4x the
  // channels: 16 for cuDNN's tensor cores). The same function, weights and checkpoints; ImageNet
  // nets (and tiny_nobn) only.
  bool stem_space_to_depth = false;
  // Whose kernels run training BN on CUDA: lockstep's (deterministic) or cuDNN's fused NHWC ones.
  BatchNormKernels bn_kernels = BatchNormKernels::automatic;
  // Each kind of micro-batch captured once as a CUDA graph and replayed (engine/worker.h).
  bool cuda_graph = false;

  // schedule (engine/schedule.h)
  int epochs = 90;
  double base_lr = 0.1;
  bool lr_scaling = true;
  double warmup_epochs = 5;
  ScheduleKind schedule = ScheduleKind::step;
  double poly_power = 2.0;

  // optimizer
  OptimizerKind optimizer = OptimizerKind::sgd;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 1e-4;
  bool wd_on_bn = false;        // also decay BN parameters and biases
  double lars_eta = 0.001;      // LARS trust coefficient
  double label_smoothing = 0;
  bool zero_init_residual = true;  // last BN gamma of each residual block starts at 0

  // run
  uint64_t seed = 0;
  std::string out_dir = default_out_dir();
  int log_every = 10;           // steps between device read-backs of loss/accuracy
  bool tensorboard = true;      // also write the log as TensorBoard scalars in <out>/tb (--no-tensorboard: off)

  // checkpoints (engine/checkpoint/checkpoint.h): always at the end and on SIGINT/SIGTERM
  bool checkpoints = true;          // --no-checkpoint: none at all (benchmarks)
  int64_t checkpoint_every = 0;     // also every N updates (or N epochs); 0 = only at the end
  bool checkpoint_in_epochs = false;  // --checkpoint-every Ne
  int keep_last = 0;                // keep the newest K checkpoints; 0 = all
  int64_t stop_after = 0;           // stop (with a checkpoint) after this many updates of the run; 0 = never
  std::string resume;               // checkpoint directory to continue from (resolved from --resume)
  bool overwrite = false;           // --overwrite: replace a run already in out_dir (engine/run_dir.h); not saved
  std::string init_from;            // torchvision-named weights to start from (fine-tuning)
  std::string weights;              // eval: weights to evaluate (a safetensors file or checkpoint)

  // Throws ConfigError naming the first invalid option. Consults gpu_status() for cuda.
  void validate() const;
  int64_t global_batch() const { return int64_t{processes} * workers * batch_size * accumulate; }
  // --sign-exchange resolved: auto is sharded for workers > 2, allgather otherwise.
  SignExchangeKind resolved_sign_exchange() const;
  // The device of each worker, by rank: cpu for CPU runs; on CUDA each of `devices` (or the
  // --device GPU) repeated workers_per_gpu times.
  std::vector<Device> worker_devices() const;
  // The schedule's inputs, given the optimizer updates in one epoch.
  ScheduleConfig schedule_config(int64_t updates_per_epoch) const;

  // Every field, resolved (device "cpu"/"cuda:0", precision "bf16", schedule "step", ...),
  // plus "global_batch". from_json reads what to_json wrote (unknown keys are ignored, missing
  // ones keep their defaults); a field of the wrong JSON type, out of its C++ type's range or
  // naming no known choice throws Error naming it ("field 'config.classes' is \"4\", expected an
  // integer"). It does not validate: validate() judges the values.
  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);

  bool operator==(const TrainConfig&) const = default;
};

std::string_view command_name(Command c);  // "train", "eval"

}  // namespace lockstep::engine
