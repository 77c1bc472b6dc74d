// Tests of the fully connected layer: the CPU sgemm path against naive loops (exactly, on small
// integers) and finite differences, the cuBLAS path against the CPU for f32 / bf16 / f16 with and
// without bias, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/linear.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

struct Dims {
  int n, in, out;
};

// Batch 1, a 1x1 layer, odd sizes, and one big enough to leave OpenBLAS's small-matrix path.
std::vector<Dims> cpu_dims() { return {{1, 1, 1}, {1, 7, 5}, {3, 17, 10}, {5, 3, 9}, {8, 64, 33}}; }

// y = x W^T + b in double, by the definition.
std::vector<double> naive_forward(const Dims& d, const float* x, const float* w, const float* b) {
  std::vector<double> y(size_t(d.n) * d.out);
  for (int i = 0; i < d.n; ++i)
    for (int o = 0; o < d.out; ++o) {
      double acc = b ? b[o] : 0.0;
      for (int j = 0; j < d.in; ++j) acc += double(x[i * d.in + j]) * w[o * d.in + j];
      y[size_t(i) * d.out + o] = acc;
    }
  return y;
}

std::vector<float> to_floats(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

uint32_t seed_of(const Dims& d, uint32_t salt) { return uint32_t(d.n * 10007 + d.in * 101 + d.out) ^ salt; }

TEST(LinearCpu, ForwardMatchesNaiveLoopsExactly) {
  Context ctx(Device::cpu());
  for (const Dims& d : cpu_dims())
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "N=" << d.n << " In=" << d.in << " Out=" << d.out << " bias=" << with_bias);
      OwnedTensor x = test::host_tensor({d.n, d.in}, test::random_small_ints(int64_t(d.n) * d.in, seed_of(d, 1)));
      OwnedTensor w = test::host_tensor({d.out, d.in}, test::random_small_ints(int64_t(d.out) * d.in, seed_of(d, 2)));
      OwnedTensor b = test::host_tensor({d.out}, test::random_small_ints(d.out, seed_of(d, 3)));
      OwnedTensor y(Device::cpu(), {d.n, d.out}, DType::f32);
      test::poison(ctx, y);
      linear_forward(ctx, x, w, with_bias ? &b.view() : nullptr, y);
      EXPECT_EQ(test::host_values(y),
                to_floats(naive_forward(d, x.data<float>(), w.data<float>(), with_bias ? b.data<float>() : nullptr)));
    }
}

TEST(LinearCpu, BackwardMatchesNaiveLoopsExactly) {
  Context ctx(Device::cpu());
  for (const Dims& d : cpu_dims()) {
    SCOPED_TRACE(::testing::Message() << "N=" << d.n << " In=" << d.in << " Out=" << d.out);
    auto xv = test::random_small_ints(int64_t(d.n) * d.in, seed_of(d, 4));
    auto wv = test::random_small_ints(int64_t(d.out) * d.in, seed_of(d, 5));
    auto gv = test::random_small_ints(int64_t(d.n) * d.out, seed_of(d, 6));
    std::vector<double> dx_ref(xv.size(), 0.0), dw_ref(wv.size(), 0.0), db_ref(d.out, 0.0);
    for (int i = 0; i < d.n; ++i)
      for (int o = 0; o < d.out; ++o) {
        const double g = gv[size_t(i) * d.out + o];
        db_ref[o] += g;
        for (int j = 0; j < d.in; ++j) {
          dx_ref[size_t(i) * d.in + j] += g * wv[size_t(o) * d.in + j];
          dw_ref[size_t(o) * d.in + j] += g * xv[size_t(i) * d.in + j];
        }
      }
    OwnedTensor x = test::host_tensor({d.n, d.in}, xv), w = test::host_tensor({d.out, d.in}, wv);
    OwnedTensor dy = test::host_tensor({d.n, d.out}, gv);
    OwnedTensor dx(Device::cpu(), {d.n, d.in}, DType::f32), dw(Device::cpu(), {d.out, d.in}, DType::f32);
    OwnedTensor db(Device::cpu(), {d.out}, DType::f32);
    test::poison(ctx, dx);
    test::poison(ctx, dw);
    test::poison(ctx, db);
    linear_backward(ctx, x, w, dy, &dx.view(), dw, &db.view());
    EXPECT_EQ(test::host_values(dx), to_floats(dx_ref));
    EXPECT_EQ(test::host_values(dw), to_floats(dw_ref));
    EXPECT_EQ(test::host_values(db), to_floats(db_ref));
    // The optional gradients may be skipped; dW is still overwritten.
    test::poison(ctx, dw);
    linear_backward(ctx, x, w, dy, nullptr, dw, nullptr);
    EXPECT_EQ(test::host_values(dw), to_floats(dw_ref));
  }
}

