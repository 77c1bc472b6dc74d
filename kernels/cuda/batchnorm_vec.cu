// The row kernels of lockstep's CUDA batch norm in the vector geometry (batchnorm_geometry.h):
// each thread loads 16 bytes of a row per memory instruction (8 bf16 channels), where the scalar
// kernels load 2 bytes, so the memory-bound passes of a ResNet keep enough bytes in flight to
// approach the GPU's bandwidth. Same per-element math (kernels/batchnorm_math.h), same chunk
// partials for the finalize kernels, fixed reduction trees: deterministic for a given shape.
//
// The statistics pass sums x - shift and (x - shift)^2 per thread (shift: the chunk's first row,
// so the sums stay of the order of the spread), turns them into (n, mean, m2) and merges the
// row lanes with Chan's formula; no division per element as Welford would need.
// Element kernels handle two rows per iteration, loading both before storing either: dx may
// alias dy and y may alias x (inference only: training keeps x for the backward) or residual,
// which is safe because every element is read and then written by the same thread.
#include "kernels/batchnorm_math.h"
#include "kernels/cuda/batchnorm_geometry.h"
#include "kernels/cuda/vec.cuh"

namespace lockstep::cuda {

namespace {

constexpr int kRowsPerIter = 2;
// The element kernels hold two rows and ~7 per-channel coefficients for 8 channels: capping them
// at 128 registers keeps two blocks (16 warps) per SM to hide memory latency.
constexpr int kMinBlocks = 2;

__device__ __forceinline__ int64_t vector_index() { return blockIdx.y * int64_t(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int thread_index() { return threadIdx.y * blockDim.x + threadIdx.x; }
// The element passes walk the chunks last to first: blocks start roughly in index order, so the
// rows the reduction pass read last (x, dy: still in L2 where the layer is small enough) are the
// ones read again first. Each element's result does not depend on the order.
__device__ __forceinline__ int64_t reversed_chunk() { return int64_t(gridDim.x) - 1 - blockIdx.x; }

// Per-channel values of a thread's V channels.
template <int V>
__device__ __forceinline__ void load_channels(const float* __restrict__ p, int64_t c0, float (&out)[V]) {
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = p[c0 + i];
}

// The four per-channel values every element pass needs: mean, invstd (or a variance), gamma, beta.
template <int V>
__device__ __forceinline__ void load_affine(const float* __restrict__ mean, const float* __restrict__ stat,
                                            const float* __restrict__ gamma, const float* __restrict__ beta,
                                            int64_t c0, float (&mu)[V], float (&st)[V], float (&ga)[V],
                                            float (&be)[V]) {
  load_channels(mean, c0, mu);
  load_channels(stat, c0, st);
  load_channels(gamma, c0, ga);
  load_channels(beta, c0, be);
}

// Sums two per-channel vectors over the block's row lanes in a fixed tree; valid in row lane 0.
template <int V>
__device__ __forceinline__ void block_sum2_vec(float (&a)[V], float (&b)[V]) {
  __shared__ float s_a[V][kThreads], s_b[V][kThreads];
  const int tid = thread_index();
#pragma unroll
  for (int i = 0; i < V; ++i) s_a[i][tid] = a[i], s_b[i][tid] = b[i];
  __syncthreads();
  for (int h = blockDim.y / 2; h > 0; h /= 2) {
    if (threadIdx.y < h) {
      const int o = tid + h * blockDim.x;
#pragma unroll
      for (int i = 0; i < V; ++i) {
        a[i] += s_a[i][o];
        b[i] += s_b[i][o];
        s_a[i][tid] = a[i];
        s_b[i][tid] = b[i];
      }
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) moments_vec_kernel(const T* __restrict__ x, int64_t rows,
                                                              int64_t vectors, int64_t rows_per_chunk,
                                                              float* __restrict__ part_mean,
                                                              float* __restrict__ part_m2) {
  constexpr int V = kVec<T>;
  __shared__ float s_n[kThreads], s_mean[V][kThreads], s_m2[V][kThreads];
  const int64_t v = vector_index(), channels = vectors * V;
  const int tid = thread_index();
  int64_t begin, end;
  bn_chunk_rows(blockIdx.x, rows, rows_per_chunk, begin, end);
  float shift[V], s[V], ss[V];
#pragma unroll
  for (int i = 0; i < V; ++i) shift[i] = s[i] = ss[i] = 0.f;
  float n = 0.f;
  if (v < vectors) {
    const T* col = x + v * V;
    load_vec(col + begin * channels, shift);
#pragma unroll 4
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y) {
      float xv[V];
      load_vec(col + r * channels, xv);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float d = xv[i] - shift[i];
        s[i] += d;
        ss[i] = fmaf(d, d, ss[i]);
      }
      n += 1.f;
    }
  }
  s_n[tid] = n;
  const float inv_n = n > 0.f ? 1.f / n : 0.f;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const float mean = s[i] * inv_n;
    float m2 = ss[i] - s[i] * mean;
    if (m2 < 0.f) m2 = 0.f;  // rounding; a NaN stays NaN
    s_mean[i][tid] = mean;
    s_m2[i][tid] = m2;
  }
  __syncthreads();
  for (int h = blockDim.y / 2; h > 0; h /= 2) {
    if (threadIdx.y < h) {
      const int o = tid + h * blockDim.x;
      const float na = s_n[tid], nb = s_n[o];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        bn::Moments a{na, s_mean[i][tid], s_m2[i][tid]};
        bn::chan_merge(a, bn::Moments{nb, s_mean[i][o], s_m2[i][o]});
        s_mean[i][tid] = a.mean;
        s_m2[i][tid] = a.m2;
      }
      s_n[tid] = na + nb;
    }
    __syncthreads();
  }
  if (threadIdx.y == 0 && v < vectors) {
#pragma unroll
    for (int i = 0; i < V; ++i) {
      part_mean[blockIdx.x * channels + v * V + i] = shift[i] + s_mean[i][tid];
      part_m2[blockIdx.x * channels + v * V + i] = s_m2[i][tid];
    }
  }
}

// kInfer: `stat` holds the running variance (invstd computed here); else the saved invstd.
template <typename T, bool kInfer>
__global__ void __launch_bounds__(kThreads, kMinBlocks) apply_vec_kernel(
    const T* x, const T* residual, T* y, int64_t rows, int64_t vectors, int64_t rows_per_chunk,
    const float* __restrict__ mean, const float* __restrict__ stat, const float* __restrict__ gamma,
    const float* __restrict__ beta, float eps, bool relu) {
  constexpr int V = kVec<T>;
  const int64_t v = vector_index(), channels = vectors * V, c0 = v * V;
  if (v >= vectors) return;
  float mu[V], inv[V], ga[V], be[V];
  load_affine(mean, stat, gamma, beta, c0, mu, inv, ga, be);
  if (kInfer) {
#pragma unroll
    for (int i = 0; i < V; ++i) inv[i] = bn::invstd_of(inv[i], eps);
  }
  int64_t begin, end;
  bn_chunk_rows(reversed_chunk(), rows, rows_per_chunk, begin, end);
  const int64_t step = blockDim.y;
  for (int64_t r0 = begin + threadIdx.y; r0 < end; r0 += kRowsPerIter * step) {
    float xv[kRowsPerIter][V], rv[kRowsPerIter][V];
#pragma unroll
    for (int u = 0; u < kRowsPerIter; ++u) {
      const int64_t r = r0 + u * step;
      if (r >= end) continue;
      load_vec(x + r * channels + c0, xv[u]);
      if (residual) {
        load_vec(residual + r * channels + c0, rv[u]);
      } else {
#pragma unroll
        for (int i = 0; i < V; ++i) rv[u][i] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < kRowsPerIter; ++u) {
      const int64_t r = r0 + u * step;
      if (r >= end) continue;
      float out[V];
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = bn::forward_element(xv[u][i], mu[i], inv[i], ga[i], be[i], rv[u][i], relu);
      store_vec(y + r * channels + c0, out);
    }
  }
}

// Loads one row's x, dy and (with from_y) y of the thread's channels.
template <typename T>
__device__ __forceinline__ void load_backward_row(const T* x, const T* y, const T* dy, int64_t off, bn::ReluMask mask,
                                                  float (&xv)[kVec<T>], float (&yv)[kVec<T>],
                                                  float (&dyv)[kVec<T>]) {
  load_vec(x + off, xv);
  load_vec(dy + off, dyv);
  if (mask == bn::ReluMask::from_y) {
    load_vec(y + off, yv);
  } else {
#pragma unroll
    for (int i = 0; i < kVec<T>; ++i) yv[i] = 0.f;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) grad_sums_vec_kernel(
    const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy, int64_t rows, int64_t vectors,
    int64_t rows_per_chunk, const float* __restrict__ save_mean, const float* __restrict__ save_invstd,
    const float* __restrict__ gamma, const float* __restrict__ beta, bn::ReluMask mask,
    float* __restrict__ part_g, float* __restrict__ part_gx) {
  constexpr int V = kVec<T>;
  const int64_t v = vector_index(), channels = vectors * V, c0 = v * V;
  float sg[V], sgx[V];
#pragma unroll
  for (int i = 0; i < V; ++i) sg[i] = sgx[i] = 0.f;
  if (v < vectors) {
    float mu[V], inv[V], ga[V], be[V];
    load_affine(save_mean, save_invstd, gamma, beta, c0, mu, inv, ga, be);
    int64_t begin, end;
    bn_chunk_rows(blockIdx.x, rows, rows_per_chunk, begin, end);
#pragma unroll 2
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y) {
      float xv[V], yv[V], dyv[V];
      load_backward_row(x, y, dy, r * channels + c0, mask, xv, yv, dyv);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float g = bn::masked_grad(mask, dyv[i], xv[i], yv[i], mu[i], inv[i], ga[i], be[i]);
        sg[i] += g;
        sgx[i] += g * bn::xhat_of(xv[i], mu[i], inv[i]);
      }
    }
  }
  block_sum2_vec<V>(sg, sgx);
  if (threadIdx.y == 0 && v < vectors) {
#pragma unroll
    for (int i = 0; i < V; ++i) {
      part_g[blockIdx.x * channels + c0 + i] = sg[i];
      part_gx[blockIdx.x * channels + c0 + i] = sgx[i];
    }
  }
}

// dx may alias dy (nothing here is __restrict__ that could alias).
template <typename T>
__global__ void __launch_bounds__(kThreads, kMinBlocks) dx_vec_kernel(
    const T* x, const T* y, const T* dy, T* dx, T* dresidual, int64_t rows, int64_t vectors,
    int64_t rows_per_chunk, const float* save_mean, const float* save_invstd, const float* gamma,
    const float* beta, const float* dbeta, const float* dgamma, bn::ReluMask mask) {
  constexpr int V = kVec<T>;
  const int64_t v = vector_index(), channels = vectors * V, c0 = v * V;
  if (v >= vectors) return;
  float mu[V], inv[V], ga[V], be[V];
  load_affine(save_mean, save_invstd, gamma, beta, c0, mu, inv, ga, be);
  bn::BackwardCoef k[V];
#pragma unroll
  for (int i = 0; i < V; ++i) k[i] = bn::backward_coef(ga[i], inv[i], dbeta[c0 + i], dgamma[c0 + i], rows);
  int64_t begin, end;
  bn_chunk_rows(reversed_chunk(), rows, rows_per_chunk, begin, end);
  const int64_t step = blockDim.y;
  for (int64_t r0 = begin + threadIdx.y; r0 < end; r0 += kRowsPerIter * step) {
    float xv[kRowsPerIter][V], yv[kRowsPerIter][V], dyv[kRowsPerIter][V];
#pragma unroll
    for (int u = 0; u < kRowsPerIter; ++u) {
      const int64_t r = r0 + u * step;
      if (r < end) load_backward_row(x, y, dy, r * channels + c0, mask, xv[u], yv[u], dyv[u]);
    }
#pragma unroll
    for (int u = 0; u < kRowsPerIter; ++u) {
      const int64_t r = r0 + u * step;
      if (r >= end) continue;
      float g[V], out[V];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        g[i] = bn::masked_grad(mask, dyv[u][i], xv[u][i], yv[u][i], mu[i], inv[i], ga[i], be[i]);
        out[i] = bn::backward_element(g[i], bn::xhat_of(xv[u][i], mu[i], inv[i]), k[i]);
      }
      if (dresidual) store_vec(dresidual + r * channels + c0, g);
      store_vec(dx + r * channels + c0, out);
    }
  }
}

template <typename T> const T* as(const void* p) { return static_cast<const T*>(p); }
template <typename T> T* as(void* p) { return static_cast<T*>(p); }

}  // namespace

