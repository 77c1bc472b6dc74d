#include "engine/config.h"
#include "engine/straggler.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <type_traits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "nets/arch.h"

namespace lockstep::engine {

namespace {

// One line naming the option; the option travels with the exception for callers that want it.
[[noreturn]] void fail(const std::string& option, const std::string& message) {
  throw ConfigError(option, message);
}

template <typename T>
std::string str(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string precision_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::bf16: return "bf16";
    case DType::f16: return "fp16";
    default: return std::string(dtype_name(t));
  }
}

}  // namespace

std::string_view optimizer_name(OptimizerKind k) { return k == OptimizerKind::sgd ? "sgd" : "lars"; }

OptimizerKind parse_optimizer(std::string_view text) {
  if (text == "sgd") return OptimizerKind::sgd;
  if (text == "lars") return OptimizerKind::lars;
  throw Error("unknown optimizer '" + std::string(text) + "' (expected sgd or lars)");
}

std::string_view sync_name(SyncKind k) {
  switch (k) {
    case SyncKind::allreduce: return "allreduce";
    case SyncKind::sign: return "sign";
    case SyncKind::average: return "average";
    case SyncKind::async: return "async";
    case SyncKind::backup: return "backup";
    case SyncKind::coded: return "coded";
  }
  return "?";
}

SyncKind parse_sync(std::string_view text) {
  if (text == "allreduce") return SyncKind::allreduce;
  if (text == "sign") return SyncKind::sign;
  if (text == "average") return SyncKind::average;
  if (text == "async") return SyncKind::async;
  if (text == "backup") return SyncKind::backup;
  if (text == "coded") return SyncKind::coded;
  throw Error("unknown sync mode '" + std::string(text) +
              "' (expected allreduce, sign, average, async, backup or coded)");
}

std::string_view sign_exchange_kind_name(SignExchangeKind k) {
  switch (k) {
    case SignExchangeKind::allgather: return "allgather";
    case SignExchangeKind::sharded: return "sharded";
    default: return "auto";
  }
}

SignExchangeKind parse_sign_exchange(std::string_view text) {
  if (text == "auto") return SignExchangeKind::auto_;
  if (text == "allgather") return SignExchangeKind::allgather;
  if (text == "sharded") return SignExchangeKind::sharded;
  throw Error("unknown sign exchange '" + std::string(text) + "' (expected allgather, sharded or auto)");
}

SignExchangeKind TrainConfig::resolved_sign_exchange() const {
  if (sign_exchange != SignExchangeKind::auto_) return sign_exchange;
  return workers > 2 ? SignExchangeKind::sharded : SignExchangeKind::allgather;
}

std::string_view command_name(Command c) { return c == Command::train ? "train" : "eval"; }

std::string default_out_dir() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &utc);
  return std::string("runs/") + buf;
}

std::vector<Device> TrainConfig::worker_devices() const {
  std::vector<Device> out;
  if (device.is_cpu()) return std::vector<Device>(static_cast<size_t>(workers), Device::cpu());
  std::vector<int> gpus = devices.empty() ? std::vector<int>{device.index} : devices;
  for (int g : gpus)
    for (int k = 0; k < workers_per_gpu; ++k) out.push_back(Device::cuda(g));
  return out;
}

std::string default_dataset_dir() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v && *v ? v : "";
  };
  std::string base = env("LOCKSTEP_CACHE");
  if (base.empty() && !env("XDG_CACHE_HOME").empty()) base = env("XDG_CACHE_HOME") + "/lockstep";
  if (base.empty() && !env("HOME").empty()) base = env("HOME") + "/.cache/lockstep";
  if (base.empty()) base = ".lockstep-cache";
  return base + "/fashion-mnist";
}

