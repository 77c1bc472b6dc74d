// Gradient coding: the cyclic and fractional repetition codes and their decoding. See
// gradient_code.h.
#include "engine/coded/gradient_code.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>

#include "kernels/error.h"

namespace lockstep::engine {
namespace {

// A decode must reproduce the all-ones target this closely (it is exact up to rounding).
constexpr double kResidualTol = 1e-9;
// Straggler sets the constructor checks: all of them up to this many, a fixed sample beyond.
constexpr int64_t kCheckedSets = 1024;
// Random H drawn for a cyclic code; the best conditioned one is kept.
constexpr int kDraws = 16;

// Uniform in [-1, 1) from mt19937_64's raw bits: std's distributions are not specified bit for
// bit, and every process of a run must draw the same H.
double uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-52 - 1.0;
}

// min |A x - b| for a rows x cols (rows >= cols) row-major A, by Householder QR: small dense
// systems (N <= a few dozen), solved in double. False when A is numerically rank deficient.
bool least_squares(std::vector<double> A, int rows, int cols, std::vector<double> b, std::vector<double>& x) {
  auto at = [&](int r, int c) -> double& { return A[static_cast<size_t>(r) * cols + c]; };
  double scale = 0;
  for (double v : A) scale = std::max(scale, std::abs(v));
  if (scale == 0) return false;
  std::vector<double> v(rows);
  for (int k = 0; k < cols; ++k) {
    double norm2 = 0;
    for (int r = k; r < rows; ++r) norm2 += at(r, k) * at(r, k);
    const double norm = std::sqrt(norm2);
    if (norm <= 1e-12 * scale) return false;
    // Reflect column k onto -sign(a_kk) |a| e_k (the sign that avoids cancellation).
    const double alpha = at(k, k) > 0 ? -norm : norm;
    double vnorm2 = 0;
    for (int r = k; r < rows; ++r) {
      v[r] = at(r, k) - (r == k ? alpha : 0.0);
      vnorm2 += v[r] * v[r];
    }
    for (int c = k; c < cols; ++c) {
      double dot = 0;
      for (int r = k; r < rows; ++r) dot += v[r] * at(r, c);
      const double t = 2 * dot / vnorm2;
      for (int r = k; r < rows; ++r) at(r, c) -= t * v[r];
    }
    double dot = 0;
    for (int r = k; r < rows; ++r) dot += v[r] * b[r];
    const double t = 2 * dot / vnorm2;
    for (int r = k; r < rows; ++r) b[r] -= t * v[r];
  }
  x.assign(cols, 0.0);
  for (int k = cols - 1; k >= 0; --k) {
    double acc = b[k];
    for (int c = k + 1; c < cols; ++c) acc -= at(k, c) * x[c];
    x[k] = acc / at(k, k);
  }
  return true;
}

int64_t binomial_capped(int n, int k, int64_t cap) {
  int64_t c = 1;
  for (int i = 1; i <= k; ++i) {
    c = c * (n - k + i) / i;  // exact: c * (n-k+i) is divisible by i at every step
    if (c > cap) return cap + 1;
  }
  return c;
}

// The straggler sets (size s, sorted) the constructor verifies: every one while there are at most
// kCheckedSets; otherwise the N contiguous windows {i, ..., i+s-1} mod N (which knock out whole
// runs of neighbouring supports) and random sets drawn from `seed` up to kCheckedSets.
std::vector<std::vector<int>> straggler_sets(int n, int s, uint64_t seed) {
  std::vector<std::vector<int>> sets;
  if (binomial_capped(n, s, kCheckedSets) <= kCheckedSets) {
    std::vector<int> c(s);
    for (int i = 0; i < s; ++i) c[i] = i;
    while (true) {
      sets.push_back(c);
      int i = s - 1;
      while (i >= 0 && c[i] == n - s + i) --i;
      if (i < 0) break;
      ++c[i];
      for (int j = i + 1; j < s; ++j) c[j] = c[j - 1] + 1;
    }
    return sets;
  }
  for (int i = 0; i < n; ++i) {
    std::vector<int> w(s);
    for (int k = 0; k < s; ++k) w[k] = (i + k) % n;
    std::sort(w.begin(), w.end());
    sets.push_back(w);
  }
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::vector<int> all(n);
  while (static_cast<int64_t>(sets.size()) < kCheckedSets) {
    for (int i = 0; i < n; ++i) all[i] = i;
    for (int k = 0; k < s; ++k) std::swap(all[k], all[k + static_cast<int>(rng() % static_cast<uint64_t>(n - k))]);
    std::vector<int> w(all.begin(), all.begin() + s);
    std::sort(w.begin(), w.end());
    sets.push_back(w);
  }
  return sets;
}

const char* scheme_name(CodeScheme scheme) { return scheme == CodeScheme::cyclic ? "cyclic" : "fractional"; }

}  // namespace

