// Dispatch for batch normalization (kernels/batchnorm.h).
#include "kernels/batchnorm.h"

#include "kernels/dispatch.h"

namespace lockstep {

BatchNormPlan plan_batchnorm(Context& ctx, const Shape& x, DType dtype) {
  LS_DISPATCH(ctx, plan_batchnorm, ctx, x, dtype);
}

void batchnorm_forward_train(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                             Tensor& save_mean, Tensor& save_invstd, Tensor& y) {
  LS_DISPATCH(ctx, batchnorm_forward_train, ctx, plan, args, x, residual, gamma, beta, running_mean,
              running_var, save_mean, save_invstd, y);
}

void batchnorm_forward_infer(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, Tensor& y) {
  LS_DISPATCH(ctx, batchnorm_forward_infer, ctx, plan, args, x, residual, gamma, beta, running_mean,
              running_var, y);
}

void batchnorm_backward(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                        const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                        const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx,
                        Tensor* dresidual, Tensor& dgamma, Tensor& dbeta) {
  LS_DISPATCH(ctx, batchnorm_backward, ctx, plan, args, x, y, dy, gamma, save_mean, save_invstd, dx,
              dresidual, dgamma, dbeta);
}

}  // namespace lockstep