void TrainConfig::validate() const {
  const bool train = command == Command::train;

  // model
  const nets::ArchInfo* info = nets::find_arch(arch);
  if (!info) fail("--arch", "--arch: unknown architecture '" + arch + "' (known: " + nets::known_arch_names() + ")");
  if (classes < 1) fail("--classes", "--classes must be >= 1 (got " + str(classes) + ")");
  // Bounds far above any real run (ImageNet-21k has 21,841 classes; 4096 px is 16x ImageNet's
  // side): past them a tensor's size overflows the kernels' 32-bit shapes or the machine long
  // before the first step, with an error that would not name the flag.
  if (classes > 1000000) fail("--classes", "--classes must be at most 1000000 (got " + str(classes) + ")");
  if (image_size > 4096) fail("--image-size", "--image-size must be at most 4096 (got " + str(image_size) + ")");
  if (image_size < info->min_image_size)
    fail("--image-size", "--image-size " + str(image_size) + " is too small for " + arch + " (at least " +
                             str(info->min_image_size) + ")");

  // data
  if (synthetic && !data_dir.empty()) fail("--data", "--data and --synthetic cannot be used together");
  if (!synthetic && data_dir.empty()) {
    fail("--data", "--data DIR or --synthetic is required");
  }
  if (!data_dir.empty() && !default_dataset) {
    std::error_code ec;
    if (!std::filesystem::is_directory(data_dir, ec)) fail("--data", "--data: no such directory '" + data_dir + "'");
  }
  if (loader_threads < 0) fail("--loader-threads", "--loader-threads must be >= 0 (got " + str(loader_threads) + ")");
  if (prefetch < 1) fail("--prefetch", "--prefetch must be >= 1 (got " + str(prefetch) + ")");
  if (!(crop_scale_min > 0 && crop_scale_min <= 1))
    fail("--crop-scale", "--crop-scale must be in (0, 1] (got " + str(crop_scale_min) + ")");
  if (bad_images != "skip" && bad_images != "fail")
    fail("--bad-images", "--bad-images must be skip or fail (got '" + bad_images + "')");
  if (!(max_bad_fraction >= 0 && max_bad_fraction <= 1))
    fail("--max-bad-fraction", "--max-bad-fraction must be in [0, 1] (got " + str(max_bad_fraction) + ")");
  if (train) {
    if (synthetic && steps_per_epoch < 1)
      fail("--steps-per-epoch", "--steps-per-epoch must be >= 1 with --synthetic (got " + str(steps_per_epoch) + ")");
    if (steps_per_epoch < 0) fail("--steps-per-epoch", "--steps-per-epoch must be >= 0 (got " + str(steps_per_epoch) + ")");
  }
  if (eval_steps < 0) fail("--eval-steps", "--eval-steps must be >= 0 (got " + str(eval_steps) + ")");
  if (!train && eval_steps < 1)
    fail("--eval-steps", "--eval-steps must be >= 1 for lockstep eval (got " + str(eval_steps) + ")");

  // devices and batch
  if (device.is_cuda()) {
    const GpuStatus& gpu = gpu_status();
    if (!gpu.available) fail("--device", "--device " + device.str() + ": no usable GPU (" + gpu.reason + ")");
    if (device.index >= gpu.count)
      fail("--device", "--device " + device.str() + ": only " + str(gpu.count) + " GPU(s) present");
  }
  if (!is_floating(precision)) fail("--precision", "--precision must be fp32, bf16 or fp16");
  if (bn_kernels != BatchNormKernels::lockstep && bn_kernels != BatchNormKernels::automatic && device.is_cpu())
    fail("--bn-kernels", std::string("--bn-kernels ") + bn_kernels_name(bn_kernels) +
                             " needs --device cuda (the CPU runs lockstep's kernels)");
  if (cuda_graph) {
    if (device.is_cpu()) fail("--cuda-graph", "--cuda-graph needs --device cuda (CUDA graphs replay GPU work)");
    if (precision == DType::f16)
      fail("--cuda-graph", "--cuda-graph does not support --precision fp16: its loss scaling reads an overflow flag on "
                           "the host at every step; use bf16 or fp32");
    if (sync != SyncKind::allreduce && sync != SyncKind::average)
      fail("--cuda-graph", "--cuda-graph replays --sync allreduce or average steps, not --sync " +
                               std::string(sync_name(sync)) + " (its exchange runs on the host)");
    if (!straggler.empty())
      fail("--cuda-graph", "--cuda-graph cannot be combined with --straggler (the injected delays run on the host "
                           "inside the step)");
    if (sync == SyncKind::allreduce && workers_per_gpu > 1)
      fail("--cuda-graph", "--cuda-graph with --sync allreduce needs one worker per GPU (workers sharing a GPU "
                           "exchange gradients through host memory, which a graph cannot capture)");
  }
  if (stem_channels != 0 && (stem_channels < 3 || stem_channels > 64))
    fail("--stem-channels", "--stem-channels must be 0 (off) or 3..64 (got " + str(stem_channels) + ")");
  if (stem_space_to_depth && stem_channels != 0)
    fail("--stem-space-to-depth", "--stem-space-to-depth and --stem-channels exclude each other (the blocks' 12 "
                                  "channels are padded to 16 already)");
  if (stem_space_to_depth && info->family != nets::ArchFamily::imagenet && info->family != nets::ArchFamily::tiny_nobn)
    fail("--stem-space-to-depth", "--stem-space-to-depth needs a stride-2 stem (the ImageNet nets); " + arch +
                                      "'s is stride 1");
  if (device.is_cpu() && precision != DType::f32)
    fail("--precision", "--precision " + precision_name(precision) +
                            " needs --device cuda; the CPU backend computes in fp32 (use --precision fp32)");
  if (workers < 1) fail("--workers", "--workers must be >= 1 (got " + str(workers) + ")");
  if (workers_per_gpu < 1) fail("--workers-per-gpu", "--workers-per-gpu must be >= 1 (got " + str(workers_per_gpu) + ")");
  if (device.is_cpu() && (!devices.empty() || workers_per_gpu != 1))
    fail(devices.empty() ? "--workers-per-gpu" : "--gpus", "--gpus, --devices and --workers-per-gpu need --device cuda");
  if (device.is_cuda()) {
    const GpuStatus& gpu = gpu_status();
    for (size_t i = 0; i < devices.size(); ++i) {
      if (devices[i] < 0 || (gpu.available && devices[i] >= gpu.count))
        fail("--devices", "--devices: GPU " + str(devices[i]) + " does not exist (" + str(gpu.count) + " present)");
      for (size_t j = 0; j < i; ++j)
        if (devices[j] == devices[i]) fail("--devices", "--devices lists GPU " + str(devices[i]) + " twice");
    }
    const int64_t expect = int64_t(devices.empty() ? 1 : devices.size()) * workers_per_gpu;
    if (workers != expect)
      fail("--workers", "--workers " + str(workers) + " disagrees with the GPUs: " + str(expect) +
                            " (GPUs x --workers-per-gpu)");
  }
  if (!(bucket_mb > 0)) fail("--bucket-mb", "--bucket-mb must be > 0 (got " + str(bucket_mb) + ")");
  if (!(comm_timeout_s > 0)) fail("--comm-timeout", "--comm-timeout must be > 0 seconds (got " + str(comm_timeout_s) + ")");
  // Held as milliseconds in 64 bits; a week is far more than any peer should take.
  if (!(comm_timeout_s <= 7 * 86400.0))
    fail("--comm-timeout", "--comm-timeout must be at most 604800 seconds (a week), got " + str(comm_timeout_s));
  if (batch_size <= 0) fail("--batch-size", "--batch-size must be > 0 (got " + str(batch_size) + ")");
  if (batch_size > 65536) fail("--batch-size", "--batch-size must be at most 65536 per worker (got " + str(batch_size) + ")");
  if (log_every < 1) fail("--log-every", "--log-every must be >= 1 (got " + str(log_every) + ")");
  if (out_dir.empty()) fail("--out", "--out must not be empty");
  if (!train) return;

  if (checkpoint_every < 0) fail("--checkpoint-every", "--checkpoint-every must be >= 0 (got " + str(checkpoint_every) + ")");
  if (keep_last < 0) fail("--keep-last", "--keep-last must be >= 0 (got " + str(keep_last) + ")");
  if (stop_after < 0) fail("--stop-after", "--stop-after must be >= 0 updates (got " + str(stop_after) + ")");
  if (!checkpoints && (checkpoint_every > 0 || keep_last > 0))
    fail("--no-checkpoint", "--no-checkpoint contradicts --checkpoint-every / --keep-last");

  if (accumulate < 1) fail("--accumulate", "--accumulate must be >= 1 (got " + str(accumulate) + ")");
  if (synthetic && steps_per_epoch % accumulate != 0)
    fail("--steps-per-epoch", "--steps-per-epoch " + str(steps_per_epoch) + " is not a multiple of --accumulate " +
                                  str(accumulate));

  // schedule
  if (epochs < 1) fail("--epochs", "--epochs must be >= 1 (got " + str(epochs) + ")");
  if (!std::isfinite(base_lr) || base_lr < 0)
    fail("--base-lr", "--base-lr must be a finite number >= 0 (got " + str(base_lr) + ")");
  if (!std::isfinite(warmup_epochs) || warmup_epochs < 0)
    fail("--warmup-epochs", "--warmup-epochs must be a finite number >= 0 (got " + str(warmup_epochs) + ")");
  if (warmup_epochs > epochs)
    fail("--warmup-epochs", "--warmup-epochs " + str(warmup_epochs) + " is longer than training (--epochs " +
                                str(epochs) + ")");
  if (!std::isfinite(poly_power) || poly_power <= 0)
    fail("--poly-power", "--poly-power must be > 0 (got " + str(poly_power) + ")");

  // optimizer
  if (!(momentum >= 0 && momentum < 1)) fail("--momentum", "--momentum must be in [0, 1) (got " + str(momentum) + ")");
  if (nesterov && momentum == 0) fail("--nesterov", "--nesterov needs --momentum > 0");
  if (!std::isfinite(weight_decay) || weight_decay < 0)
    fail("--weight-decay", "--weight-decay must be a finite number >= 0 (got " + str(weight_decay) + ")");
  if (!std::isfinite(lars_eta) || lars_eta <= 0)
    fail("--lars-eta", "--lars-eta must be a finite number > 0 (got " + str(lars_eta) + ")");
  if (!(label_smoothing >= 0 && label_smoothing < 1))
    fail("--label-smoothing", "--label-smoothing must be in [0, 1) (got " + str(label_smoothing) + ")");

  // sync
  if (!(sign_momentum >= 0 && sign_momentum < 1))
    fail("--sign-momentum", "--sign-momentum must be in [0, 1) (got " + str(sign_momentum) + ")");
  if (sign_warmup_steps < 0)
    fail("--sign-warmup-steps", "--sign-warmup-steps must be >= 0 (got " + str(sign_warmup_steps) + ")");
  if (sync == SyncKind::sign) {
    if (optimizer != OptimizerKind::sgd)
      fail("--optimizer", "--sync sign has its own update (Signum); it cannot be combined with --optimizer " +
                              std::string(optimizer_name(optimizer)));
    if (nesterov) fail("--nesterov", "--nesterov does not apply to --sync sign (use --sign-momentum)");
    if (precision == DType::f16)
      fail("--precision", "--sync sign does not support --precision fp16 (dynamic loss scaling); use bf16 or fp32");
    if (int64_t{workers} * processes > 255)
      fail("--workers", "--sync sign votes over at most 255 workers (got " + str(int64_t{workers} * processes) + " over all processes)");
  }
  if (average_every < 0) fail("--average-every", "--average-every must be >= 0 updates (got " + str(average_every) + ")");
  if (!(ema >= 0 && ema < 1)) fail("--ema", "--ema must be in [0, 1) (got " + str(ema) + ")");
  if (eval_ema && ema == 0) fail("--eval-ema", "--eval-ema needs --ema > 0");
  if (async_ramp_epochs < 0)
    fail("--async-ramp-epochs", "--async-ramp-epochs must be >= 0 (got " + str(async_ramp_epochs) + ")");
  if (ps_shards < 1) fail("--ps-shards", "--ps-shards must be >= 1 (got " + str(ps_shards) + ")");
  if (backup_workers < 0 || backup_workers >= workers)
    fail("--backup-workers", "--backup-workers must be in [0, workers) (got " + str(backup_workers) + " of " +
                                 str(workers) + " workers)");
  if (backup_workers > 0 && sync != SyncKind::backup) fail("--backup-workers", "--backup-workers needs --sync backup");
  StragglerSpec::parse(straggler);  // throws ConfigError naming --straggler
  if (sync == SyncKind::backup || sync == SyncKind::coded) {
    const std::string mode(sync_name(sync));
    if (optimizer != OptimizerKind::sgd)
      fail("--optimizer", "--sync " + mode + " applies SGD at its aggregator; --optimizer " +
                              std::string(optimizer_name(optimizer)) + " is not supported with it");
    if (precision == DType::f16)
      fail("--precision", "--sync " + mode + " does not support --precision fp16 (dynamic loss scaling); use bf16 or fp32");
    if (accumulate != 1) fail("--accumulate", "--sync " + mode + " takes one micro-batch per gradient (--accumulate 1)");
  }
  if (sync == SyncKind::coded) {
    if (stragglers < 0 || stragglers >= workers)
      fail("--stragglers", "--stragglers must be in [0, workers) (got " + str(stragglers) + " of " + str(workers) +
                               " workers)");
    if (code != "cyclic" && code != "fractional") fail("--code", "--code must be cyclic or fractional (got " + code + ")");
    if (code == "fractional" && workers % (stragglers + 1) != 0)
      fail("--code", "--code fractional needs --stragglers + 1 (" + str(stragglers + 1) + ") to divide --workers " +
                         str(workers));
  }
  if (sync == SyncKind::async) {
    if (optimizer != OptimizerKind::sgd)
      fail("--optimizer", "--sync async applies SGD at the parameter server; --optimizer " +
                              std::string(optimizer_name(optimizer)) + " is not supported with it");
    if (precision == DType::f16)
      fail("--precision", "--sync async does not support --precision fp16 (dynamic loss scaling); use bf16 or fp32");
    if (async_round_robin && async_ramp_epochs > 0)
      fail("--async-round-robin", "--async-round-robin needs every worker active: add --async-ramp-epochs 0");
  }
}

