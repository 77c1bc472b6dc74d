#include "tools/lockstep/cli_bench_comm.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <exception>
#include <limits>
#include <sstream>
#include <vector>

#include <cxxopts.hpp>

#include "engine/comm/group.h"
#include "engine/sync/strategy.h"
#include "kernels/context.h"
#include "kernels/copy.h"
#include "kernels/half.h"
#include "kernels/memory.h"
#include "kernels/sign.h"
#include "tools/lockstep/cli_repeats.h"

namespace lockstep::cli {

namespace {

using engine::ConfigError;

cxxopts::Options bench_comm_options() {
  cxxopts::Options o("lockstep bench comm",
                     "All-reduce time, algorithm and bus bandwidth over message sizes (as nccl-tests).");
  // clang-format off
  o.add_options()
    ("gpus", "NCCL over GPUs 0..N-1 (default: every GPU when one is usable)", cxxopts::value<std::string>())
    ("device", "cpu (LocalCommunicator threads) or cuda (NCCL)", cxxopts::value<std::string>())
    ("workers", "CPU ranks with --device cpu (default: 2)", cxxopts::value<std::string>())
    ("min-bytes", "smallest message, e.g. 1K (sizes double up to --max-bytes)", cxxopts::value<std::string>()->default_value("1K"))
    ("max-bytes", "largest message, e.g. 256M", cxxopts::value<std::string>()->default_value("256M"))
    ("iters", "timed iterations per size (after 2 untimed ones, the first of them checked)",
     cxxopts::value<std::string>()->default_value("20"))
    ("dtype", "f32 or bf16", cxxopts::value<std::string>()->default_value("f32"))
    ("sync", "allreduce (the table above), or sign: all-reduce vs the 1-bit sign exchanges on the same f32 gradient sizes",
     cxxopts::value<std::string>()->default_value("allreduce"))
    ("h,help", "print this help");
  // clang-format on
  return o;
}

int to_count(const std::string& flag, const std::string& text) {
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || text.empty())
    throw ConfigError(flag, flag + ": expected an integer, got '" + text + "'");
  if (v < 1) throw ConfigError(flag, flag + " must be >= 1 (got " + text + ")");
  return v;
}

// "4096", "1K", "256M", "1G" (binary multiples).
int64_t to_bytes(const std::string& flag, const std::string& text) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  int shift = 0;
  if (ec == std::errc() && p + 1 == end) {
    switch (*p) {
      case 'k': case 'K': shift = 10; ++p; break;
      case 'm': case 'M': shift = 20; ++p; break;
      case 'g': case 'G': shift = 30; ++p; break;
      default: break;
    }
  }
  if (ec != std::errc() || p != end || text.empty() || v < 1)
    throw ConfigError(flag, flag + ": expected a positive size such as 4096, 1K or 256M, got '" + text + "'");
  if (v > (int64_t{1} << 40) >> shift) throw ConfigError(flag, flag + ": " + text + " is out of range");
  return v << shift;
}

