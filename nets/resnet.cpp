#include "nets/resnet.h"

#include <cmath>
#include <sstream>

#include "kernels/copy.h"
#include "kernels/random.h"

namespace lockstep::nets {

namespace {

// Blocks per stage of the ImageNet ResNets and whether they use bottlenecks.
struct ImagenetLayout {
  std::vector<int> blocks;
  bool bottleneck;
};

ImagenetLayout imagenet_layout(int depth) {
  switch (depth) {
    case 18: return {{2, 2, 2, 2}, false};
    case 34: return {{3, 4, 6, 3}, false};
    case 50: return {{3, 4, 6, 3}, true};
    case 101: return {{3, 4, 23, 3}, true};
    case 152: return {{3, 8, 36, 3}, true};
  }
  throw Error("no ImageNet ResNet of depth " + std::to_string(depth));
}

std::string mib(size_t bytes) {
  std::ostringstream os;
  os.precision(1);
  os << std::fixed << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return os.str();
}

}  // namespace

Model::Model(const ModelOptions& o) : opt_(o), arch_(find_arch(o.arch)) {
  LS_CHECK(arch_ != nullptr, "unknown arch '" << o.arch << "' (known: " << known_arch_names() << ")");
  LS_CHECK(o.classes >= 1, "classes must be >= 1, got " << o.classes);
  LS_CHECK(o.batch >= 1, "batch must be >= 1, got " << o.batch);
  LS_CHECK(o.image_size >= arch_->min_image_size,
           o.arch << " needs images of at least " << arch_->min_image_size << " px, got " << o.image_size);
  LS_CHECK(!o.stem_space_to_depth || o.stem_channels == 0,
           "the stem's space-to-depth and its padded channels (" << o.stem_channels << ") exclude each other");
  LS_CHECK(!o.stem_space_to_depth || arch_->family == ArchFamily::imagenet || arch_->family == ArchFamily::tiny_nobn,
           "the stem's space-to-depth needs a stride-2 stem; " << o.arch << "'s is stride 1");
  auto add_block = [&](std::unique_ptr<ResidualBlock> b) { layers_.push_back(std::move(b)); };
  int c = 0;
  switch (arch_->family) {
    case ArchFamily::imagenet: {
      ImagenetLayout L = imagenet_layout(arch_->depth);
      layers_.push_back(std::make_unique<Stem>(3, 64, 7, 2, true));
      c = 64;
      for (int stage = 0; stage < 4; ++stage) {
        int width = 64 << stage;
        for (int b = 0; b < L.blocks[stage]; ++b) {
          std::string prefix = "layer" + std::to_string(stage + 1) + "." + std::to_string(b);
          int stride = (b == 0 && stage > 0) ? 2 : 1;
          if (L.bottleneck) {
            add_block(ResidualBlock::bottleneck(prefix, c, width, stride));
            c = width * 4;
          } else {
            add_block(ResidualBlock::basic(prefix, c, width, stride));
            c = width;
          }
        }
      }
      break;
    }
    case ArchFamily::cifar: {
      int n = (arch_->depth - 2) / 6;  // blocks per stage: depth = 6n + 2
      layers_.push_back(std::make_unique<Stem>(3, 16, 3, 1, false));
      c = 16;
      for (int stage = 0; stage < 3; ++stage) {
        int width = 16 << stage;
        for (int b = 0; b < n; ++b) {
          std::string prefix = "layer" + std::to_string(stage + 1) + "." + std::to_string(b);
          add_block(ResidualBlock::basic(prefix, c, width, (b == 0 && stage > 0) ? 2 : 1));
          c = width;
        }
      }
      break;
    }
    case ArchFamily::tiny_nobn:
      layers_.push_back(std::make_unique<Stem>(3, 16, 3, 2, false, /*batchnorm=*/false));
      c = 16;
      break;
    case ArchFamily::tiny:
      layers_.push_back(std::make_unique<Stem>(3, 8, 3, 1, false));
      add_block(ResidualBlock::basic("layer1.0", 8, 8, 1));
      add_block(ResidualBlock::basic("layer2.0", 8, 16, 2));
      c = 16;
      break;
  }
  layers_.push_back(std::make_unique<Head>(c, o.classes));
}

void Model::setup(Context& ctx) {
  LS_CHECK(!set_up_, "Model::setup called twice");
  LS_CHECK(ctx.is_cuda() || opt_.dtype == DType::f32,
           "the CPU backend trains in fp32, not " << dtype_name(opt_.dtype));
  SetupContext s{ctx, opt_.dtype, params_, acts_, temps_, opt_.search, opt_.stem_channels};
  s.stem_space_to_depth = opt_.stem_space_to_depth;
  s.bn_kernels = opt_.bn_kernels;
  Shape cur = input_shape();
  int64_t largest_grad = 0;
  for (auto& layer : layers_) {
    layer_inputs_.push_back(cur);
    if (&layer != &layers_.front()) largest_grad = std::max(largest_grad, cur.numel());
    cur = layer->setup(s, cur);
  }
  LS_CHECK(cur == output_shape(), "model output " << cur.str() << " is not " << output_shape().str());
  bn_planned_ = s.bn_planned;
  conv_graph_directions_ = s.conv_graph_directions;
  conv_directions_ = s.conv_directions;
  for (auto& layer : layers_)
    if (auto* b = dynamic_cast<ResidualBlock*>(layer.get())) residual_gammas_.push_back(b->last_bn().gamma());
  params_.allocate(ctx, opt_.dtype);
  acts_.allocate(ctx.device());
  temps_.allocate(ctx.device());
  grad_a_ = OwnedTensor(ctx.device(), {largest_grad}, opt_.dtype);
  grad_b_ = OwnedTensor(ctx.device(), {largest_grad}, opt_.dtype);
  workspace_bytes_ = ctx.workspace_bytes();
  set_up_ = true;
}

void Model::init(Context& ctx, uint64_t seed, bool zero_init_residual) {
  LS_CHECK(set_up_, "Model::init before setup");
  Context host(Device::cpu());
  OwnedTensor p(Device::cpu(), {params_.count()}, DType::f32);
  std::vector<bool> zero_gamma(params_.specs().size(), false);
  const Head* head = static_cast<const Head*>(layers_.back().get());
  const float fc_bound = 1.f / std::sqrt(static_cast<float>(params_.specs()[head->weight()].shape[1]));
  if (zero_init_residual)
    for (int g : residual_gammas_) zero_gamma[g] = true;
  for (size_t i = 0; i < params_.specs().size(); ++i) {
    const ParamSpec& s = params_.specs()[i];
    Tensor t = p.view().slice(s.offset, s.numel());
    uint64_t offset = static_cast<uint64_t>(s.rng_offset);  // disjoint Philox counters per parameter
    switch (s.kind) {
      case ParamKind::conv_weight: {
        double fan_out = static_cast<double>(s.shape[0]) * s.shape[1] * s.shape[2];  // K R S
        fill_normal(host, t, 0.f, static_cast<float>(std::sqrt(2.0 / fan_out)), seed, offset);
        break;
      }
      case ParamKind::bn_weight:
        std::fill_n(t.data<float>(), s.numel(), zero_gamma[i] ? 0.f : 1.f);
        break;
      case ParamKind::bn_bias:
        std::fill_n(t.data<float>(), s.numel(), 0.f);
        break;
      case ParamKind::fc_weight:
      case ParamKind::fc_bias:
        fill_uniform(host, t, -fc_bound, fc_bound, seed, offset);
        break;
    }
  }
  copy(ctx, p, params_.params());
  OwnedTensor b(Device::cpu(), params_.buffers().shape(), DType::f32);
  for (const BufferSpec& bs : params_.buffer_specs()) std::fill_n(b.data<float>() + bs.offset, bs.numel, bs.init);
  copy(ctx, b, params_.buffers());
  params_.refresh_compute_params(ctx);
}

const Tensor& Model::forward(Context& ctx, const Tensor& x, Mode mode) {
  LS_CHECK(set_up_, "Model::forward before setup");
  LS_CHECK(x.shape() == input_shape() && x.dtype() == opt_.dtype,
           "model input must be " << dtype_name(opt_.dtype) << input_shape().str() << ", got " << x.str());
  const Tensor* cur = &x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (timer_) timer_->begin(i, true);
    cur = &layers_[i]->forward(ctx, *cur, mode);
    if (timer_) timer_->end(i, true);
  }
  return *cur;
}