// loss = weighted_sum(y, r), so dL/dy = r: dx, dW and db from backward with dy = r must match
// central differences of the loss.
TEST(LinearCpu, BackwardMatchesFiniteDifferences) {
  Context ctx(Device::cpu());
  for (const Dims& d : cpu_dims()) {
    SCOPED_TRACE(::testing::Message() << "N=" << d.n << " In=" << d.in << " Out=" << d.out);
    OwnedTensor x = test::host_tensor({d.n, d.in}, test::random_floats(int64_t(d.n) * d.in, seed_of(d, 7)));
    OwnedTensor w = test::host_tensor({d.out, d.in}, test::random_floats(int64_t(d.out) * d.in, seed_of(d, 8)));
    OwnedTensor b = test::host_tensor({d.out}, test::random_floats(d.out, seed_of(d, 9)));
    std::vector<float> r = test::random_floats(int64_t(d.n) * d.out, seed_of(d, 10));
    OwnedTensor dy = test::host_tensor({d.n, d.out}, r);
    OwnedTensor dx(Device::cpu(), {d.n, d.in}, DType::f32), dw(Device::cpu(), {d.out, d.in}, DType::f32);
    OwnedTensor db(Device::cpu(), {d.out}, DType::f32);
    linear_backward(ctx, x, w, dy, &dx.view(), dw, &db.view());
    auto loss = [&] {
      std::vector<double> y = naive_forward(d, x.data<float>(), w.data<float>(), b.data<float>());
      double l = 0;
      for (size_t i = 0; i < y.size(); ++i) l += y[i] * r[i];
      return l;
    };
    test::expect_gradient(loss, x.data<float>(), x.numel(), test::host_values(dx), "dx");
    test::expect_gradient(loss, w.data<float>(), w.numel(), test::host_values(dw), "dW");
    test::expect_gradient(loss, b.data<float>(), b.numel(), test::host_values(db), "db");
    // The same loss through the op itself.
    OwnedTensor y(Device::cpu(), {d.n, d.out}, DType::f32);
    linear_forward(ctx, x, w, &b.view(), y);
    EXPECT_NEAR(test::weighted_sum(test::host_values(y), r), loss(), 1e-4 * std::max(1.0, std::fabs(loss())));
  }
}

TEST(LinearCpu, WrongArgumentsThrow) {
  Context ctx(Device::cpu());
  OwnedTensor x(Device::cpu(), {4, 6}, DType::f32), w(Device::cpu(), {3, 6}, DType::f32);
  OwnedTensor b(Device::cpu(), {3}, DType::f32), y(Device::cpu(), {4, 3}, DType::f32);
  OwnedTensor w_bad(Device::cpu(), {3, 5}, DType::f32), y_bad(Device::cpu(), {4, 4}, DType::f32);
  OwnedTensor b_bad(Device::cpu(), {4}, DType::f32), x_bf16(Device::cpu(), {4, 6}, DType::bf16);
  OwnedTensor x_3d(Device::cpu(), {4, 2, 3}, DType::f32), dw(Device::cpu(), {3, 6}, DType::f32);
  EXPECT_NO_THROW(linear_forward(ctx, x, w, &b.view(), y));
  EXPECT_THROW(linear_forward(ctx, x, w_bad, nullptr, y), Error);  // In disagrees
  EXPECT_THROW(linear_forward(ctx, x, w, nullptr, y_bad), Error);
  EXPECT_THROW(linear_forward(ctx, x, w, &b_bad.view(), y), Error);
  EXPECT_THROW(linear_forward(ctx, x_bf16, w, nullptr, y), Error);  // the CPU backend is f32
  EXPECT_THROW(linear_forward(ctx, x_3d, w, nullptr, y), Error);
  EXPECT_THROW(linear_backward(ctx, x, w, y_bad, nullptr, dw, nullptr), Error);
  EXPECT_THROW(linear_backward(ctx, x, w, y, nullptr, w_bad, nullptr), Error);
  EXPECT_THROW(linear_backward(ctx, x, w, y, &y.view(), dw, nullptr), Error);  // dx must be (4, 6)
  EXPECT_THROW(linear_backward(ctx, x, w, y, nullptr, dw, &b_bad.view()), Error);
  try {
    linear_forward(ctx, x, w, nullptr, y_bad);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("y must have shape (4, 3)"), std::string::npos) << e.what();
  }
}

// ---- CUDA against the CPU oracle ----