struct GradientCode::Cache {
  std::mutex m;
  std::map<std::vector<int>, std::vector<double>> weights;  // sorted finisher set -> its weights
};

GradientCode::GradientCode(int n, int s, CodeScheme scheme, uint64_t seed)
    : n_(n), s_(s), scheme_(scheme), cache_(std::make_unique<Cache>()) {
  LS_CHECK(n >= 1, "gradient code: workers N must be >= 1, got " << n);
  LS_CHECK(s >= 0, "gradient code: stragglers s must be >= 0, got " << s);
  LS_CHECK(s < n, "gradient code: stragglers s must be < workers N (some worker must finish), got s=" << s
                                                                                                    << " N=" << n);
  LS_CHECK(scheme == CodeScheme::cyclic || scheme == CodeScheme::fractional,
           "gradient code: unknown scheme " << static_cast<int>(scheme));
  if (scheme == CodeScheme::fractional) {
    LS_CHECK(n % (s + 1) == 0, "gradient code: the fractional scheme needs s+1 to divide N, got N="
                                   << n << " s=" << s << " (use the cyclic scheme)");
    parts_.resize(n);
    coefficients_.assign(n, std::vector<double>(s + 1, 1.0));
    for (int i = 0; i < n; ++i) {
      const int first = i / (s + 1) * (s + 1);
      for (int k = 0; k <= s; ++k) parts_[i].push_back(first + k);
    }
    return;
  }
  // Keep the best of kDraws random H: the worst-case amplification varies over draws by orders
  // of magnitude (a draw can even fail to decode some set), and rounding in float messages grows
  // by it. Deterministic in the seed: draw d uses seed + d.
  std::vector<std::vector<int>> best_parts;
  std::vector<std::vector<double>> best_coefficients;
  double best = INFINITY;
  for (int d = 0; d < kDraws; ++d) {
    const double amp = draw_cyclic(seed + static_cast<uint64_t>(d), best);
    if (amp < best) {
      best = amp;
      best_parts = parts_;
      best_coefficients = coefficients_;
    }
  }
  LS_CHECK(std::isfinite(best), "gradient code (N=" << n << ", s=" << s << ", cyclic): no random H drawn from seeds "
                                                    << seed << ".." << seed + kDraws - 1
                                                    << " decodes every straggler set exactly; try another seed");
  parts_ = std::move(best_parts);
  coefficients_ = std::move(best_coefficients);
  amplification_ = best;
}

GradientCode::~GradientCode() = default;
GradientCode::GradientCode(GradientCode&&) noexcept = default;
GradientCode& GradientCode::operator=(GradientCode&&) noexcept = default;

double GradientCode::draw_cyclic(uint64_t seed, double give_up_at) {
  const int n = n_, s = s_;
  // H (s x N) with H 1 = 0: random entries, the last column minus the sum of the others.
  std::mt19937_64 rng(seed);
  std::vector<std::vector<double>> H(s, std::vector<double>(n));
  for (auto& row : H) {
    double sum = 0;
    for (int j = 0; j + 1 < n; ++j) sum += row[j] = uniform(rng);
    row[n - 1] = -sum;
  }
  parts_.assign(n, {});
  coefficients_.assign(n, {});
  for (int i = 0; i < n; ++i) {
    std::vector<int>& support = parts_[i];
    for (int k = 0; k <= s; ++k) support.push_back((i + k) % n);
    // Row i: the null vector of H restricted to the support, scaled to b_i = 1, so
    // H_S[:, 1..s] x = -H_S[:, 0] (s x s) and the row is (1, x).
    std::vector<double> coeff{1.0};
    if (s > 0) {
      std::vector<double> M(static_cast<size_t>(s) * s), rhs(s), x;
      for (int r = 0; r < s; ++r) {
        rhs[r] = -H[r][support[0]];
        for (int k = 1; k <= s; ++k) M[static_cast<size_t>(r) * s + (k - 1)] = H[r][support[k]];
      }
      if (!least_squares(M, s, s, rhs, x)) return INFINITY;
      coeff.insert(coeff.end(), x.begin(), x.end());
    }
    coefficients_[i] = std::move(coeff);
  }
  // Any N - s rows must span null(H) (so contain 1): check the finisher sets up front, so an
  // unlucky H is caught here rather than in the middle of training.
  double amp = 0;
  for (const std::vector<int>& stragglers : straggler_sets(n, s, seed)) {
    std::vector<int> used;
    for (int w = 0, k = 0; w < n; ++w) {
      if (k < s && stragglers[k] == w)
        ++k;
      else
        used.push_back(w);
    }
    std::vector<double> a;
    try {
      a = solve(used);
    } catch (const Error&) {
      return INFINITY;
    }
    double sum = 0;
    for (size_t c = 0; c < used.size(); ++c) {
      double row = 0;
      for (double b : coefficients_[used[c]]) row += std::abs(b);
      sum += std::abs(a[c]) * row;
    }
    amp = std::max(amp, sum / n);
    if (amp >= give_up_at) return INFINITY;  // cannot beat the best draw so far: skip the rest
  }
  return amp;
}

