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
  cs.c = padded() ? padded_c_ : in_c_;
  cs.k = out_c_;
  cs.r = cs.s = kernel_;
  cs.stride_h = cs.stride_w = stride_;
  cs.pad_h = cs.pad_w = pad_;
  plan_ = plan_conv2d(s.ctx, cs, s.dtype, s.search);
  if (padded()) {
    acts_ = &s.acts;
    temps_ = &s.temps;
    x_pad_ = s.acts.add(cs.x_shape(), s.dtype);
    w_pad_ = s.acts.add(cs.w_shape(), s.dtype);
    t_dw_pad_ = s.temps.add(cs.w_shape(), s.dtype);
  }
  return cs.y_shape();
}

void Conv2d::forward(Context& ctx, const Tensor& x, Tensor& y) const {
  if (!padded()) {
    conv2d_forward(ctx, plan_, x, params_->compute_param(weight_), y);
    return;
  }
  // The weight is padded every step (K*R*S*C elements: a few thousand) rather than on each
  // parameter update, so nothing else has to know.
  Tensor xp = (*acts_)[x_pad_], wp = (*acts_)[w_pad_];
  pad_channels(ctx, x, xp);
  pad_channels(ctx, params_->compute_param(weight_), wp);
  conv2d_forward(ctx, plan_, xp, wp, y);
}

void Conv2d::backward(Context& ctx, const Tensor& x, const Tensor& dy, Tensor* dx, bool accumulate) const {
  Tensor dw = params_->begin_grad(weight_, plan_.dtype);
  if (padded()) {
    LS_CHECK(dx == nullptr, name_ << ": a convolution with padded input channels has no input gradient");
    Tensor dwp = (*temps_)[t_dw_pad_];
    conv2d_backward_filter(ctx, plan_, (*acts_)[x_pad_], dy, dwp);
    slice_channels(ctx, dwp, dw);
    params_->end_grad(ctx, weight_);
    return;
  }
  conv2d_backward_filter(ctx, plan_, x, dy, dw);
  params_->end_grad(ctx, weight_);
  if (dx) conv2d_backward_data(ctx, plan_, dy, params_->compute_param(weight_), *dx, accumulate);
}

}  // namespace lockstep::nets
