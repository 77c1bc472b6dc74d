// CUDA softmax cross-entropy with label smoothing on f32 / bf16 / f16 logits, fp32 math.
// One block per sample (grid-stride over samples), looping over the K classes (up to ~22k):
//   pass 1: block max of the row;
//   pass 2: block sums of exp(z_k - m) and (z_k - m), and the count of logits > the label's;
//   pass 3: dlogits from the shared formulas of kernels/loss_math.h (skipped for evaluation).
// Every read of a row ends at a block barrier before pass 3 writes it, so dlogits may alias
// logits. Block reductions combine warps in a fixed order: per-sample values are deterministic.
// Thread 0 of each block sums its samples' loss and counts and writes them to the context's
// reduce scratch (one slot per block, at most kLossBlocks blocks); a one-warp kernel then adds the
// blocks' partials in a fixed order to stats. So the loss sum is the same bits every run, whatever
// order the blocks finish in (float atomics would not be), and a captured graph replays it alike.
// A label outside [0, K) is never used as an index: that row's dlogits are 0, it counts as wrong
// for top-1 and top-5, and it adds NaN to the loss sum so the bad batch is visible (the CPU
// backend throws instead).
// The dispatcher (kernels/loss.cpp) has checked devices, dtypes, shapes and the smoothing; the
// kernel's int sizes are checked here.
#include <cmath>

#include "kernels/loss.h"
#include "kernels/loss_math.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

namespace {

constexpr int kLossThreads = 256;  // a multiple of 32
constexpr int kWarps = kLossThreads / 32;
// Blocks of the row kernel (each takes rows blockIdx.x, + gridDim.x, ...): three partials each.
constexpr int kLossBlocks = 1024;
static_assert(3 * kLossBlocks <= CudaState::kReduceScratchFloats, "the loss partials fit the scratch");

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  template <typename V> __device__ V operator()(V a, V b) const { return a + b; }
};

// Reduces v over the block; every thread gets the result. scratch holds kWarps values and may be
// reused by the next call (the leading barrier guards it).
template <typename V, typename Op>
__device__ V block_reduce(V v, Op op, V* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  V r = scratch[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, scratch[w]);
  return r;
}

template <typename T>
__global__ void __launch_bounds__(kLossThreads)
softmax_ce_kernel(const T* logits, const int32_t* __restrict__ labels, T* dlogits,
                  float* __restrict__ partials, int N, int K, float smoothing, float grad_scale) {
  __shared__ float scratch_f[kWarps];
  __shared__ int scratch_i[kWarps];
  const int k5 = ls_ce_top5_k(K);
  float block_loss = 0.f, block_top1 = 0.f, block_top5 = 0.f;  // used by thread 0
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const T* row = logits + int64_t(n) * K;
    const int label = labels[n];
    const bool valid = label >= 0 && label < K;
    if (!valid) {  // uniform across the block: no barrier is skipped by some threads only
      if (dlogits)
        for (int k = threadIdx.x; k < K; k += blockDim.x) dlogits[int64_t(n) * K + k] = from_f32<T>(0.f);
      if (threadIdx.x == 0) block_loss += NAN;
      continue;
    }
    const float zy = to_f32(row[label]);
    float m = -INFINITY;
    for (int k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, to_f32(row[k]));
    m = block_reduce(m, MaxOp{}, scratch_f);
    float sum_exp = 0.f, sum_shifted = 0.f;
    int greater = 0;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
      const float z = to_f32(row[k]);
      sum_exp += expf(z - m);
      sum_shifted += z - m;
      greater += z > zy;
    }
    sum_exp = block_reduce(sum_exp, SumOp{}, scratch_f);
    sum_shifted = block_reduce(sum_shifted, SumOp{}, scratch_f);
    greater = block_reduce(greater, SumOp{}, scratch_i);
    const float log_s = logf(sum_exp);
    if (threadIdx.x == 0) {
      block_loss += ls_ce_sample_loss(log_s, zy - m, sum_shifted, smoothing, K);
      block_top1 += ls_ce_topk_correct(greater, 1) ? 1.f : 0.f;
      block_top5 += ls_ce_topk_correct(greater, k5) ? 1.f : 0.f;
    }
    if (dlogits) {
      T* drow = dlogits + int64_t(n) * K;
      for (int k = threadIdx.x; k < K; k += blockDim.x)
        drow[k] = from_f32<T>(ls_ce_dlogit(to_f32(row[k]), m, log_s, k == label, smoothing, K, grad_scale));
    }
    // The next row's first reduction starts with a barrier, so no thread of this block still
    // reads the scratch of this row when it is overwritten.
  }
  if (threadIdx.x == 0) {
    partials[3 * blockIdx.x + 0] = block_loss;
    partials[3 * blockIdx.x + 1] = block_top1;
    partials[3 * blockIdx.x + 2] = block_top5;
  }
}

// One warp: lane l sums the partials of blocks l, l + 32, ... in order, then the lanes combine in
// a fixed butterfly; lane 0 adds the totals to stats. The same order every run.
__global__ void loss_total_kernel(const float* __restrict__ partials, int blocks, float* __restrict__ stats) {
  float s[3] = {0.f, 0.f, 0.f};
  for (int b = threadIdx.x; b < blocks; b += 32)
    for (int j = 0; j < 3; ++j) s[j] += partials[3 * b + j];
  for (int o = 16; o > 0; o >>= 1)
    for (int j = 0; j < 3; ++j) s[j] += __shfl_xor_sync(0xffffffffu, s[j], o);
  if (threadIdx.x == 0)
    for (int j = 0; j < 3; ++j) stats[j] += s[j];
}

}  // namespace

void softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                           float label_smoothing, float grad_scale, Tensor* dlogits, Tensor& stats) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  LS_CHECK(N < (int64_t(1) << 31) && K < (int64_t(1) << 31),
           "softmax_cross_entropy: logits " << logits.shape().str() << " too large");
  if (N == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>(N, kLossBlocks));
  float* partials = ctx.cuda().reduce_scratch;
  LS_CHECK(partials, "softmax_cross_entropy: this cuda:" << ctx.cuda().device << " context has no reduce scratch");
  LS_FLOAT_DISPATCH(logits.dtype(), T, {
    softmax_ce_kernel<T><<<blocks, kLossThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(logits.raw()), labels.data<int32_t>(),
        dlogits ? static_cast<T*>(dlogits->raw()) : nullptr, partials, static_cast<int>(N), static_cast<int>(K),
        label_smoothing, grad_scale);
  });
  CUDA_CHECK_LAUNCH();
  loss_total_kernel<<<1, 32, 0, stream(ctx)>>>(partials, blocks, stats.data<float>());
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
