#include "tools/lockstep/cli_bench_ops.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <vector>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_dir.h"
#include "kernels/memory.h"
#include "kernels/random.h"
#include "kernels/op_profile.h"
#include "kernels/threads.h"
#include "nets/arch.h"
#include "nets/resnet.h"
#include "tools/lockstep/cli_dataset.h"
#include "tools/lockstep/cli_train.h"
#include "tools/lockstep/cli_json_path.h"
#include "tools/lockstep/cli_repeats.h"

namespace lockstep::cli {

namespace {

cxxopts::Options bench_ops_options() {
  cxxopts::Options o("lockstep bench ops",
                     "Each layer of a net timed forward and backward inside real training passes, with achieved "
                     "TFLOP/s and GB/s, slowest first.");
  // clang-format off
  o.add_options()
    ("arch", "network (resnet18..152, resnet20..110, tiny)", cxxopts::value<std::string>()->default_value("resnet50"))
    ("batch-size", "images per pass", cxxopts::value<std::string>()->default_value("32"))
    ("image-size", "square input size (default: 224 for ImageNet nets, 32 for CIFAR nets and tiny)", cxxopts::value<std::string>())
    ("classes", "number of classes (default: 1000 for ImageNet nets, 10 for CIFAR nets and tiny)", cxxopts::value<std::string>())
    ("device", "cpu, cuda or cuda:N (default: cuda when a GPU is usable, else cpu)", cxxopts::value<std::string>())
    ("precision", "bf16, fp16 or fp32 on cuda; the CPU is fp32 (default: bf16 on cuda, fp32 on cpu)", cxxopts::value<std::string>())
    ("conv-algo", "cuDNN algorithms: heuristic, measure, fastest, heuristic-any, graph or graph-measure (as "
                  "lockstep train's)",
     cxxopts::value<std::string>()->default_value(conv_algo_name(BenchOpsConfig{}.conv_algo)))
    ("stem-channels", "pad the images' channels with zeros to N for the stem's convolution (0: off)",
     cxxopts::value<std::string>()->default_value("0"))
    ("stem-space-to-depth", "run the stem's stride-2 convolution as a stride-1 one over 2x2 blocks (as lockstep "
                            "train's)")
    ("bn-kernels", "training batch norm on CUDA: auto, lockstep, scalar or cudnn (as lockstep train's)",
     cxxopts::value<std::string>()->default_value(bn_kernels_name(BenchOpsConfig{}.bn_kernels)))
    ("warmup", "untimed forward + backward passes first", cxxopts::value<std::string>()->default_value("2"))
    ("iters", "timed passes (the median per layer is reported)", cxxopts::value<std::string>()->default_value("5"))
    ("top", "print only the K slowest layers (default: all; --json has every row)", cxxopts::value<std::string>())
    ("json", "also write the rows to FILE as one JSON object", cxxopts::value<std::string>())
    ("h,help", "print this help");
  // clang-format on
  return o;
}

constexpr const char* kExamples =
    "\nEach layer's forward and backward call is timed with the device waited for before and after it, so the sum\n"
    "of the layers is somewhat more than a pass run without waits (both are printed). FLOPs: convolutions and the\n"
    "fc exactly (backward = data + filter gradients, 2x forward; 1x for the stem's conv), element-wise ops\n"
    "approximately; bytes: each op's inputs, outputs and parameters once (a lower bound on traffic).\n"
    "\nExamples:\n"
    "  lockstep bench ops --arch resnet20 --device cpu --batch-size 16\n"
    "  lockstep bench ops --arch resnet50 --batch-size 256 --top 10 --json ops.json\n";

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[(v.size() - 1) / 2];  // the lower middle: a real measurement
}

std::string precision_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::bf16: return "bf16";
    case DType::f16: return "fp16";
    default: return std::string(dtype_name(t));
  }
}

std::string shape_text(const Shape& s) {
  std::ostringstream t;
  for (int i = 0; i < s.rank(); ++i) t << (i ? "x" : "") << s[i];
  return t.str();
}