ScheduleConfig TrainConfig::schedule_config(int64_t updates_per_epoch) const {
  ScheduleConfig s;
  s.base_lr = base_lr;
  s.global_batch = global_batch();
  s.lr_scaling = lr_scaling;
  s.warmup_epochs = warmup_epochs;
  s.epochs = epochs;
  s.updates_per_epoch = updates_per_epoch;
  s.kind = schedule;
  s.poly_power = poly_power;
  return s;
}

nlohmann::json TrainConfig::to_json() const {
  return nlohmann::json{
      {"command", command_name(command)},
      {"arch", arch},
      {"classes", classes},
      {"image_size", image_size},
      {"synthetic", synthetic},
      {"data", data_dir},
      {"default_dataset", default_dataset},
      {"loader_threads", loader_threads},
      {"prefetch", prefetch},
      {"crop_scale_min", crop_scale_min},
      {"bad_images", bad_images},
      {"max_bad_fraction", max_bad_fraction},
      {"steps_per_epoch", steps_per_epoch},
      {"eval_steps", eval_steps},
      {"device", device.str()},
      {"workers", workers},
      {"processes", processes},
      {"devices", devices},
      {"workers_per_gpu", workers_per_gpu},
      {"bucket_mb", bucket_mb},
      {"overlap", overlap},
      {"comm_timeout_s", comm_timeout_s},
      {"sync", sync_name(sync)},
      {"sign_momentum", sign_momentum},
      {"sign_exchange", sign_exchange_kind_name(sign_exchange)},
      {"sign_warmup_steps", sign_warmup_steps},
      {"average_every", average_every},
      {"ema", ema},
      {"eval_ema", eval_ema},
      {"async_ramp_epochs", async_ramp_epochs},
      {"staleness_lr", staleness_lr},
      {"async_round_robin", async_round_robin},
      {"ps_shards", ps_shards},
      {"backup_workers", backup_workers},
      {"straggler", straggler},
      {"stragglers", stragglers},
      {"code", code},
      {"batch_size", batch_size},
      {"accumulate", accumulate},
      {"global_batch", global_batch()},
      {"precision", precision_name(precision)},
      {"conv_algo", conv_algo_name(conv_algo)},
      {"stem_channels", stem_channels},
      {"stem_space_to_depth", stem_space_to_depth},
      {"bn_kernels", bn_kernels_name(bn_kernels)},
      {"cuda_graph", cuda_graph},
      {"epochs", epochs},
      {"base_lr", base_lr},
      {"lr_scaling", lr_scaling},
      {"warmup_epochs", warmup_epochs},
      {"schedule", schedule_name(schedule)},
      {"poly_power", poly_power},
      {"optimizer", optimizer_name(optimizer)},
      {"momentum", momentum},
      {"nesterov", nesterov},
      {"weight_decay", weight_decay},
      {"wd_on_bn", wd_on_bn},
      {"lars_eta", lars_eta},
      {"label_smoothing", label_smoothing},
      {"zero_init_residual", zero_init_residual},
      {"seed", seed},
      {"out", out_dir},
      {"log_every", log_every},
      {"tensorboard", tensorboard},
      {"checkpoints", checkpoints},
      {"checkpoint_every", checkpoint_every},
      {"checkpoint_in_epochs", checkpoint_in_epochs},
      {"keep_last", keep_last},
      {"stop_after", stop_after},
      {"resume", resume},
      {"init_from", init_from},
      {"weights", weights},
  };
}

