#include "tools/lockstep/cli_train.h"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>

#include <sstream>

#include <cxxopts.hpp>

#include "engine/checkpoint/checkpoint.h"
#include "nets/arch.h"
#include "tools/lockstep/cli_repeats.h"

namespace lockstep::cli {

namespace {

using engine::Command;
using engine::SyncKind;

// --sync sign's base learning rate when --base-lr is not given (README: "1-bit sign sync").
constexpr double kSignBaseLr = 1e-4;

// The defaults shown in --help come from a default-constructed TrainConfig, so the help text
// and the struct cannot disagree.
template <typename T>
std::string show(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void add_common(cxxopts::Options& o, const TrainConfig& d, int64_t eval_steps_default) {
  // clang-format off
  o.add_options("model")
    ("arch", "network: " + nets::known_arch_names(), cxxopts::value<std::string>()->default_value(d.arch))
    ("classes", "number of classes (default: 1000 for ImageNet nets, 10 for CIFAR nets and tiny)", cxxopts::value<std::string>())
    ("image-size", "square input size in pixels (default: 224 for ImageNet nets, 32 for CIFAR nets and tiny)", cxxopts::value<std::string>())
    ("synthetic", "deterministic random images and labels instead of a dataset (default: off)");
  o.add_options("device")
    ("device", "cpu, cuda or cuda:N (default: cuda when a GPU is usable, else cpu)", cxxopts::value<std::string>())
    ("batch-size", "images per micro-batch on each worker", cxxopts::value<std::string>()->default_value(show(d.batch_size)))
    ("precision", "GPU activations: bf16, fp16 or fp32; CPU is fp32 (default: bf16 on cuda, fp32 on cpu)", cxxopts::value<std::string>())
    ("conv-algo", "cuDNN algorithms: heuristic (cuDNN's ranking; the same bits every run), measure (time "
                  "each candidate once per shape; deterministic ones), fastest (also non-deterministic ones; "
                  "not bit-reproducible), heuristic-any (cuDNN's ranking, non-deterministic ones allowed), graph "
                  "(cuDNN's graph API: its heuristics' first deterministic engine) or graph-measure (its first four "
                  "timed, as PyTorch's cudnn.benchmark)",
     cxxopts::value<std::string>()->default_value(conv_algo_name(d.conv_algo)))
    ("stem-channels", "pad the images' 3 channels with zeros to N for the first convolution (4 or 8: cuDNN's "
                      "fast NHWC kernels; the same function and weights); 0: no padding",
     cxxopts::value<std::string>()->default_value(show(d.stem_channels)))
    ("stem-space-to-depth", "run the stem's 7x7 stride-2 convolution as a 4x4 stride-1 one over the images' "
                            "2x2 blocks (12 channels, padded to 16 for cuDNN's tensor cores; the same function "
                            "and weights; ImageNet nets)")
    ("bn-kernels", "training batch norm on CUDA: auto (cuDNN's for bf16/fp16 layers with channels in 8s, "
                   "else lockstep's), lockstep (our kernels; the same bits every run), scalar (ours one "
                   "channel per thread: the slower path, to compare with) or cudnn (cuDNN's persistent NHWC "
                   "kernels with the add and ReLU fused)",
     cxxopts::value<std::string>()->default_value(bn_kernels_name(d.bn_kernels)))
    ("seed", "seed of weights, data order and augmentation", cxxopts::value<std::string>()->default_value(show(d.seed)))
    ("eval-steps", "synthetic validation batches per evaluation (0: no evaluation)",
     cxxopts::value<std::string>()->default_value(show(eval_steps_default)));
  o.add_options("help")("h,help", "print this help");
  // clang-format on
}

cxxopts::Options train_options() {
  TrainConfig d;
  cxxopts::Options o("lockstep train", "Train a ResNet on one node.");
  add_common(o, d, d.eval_steps);
  // clang-format off
  o.add_options("data")
    ("data", "ImageNet-style folder (train/ and val/); without --data and --synthetic: the default job, "
             "Fashion-MNIST (default: none)", cxxopts::value<std::string>())
    ("steps-per-epoch", "micro-batches per worker and epoch (0: all data; --synthetic needs >= 1)",
     cxxopts::value<std::string>()->default_value(show(d.steps_per_epoch)))
    ("loader-threads", "decode threads per worker (0: the cores divided among the workers)",
     cxxopts::value<std::string>()->default_value(show(d.loader_threads)))
    ("prefetch", "batches decoded ahead of each worker", cxxopts::value<std::string>()->default_value(show(d.prefetch)))
    ("crop-scale", "smallest area fraction of the random-resized crop",
     cxxopts::value<std::string>()->default_value(show(d.crop_scale_min)))
    ("bad-images", "skip (count and log unreadable images) or fail (stop at the first)",
     cxxopts::value<std::string>()->default_value(d.bad_images))
    ("max-bad-fraction", "stop when more than this fraction of an epoch is bad",
     cxxopts::value<std::string>()->default_value(show(d.max_bad_fraction)));
  o.add_options("device")
    ("workers", "data-parallel workers (CPU: --device cpu --workers N; CUDA: derived from the GPUs)",
     cxxopts::value<std::string>()->default_value(show(d.workers)))
    ("gpus", "train on GPUs 0..N-1, one worker thread each", cxxopts::value<std::string>())
    ("devices", "train on these GPUs, e.g. 0,2,3", cxxopts::value<std::string>())
    ("workers-per-gpu", "workers sharing each GPU (through host memory; for tests)",
     cxxopts::value<std::string>()->default_value(show(d.workers_per_gpu)))
    ("bucket-mb", "gradient bucket size in MB (the first bucket is 1 MB)",
     cxxopts::value<std::string>()->default_value(show(d.bucket_mb)))
    ("no-overlap", "all-reduce after backward instead of during it (for comparison)")
    ("cuda-graph", "capture each kind of training step once as a CUDA graph and replay it (GPU; bf16 or fp32; "
                   "--sync allreduce or average)")
    ("comm-timeout", "seconds a worker waits for its peers before the run fails",
     cxxopts::value<std::string>()->default_value(show(d.comm_timeout_s)))
    ("accumulate", "micro-batches per update (global batch = workers x batch-size x accumulate)",
     cxxopts::value<std::string>()->default_value(show(d.accumulate)));
  o.add_options("schedule")
    ("epochs", "training epochs", cxxopts::value<std::string>()->default_value(show(d.epochs)))
    ("base-lr", "learning rate at global batch 256 (sign: " + show(kSignBaseLr) + ", unscaled)", cxxopts::value<std::string>()->default_value(show(d.base_lr)))
    ("no-lr-scaling", "use --base-lr as is instead of base-lr x global batch / 256 (default: scaling on)")
    ("warmup-epochs", "epochs of per-update linear warmup from base-lr to the scaled rate (the default is capped at --epochs)",
     cxxopts::value<std::string>()->default_value(show(d.warmup_epochs)))
    ("schedule", "after warmup: step (/10 at epochs 30, 60, 80 of 90, scaled), cosine or poly",
     cxxopts::value<std::string>()->default_value(std::string(engine::schedule_name(d.schedule))))
    ("poly-power", "exponent of the poly schedule", cxxopts::value<std::string>()->default_value(show(d.poly_power)));
  o.add_options("optimizer")
    ("optimizer", "sgd, or lars for batches beyond 8K",
     cxxopts::value<std::string>()->default_value(std::string(engine::optimizer_name(d.optimizer))))
    ("momentum", "SGD momentum", cxxopts::value<std::string>()->default_value(show(d.momentum)))
    ("nesterov", "Nesterov momentum (default: off)")
    ("weight-decay", "L2 on conv and fc weights", cxxopts::value<std::string>()->default_value(show(d.weight_decay)))
    ("wd-on-bn", "also decay BN parameters and biases (default: off)")
    ("lars-eta", "LARS trust coefficient", cxxopts::value<std::string>()->default_value(show(d.lars_eta)))
    ("label-smoothing", "label smoothing in [0, 1)", cxxopts::value<std::string>()->default_value(show(d.label_smoothing)))
    ("zero-init-residual", "zero the last BN gamma of each residual block (default: on)")
    ("no-zero-init-residual", "keep the last BN gamma of each residual block at 1");
  o.add_options("sync")
    ("sync", "how workers agree: allreduce (average gradients), sign (majority vote of 1-bit signs, Signum), "
             "average (train apart, average the models), async (parameter server), backup (drop the slowest) or "
             "coded (gradient coding)",
     cxxopts::value<std::string>()->default_value(std::string(engine::sync_name(d.sync))))
    ("sign-momentum", "--sync sign: momentum before the sign (0 = signSGD)",
     cxxopts::value<std::string>()->default_value(show(d.sign_momentum)))
    ("sign-exchange", "--sync sign: allgather, or sharded (vote shards by all-to-all; ~d/4 bytes per worker whatever N); "
     "default sharded for more than 2 workers",
     cxxopts::value<std::string>()->default_value("auto"))
    ("sign-warmup-steps", "--sync sign: first updates exchanged uncompressed (all-reduce) before the vote",
     cxxopts::value<std::string>()->default_value(show(d.sign_warmup_steps)))
    ("average-every", "--sync average: average the models every K updates (local SGD); 0 = once at the end (SimuParallelSGD)",
     cxxopts::value<std::string>()->default_value(show(d.average_every)))
    ("ema", "--sync async: decay of the moving average of the parameters the server keeps (0: none)",
     cxxopts::value<std::string>()->default_value(show(d.ema)))
    ("eval-ema", "--sync async: evaluate the moving average instead of the parameters")
    ("async-ramp-epochs", "--sync async: grow the active workers from 1 to all over these epochs",
     cxxopts::value<std::string>()->default_value(show(d.async_ramp_epochs)))
    ("staleness-lr", "--sync async: divide the learning rate by (staleness + 1)")
    ("async-round-robin", "--sync async: a fixed order of reads and updates (reproducible; needs --async-ramp-epochs 0)")
    ("ps-shards", "--sync async: parameter-server shards, each with its own lock, on the workers' GPUs in turn (host memory for CPU workers)",
     cxxopts::value<std::string>()->default_value(show(d.ps_shards)))
    ("backup-workers", "--sync backup: how many of the workers are backups (each update takes the first workers - b gradients)",
     cxxopts::value<std::string>()->default_value(show(d.backup_workers)))
    ("straggler", "make workers slow: rank=R,delay=200ms | prob=0.1,delay=exp:50ms | slowest=1,factor=3",
     cxxopts::value<std::string>()->default_value(""))
    ("stragglers", "--sync coded: stragglers tolerated every step (each worker computes stragglers + 1 parts)",
     cxxopts::value<std::string>()->default_value(show(d.stragglers)))
    ("code", "--sync coded: cyclic, or fractional (needs stragglers + 1 to divide the workers)",
     cxxopts::value<std::string>()->default_value(d.code));
  o.add_options("run")
    ("out", "run folder for config.json, log.jsonl, summary.json and tb/ (default: runs/<UTC YYYYmmdd-HHMMSS>)", cxxopts::value<std::string>())
    ("log-every", "steps between reading back loss and accuracy", cxxopts::value<std::string>()->default_value(show(d.log_every)))
    ("tensorboard", "also write the log as TensorBoard scalars in <out>/tb (default: on)")
    ("no-tensorboard", "write no TensorBoard event file");
  o.add_options("checkpoint")
    ("checkpoint-every", "also checkpoint every N updates, or every N epochs with Ne (e.g. 500 or 1e); "
     "always at the end and on Ctrl-C / SIGTERM", cxxopts::value<std::string>()->default_value("0"))
    ("keep-last", "keep only the newest K checkpoints (0: all)", cxxopts::value<std::string>()->default_value(show(d.keep_last)))
    ("no-checkpoint", "write no checkpoint at all (benchmarks)")
    ("stop-after", "stop after this many updates of the run, with a checkpoint (0: never)",
     cxxopts::value<std::string>()->default_value(show(d.stop_after)))
    ("resume", "continue a run: its folder (the latest valid checkpoint) or a checkpoint folder", cxxopts::value<std::string>())
    ("overwrite", "let this run replace what --out holds: a new run deletes the run there (its config, log, "
     "summary, TensorBoard files and checkpoints); a resumed older checkpoint may replace newer ones")
    ("init-from", "start from torchvision-named weights (a .safetensors file, or a checkpoint or run folder; fc "
     "re-initialised if the class count differs)",
     cxxopts::value<std::string>());
  // clang-format on
  return o;
}

constexpr int64_t kEvalStepsDefault = 10;

cxxopts::Options eval_options() {
  cxxopts::Options o("lockstep eval", "Evaluate a ResNet (loss, top-1, top-5) on a validation folder or synthetic data.");
  add_common(o, TrainConfig{}, kEvalStepsDefault);
  // clang-format off
  o.add_options("data")
    ("data", "ImageNet-style folder: its val/ (or the folder itself); without --data and --synthetic: "
             "Fashion-MNIST's test set, as the default training job", cxxopts::value<std::string>());
  o.add_options("model")
    ("weights", "weights to evaluate: a torchvision-named .safetensors file (ours or PyTorch's), a checkpoint "
                "folder or a run folder (its latest checkpoint; arch, classes and image size come from it)",
     cxxopts::value<std::string>());
  // clang-format on
  return o;
}

std::string help_text(cxxopts::Options o) {
  o.set_width(120);  // one line per option on a usual terminal, so defaults are easy to find
  return o.help({"model", "data", "device", "schedule", "optimizer", "sync", "run", "checkpoint", "help"});
}

[[noreturn]] void bad_value(const std::string& flag, const std::string& what, const std::string& text) {
  throw ConfigError(flag, flag + ": expected " + what + ", got '" + text + "'");
}

int64_t to_int(const std::string& flag, const std::string& text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && p == end && (v < lo || v > hi)))
    throw ConfigError(flag, flag + ": " + text + " is out of range");
  if (ec != std::errc() || p != end || text.empty()) bad_value(flag, "an integer", text);
  return v;
}

double to_double(const std::string& flag, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) bad_value(flag, "a number", text);
  if (errno == ERANGE && std::abs(v) > 1) throw ConfigError(flag, flag + ": " + text + " is out of range");
  return v;  // nan and inf parse here and are rejected, naming the option, by validate()
}