// Waits for the device around every layer's call and keeps the times of the current pass.
class WallTimer : public nets::LayerTimer {
 public:
  WallTimer(Context& ctx, size_t layers) : ctx_(ctx), fwd_(layers), bwd_(layers) {}
  void begin(size_t, bool) override {
    ctx_.synchronize();
    t0_ = now_seconds();
  }
  void end(size_t layer, bool forward) override {
    ctx_.synchronize();
    (forward ? fwd_ : bwd_)[layer].push_back(now_seconds() - t0_);
  }
  const std::vector<double>& fwd(size_t i) const { return fwd_[i]; }
  const std::vector<double>& bwd(size_t i) const { return bwd_[i]; }

 private:
  Context& ctx_;
  std::vector<std::vector<double>> fwd_, bwd_;
  double t0_ = 0;
};

struct Row {
  std::string name;
  nets::LayerCost cost;
  double fwd_s = 0, bwd_s = 0;
  double total_s() const { return fwd_s + bwd_s; }
};

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

double rate(double amount, double seconds) { return seconds > 0 ? amount / seconds : 0.0; }

}  // namespace

std::string bench_ops_help() {
  cxxopts::Options o = bench_ops_options();
  o.set_width(120);
  return o.help() + kExamples;
}

BenchOpsConfig parse_bench_ops_args(int argc, const char* const* argv, std::ostream& notes) {
  cxxopts::Options o = bench_ops_options();
  cxxopts::ParseResult r;
  try {
    r = o.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError("", std::string("ops: ") + e.what() + " (see lockstep bench ops --help)");
  }
  if (r.count("help")) throw HelpRequested{bench_ops_help()};
  if (!r.unmatched().empty()) throw ConfigError("", "ops: unexpected argument '" + r.unmatched().front() + "'");
  cli::note_repeats(r, "bench ops", notes);
  BenchOpsConfig c;
  c.arch = r["arch"].as<std::string>();
  const nets::ArchInfo* arch = nets::find_arch(c.arch);
  if (!arch)
    throw ConfigError("--arch", "--arch: unknown arch '" + c.arch + "' (known: " + nets::known_arch_names() + ")");
  c.batch = static_cast<int>(parse_int_option("--batch-size", r["batch-size"].as<std::string>(), 1, 1 << 20));
  c.image_size = r.count("image-size") ? static_cast<int>(parse_int_option(
                                             "--image-size", r["image-size"].as<std::string>(), arch->min_image_size, 1 << 14))
                                       : arch->default_image_size;
  c.classes = r.count("classes")
                  ? static_cast<int>(parse_int_option("--classes", r["classes"].as<std::string>(), 1, 1 << 20))
                  : arch->default_classes;
  c.warmup = static_cast<int>(parse_int_option("--warmup", r["warmup"].as<std::string>(), 0, 1'000'000));
  c.iters = static_cast<int>(parse_int_option("--iters", r["iters"].as<std::string>(), 1, 1'000'000));
  if (r.count("top")) c.top = static_cast<int>(parse_int_option("--top", r["top"].as<std::string>(), 1, 1'000'000));
  if (r.count("json")) {
    c.json = r["json"].as<std::string>();
    check_json_path(c.json);
  }

  const GpuStatus& gpu = gpu_status();
  if (r.count("device")) {
    try {
      c.device = Device::parse(r["device"].as<std::string>());
    } catch (const Error& e) {
      throw ConfigError("--device", std::string("--device: ") + e.what());
    }
    if (c.device.is_cuda() && !gpu.available)
      throw ConfigError("--device", "--device " + c.device.str() + ": no usable GPU (" + gpu.reason + ")");
    if (c.device.is_cuda() && c.device.index >= gpu.count)
      throw ConfigError("--device", "--device " + c.device.str() + ": only " + std::to_string(gpu.count) + " GPU(s)");
  } else {
    c.device = gpu.available ? Device::cuda(0) : Device::cpu();
    notes << "lockstep bench ops: no --device given; using " << c.device.str()
          << (gpu.available ? "" : " (" + gpu.reason + ")") << "\n";
  }
  try {
    c.conv_algo = parse_conv_algo(r["conv-algo"].as<std::string>());
  } catch (const Error& e) {
    throw ConfigError("--conv-algo", std::string("--conv-algo: ") + e.what());
  }
  c.stem_channels = static_cast<int>(parse_int_option("--stem-channels", r["stem-channels"].as<std::string>(), 0, 64));
  if (c.stem_channels != 0 && c.stem_channels < 3)
    throw ConfigError("--stem-channels", "--stem-channels must be 0 (off) or 3..64 (got " + std::to_string(c.stem_channels) + ")");
  c.stem_space_to_depth = r.count("stem-space-to-depth") > 0;
  if (c.stem_space_to_depth && c.stem_channels != 0)
    throw ConfigError("--stem-space-to-depth", "--stem-space-to-depth and --stem-channels exclude each other");
  if (c.stem_space_to_depth && arch->family != nets::ArchFamily::imagenet && arch->family != nets::ArchFamily::tiny_nobn)
    throw ConfigError("--stem-space-to-depth", "--stem-space-to-depth needs a stride-2 stem (the ImageNet nets); " +
                                                   c.arch + "'s is stride 1");
  try {
    c.bn_kernels = parse_bn_kernels(r["bn-kernels"].as<std::string>());
  } catch (const Error& e) {
    throw ConfigError("--bn-kernels", std::string("--bn-kernels: ") + e.what());
  }
  if (r.count("precision")) {
    try {
      c.precision = parse_dtype(r["precision"].as<std::string>());
    } catch (const Error& e) {
      throw ConfigError("--precision", std::string("--precision: ") + e.what());
    }
    if (c.precision != DType::f32 && c.precision != DType::bf16 && c.precision != DType::f16)
      throw ConfigError("--precision", "--precision must be bf16, fp16 or fp32");
    if (c.device.is_cpu() && c.precision != DType::f32)
      throw ConfigError("--precision", "--precision " + precision_name(c.precision) + ": the CPU backend runs fp32 only");
  } else {
    c.precision = c.device.is_cuda() ? DType::bf16 : DType::f32;
  }
  return c;
}

