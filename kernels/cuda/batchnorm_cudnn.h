// cuDNN's batch norm for training (kernels/batchnorm.h, BatchNormKernels::cudnn): persistent
// NHWC kernels with the residual add and ReLU fused (cudnnBatchNormalizationForwardTrainingEx /
// BackwardEx). The plan holds the descriptors and the reserve space (the ReLU mask) that a
// forward leaves for its backward. Called by kernels/cuda/batchnorm.cu after the dispatcher's
// checks.
#pragma once

#include "kernels/batchnorm.h"

namespace lockstep::cuda {

// Fills plan.backend and raises plan.workspace_bytes to what cuDNN's forward and backward ask.
// Returns whether cuDNN offers all three op sets (BN, + ReLU, + add + ReLU) for the shape and
// dtype; a call for one it lacks is refused naming --bn-kernels.
bool plan_batchnorm_cudnn(Context& ctx, BatchNormPlan& plan);
void batchnorm_forward_train_cudnn(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                                   const Tensor& x, const Tensor* residual, const Tensor& gamma, const Tensor& beta,
                                   Tensor& running_mean, Tensor& running_var, Tensor& save_mean,
                                   Tensor& save_invstd, Tensor& y);
void batchnorm_backward_cudnn(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args, const Tensor& x,
                              const Tensor& y, const Tensor& dy, const Tensor& gamma, const Tensor& beta,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor* dresidual,
                              Tensor& dgamma, Tensor& dbeta);

}  // namespace lockstep::cuda