// Reads typed values out of a cxxopts result, naming the flag in every error.
struct Reader {
  const cxxopts::ParseResult& r;
  bool given(const std::string& name) const { return r.count(name) > 0; }
  std::string text(const std::string& name) const { return r[name].as<std::string>(); }
  bool flag(const std::string& name) const { return r.count(name) > 0; }
  int as_int(const std::string& name) const {
    return static_cast<int>(to_int("--" + name, text(name), std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
  }
  int64_t as_i64(const std::string& name) const {
    return to_int("--" + name, text(name), std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  }
  double as_double(const std::string& name) const { return to_double("--" + name, text(name)); }
  template <typename F>
  auto as_enum(const std::string& name, F parse) const {
    try {
      return parse(text(name));
    } catch (const Error& e) {
      throw ConfigError("--" + name, "--" + name + ": " + e.what());
    }
  }
};

cxxopts::ParseResult parse_or_throw(cxxopts::Options& o, int argc, const char* const* argv, const char* command) {
  try {
    cxxopts::ParseResult r = o.parse(argc, argv);
    if (!r.unmatched().empty())
      throw ConfigError("", "unexpected argument '" + r.unmatched().front() + "' (see lockstep " + command + " --help)");
    return r;
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError("", std::string(e.what()) + " (see lockstep " + command + " --help)");
  }
}

// Fills what train and eval share, then resolves device and precision defaults.
void read_common(const Reader& in, TrainConfig& c, std::ostream& notes, const char* command) {
  c.arch = in.text("arch");
  // Class count and image size default to the arch's natural ones (ImageNet or CIFAR).
  const nets::ArchInfo* arch = nets::find_arch(c.arch);
  c.classes = in.given("classes") ? in.as_int("classes") : arch ? arch->default_classes : c.classes;
  c.image_size = in.given("image-size") ? in.as_int("image-size") : arch ? arch->default_image_size : c.image_size;
  c.synthetic = in.flag("synthetic");
  c.batch_size = in.as_int("batch-size");
  c.eval_steps = in.as_i64("eval-steps");
  {
    std::string s = in.text("seed");
    if (!s.empty() && s[0] == '-') bad_value("--seed", "a non-negative integer", s);
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) bad_value("--seed", "a non-negative integer", s);
    c.seed = v;
  }
  if (in.given("device")) {
    c.device = in.as_enum("device", [](const std::string& t) { return Device::parse(t); });
  } else {
    const GpuStatus& gpu = gpu_status();
    c.device = gpu.available ? Device::cuda(0) : Device::cpu();
    if (gpu.available)
      notes << "lockstep " << command << ": no --device given; using cuda:0 (" << gpu.count << " GPU(s) present)\n";
    else
      notes << "lockstep " << command << ": no --device given; using cpu (" << gpu.reason << ")\n";
  }
  c.conv_algo = in.as_enum("conv-algo", [](const std::string& t) { return parse_conv_algo(t); });
  c.stem_channels = in.as_int("stem-channels");
  c.stem_space_to_depth = in.flag("stem-space-to-depth");
  c.bn_kernels = in.as_enum("bn-kernels", [](const std::string& t) { return parse_bn_kernels(t); });
  if (in.given("precision"))
    c.precision = in.as_enum("precision", [](const std::string& t) { return parse_dtype(t); });
  else
    c.precision = c.device.is_cuda() ? DType::bf16 : DType::f32;
}

// "0,2,3" -> {0, 2, 3}; throws ConfigError naming --devices.
std::vector<int> parse_device_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int v = -1;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v < 0)
      throw ConfigError("--devices", "--devices must be GPU indices like 0,2,3 (got '" + text + "')");
    out.push_back(v);
  }
  if (out.empty()) throw ConfigError("--devices", "--devices must list at least one GPU");
  return out;
}

