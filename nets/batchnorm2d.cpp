#include "nets/batchnorm2d.h"

namespace lockstep::nets {

void BatchNorm2d::setup(SetupContext& s, const Shape& in) {
  LS_CHECK(in.rank() == 4 && in[3] == c_, name_ << ": expects (N, H, W, " << c_ << ") input, got " << in.str());
  params_ = &s.params;
  acts_ = &s.acts;
  temps_ = &s.temps;
  gamma_ = s.params.declare(join_name(name_, "weight"), {c_}, {c_}, ParamKind::bn_weight);
  beta_ = s.params.declare(join_name(name_, "bias"), {c_}, {c_}, ParamKind::bn_bias);
  mean_ = s.params.declare_buffer(join_name(name_, "running_mean"), c_, 0.f);
  var_ = s.params.declare_buffer(join_name(name_, "running_var"), c_, 1.f);
  y_idx_ = s.acts.add(in, s.dtype);
  save_mean_idx_ = s.acts.add({c_}, DType::f32);
  save_invstd_idx_ = s.acts.add({c_}, DType::f32);
  dgamma_tmp_ = s.temps.add({c_}, DType::f32);
  dbeta_tmp_ = s.temps.add({c_}, DType::f32);
  plan_ = plan_batchnorm(s.ctx, in, s.dtype, s.bn_kernels);
  ++s.bn_planned[static_cast<size_t>(plan_.kernels)];
}

Tensor BatchNorm2d::forward(Context& ctx, const Tensor& x, const Tensor* residual, Mode mode) {
  Tensor y = (*acts_)[y_idx_];
  BatchNormArgs args;
  args.relu = relu_;
  Tensor g = params_->param(gamma_), b = params_->param(beta_);
  Tensor rm = params_->buffer(mean_), rv = params_->buffer(var_);
  if (mode == Mode::train) {
    Tensor sm = (*acts_)[save_mean_idx_], si = (*acts_)[save_invstd_idx_];
    batchnorm_forward_train(ctx, plan_, args, x, residual, g, b, rm, rv, sm, si, y);
  } else {
    batchnorm_forward_infer(ctx, plan_, args, x, residual, g, b, rm, rv, y);
  }
  return y;
}

void BatchNorm2d::backward(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dx, Tensor* dresidual) {
  BatchNormArgs args;
  args.relu = relu_;
  // Straight into the f32 gradient slots unless micro-batches accumulate.
  bool direct = !params_->accumulating();
  Tensor dgamma = direct ? params_->grad(gamma_) : (*temps_)[dgamma_tmp_];
  Tensor dbeta = direct ? params_->grad(beta_) : (*temps_)[dbeta_tmp_];
  batchnorm_backward(ctx, plan_, args, x, (*acts_)[y_idx_], dy, params_->param(gamma_), params_->param(beta_),
                     (*acts_)[save_mean_idx_], (*acts_)[save_invstd_idx_], dx, dresidual, dgamma, dbeta);
  params_->fold_grad(ctx, gamma_, dgamma);
  params_->fold_grad(ctx, beta_, dbeta);
}

}  // namespace lockstep::nets
