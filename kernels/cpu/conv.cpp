// CPU 2-D convolution, the oracle for the cuDNN path: im2col + OpenBLAS sgemm over groups of images.
//
// Layouts: x (N, H, W, C), w (K, R, S, C), y (N, P, Q, K), all row-major f32. For one image the
// column matrix col (P*Q, R*S*C) holds at row (p, q) the receptive field of output pixel (p, q),
// in the filter's (r, s, c) order, zeros where it reaches into the padding. Then
//   forward          y_n  (PQ, K)   = col (PQ, RSC) * W^T (RSC, K)
//   backward-data    dcol (PQ, RSC) = dy_n (PQ, K) * W (K, RSC), then col2im adds dcol into dx_n
//   backward-filter  dW   (K, RSC) += dy_n^T (K, PQ) * col (PQ, RSC), summed over the batch
// A 1x1 stride-1 unpadded conv's column matrix is the image itself (HW, C), so it needs no
// scratch and skips im2col / col2im.
// Groups: where an image has few output pixels (ResNet's last stages: 2x2 or 4x4 at 64 px), one
// GEMM per image would stream the whole filter for a handful of rows, so consecutive images are
// stacked into one GEMM of up to kGroupRows rows (their column matrices, or their pixels for a
// 1x1 conv, are adjacent): y rows of images n0..n1 are (n1 - n0) * PQ consecutive rows.
// Threads: OpenBLAS runs single-threaded (kernels/threads.cpp), so the parallelism is ours: the
// groups are split over the OpenMP team, each thread with its own column matrices (the plan
// reserves a group's worth per thread the team may have at plan time, and a step never uses more
// threads than slots). Forward and backward-data rows are independent, but their groups are sized
// by the shape alone (about 128 rows, at most half the batch), not by the team:
// OpenBLAS's result for a row depends on the GEMM's height (its tail kernels take other orders),
// so groups that followed the thread count changed bits with it (found with 11 4x4 images).
// Backward-filter sums over images: the batch is cut into a number of chunks that depends on the
// shape alone, each chunk sums its images (in groups also fixed by the shape) in order into its
// own partial dW, and the partials are added in chunk order, so the result does not depend on the
// thread count or on scheduling.
// Direct kernels: on a CPU with AVX-512 the passes that kernels/cpu/conv_direct.h takes (convs
// with channels in multiples of 16 and rows of 8+ pixels) run there instead, with no column
// matrix, the 3x3 stride-1 ones on Winograd (kernels/cpu/conv_winograd.h); the plan
// records which, and the scratch covers every kind it uses. Small images (up to 8x8 outputs, and
// strided backward-data passes) run on sgemm calls over their in-bounds taps instead
// (kernels/cpu/conv_taps.h: no column matrix, no multiplies by the padding), on any CPU.
// The dispatcher (kernels/conv.cpp) has checked the shape, devices, dtypes and tensor shapes; only
// f32 and the plan (made for the CPU, its scratch in the workspace) are checked here.
#include <cblas.h>

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "kernels/args.h"
#include "kernels/conv.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_taps.h"
#include "kernels/cpu/conv_winograd.h"

