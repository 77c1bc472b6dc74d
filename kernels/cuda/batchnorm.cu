// CUDA batch normalization over NHWC (x, y, residual, dy, dx, dresidual in f32 / bf16 / f16;
// gamma, beta and statistics f32), with the residual add and ReLU fused: deterministic, no float
// atomics, the same result run after run on a given shape. (cuDNN's kernels are the opt-in
// alternative: kernels/cuda/batchnorm_cudnn.cpp.)
//
// Layout: x is (rows = N*H*W, C) row-major, so the channel is the fastest dimension. Geometry
// (kernels/cuda/batchnorm_geometry.h): grid.y walks channel tiles, grid.x contiguous row chunks
// of rows_per_chunk rows, and threadIdx.y strides through its chunk's rows. The row kernels here
// are the scalar ones (threadIdx.x picks one channel of a 32-channel tile, so a warp reads 32
// consecutive values of a row); kernels/cuda/batchnorm_vec.cu has the same passes with 16 bytes
// per thread, taken whenever C and the tensors' alignment allow. The geometry depends on the
// shape only (not on the GPU), so results do not depend on the card either.
//
// Training forward, three kernels:
//   moments:  each thread runs Welford over its rows, the block merges its row lanes' partials
//             with Chan's formula in a fixed tree, and writes one (mean, m2) per (chunk, channel)
//             into the workspace: 2 * chunks * C floats, reserved by plan_batchnorm.
//   finalize: one block per 32-channel tile merges the chunks' partials in a fixed order, then
//             writes save_mean, save_invstd and updates the running statistics.
//   Both stages work on values shifted by a sample of the channel (the chunk's first value,
//   then chunk 0's mean), so a running mean is of the order of the spread, not of the mean:
//   with mean 1000 and std 1, fp32 rounding of a mean near 1000 at every update would cost
//   ~1e-4 of the std; shifted, the mean is rounded near 1000 only once per partial and at the end.
//   apply:    y = relu?(gamma * (x - mean) * invstd + beta + residual).
// Backward, three kernels of the same shape: per-chunk partial sums of g and g * xhat
// (g = dy masked by the ReLU), a finalize that writes dbeta and dgamma, and the dx element
// kernel (which also writes dresidual = g). Without a residual the ReLU mask is z's sign, z
// recomputed from x, so y is not read (bn::ReluMask). dx may alias dy: each element is read,
// then written by the same thread, so the dx kernel's pointers are not __restrict__.
// The per-element and per-channel arithmetic is kernels/batchnorm_math.h, shared with the CPU.
// The dispatcher (kernels/batchnorm.cpp) has checked args, devices, dtypes and shapes; only the
// grid size and the workspace are checked here.
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_math.h"
#include "kernels/cuda/batchnorm_cudnn.h"
#include "kernels/cuda/batchnorm_geometry.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/vec.cuh"