void bn_moments_vec(cudaStream_t st, const BnGeometry& g, DType dt, const void* x, float* part_mean,
                    float* part_m2) {
  LS_FLOAT_DISPATCH(dt, T, {
    moments_vec_kernel<T><<<g.grid(), g.block(), 0, st>>>(as<T>(x), g.rows, g.vectors, g.rows_per_chunk, part_mean,
                                                           part_m2);
    CUDA_CHECK_LAUNCH();
  });
}

void bn_apply_vec(cudaStream_t st, const BnGeometry& g, DType dt, bool infer, const void* x, const void* residual,
                  void* y, const float* mean, const float* stat, const float* gamma, const float* beta, float eps,
                  bool relu) {
  LS_FLOAT_DISPATCH(dt, T, {
    if (infer)
      apply_vec_kernel<T, true><<<g.grid(), g.block(), 0, st>>>(as<T>(x), as<T>(residual), as<T>(y), g.rows,
                                                                g.vectors, g.rows_per_chunk, mean, stat, gamma,
                                                                beta, eps, relu);
    else
      apply_vec_kernel<T, false><<<g.grid(), g.block(), 0, st>>>(as<T>(x), as<T>(residual), as<T>(y), g.rows,
                                                                 g.vectors, g.rows_per_chunk, mean, stat, gamma,
                                                                 beta, eps, relu);
    CUDA_CHECK_LAUNCH();
  });
}

