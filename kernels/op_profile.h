// OpProfile: where a pass's time goes by kind of op (conv2d_backward_filter, batchnorm_backward,
// ...), for `lockstep bench ops`. Set on a Context, every public op of kernels/ (each one goes
// through LS_DISPATCH) records its own interval: CUDA timing events around its launches on the
// compute stream, read only at collect() (no wait between ops), or the host clock on the CPU.
// An op called inside another op counts in the outer one only. Events are made up front
// (`capacity` ops per collect); ops beyond that are counted as dropped, never allocated for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/context.h"

namespace lockstep {

class Event;

struct OpTime {
  std::string op;
  int64_t calls = 0;
  double ms = 0;
};

class OpProfile {
 public:
  explicit OpProfile(Context& ctx, size_t capacity = 8192);
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  void begin(const char* op);
  void end();
  // Waits for the device, adds the recorded intervals up by op (largest total first) and starts
  // over. `dropped` (if given) gets the ops not recorded for want of capacity.
  std::vector<OpTime> collect(int64_t* dropped = nullptr);

 private:
  Context& ctx_;
  std::vector<std::unique_ptr<Event>> starts_, ends_;
  std::vector<const char*> names_;
  size_t used_ = 0;
  int depth_ = 0;
  int64_t dropped_ = 0;
};

// Times the enclosing op when ctx has a profile set (one pointer test otherwise).
class OpScope {
 public:
  OpScope(const Context& ctx, const char* op) : profile_(ctx.op_profile()) {
    if (profile_) profile_->begin(op);
  }
  ~OpScope() {
    if (profile_) profile_->end();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  OpProfile* profile_;
};

}  // namespace lockstep