namespace lockstep::cuda {

namespace {

constexpr int kTileC = kBnTileC;  // channels per block (threadIdx.x)
constexpr int kRowsY = kBnRowsY;  // row lanes per block (threadIdx.y)
const dim3 kBlock(kTileC, kRowsY);

float* workspace_floats(const Context& ctx, const BnGeometry& g, const char* op) {
  LS_CHECK(ctx.workspace_bytes() >= g.workspace_bytes(),
           op << ": the context's workspace holds " << ctx.workspace_bytes() << " bytes, "
              << g.workspace_bytes() << " needed: make the plan with plan_batchnorm on this context");
  return static_cast<float*>(ctx.workspace());
}

// The vector kernels run when the channels allow it and every tensor they touch is 16-byte
// aligned (views into a buffer at an odd offset take the scalar kernels).
bool use_vector(const BatchNormPlan& plan, const Shape& x, DType dt, std::initializer_list<const void*> ptrs) {
  return plan.kernels != BatchNormKernels::scalar && bn_vectorizable(x, dt) && aligned16(ptrs);
}

// Merges the kLanes Moments of a block column (same threadIdx.x) in a fixed tree; the result is
// valid in threadIdx.y == 0. Every thread of the block must call it.
template <int kLanes>
__device__ __forceinline__ bn::Moments block_merge(bn::Moments a) {
  __shared__ float s_n[kLanes][kTileC], s_mean[kLanes][kTileC], s_m2[kLanes][kTileC];
  const int tx = threadIdx.x, ty = threadIdx.y;
  s_n[ty][tx] = a.n;
  s_mean[ty][tx] = a.mean;
  s_m2[ty][tx] = a.m2;
  __syncthreads();
  for (int s = kLanes / 2; s > 0; s /= 2) {
    if (ty < s) {
      bn::chan_merge(a, bn::Moments{s_n[ty + s][tx], s_mean[ty + s][tx], s_m2[ty + s][tx]});
      s_n[ty][tx] = a.n;
      s_mean[ty][tx] = a.mean;
      s_m2[ty][tx] = a.m2;
    }
    __syncthreads();
  }
  return a;
}

// Sums two values over a block column in a fixed tree; the result is valid in threadIdx.y == 0.
template <int kLanes>
__device__ __forceinline__ void block_sum2(float& a, float& b) {
  __shared__ float s_a[kLanes][kTileC], s_b[kLanes][kTileC];
  const int tx = threadIdx.x, ty = threadIdx.y;
  s_a[ty][tx] = a;
  s_b[ty][tx] = b;
  __syncthreads();
  for (int s = kLanes / 2; s > 0; s /= 2) {
    if (ty < s) {
      a += s_a[ty + s][tx];
      b += s_b[ty + s][tx];
      s_a[ty][tx] = a;
      s_b[ty][tx] = b;
    }
    __syncthreads();
  }
}

// ---- training forward ----

template <typename T>
__global__ void __launch_bounds__(kThreads) moments_kernel(const T* __restrict__ x, int64_t rows,
                                                          int64_t channels, int64_t rows_per_chunk,
                                                          float* __restrict__ part_mean,
                                                          float* __restrict__ part_m2) {
  const int64_t c = blockIdx.y * int64_t(kTileC) + threadIdx.x;
  int64_t begin, end;
  bn_chunk_rows(blockIdx.x, rows, rows_per_chunk, begin, end);
  bn::Moments m;
  float shift = 0.f;  // the chunk's first value: moments of x - shift keep the running mean small
  if (c < channels) {
    shift = to_f32(x[begin * channels + c]);
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowsY)
      bn::welford_add(m, to_f32(x[r * channels + c]) - shift);
  }
  m = block_merge<kRowsY>(m);
  if (threadIdx.y == 0 && c < channels) {
    part_mean[blockIdx.x * channels + c] = shift + m.mean;
    part_m2[blockIdx.x * channels + c] = m.m2;
  }
}

__global__ void __launch_bounds__(kTileC * kBnFinalizeLanes) finalize_moments_kernel(
    const float* __restrict__ part_mean, const float* __restrict__ part_m2, int64_t chunks,
    int64_t rows, int64_t channels, int64_t rows_per_chunk, float eps, float momentum,
    float* __restrict__ save_mean, float* __restrict__ save_invstd, float* __restrict__ running_mean,
    float* __restrict__ running_var) {
  const int64_t c = blockIdx.x * int64_t(kTileC) + threadIdx.x;
  bn::Moments m;
  float shift = 0.f;  // chunk 0's mean: merging means relative to it keeps them small
  if (c < channels) {
    shift = part_mean[c];
    for (int64_t p = threadIdx.y; p < chunks; p += kBnFinalizeLanes) {
      int64_t begin, end;
      bn_chunk_rows(p, rows, rows_per_chunk, begin, end);
      bn::chan_merge(m, bn::Moments{static_cast<float>(end - begin), part_mean[p * channels + c] - shift,
                                    part_m2[p * channels + c]});
    }
  }
  m = block_merge<kBnFinalizeLanes>(m);
  if (threadIdx.y == 0 && c < channels)
    bn::finalize_stats<float>(shift + m.mean, m.m2, rows, eps, momentum, &save_mean[c], &save_invstd[c],
                              &running_mean[c], &running_var[c]);
}

// kInfer: `stat` holds the running variance (invstd computed here); else the saved invstd.
// y may alias x or residual: each element is read, then written by the same thread (inference
// only for x: a training forward keeps x for its backward, batchnorm.h).
template <typename T, bool kInfer>
__global__ void __launch_bounds__(kThreads) apply_kernel(
    const T* x, const T* residual, T* y, int64_t rows, int64_t channels, int64_t rows_per_chunk,
    const float* __restrict__ mean, const float* __restrict__ stat, const float* __restrict__ gamma,
    const float* __restrict__ beta, float eps, bool relu) {
  const int64_t c = blockIdx.y * int64_t(kTileC) + threadIdx.x;
  if (c >= channels) return;
  const float mu = mean[c];
  const float invstd = kInfer ? bn::invstd_of(stat[c], eps) : stat[c];
  const float ga = gamma[c], be = beta[c];
  int64_t begin, end;
  bn_chunk_rows(blockIdx.x, rows, rows_per_chunk, begin, end);
  for (int64_t r = begin + threadIdx.y; r < end; r += kRowsY) {
    const int64_t i = r * channels + c;
    const float res = residual ? to_f32(residual[i]) : 0.f;
    y[i] = from_f32<T>(bn::forward_element(to_f32(x[i]), mu, invstd, ga, be, res, relu));
  }
}

// ---- backward ----

template <typename T>
__global__ void __launch_bounds__(kThreads) grad_sums_kernel(
    const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy, int64_t rows,
    int64_t channels, int64_t rows_per_chunk, const float* __restrict__ save_mean,
    const float* __restrict__ save_invstd, const float* __restrict__ gamma, const float* __restrict__ beta,
    bn::ReluMask mask, float* __restrict__ part_g, float* __restrict__ part_gx) {
  const int64_t c = blockIdx.y * int64_t(kTileC) + threadIdx.x;
  float sg = 0.f, sgx = 0.f;
  if (c < channels) {
    const float mu = save_mean[c], invstd = save_invstd[c], ga = gamma[c], be = beta[c];
    int64_t begin, end;
    bn_chunk_rows(blockIdx.x, rows, rows_per_chunk, begin, end);
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowsY) {
      const int64_t i = r * channels + c;
      const float xv = to_f32(x[i]);
      const float yv = mask == bn::ReluMask::from_y ? to_f32(y[i]) : 0.f;
      const float g = bn::masked_grad(mask, to_f32(dy[i]), xv, yv, mu, invstd, ga, be);
      sg += g;
      sgx += g * bn::xhat_of(xv, mu, invstd);
    }
  }
  block_sum2<kRowsY>(sg, sgx);
  if (threadIdx.y == 0 && c < channels) {
    part_g[blockIdx.x * channels + c] = sg;
    part_gx[blockIdx.x * channels + c] = sgx;
  }
}

