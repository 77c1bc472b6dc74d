// The in-process parameter server: see parameter_server.h.
#include "engine/async/parameter_server.h"

#include <algorithm>
#include <cstring>

#include "kernels/copy.h"
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

struct ParameterServer::Shard : ShardState {
  std::mutex m;
  OwnedTensor ema;   // on the shard's device; empty when no moving average is kept
  OwnedTensor grad;  // a GPU shard's landing place for pushed gradients
};

ParameterServer::ParameterServer(std::vector<float> init,
                                 const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments,
                                 const ParameterServerOptions& o, std::function<float(int64_t)> lr,
                                 const std::vector<Device>& devices)
    : opt_(o), lr_(std::move(lr)), n_(static_cast<int64_t>(init.size())), links_(devices) {
  LS_CHECK(o.shards >= 1, "parameter server: shards must be >= 1");
  LS_CHECK(n_ > 0, "parameter server: no parameters");
  shards_ = links_.make_shards<Shard>(std::min<int64_t>(o.shards, n_), init, o.momentum != 0.f, decay_segments,
                                      [&](Shard& s, Context& ctx, Device d) {
                                        s.ema = OwnedTensor(d, {o.ema > 0 ? s.size() : 0}, DType::f32);
                                        if (o.ema > 0) copy(ctx, s.params, s.ema);
                                        s.grad = OwnedTensor(d, {d.is_cuda() ? s.size() : 0}, DType::f32);
                                      });
}

ParameterServer::~ParameterServer() = default;

int64_t ParameterServer::read(Context& ctx, Tensor& dst) {
  LS_CHECK(dst.numel() == n_ && dst.dtype() == DType::f32,
           "parameter server: read into " << dst.str() << ", expected " << n_ << " f32 values");
  int64_t v;
  {
    std::lock_guard<std::mutex> lock(meta_);
    v = started_;
  }
  links_.begin(ctx);
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    std::lock_guard<std::mutex> lock(s.m);
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    Tensor out = dst.slice(s.begin, s.size());
    links_.copy(static_cast<int>(j), ctx, s.params, out);
    links_.end(static_cast<int>(j), ctx);
  }
  return v;
}

int64_t ParameterServer::push(Context& ctx, const Tensor& grad, int64_t read_version) {
  LS_CHECK(grad.numel() == n_ && grad.dtype() == DType::f32,
           "parameter server: pushed " << grad.str() << ", expected " << n_ << " f32 values");
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
  links_.begin(ctx);
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    std::lock_guard<std::mutex> lock(s.m);
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    Context& sc = links_.context_of(static_cast<int>(j));
    const Tensor in = grad.slice(s.begin, s.size());
    // A GPU shard updates from its own copy of the slice; a host shard reads host memory as it is.
    Tensor g = in;
    if (sc.is_cuda()) {
      links_.copy(static_cast<int>(j), ctx, in, s.grad);
      g = s.grad.view();
    } else {
      LS_CHECK(in.device().is_cpu(), "parameter server: shards in host memory take host gradients, not "
                                         << in.device().str() << " (place the shards on the workers' GPUs)");
    }
    sgd_update(sc, a, s.params, g, s.momentum, s.decay);
    if (alpha > 0) ema_update(sc, s.ema, s.params, alpha);
    links_.end(static_cast<int>(j), ctx);
  }
  std::lock_guard<std::mutex> lock(meta_);
  ++completed_;
  stats_.add(staleness);
  return staleness;
}

int64_t ParameterServer::read(float* dst) {
  Tensor t = host_view(dst, n_);
  return read(host_ctx_, t);
}

int64_t ParameterServer::push(const float* grad, int64_t read_version) {
  return push(host_ctx_, host_view(grad, n_), read_version);
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
  Tensor out_all = host_view(dst, n_);
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    std::lock_guard<std::mutex> lock(s.m);
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    Tensor out = out_all.slice(s.begin, s.size());
    links_.copy(static_cast<int>(j), host_ctx_, has_ema() ? s.ema : s.params, out);
  }
}

std::vector<float> ParameterServer::gather(OwnedTensor Shard::*part) const {
  std::vector<float> out;
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    const Tensor& src = (s.*part).view();
    if (src.numel() == 0) return {};
    std::lock_guard<std::mutex> lock(s.m);
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    out.resize(static_cast<size_t>(n_));
    Tensor dst = host_view(out.data() + s.begin, s.size());
    copy(links_.context_of(static_cast<int>(j)), src, dst);
  }
  return out;
}

std::vector<float> ParameterServer::params() const { return gather(&Shard::params); }
std::vector<float> ParameterServer::momentum() const { return gather(&Shard::momentum); }
std::vector<float> ParameterServer::ema() const { return gather(&Shard::ema); }

void ParameterServer::restore(std::vector<float> params, std::vector<float> momentum, std::vector<float> ema,
                              int64_t updates) {
  LS_CHECK(static_cast<int64_t>(params.size()) == n_,
           "parameter server: restoring " << params.size() << " parameters into " << n_);
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    std::lock_guard<std::mutex> lock(s.m);
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    Context& sc = links_.context_of(static_cast<int>(j));
    copy(sc, host_view(params.data() + s.begin, s.size()), s.params);
    if (s.momentum.numel() > 0 && momentum.size() == params.size())
      copy(sc, host_view(momentum.data() + s.begin, s.size()), s.momentum);
    if (s.ema.numel() > 0)
      copy(sc, host_view((ema.size() == params.size() ? ema : params).data() + s.begin, s.size()), s.ema);
  }
  std::lock_guard<std::mutex> lock(meta_);
  started_ = completed_ = updates;
}

}  // namespace lockstep::engine