int run_bench_ops(const BenchOpsConfig& c, std::ostream& out) {
  Context ctx(c.device);
  ctx.make_current();
  // As a CPU worker of lockstep train: our OpenMP team over the cores, OpenBLAS on one thread
  // (left to its own pool it oversubscribes the cores inside our loops, ~10x slower).
  if (c.device.is_cpu()) set_cpu_threads(available_cores());
  nets::ModelOptions mo;
  mo.arch = c.arch;
  mo.classes = c.classes;
  mo.image_size = c.image_size;
  mo.batch = c.batch;
  mo.dtype = c.precision;
  mo.search = c.conv_algo;
  mo.stem_channels = c.stem_channels;
  mo.stem_space_to_depth = c.stem_space_to_depth;
  mo.bn_kernels = c.bn_kernels;
  nets::Model model(mo);
  model.setup(ctx);
  model.init(ctx, 0, false);
  // Synthetic normalized images and a logit gradient of cross-entropy's size (about 1/N).
  OwnedTensor x(c.device, model.input_shape(), c.precision);
  OwnedTensor dlogits(c.device, model.output_shape(), c.precision);
  fill_normal(ctx, x.view(), 0.f, 1.f, 1, 0);
  fill_normal(ctx, dlogits.view(), 0.f, 1.f / static_cast<float>(c.batch), 2, 0);
  ctx.synchronize();

  auto pass = [&] {
    model.forward(ctx, x.view(), nets::Mode::train);
    model.backward(ctx, dlogits.view());
  };
  for (int i = 0; i < c.warmup; ++i) pass();
  ctx.synchronize();
  const size_t L = model.layers().size();
  WallTimer timer(ctx, L);
  std::vector<double> plain_s;
  for (int i = 0; i < c.iters; ++i) {
    const double t0 = now_seconds();
    pass();
    ctx.synchronize();
    plain_s.push_back(now_seconds() - t0);
    model.set_layer_timer(&timer);
    pass();
    model.set_layer_timer(nullptr);
  }
  const double plain_median = median(plain_s);
  // The same passes once more, every kernel op timed by kind (events on the device: no wait
  // between ops), as the per-op-kind totals of one pass.
  OpProfile profile(ctx);
  ctx.set_op_profile(&profile);
  for (int i = 0; i < c.iters; ++i) pass();
  ctx.set_op_profile(nullptr);
  int64_t dropped = 0;
  std::vector<OpTime> by_op = profile.collect(&dropped);
  double ops_ms = 0;
  for (OpTime& t : by_op) {
    t.ms /= c.iters;
    ops_ms += t.ms;
  }

  std::vector<Row> rows;
  for (size_t i = 0; i < L; ++i) {
    const nets::Layer& layer = *model.layers()[i];
    rows.push_back({layer.name(), layer.cost(), median(timer.fwd(i)), median(timer.bwd(i))});
  }
  double sum_s = 0, sum_fwd = 0, sum_bwd = 0, fwd_flops = 0, bwd_flops = 0, bytes = 0;
  for (const Row& r : rows) {
    sum_fwd += r.fwd_s;
    sum_bwd += r.bwd_s;
    fwd_flops += r.cost.fwd_flops;
    bwd_flops += r.cost.bwd_flops;
    bytes += r.cost.fwd_bytes + r.cost.bwd_bytes;
  }
  sum_s = sum_fwd + sum_bwd;
  const double flops = fwd_flops + bwd_flops;
  std::vector<Row> sorted = rows;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Row& a, const Row& b) { return a.total_s() > b.total_s(); });

  out << "lockstep bench ops: " << c.arch << ", " << c.image_size << "x" << c.image_size << " px, " << c.classes
      << " classes, " << precision_name(c.precision) << " on " << c.device.str() << ", batch " << c.batch;
  if (c.device.is_cpu()) out << ", " << available_cores() << " CPU thread(s)";
  if (const std::string used = model.bn_kernels_used(); !used.empty())
    out << "; BN kernels " << used << " (--bn-kernels " << bn_kernels_name(c.bn_kernels) << ")";
  if (const std::string api = model.conv_api_used(); !api.empty()) out << "; convolution directions through cuDNN's " << api;
  out << "\n  " << c.warmup << " warm-up pass(es), " << c.iters
      << " timed pass(es); median per layer, the device waited for around every layer's call\n\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-12s %-20s %-16s %9s %9s %6s %9s %8s %8s %8s\n", "layer", "kind", "output",
                "fwd ms", "bwd ms", "step%", "GFLOP", "fwd TF/s", "bwd TF/s", "GB/s");
  out << line;
  const size_t shown = c.top > 0 ? std::min(sorted.size(), static_cast<size_t>(c.top)) : sorted.size();
  for (size_t i = 0; i < shown; ++i) {
    const Row& r = sorted[i];
    std::snprintf(line, sizeof line, "  %-12s %-20s %-16s %9.3f %9.3f %6.1f %9.3f %8.3f %8.3f %8.1f\n", r.name.c_str(),
                  r.cost.kind.c_str(), shape_text(r.cost.out).c_str(), r.fwd_s * 1e3, r.bwd_s * 1e3,
                  100.0 * rate(r.total_s(), sum_s), (r.cost.fwd_flops + r.cost.bwd_flops) * 1e-9,
                  rate(r.cost.fwd_flops, r.fwd_s) * 1e-12, rate(r.cost.bwd_flops, r.bwd_s) * 1e-12,
                  rate(r.cost.fwd_bytes + r.cost.bwd_bytes, r.total_s()) * 1e-9);
    out << line;
  }
  if (shown < sorted.size()) out << "  ... " << sorted.size() - shown << " more layer(s) (--top " << c.top << ")\n";
  std::snprintf(line, sizeof line, "  %-12s %-20s %-16s %9.3f %9.3f %6.1f %9.3f %8.3f %8.3f %8.1f\n", "total",
                (std::to_string(L) + " layers").c_str(), "", sum_fwd * 1e3, sum_bwd * 1e3, 100.0, flops * 1e-9,
                rate(fwd_flops, sum_fwd) * 1e-12, rate(bwd_flops, sum_bwd) * 1e-12, rate(bytes, sum_s) * 1e-9);
  out << line;
  out << "\n  sum of layers " << fmt("%.3f ms", sum_s * 1e3) << " (waiting for the device at every layer) vs "
      << fmt("%.3f ms", plain_median * 1e3) << " for the same forward + backward untimed by layer (median): "
      << fmt("%+.1f%%", 100.0 * (sum_s / plain_median - 1.0)) << " timing overhead; "
      << fmt("%.3f", rate(flops, plain_median) * 1e-12) << " TFLOP/s, "
      << fmt("%.1f", c.batch / plain_median) << " images/s untimed\n";

  out << "\n  time by op, per pass (" << c.iters << " more passes, each op timed on the device"
      << (c.device.is_cuda() ? " by CUDA events" : "") << "; an op inside another counts in the outer one)\n";
  std::snprintf(line, sizeof line, "  %-28s %8s %10s %7s\n", "op", "calls", "ms", "%");
  out << line;
  for (const OpTime& t : by_op) {
    std::snprintf(line, sizeof line, "  %-28s %8.0f %10.3f %7.1f\n", t.op.c_str(), static_cast<double>(t.calls) / c.iters,
                  t.ms, 100.0 * rate(t.ms, ops_ms));
    out << line;
  }
  out << "  sum of ops " << fmt("%.3f ms", ops_ms) << " vs " << fmt("%.3f ms", plain_median * 1e3)
      << " for the untimed pass: the rest is copies and the gaps between ops";
  if (dropped > 0) out << " (" << dropped << " op(s) beyond the profile's capacity not counted)";
  out << "\n";

  if (!c.json.empty()) {
    nlohmann::ordered_json j;
    j["engine"] = "lockstep";
    j["arch"] = c.arch;
    j["device"] = c.device.str();
    j["precision"] = precision_name(c.precision);
    j["conv_algo"] = conv_algo_name(c.conv_algo);
    j["stem_channels"] = c.stem_channels;
    j["stem_space_to_depth"] = c.stem_space_to_depth;
    j["bn_kernels"] = bn_kernels_name(c.bn_kernels);
    j["bn_kernels_used"] = model.bn_kernels_used();
    j["conv_api_used"] = model.conv_api_used();
    j["image_size"] = c.image_size;
    j["classes"] = c.classes;
    j["batch"] = c.batch;
    j["warmup"] = c.warmup;
    j["iters"] = c.iters;
    j["sum_of_layers_ms"] = sum_s * 1e3;
    j["untimed_pass_ms"] = plain_median * 1e3;
    j["total_gflop"] = flops * 1e-9;
    nlohmann::ordered_json ops = nlohmann::ordered_json::array();
    for (const OpTime& t : by_op)
      ops.push_back({{"op", t.op}, {"calls", static_cast<double>(t.calls) / c.iters}, {"ms", t.ms}});
    j["ops_ms_per_pass"] = ops;
    j["sum_of_ops_ms"] = ops_ms;
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const Row& r : sorted) {
      nlohmann::ordered_json o;
      o["name"] = r.name;
      o["kind"] = r.cost.kind;
      std::vector<int64_t> shape;
      for (int d = 0; d < r.cost.out.rank(); ++d) shape.push_back(r.cost.out[d]);
      o["output_shape"] = shape;
      o["fwd_ms"] = r.fwd_s * 1e3;
      o["bwd_ms"] = r.bwd_s * 1e3;
      o["share_pct"] = 100.0 * rate(r.total_s(), sum_s);
      o["fwd_flops"] = r.cost.fwd_flops;
      o["bwd_flops"] = r.cost.bwd_flops;
      o["fwd_bytes"] = r.cost.fwd_bytes;
      o["bwd_bytes"] = r.cost.bwd_bytes;
      o["fwd_tflops"] = rate(r.cost.fwd_flops, r.fwd_s) * 1e-12;
      o["bwd_tflops"] = rate(r.cost.bwd_flops, r.bwd_s) * 1e-12;
      o["gb_per_s"] = rate(r.cost.fwd_bytes + r.cost.bwd_bytes, r.total_s()) * 1e-9;
      arr.push_back(o);
    }
    j["layers"] = arr;
    engine::atomic_write_file(c.json, j.dump(2) + "\n");
    out << "  wrote " << c.json << "\n";
  }
  return 0;
}

}  // namespace lockstep::cli
