#include "engine/optimizer.h"

#include <algorithm>

#include "kernels/copy.h"
#include "kernels/lars.h"
#include "kernels/optimizer.h"
#include "kernels/scalars.h"

namespace lockstep::engine {

namespace {
OwnedTensor upload_pairs(Context& ctx, const std::vector<std::pair<uint32_t, uint32_t>>& pairs) {
  const int64_t n = static_cast<int64_t>(pairs.size());
  OwnedTensor host(Device::cpu(), {n, 2}, DType::u32);
  for (int64_t i = 0; i < n; ++i) {
    host.data<uint32_t>()[2 * i] = pairs[i].first;
    host.data<uint32_t>()[2 * i + 1] = pairs[i].second;
  }
  OwnedTensor dev(ctx.device(), {n, 2}, DType::u32);
  copy(ctx, host, dev);
  return dev;
}
}  // namespace

Optimizer::Optimizer(Context& ctx, const nets::ParamTable& params, const OptimizerConfig& c) : config_(c) {
  LS_CHECK(params.count() < (int64_t(1) << 32), "optimizer: more than 2^32 parameters");
  const auto& specs = params.specs();
  auto decays = [&](const nets::ParamSpec& s) { return s.is_weight() || c.wd_on_bn; };
  // Decay ranges in flat-buffer order, adjacent ones merged.
  std::vector<const nets::ParamSpec*> by_offset;
  for (const auto& s : specs) by_offset.push_back(&s);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (const nets::ParamSpec* s : by_offset) {
    if (!decays(*s)) continue;
    uint32_t b = static_cast<uint32_t>(s->offset), e = static_cast<uint32_t>(s->offset + s->numel());
    if (!decay_ranges_.empty() && decay_ranges_.back().second == b) decay_ranges_.back().second = e;
    else decay_ranges_.push_back({b, e});
  }
  scalars_ = OwnedTensor(ctx.device(), {2}, DType::f32);
  write_scalars(ctx, scalars_, {0.f, 1.f});
  if (c.momentum != 0.f) {
    momentum_ = OwnedTensor(ctx.device(), {params.count()}, DType::f32);
    zero(ctx, momentum_);
  } else {
    momentum_ = OwnedTensor(ctx.device(), {0}, DType::f32);
  }
  if (c.kind == OptimizerConfig::Kind::sgd) {
    decay_segments_ = upload_pairs(ctx, decay_ranges_);
    return;
  }
  // LARS: one segment per parameter tensor; weight decay is folded in by lars_scale_gradients.
  std::vector<std::pair<uint32_t, uint32_t>> segs;
  OwnedTensor flags(Device::cpu(), {static_cast<int64_t>(by_offset.size())}, DType::u8);
  for (size_t i = 0; i < by_offset.size(); ++i) {
    const nets::ParamSpec* s = by_offset[i];
    segs.push_back({static_cast<uint32_t>(s->offset), static_cast<uint32_t>(s->offset + s->numel())});
    flags.data<uint8_t>()[i] = static_cast<uint8_t>((s->is_weight() ? 1 : 0) | (decays(*s) ? 2 : 0));
  }
  lars_segments_ = upload_pairs(ctx, segs);
  lars_adapt_ = OwnedTensor(ctx.device(), flags.shape(), DType::u8);
  copy(ctx, flags, lars_adapt_);
  lars_norms_ = OwnedTensor(ctx.device(), {static_cast<int64_t>(segs.size()), 2}, DType::f32);
  decay_segments_ = OwnedTensor(ctx.device(), {0, 2}, DType::u32);
}

void Optimizer::step(Context& ctx, nets::ParamTable& params, float lr, float grad_scale) {
  const bool lars = config_.kind == OptimizerConfig::Kind::lars;
  set_step(ctx, lr, lars ? 1.f : grad_scale);
  apply(ctx, params, lars ? grad_scale : 1.f);
}

void Optimizer::set_step(Context& ctx, float lr, float grad_scale) { write_scalars(ctx, scalars_, {lr, grad_scale}); }

void Optimizer::apply(Context& ctx, nets::ParamTable& params, float lars_grad_scale) {
  SgdArgs a;
  a.momentum = config_.momentum;
  a.nesterov = config_.nesterov;
  a.device_scalars = &scalars_.view();
  if (config_.kind == OptimizerConfig::Kind::lars) {
    lars_scale_gradients(ctx, params.params(), params.grads(), lars_segments_, lars_adapt_, config_.weight_decay,
                         config_.lars_eta, lars_grad_scale, lars_norms_);
    a.weight_decay = 0.f;
  } else {
    a.weight_decay = config_.weight_decay;
  }
  sgd_update(ctx, a, params.params(), params.grads(), momentum_, decay_segments_);
}

}  // namespace lockstep::engine