void Model::backward(Context& ctx, const Tensor& dlogits, bool accumulate) {
  LS_CHECK(set_up_, "Model::backward before setup");
  LS_CHECK(dlogits.shape() == output_shape() && dlogits.dtype() == opt_.dtype,
           "logit gradient must be " << dtype_name(opt_.dtype) << output_shape().str() << ", got " << dlogits.str());
  params_.set_accumulate(accumulate);
  Tensor dy = dlogits;
  bool use_a = true;
  for (size_t i = layers_.size(); i-- > 0;) {
    if (timer_) timer_->begin(i, false);
    if (i == 0) {
      layers_[0]->backward(ctx, dy, nullptr);
      if (timer_) timer_->end(i, false);
      break;
    }
    const Shape& in = layer_inputs_[i];
    Tensor dx = (use_a ? grad_a_ : grad_b_).view().slice(0, in.numel()).reshape(in);
    layers_[i]->backward(ctx, dy, &dx);
    if (timer_) timer_->end(i, false);
    dy = dx;
    use_a = !use_a;
  }
}

std::string Model::bn_kernels_used() const {
  std::vector<std::pair<int, BatchNormKernels>> used;
  for (BatchNormKernels k : {BatchNormKernels::cudnn, BatchNormKernels::lockstep, BatchNormKernels::scalar})
    if (int n = bn_planned_[static_cast<size_t>(k)]; n > 0) used.push_back({n, k});
  if (used.size() == 1) return bn_kernels_name(used[0].second);
  std::string out;
  for (const auto& [n, k] : used) out += (out.empty() ? "" : ", ") + std::string(bn_kernels_name(k)) + " " + std::to_string(n);
  return out;
}

