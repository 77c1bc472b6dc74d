#include "nets/conv2d.h"

#include "kernels/channels.h"

namespace lockstep::nets {

Shape Conv2d::setup(SetupContext& s, const Shape& in) {
  LS_CHECK(in.rank() == 4 && in[3] == in_c_, name_ << ": expects (N, H, W, " << in_c_ << ") input, got " << in.str());
  params_ = &s.params;
  weight_ = s.params.declare(join_name(name_, "weight"), {out_c_, kernel_, kernel_, in_c_},
                             {out_c_, in_c_, kernel_, kernel_}, ParamKind::conv_weight);
  ConvShape cs;
  cs.n = static_cast<int>(in[0]);
  cs.h = static_cast<int>(in[1]);
  cs.w = static_cast<int>(in[2]);
  cs.c = in_c_;
  cs.k = out_c_;
  cs.r = cs.s = kernel_;
  cs.stride_h = cs.stride_w = stride_;
  cs.pad_h = cs.pad_w = pad_;
  validate(cs);
  shape_ = cs;
  const Shape y_shape = cs.y_shape();
  if (padded()) cs.c = padded_c_;
  if (s2d_) {
    LS_CHECK(!padded(), name_ << ": space-to-depth and padded input channels exclude each other");
    LS_CHECK(stride_ == 2, name_ << ": space-to-depth needs a stride-2 convolution, not stride " << stride_);
    // Output row o reads input rows 2o - pad + k, k < kernel: with k' = k + a, those are phase
    // k' % 2 of blocks o + k' / 2 of the input shifted by pad + a pixels.
    const int kb = (kernel_ + s2d_shift() + 1) / 2;
    cs.h = cs.out_h() + kb - 1;
    cs.w = cs.out_w() + kb - 1;
    cs.c = (4 * in_c_ + 7) / 8 * 8;
    cs.r = cs.s = kb;
    cs.stride_h = cs.stride_w = 1;
    cs.pad_h = cs.pad_w = 0;
    LS_CHECK(cs.y_shape() == y_shape, name_ << ": space-to-depth planned " << cs.y_shape().str() << " for "
                                            << y_shape.str());
  }
  plan_ = plan_conv2d(s.ctx, cs, s.dtype, s.search);
  s.conv_graph_directions += plan_.graph_directions;
  s.conv_directions += 4;
  if (rearranged()) {
    acts_ = &s.acts;
    temps_ = &s.temps;
    x_pad_ = s.acts.add(cs.x_shape(), s.dtype);
    w_pad_ = s.acts.add(cs.w_shape(), s.dtype);
    t_dw_pad_ = s.temps.add(cs.w_shape(), s.dtype);
  }
  return y_shape;
}

void Conv2d::forward(Context& ctx, const Tensor& x, Tensor& y) const {
  if (!rearranged()) {
    conv2d_forward(ctx, plan_, x, params_->compute_param(weight_), y);
    return;
  }
  // The weight is rearranged every step (K*R*S*C elements: a few thousand) rather than on each
  // parameter update, so nothing else has to know.
  Tensor xp = (*acts_)[x_pad_], wp = (*acts_)[w_pad_];
  if (s2d_) {
    space_to_depth2(ctx, x, pad_ + s2d_shift(), xp);
    space_to_depth2(ctx, params_->compute_param(weight_), s2d_shift(), wp);
  } else {
    pad_channels(ctx, x, xp);
    pad_channels(ctx, params_->compute_param(weight_), wp);
  }
  conv2d_forward(ctx, plan_, xp, wp, y);
}

void Conv2d::backward(Context& ctx, const Tensor& x, const Tensor& dy, Tensor* dx, bool accumulate) const {
  Tensor dw = params_->begin_grad(weight_, plan_.dtype);
  if (rearranged()) {
    LS_CHECK(dx == nullptr, name_ << ": a convolution with a rearranged input has no input gradient");
    Tensor dwp = (*temps_)[t_dw_pad_];
    conv2d_backward_filter(ctx, plan_, (*acts_)[x_pad_], dy, dwp);
    if (s2d_) depth_to_space2(ctx, dwp, s2d_shift(), dw);
    else slice_channels(ctx, dwp, dw);
    params_->end_grad(ctx, weight_);
    return;
  }
  conv2d_backward_filter(ctx, plan_, x, dy, dw);
  params_->end_grad(ctx, weight_);
  if (dx) conv2d_backward_data(ctx, plan_, dy, params_->compute_param(weight_), *dx, accumulate);
}

}  // namespace lockstep::nets
