// The in-process parameter server: see parameter_server.h.
#include "engine/async/parameter_server.h"

#include <algorithm>
#include <cstring>

#include "kernels/error.h"
#include "kernels/optimizer.h"

namespace lockstep::engine {

void StalenessStats::add(int64_t s) {
  if (static_cast<int64_t>(histogram.size()) <= s) histogram.resize(static_cast<size_t>(s) + 1, 0);
  ++histogram[static_cast<size_t>(s)];
  ++updates;
  sum += s;
  max = std::max(max, s);
}

StalenessStats StalenessStats::since(const StalenessStats& e) const {
  StalenessStats d;
  d.histogram = histogram;
  for (size_t i = 0; i < e.histogram.size() && i < d.histogram.size(); ++i) d.histogram[i] -= e.histogram[i];
  while (!d.histogram.empty() && d.histogram.back() == 0) d.histogram.pop_back();
  d.updates = updates - e.updates;
  d.sum = sum - e.sum;
  d.max = d.histogram.empty() ? 0 : static_cast<int64_t>(d.histogram.size()) - 1;
  return d;
}

struct ParameterServer::Shard {
  int64_t begin = 0, end = 0;
  std::mutex m;
  Context ctx{Device::cpu(), 0};  // the CPU ops' context for this shard's updates
  OwnedTensor decay;              // u32 (S, 2): weight-decay segments, relative to the shard
};

ParameterServer::ParameterServer(std::vector<float> init,
                                 const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments,
                                 const ParameterServerOptions& o, std::function<float(int64_t)> lr)
    : opt_(o), lr_(std::move(lr)), params_(std::move(init)) {
  LS_CHECK(o.shards >= 1, "parameter server: shards must be >= 1");
  LS_CHECK(!params_.empty(), "parameter server: no parameters");
  if (o.momentum != 0.f) momentum_.assign(params_.size(), 0.f);
  if (o.ema > 0) ema_ = params_;
  const auto n = static_cast<int64_t>(params_.size());
  const int64_t shards = std::min<int64_t>(o.shards, n);
  for (int64_t j = 0; j < shards; ++j) {
    auto s = std::make_unique<Shard>();
    s->begin = n * j / shards;
    s->end = n * (j + 1) / shards;
    std::vector<uint32_t> segs;
    for (const auto& [b, e] : decay_segments) {
      const int64_t lo = std::max<int64_t>(b, s->begin), hi = std::min<int64_t>(e, s->end);
      if (lo >= hi) continue;
      segs.push_back(static_cast<uint32_t>(lo - s->begin));
      segs.push_back(static_cast<uint32_t>(hi - s->begin));
    }
    s->decay = OwnedTensor(Device::cpu(), {static_cast<int64_t>(segs.size() / 2), 2}, DType::u32);
    if (!segs.empty()) std::memcpy(s->decay.view().data<uint32_t>(), segs.data(), segs.size() * sizeof(uint32_t));
    shards_.push_back(std::move(s));
  }
}

ParameterServer::~ParameterServer() = default;

int64_t ParameterServer::read(float* dst) {
  int64_t v;
  {
    std::lock_guard<std::mutex> lock(meta_);
    v = started_;
  }
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s->m);
    std::memcpy(dst + s->begin, params_.data() + s->begin, static_cast<size_t>(s->end - s->begin) * sizeof(float));
  }
  return v;
}

int64_t ParameterServer::push(const float* grad, int64_t read_version) {
  int64_t u;
  {
    std::lock_guard<std::mutex> lock(meta_);
    u = started_++;
  }
  const int64_t staleness = u - read_version;
  LS_CHECK(staleness >= 0, "parameter server: a gradient of version " << read_version << " pushed as update " << u);
  SgdArgs a;
  a.lr = lr_(u);
  if (opt_.staleness_lr) a.lr /= static_cast<float>(staleness + 1);
  a.momentum = opt_.momentum;
  a.weight_decay = opt_.weight_decay;
  a.nesterov = opt_.nesterov;
  a.grad_scale = 1.f;
  const float alpha = static_cast<float>(opt_.ema);
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s->m);
    const int64_t n = s->end - s->begin;
    Tensor p(params_.data() + s->begin, Shape{n}, DType::f32, Device::cpu());
    Tensor g(const_cast<float*>(grad) + s->begin, Shape{n}, DType::f32, Device::cpu());
    Tensor m = momentum_.empty() ? Tensor(nullptr, Shape{0}, DType::f32, Device::cpu())
                                 : Tensor(momentum_.data() + s->begin, Shape{n}, DType::f32, Device::cpu());
    sgd_update(s->ctx, a, p, g, m, s->decay);
    if (alpha > 0)
      for (int64_t i = s->begin; i < s->end; ++i) ema_[i] = alpha * ema_[i] + (1.f - alpha) * params_[i];
  }
  std::lock_guard<std::mutex> lock(meta_);
  ++completed_;
  stats_.add(staleness);
  return staleness;
}

int64_t ParameterServer::updates() const {
  std::lock_guard<std::mutex> lock(meta_);
  return completed_;
}

StalenessStats ParameterServer::staleness() const {
  std::lock_guard<std::mutex> lock(meta_);
  return stats_;
}

void ParameterServer::read_ema(float* dst) {
  const std::vector<float>& src = ema_.empty() ? params_ : ema_;
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s->m);
    std::memcpy(dst + s->begin, src.data() + s->begin, static_cast<size_t>(s->end - s->begin) * sizeof(float));
  }
}

void ParameterServer::restore(std::vector<float> params, std::vector<float> momentum, std::vector<float> ema,
                              int64_t updates) {
  LS_CHECK(params.size() == params_.size(), "parameter server: restoring " << params.size() << " parameters into "
                                                                           << params_.size());
  params_ = std::move(params);
  if (!momentum_.empty() && momentum.size() == params_.size()) momentum_ = std::move(momentum);
  if (!ema_.empty()) ema_ = ema.size() == params_.size() ? std::move(ema) : params_;
  std::lock_guard<std::mutex> lock(meta_);
  started_ = completed_ = updates;
}

}  // namespace lockstep::engine
