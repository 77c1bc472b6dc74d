// CPU fully connected layer, the oracle for the cuBLAS path: one OpenBLAS sgemm per product.
// Row-major x (N, In), W (Out, In), b (Out), y (N, Out):
//   y  = x W^T + b     sgemm(NoTrans, Trans)   M=N   N=Out K=In
//   dx = dy W          sgemm(NoTrans, NoTrans) M=N   N=In  K=Out
//   dW = dy^T x        sgemm(Trans, NoTrans)   M=Out N=In  K=N
//   db = sum_n dy[n]   a loop over the batch in f32, in batch order (as the CUDA kernel sums)
// The dispatcher (kernels/linear.cpp) has checked devices, dtypes and shapes; only f32 is checked here.
#include <cblas.h>

#include "kernels/args.h"
#include "kernels/linear.h"

namespace lockstep::cpu {

namespace {

struct Dims {
  int n, in, out;
};

// x (N, In) and w (Out, In), already checked by the dispatcher (kernels/linear.cpp).
Dims linear_dims(const Tensor& x, const Tensor& w) { return {int(x.dim(0)), int(x.dim(1)), int(w.dim(0))}; }

}  // namespace

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  expect_cpu_f32({&x, &w, &y}, "linear_forward");
  const Dims d = linear_dims(x, w);
  float* yp = y.data<float>();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d.n, d.out, d.in, 1.0f, x.data<float>(), d.in,
              w.data<float>(), d.in, 0.0f, yp, d.out);
  if (!bias) return;
  const float* b = bias->data<float>();
  for (int i = 0; i < d.n; ++i)
    for (int o = 0; o < d.out; ++o) yp[int64_t(i) * d.out + o] += b[o];
}

void linear_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx,
                     Tensor& dw, Tensor* dbias) {
  const char* op = "linear_backward";
  expect_cpu_f32({&x, &w, &dy, &dw}, op);
  if (dx) expect_cpu_f32({dx}, op);
  const Dims d = linear_dims(x, w);
  const float* g = dy.data<float>();
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d.n, d.in, d.out, 1.0f, g, d.out,
                w.data<float>(), d.in, 0.0f, dx->data<float>(), d.in);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d.out, d.in, d.n, 1.0f, g, d.out, x.data<float>(),
              d.in, 0.0f, dw.data<float>(), d.in);
  if (!dbias) return;
  float* db = dbias->data<float>();
  for (int o = 0; o < d.out; ++o) {
    float acc = 0.0f;
    for (int i = 0; i < d.n; ++i) acc += g[int64_t(i) * d.out + o];
    db[o] = acc;
  }
}

}  // namespace lockstep::cpu
