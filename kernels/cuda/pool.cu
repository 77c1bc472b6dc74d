// CUDA max pooling and global average pooling on NHWC f32 / bf16 / f16 tensors, fp32 math,
// grid-stride loops with the channel fastest so neighbouring threads touch neighbouring memory.
// Same rules as the CPU reference (kernels/cpu/pool.cpp): padding is skipped, the maximum is the
// first element of the window in row-major order greater than every earlier one (NaN wins and
// stays), and backward sends each output's gradient to the first element of its window, in
// row-major order, equal to y.
// Max-pool backward is a gather, not a scatter: one thread per input element visits the windows
// that contain it (in p, then q order), and adds dy of each window whose first maximum it is.
// No atomics, so dx is deterministic and bit-identical to the CPU's order of summation.
// Max pooling has a vector form (16 bytes of channels per thread: 8 bf16) taken whenever C and
// the tensors' alignment allow it: the index arithmetic (64-bit divisions) and the window's
// loads are shared by 8 channels; the same rules per channel, so the same results.
// The forward may record each output's winner (`where`, kernels/pool.h); the backward from it is
// again a gather over the windows containing each input element, but reads one byte per channel
// and window instead of y and the window's earlier elements of x, and computes its indices in
// 32 bits where the tensor allows (64-bit division is a long software sequence on the GPU).
// The dispatcher (kernels/pool.cpp) has checked devices, dtypes and shapes.
#include "kernels/pool.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/vec.cuh"

namespace lockstep::cuda {

namespace {

struct PoolDims {
  int64_t N, H, W, C, P, Q;
  int window, stride, pad;
};

// Flat index i of an (N, A, B, C) tensor as (n, a, b, c).
struct Index4 {
  int64_t n, a, b, c;
};
__device__ __forceinline__ Index4 unflatten(int64_t i, int64_t A, int64_t B, int64_t C) {
  Index4 r;
  r.c = i % C;
  int64_t t = i / C;
  r.b = t % B;
  t /= B;
  r.a = t % A;
  r.n = t / A;
  return r;
}

// The windows (p, q) whose rows and columns contain input element (h, w):
// p * stride - pad <= h <= p * stride - pad + window - 1, columns alike.
template <typename I>
struct Windows {
  I p_begin, p_end, q_begin, q_end;
};
template <typename I>
__device__ __forceinline__ Windows<I> windows_containing(I h, I w, int window, int stride, int pad, I P, I Q) {
  const I lo_h = h + pad - window + 1, lo_w = w + pad - window + 1;
  Windows<I> r;
  r.p_begin = lo_h <= 0 ? I(0) : (lo_h + stride - 1) / stride;
  r.q_begin = lo_w <= 0 ? I(0) : (lo_w + stride - 1) / stride;
  r.p_end = min(I((h + pad) / stride + 1), P);
  r.q_end = min(I((w + pad) / stride + 1), Q);
  return r;
}

// where (may be null): the winner's index in its window, kNoWinner for a NaN maximum.
template <typename T>
__global__ void maxpool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, uint8_t* __restrict__ where,
                                       PoolDims d) {
  const int64_t total = d.N * d.P * d.Q * d.C;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < total; o += int64_t(gridDim.x) * blockDim.x) {
    const auto [n, p, q, c] = unflatten(o, d.P, d.Q, d.C);
    const int64_t h0 = p * d.stride - d.pad, w0 = q * d.stride - d.pad;
    const int64_t hb = max(h0, int64_t(0)), he = min(h0 + d.window, d.H);
    const int64_t wb = max(w0, int64_t(0)), we = min(w0 + d.window, d.W);
    bool first = true;
    float best = 0.f;
    int at = 0;
    for (int64_t h = hb; h < he; ++h)
      for (int64_t w = wb; w < we; ++w) {
        const float v = to_f32(x[((n * d.H + h) * d.W + w) * d.C + c]);
        if (first || v > best || v != v) {
          best = v;
          at = static_cast<int>((h - h0) * d.window + (w - w0));
        }
        first = false;
      }
    y[o] = from_f32<T>(best);
    if (where) where[o] = best != best ? kNoWinner : static_cast<uint8_t>(at);
  }
}

