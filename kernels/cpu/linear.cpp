// CPU fully connected layer, the oracle for the cuBLAS path: one OpenBLAS sgemm per product.
// Row-major x (N, In), W (Out, In), b (Out), y (N, Out):
//   y  = x W^T + b     sgemm(NoTrans, Trans)   M=N   N=Out K=In
//   dx = dy W          sgemm(NoTrans, NoTrans) M=N   N=In  K=Out
//   dW = dy^T x        sgemm(Trans, NoTrans)   M=Out N=In  K=N
//   db = sum_n dy[n]   a loop over the batch in f32, in batch order (as the CUDA kernel sums)
#include <cblas.h>

#include <climits>

#include "kernels/args.h"
#include "kernels/linear.h"

namespace lockstep::cpu {

namespace {

struct Dims {
  int n, in, out;
};

// Checks x (N, In) and w (Out, In) and returns the sizes.
Dims linear_dims(const Context& ctx, const Tensor& x, const Tensor& w, const char* op) {
  expect_on(ctx, x, op, "x");
  expect_on(ctx, w, op, "w");
  LS_CHECK(x.rank() == 2, op << ": x must be (N, In), got " << x.shape().str());
  LS_CHECK(w.rank() == 2, op << ": w must be (Out, In), got " << w.shape().str());
  LS_CHECK(x.dim(1) == w.dim(1), op << ": x " << x.shape().str() << " and w " << w.shape().str()
                                    << " disagree on In");
  for (int64_t d : {x.dim(0), x.dim(1), w.dim(0)})
    LS_CHECK(d > 0 && d <= INT_MAX, op << ": sizes must be in [1, 2^31-1], got x " << x.shape().str()
                                       << " w " << w.shape().str());
  return {int(x.dim(0)), int(x.dim(1)), int(w.dim(0))};
}

}  // namespace

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const char* op = "linear_forward";
  const Dims d = linear_dims(ctx, x, w, op);
  expect_on(ctx, y, op, "y");
  expect_shape(y, {d.n, d.out}, op, "y");
  expect_cpu_f32({&x, &w, &y}, op);
  if (bias) {
    expect_on(ctx, *bias, op, "bias");
    expect_dtype(*bias, DType::f32, op, "bias");
    expect_shape(*bias, {d.out}, op, "bias");
  }
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
  const Dims d = linear_dims(ctx, x, w, op);
  expect_on(ctx, dy, op, "dy");
  expect_on(ctx, dw, op, "dw");
  expect_shape(dy, {d.n, d.out}, op, "dy");
  expect_shape(dw, w.shape(), op, "dw");
  expect_cpu_f32({&x, &w, &dy, &dw}, op);
  if (dx) {
    expect_on(ctx, *dx, op, "dx");
    expect_shape(*dx, x.shape(), op, "dx");
    expect_cpu_f32({dx}, op);
  }
  if (dbias) {
    expect_on(ctx, *dbias, op, "dbias");
    expect_dtype(*dbias, DType::f32, op, "dbias");
    expect_shape(*dbias, {d.out}, op, "dbias");
  }
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
