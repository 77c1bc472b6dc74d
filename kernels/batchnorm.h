// Batch normalization over (N, H, W) per channel of an NHWC tensor, with an optional residual
// add and ReLU fused after it: y = relu?( gamma * (x - mean) * invstd + beta + residual? ).
// Training uses batch statistics, saves (mean, invstd) for backward and updates the running
// statistics as PyTorch does: running = (1 - momentum) * running + momentum * batch, with the
// unbiased variance for running_var. Inference uses the running statistics.
// x, y, residual, dy, dx, dresidual share one dtype (f32, bf16, f16 on CUDA; f32 on CPU);
// gamma, beta, running and saved statistics and their gradients are f32 of shape (C).
#pragma once

#include <memory>
#include <string>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// Made once per input shape at setup: checks the shape and reserves the scratch the CUDA
// reductions need (per-block partial sums) on the context's workspace.
// Whose kernels run training BN on CUDA: lockstep's own (deterministic, no atomics; 16 bytes per
// thread where C and alignment allow, the ReLU mask recomputed from x without a residual),
// `scalar`: lockstep's one channel per thread with the mask read from y (the path before the
// vector kernels, kept to measure them against), or cuDNN's persistent NHWC batch norm with the
// add and ReLU fused (cudnnBatchNormalization*Ex; a ReLU mask kept from forward to backward in
// the plan's reserve space; repeated runs gave the same weights on an H100). Inference follows
// lockstep's choice (scalar or not); the CPU always runs its own. `automatic` ("auto", the
// default) picks per plan: cuDNN's for 16-bit data with C a multiple of 8 where cuDNN offers all
// three fused op sets (6-7% faster ResNet steps in bf16 on an H100), lockstep's otherwise (f32,
// odd channel counts, the CPU).
enum class BatchNormKernels { automatic, lockstep, scalar, cudnn };
const char* bn_kernels_name(BatchNormKernels k);
// "auto" | "lockstep" | "scalar" | "cudnn"; throws Error otherwise.
BatchNormKernels parse_bn_kernels(const std::string& text);

struct BatchNormPlan {
  Shape x;                 // (N, H, W, C)
  DType dtype = DType::f32;
  size_t workspace_bytes = 0;
  BatchNormKernels kernels = BatchNormKernels::lockstep;  // never automatic: what runs
  std::shared_ptr<void> backend;  // cuDNN descriptors and reserve space (kernels == cudnn)
};
BatchNormPlan plan_batchnorm(Context& ctx, const Shape& x, DType dtype,
                             BatchNormKernels kernels = BatchNormKernels::lockstep);

struct BatchNormArgs {
  float momentum = 0.1f;  // weight of the new batch in the running statistics
  float eps = 1e-5f;
  bool relu = false;      // apply ReLU after (BN + residual)
};

// Training forward. residual may be null. save_mean, save_invstd: f32 (C), written. y may alias
// the residual, never x: the backward reads x (for x-hat, and without a residual for the ReLU mask).
void batchnorm_forward_train(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args, const Tensor& x,
                             const Tensor* residual, const Tensor& gamma, const Tensor& beta,
                             Tensor& running_mean, Tensor& running_var, Tensor& save_mean,
                             Tensor& save_invstd, Tensor& y);

// Inference forward with the running statistics.
void batchnorm_forward_infer(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args, const Tensor& x,
                             const Tensor* residual, const Tensor& gamma, const Tensor& beta,
                             const Tensor& running_mean, const Tensor& running_var, Tensor& y);

// Backward of the training forward. y is the forward output (its sign gives the ReLU mask when
// args.relu). dresidual, when not null, receives the gradient flowing into the residual input
// (dy masked by the ReLU). dgamma and dbeta are overwritten. dx may alias dy. Pass a dresidual
// exactly when the forward had a residual: without one, lockstep's CUDA kernels take the ReLU
// mask from z = gamma * xhat + beta recomputed from x (the same sign as y; one tensor less to
// read), so x, gamma, beta and the saved statistics must be the forward's. (That mask can differ
// from y's sign only where a positive z rounds to zero in the stored dtype: z <= 2^-25 in f16,
// never in practice in bf16; the gradient passed there is of that size.) cuDNN's kernels read
// beta too, and must follow the plan's last training forward.
void batchnorm_backward(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args, const Tensor& x, const Tensor& y,
                        const Tensor& dy, const Tensor& gamma, const Tensor& beta, const Tensor& save_mean,
                        const Tensor& save_invstd, Tensor& dx, Tensor* dresidual, Tensor& dgamma,
                        Tensor& dbeta);

#define LS_BATCHNORM_BACKEND_DECLS                                                             \
  BatchNormPlan plan_batchnorm(Context&, const Shape& x, DType dtype, BatchNormKernels kernels); \
  void batchnorm_forward_train(Context&, const BatchNormPlan&, const BatchNormArgs&, const Tensor& x,                \
                               const Tensor* residual, const Tensor& gamma, const Tensor& beta, \
                               Tensor& running_mean, Tensor& running_var, Tensor& save_mean,    \
                               Tensor& save_invstd, Tensor& y);                                 \
  void batchnorm_forward_infer(Context&, const BatchNormPlan&, const BatchNormArgs&, const Tensor& x,                \
                               const Tensor* residual, const Tensor& gamma, const Tensor& beta, \
                               const Tensor& running_mean, const Tensor& running_var,           \
                               Tensor& y);                                                      \
  void batchnorm_backward(Context&, const BatchNormPlan&, const BatchNormArgs&, const Tensor& x, const Tensor& y,    \
                          const Tensor& dy, const Tensor& gamma, const Tensor& beta,            \
                          const Tensor& save_mean,                                              \
                          const Tensor& save_invstd, Tensor& dx, Tensor* dresidual,             \
                          Tensor& dgamma, Tensor& dbeta);
namespace cpu { LS_BATCHNORM_BACKEND_DECLS }
namespace cuda { LS_BATCHNORM_BACKEND_DECLS }
#undef LS_BATCHNORM_BACKEND_DECLS

}  // namespace lockstep