// True when input (h, w) is the first element of the window starting at (h0, w0), in row-major
// order, whose value equals yv. x points at (n, 0, 0, c).
template <typename T>
__device__ bool is_first_max(const T* x, const PoolDims& d, int64_t h0, int64_t w0, int64_t h, int64_t w,
                             float yv) {
  const int64_t hb = max(h0, int64_t(0)), he = min(h0 + d.window, d.H);
  const int64_t wb = max(w0, int64_t(0)), we = min(w0 + d.window, d.W);
  for (int64_t i = hb; i < he; ++i)
    for (int64_t j = wb; j < we; ++j)
      if (to_f32(x[(i * d.W + j) * d.C]) == yv) return i == h && j == w;
  return false;
}

template <typename T>
__global__ void maxpool_backward_kernel(const T* __restrict__ x, const T* __restrict__ y,
                                        const T* __restrict__ dy, T* __restrict__ dx, PoolDims d) {
  const int64_t total = d.N * d.H * d.W * d.C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const auto [n, h, w, c] = unflatten(i, d.H, d.W, d.C);
    const float xv = to_f32(x[i]);
    const Windows<int64_t> win = windows_containing<int64_t>(h, w, d.window, d.stride, d.pad, d.P, d.Q);
    const T* xnc = x + n * d.H * d.W * d.C + c;
    float acc = 0.f;
    for (int64_t p = win.p_begin; p < win.p_end; ++p)
      for (int64_t q = win.q_begin; q < win.q_end; ++q) {
        const int64_t o = ((n * d.P + p) * d.Q + q) * d.C + c;
        const float yv = to_f32(y[o]);
        if (xv == yv && is_first_max(xnc, d, p * d.stride - d.pad, q * d.stride - d.pad, h, w, yv))
          acc += to_f32(dy[o]);
      }
    dx[i] = from_f32<T>(acc);
  }
}

// ---- vector forms: thread o owns channels [cv * V, cv * V + V) of one output (forward) or one
// input element (backward) ----

// V winner bytes of one output: one 4- or 8-byte access (the caller checked the alignment).
template <int V>
__device__ __forceinline__ void store_where(uint8_t* p, const uint8_t (&at)[V]) {
  static_assert(V == 4 || V == 8, "4 or 8 channels per vector");
  uint32_t lo = 0, hi = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) lo |= uint32_t(at[k]) << (8 * k);
  if constexpr (V == 8) {
#pragma unroll
    for (int k = 0; k < 4; ++k) hi |= uint32_t(at[4 + k]) << (8 * k);
    *reinterpret_cast<uint2*>(p) = make_uint2(lo, hi);
  } else {
    *reinterpret_cast<uint32_t*>(p) = lo;
  }
}

template <int V>
__device__ __forceinline__ void load_where(const uint8_t* p, uint8_t (&at)[V]) {
  static_assert(V == 4 || V == 8, "4 or 8 channels per vector");
  uint32_t w[2] = {0, 0};
  if constexpr (V == 8) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    w[0] = v.x, w[1] = v.y;
  } else {
    w[0] = *reinterpret_cast<const uint32_t*>(p);
  }
#pragma unroll
  for (int k = 0; k < V; ++k) at[k] = static_cast<uint8_t>(w[k / 4] >> (8 * (k % 4)));
}

