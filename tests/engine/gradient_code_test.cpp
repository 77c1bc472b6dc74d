// Gradient coding (engine/coded/gradient_code.h): for every N in 1..6 and s in 0..min(2, N-1),
// both schemes where valid, the full gradient comes back from EVERY set of N - s finishers (in
// any order, and with extra finishers) in double and in float; the supports and coverage have the
// promised shape; s = 0, s = N-1 and the fractional groups by hand; the code is deterministic in
// its seed; decode's cache gives identical numbers from several threads; bad arguments throw.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <thread>

#include "engine/coded/gradient_code.h"
#include "kernels/error.h"

namespace lockstep::engine {
namespace {

constexpr int kDim = 5;  // gradient length used throughout

struct Case {
  int n, s;
  CodeScheme scheme;
};

std::string name(const Case& c) {
  return "N=" + std::to_string(c.n) + " s=" + std::to_string(c.s) +
         (c.scheme == CodeScheme::cyclic ? " cyclic" : " fractional");
}

// Every (N, s, scheme) of the sweep: N in 1..6, s in 0..min(2, N-1), fractional where (s+1) | N.
std::vector<Case> sweep() {
  std::vector<Case> cases;
  for (int n = 1; n <= 6; ++n)
    for (int s = 0; s <= std::min(2, n - 1); ++s) {
      cases.push_back({n, s, CodeScheme::cyclic});
      if (n % (s + 1) == 0) cases.push_back({n, s, CodeScheme::fractional});
    }
  return cases;
}

// All k-subsets of {0..n-1}, each sorted.
std::vector<std::vector<int>> subsets(int n, int k) {
  std::vector<std::vector<int>> out;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    if (std::popcount(mask) != k) continue;
    std::vector<int> set;
    for (int i = 0; i < n; ++i)
      if (mask & (1u << i)) set.push_back(i);
    out.push_back(set);
  }
  return out;
}

template <typename T>
std::vector<std::vector<T>> random_gradients(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<std::vector<T>> g(n, std::vector<T>(kDim));
  for (auto& gj : g)
    for (T& x : gj) x = static_cast<T>(u(rng));
  return g;
}

// Worker i's message m_i = sum_k coeff[i][k] * g_{parts[i][k]}, computed in T (as a worker would).
template <typename T>
std::vector<std::vector<T>> messages(const GradientCode& code, const std::vector<std::vector<T>>& g) {
  std::vector<std::vector<T>> m(code.workers(), std::vector<T>(kDim, T(0)));
  for (int i = 0; i < code.workers(); ++i)
    for (size_t k = 0; k < code.parts(i).size(); ++k)
      for (int d = 0; d < kDim; ++d)
        m[i][d] += static_cast<T>(code.coefficients(i)[k]) * g[code.parts(i)[k]][d];
  return m;
}

// Decodes the messages of `finishers` in T and returns the worst error against sum_j g_j (in
// double), relative to the size of the terms summed: max_d |err_d| / max_d sum_j |g_j[d]|, so a
// component that cancels to about 0 does not turn rounding into a large relative error.
template <typename T>
double decode_error(const GradientCode& code, const std::vector<std::vector<T>>& g,
                    const std::vector<std::vector<T>>& m, const std::vector<int>& finishers) {
  const std::vector<double> a = code.decode(finishers);
  EXPECT_EQ(a.size(), finishers.size());
  double worst = 0, scale = 0;
  for (int d = 0; d < kDim; ++d) {
    T got = 0;
    for (size_t i = 0; i < finishers.size(); ++i) got += static_cast<T>(a[i]) * m[finishers[i]][d];
    double want = 0, size = 0;
    for (const auto& gj : g) {
      want += static_cast<double>(gj[d]);
      size += std::abs(static_cast<double>(gj[d]));
    }
    worst = std::max(worst, std::abs(static_cast<double>(got) - want));
    scale = std::max(scale, size);
  }
  return worst / scale;
}

template <typename T>
void expect_recovery_from_every_subset(double tol) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(name(c));
    const GradientCode code(c.n, c.s, c.scheme, 7);
    const auto g = random_gradients<T>(c.n, 100 + c.n * 10 + c.s);
    const auto m = messages(code, g);
    for (std::vector<int> f : subsets(c.n, c.n - c.s)) {
      EXPECT_LT(decode_error(code, g, m, f), tol) << "finishers in increasing order";
      std::reverse(f.begin(), f.end());  // arrival order is arbitrary: weights follow it
      EXPECT_LT(decode_error(code, g, m, f), tol) << "finishers in decreasing order";
    }
  }
}

TEST(GradientCode, RecoversTheFullGradientFromEveryFinisherSetInDouble) {
  expect_recovery_from_every_subset<double>(1e-9);
}