namespace lockstep::cpu {

namespace {

constexpr int kMaxFilterChunks = 8;
constexpr int kFilterChunkRows = 64;  // backward-filter: no fewer output rows per chunk (unless N is)
constexpr int kGroupRows = 256;       // output rows one GEMM may gather from several images
constexpr int kGemmRows = 128;        // forward / backward-data: rows a GEMM aims for (see row_groups)

int64_t col_elements(const ConvShape& s) {
  return int64_t(s.out_h()) * s.out_w() * s.r * s.s * s.c;
}

// The most images one GEMM takes: up to kGroupRows output rows, never more than the batch.
int max_group(const ConvShape& s) {
  return std::max(1, std::min(s.n, kGroupRows / std::max(1, s.out_h() * s.out_w())));
}

// col (PQ, RSC) <- receptive fields of image x (H, W, C). In NHWC the S pixels of one filter row
// are adjacent in x, so each (p, q, r) is one copy of the in-bounds span plus zeros at the edges.
void im2col(const ConvShape& s, const float* x, float* col) {
  const int P = s.out_h(), Q = s.out_w();
  const int64_t row = int64_t(s.r) * s.s * s.c;
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) {
      float* dst = col + (int64_t(p) * Q + q) * row;
      const int iw0 = q * s.stride_w - s.pad_w;
      const int t0 = std::max(0, -iw0), t1 = std::min(s.s, s.w - iw0);  // in-bounds taps [t0, t1)
      for (int r = 0; r < s.r; ++r, dst += int64_t(s.s) * s.c) {
        const int ih = p * s.stride_h - s.pad_h + r;
        if (ih < 0 || ih >= s.h || t0 >= t1) {
          std::fill(dst, dst + int64_t(s.s) * s.c, 0.0f);
          continue;
        }
        std::fill(dst, dst + int64_t(t0) * s.c, 0.0f);
        std::memcpy(dst + int64_t(t0) * s.c, x + (int64_t(ih) * s.w + iw0 + t0) * s.c,
                    sizeof(float) * size_t(t1 - t0) * s.c);
        std::fill(dst + int64_t(t1) * s.c, dst + int64_t(s.s) * s.c, 0.0f);
      }
    }
}

// dx (H, W, C) += the column gradients dcol (PQ, RSC) scattered back to their input pixels
// (the in-bounds span of each filter row at once, as im2col reads it).
void col2im_add(const ConvShape& s, const float* dcol, float* dx) {
  const int P = s.out_h(), Q = s.out_w();
  const int64_t row = int64_t(s.r) * s.s * s.c;
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) {
      const float* src = dcol + (int64_t(p) * Q + q) * row;
      const int iw0 = q * s.stride_w - s.pad_w;
      const int t0 = std::max(0, -iw0), t1 = std::min(s.s, s.w - iw0);
      for (int r = 0; r < s.r; ++r, src += int64_t(s.s) * s.c) {
        const int ih = p * s.stride_h - s.pad_h + r;
        if (ih < 0 || ih >= s.h || t0 >= t1) continue;
        float* d = dx + (int64_t(ih) * s.w + iw0 + t0) * s.c;
        const float* g = src + int64_t(t0) * s.c;
        const int64_t n = int64_t(t1 - t0) * s.c;
        for (int64_t i = 0; i < n; ++i) d[i] += g[i];
      }
    }
}

// One image's GEMM sizes: y_n is (PQ, K), col (PQ, RSC); x_image and y_image are the strides
// between images of x and y.
struct Gemm {
  int pq, rsc;
  int64_t x_image, y_image;
  bool pointwise;
  int64_t col = 0;   // floats in one image's column matrix (0 when pointwise)
  int chunks = 1;    // backward-filter's partial sums
  int64_t partials = 0;  // floats of the chunks' partial dW (0 with one chunk), first in the workspace
  int group_max = 1;     // images per GEMM at most; a thread's slot holds that many column matrices
  int64_t slot() const { return col * group_max; }
};

int filter_chunks(const ConvShape& s) {
  const int64_t rows = int64_t(s.n) * s.out_h() * s.out_w();
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({s.n, kMaxFilterChunks, rows / kFilterChunkRows})));
}

// Floats of the chunks' partial dW (none with one chunk: it writes dW itself).
int64_t partial_floats(const ConvShape& s) {
  return filter_chunks(s) > 1 ? int64_t(filter_chunks(s)) * s.k * s.r * s.s * s.c : 0;
}

// What the plan reserves: the partial dW of each chunk, then a group's column matrices per thread.
size_t scratch_bytes(const ConvShape& s, int threads) {
  const size_t slot = s.pointwise() ? 0 : size_t(col_elements(s)) * size_t(max_group(s));
  return (slot * std::max(1, threads) + size_t(partial_floats(s))) * sizeof(float);
}

// The plan's scratch: the GEMM path's where any pass uses it, the direct kernels' where any does.
size_t plan_bytes(const ConvShape& s, unsigned direct, int threads) {
  bool all = true;  // every pass off the GEMM: no column matrices
  for (const auto& p : cpu::direct::kPassKernels)
    all = all && (direct & (p.winograd4 | p.winograd | p.direct | p.taps));
  const size_t gemm = all ? 0 : scratch_bytes(s, threads);
  const size_t own = size_t(cpu::direct::scratch_floats(s, direct, threads, filter_chunks(s))) * sizeof(float);
  return std::max(gemm, own);
}

