// Straggler injection (`--straggler SPEC`), for experiments and tests of the straggler-tolerant
// modes: chosen workers are made slow where a real slow worker is slow, before their gradient
// is ready (the trainer sleeps before the micro-batch's forward pass). Deterministic in (seed,
// step, rank), so two runs with the same spec delay the same workers at the same steps.
//   rank=R,delay=D          worker R is late by D every step
//   prob=P,delay=D          every worker, independently, is late by D with probability P
//   slowest=K,factor=F      K workers per step, drawn at random, take F times their compute time
// D is "200ms", "1.5s" or "exp:50ms" (exponentially distributed with that mean). Workers' total
// injected delays are counted and reported.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::engine {

struct StragglerSpec {
  enum class Kind { none, rank, prob, slowest } kind = Kind::none;
  int rank = -1;
  double prob = 0;
  int slowest = 0;
  double factor = 1;
  double delay_s = 0;        // the delay, or the exponential's mean
  bool exponential = false;

  // Throws ConfigError (engine/config.h) naming --straggler and the problem.
  static StragglerSpec parse(std::string_view text);
  std::string str() const;   // the spec as parse() reads it ("" for none)
  bool active() const { return kind != Kind::none; }
};

// The compute time factor= stragglers multiply: a worker's fastest micro-batch so far. What the
// trainer measures around a micro-batch also holds its waits for other workers (all-reduce inside
// backward), and multiplying those would feed a slow step's delay into the next one.
inline double fastest(double so_far, double measured) {
  return so_far > 0 && so_far < measured ? so_far : measured;
}

class StragglerInjector {
 public:
  StragglerInjector(const StragglerSpec& spec, int world, uint64_t seed);
  // Seconds worker `rank` is late at its micro-step `step` (counted from the run's start), given
  // its last micro-batch's compute time (for factor). Pure: the same arguments, the same answer.
  double delay(int rank, int64_t step, double compute_s) const;
  // Sleeps for delay(...) and counts it; returns the seconds slept.
  double inject(int rank, int64_t step, double compute_s);
  std::vector<double> totals() const;  // injected seconds per worker
  const StragglerSpec& spec() const { return spec_; }

 private:
  StragglerSpec spec_;
  int world_;
  uint64_t seed_;
  mutable std::mutex m_;
  std::vector<double> totals_;
};

}  // namespace lockstep::engine