template <typename T>
__global__ void maxpool_forward_vec_kernel(const T* __restrict__ x, T* __restrict__ y, uint8_t* __restrict__ where,
                                           PoolDims d) {
  constexpr int V = kVec<T>;
  const int64_t CV = d.C / V;
  const int64_t total = d.N * d.P * d.Q * CV;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < total; o += int64_t(gridDim.x) * blockDim.x) {
    const auto [n, p, q, cv] = unflatten(o, d.P, d.Q, CV);
    const int64_t h0 = p * d.stride - d.pad, w0 = q * d.stride - d.pad;
    const int64_t hb = max(h0, int64_t(0)), he = min(h0 + d.window, d.H);
    const int64_t wb = max(w0, int64_t(0)), we = min(w0 + d.window, d.W);
    const T* xn = x + n * d.H * d.W * d.C + cv * V;
    bool first = true;
    float best[V];
    uint8_t at[V];
#pragma unroll
    for (int k = 0; k < V; ++k) best[k] = 0.f, at[k] = 0;
    for (int64_t h = hb; h < he; ++h)
      for (int64_t w = wb; w < we; ++w) {
        float v[V];
        load_vec(xn + (h * d.W + w) * d.C, v);
        const uint8_t here = static_cast<uint8_t>((h - h0) * d.window + (w - w0));
#pragma unroll
        for (int k = 0; k < V; ++k)
          if (first || v[k] > best[k] || v[k] != v[k]) best[k] = v[k], at[k] = here;
        first = false;
      }
    store_vec(y + o * V, best);
    if (where) {
#pragma unroll
      for (int k = 0; k < V; ++k)
        if (best[k] != best[k]) at[k] = kNoWinner;
      store_where<V>(where + o * V, at);
    }
  }
}

// acc[k] += g[k] for the channels k set in mask; g is loaded only when some are.
template <typename T>
__device__ __forceinline__ void add_masked(const T* g, uint32_t mask, float (&acc)[kVec<T>]) {
  if (!mask) return;
  float v[kVec<T>];
  load_vec(g, v);
#pragma unroll
  for (int k = 0; k < kVec<T>; ++k)
    if (mask & (1u << k)) acc[k] += v[k];
}

template <typename T>
__global__ void maxpool_backward_vec_kernel(const T* __restrict__ x, const T* __restrict__ y,
                                            const T* __restrict__ dy, T* __restrict__ dx, PoolDims d) {
  constexpr int V = kVec<T>;
  static_assert(V <= 32, "one mask bit per channel");
  const int64_t CV = d.C / V;
  const int64_t total = d.N * d.H * d.W * CV;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const auto [n, h, w, cv] = unflatten(i, d.H, d.W, CV);
    float xv[V], acc[V];
    load_vec(x + i * V, xv);
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = 0.f;
    const Windows<int64_t> win = windows_containing<int64_t>(h, w, d.window, d.stride, d.pad, d.P, d.Q);
    const T* xn = x + n * d.H * d.W * d.C + cv * V;
    for (int64_t p = win.p_begin; p < win.p_end; ++p)
      for (int64_t q = win.q_begin; q < win.q_end; ++q) {
        const int64_t o = ((n * d.P + p) * d.Q + q) * d.C + cv * V;
        float yv[V];
        load_vec(y + o, yv);
        uint32_t mask = 0;  // channels whose maximum x(h, w) equals
#pragma unroll
        for (int k = 0; k < V; ++k)
          if (xv[k] == yv[k]) mask |= 1u << k;
        // Keep the channels where no element before (h, w), in row-major order, equals the maximum.
        const int64_t h0 = p * d.stride - d.pad, w0 = q * d.stride - d.pad;
        const int64_t hb = max(h0, int64_t(0)), wb = max(w0, int64_t(0)), we = min(w0 + d.window, d.W);
        for (int64_t a = hb; a <= h && mask; ++a)
          for (int64_t b = wb; b < we && mask; ++b) {
            if (a == h && b == w) break;
            float e[V];
            load_vec(xn + (a * d.W + b) * d.C, e);
#pragma unroll
            for (int k = 0; k < V; ++k)
              if (e[k] == yv[k]) mask &= ~(1u << k);
          }
        add_masked(dy + o, mask, acc);
      }
    store_vec(dx + i * V, acc);
  }
}