__global__ void __launch_bounds__(kTileC * kBnFinalizeLanes) finalize_grad_kernel(const float* __restrict__ part_g,
                                                                const float* __restrict__ part_gx,
                                                                int64_t chunks, int64_t channels,
                                                                float* __restrict__ dbeta,
                                                                float* __restrict__ dgamma) {
  const int64_t c = blockIdx.x * int64_t(kTileC) + threadIdx.x;
  float sg = 0.f, sgx = 0.f;
  if (c < channels)
    for (int64_t p = threadIdx.y; p < chunks; p += kBnFinalizeLanes) {
      sg += part_g[p * channels + c];
      sgx += part_gx[p * channels + c];
    }
  block_sum2<kBnFinalizeLanes>(sg, sgx);
  if (threadIdx.y == 0 && c < channels) {
    dbeta[c] = sg;
    dgamma[c] = sgx;
  }
}

// dx may alias dy (and nothing here is __restrict__ that could alias).
template <typename T>
__global__ void __launch_bounds__(kThreads) dx_kernel(
    const T* x, const T* y, const T* dy, T* dx, T* dresidual, int64_t rows, int64_t channels,
    int64_t rows_per_chunk, const float* save_mean, const float* save_invstd, const float* gamma,
    const float* beta, const float* dbeta, const float* dgamma, bn::ReluMask mask) {
  const int64_t c = blockIdx.y * int64_t(kTileC) + threadIdx.x;
  if (c >= channels) return;
  const float mu = save_mean[c], invstd = save_invstd[c], ga = gamma[c], be = beta[c];
  const bn::BackwardCoef k = bn::backward_coef(ga, invstd, dbeta[c], dgamma[c], rows);
  int64_t begin, end;
  bn_chunk_rows(blockIdx.x, rows, rows_per_chunk, begin, end);
  for (int64_t r = begin + threadIdx.y; r < end; r += kRowsY) {
    const int64_t i = r * channels + c;
    const float xv = to_f32(x[i]);
    const float yv = mask == bn::ReluMask::from_y ? to_f32(y[i]) : 0.f;
    const float g = bn::masked_grad(mask, to_f32(dy[i]), xv, yv, mu, invstd, ga, be);
    if (dresidual) dresidual[i] = from_f32<T>(g);
    dx[i] = from_f32<T>(bn::backward_element(g, bn::xhat_of(xv, mu, invstd), k));
  }
}