namespace {

// Reads a saved configuration strictly: state.json is plain text a user can edit or a disk can
// corrupt, and a value nlohmann would convert silently (a string, 1e12 into an int, 2.5 into an
// int) must stop the resume naming the field instead of training with something else.
class ConfigReader {
 public:
  explicit ConfigReader(const nlohmann::json& j) : j_(j) {
    if (!j.is_object()) throw Error("field 'config' is not an object");
  }

  template <typename T>
  void operator()(const char* key, T& out) const {
    if (!j_.contains(key)) return;
    const nlohmann::json& v = j_.at(key);
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) wrong(key, v, "true or false");
      out = v.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      out = integer<T>(key, v);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) wrong(key, v, "a number");
      out = v.get<T>();
      if (!std::isfinite(out)) wrong(key, v, "a finite number");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) wrong(key, v, "a string");
      out = v.get<std::string>();
    } else {
      static_assert(std::is_same_v<T, std::vector<int>>);
      if (!v.is_array()) wrong(key, v, "an array of integers");
      out.clear();
      for (const nlohmann::json& e : v) out.push_back(integer<int>(key, e));
    }
  }

  // A string field turned into its enum by parse (which throws Error naming the value).
  template <typename T, typename Parse>
  void parsed(const char* key, T& out, Parse parse) const {
    if (!j_.contains(key)) return;
    std::string text;
    (*this)(key, text);
    try {
      out = parse(text);
    } catch (const Error& e) {
      throw Error("field 'config." + std::string(key) + "': " + e.what());
    }
  }

 private:
  template <typename T>
  static T integer(const char* key, const nlohmann::json& v) {
    if (!v.is_number_integer()) wrong(key, v, "an integer");
    using L = std::numeric_limits<T>;
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(L::max())) wrong(key, v, "an integer in range");
      return static_cast<T>(u);
    }
    const auto i = v.get<int64_t>();
    if (i < static_cast<int64_t>(L::min()) || (i > 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(L::max())))
      wrong(key, v, "an integer in range");
    return static_cast<T>(i);
  }

  [[noreturn]] static void wrong(const char* key, const nlohmann::json& v, const char* expected) {
    std::string shown = v.dump();
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    throw Error("field 'config." + std::string(key) + "' is " + shown + ", expected " + expected);
  }

  const nlohmann::json& j_;
};

}  // namespace