const std::vector<int>& GradientCode::parts(int worker) const {
  LS_CHECK(worker >= 0 && worker < n_, "gradient code: worker " << worker << " out of range [0, " << n_ << ")");
  return parts_[worker];
}

const std::vector<double>& GradientCode::coefficients(int worker) const {
  LS_CHECK(worker >= 0 && worker < n_, "gradient code: worker " << worker << " out of range [0, " << n_ << ")");
  return coefficients_[worker];
}

std::vector<std::vector<double>> GradientCode::matrix() const {
  std::vector<std::vector<double>> B(n_, std::vector<double>(n_, 0.0));
  for (int i = 0; i < n_; ++i)
    for (size_t k = 0; k < parts_[i].size(); ++k) B[i][parts_[i][k]] = coefficients_[i][k];
  return B;
}

std::vector<double> GradientCode::solve(const std::vector<int>& used) const {
  const int m = static_cast<int>(used.size());
  std::vector<double> w(m, 0.0);
  if (scheme_ == CodeScheme::fractional) {
    // One finisher per group, the lowest-numbered, with weight 1: its message is the group's sum.
    std::vector<bool> taken(n_ / (s_ + 1), false);
    for (int c = 0; c < m; ++c) {
      const int group = used[c] / (s_ + 1);
      if (!taken[group]) {
        taken[group] = true;
        w[c] = 1.0;
      }
    }
    for (size_t g = 0; g < taken.size(); ++g)
      LS_CHECK(taken[g], "gradient code (fractional): no finisher in group " << g);
    return w;
  }
  // Cyclic: B_F^T a = 1 (N equations, N - s unknowns, consistent when the rows span null(H)).
  std::vector<double> A(static_cast<size_t>(n_) * m, 0.0);
  for (int c = 0; c < m; ++c)
    for (size_t k = 0; k < parts_[used[c]].size(); ++k)
      A[static_cast<size_t>(parts_[used[c]][k]) * m + c] = coefficients_[used[c]][k];
  const bool full_rank = least_squares(A, n_, m, std::vector<double>(n_, 1.0), w);
  double residual = full_rank ? 0.0 : INFINITY;
  for (int j = 0; full_rank && j < n_; ++j) {
    double acc = 0;
    for (int c = 0; c < m; ++c) acc += A[static_cast<size_t>(j) * m + c] * w[c];
    residual = std::max(residual, std::abs(acc - 1.0));
  }
  if (!(residual < kResidualTol)) {
    std::ostringstream set;
    for (int c = 0; c < m; ++c) set << (c ? "," : "") << used[c];
    LS_CHECK(false, "gradient code (N=" << n_ << ", s=" << s_ << ", cyclic): finishers {" << set.str()
                                        << "} do not decode exactly (max |B_F^T a - 1| = " << residual
                                        << "); the random H is ill-conditioned for this set");
  }
  return w;
}

std::vector<double> GradientCode::decode(const std::vector<int>& finishers) const {
  const int m = n_ - s_;
  LS_CHECK(static_cast<int>(finishers.size()) >= m,
           "gradient code (N=" << n_ << ", s=" << s_ << ", " << scheme_name(scheme_) << "): decode needs at least N - s = "
                               << m << " finishers, got " << finishers.size());
  std::vector<bool> seen(n_, false);
  for (int f : finishers) {
    LS_CHECK(f >= 0 && f < n_, "gradient code: finisher " << f << " out of range [0, " << n_ << ")");
    LS_CHECK(!seen[f], "gradient code: duplicate finisher " << f);
    seen[f] = true;
  }
  std::vector<int> used(finishers.begin(), finishers.begin() + m);
  std::sort(used.begin(), used.end());
  std::vector<double> w;
  {
    std::lock_guard<std::mutex> lock(cache_->m);
    auto it = cache_->weights.find(used);
    if (it != cache_->weights.end()) w = it->second;
  }
  if (w.empty()) {
    // Solved outside the lock; two threads racing on one set compute the same weights and the
    // first insert wins, so every caller sees identical numbers.
    w = solve(used);
    std::lock_guard<std::mutex> lock(cache_->m);
    w = cache_->weights.emplace(used, std::move(w)).first->second;
  }
  std::vector<double> a(finishers.size(), 0.0);
  for (int c = 0; c < m; ++c)
    a[c] = w[std::lower_bound(used.begin(), used.end(), finishers[c]) - used.begin()];
  return a;
}

}  // namespace lockstep::engine