template <typename T> const T* cptr(const Tensor& t) { return static_cast<const T*>(t.raw()); }
template <typename T> T* ptr(Tensor& t) { return static_cast<T*>(t.raw()); }
const float* fptr(const Tensor& t) { return static_cast<const float*>(t.raw()); }
float* fptr(Tensor& t) { return static_cast<float*>(t.raw()); }

}  // namespace

BatchNormPlan plan_batchnorm(Context& ctx, const Shape& x, DType dtype, BatchNormKernels kernels) {
  BatchNormPlan plan;
  plan.x = x;
  plan.dtype = dtype;
  plan.kernels = kernels == BatchNormKernels::automatic ? BatchNormKernels::lockstep : kernels;
  // Either geometry may run (the vector one needs aligned tensors, known only at the call).
  plan.workspace_bytes = bn_geometry(x, dtype, false).workspace_bytes();
  if (bn_vectorizable(x, dtype))
    plan.workspace_bytes = std::max(plan.workspace_bytes, bn_geometry(x, dtype, true).workspace_bytes());
  if (kernels == BatchNormKernels::cudnn) {
    plan_batchnorm_cudnn(ctx, plan);
  } else if (kernels == BatchNormKernels::automatic && dtype != DType::f32 && x[3] % 8 == 0) {
    // C a multiple of 8 keeps gamma, beta and the statistics 16-byte aligned in a model's flat
    // buffers (nets/params.h), as cuDNN's kernels need; f32 was not measured faster.
    BatchNormPlan with = plan;
    if (plan_batchnorm_cudnn(ctx, with)) plan = std::move(with);
  }
  ctx.reserve_workspace(plan.workspace_bytes);
  return plan;
}

void batchnorm_forward_train(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                             Tensor& save_mean, Tensor& save_invstd, Tensor& y) {
  if (plan.kernels == BatchNormKernels::cudnn)
    return batchnorm_forward_train_cudnn(ctx, plan, args, x, residual, gamma, beta, running_mean, running_var,
                                         save_mean, save_invstd, y);
  const char* op = "batchnorm_forward_train";
  const void* res = residual ? residual->raw() : nullptr;
  const bool vector = use_vector(plan, x.shape(), x.dtype(), {x.raw(), res, y.raw()});
  const BnGeometry g = bn_geometry(x.shape(), x.dtype(), vector);
  float* part_mean = workspace_floats(ctx, g, op);
  float* part_m2 = part_mean + g.chunks * g.channels;
  cudaStream_t st = stream(ctx);
  if (vector) {
    bn_moments_vec(st, g, x.dtype(), x.raw(), part_mean, part_m2);
  } else {
    LS_FLOAT_DISPATCH(x.dtype(), T, {
      moments_kernel<T><<<g.grid(), kBlock, 0, st>>>(cptr<T>(x), g.rows, g.channels, g.rows_per_chunk,
                                                     part_mean, part_m2);
      CUDA_CHECK_LAUNCH();
    });
  }
  finalize_moments_kernel<<<g.finalize_grid(), g.finalize_block(), 0, st>>>(
      part_mean, part_m2, g.chunks, g.rows, g.channels, g.rows_per_chunk, args.eps, args.momentum,
      fptr(save_mean), fptr(save_invstd), fptr(running_mean), fptr(running_var));
  CUDA_CHECK_LAUNCH();
  if (vector) {
    bn_apply_vec(st, g, x.dtype(), false, x.raw(), res, y.raw(), fptr(save_mean), fptr(save_invstd), fptr(gamma),
                 fptr(beta), args.eps, args.relu);
    return;
  }
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    apply_kernel<T, false><<<g.grid(), kBlock, 0, st>>>(
        cptr<T>(x), static_cast<const T*>(res), ptr<T>(y), g.rows, g.channels, g.rows_per_chunk,
        fptr(save_mean), fptr(save_invstd), fptr(gamma), fptr(beta), args.eps, args.relu);
    CUDA_CHECK_LAUNCH();
  });
}