// Seeded inputs whose sum over up to 8 ranks is exact in f32 and bf16: small integers.
float seeded_value(int rank, int64_t i) {
  return static_cast<float>(static_cast<int>((static_cast<uint64_t>(i) * 2654435761u + rank * 40503u) % 7u)) - 3.f;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

std::string bench_comm_help() { return bench_comm_options().help(); }

BenchCommConfig parse_bench_comm_args(int argc, const char* const* argv, std::ostream& notes) {
  cxxopts::Options o = bench_comm_options();
  cxxopts::ParseResult r;
  try {
    r = o.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError("", std::string(e.what()) + " (see lockstep bench comm --help)");
  }
  if (!r.unmatched().empty())
    throw ConfigError("", "unexpected argument '" + r.unmatched().front() + "' (see lockstep bench comm --help)");
  cli::note_repeats(r, "bench comm", notes);
  if (r.count("help")) throw HelpRequested{bench_comm_help()};

  BenchCommConfig c;
  const bool gpus = r.count("gpus") > 0, workers = r.count("workers") > 0;
  std::string device = r.count("device") ? r["device"].as<std::string>() : "";
  if (device.empty()) {
    if (gpus) device = "cuda";
    else if (workers) device = "cpu";
    else if (gpu_status().available) device = "cuda";
    else {
      device = "cpu";
      notes << "note: no usable GPU (" << gpu_status().reason << "); benchmarking CPU workers\n";
    }
  }
  if (device == "cpu") {
    if (gpus) throw ConfigError("--gpus", "--gpus: not with --device cpu (use --workers)");
    c.nccl = false;
    c.ranks = workers ? to_count("--workers", r["workers"].as<std::string>()) : 2;
  } else if (device == "cuda") {
    if (workers) throw ConfigError("--workers", "--workers: only with --device cpu (use --gpus for NCCL)");
    c.nccl = true;
    c.ranks = gpus ? to_count("--gpus", r["gpus"].as<std::string>()) : std::max(1, gpu_status().count);
  } else {
    throw ConfigError("--device", "--device: expected cpu or cuda, got '" + device + "'");
  }
  c.min_bytes = to_bytes("--min-bytes", r["min-bytes"].as<std::string>());
  c.max_bytes = to_bytes("--max-bytes", r["max-bytes"].as<std::string>());
  if (c.max_bytes < c.min_bytes)
    throw ConfigError("--max-bytes", "--max-bytes must be >= --min-bytes");
  c.iters = to_count("--iters", r["iters"].as<std::string>());
  const std::string dt = r["dtype"].as<std::string>();
  if (dt == "f32") c.dtype = DType::f32;
  else if (dt == "bf16") c.dtype = DType::bf16;
  else throw ConfigError("--dtype", "--dtype: expected f32 or bf16, got '" + dt + "'");
  const std::string sync = r["sync"].as<std::string>();
  if (sync == "sign") c.sign = true;
  else if (sync != "allreduce") throw ConfigError("--sync", "--sync: expected allreduce or sign, got '" + sync + "'");
  if (c.sign && c.dtype != DType::f32) throw ConfigError("--dtype", "--dtype: --sync sign compares f32 gradients");
  return c;
}

namespace {

// --sync sign: one f32 gradient of d elements per rank; for each method the time of one exchange
// (the slowest rank's, median over iterations) and the bytes a rank sends and receives by
// engine/sync/strategy.h's formulas. Sign methods include momentum, pack, vote and unpack.
// Check: both sign exchanges give every rank the same vote.
int run_bench_sign(const BenchCommConfig& c, std::ostream& out) {
  using Clock = std::chrono::steady_clock;
  const int n = c.ranks;
  std::vector<int64_t> sizes;
  for (int64_t b = c.min_bytes; b <= c.max_bytes; b *= 2) sizes.push_back(std::max<int64_t>(4, b / 4 * 4));
  const int64_t max_d = sizes.back() / 4, max_w = sign_words(max_d), max_s = (max_w + n - 1) / n;
  std::vector<std::unique_ptr<engine::Communicator>> comms;
  std::vector<Device> devices;
  if (c.nccl) {
    std::vector<int> gpus;
    for (int g = 0; g < n; ++g) gpus.push_back(g);
    comms = engine::make_nccl_group(gpus);
    for (int g : gpus) devices.push_back(Device::cuda(g));
  } else {
    comms = engine::make_local_group(n);
    devices.assign(static_cast<size_t>(n), Device::cpu());
  }
  constexpr int kMethods = 3;  // allreduce, sign allgather, sign sharded
  const char* names[kMethods] = {"allreduce", "sign-allgather", "sign-sharded"};
  // seconds[method][size][rank][iter]
  std::vector<std::vector<std::vector<std::vector<double>>>> seconds(
      kMethods, std::vector<std::vector<std::vector<double>>>(
                    sizes.size(), std::vector<std::vector<double>>(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(c.iters)))));
  engine::run_on_every_rank(comms, [&](int r) {
    engine::Communicator& comm = *comms[static_cast<size_t>(r)];
      Context ctx(devices[static_cast<size_t>(r)]);
      OwnedTensor host(Device::cpu(), Shape{max_d}, DType::f32);
      OwnedTensor grad(ctx.device(), Shape{max_d}, DType::f32), mom(ctx.device(), Shape{max_d}, DType::f32);
      OwnedTensor packed(ctx.device(), Shape{n * max_s}, DType::u32), rows(ctx.device(), Shape{n * max_w}, DType::u32);
      OwnedTensor shard(ctx.device(), Shape{max_s}, DType::u32), vote(ctx.device(), Shape{n * max_s}, DType::u32);
      OwnedTensor vote_a(Device::cpu(), Shape{max_w}, DType::u32), vote_b(Device::cpu(), Shape{max_w}, DType::u32);
      zero(ctx, packed);
      zero(ctx, mom);
      for (size_t s = 0; s < sizes.size(); ++s) {
        const int64_t d = sizes[s] / 4, W = sign_words(d), S = (W + n - 1) / n;
        for (int64_t i = 0; i < d; ++i) host.data<float>()[i] = seeded_value(r, i) + 0.5f;
        Tensor g = grad.view().slice(0, d), m = mom.view().slice(0, d);
        copy(ctx, host.view().slice(0, d), g);
        auto method = [&](int k) {
          if (k == 0) return comm.all_reduce(ctx, g, engine::ReduceOp::average);
          sign_momentum(ctx, 0.9f, g, m);
          Tensor p = packed.view().slice(0, k == 1 ? W : n * S);
          Tensor pw = p.slice(0, W);
          sign_pack(ctx, m, pw);
          if (k == 1) {
            Tensor rw = rows.view().slice(0, n * W).reshape({n, W});
            comm.all_gather(ctx, p, rw);
            Tensor v = vote.view().slice(0, W);
            sign_vote(ctx, rw, d, v);
            sign_unpack(ctx, v, g);
          } else {
            Tensor rw = rows.view().slice(0, n * S).reshape({n, S});
            comm.all_to_all(ctx, p, rw);
            Tensor sv = shard.view().slice(0, S);
            sign_vote(ctx, rw, S * 32, sv);
            Tensor v = vote.view().slice(0, n * S);
            comm.all_gather(ctx, sv, v);
            sign_unpack(ctx, v.slice(0, W), g);
          }
        };
        for (int k = 0; k < kMethods; ++k) {
          if (k > 0) {  // the check: the same vote from a fresh momentum, by both exchanges
            zero(ctx, m);
            copy(ctx, host.view().slice(0, d), g);
            method(k);
            ctx.synchronize();
            Tensor dst = (k == 1 ? vote_a : vote_b).view().slice(0, W);
            copy(ctx, vote.view().slice(0, W), dst);
          }
          for (int it = 0; it < c.iters + 1; ++it) {  // the first is untimed
            copy(ctx, host.view().slice(0, d), g);
            ctx.synchronize();
            comm.barrier(ctx);
            auto t0 = Clock::now();
            method(k);
            ctx.synchronize();
            if (it > 0)
              seconds[static_cast<size_t>(k)][s][static_cast<size_t>(r)][static_cast<size_t>(it - 1)] =
                  std::chrono::duration<double>(Clock::now() - t0).count();
          }
        }
        if (!std::equal(vote_a.data<uint32_t>(), vote_a.data<uint32_t>() + W, vote_b.data<uint32_t>()))
          throw Error("bench comm: sign allgather and sharded votes differ at " + std::to_string(sizes[s]) + " bytes");
      }
      comm.barrier(ctx);
  }, "rank");

  out << "lockstep bench comm --sync sign: f32 gradients, " << n << " ranks, " << comms[0]->kind() << " on "
      << (c.nccl ? "GPUs 0.." + std::to_string(n - 1) : std::string("cpu threads")) << ", " << c.iters
      << " timed iterations (slowest rank's time; sign includes momentum, pack, vote, unpack; bytes per rank)\n";
  out << "  grad bytes     elements  method            median(us)      min(us)   sent bytes  recv bytes  check\n";
  for (size_t s = 0; s < sizes.size(); ++s) {
    const int64_t d = sizes[s] / 4, W = sign_words(d), S = (W + n - 1) / n;
    const engine::CommBytes bytes[kMethods] = {
        engine::all_reduce_bytes(d * 4, n), engine::all_gather_bytes(W * 4, n),
        [&] { engine::CommBytes b = engine::all_to_all_bytes(n * S * 4, n); b += engine::all_gather_bytes(S * 4, n); return b; }()};
    for (int k = 0; k < kMethods; ++k) {
      std::vector<double> t(static_cast<size_t>(c.iters));
      for (int it = 0; it < c.iters; ++it)
        for (int r = 0; r < n; ++r)
          t[static_cast<size_t>(it)] = std::max(t[static_cast<size_t>(it)], seconds[static_cast<size_t>(k)][s][static_cast<size_t>(r)][static_cast<size_t>(it)]);
      std::sort(t.begin(), t.end());
      const double median = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
      char name[32];
      std::snprintf(name, sizeof name, "  %-16s", names[k]);
      out << fmt("%12.0f", static_cast<double>(sizes[s])) << fmt(" %12.0f", static_cast<double>(d)) << name
          << fmt(" %12.1f", median * 1e6) << fmt(" %12.1f", t.front() * 1e6) << fmt(" %12.0f", static_cast<double>(bytes[k].sent))
          << fmt(" %11.0f", static_cast<double>(bytes[k].received)) << "  ok\n";
    }
  }
  return 0;
}

}  // namespace