// Threads a direct pass may use: the team's size (at most `items`), capped by what the workspace
// holds of the pass's per-thread scratch.
int direct_threads(const Context& ctx, const ConvShape& s, unsigned pass, int items) {
  int t = std::max(1, std::min(omp_get_max_threads(), items));
  while (t > 1 && size_t(cpu::direct::scratch_floats(s, pass, t, filter_chunks(s))) * sizeof(float) >
                      ctx.workspace_bytes())
    --t;
  return t;
}

// Threads a loop may use: the team's size, capped by the slots the workspace holds.
int usable_threads(const Context& ctx, const Gemm& g, int items) {
  int t = std::max(1, std::min(omp_get_max_threads(), items));
  if (g.col > 0) {
    const int64_t free_floats = static_cast<int64_t>(ctx.workspace_bytes() / sizeof(float)) - g.partials;
    const int64_t slots = free_floats / g.slot();
    t = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(t, slots)));
  }
  return t;
}

// Forward and backward-data: images per GEMM, as many as keep every usable thread busy.
struct Groups {
  int size, count, threads;
};
// Images per GEMM from the shape alone: about kGemmRows rows (fewer rows stream the filter more
// often: resnet18's 2x2 stage ran 1.25x slower at 32 rows than at 128), at most half the batch
// (two GEMMs for two threads), at most the group the plan's scratch holds.
Groups row_groups(const Context& ctx, const Gemm& g, int n) {
  const int size = std::max(1, std::min({g.group_max, (n + 1) / 2, std::max(1, kGemmRows / g.pq)}));
  const int count = (n + size - 1) / size;
  return {size, count, usable_threads(ctx, g, count)};
}

// Checks what only the CPU backend needs of a plan and returns its GEMM sizes.
Gemm check_plan(const Context& ctx, const ConvPlan& plan, const char* op) {
  const ConvShape& s = plan.shape;
  LS_CHECK(plan.dtype == DType::f32, op << ": the CPU backend computes in f32, plan is for "
                                        << dtype_name(plan.dtype));
  LS_CHECK(plan.backend == nullptr, op << ": the plan holds cuDNN state: it was made for a CUDA context");
  // The scratch size comes from the shape, not from the plan's field, so that a plan edited or
  // made elsewhere can never make im2col write past the workspace.
  const bool pointwise = s.pointwise();
  LS_CHECK((plan.cpu_direct & ~cpu::direct::possible(s)) == 0,
           op << ": the plan asks for direct kernels (passes " << plan.cpu_direct << ") this CPU or shape "
              << s.str() << " does not have (was the plan made on another machine?)");
  const size_t need = plan_bytes(s, plan.cpu_direct, 1);
  LS_CHECK(ctx.workspace_bytes() >= need,
           op << ": the context's workspace has " << ctx.workspace_bytes() << " bytes, the plan needs "
              << need << " (was the plan made on another context?)");
  const int pq = s.out_h() * s.out_w();
  return {pq, s.r * s.s * s.c, int64_t(s.h) * s.w * s.c, int64_t(pq) * s.k, pointwise,
          pointwise ? 0 : col_elements(s), filter_chunks(s), partial_floats(s), max_group(s)};
}

}  // namespace

ConvPlan plan_conv2d(Context& ctx, const ConvShape& shape, DType dtype, ConvAlgoSearch, size_t) {
  LS_CHECK(dtype == DType::f32, "plan_conv2d: the CPU backend computes in f32, got " << dtype_name(dtype));
  ConvPlan plan;
  plan.shape = shape;
  plan.dtype = dtype;
  const bool pointwise = shape.pointwise();
  plan.cpu_direct = cpu::direct::passes(shape);
  plan.workspace_bytes = plan_bytes(shape, plan.cpu_direct, omp_get_max_threads());
  const std::string gemm = pointwise ? "sgemm (1x1, no im2col)" : "im2col+sgemm";
  if (plan.cpu_direct == 0) {
    plan.algorithms = "cpu " + gemm;
  } else {
    // e.g. "cpu winograd: forward, backward-data; direct avx512: backward-filter"
    std::string lists[5];  // Winograd 4x4, 2x2, direct, tap GEMMs, im2col GEMM
    for (const auto& p : cpu::direct::kPassKernels) {
      const unsigned d = plan.cpu_direct;
      std::string& list = lists[d & p.winograd4 ? 0 : d & p.winograd ? 1 : d & p.direct ? 2 : d & p.taps ? 3 : 4];
      list += (list.empty() ? "" : ", ") + std::string(p.name);
    }
    const std::string names[5] = {"winograd 4x4", "winograd", "direct avx512", "in-bounds-tap sgemm", gemm};
    for (int i = 0; i < 5; ++i)
      if (!lists[i].empty())
        plan.algorithms += (plan.algorithms.empty() ? "cpu " : "; ") + names[i] + ": " + lists[i];
  }
  // LOCKSTEP_CONV_LOG=1: every plan's choice on stderr, as the CUDA backend's plans print theirs.
  if (const char* log = std::getenv("LOCKSTEP_CONV_LOG"); log && *log && *log != '0')
    std::fprintf(stderr, "conv plan f32 %s: %s\n", shape.str().c_str(), plan.algorithms.c_str());
  ctx.reserve_workspace(plan.workspace_bytes);
  return plan;
}