// The default job (no --data, no --synthetic): Fashion-MNIST from Debian's dataset-fashion-mnist,
// imported once into the cache folder, on a CIFAR-style resnet20 at its native 28 px, for one
// epoch unless told otherwise. Any option given explicitly still wins.
void apply_default_job(const Reader& in, TrainConfig& c, std::ostream& notes) {
  c.default_dataset = true;
  c.data_dir = engine::default_dataset_dir();
  if (!in.given("arch")) c.arch = "resnet20";
  if (!in.given("classes")) c.classes = 10;
  if (!in.given("image-size")) c.image_size = 28;
  if (!in.given("epochs")) c.epochs = 1;
  if (!in.given("batch-size")) c.batch_size = 64;
  if (!in.given("warmup-epochs")) c.warmup_epochs = std::min<double>(c.warmup_epochs, c.epochs);
  if (!in.given("crop-scale")) c.crop_scale_min = 0.5;  // 28 px items: Inception's 0.08 leaves too little
  notes << "lockstep train: no --data or --synthetic; the default job: Fashion-MNIST (" << c.data_dir << "), "
        << c.arch << " at " << c.image_size << " px, " << c.epochs << " epoch(s)\n";
}

// --checkpoint-every: "N" updates or "Ne" epochs.
void read_checkpoint_every(const Reader& in, TrainConfig& c) {
  std::string t = in.text("checkpoint-every");
  c.checkpoint_in_epochs = !t.empty() && (t.back() == 'e' || t.back() == 'E');
  if (c.checkpoint_in_epochs) t.pop_back();
  c.checkpoint_every = to_int("--checkpoint-every", t, 0, std::numeric_limits<int64_t>::max());
}