int run_bench_comm(const BenchCommConfig& c, std::ostream& out) {
  if (c.sign) return run_bench_sign(c, out);
  using Clock = std::chrono::steady_clock;
  const int n = c.ranks;
  const size_t esize = dtype_size(c.dtype);
  std::vector<int64_t> sizes;  // bytes, a whole number of elements
  for (int64_t b = c.min_bytes; b <= c.max_bytes; b *= 2)
    sizes.push_back(std::max<int64_t>(1, b / static_cast<int64_t>(esize)) * static_cast<int64_t>(esize));
  const int64_t max_count = sizes.back() / static_cast<int64_t>(esize);

  std::vector<std::unique_ptr<engine::Communicator>> comms;
  std::vector<Device> devices;
  if (c.nccl) {
    std::vector<int> gpus;
    for (int g = 0; g < n; ++g) gpus.push_back(g);
    comms = engine::make_nccl_group(gpus);
    for (int g : gpus) devices.push_back(Device::cuda(g));
  } else {
    comms = engine::make_local_group(n);
    devices.assign(static_cast<size_t>(n), Device::cpu());
  }

  // seconds[rank][size][iter]
  std::vector<std::vector<std::vector<double>>> seconds(
      static_cast<size_t>(n), std::vector<std::vector<double>>(sizes.size(), std::vector<double>(static_cast<size_t>(c.iters))));
  engine::run_on_every_rank(comms, [&](int r) {
    engine::Communicator& comm = *comms[static_cast<size_t>(r)];
      Context ctx(devices[static_cast<size_t>(r)]);
      // Setup: one buffer of the largest size on the rank's device, one host copy for checks.
      OwnedTensor buf(ctx.device(), Shape{max_count}, c.dtype);
      OwnedTensor host(Device::cpu(), Shape{max_count}, c.dtype);
      for (size_t s = 0; s < sizes.size(); ++s) {
        const int64_t count = sizes[s] / static_cast<int64_t>(esize);
        Tensor h = host.view().slice(0, count), d = buf.view().slice(0, count);
        for (int64_t i = 0; i < count; ++i) {
          float v = seeded_value(r, i);
          if (c.dtype == DType::f32) h.data<float>()[i] = v;
          else h.data<uint16_t>()[i] = bf16_from_f32(v);
        }
        copy(ctx, h, d);
        ctx.synchronize();
        comm.all_reduce(ctx, d, engine::ReduceOp::sum);
        ctx.synchronize();
        copy(ctx, d, h);
        for (int64_t i = 0; i < count; ++i) {
          float want = 0;
          for (int q = 0; q < n; ++q) want += seeded_value(q, i);
          float got = c.dtype == DType::f32 ? h.data<float>()[i] : f32_from_bf16(h.data<uint16_t>()[i]);
          if (got != want) {
            std::ostringstream os;
            os << "bench comm: correctness check failed at " << sizes[s] << " bytes on rank " << r
               << ": element " << i << " is " << got << ", expected " << want;
            throw Error(os.str());
          }
        }
        comm.all_reduce(ctx, d, engine::ReduceOp::sum);  // second warm-up
        for (int it = 0; it < c.iters; ++it) {
          comm.barrier(ctx);
          auto t0 = Clock::now();
          comm.all_reduce(ctx, d, engine::ReduceOp::sum);
          ctx.synchronize();
          seconds[static_cast<size_t>(r)][s][static_cast<size_t>(it)] =
              std::chrono::duration<double>(Clock::now() - t0).count();
        }
      }
      comm.barrier(ctx);
  }, "rank");

  out << "lockstep bench comm: all_reduce sum, " << dtype_name(c.dtype) << ", " << n << " ranks, "
      << comms[0]->kind() << " on " << (c.nccl ? "GPUs 0.." + std::to_string(n - 1) : std::string("cpu threads"))
      << ", " << c.iters << " timed iterations per size (each after a barrier; time is the slowest rank's)\n";
  out << "       bytes     elements   median(us)      min(us)      max(us)  algbw(GB/s)  busbw(GB/s)  check\n";
  const double bus_factor = n > 1 ? 2.0 * (n - 1) / n : 0.0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    std::vector<double> t(static_cast<size_t>(c.iters));
    for (int it = 0; it < c.iters; ++it)
      for (int r = 0; r < n; ++r)
        t[static_cast<size_t>(it)] = std::max(t[static_cast<size_t>(it)], seconds[static_cast<size_t>(r)][s][static_cast<size_t>(it)]);
    std::sort(t.begin(), t.end());
    const double median = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
    const double algbw = static_cast<double>(sizes[s]) / median / 1e9;
    out << fmt("%12.0f", static_cast<double>(sizes[s])) << fmt(" %12.0f", static_cast<double>(sizes[s] / static_cast<int64_t>(esize)))
        << fmt(" %12.1f", median * 1e6) << fmt(" %12.1f", t.front() * 1e6) << fmt(" %12.1f", t.back() * 1e6)
        << fmt(" %12.3f", algbw) << fmt(" %12.3f", algbw * bus_factor) << "  ok\n";
  }
  return 0;
}

}  // namespace lockstep::cli