// ---- the backward from recorded winners: thread i owns input element (n, h, w) and V channels
// (V = 1: the scalar form), I the index type (int when the tensors allow) ----

template <typename I>
struct WhereDims {
  I N, H, W, C, P, Q;
  int window, stride, pad;
};

template <typename I>
WhereDims<I> where_dims(const PoolDims& d) {
  return WhereDims<I>{I(d.N), I(d.H), I(d.W), I(d.C), I(d.P), I(d.Q), d.window, d.stride, d.pad};
}

template <typename T, int V, typename I>
__global__ void maxpool_backward_where_kernel(const uint8_t* __restrict__ where, const T* __restrict__ dy,
                                              T* __restrict__ dx, WhereDims<I> d) {
  const I CV = d.C / V;
  const I total = d.N * d.H * d.W * CV;
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total; i += I(gridDim.x) * I(blockDim.x)) {
    const I cv = i % CV;
    I t = i / CV;
    const I w = t % d.W;
    t /= d.W;
    const I h = t % d.H, n = t / d.H;
    float acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = 0.f;
    const Windows<I> win = windows_containing<I>(h, w, d.window, d.stride, d.pad, d.P, d.Q);
    for (I p = win.p_begin; p < win.p_end; ++p)
      for (I q = win.q_begin; q < win.q_end; ++q) {
        const I o = ((n * d.P + p) * d.Q + q) * d.C + cv * V;
        const uint8_t here = static_cast<uint8_t>((h - (p * d.stride - d.pad)) * d.window + (w - (q * d.stride - d.pad)));
        if constexpr (V == 1) {
          if (where[o] == here) acc[0] += to_f32(dy[o]);
        } else {
          uint8_t at[V];
          load_where<V>(where + o, at);
          uint32_t mask = 0;
#pragma unroll
          for (int k = 0; k < V; ++k)
            if (at[k] == here) mask |= 1u << k;
          add_masked(dy + o, mask, acc);
        }
      }
    if constexpr (V == 1) dx[i] = from_f32<T>(acc[0]);
    else store_vec(dx + i * V, acc);
  }
}

template <typename T>
__global__ void global_avgpool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t N,
                                              int64_t HW, int64_t C) {
  const float inv = 1.0f / static_cast<float>(HW);
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < N * C; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = o / C, c = o % C;
    const T* p = x + n * HW * C + c;
    float s = 0.f;
    for (int64_t i = 0; i < HW; ++i) s += to_f32(p[i * C]);
    y[o] = from_f32<T>(s * inv);
  }
}

template <typename T>
__global__ void global_avgpool_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, int64_t N,
                                               int64_t HW, int64_t C) {
  const float inv = 1.0f / static_cast<float>(HW);
  const int64_t total = N * HW * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % C, n = i / (HW * C);
    dx[i] = from_f32<T>(to_f32(dy[n * C + c]) * inv);
  }
}

// The vector kernels need whole 16-byte vectors of channels at 16-byte aligned addresses.
bool use_vector(const PoolDims& d, int vec, std::initializer_list<const void*> ptrs) {
  return d.C % vec == 0 && aligned16(ptrs);
}

PoolDims pool_dims(const PoolShape& s, const Tensor& x) {
  return PoolDims{x.dim(0), x.dim(1), x.dim(2), x.dim(3), s.out(static_cast<int>(x.dim(1))),
                  s.out(static_cast<int>(x.dim(2))), s.window, s.stride, s.pad};
}

}  // namespace

