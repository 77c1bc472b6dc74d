// Who may talk to the parameter server when, in `--sync async`. Free-running (the default):
// every worker reads and pushes as soon as it is ready. Round-robin (--async-round-robin): one
// fixed order of reads and pushes per epoch, so a run is reproducible and its trajectory can be
// checked against a scalar model of the same order (tests/engine/async_test.cpp):
//   read 0, read 1, ..., read N-1, then for each step j: push 0, read 0, push 1, read 1, ...
//   (no read after a worker's last push of the epoch).
// In steady state every update has staleness N-1; in the first round worker r's has r.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace lockstep::engine {

struct AsyncEvent {
  enum class Op { read, push } op;
  int rank;
  bool operator==(const AsyncEvent&) const = default;
};

// The round-robin order of one epoch of `steps` pushes per worker, `world` workers.
std::vector<AsyncEvent> round_robin_events(int world, int64_t steps);

class Interleaving {
 public:
  // round_robin = false: every wait returns at once.
  Interleaving(bool round_robin, int world, int64_t steps_per_epoch);
  // Blocks until it is `rank`'s turn to do `op` (round-robin); call done() after the operation.
  // Throws lockstep::Error when abort() was called meanwhile (a failed worker).
  void wait(AsyncEvent::Op op, int rank);
  void done();
  // Starts the order again for a new epoch; called by one thread while no worker waits.
  void reset();
  void abort();

 private:
  bool round_robin_;
  std::vector<AsyncEvent> events_;
  std::mutex m_;
  std::condition_variable cv_;
  size_t next_ = 0;
  bool aborted_ = false;
};

}  // namespace lockstep::engine