void batchnorm_forward_infer(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, Tensor& y) {
  const void* res = residual ? residual->raw() : nullptr;
  const bool vector = use_vector(plan, x.shape(), x.dtype(), {x.raw(), res, y.raw()});
  const BnGeometry g = bn_geometry(x.shape(), x.dtype(), vector);
  cudaStream_t st = stream(ctx);
  if (vector) {
    bn_apply_vec(st, g, x.dtype(), true, x.raw(), res, y.raw(), fptr(running_mean), fptr(running_var),
                 fptr(gamma), fptr(beta), args.eps, args.relu);
    return;
  }
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    apply_kernel<T, true><<<g.grid(), kBlock, 0, st>>>(
        cptr<T>(x), static_cast<const T*>(res), ptr<T>(y), g.rows, g.channels, g.rows_per_chunk,
        fptr(running_mean), fptr(running_var), fptr(gamma), fptr(beta), args.eps, args.relu);
    CUDA_CHECK_LAUNCH();
  });
}

void batchnorm_backward(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                        const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                        const Tensor& beta, const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx,
                        Tensor* dresidual, Tensor& dgamma, Tensor& dbeta) {
  if (plan.kernels == BatchNormKernels::cudnn)
    return batchnorm_backward_cudnn(ctx, plan, args, x, y, dy, gamma, beta, save_mean, save_invstd, dx, dresidual,
                                    dgamma, dbeta);
  const char* op = "batchnorm_backward";
  // Without a residual, z is recomputed from x for the ReLU mask and y is never read.
  const bn::ReluMask mask = !args.relu                                                           ? bn::ReluMask::none
                           : dresidual || plan.kernels == BatchNormKernels::scalar ? bn::ReluMask::from_y
                                                                                    : bn::ReluMask::from_x;
  const void* py = mask == bn::ReluMask::from_y ? y.raw() : nullptr;
  void* dres = dresidual ? dresidual->raw() : nullptr;
  const bool vector = use_vector(plan, x.shape(), x.dtype(), {x.raw(), py, dy.raw(), dx.raw(), dres});
  const BnGeometry g = bn_geometry(x.shape(), x.dtype(), vector);
  float* part_g = workspace_floats(ctx, g, op);
  float* part_gx = part_g + g.chunks * g.channels;
  cudaStream_t st = stream(ctx);
  if (vector) {
    bn_grad_sums_vec(st, g, x.dtype(), x.raw(), py, dy.raw(), fptr(save_mean), fptr(save_invstd), fptr(gamma),
                     fptr(beta), mask, part_g, part_gx);
  } else {
    LS_FLOAT_DISPATCH(x.dtype(), T, {
      grad_sums_kernel<T><<<g.grid(), kBlock, 0, st>>>(cptr<T>(x), static_cast<const T*>(py), cptr<T>(dy), g.rows,
                                                       g.channels, g.rows_per_chunk, fptr(save_mean),
                                                       fptr(save_invstd), fptr(gamma), fptr(beta), mask, part_g,
                                                       part_gx);
      CUDA_CHECK_LAUNCH();
    });
  }
  finalize_grad_kernel<<<g.finalize_grid(), g.finalize_block(), 0, st>>>(part_g, part_gx, g.chunks, g.channels,
                                                                         fptr(dbeta), fptr(dgamma));
  CUDA_CHECK_LAUNCH();
  if (vector) {
    bn_dx_vec(st, g, x.dtype(), x.raw(), py, dy.raw(), dx.raw(), dres, fptr(save_mean), fptr(save_invstd),
              fptr(gamma), fptr(beta), fptr(dbeta), fptr(dgamma), mask);
    return;
  }
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    dx_kernel<T><<<g.grid(), kBlock, 0, st>>>(cptr<T>(x), static_cast<const T*>(py), cptr<T>(dy), ptr<T>(dx),
                                              static_cast<T*>(dres), g.rows, g.channels, g.rows_per_chunk,
                                              fptr(save_mean), fptr(save_invstd), fptr(gamma), fptr(beta),
                                              fptr(dbeta), fptr(dgamma), mask);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lockstep::cuda
