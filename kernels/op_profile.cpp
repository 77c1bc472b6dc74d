// Per-op timing: see op_profile.h.
#include "kernels/op_profile.h"

#include <algorithm>
#include <map>

#include "kernels/event.h"

namespace lockstep {

OpProfile::OpProfile(Context& ctx, size_t capacity) : ctx_(ctx) {
  for (size_t i = 0; i < capacity; ++i) {
    starts_.push_back(std::make_unique<Event>(ctx, true));
    ends_.push_back(std::make_unique<Event>(ctx, true));
  }
  names_.resize(capacity);
}

OpProfile::~OpProfile() = default;

void OpProfile::begin(const char* op) {
  if (depth_++ > 0) return;
  if (used_ >= starts_.size()) {
    ++dropped_;
    return;
  }
  names_[used_] = op;
  starts_[used_]->record(ctx_, Stream::compute);
}

void OpProfile::end() {
  if (--depth_ > 0 || used_ >= starts_.size()) return;
  ends_[used_]->record(ctx_, Stream::compute);
  ++used_;
}

std::vector<OpTime> OpProfile::collect(int64_t* dropped) {
  ctx_.synchronize();
  std::map<std::string, OpTime> by_op;
  for (size_t i = 0; i < used_; ++i) {
    OpTime& t = by_op[names_[i]];
    t.op = names_[i];
    ++t.calls;
    t.ms += ends_[i]->elapsed_ms(*starts_[i]);
  }
  std::vector<OpTime> out;
  for (auto& [name, t] : by_op) out.push_back(t);
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  if (dropped) *dropped = dropped_;
  used_ = 0;
  dropped_ = 0;
  return out;
}

}  // namespace lockstep
