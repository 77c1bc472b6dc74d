// cuDNN's persistent NHWC batch norm (see batchnorm_cudnn.h). Decisions:
//  - Mode CUDNN_BATCHNORM_SPATIAL_PERSISTENT, the NHWC kernels MLPerf's ResNets use; the ops per
//    call follow the arguments: BN, BN + ReLU, or BN + add + ReLU (cuDNN has no add without the
//    ReLU, refused). The backward uses the ops of the forward, told apart by dresidual.
//  - Workspace: the largest that any of the three ops asks for, forward or backward, reserved on
//    the context at plan time; the reserve space likewise, allocated once in the plan, so the
//    step allocates nothing.
//  - Scaling factors are float (cuDNN's rule for f32, f16 and bf16 data). Running statistics:
//    cuDNN blends with exponentialAverageFactor = momentum and keeps the unbiased variance, as
//    lockstep's kernels and PyTorch do; saved statistics are (mean, 1/sqrt(var + eps)), the same
//    layout as lockstep's, so inference and checkpoints do not care which kernels trained.
#include "kernels/cuda/batchnorm_cudnn.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <memory>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/memory.h"

namespace lockstep::cuda {

namespace {

constexpr cudnnBatchNormMode_t kMode = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;

struct CudnnBatchNorm {
  cudnnTensorDescriptor_t x = nullptr, bn = nullptr;
  cudnnActivationDescriptor_t relu = nullptr;
  Buffer reserve;
  bool supported[3] = {false, false, false};  // by cudnnBatchNormOps_t: BN, BN+ReLU, BN+add+ReLU
  ~CudnnBatchNorm() {
    if (relu) cudnnDestroyActivationDescriptor(relu);
    if (bn) cudnnDestroyTensorDescriptor(bn);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};


cudnnHandle_t handle(const Context& ctx) { return ctx.cuda().cudnn_handle(); }

const CudnnBatchNorm& backend_of(const BatchNormPlan& plan, const Context& ctx, const char* op) {
  LS_CHECK(plan.backend, op << ": the plan has no cuDNN state (make it with plan_batchnorm(..., cudnn))");
  LS_CHECK(ctx.workspace_bytes() >= plan.workspace_bytes,
           op << ": the context's workspace holds " << ctx.workspace_bytes() << " bytes, the plan needs "
              << plan.workspace_bytes << " (was the plan made on another context?)");
  return *static_cast<const CudnnBatchNorm*>(plan.backend.get());
}

cudnnBatchNormOps_t ops_for(const CudnnBatchNorm& c, const BatchNormPlan& plan, bool add, bool relu, const char* op) {
  LS_CHECK(relu || !add, op << ": cuDNN's batch norm fuses a residual add only before a ReLU");
  const cudnnBatchNormOps_t ops = !relu ? CUDNN_BATCHNORM_OPS_BN
                                 : add  ? CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION
                                        : CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
  LS_CHECK(c.supported[static_cast<int>(ops)],
           op << ": cuDNN offers no persistent NHWC batch norm" << (relu ? (add ? " + add + ReLU" : " + ReLU") : "")
              << " for " << dtype_name(plan.dtype) << " " << plan.x.str() << " (use --bn-kernels lockstep)");
  return ops;
}

// cuDNN's NHWC kernels load 16 bytes at a time from every tensor, statistics included; a
// misaligned one is a sticky fault that ends the process's CUDA context, so it is refused here.
void check_aligned(const char* op, std::initializer_list<std::pair<const char*, const void*>> tensors) {
  for (const auto& [name, p] : tensors)
    LS_CHECK(p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0,
             op << ": " << name << " at " << p << " is not 16-byte aligned, as cuDNN's NHWC batch norm needs "
                << "(use --bn-kernels lockstep)");
}

}  // namespace

bool plan_batchnorm_cudnn(Context& ctx, BatchNormPlan& plan) {
  auto c = std::make_shared<CudnnBatchNorm>();
  const Shape& s = plan.x;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->x));
  const cudnnDataType_t type = cudnn_data_type(plan.dtype, "plan_batchnorm (cudnn)");
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(c->x, CUDNN_TENSOR_NHWC, type, static_cast<int>(s[0]), static_cast<int>(s[3]),
                                         static_cast<int>(s[1]), static_cast<int>(s[2])));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->bn));
  CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(c->bn, c->x, kMode));
  CUDNN_CHECK(cudnnCreateActivationDescriptor(&c->relu));
  // cuDNN's ReLU turns a NaN into 0 here, where lockstep's kernels pass it on; left as is until a
  // GPU run shows the fused op takes CUDNN_PROPAGATE_NAN (a NaN still reaches the loss through
  // the batch statistics it poisons).
  CUDNN_CHECK(cudnnSetActivationDescriptor(c->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));

  cudnnHandle_t h = handle(ctx);
  size_t ws = 0, reserve = 0;
  for (cudnnBatchNormOps_t ops : {CUDNN_BATCHNORM_OPS_BN, CUDNN_BATCHNORM_OPS_BN_ACTIVATION,
                                  CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION}) {
    const bool add = ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
    cudnnActivationDescriptor_t act = ops == CUDNN_BATCHNORM_OPS_BN ? nullptr : c->relu;
    size_t f = 0, b = 0, r = 0;
    // An op set cuDNN refuses for this dtype or shape is only an error if a call asks for it.
    const bool ok =
        cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(h, kMode, ops, c->x, add ? c->x : nullptr, c->x,
                                                                 c->bn, act, &f) == CUDNN_STATUS_SUCCESS &&
        cudnnGetBatchNormalizationBackwardExWorkspaceSize(h, kMode, ops, c->x, c->x, c->x, add ? c->x : nullptr, c->x,
                                                          c->bn, act, &b) == CUDNN_STATUS_SUCCESS &&
        cudnnGetBatchNormalizationTrainingExReserveSpaceSize(h, kMode, ops, act, c->x, &r) == CUDNN_STATUS_SUCCESS;
    c->supported[static_cast<int>(ops)] = ok;
    if (!ok) continue;
    ws = std::max({ws, f, b});
    reserve = std::max(reserve, r);
  }
  if (reserve > 0) c->reserve = Buffer(ctx.device(), reserve);
  plan.workspace_bytes = std::max(plan.workspace_bytes, ws);
  plan.kernels = BatchNormKernels::cudnn;
  const bool all = c->supported[0] && c->supported[1] && c->supported[2];
  plan.backend = std::move(c);
  return all;
}

