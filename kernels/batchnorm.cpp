// Dispatch for batch normalization (kernels/batchnorm.h). The argument checks both backends
// share run here, before the backend is chosen and before any memory is touched; the backends
// add only their own (the CPU's f32-only check, each backend's workspace size).
#include "kernels/batchnorm.h"

#include <cmath>
#include <initializer_list>

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

namespace {

void check_shape(const Shape& x, DType dtype, const char* op) {
  LS_CHECK(x.rank() == 4, op << ": x must be (N, H, W, C), got " << x.str());
  LS_CHECK(x.numel() > 0, op << ": x must not be empty, got " << x.str());
  LS_CHECK(is_floating(dtype), op << ": x must be f32, bf16 or f16, got " << dtype_name(dtype));
}

void check_args(const BatchNormArgs& a, const char* op) {
  LS_CHECK(std::isfinite(a.eps) && a.eps > 0.f, op << ": eps must be finite and > 0, got " << a.eps);
  LS_CHECK(a.momentum >= 0.f && a.momentum <= 1.f,
           op << ": momentum must be in [0, 1], got " << a.momentum);
}

// x matches the plan; an activation-like tensor t matches x's shape and dtype.
void check_x(const Context& ctx, const BatchNormPlan& plan, const Tensor& x, const char* op) {
  check_shape(plan.x, plan.dtype, op);
  expect_on(ctx, x, op, "x");
  LS_CHECK(x.shape() == plan.x && x.dtype() == plan.dtype,
           op << ": x is " << dtype_name(x.dtype()) << x.shape().str() << " but the plan was made for "
              << dtype_name(plan.dtype) << plan.x.str());
}
void check_like_x(const Context& ctx, const Tensor& t, const Tensor& x, const char* op, const char* name) {
  expect_on(ctx, t, op, name);
  expect_dtype(t, x.dtype(), op, name);
  expect_shape(t, x.shape(), op, name);
}
// Per-channel f32 tensors of shape (C), checked in the order given.
struct Named {
  const Tensor& t;
  const char* name;
};
void check_channels(const Context& ctx, const Tensor& x, const char* op, std::initializer_list<Named> ts) {
  for (const Named& n : ts) {
    expect_on(ctx, n.t, op, n.name);
    expect_dtype(n.t, DType::f32, op, n.name);
    expect_shape(n.t, Shape{x.dim(3)}, op, n.name);
  }
}

// What both forwards take: args, x, the optional residual, gamma, beta, y and the running stats.
void check_forward(const Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                   const Tensor& x, const Tensor* residual, const Tensor& gamma, const Tensor& beta,
                   const Tensor& running_mean, const Tensor& running_var, const Tensor& y,
                   const char* op) {
  check_args(args, op);
  check_x(ctx, plan, x, op);
  if (residual) check_like_x(ctx, *residual, x, op, "residual");
  check_channels(ctx, x, op, {{gamma, "gamma"}, {beta, "beta"}});
  check_like_x(ctx, y, x, op, "y");
  check_channels(ctx, x, op, {{running_mean, "running_mean"}, {running_var, "running_var"}});
}

}  // namespace

const char* bn_kernels_name(BatchNormKernels k) {
  switch (k) {
    case BatchNormKernels::scalar: return "scalar";
    case BatchNormKernels::cudnn: return "cudnn";
    case BatchNormKernels::automatic: return "auto";
    default: return "lockstep";
  }
}

BatchNormKernels parse_bn_kernels(const std::string& text) {
  for (BatchNormKernels k : {BatchNormKernels::automatic, BatchNormKernels::lockstep, BatchNormKernels::scalar,
                             BatchNormKernels::cudnn})
    if (text == bn_kernels_name(k)) return k;
  throw Error("expected auto, lockstep, scalar or cudnn, got '" + text + "'");
}

BatchNormPlan plan_batchnorm(Context& ctx, const Shape& x, DType dtype, BatchNormKernels kernels) {
  check_shape(x, dtype, "plan_batchnorm");
  LS_DISPATCH(ctx, plan_batchnorm, ctx, x, dtype, kernels);
}

void batchnorm_forward_train(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                             Tensor& save_mean, Tensor& save_invstd, Tensor& y) {
  const char* op = "batchnorm_forward_train";
  check_forward(ctx, plan, args, x, residual, gamma, beta, running_mean, running_var, y, op);
  check_channels(ctx, x, op, {{save_mean, "save_mean"}, {save_invstd, "save_invstd"}});
  LS_CHECK(y.raw() != x.raw(), op << ": y must not overwrite x: the backward reads x");
  LS_DISPATCH(ctx, batchnorm_forward_train, ctx, plan, args, x, residual, gamma, beta, running_mean,
              running_var, save_mean, save_invstd, y);
}

void batchnorm_forward_infer(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, Tensor& y) {
  check_forward(ctx, plan, args, x, residual, gamma, beta, running_mean, running_var, y,
                "batchnorm_forward_infer");
  LS_DISPATCH(ctx, batchnorm_forward_infer, ctx, plan, args, x, residual, gamma, beta, running_mean,
              running_var, y);
}

// y is read (for the ReLU mask) only when args.relu; without ReLU it may be an empty Tensor.
void batchnorm_backward(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                        const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                        const Tensor& beta, const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx,
                        Tensor* dresidual, Tensor& dgamma, Tensor& dbeta) {
  const char* op = "batchnorm_backward";
  check_args(args, op);
  check_x(ctx, plan, x, op);
  if (args.relu) check_like_x(ctx, y, x, op, "y");
  check_like_x(ctx, dy, x, op, "dy");
  check_like_x(ctx, dx, x, op, "dx");
  if (dresidual) check_like_x(ctx, *dresidual, x, op, "dresidual");
  check_channels(ctx, x, op,
                 {{gamma, "gamma"}, {beta, "beta"}, {save_mean, "save_mean"}, {save_invstd, "save_invstd"},
                  {dgamma, "dgamma"}, {dbeta, "dbeta"}});
  LS_DISPATCH(ctx, batchnorm_backward, ctx, plan, args, x, y, dy, gamma, beta, save_mean, save_invstd, dx,
              dresidual, dgamma, dbeta);
}

}  // namespace lockstep