TEST(GradientCode, RecoversTheFullGradientFromEveryFinisherSetInFloat) {
  expect_recovery_from_every_subset<float>(1e-5);
}

TEST(GradientCode, UsesTheFirstNMinusSFinishersWhenMoreFinish) {
  for (const Case& c : sweep()) {
    if (c.s == 0) continue;
    SCOPED_TRACE(name(c));
    const GradientCode code(c.n, c.s, c.scheme, 3);
    const auto g = random_gradients<double>(c.n, 5);
    const auto m = messages(code, g);
    const int used = c.n - c.s;
    for (int extra = 1; extra <= c.s; ++extra) {
      // Workers in a rotated order, N - s + extra of them: the extras come last.
      for (int start = 0; start < c.n; ++start) {
        std::vector<int> f;
        for (int k = 0; k < used + extra; ++k) f.push_back((start + k) % c.n);
        const std::vector<double> a = code.decode(f);
        ASSERT_EQ(a.size(), f.size());
        for (size_t i = used; i < a.size(); ++i) EXPECT_EQ(a[i], 0.0) << "extra finisher " << f[i];
        const std::vector<int> first(f.begin(), f.begin() + used);
        const std::vector<double> a_first = code.decode(first);
        for (int i = 0; i < used; ++i) EXPECT_EQ(a[i], a_first[i]);
        EXPECT_LT(decode_error(code, g, m, f), 1e-9);
      }
    }
  }
}

TEST(GradientCode, SupportsHaveSPlusOnePartsAndCoverEveryPartSPlusOneTimes) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(name(c));
    const GradientCode code(c.n, c.s, c.scheme);
    EXPECT_EQ(code.workers(), c.n);
    EXPECT_EQ(code.stragglers(), c.s);
    EXPECT_EQ(code.scheme(), c.scheme);
    EXPECT_EQ(code.parts_per_worker(), c.s + 1);
    const auto B = code.matrix();
    ASSERT_EQ(B.size(), static_cast<size_t>(c.n));
    std::vector<int> covered(c.n, 0);
    for (int i = 0; i < c.n; ++i) {
      const auto& parts = code.parts(i);
      const auto& coeff = code.coefficients(i);
      ASSERT_EQ(parts.size(), static_cast<size_t>(c.s + 1));
      ASSERT_EQ(coeff.size(), parts.size());
      std::vector<int> sorted = parts;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "worker " << i;
      ASSERT_EQ(B[i].size(), static_cast<size_t>(c.n));
      int nonzero = 0;
      for (int j = 0; j < c.n; ++j) nonzero += B[i][j] != 0.0;
      EXPECT_EQ(nonzero, c.s + 1) << "worker " << i;
      for (size_t k = 0; k < parts.size(); ++k) {
        ASSERT_GE(parts[k], 0);
        ASSERT_LT(parts[k], c.n);
        ++covered[parts[k]];
        EXPECT_EQ(B[i][parts[k]], coeff[k]);
        if (c.scheme == CodeScheme::cyclic) {
          EXPECT_EQ(parts[k], (i + static_cast<int>(k)) % c.n);  // i, i+1, ..., i+s mod N
        } else {
          EXPECT_EQ(parts[k], i / (c.s + 1) * (c.s + 1) + static_cast<int>(k));  // the group's parts
          EXPECT_EQ(coeff[k], 1.0);
        }
      }
      if (c.scheme == CodeScheme::cyclic) {
        EXPECT_EQ(B[i][i], 1.0);
      }
    }
    for (int j = 0; j < c.n; ++j) EXPECT_EQ(covered[j], c.s + 1) << "part " << j;
  }
}

TEST(GradientCode, NoStragglersIsTheUncodedSum) {
  for (CodeScheme scheme : {CodeScheme::cyclic, CodeScheme::fractional})
    for (int n = 1; n <= 6; ++n) {
      const GradientCode code(n, 0, scheme);
      const auto B = code.matrix();
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) EXPECT_EQ(B[i][j], i == j ? 1.0 : 0.0);
      std::vector<int> all(n);
      for (int i = 0; i < n; ++i) all[i] = n - 1 - i;
      EXPECT_EQ(code.decode(all), std::vector<double>(n, 1.0));
      EXPECT_EQ(code.amplification(), 1.0);
    }
}

TEST(GradientCode, AllButOneStragglerMeansEveryWorkerSendsTheWholeSum) {
  // s = N - 1: null(H) is spanned by the all-ones vector, so every row is all ones and any single
  // finisher's message is the answer.
  for (int n = 2; n <= 6; ++n) {
    const GradientCode code(n, n - 1);
    for (const auto& row : code.matrix())
      for (double b : row) EXPECT_NEAR(b, 1.0, 1e-12);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(code.decode({i})[0], 1.0, 1e-12);
  }
}

