// CUDA fully connected layer: the three products through cublasGemmEx with fp32 accumulation
// (CUBLAS_COMPUTE_32F, never the TF32 variant), the bias add and the bias gradient in two small
// kernels. Row-major x (N, In), W (Out, In), b (Out), y (N, Out); b and db are f32.
//
// cuBLAS is column-major: a row-major (R, C) matrix with row stride C is, to cuBLAS, the
// column-major (C, R) matrix of its transpose with ld = C. So each row-major product is computed
// as its transpose:
//   y  = x W^T   <=>  y^T (Out, N)  = W (Out, In) * x^T (In, N)
//                     A = W buffer, seen as W^T (In, Out): op T, lda In;  B = x^T: op N, ldb In;
//                     C = y^T: ldc Out;  m = Out, n = N, k = In
//   dx = dy W    <=>  dx^T (In, N)  = W^T (In, Out) * dy^T (Out, N)
//                     A = W^T: op N, lda In;  B = dy^T: op N, ldb Out;  C: ldc In;  m = In, n = N, k = Out
//   dW = dy^T x  <=>  dW^T (In, Out) = x^T (In, N) * dy (N, Out)
//                     A = x^T: op N, lda In;  B = dy buffer seen as dy^T (Out, N): op T, ldb Out;
//                     C = dW^T: ldc In;  m = In, n = Out, k = N
// The dispatcher (kernels/linear.cpp) has checked devices, dtypes and shapes.
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/linear.h"

namespace lockstep::cuda {

// y[i, o] += b[o] over y (N, Out), in fp32, rounded once to y's type.
template <typename T>
__global__ void add_bias_kernel(T* __restrict__ y, const float* __restrict__ b, int64_t total, int out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<T>(to_f32(y[i]) + b[i % out]);
}

// db[o] = sum_n dy[n, o]: one thread per column, summed in batch order in fp32, so the result is
// deterministic and equal to the CPU loop's. Neighbouring threads read neighbouring columns.
template <typename T>
__global__ void bias_grad_kernel(const T* __restrict__ dy, float* __restrict__ db, int n, int out) {
  for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < out; o += gridDim.x * blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < n; ++i) acc += to_f32(dy[int64_t(i) * out + o]);
    db[o] = acc;
  }
}

namespace {

cudaDataType_t cublas_type(DType dt) {
  switch (dt) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: break;
  }
  LS_CHECK(false, "linear: cuBLAS GEMMs take f32, bf16 or f16, got " << dtype_name(dt));
}

struct Dims {
  int n, in, out;
};

// x (N, In) and w (Out, In), already checked by the dispatcher (kernels/linear.cpp).
Dims linear_dims(const Tensor& x, const Tensor& w) { return {int(x.dim(0)), int(x.dim(1)), int(w.dim(0))}; }

// C (m, n) = op(A) (m, k) * op(B) (k, n), column-major, all of one dtype, fp32 accumulation.
void gemm(Context& ctx, DType dt, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
          const void* a, int lda, const void* b, int ldb, void* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;  // float scalars for CUBLAS_COMPUTE_32F
  const cudaDataType_t t = cublas_type(dt);
  CUBLAS_CHECK(cublasGemmEx(ctx.cuda().cublas_handle(), ta, tb, m, n, k, &one, a, t, lda, b, t, ldb, &zero, c, t, ldc,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const Dims d = linear_dims(x, w);
  gemm(ctx, x.dtype(), CUBLAS_OP_T, CUBLAS_OP_N, d.out, d.n, d.in, w.raw(), d.in, x.raw(), d.in, y.raw(), d.out);
  if (!bias) return;
  const int64_t total = int64_t(d.n) * d.out;
  LS_FLOAT_DISPATCH(y.dtype(), T, {
    add_bias_kernel<T><<<grid_for(total), kThreads, 0, stream(ctx)>>>(static_cast<T*>(y.raw()),
                                                                      bias->data<float>(), total, d.out);
  });
  CUDA_CHECK_LAUNCH();
}

void linear_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx,
                     Tensor& dw, Tensor* dbias) {
  const Dims d = linear_dims(x, w);
  const DType dt = x.dtype();
  if (dx) gemm(ctx, dt, CUBLAS_OP_N, CUBLAS_OP_N, d.in, d.n, d.out, w.raw(), d.in, dy.raw(), d.out, dx->raw(), d.in);
  gemm(ctx, dt, CUBLAS_OP_N, CUBLAS_OP_T, d.in, d.out, d.n, x.raw(), d.in, dy.raw(), d.out, dw.raw(), d.in);
  if (!dbias) return;
  LS_FLOAT_DISPATCH(dt, T, {
    bias_grad_kernel<T><<<grid_for(d.out), kThreads, 0, stream(ctx)>>>(static_cast<const T*>(dy.raw()),
                                                                       dbias->data<float>(), d.n, d.out);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