void check_gpu_against_cpu(DType dt) {
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  // Batch 1, odd sizes, and ResNet-50's classifier (2048 -> 1000).
  for (Dims d : std::vector<Dims>{{1, 1, 1}, {1, 7, 5}, {3, 17, 10}, {33, 129, 65}, {16, 2048, 1000}})
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " N=" << d.n << " In=" << d.in << " Out=" << d.out
                                        << " bias=" << with_bias);
      auto xv = test::rounded(test::random_floats(int64_t(d.n) * d.in, seed_of(d, 11)), dt);
      auto wv = test::rounded(test::random_floats(int64_t(d.out) * d.in, seed_of(d, 12)), dt);
      auto gv = test::rounded(test::random_floats(int64_t(d.n) * d.out, seed_of(d, 13)), dt);
      auto bv = test::random_floats(d.out, seed_of(d, 14));  // f32 on both backends
      OwnedTensor x = test::host_tensor({d.n, d.in}, xv), w = test::host_tensor({d.out, d.in}, wv);
      OwnedTensor dy = test::host_tensor({d.n, d.out}, gv), b = test::host_tensor({d.out}, bv);
      OwnedTensor y(Device::cpu(), {d.n, d.out}, DType::f32), dx(Device::cpu(), {d.n, d.in}, DType::f32);
      OwnedTensor dw(Device::cpu(), {d.out, d.in}, DType::f32), db(Device::cpu(), {d.out}, DType::f32);
      linear_forward(cpu, x, w, with_bias ? &b.view() : nullptr, y);
      linear_backward(cpu, x, w, dy, &dx.view(), dw, &db.view());

      OwnedTensor gx = test::device_tensor(gpu, {d.n, d.in}, xv, dt);
      OwnedTensor gw = test::device_tensor(gpu, {d.out, d.in}, wv, dt);
      OwnedTensor gdy = test::device_tensor(gpu, {d.n, d.out}, gv, dt);
      OwnedTensor gb = test::device_tensor(gpu, {d.out}, bv, DType::f32);
      OwnedTensor gy(gpu.device(), {d.n, d.out}, dt), gdx(gpu.device(), {d.n, d.in}, dt);
      OwnedTensor gdw(gpu.device(), {d.out, d.in}, dt), gdb(gpu.device(), {d.out}, DType::f32);
      test::poison(gpu, gy);
      test::poison(gpu, gdx);
      test::poison(gpu, gdw);
      test::poison(gpu, gdb);
      linear_forward(gpu, gx, gw, with_bias ? &gb.view() : nullptr, gy);
      linear_backward(gpu, gx, gw, gdy, with_bias ? &gdx.view() : nullptr, gdw, with_bias ? &gdb.view() : nullptr);
      const double tol = test::tolerance(dt);
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gy), test::host_values(y)), tol) << "y";
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gdw), test::host_values(dw)), tol) << "dW";
      if (with_bias) {
        EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gdx), test::host_values(dx)), tol) << "dx";
        // Same inputs, same order, f32 sums: the bias gradient is identical.
        EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gdb), test::host_values(db)), 1e-6) << "db";
      }
    }
}

TEST(LinearCuda, F32MatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::f32);
}
TEST(LinearCuda, Bf16MatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::bf16);
}
TEST(LinearCuda, F16MatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::f16);
}

TEST(LinearCuda, WrongArgumentsThrow) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  OwnedTensor x(gpu.device(), {4, 6}, DType::bf16), w(gpu.device(), {3, 6}, DType::bf16);
  OwnedTensor y(gpu.device(), {4, 3}, DType::bf16), dw(gpu.device(), {3, 6}, DType::bf16);
  OwnedTensor w_f32(gpu.device(), {3, 6}, DType::f32), b_bf16(gpu.device(), {3}, DType::bf16);
  OwnedTensor x_host(Device::cpu(), {4, 6}, DType::bf16), y_bad(gpu.device(), {3, 4}, DType::bf16);
  EXPECT_THROW(linear_forward(gpu, x, w_f32, nullptr, y), Error);      // mixed dtypes
  EXPECT_THROW(linear_forward(gpu, x, w, &b_bf16.view(), y), Error);   // bias must be f32
  EXPECT_THROW(linear_forward(gpu, x_host, w, nullptr, y), Error);     // wrong device
  EXPECT_THROW(linear_forward(gpu, x, w, nullptr, y_bad), Error);
  EXPECT_THROW(linear_backward(gpu, x, w, y_bad, nullptr, dw, nullptr), Error);
  EXPECT_NO_THROW(linear_forward(gpu, x, w, nullptr, y));
  gpu.synchronize();
}

}  // namespace
}  // namespace lockstep