void bn_grad_sums_vec(cudaStream_t st, const BnGeometry& g, DType dt, const void* x, const void* y, const void* dy,
                      const float* save_mean, const float* save_invstd, const float* gamma, const float* beta,
                      bn::ReluMask mask, float* part_g, float* part_gx) {
  LS_FLOAT_DISPATCH(dt, T, {
    grad_sums_vec_kernel<T><<<g.grid(), g.block(), 0, st>>>(as<T>(x), as<T>(y), as<T>(dy), g.rows, g.vectors,
                                                             g.rows_per_chunk, save_mean, save_invstd, gamma, beta,
                                                             mask, part_g, part_gx);
    CUDA_CHECK_LAUNCH();
  });
}

void bn_dx_vec(cudaStream_t st, const BnGeometry& g, DType dt, const void* x, const void* y, const void* dy, void* dx,
               void* dresidual, const float* save_mean, const float* save_invstd, const float* gamma,
               const float* beta, const float* dbeta, const float* dgamma, bn::ReluMask mask) {
  LS_FLOAT_DISPATCH(dt, T, {
    dx_vec_kernel<T><<<g.grid(), g.block(), 0, st>>>(as<T>(x), as<T>(y), as<T>(dy), as<T>(dx), as<T>(dresidual),
                                                      g.rows, g.vectors, g.rows_per_chunk, save_mean, save_invstd,
                                                      gamma, beta, dbeta, dgamma, mask);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lockstep::cuda