// A run or checkpoint folder given to `flag` (--resume, --init-from, eval's --weights): the
// checkpoint it names, verified; a folder that names none is refused as the flag's error, and
// the checkpoints passed over are noted as warnings of `command`.
engine::LoadedCheckpoint resolve_checkpoint_flag(const char* flag, const std::filesystem::path& path,
                                                 std::ostream& notes, const char* command) {
  std::vector<std::string> warnings;
  engine::LoadedCheckpoint ck = [&] {
    try {
      return engine::resolve_checkpoint(path, &warnings);
    } catch (const Error& e) {
      throw ConfigError(flag, std::string(flag) + ": " + e.what());
    }
  }();
  for (const std::string& w : warnings) notes << "lockstep " << command << ": warning: " << w << "\n";
  return ck;
}

// `--resume`: the run continues with the checkpoint's config. Options given on the command line
// replace the saved ones where that keeps the run's state meaningful (length, devices, logging,
// checkpointing, hyperparameters, data location); those that would change what the saved state
// means (network, classes, image size, seed, batch, sync, optimizer kind) must equal the saved
// ones, and a different value is refused naming both.
TrainConfig apply_resume(const Reader& in, const TrainConfig& c, std::ostream& notes) {
  const engine::LoadedCheckpoint ck = resolve_checkpoint_flag("--resume", in.text("resume"), notes, "train");
  TrainConfig r = TrainConfig::from_json(ck.state.config);
  r.command = Command::train;
  const std::string where = " but the checkpoint " + ck.dir.string() + " has ";
  auto same = [&]<typename T>(const char* flag, T TrainConfig::*m, const std::string& ours, const std::string& theirs) {
    if (in.given(flag) && !(c.*m == r.*m))
      throw ConfigError(std::string("--") + flag, std::string("--") + flag + " " + ours + where + theirs);
  };
  same("arch", &TrainConfig::arch, c.arch, r.arch);
  same("classes", &TrainConfig::classes, show(c.classes), show(r.classes));
  same("image-size", &TrainConfig::image_size, show(c.image_size), show(r.image_size));
  same("seed", &TrainConfig::seed, show(c.seed), show(r.seed));
  same("batch-size", &TrainConfig::batch_size, show(c.batch_size), show(r.batch_size));
  same("accumulate", &TrainConfig::accumulate, show(c.accumulate), show(r.accumulate));
  same("steps-per-epoch", &TrainConfig::steps_per_epoch, show(c.steps_per_epoch), show(r.steps_per_epoch));
  same("sync", &TrainConfig::sync, std::string(engine::sync_name(c.sync)), std::string(engine::sync_name(r.sync)));
  same("optimizer", &TrainConfig::optimizer, std::string(engine::optimizer_name(c.optimizer)),
       std::string(engine::optimizer_name(r.optimizer)));
  if (in.flag("synthetic") && !r.synthetic)
    throw ConfigError("--synthetic", "--synthetic but the checkpoint " + ck.dir.string() + " trained on " + r.data_dir);
  if (in.given("data") && r.synthetic)
    throw ConfigError("--data", "--data " + c.data_dir + " but the checkpoint " + ck.dir.string() +
                                    " trained on synthetic data");
  if (in.given("init-from")) throw ConfigError("--init-from", "--init-from and --resume contradict each other");

  auto take = [&]<typename T>(const char* flag, T TrainConfig::*m) {
    if (in.given(flag)) r.*m = c.*m;
  };
  take("epochs", &TrainConfig::epochs);
  take("data", &TrainConfig::data_dir);
  take("loader-threads", &TrainConfig::loader_threads);
  take("prefetch", &TrainConfig::prefetch);
  take("crop-scale", &TrainConfig::crop_scale_min);
  take("bad-images", &TrainConfig::bad_images);
  take("max-bad-fraction", &TrainConfig::max_bad_fraction);
  take("eval-steps", &TrainConfig::eval_steps);
  take("bucket-mb", &TrainConfig::bucket_mb);
  take("no-overlap", &TrainConfig::overlap);
  take("cuda-graph", &TrainConfig::cuda_graph);
  take("comm-timeout", &TrainConfig::comm_timeout_s);
  take("precision", &TrainConfig::precision);
  take("conv-algo", &TrainConfig::conv_algo);
  take("stem-channels", &TrainConfig::stem_channels);
  take("stem-space-to-depth", &TrainConfig::stem_space_to_depth);
  take("bn-kernels", &TrainConfig::bn_kernels);
  take("base-lr", &TrainConfig::base_lr);
  take("no-lr-scaling", &TrainConfig::lr_scaling);
  take("warmup-epochs", &TrainConfig::warmup_epochs);
  take("schedule", &TrainConfig::schedule);
  take("poly-power", &TrainConfig::poly_power);
  take("momentum", &TrainConfig::momentum);
  take("nesterov", &TrainConfig::nesterov);
  take("weight-decay", &TrainConfig::weight_decay);
  take("wd-on-bn", &TrainConfig::wd_on_bn);
  take("lars-eta", &TrainConfig::lars_eta);
  take("label-smoothing", &TrainConfig::label_smoothing);
  take("sign-momentum", &TrainConfig::sign_momentum);
  take("sign-exchange", &TrainConfig::sign_exchange);
  take("sign-warmup-steps", &TrainConfig::sign_warmup_steps);
  take("average-every", &TrainConfig::average_every);
  take("eval-ema", &TrainConfig::eval_ema);
  take("async-ramp-epochs", &TrainConfig::async_ramp_epochs);
  take("staleness-lr", &TrainConfig::staleness_lr);
  take("ps-shards", &TrainConfig::ps_shards);
  take("straggler", &TrainConfig::straggler);
  take("log-every", &TrainConfig::log_every);
  take("tensorboard", &TrainConfig::tensorboard);
  take("no-tensorboard", &TrainConfig::tensorboard);
  take("keep-last", &TrainConfig::keep_last);
  take("no-checkpoint", &TrainConfig::checkpoints);
  if (in.given("checkpoint-every") || in.flag("no-checkpoint")) {
    r.checkpoint_every = c.checkpoint_every;
    r.checkpoint_in_epochs = c.checkpoint_in_epochs;
  }
  if (in.flag("no-checkpoint") && !in.given("keep-last")) r.keep_last = c.keep_last;  // the saved ones no longer apply
  if (in.given("device") || in.given("workers") || in.given("gpus") || in.given("devices") ||
      in.given("workers-per-gpu")) {
    r.device = c.device;
    r.workers = c.workers;
    r.devices = c.devices;
    r.workers_per_gpu = c.workers_per_gpu;
    if (!in.given("precision")) r.precision = c.precision;
  }
  if (r.workers != ck.state.world)
    notes << "lockstep train: warning: resuming with " << r.workers << " worker(s) where the checkpoint had "
          << ck.state.world << "\n";
  // Where the run continues: the run folder the checkpoint belongs to, unless --out says otherwise.
  const std::filesystem::path dir = ck.dir;
  const bool in_run = dir.lexically_normal().parent_path().filename() == "checkpoints" ||
                      (dir.lexically_normal().filename().empty() &&
                       dir.lexically_normal().parent_path().parent_path().filename() == "checkpoints");
  r.out_dir = in.given("out") ? c.out_dir : in_run ? engine::run_dir_of(dir).string() : r.out_dir;
  if (c.stop_after > 0 && c.stop_after <= ck.state.update)
    throw ConfigError("--stop-after", "--stop-after " + std::to_string(c.stop_after) + " but the checkpoint " +
                                          ck.dir.string() + " is already at update " + std::to_string(ck.state.update) +
                                          " (--stop-after counts the run's updates: give a later one)");
  r.stop_after = c.stop_after;  // run control is never inherited
  r.overwrite = c.overwrite;
  r.resume = ck.dir.string();
  r.init_from.clear();
  r.weights.clear();
  notes << "lockstep train: resuming " << ck.dir.string() << " (update " << ck.state.update << ") into " << r.out_dir
        << "\n";
  try {
    r.validate();
  } catch (const ConfigError& e) {
    // A rule broken by a setting the run saved, not one typed now: say so.
    const std::string flag = e.option().rfind("--", 0) == 0 ? e.option().substr(2) : e.option();
    if (in.given(flag) || in.flag(flag)) throw;
    throw ConfigError(e.option(), std::string(e.what()) + " (" + e.option() + " is the run's saved setting; give " +
                                      e.option() + " to change it)");
  }
  return r;
}

}  // namespace