std::string Model::conv_api_used() const {
  if (conv_graph_directions_ == 0) return "";
  return "graph API " + std::to_string(conv_graph_directions_) + " of " + std::to_string(conv_directions_);
}

MemoryPlan Model::memory_plan() const {
  MemoryPlan m;
  m.parameters = params_.count();
  size_t p = static_cast<size_t>(params_.count());
  m.param_bytes = p * 8 + (opt_.dtype == DType::f32 ? 0 : p * dtype_size(opt_.dtype));
  m.activation_bytes = acts_.bytes();
  m.temp_bytes = temps_.bytes() + grad_a_.bytes() + grad_b_.bytes();
  m.workspace_bytes = workspace_bytes_;
  m.batch = opt_.batch;
  return m;
}

std::string MemoryPlan::str() const {
  std::ostringstream os;
  os << "memory plan: " << parameters << " parameters (" << mib(param_bytes) << " with gradients), activations "
     << mib(activation_bytes) << " (" << mib(activation_bytes / std::max(batch, 1)) << " per sample), backward temporaries "
     << mib(temp_bytes) << ", workspace " << mib(workspace_bytes);
  return os.str();
}

std::vector<std::string> Model::state_dict_names() const {
  // torchvision registers, per module in order: its parameters, then its buffers.
  std::vector<std::string> names;
  size_t b = 0;
  const auto& bufs = params_.buffer_specs();
  for (const ParamSpec& s : params_.specs()) {
    names.push_back(s.name);
    if (s.kind == ParamKind::bn_bias) {
      std::string module = s.name.substr(0, s.name.size() - std::string(".bias").size());
      for (; b < bufs.size() && bufs[b].name.rfind(module + ".", 0) == 0; ++b) names.push_back(bufs[b].name);
      names.push_back(module + ".num_batches_tracked");
    }
  }
  return names;
}

}  // namespace lockstep::nets