void batchnorm_forward_train_cudnn(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                                   const Tensor& x, const Tensor* residual, const Tensor& gamma, const Tensor& beta,
                                   Tensor& running_mean, Tensor& running_var, Tensor& save_mean,
                                   Tensor& save_invstd, Tensor& y) {
  const char* op = "batchnorm_forward_train (cudnn)";
  const CudnnBatchNorm& c = backend_of(plan, ctx, op);
  const cudnnBatchNormOps_t ops = ops_for(c, plan, residual != nullptr, args.relu, op);
  check_aligned(op, {{"x", x.raw()}, {"residual", residual ? residual->raw() : nullptr}, {"y", y.raw()},
                     {"gamma", gamma.raw()}, {"beta", beta.raw()}, {"running_mean", running_mean.raw()},
                     {"running_var", running_var.raw()}, {"save_mean", save_mean.raw()},
                     {"save_invstd", save_invstd.raw()}});
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnBatchNormalizationForwardTrainingEx(
      handle(ctx), kMode, ops, &one, &zero, c.x, x.raw(), residual ? c.x : nullptr,
      residual ? residual->raw() : nullptr, c.x, y.raw(), c.bn, gamma.raw(), beta.raw(), args.momentum,
      running_mean.raw(), running_var.raw(), args.eps, save_mean.raw(), save_invstd.raw(),
      ops == CUDNN_BATCHNORM_OPS_BN ? nullptr : c.relu, ctx.workspace(), plan.workspace_bytes, c.reserve.data(),
      c.reserve.bytes()));
}

void batchnorm_backward_cudnn(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args, const Tensor& x,
                              const Tensor& y, const Tensor& dy, const Tensor& gamma, const Tensor& beta,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor* dresidual,
                              Tensor& dgamma, Tensor& dbeta) {
  const char* op = "batchnorm_backward (cudnn)";
  const CudnnBatchNorm& c = backend_of(plan, ctx, op);
  const cudnnBatchNormOps_t ops = ops_for(c, plan, dresidual != nullptr, args.relu, op);
  check_aligned(op, {{"x", x.raw()}, {"y", y.raw()}, {"dy", dy.raw()}, {"dx", dx.raw()},
                     {"dresidual", dresidual ? dresidual->raw() : nullptr}, {"gamma", gamma.raw()},
                     {"beta", beta.raw()}, {"save_mean", save_mean.raw()}, {"save_invstd", save_invstd.raw()},
                     {"dgamma", dgamma.raw()}, {"dbeta", dbeta.raw()}});
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnBatchNormalizationBackwardEx(
      handle(ctx), kMode, ops, &one, &zero, &one, &zero, c.x, x.raw(), c.x, args.relu ? y.raw() : nullptr, c.x,
      dy.raw(), dresidual ? c.x : nullptr, dresidual ? dresidual->raw() : nullptr, c.x, dx.raw(), c.bn, gamma.raw(),
      beta.raw(), dgamma.raw(), dbeta.raw(), args.eps, save_mean.raw(), save_invstd.raw(),
      ops == CUDNN_BATCHNORM_OPS_BN ? nullptr : c.relu, ctx.workspace(), plan.workspace_bytes, c.reserve.data(),
      c.reserve.bytes()));
}

}  // namespace lockstep::cuda
