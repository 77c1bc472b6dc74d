#include "nets/blocks.h"

#include "kernels/elementwise.h"
#include "kernels/linear.h"

namespace lockstep::nets {

namespace {
Tensor resolve(const TensorStore* store, int idx) { return (*store)[idx]; }

// LayerCost helpers (see nets/layer.h). e: bytes per element in the compute dtype.
double num(const Shape& s) { return static_cast<double>(s.numel()); }

// Forward: y = conv(x, w). Backward: dw from x and dy; dx from dy and w when wanted.
void add_conv(LayerCost& c, const ConvShape& cs, double e, bool dx) {
  const double x = num(cs.x_shape()), w = num(cs.w_shape()), y = num(cs.y_shape());
  c.fwd_flops += cs.flops_forward();
  c.fwd_bytes += (x + w + y) * e;
  c.bwd_flops += cs.flops_forward() * (dx ? 2 : 1);
  c.bwd_bytes += (x + y + w) * e + (dx ? (y + w + x) * e : 0);
}

// BN (+ residual add) + ReLU?: statistics, normalize, add, ReLU ~ 5 FLOPs an element forward, ~2x backward.
void add_bn(LayerCost& c, const Shape& s, double e, bool residual) {
  const double n = num(s), r = residual ? 1 : 0;
  c.fwd_flops += n * (5 + r);
  c.fwd_bytes += n * (2 + r) * e;
  c.bwd_flops += n * 2 * (5 + r);
  c.bwd_bytes += n * (3 + r) * e;  // x, dy -> dx (+ dresidual)
}
}  // namespace

// ---- ResidualBlock ----

ResidualBlock::ResidualBlock(std::string prefix, int in_c, std::vector<StageSpec> specs, int stride)
    : prefix_(std::move(prefix)), in_c_(in_c) {
  int c = in_c;
  for (size_t i = 0; i < specs.size(); ++i) {
    const StageSpec& sp = specs[i];
    std::string n = std::to_string(i + 1);
    stages_.push_back({Conv2d(join_name(prefix_, "conv" + n), c, sp.out_c, sp.kernel, sp.stride, sp.kernel / 2),
                       BatchNorm2d(join_name(prefix_, "bn" + n), sp.out_c, /*relu=*/true)});
    c = sp.out_c;
  }
  if (stride != 1 || in_c != c) {
    ds_conv_.emplace(join_name(prefix_, "downsample.0"), in_c, c, 1, stride, 0);
    ds_bn_.emplace(join_name(prefix_, "downsample.1"), c, /*relu=*/false);
  }
}

std::unique_ptr<ResidualBlock> ResidualBlock::basic(const std::string& prefix, int in_c, int out_c, int stride) {
  return std::make_unique<ResidualBlock>(prefix, in_c, std::vector<StageSpec>{{out_c, 3, stride}, {out_c, 3, 1}}, stride);
}

std::unique_ptr<ResidualBlock> ResidualBlock::bottleneck(const std::string& prefix, int in_c, int width, int stride) {
  return std::make_unique<ResidualBlock>(
      prefix, in_c, std::vector<StageSpec>{{width, 1, 1}, {width, 3, stride}, {width * 4, 1, 1}}, stride);
}

Shape ResidualBlock::setup(SetupContext& s, const Shape& in) {
  LS_CHECK(in.rank() == 4 && in[3] == in_c_, prefix_ << ": expects (N, H, W, " << in_c_ << ") input, got " << in.str());
  acts_ = &s.acts;
  temps_ = &s.temps;
  s.temps.rewind();
  Shape cur = in;
  for (size_t i = 0; i < stages_.size(); ++i) {
    Stage& st = stages_[i];
    if (i > 0) st.grad_in = s.temps.add(cur, s.dtype);
    cur = st.conv.setup(s, cur);
    st.conv_out = s.acts.add(cur, s.dtype);
    st.bn.setup(s, cur);
  }
  // The last BN's input gradient goes over dy (Layer::backward), the shortcut BN's over t_res:
  // two output-sized temporaries fewer. No input-sized one either: the first stage's conv adds its
  // input gradient to the shortcut's, already in dx (conv2d_backward_data's accumulate).
  t_res_ = s.temps.add(cur, s.dtype);
  if (ds_conv_) {
    Shape d = ds_conv_->setup(s, in);
    LS_CHECK(d == cur, prefix_ << ": shortcut shape " << d.str() << " differs from the main path's " << cur.str());
    ds_out_ = s.acts.add(d, s.dtype);
    ds_bn_->setup(s, d);
  }
  return cur;
}

const Tensor& ResidualBlock::forward(Context& ctx, const Tensor& x, Mode mode) {
  x_ = x;
  Tensor residual = x;
  if (ds_conv_) {
    Tensor d = resolve(acts_, ds_out_);
    ds_conv_->forward(ctx, x, d);
    residual = ds_bn_->forward(ctx, d, nullptr, mode);
  }
  Tensor cur = x;
  for (size_t i = 0; i < stages_.size(); ++i) {
    Stage& st = stages_[i];
    Tensor a = resolve(acts_, st.conv_out);
    st.conv.forward(ctx, cur, a);
    bool last = i + 1 == stages_.size();
    cur = st.bn.forward(ctx, a, last ? &residual : nullptr, mode);
  }
  y_ = cur;
  return y_;
}

void ResidualBlock::backward(Context& ctx, const Tensor& dy, Tensor* dx) {
  Tensor cur = dy;  // the last BN's input gradient, in place (Layer::backward lets dy be scratch)
  Stage& lastst = stages_.back();
  // The residual's gradient: with an identity shortcut it is dx's share already, so it goes
  // straight into dx; with a projection it goes through the shortcut BN (in place) and conv, whose
  // input gradient is written to dx. Either way the first stage's conv then adds its own to dx.
  Tensor t_res = dx && !ds_conv_ ? *dx : resolve(temps_, t_res_);
  lastst.bn.backward(ctx, resolve(acts_, lastst.conv_out), dy, cur, &t_res);
  if (ds_conv_) {
    ds_bn_->backward(ctx, resolve(acts_, ds_out_), t_res, t_res, nullptr);
    ds_conv_->backward(ctx, x_, t_res, dx);
  }
  for (int i = static_cast<int>(stages_.size()) - 1; i >= 0; --i) {
    Stage& st = stages_[i];
    if (i + 1 < static_cast<int>(stages_.size())) st.bn.backward(ctx, resolve(acts_, st.conv_out), cur, cur, nullptr);
    Tensor input = i > 0 ? stages_[i - 1].bn.output() : x_;
    Tensor next;
    Tensor* next_ptr = nullptr;
    if (i > 0) {
      next = resolve(temps_, st.grad_in);
      next_ptr = &next;
    } else if (dx) {
      next = *dx;
      next_ptr = &next;
    }
    st.conv.backward(ctx, input, cur, next_ptr, /*accumulate=*/i == 0);
    cur = next;
  }
}

LayerCost ResidualBlock::cost() const {
  LayerCost c;
  c.kind = stages_.size() == 3 ? "bottleneck" : "basic block";
  if (ds_conv_) c.kind += " + proj";
  const double e = static_cast<double>(dtype_size(stages_.front().conv.plan().dtype));
  for (const Stage& st : stages_) {
    add_conv(c, st.conv.plan().shape, e, true);
    add_bn(c, st.conv.plan().shape.y_shape(), e, &st == &stages_.back());
  }
  if (ds_conv_) {
    add_conv(c, ds_conv_->plan().shape, e, true);
    add_bn(c, ds_conv_->plan().shape.y_shape(), e, false);
  }
  const double in = num(stages_.front().conv.plan().shape.x_shape());
  c.bwd_flops += in;  // dx = main path's + shortcut's: the first conv reads dx once more to add
  c.bwd_bytes += in * e;
  c.out = stages_.back().conv.plan().shape.y_shape();
  return c;
}

// ---- Stem ----

Stem::Stem(int in_c, int out_c, int kernel, int stride, bool pool, bool batchnorm)
    : conv_("conv1", in_c, out_c, kernel, stride, kernel / 2), pool_(pool) {
  if (batchnorm) bn_.emplace("bn1", out_c, /*relu=*/true);
}

Shape Stem::setup(SetupContext& s, const Shape& in) {
  acts_ = &s.acts;
  temps_ = &s.temps;
  s.temps.rewind();
  if (s.stem_channels > 0) conv_.pad_input_to(s.stem_channels);
  if (s.stem_space_to_depth) conv_.space_to_depth();
  Shape a = conv_.setup(s, in);
  conv_out_ = s.acts.add(a, s.dtype);
  if (bn_) bn_->setup(s, a);
  else relu_out_ = s.acts.add(a, s.dtype);
  t_grad_ = s.temps.add(a, s.dtype);
  if (!pool_) return a;
  Shape p{a[0], pool_shape_.out(static_cast<int>(a[1])), pool_shape_.out(static_cast<int>(a[2])), a[3]};
  LS_CHECK(p[1] > 0 && p[2] > 0, "stem: input " << in.str() << " too small to pool");
  pool_out_ = s.acts.add(p, s.dtype);
  pool_where_ = s.acts.add(p, DType::u8);  // each output's winner: the backward reads neither x nor y
  return p;
}

const Tensor& Stem::forward(Context& ctx, const Tensor& x, Mode mode) {
  x_ = x;
  Tensor a = resolve(acts_, conv_out_);
  conv_.forward(ctx, x, a);
  if (bn_) {
    y_ = bn_->forward(ctx, a, nullptr, mode);
  } else {
    y_ = resolve(acts_, relu_out_);
    relu_forward(ctx, a, y_);
  }
  if (pool_) {
    Tensor p = resolve(acts_, pool_out_), where = resolve(acts_, pool_where_);
    maxpool_forward_where(ctx, pool_shape_, y_, p, where);
    y_ = p;
  }
  return y_;
}

LayerCost Stem::cost() const {
  LayerCost c;
  // The useful work: FLOPs and bytes of the real convolution, not of its rearranged form's zeros.
  const ConvShape cs = conv_.shape();
  const int k = cs.r;
  c.kind = "stem conv" + std::to_string(k) + "x" + std::to_string(k) + (pool_ ? " + pool" : "");
  const double e = static_cast<double>(dtype_size(conv_.plan().dtype));
  add_conv(c, cs, e, false);
  const Shape a = cs.y_shape();
  if (bn_) {
    add_bn(c, a, e, false);
  } else {  // ReLU
    c.fwd_flops += num(a);
    c.fwd_bytes += 2 * num(a) * e;
    c.bwd_flops += num(a);
    c.bwd_bytes += 3 * num(a) * e;
  }
  c.out = a;
  if (pool_) {
    c.out = Shape{a[0], pool_shape_.out(static_cast<int>(a[1])), pool_shape_.out(static_cast<int>(a[2])), a[3]};
    const double win = pool_shape_.window * pool_shape_.window;
    c.fwd_flops += num(c.out) * win;  // comparisons
    c.fwd_bytes += (num(a) + num(c.out)) * e + num(c.out);  // x -> y and a byte of `where` each
    c.bwd_flops += num(c.out) * win;
    c.bwd_bytes += num(a) * e + num(c.out) * (e + 1);  // where, dy -> dx
  }
  return c;
}

void Stem::backward(Context& ctx, const Tensor& dy, Tensor* dx) {
  LS_CHECK(dx == nullptr, "stem: the input image has no gradient");
  Tensor g = resolve(temps_, t_grad_);
  Tensor act = bn_ ? bn_->output() : resolve(acts_, relu_out_);
  if (pool_) maxpool_backward_where(ctx, pool_shape_, resolve(acts_, pool_where_), dy, g);
  const Tensor& up = pool_ ? g : dy;
  if (bn_) bn_->backward(ctx, resolve(acts_, conv_out_), up, g, nullptr);
  else relu_backward(ctx, act, up, g);
  conv_.backward(ctx, x_, g, nullptr);
}

// ---- Head ----

Shape Head::setup(SetupContext& s, const Shape& in) {
  LS_CHECK(in.rank() == 4 && in[3] == in_c_, "fc: expects (N, H, W, " << in_c_ << ") input, got " << in.str());
  params_ = &s.params;
  acts_ = &s.acts;
  temps_ = &s.temps;
  s.temps.rewind();
  weight_ = s.params.declare("fc.weight", {classes_, in_c_}, {classes_, in_c_}, ParamKind::fc_weight);
  bias_ = s.params.declare("fc.bias", {classes_}, {classes_}, ParamKind::fc_bias);
  pooled_ = s.acts.add({in[0], in_c_}, s.dtype);
  logits_ = s.acts.add({in[0], classes_}, s.dtype);
  t_pooled_ = s.temps.add({in[0], in_c_}, s.dtype);
  t_db_ = s.temps.add({classes_}, DType::f32);
  in_ = in;
  return {in[0], classes_};
}

const Tensor& Head::forward(Context& ctx, const Tensor& x, Mode) {
  Tensor pooled = resolve(acts_, pooled_);
  global_avgpool_forward(ctx, x, pooled);
  y_ = resolve(acts_, logits_);
  Tensor b = params_->param(bias_);
  linear_forward(ctx, pooled, params_->compute_param(weight_), &b, y_);
  return y_;
}

LayerCost Head::cost() const {
  LayerCost c;
  c.kind = "avgpool + fc";
  c.out = Shape{in_[0], classes_};
  const double e = static_cast<double>(dtype_size(params_->compute_dtype()));
  const double x = num(in_), n = static_cast<double>(in_[0]), pooled = n * in_c_, w = double(classes_) * in_c_,
               y = n * classes_;
  c.fwd_flops = x + 2 * n * in_c_ * classes_;              // pool sums, then the GEMM
  c.bwd_flops = x + 2 * (2 * n * in_c_ * classes_) + y;    // dx and dw GEMMs, db, the pool's spread
  c.fwd_bytes = (x + pooled + w + classes_ + y) * e;
  c.bwd_bytes = (y + w + pooled + pooled + w + classes_ + pooled + x) * e;
  return c;
}

void Head::backward(Context& ctx, const Tensor& dy, Tensor* dx) {
  LS_CHECK(dx != nullptr, "fc: backward needs the input gradient buffer");
  Tensor dpooled = resolve(temps_, t_pooled_);
  Tensor dw = params_->begin_grad(weight_, params_->compute_dtype());
  Tensor db = params_->accumulating() ? resolve(temps_, t_db_) : params_->grad(bias_);
  linear_backward(ctx, resolve(acts_, pooled_), params_->compute_param(weight_), dy, &dpooled, dw, &db);
  params_->end_grad(ctx, weight_);
  params_->fold_grad(ctx, bias_, db);
  global_avgpool_backward(ctx, dpooled, *dx);
}

}  // namespace lockstep::nets