TEST(GradientCode, FractionalTakesOneFinisherPerGroup) {
  const GradientCode code(6, 2, CodeScheme::fractional);  // groups {0,1,2} and {3,4,5}
  EXPECT_EQ(code.parts(4), (std::vector<int>{3, 4, 5}));
  EXPECT_EQ(code.amplification(), 1.0);
  // Finishers 5, 1, 2, 4: the lowest-numbered of each group, 1 and 4, carry the sum.
  EXPECT_EQ(code.decode({5, 1, 2, 4}), (std::vector<double>{0, 1, 0, 1}));
  EXPECT_EQ(code.decode({0, 3, 1, 5}), (std::vector<double>{1, 1, 0, 0}));
}

TEST(GradientCode, IsDeterministicInItsSeed) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(name(c));
    EXPECT_EQ(GradientCode(c.n, c.s, c.scheme, 11).matrix(), GradientCode(c.n, c.s, c.scheme, 11).matrix());
  }
  // Cyclic codes with 1 <= s < N - 1 are random: another seed, another B (same supports).
  EXPECT_NE(GradientCode(5, 2, CodeScheme::cyclic, 1).matrix(), GradientCode(5, 2, CodeScheme::cyclic, 1000).matrix());
}

TEST(GradientCode, CyclicCodesAreWellConditionedForSmallClusters) {
  // Keeping the best of several random H bounds the rounding growth: at most a few digits lost
  // for the cluster sizes a trainer uses (measured: 17 at N=8 s=2, 71 at N=8 s=3).
  for (int n = 2; n <= 8; ++n)
    for (int s = 1; s <= std::min(3, n - 1); ++s) {
      const GradientCode code(n, s);
      EXPECT_GE(code.amplification(), 1.0) << "N=" << n << " s=" << s;
      EXPECT_LT(code.amplification(), 100.0) << "N=" << n << " s=" << s;
    }
}

TEST(GradientCode, LargerClustersDecodeSampledFinisherSets) {
  // C(20, 3) = 1140 straggler sets: more than the constructor checks exhaustively. Random sets,
  // decoded through the cache and checked in double.
  const GradientCode code(20, 3);
  const auto g = random_gradients<double>(20, 9);
  const auto m = messages(code, g);
  std::mt19937_64 rng(4);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int> f(20);
    for (int i = 0; i < 20; ++i) f[i] = i;
    std::shuffle(f.begin(), f.end(), rng);
    f.resize(17);
    EXPECT_LT(decode_error(code, g, m, f), 1e-9);
  }
}

TEST(GradientCode, CachedDecodesAreIdenticalAcrossThreads) {
  const GradientCode code(6, 2);
  const auto sets = subsets(6, 4);
  // Reference: a fresh code (same seed, same B), decoded on one thread.
  const GradientCode reference(6, 2);
  std::vector<std::vector<double>> want;
  for (const auto& f : sets) want.push_back(reference.decode(f));
  for (size_t k = 0; k < sets.size(); ++k) EXPECT_EQ(reference.decode(sets[k]), want[k]) << "second, cached call";

  constexpr int kThreads = 8;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        for (size_t k = 0; k < sets.size(); ++k) {
          const size_t idx = (k * 7 + static_cast<size_t>(t) * 3 + static_cast<size_t>(round)) % sets.size();
          mismatches[t] += code.decode(sets[idx]) != want[idx];
        }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

// Runs `f`, expecting a lockstep::Error whose message contains `what`.
template <typename F>
void expect_error(F&& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning \"" << what << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(GradientCode, BadArgumentsThrowNamingTheProblem) {
  expect_error([] { GradientCode(0, 0); }, "workers N must be >= 1");
  expect_error([] { GradientCode(4, -1); }, "stragglers s must be >= 0");
  expect_error([] { GradientCode(4, 4); }, "stragglers s must be < workers N");
  expect_error([] { GradientCode(5, 1, CodeScheme::fractional); }, "s+1 to divide N");
  expect_error([] { GradientCode(6, 3, CodeScheme::fractional); }, "s+1 to divide N");

  const GradientCode code(5, 2);
  expect_error([&] { code.decode({0, 1}); }, "at least N - s = 3 finishers, got 2");
  expect_error([&] { code.decode({}); }, "at least N - s = 3 finishers, got 0");
  expect_error([&] { code.decode({0, 1, 1}); }, "duplicate finisher 1");
  expect_error([&] { code.decode({0, 1, 2, 0}); }, "duplicate finisher 0");  // even past the first N - s
  expect_error([&] { code.decode({0, 1, 5}); }, "finisher 5 out of range");
  expect_error([&] { code.decode({-1, 1, 2}); }, "finisher -1 out of range");
  expect_error([&] { code.parts(5); }, "worker 5 out of range");
  expect_error([&] { code.coefficients(-1); }, "worker -1 out of range");
}

}  // namespace
}  // namespace lockstep::engine