void conv2d_forward(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& w, Tensor& y) {
  const ConvShape& s = plan.shape;
  const char* op = "conv2d_forward";
  const Gemm g = check_plan(ctx, plan, op);
  expect_cpu_f32({&x, &w, &y}, op);
  if (const unsigned bits = plan.cpu_direct & (cpu::direct::winograd_forward | cpu::direct::winograd4_forward)) {
    cpu::winograd::forward(s, x.data<float>(), w.data<float>(), y.data<float>(), static_cast<float*>(ctx.workspace()),
                           direct_threads(ctx, s, bits, s.n), bits == cpu::direct::winograd4_forward);
    return;
  }
  if (plan.cpu_direct & cpu::direct::forward_pass) {
    cpu::direct::forward(s, x.data<float>(), w.data<float>(), y.data<float>(), static_cast<float*>(ctx.workspace()),
                         direct_threads(ctx, s, cpu::direct::forward_pass, s.n));
    return;
  }
  if (plan.cpu_direct & cpu::direct::taps_forward) {
    cpu::taps::forward(s, x.data<float>(), w.data<float>(), y.data<float>(), omp_get_max_threads());
    return;
  }
  float* scratch = static_cast<float*>(ctx.workspace()) + g.partials;
  const Groups gr = row_groups(ctx, g, s.n);
#pragma omp parallel for schedule(static) num_threads(gr.threads)
  for (int i = 0; i < gr.count; ++i) {
    const int n0 = i * gr.size, images = std::min(s.n - n0, gr.size);
    float* col = scratch + omp_get_thread_num() * g.slot();
    const float* xn = x.data<float>() + n0 * g.x_image;
    if (!g.pointwise)
      for (int j = 0; j < images; ++j) im2col(s, xn + j * g.x_image, col + j * g.col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, images * g.pq, s.k, g.rsc, 1.0f,
                g.pointwise ? xn : col, g.rsc, w.data<float>(), g.rsc, 0.0f,
                y.data<float>() + n0 * g.y_image, s.k);
  }
}

void conv2d_backward_data(Context& ctx, const ConvPlan& plan, const Tensor& dy, const Tensor& w, Tensor& dx,
                          bool accumulate) {
  const ConvShape& s = plan.shape;
  const char* op = "conv2d_backward_data";
  const Gemm g = check_plan(ctx, plan, op);
  expect_cpu_f32({&dy, &w, &dx}, op);
  if (const unsigned bits = plan.cpu_direct & (cpu::direct::winograd_data | cpu::direct::winograd4_data)) {
    cpu::winograd::backward_data(s, dy.data<float>(), w.data<float>(), dx.data<float>(), accumulate,
                                 static_cast<float*>(ctx.workspace()), direct_threads(ctx, s, bits, s.n),
                                 bits == cpu::direct::winograd4_data);
    return;
  }
  if (plan.cpu_direct & cpu::direct::data_pass) {
    cpu::direct::backward_data(s, dy.data<float>(), w.data<float>(), dx.data<float>(), accumulate,
                               static_cast<float*>(ctx.workspace()), direct_threads(ctx, s, cpu::direct::data_pass, s.n));
    return;
  }
  if (plan.cpu_direct & cpu::direct::taps_data) {
    cpu::taps::backward_data(s, dy.data<float>(), w.data<float>(), dx.data<float>(), accumulate, omp_get_max_threads());
    return;
  }
  float* scratch = static_cast<float*>(ctx.workspace()) + g.partials;
  const Groups gr = row_groups(ctx, g, s.n);
#pragma omp parallel for schedule(static) num_threads(gr.threads)
  for (int i = 0; i < gr.count; ++i) {
    const int n0 = i * gr.size, images = std::min(s.n - n0, gr.size);
    float* dcol = scratch + omp_get_thread_num() * g.slot();
    float* dxn = dx.data<float>() + n0 * g.x_image;
    // A 1x1 conv's GEMM writes dx itself (beta 1 adds to it); otherwise col2im adds into dx.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, images * g.pq, g.rsc, s.k, 1.0f,
                dy.data<float>() + n0 * g.y_image, s.k, w.data<float>(), g.rsc,
                g.pointwise && accumulate ? 1.0f : 0.0f, g.pointwise ? dxn : dcol, g.rsc);
    if (g.pointwise) continue;
    if (!accumulate) std::fill(dxn, dxn + images * g.x_image, 0.0f);
    for (int j = 0; j < images; ++j) col2im_add(s, dcol + j * g.col, dxn + j * g.x_image);
  }
}