namespace {

void launch_maxpool_forward(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y, uint8_t* where) {
  const PoolDims d = pool_dims(shape, x);
  const int64_t n = y.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    // The winners go V bytes at a time: aligned to V, which a 16-byte aligned y's offset keeps.
    if (use_vector(d, kVec<T>, {x.raw(), y.raw()}) &&
        (where == nullptr || reinterpret_cast<uintptr_t>(where) % kVec<T> == 0))
      maxpool_forward_vec_kernel<T><<<grid_for(n / kVec<T>), kThreads, 0, stream(ctx)>>>(
          static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), where, d);
    else
      maxpool_forward_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
          static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), where, d);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void maxpool_forward(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y) {
  launch_maxpool_forward(ctx, shape, x, y, nullptr);
}

void maxpool_forward_where(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y, Tensor& where) {
  launch_maxpool_forward(ctx, shape, x, y, where.data<uint8_t>());
}

void maxpool_backward_where(Context& ctx, const PoolShape& shape, const Tensor& where, const Tensor& dy,
                            Tensor& dx) {
  const PoolDims d = pool_dims(shape, dx);
  const int64_t n = dx.numel();
  if (n == 0) return;
  // int indices while every index and the grid-stride step past the last stay below 2^31.
  const bool small = n < (int64_t(1) << 30) && dy.numel() < (int64_t(1) << 30);
  const uint8_t* pw = where.data<uint8_t>();
  LS_FLOAT_DISPATCH(dy.dtype(), T, {
    constexpr int V = kVec<T>;
    const auto* pdy = static_cast<const T*>(dy.raw());
    auto* pdx = static_cast<T*>(dx.raw());
    const bool vector = use_vector(d, V, {pdy, pdx}) && reinterpret_cast<uintptr_t>(pw) % V == 0;
    const int64_t threads = vector ? n / V : n;
    if (vector && small)
      maxpool_backward_where_kernel<T, V, int><<<grid_for(threads), kThreads, 0, stream(ctx)>>>(pw, pdy, pdx, where_dims<int>(d));
    else if (vector)
      maxpool_backward_where_kernel<T, V, int64_t><<<grid_for(threads), kThreads, 0, stream(ctx)>>>(pw, pdy, pdx, where_dims<int64_t>(d));
    else if (small)
      maxpool_backward_where_kernel<T, 1, int><<<grid_for(threads), kThreads, 0, stream(ctx)>>>(pw, pdy, pdx, where_dims<int>(d));
    else
      maxpool_backward_where_kernel<T, 1, int64_t><<<grid_for(threads), kThreads, 0, stream(ctx)>>>(pw, pdy, pdx, where_dims<int64_t>(d));
  });
  CUDA_CHECK_LAUNCH();
}

void maxpool_backward(Context& ctx, const PoolShape& shape, const Tensor& x, const Tensor& y,
                      const Tensor& dy, Tensor& dx) {
  const PoolDims d = pool_dims(shape, x);
  const int64_t n = dx.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    const auto* px = static_cast<const T*>(x.raw());
    const auto* py = static_cast<const T*>(y.raw());
    const auto* pdy = static_cast<const T*>(dy.raw());
    auto* pdx = static_cast<T*>(dx.raw());
    if (use_vector(d, kVec<T>, {px, py, pdy, pdx}))
      maxpool_backward_vec_kernel<T><<<grid_for(n / kVec<T>), kThreads, 0, stream(ctx)>>>(px, py, pdy, pdx, d);
    else
      maxpool_backward_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(px, py, pdy, pdx, d);
  });
  CUDA_CHECK_LAUNCH();
}

void global_avgpool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  const int64_t N = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  if (N * C == 0) return;
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    global_avgpool_forward_kernel<T><<<grid_for(N * C), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), N, HW, C);
  });
  CUDA_CHECK_LAUNCH();
}

void global_avgpool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  const int64_t N = dx.dim(0), HW = dx.dim(1) * dx.dim(2), C = dx.dim(3);
  const int64_t n = dx.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(dy.dtype(), T, {
    global_avgpool_backward_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), N, HW, C);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