std::string train_help() { return help_text(train_options()); }
std::string eval_help() { return help_text(eval_options()); }

TrainConfig parse_train_args(int argc, const char* const* argv, std::ostream& notes) {
  cxxopts::Options o = train_options();
  cxxopts::ParseResult r = parse_or_throw(o, argc, argv, "train");
  if (r.count("help")) throw HelpRequested{help_text(o)};
  cli::note_repeats(r, "train", notes);
  Reader in{r};
  if (in.flag("zero-init-residual") && in.flag("no-zero-init-residual"))
    throw ConfigError("--no-zero-init-residual", "--zero-init-residual and --no-zero-init-residual contradict each other");
  if (in.flag("tensorboard") && in.flag("no-tensorboard"))
    throw ConfigError("--no-tensorboard", "--tensorboard and --no-tensorboard contradict each other");

  TrainConfig c;
  c.command = Command::train;
  read_common(in, c, notes, "train");
  if (in.given("data")) c.data_dir = in.text("data");
  c.steps_per_epoch = in.as_i64("steps-per-epoch");
  c.loader_threads = in.as_int("loader-threads");
  c.prefetch = in.as_int("prefetch");
  c.crop_scale_min = in.as_double("crop-scale");
  c.bad_images = in.text("bad-images");
  c.max_bad_fraction = in.as_double("max-bad-fraction");
  c.workers = in.as_int("workers");
  c.workers_per_gpu = in.as_int("workers-per-gpu");
  c.bucket_mb = in.as_double("bucket-mb");
  c.overlap = !in.flag("no-overlap");
  c.cuda_graph = in.flag("cuda-graph");
  c.comm_timeout_s = in.as_double("comm-timeout");
  if (in.given("gpus") && in.given("devices")) throw ConfigError("--devices", "--gpus and --devices contradict each other");
  if (in.given("gpus")) {
    const int n = in.as_int("gpus");
    if (n < 1) throw ConfigError("--gpus", "--gpus must be >= 1 (got " + std::to_string(n) + ")");
    for (int i = 0; i < n; ++i) c.devices.push_back(i);
  }
  if (in.given("devices")) c.devices = parse_device_list(in.text("devices"));
  if ((in.given("gpus") || in.given("devices") || in.given("workers-per-gpu")) && !in.given("device"))
    c.device = Device::cuda(c.devices.empty() ? 0 : c.devices.front());
  if (c.device.is_cuda() && !in.given("workers"))
    c.workers = static_cast<int>(c.devices.empty() ? 1 : c.devices.size()) * c.workers_per_gpu;
  c.accumulate = in.as_int("accumulate");
  c.epochs = in.as_int("epochs");
  c.base_lr = in.as_double("base-lr");
  c.lr_scaling = !in.flag("no-lr-scaling");
  c.warmup_epochs = in.as_double("warmup-epochs");
  // The default warmup (5 epochs, Goyal et al.) is capped at a shorter run's length; a warmup
  // given explicitly that outlasts training is still an error.
  if (!in.given("warmup-epochs") && c.warmup_epochs > c.epochs && c.epochs >= 1) {
    notes << "lockstep train: warmup capped at --epochs " << c.epochs << " (default --warmup-epochs "
          << c.warmup_epochs << ")\n";
    c.warmup_epochs = c.epochs;
  }
  c.schedule = in.as_enum("schedule", [](const std::string& t) { return engine::parse_schedule(t); });
  c.poly_power = in.as_double("poly-power");
  c.optimizer = in.as_enum("optimizer", [](const std::string& t) { return engine::parse_optimizer(t); });
  c.momentum = in.as_double("momentum");
  c.nesterov = in.flag("nesterov");
  c.weight_decay = in.as_double("weight-decay");
  c.wd_on_bn = in.flag("wd-on-bn");
  c.lars_eta = in.as_double("lars-eta");
  c.label_smoothing = in.as_double("label-smoothing");
  c.zero_init_residual = !in.flag("no-zero-init-residual");
  c.sync = in.as_enum("sync", [](const std::string& t) { return engine::parse_sync(t); });
  c.sign_momentum = in.as_double("sign-momentum");
  c.sign_exchange = in.as_enum("sign-exchange", [](const std::string& t) { return engine::parse_sign_exchange(t); });
  c.sign_warmup_steps = in.as_i64("sign-warmup-steps");
  c.average_every = in.as_i64("average-every");
  if (in.given("average-every") && c.sync != SyncKind::average)
    throw ConfigError("--average-every", "--average-every needs --sync average");
  c.ema = in.as_double("ema");
  c.eval_ema = in.flag("eval-ema");
  c.async_ramp_epochs = in.as_int("async-ramp-epochs");
  c.staleness_lr = in.flag("staleness-lr");
  c.async_round_robin = in.flag("async-round-robin");
  c.ps_shards = in.as_int("ps-shards");
  c.backup_workers = in.as_int("backup-workers");
  c.straggler = in.text("straggler");
  c.stragglers = in.as_int("stragglers");
  c.code = in.text("code");
  if (c.sync != SyncKind::backup && in.given("backup-workers"))
    throw ConfigError("--backup-workers", "--backup-workers needs --sync backup");
  if (c.sync != SyncKind::coded)
    for (const char* flag : {"stragglers", "code"})
      if (in.given(flag)) throw ConfigError(std::string("--") + flag, std::string("--") + flag + " needs --sync coded");
  if (c.sync != SyncKind::async)
    for (const char* flag : {"ema", "eval-ema", "async-ramp-epochs", "staleness-lr", "async-round-robin", "ps-shards"})
      if (in.given(flag)) throw ConfigError(std::string("--") + flag, std::string("--") + flag + " needs --sync async");
  if (c.sync == SyncKind::sign) {
    // A sign step moves every weight by lr whatever the batch, so sign mode has its own base
    // learning rate and no linear scaling (README: "1-bit sign sync").
    if (!in.given("base-lr")) c.base_lr = kSignBaseLr;
    if (!in.flag("no-lr-scaling")) c.lr_scaling = false;
  } else {
    for (const char* flag : {"sign-momentum", "sign-exchange", "sign-warmup-steps"})
      if (in.given(flag)) throw ConfigError(std::string("--") + flag, std::string("--") + flag + " needs --sync sign");
  }
  if (in.given("out")) c.out_dir = in.text("out");
  c.overwrite = in.flag("overwrite");
  c.log_every = in.as_int("log-every");
  c.tensorboard = !in.flag("no-tensorboard");
  read_checkpoint_every(in, c);
  c.keep_last = in.as_int("keep-last");
  c.checkpoints = !in.flag("no-checkpoint");
  c.stop_after = in.as_i64("stop-after");
  if (in.given("resume")) return apply_resume(in, c, notes);
  if (in.given("init-from")) {
    c.init_from = in.text("init-from");
    if (std::filesystem::is_directory(c.init_from)) {
      // A checkpoint or run folder (as eval's --weights): its verified model file.
      c.init_from = (resolve_checkpoint_flag("--init-from", c.init_from, notes, "train").dir / "model.safetensors").string();
    } else if (!std::filesystem::is_regular_file(c.init_from)) {
      throw ConfigError("--init-from", "--init-from " + c.init_from + ": no such file or folder");
    }
  }
  if (!c.synthetic && c.data_dir.empty()) apply_default_job(in, c, notes);
  if (in.given("eval-steps") && !c.synthetic)
    notes << "lockstep train: note: --eval-steps counts synthetic validation batches; with a data folder every "
             "evaluation covers its whole val/ split\n";
  c.validate();
  return c;
}

