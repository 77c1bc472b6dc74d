// Straggler injection: see straggler.h.
#include "engine/straggler.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <numeric>
#include <sstream>
#include <thread>

#include "engine/config.h"
#include "kernels/philox.h"

namespace lockstep::engine {

namespace {

[[noreturn]] void bad(std::string_view text, const std::string& why) {
  throw ConfigError("--straggler", "--straggler '" + std::string(text) + "': " + why +
                                       " (e.g. rank=3,delay=200ms  prob=0.1,delay=exp:50ms  slowest=1,factor=3)");
}

double number(std::string_view all, std::string_view v, const char* what) {
  double x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || !std::isfinite(x)) bad(all, std::string(what) + " is not a number");
  return x;
}

// "200ms", "1.5s" -> seconds.
double duration(std::string_view all, std::string_view v) {
  double scale = 1;
  if (v.size() > 2 && v.substr(v.size() - 2) == "ms") {
    scale = 1e-3;
    v.remove_suffix(2);
  } else if (v.size() > 1 && v.back() == 's') {
    v.remove_suffix(1);
  } else {
    bad(all, "a delay needs a unit, ms or s");
  }
  const double x = number(all, v, "the delay") * scale;
  if (x < 0) bad(all, "the delay must be >= 0");
  return x;
}

std::string ms(double s) {
  std::ostringstream os;
  os << s * 1e3 << "ms";
  return os.str();
}

// A uniform [0, 1) number for (seed, step, rank, stream).
double uniform(uint64_t seed, int64_t step, int rank, uint32_t stream) {
  const Philox4 r = philox4x32_10(seed ^ 0x5354524147474c52ull,  // "STRAGGLR"
                                  (static_cast<uint64_t>(step) << 20) + (static_cast<uint64_t>(rank) << 4) + stream);
  return (static_cast<double>(r.v[0]) + static_cast<double>(r.v[1]) * 4294967296.0) / 18446744073709551616.0;
}

}  // namespace

StragglerSpec StragglerSpec::parse(std::string_view text) {
  StragglerSpec s;
  if (text.empty() || text == "none") return s;
  bool has_delay = false, has_factor = false;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) bad(text, "'" + std::string(item) + "' is not key=value");
    const std::string_view key = item.substr(0, eq), v = item.substr(eq + 1);
    if (key == "rank") {
      s.kind = Kind::rank;
      const double r = number(text, v, "rank");
      if (r < 0 || r != std::floor(r)) bad(text, "rank must be a worker index");
      s.rank = static_cast<int>(r);
    } else if (key == "prob") {
      s.kind = Kind::prob;
      s.prob = number(text, v, "prob");
      if (!(s.prob >= 0 && s.prob <= 1)) bad(text, "prob must be in [0, 1]");
    } else if (key == "slowest") {
      s.kind = Kind::slowest;
      const double k = number(text, v, "slowest");
      if (k < 1 || k != std::floor(k)) bad(text, "slowest must be a count >= 1");
      s.slowest = static_cast<int>(k);
    } else if (key == "delay") {
      has_delay = true;
      std::string_view d = v;
      if (d.substr(0, 4) == "exp:") {
        s.exponential = true;
        d.remove_prefix(4);
      }
      s.delay_s = duration(text, d);
    } else if (key == "factor") {
      has_factor = true;
      s.factor = number(text, v, "factor");
      if (!(s.factor >= 1)) bad(text, "factor must be >= 1");
    } else {
      bad(text, "unknown key '" + std::string(key) + "'");
    }
    start = comma + 1;
  }
  if (s.kind == Kind::none) bad(text, "say who is slow: rank=, prob= or slowest=");
  if (s.kind == Kind::slowest && !has_factor && !has_delay) bad(text, "slowest= needs factor= or delay=");
  if (s.kind != Kind::slowest && !has_delay && !has_factor) bad(text, "say how slow: delay= or factor=");
  return s;
}

std::string StragglerSpec::str() const {
  std::ostringstream os;
  switch (kind) {
    case Kind::none: return "";
    case Kind::rank: os << "rank=" << rank; break;
    case Kind::prob: os << "prob=" << prob; break;
    case Kind::slowest: os << "slowest=" << slowest; break;
  }
  if (delay_s > 0 || exponential) os << ",delay=" << (exponential ? "exp:" : "") << ms(delay_s);
  if (factor != 1) os << ",factor=" << factor;
  return os.str();
}

StragglerInjector::StragglerInjector(const StragglerSpec& spec, int world, uint64_t seed)
    : spec_(spec), world_(world), seed_(seed), totals_(static_cast<size_t>(world), 0.0) {
  if (spec.kind == StragglerSpec::Kind::rank && spec.rank >= world)
    throw ConfigError("--straggler", "--straggler rank=" + std::to_string(spec.rank) + " but there are only " +
                                         std::to_string(world) + " workers");
  if (spec.kind == StragglerSpec::Kind::slowest && spec.slowest >= world)
    throw ConfigError("--straggler", "--straggler slowest=" + std::to_string(spec.slowest) +
                                         " must leave a worker that is not slow (" + std::to_string(world) +
                                         " workers)");
}

double StragglerInjector::delay(int rank, int64_t step, double compute_s) const {
  bool slow = false;
  switch (spec_.kind) {
    case StragglerSpec::Kind::none: return 0;
    case StragglerSpec::Kind::rank: slow = rank == spec_.rank; break;
    case StragglerSpec::Kind::prob: slow = uniform(seed_, step, rank, 0) < spec_.prob; break;
    case StragglerSpec::Kind::slowest: {
      // The K slow workers of this step: the K smallest keys of a random permutation.
      std::vector<int> order(static_cast<size_t>(world_));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(),
                [&](int a, int b) { return uniform(seed_, step, a, 1) < uniform(seed_, step, b, 1); });
      slow = std::find(order.begin(), order.begin() + spec_.slowest, rank) != order.begin() + spec_.slowest;
      break;
    }
  }
  if (!slow) return 0;
  double d = spec_.delay_s;
  if (spec_.exponential) d = -spec_.delay_s * std::log(1.0 - uniform(seed_, step, rank, 2));
  return d + (spec_.factor - 1) * compute_s;
}

double StragglerInjector::inject(int rank, int64_t step, double compute_s) {
  const double d = delay(rank, step, compute_s);
  if (d <= 0) return 0;
  std::this_thread::sleep_for(std::chrono::duration<double>(d));
  std::lock_guard<std::mutex> lock(m_);
  totals_[static_cast<size_t>(rank)] += d;
  return d;
}

std::vector<double> StragglerInjector::totals() const {
  std::lock_guard<std::mutex> lock(m_);
  return totals_;
}

}  // namespace lockstep::engine