void conv2d_backward_filter(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& dy, Tensor& dw) {
  const ConvShape& s = plan.shape;
  const char* op = "conv2d_backward_filter";
  const Gemm g = check_plan(ctx, plan, op);
  expect_cpu_f32({&x, &dy, &dw}, op);
  if (const unsigned bits = plan.cpu_direct & (cpu::direct::winograd_filter | cpu::direct::winograd4_filter)) {
    cpu::winograd::backward_filter(s, x.data<float>(), dy.data<float>(), dw.data<float>(),
                                   static_cast<float*>(ctx.workspace()), g.chunks, direct_threads(ctx, s, bits, g.chunks),
                                   bits == cpu::direct::winograd4_filter);
    return;
  }
  if (plan.cpu_direct & cpu::direct::filter_pass) {
    cpu::direct::backward_filter(s, x.data<float>(), dy.data<float>(), dw.data<float>(),
                                 static_cast<float*>(ctx.workspace()), g.chunks,
                                 direct_threads(ctx, s, cpu::direct::filter_pass, g.chunks));
    return;
  }
  if (plan.cpu_direct & cpu::direct::taps_filter) {
    cpu::taps::backward_filter(s, x.data<float>(), dy.data<float>(), dw.data<float>(), omp_get_max_threads());
    return;
  }
  float* partials = static_cast<float*>(ctx.workspace());
  float* scratch = partials + g.partials;
  const int64_t wn = int64_t(s.k) * g.rsc;
  const int per_chunk = (s.n + g.chunks - 1) / g.chunks;
  const int group = std::min(g.group_max, per_chunk);  // fixed by the shape, as the sum's order must be
#pragma omp parallel for schedule(static) num_threads(usable_threads(ctx, g, g.chunks))
  for (int c = 0; c < g.chunks; ++c) {
    float* col = scratch + omp_get_thread_num() * g.slot();
    // One chunk alone writes dW itself; several write their partials, added below in order.
    float* out = g.chunks == 1 ? dw.data<float>() : partials + c * wn;
    const int n0 = c * per_chunk, n1 = std::min(s.n, n0 + per_chunk);
    if (n0 >= n1) std::fill(out, out + wn, 0.0f);
    for (int n = n0; n < n1; n += group) {
      const int images = std::min(group, n1 - n);
      const float* xn = x.data<float>() + n * g.x_image;
      if (!g.pointwise)
        for (int j = 0; j < images; ++j) im2col(s, xn + j * g.x_image, col + j * g.col);
      // The chunk's first group overwrites (beta 0), the rest accumulate.
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s.k, g.rsc, images * g.pq, 1.0f,
                  dy.data<float>() + n * g.y_image, s.k, g.pointwise ? xn : col, g.rsc,
                  n == n0 ? 0.0f : 1.0f, out, g.rsc);
    }
  }
  if (g.chunks > 1) {
    float* d = dw.data<float>();
    std::copy(partials, partials + wn, d);
    for (int c = 1; c < g.chunks; ++c) {
      const float* p = partials + c * wn;
      for (int64_t i = 0; i < wn; ++i) d[i] += p[i];
    }
  }
}

}  // namespace lockstep::cpu