TrainConfig TrainConfig::from_json(const nlohmann::json& j) {
  TrainConfig c;
  const ConfigReader get(j);
  get.parsed("command", c.command, [](const std::string& t) {
    if (t != "train" && t != "eval") throw Error("unknown command '" + t + "' (expected train or eval)");
    return t == "eval" ? Command::eval : Command::train;
  });
  get("arch", c.arch);
  get("classes", c.classes);
  get("image_size", c.image_size);
  get("synthetic", c.synthetic);
  get("data", c.data_dir);
  get("default_dataset", c.default_dataset);
  get("loader_threads", c.loader_threads);
  get("prefetch", c.prefetch);
  get("crop_scale_min", c.crop_scale_min);
  get("bad_images", c.bad_images);
  get("max_bad_fraction", c.max_bad_fraction);
  get("steps_per_epoch", c.steps_per_epoch);
  get("eval_steps", c.eval_steps);
  get.parsed("device", c.device, Device::parse);
  get("workers", c.workers);
  get("processes", c.processes);
  get("devices", c.devices);
  get("workers_per_gpu", c.workers_per_gpu);
  get("bucket_mb", c.bucket_mb);
  get("overlap", c.overlap);
  get("comm_timeout_s", c.comm_timeout_s);
  get.parsed("sync", c.sync, parse_sync);
  get("sign_momentum", c.sign_momentum);
  get.parsed("sign_exchange", c.sign_exchange, parse_sign_exchange);
  get("sign_warmup_steps", c.sign_warmup_steps);
  get("average_every", c.average_every);
  get("ema", c.ema);
  get("eval_ema", c.eval_ema);
  get("async_ramp_epochs", c.async_ramp_epochs);
  get("staleness_lr", c.staleness_lr);
  get("async_round_robin", c.async_round_robin);
  get("ps_shards", c.ps_shards);
  get("backup_workers", c.backup_workers);
  get("straggler", c.straggler);
  get("stragglers", c.stragglers);
  get("code", c.code);
  get("batch_size", c.batch_size);
  get("accumulate", c.accumulate);
  get.parsed("precision", c.precision, parse_dtype);
  get.parsed("conv_algo", c.conv_algo, parse_conv_algo);
  get("stem_channels", c.stem_channels);
  get("stem_space_to_depth", c.stem_space_to_depth);
  get.parsed("bn_kernels", c.bn_kernels, parse_bn_kernels);
  get("cuda_graph", c.cuda_graph);
  get("epochs", c.epochs);
  get("base_lr", c.base_lr);
  get("lr_scaling", c.lr_scaling);
  get("warmup_epochs", c.warmup_epochs);
  get.parsed("schedule", c.schedule, parse_schedule);
  get("poly_power", c.poly_power);
  get.parsed("optimizer", c.optimizer, parse_optimizer);
  get("momentum", c.momentum);
  get("nesterov", c.nesterov);
  get("weight_decay", c.weight_decay);
  get("wd_on_bn", c.wd_on_bn);
  get("lars_eta", c.lars_eta);
  get("label_smoothing", c.label_smoothing);
  get("zero_init_residual", c.zero_init_residual);
  get("seed", c.seed);
  get("out", c.out_dir);
  get("log_every", c.log_every);
  get("tensorboard", c.tensorboard);
  get("checkpoints", c.checkpoints);
  get("checkpoint_every", c.checkpoint_every);
  get("checkpoint_in_epochs", c.checkpoint_in_epochs);
  get("keep_last", c.keep_last);
  get("stop_after", c.stop_after);
  get("resume", c.resume);
  get("init_from", c.init_from);
  get("weights", c.weights);
  return c;
}

}  // namespace lockstep::engine