TrainConfig parse_eval_args(int argc, const char* const* argv, std::ostream& notes) {
  cxxopts::Options o = eval_options();
  cxxopts::ParseResult r = parse_or_throw(o, argc, argv, "eval");
  if (r.count("help")) throw HelpRequested{help_text(o)};
  cli::note_repeats(r, "eval", notes);
  Reader in{r};
  TrainConfig c;
  c.command = Command::eval;
  read_common(in, c, notes, "eval");
  if (in.given("weights")) {
    const std::filesystem::path w = in.text("weights");
    if (std::filesystem::is_directory(w)) {
      // A checkpoint or run folder: its model file, and the network it was trained as.
      const engine::LoadedCheckpoint ck = resolve_checkpoint_flag("--weights", w, notes, "eval");
      const TrainConfig saved = TrainConfig::from_json(ck.state.config);
      if (!in.given("arch")) c.arch = saved.arch;
      if (!in.given("classes")) c.classes = saved.classes;
      if (!in.given("image-size")) c.image_size = saved.image_size;
      if (!in.given("data") && !c.synthetic && saved.default_dataset) c.data_dir = saved.data_dir;
      if (!in.given("data") && !c.synthetic && !saved.synthetic && !saved.default_dataset) c.data_dir = saved.data_dir;
      c.weights = (ck.dir / "model.safetensors").string();
    } else if (std::filesystem::is_regular_file(w)) {
      c.weights = w.string();
      // lockstep's model files say what they are; PyTorch's give the class count in fc.weight.
      engine::SafetensorsFile f = [&] {
        try {
          return engine::SafetensorsFile::open(w);
        } catch (const Error& e) {
          throw ConfigError("--weights", std::string("--weights: ") + e.what());
        }
      }();
      const auto& meta = f.metadata();
      if (!in.given("arch")) {
        if (!meta.count("arch"))
          throw ConfigError("--arch", "--weights " + w.string() + " does not say which network it is: give --arch");
        c.arch = meta.at("arch");
      }
      const nets::ArchInfo* arch = nets::find_arch(c.arch);
      if (!in.given("classes")) {
        if (const engine::TensorInfo* fc = f.find("fc.weight"); fc && fc->shape.size() == 2)
          c.classes = static_cast<int>(fc->shape[0]);
      }
      if (!in.given("image-size")) {
        if (meta.count("image_size")) c.image_size = static_cast<int>(to_int("--image-size", meta.at("image_size"), 1, 1 << 20));
        else if (arch) c.image_size = arch->default_image_size;
      }
    } else {
      throw ConfigError("--weights", "--weights " + w.string() + ": no such file or folder");
    }
  }
  if (in.given("data")) c.data_dir = in.text("data");
  if (!c.synthetic && c.data_dir.empty()) {
    // As the default training job: Fashion-MNIST's test images on resnet20 at 28 px.
    c.default_dataset = true;
    c.data_dir = engine::default_dataset_dir();
    if (!in.given("arch") && c.weights.empty()) c.arch = "resnet20";
    if (!in.given("classes") && c.weights.empty()) c.classes = 10;
    if (!in.given("image-size") && c.weights.empty()) c.image_size = 28;
    notes << "lockstep eval: no --data or --synthetic; Fashion-MNIST's test set (" << c.data_dir << ")\n";
  }
  c.validate();
  return c;
}

}  // namespace lockstep::cli
