// GradientCode: the math of gradient coding (Tandon, Lei, Dimakis, Karampatziakis, "Gradient
// Coding: Avoiding Stragglers in Distributed Learning", ICML 2017) behind `--sync coded
// --stragglers s`. A step's data is cut into N parts with gradients g_0..g_{N-1}; worker i computes
// s+1 of them and sends one coded message m_i = sum_k coefficients(i)[k] * g_{parts(i)[k]}. From
// the messages of ANY N - s workers, decode() gives weights a with sum a_i m_i = sum_j g_j exactly
// (up to rounding), so the step never waits for the s slowest workers. The price is compute: every
// worker does s+1 parts instead of 1. Pure math: nothing here knows about tensors or the trainer.
//
// Schemes (B is the N x N encoding matrix, row i = worker i's coefficients over all parts):
//  - cyclic (any N, s): worker i holds parts i, i+1, ..., i+s (mod N). Every row of B lies in the
//    null space of a random s x N matrix H with H 1 = 0, with B[i][i] = 1. Null(H) has dimension
//    N - s and contains the all-ones vector; any N - s rows of B are (generically) independent, so
//    they span it and B_F^T a = 1 has an exact solution, found by least squares in double. The
//    constructor checks the finisher sets up front (every one while there are at most 1024
//    straggler sets, a fixed sample beyond) for 16 draws of H (seeds seed..seed+15) and keeps the
//    one with the smallest amplification() that decodes them all: random H can be badly
//    conditioned (the paper's construction is exact only in exact arithmetic), and the spread
//    between draws is orders of magnitude. This takes under 10 ms up to N = 16, about 1 s at 64.
//  - fractional ((s+1) divides N): N/(s+1) groups of s+1 workers; every worker of group k computes
//    the same s+1 parts k(s+1) .. k(s+1)+s and sends their plain sum. Decoding takes one finisher
//    per group with weight 1: coefficients are 0 or 1, so it rounds no worse than uncoded summing.
// With s = 0 both are the uncoded scheme: B = I, all weights 1.
//
// Everything is deterministic in (n, s, scheme, seed): every process of a run builds the same B.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace lockstep::engine {

enum class CodeScheme { cyclic, fractional };  // fractional needs (s+1) | N

class GradientCode {
 public:
  // Throws lockstep::Error for n < 1, s < 0, s >= n, fractional with (s+1) not dividing n, or
  // (cyclic) when none of the draws of H decodes every checked finisher set.
  GradientCode(int n, int s, CodeScheme scheme = CodeScheme::cyclic, uint64_t seed = 0);
  ~GradientCode();
  GradientCode(GradientCode&&) noexcept;
  GradientCode& operator=(GradientCode&&) noexcept;

  int workers() const { return n_; }
  int stragglers() const { return s_; }
  CodeScheme scheme() const { return scheme_; }
  // Compute cost relative to uncoded training: every worker computes s+1 parts instead of 1.
  int parts_per_worker() const { return s_ + 1; }

  // The s+1 distinct parts worker i computes (cyclic: i, i+1, ..., i+s mod N, so parts(i)[0] = i
  // with coefficient 1; fractional: its group's parts in increasing order) and the coefficient
  // of each in its message: m_i = sum_k coefficients(i)[k] * g_{parts(i)[k]}.
  const std::vector<int>& parts(int worker) const;
  const std::vector<double>& coefficients(int worker) const;

  // Decoding weights, one per finisher in the order given: sum_i a_i * m_{finishers[i]} is the
  // full gradient sum_j g_j. `finishers` are >= N - s distinct workers; only the FIRST N - s are
  // used (the trainer passes workers in arrival order) and any later ones get weight 0. Each set
  // is solved once and cached (at most C(N, s) entries); safe to call from several threads at
  // once. Throws lockstep::Error for too few, duplicate or out-of-range finishers, or if the
  // solve misses (never for a set the constructor checked).
  std::vector<double> decode(const std::vector<int>& finishers) const;

  // The encoding matrix B (N x N): B[i][parts(i)[k]] = coefficients(i)[k], zero elsewhere.
  std::vector<std::vector<double>> matrix() const;

  // How much rounding in the messages can grow in the decoded sum, relative to uncoded: the
  // largest sum_i |a_i| * sum_k |B[i][k]| / N over the checked finisher sets. 1 for s = 0 and for
  // fractional codes; for cyclic ones it grows with N and s (float messages lose about
  // log10(amplification) digits), which is worth a line in the run's log.
  double amplification() const { return amplification_; }

 private:
  struct Cache;
  // Weights for the sorted set `used` (N - s workers), in that order; throws if no exact solve.
  std::vector<double> solve(const std::vector<int>& used) const;
  // Fills parts_/coefficients_ from the H drawn with `seed`; returns its amplification over the
  // checked sets, or infinity when some set does not decode (an unlucky H) or the amplification
  // reaches `give_up_at` (it cannot beat an earlier draw).
  double draw_cyclic(uint64_t seed, double give_up_at);

  int n_ = 0, s_ = 0;
  CodeScheme scheme_ = CodeScheme::cyclic;
  std::vector<std::vector<int>> parts_;            // (N, s+1)
  std::vector<std::vector<double>> coefficients_;  // (N, s+1)
  double amplification_ = 1.0;
  std::unique_ptr<Cache> cache_;                   // sorted finisher set -> weights
};

}  // namespace lockstep::engine
