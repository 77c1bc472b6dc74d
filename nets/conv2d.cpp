#include "nets/conv2d.h"

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
  plan_ = plan_conv2d(s.ctx, cs, s.dtype, s.search);
  return cs.y_shape();
}

void Conv2d::forward(Context& ctx, const Tensor& x, Tensor& y) const {
  conv2d_forward(ctx, plan_, x, params_->compute_param(weight_), y);
}

void Conv2d::backward(Context& ctx, const Tensor& x, const Tensor& dy, Tensor* dx) const {
  Tensor dw = params_->begin_grad(weight_, plan_.dtype);
  conv2d_backward_filter(ctx, plan_, x, dy, dw);
  params_->end_grad(ctx, weight_);
  if (dx) conv2d_backward_data(ctx, plan_, dy, params_->compute_param(weight_), *dx);
}

}  // namespace lockstep::nets
