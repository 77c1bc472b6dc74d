// CUDA 2-D convolution through cuDNN's legacy API, NHWC activations and KRSC filters.
//
// Design:
//  - The plan creates the descriptors once: x, y as NHWC tensors, w as an NHWC filter (which
//    cuDNN lays out as K, R, S, C), and one convolution descriptor per direction, because the
//    math type is a property of the descriptor and each direction's chosen algorithm may want
//    its own. They live in CudnnConv, owned by plan.backend, and are destroyed with it.
//  - Accumulation is always fp32 (compute type CUDNN_DATA_FLOAT). f32 convs run with
//    CUDNN_FMA_MATH, so no TF32 tensor cores: results match the CPU oracle to 1e-4. bf16 / f16
//    convs start from CUDNN_TENSOR_OP_MATH and keep the math type cuDNN reports for the chosen
//    algorithm (as it requires since cuDNN 7.4).
//  - Algorithms are chosen once, at plan time: by cuDNN's heuristics (cudnnGet*_v7) or by
//    timing the heuristics' first few candidates ourselves (conv_timing.h) on scratch tensors
//    allocated only while planning; a measured choice is kept per shape for the process, so a
//    net's repeated shapes (and every worker's plans) are timed once.
//    A candidate is taken when its status is success, its math type is allowed for the dtype,
//    cuDNN accepts it with our descriptor, and its workspace fits the limit. Deterministic
//    algorithms are preferred (ALGO_0 / ALGO_3 accumulate with atomics): a run must repeat
//    bit for bit; a non-deterministic one is taken only when no deterministic one fits.
//  - The workspace is the largest of the three, reserved on the context at plan time.
//  - --conv-algo graph | graph-measure plan each direction through cuDNN's graph API as well
//    (kernels/cuda/conv_graph.h; backward-data twice: overwriting and accumulating) and run
//    those plans; a direction the graph API cannot plan runs the legacy heuristic choice, which
//    is always made, and the plan's description says which ran and why.
// The dispatcher (kernels/conv.cpp) has checked the shape, devices, dtypes and tensor shapes; only
// the plan (made for cuDNN on this device, its workspace) is checked here.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/conv_graph.h"
#include "kernels/cuda/conv_timing.h"
#include "kernels/cuda/cuda_state.h"

namespace lockstep::cuda {

namespace {

struct CudnnConv {
  Device device;
  cudnnTensorDescriptor_t x = nullptr;   // (N, H, W, C) NHWC
  cudnnTensorDescriptor_t y = nullptr;   // (N, P, Q, K) NHWC
  cudnnFilterDescriptor_t w = nullptr;   // (K, R, S, C) "NHWC" filter
  cudnnConvolutionDescriptor_t fwd_conv = nullptr, bwd_data_conv = nullptr, bwd_filter_conv = nullptr;
  cudnnConvolutionFwdAlgo_t fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionBwdDataAlgo_t bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;
  bool fwd_det = true, bwd_data_det = true, bwd_filter_det = true;
  // The graph API's plans (--conv-algo graph | graph-measure), where it could make them.
  std::unique_ptr<GraphConv> g_fwd, g_bwd_data, g_bwd_data_acc, g_bwd_filter;

  CudnnConv() = default;
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;
  ~CudnnConv() {
    for (auto* c : {fwd_conv, bwd_data_conv, bwd_filter_conv})
      if (c) cudnnDestroyConvolutionDescriptor(c);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

const char* algo_name(cudnnConvolutionFwdAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* algo_name(cudnnConvolutionBwdDataAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* algo_name(cudnnConvolutionBwdFilterAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return "ALGO_3";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return "FFT_TILING";
    default: return "?";
  }
}
const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor-op-conv";
    case CUDNN_FMA_MATH: return "fma";
    default: return "?";
  }
}

// The math type a descriptor starts with: FMA for f32 (no TF32), tensor ops for 16-bit.
cudnnMathType_t base_math(DType dt) { return dt == DType::f32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH; }

// Whether a candidate's math type may run convs of this dtype. f32 must never use TF32 tensor
// cores, which both tensor-op math types allow for float data.
bool math_allowed(DType dt, cudnnMathType_t m) {
  if (dt == DType::f32) return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
  return true;
}

// 16-bit convs prefer tensor-op candidates: on an H100 (2026-11-26) cudnnFind*Ex ranked bf16
// candidates with CUDNN_DEFAULT_MATH whose backward-data ran 50-100x slower than the tensor-op
// ones (144 ms for the stem's), and a measured plan that took them ran a ResNet-50 pass 60x
// slower. Another math type is taken only when no tensor-op candidate fits.
bool tensor_op(cudnnMathType_t m) { return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION; }

template <typename Algo>
struct Choice {
  Algo algo{};
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  bool deterministic = true;
  float ms = -1;       // cuDNN's time for it (measured searches; -1 for heuristics)
  int rank = 0;        // its place in cuDNN's list
};

// Picks from cuDNN's ranked candidates (best first). `workspace_of` sets the direction's
// descriptor to a math type and asks cuDNN for the algorithm's workspace; a failure there means
// cuDNN does not run that algorithm with our descriptors.
template <typename Perf, typename Algo>
Choice<Algo> choose(const std::vector<Perf>& perfs, DType dt, size_t limit, const char* direction,
                    const ConvShape& shape, bool any_determinism,
                    const std::function<cudnnStatus_t(Algo, cudnnMathType_t, size_t*)>& workspace_of) {
  // The first candidate, in cuDNN's order, that passes the filters and fits the workspace.
  auto first = [&](bool need_deterministic, bool need_tensor_op) -> std::optional<Choice<Algo>> {
    for (size_t rank = 0; rank < perfs.size(); ++rank) {
      const Perf& p = perfs[rank];
      if (p.status != CUDNN_STATUS_SUCCESS || !math_allowed(dt, p.mathType)) continue;
      if (need_tensor_op && !tensor_op(p.mathType)) continue;
      const bool det = p.determinism == CUDNN_DETERMINISTIC;
      if (need_deterministic && !det) continue;
      const cudnnMathType_t math = dt == DType::f32 ? CUDNN_FMA_MATH : p.mathType;
      size_t ws = 0;
      if (workspace_of(p.algo, math, &ws) != CUDNN_STATUS_SUCCESS || ws > limit) continue;
      return Choice<Algo>{p.algo, ws, math, det, p.time, static_cast<int>(rank)};
    }
    return std::nullopt;
  };
  // Preference: deterministic (unless any_determinism), then tensor-op math for 16-bit dtypes.
  for (bool need_deterministic : {true, false}) {
    if (need_deterministic && any_determinism) continue;
    for (bool need_tensor_op : {dt != DType::f32, false})
      if (auto c = first(need_deterministic, need_tensor_op)) return *c;
  }
  LS_CHECK(false, "plan_conv2d: cuDNN offers no " << direction << " algorithm for " << dtype_name(dt)
                                                   << " " << shape.str() << " within a workspace of "
                                                   << limit << " bytes (" << perfs.size()
                                                   << " candidates)");
}

std::string megabytes(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fMB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// Measured rankings (fastest first), per shape, dtype, search and workspace limit on a device,
// for the life of the process: a ResNet repeats its shapes, and workers sharing a GPU plan alike.
struct MeasuredLists {
  std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd;
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bwd_data;
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bwd_filter;
};

std::mutex measured_mutex;  // also keeps two threads from timing on one GPU at once
std::map<std::string, MeasuredLists> measured_cache;

std::string measured_key(const Device& device, const ConvShape& shape, DType dtype, ConvAlgoSearch search,
                         size_t limit) {
  return device.str() + " " + shape.str() + " " + std::string(dtype_name(dtype)) + " " + conv_algo_name(search) + " " +
         std::to_string(limit);
}

const CudnnConv& backend_of(const Context& ctx, const ConvPlan& plan, const char* op) {
  LS_CHECK(plan.backend != nullptr, op << ": the plan has no cuDNN state (was it made by plan_conv2d on a CUDA context?)");
  const auto& c = *static_cast<const CudnnConv*>(plan.backend.get());
  LS_CHECK(c.device == ctx.device(), op << ": the plan was made for " << c.device.str()
                                        << " but the context runs on " << ctx.device().str());
  LS_CHECK(ctx.workspace_bytes() >= plan.workspace_bytes,
           op << ": the context's workspace has " << ctx.workspace_bytes() << " bytes, the plan needs "
              << plan.workspace_bytes << " (was the plan made on another context?)");
  return c;
}

}  // namespace

ConvPlan plan_conv2d(Context& ctx, const ConvShape& shape, DType dtype, ConvAlgoSearch search,
                     size_t workspace_limit) {
  const cudnnDataType_t type = cudnn_data_type(dtype, "conv2d");
  cudnnHandle_t h = ctx.cuda().cudnn_handle();

  auto c = std::make_shared<CudnnConv>();
  c->device = ctx.device();
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->x));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->y));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&c->w));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(c->x, CUDNN_TENSOR_NHWC, type, shape.n, shape.c, shape.h, shape.w));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(c->y, CUDNN_TENSOR_NHWC, type, shape.n, shape.k, shape.out_h(),
                                         shape.out_w()));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(c->w, type, CUDNN_TENSOR_NHWC, shape.k, shape.c, shape.r, shape.s));
  for (auto* conv : {&c->fwd_conv, &c->bwd_data_conv, &c->bwd_filter_conv}) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(conv));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(*conv, shape.pad_h, shape.pad_w, shape.stride_h,
                                                shape.stride_w, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(*conv, base_math(dtype)));
  }
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(c->fwd_conv, c->x, c->w, &on, &oc, &oh, &ow));
  LS_CHECK(on == shape.n && oc == shape.k && oh == shape.out_h() && ow == shape.out_w(),
           "plan_conv2d: cuDNN's output (" << on << ", " << oh << ", " << ow << ", " << oc
                                           << ") differs from " << shape.str());

  int max_fwd = 0, max_bwd_data = 0, max_bwd_filter = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_fwd));
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_bwd_data));
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_bwd_filter));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(std::max(max_fwd, 1));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bwd_data(std::max(max_bwd_data, 1));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bwd_filter(std::max(max_bwd_filter, 1));
  int n_fwd = 0, n_bwd_data = 0, n_bwd_filter = 0;

  const bool graph = search == ConvAlgoSearch::graph || search == ConvAlgoSearch::graph_measure;
  // The graph searches keep the legacy heuristic choice as their fallback.
  const bool heuristic = search == ConvAlgoSearch::heuristic || search == ConvAlgoSearch::heuristic_any || graph;
  const bool any_determinism = search == ConvAlgoSearch::fastest || search == ConvAlgoSearch::heuristic_any;
  // cuDNN's ranking: the choice itself for heuristic searches, the candidates for measured ones.
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, c->x, c->w, c->fwd_conv, c->y, int(fwd.size()), &n_fwd,
                                                     fwd.data()));
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c->w, c->y, c->bwd_data_conv, c->x, int(bwd_data.size()),
                                                          &n_bwd_data, bwd_data.data()));
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, c->x, c->y, c->bwd_filter_conv, c->w,
                                                            int(bwd_filter.size()), &n_bwd_filter, bwd_filter.data()));
  fwd.resize(n_fwd);
  bwd_data.resize(n_bwd_data);
  bwd_filter.resize(n_bwd_filter);

  // Per direction: set the descriptor to a math type and ask for an algorithm's workspace (a
  // failure means cuDNN does not run that algorithm with our descriptors). The timing and
  // choose() both go through these, so they judge candidates alike.
  auto fwd_ws = [&](cudnnConvolutionFwdAlgo_t a, cudnnMathType_t m, size_t* ws) {
    cudnnStatus_t s = cudnnSetConvolutionMathType(c->fwd_conv, m);
    return s != CUDNN_STATUS_SUCCESS ? s : cudnnGetConvolutionForwardWorkspaceSize(h, c->x, c->w, c->fwd_conv, c->y, a, ws);
  };
  auto bwd_data_ws = [&](cudnnConvolutionBwdDataAlgo_t a, cudnnMathType_t m, size_t* ws) {
    cudnnStatus_t s = cudnnSetConvolutionMathType(c->bwd_data_conv, m);
    return s != CUDNN_STATUS_SUCCESS
               ? s
               : cudnnGetConvolutionBackwardDataWorkspaceSize(h, c->w, c->y, c->bwd_data_conv, c->x, a, ws);
  };
  auto bwd_filter_ws = [&](cudnnConvolutionBwdFilterAlgo_t a, cudnnMathType_t m, size_t* ws) {
    cudnnStatus_t s = cudnnSetConvolutionMathType(c->bwd_filter_conv, m);
    return s != CUDNN_STATUS_SUCCESS
               ? s
               : cudnnGetConvolutionBackwardFilterWorkspaceSize(h, c->x, c->y, c->bwd_filter_conv, c->w, a, ws);
  };

  if (!heuristic) {
    // Time the heuristics' first candidates on scratch tensors (a constant non-zero fill: zeros
    // can run faster than data), unless this shape was timed before in this process.
    std::lock_guard<std::mutex> lock(measured_mutex);
    const std::string key = measured_key(ctx.device(), shape, dtype, search, workspace_limit);
    auto hit = measured_cache.find(key);
    if (hit == measured_cache.end()) {
      const size_t el = dtype_size(dtype);
      Buffer x(ctx.device(), size_t(shape.x_shape().numel()) * el);
      Buffer w(ctx.device(), size_t(shape.w_shape().numel()) * el);
      Buffer y(ctx.device(), size_t(shape.y_shape().numel()) * el);
      size_t ws_cap = 0;  // the largest workspace a candidate within the limit asks for
      auto widen = [&](const auto& perfs) {
        for (const auto& p : perfs)
          if (p.status == CUDNN_STATUS_SUCCESS && p.memory <= workspace_limit) ws_cap = std::max(ws_cap, p.memory);
      };
      widen(fwd);
      widen(bwd_data);
      widen(bwd_filter);
      Buffer ws(ctx.device(), ws_cap);
      cudaStream_t st = stream(ctx);
      for (Buffer* b : {&x, &w, &y}) CUDA_CHECK(cudaMemsetAsync(b->data(), 0x3C, b->bytes(), st));
      const float one = 1.0f, zero = 0.0f;
      const bool tensor_first = dtype != DType::f32;
      auto allowed = [&](cudnnMathType_t m) { return math_allowed(dtype, m); };
      auto math_for = [&](cudnnMathType_t m) { return dtype == DType::f32 ? CUDNN_FMA_MATH : m; };
      MeasuredLists m;
      size_t ws_f = 0, ws_d = 0, ws_g = 0;
      m.fwd = timed_candidates<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
          fwd, any_determinism, tensor_first, allowed, tensor_op,
          [&](cudnnConvolutionFwdAlgo_t a, cudnnMathType_t mt) {
            return fwd_ws(a, math_for(mt), &ws_f) == CUDNN_STATUS_SUCCESS && ws_f <= ws_cap;
          },
          [&](cudnnConvolutionFwdAlgo_t a) {
            return cudnnConvolutionForward(h, &one, c->x, x.data(), c->w, w.data(), c->fwd_conv, a, ws.data(), ws_f,
                                           &zero, c->y, y.data());
          },
          st);
      m.bwd_data = timed_candidates<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
          bwd_data, any_determinism, tensor_first, allowed, tensor_op,
          [&](cudnnConvolutionBwdDataAlgo_t a, cudnnMathType_t mt) {
            return bwd_data_ws(a, math_for(mt), &ws_d) == CUDNN_STATUS_SUCCESS && ws_d <= ws_cap;
          },
          [&](cudnnConvolutionBwdDataAlgo_t a) {  // dx into the x scratch
            return cudnnConvolutionBackwardData(h, &one, c->w, w.data(), c->y, y.data(), c->bwd_data_conv, a,
                                                ws.data(), ws_d, &zero, c->x, x.data());
          },
          st);
      m.bwd_filter = timed_candidates<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
          bwd_filter, any_determinism, tensor_first, allowed, tensor_op,
          [&](cudnnConvolutionBwdFilterAlgo_t a, cudnnMathType_t mt) {
            return bwd_filter_ws(a, math_for(mt), &ws_g) == CUDNN_STATUS_SUCCESS && ws_g <= ws_cap;
          },
          [&](cudnnConvolutionBwdFilterAlgo_t a) {  // dw into the w scratch
            return cudnnConvolutionBackwardFilter(h, &one, c->x, x.data(), c->y, y.data(), c->bwd_filter_conv, a,
                                                  ws.data(), ws_g, &zero, c->w, w.data());
          },
          st);
      CUDA_CHECK(cudaStreamSynchronize(st));  // the scratch is freed on return
      hit = measured_cache.emplace(key, std::move(m)).first;
    }
    // Fastest first; a direction where nothing qualified keeps the heuristic list, from which
    // choose() takes what the filters allow (a non-deterministic algorithm, say).
    if (!hit->second.fwd.empty()) fwd = hit->second.fwd;
    if (!hit->second.bwd_data.empty()) bwd_data = hit->second.bwd_data;
    if (!hit->second.bwd_filter.empty()) bwd_filter = hit->second.bwd_filter;
  }
  const auto f = choose<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      fwd, dtype, workspace_limit, "forward", shape, any_determinism, fwd_ws);
  CUDNN_CHECK(cudnnSetConvolutionMathType(c->fwd_conv, f.math));
  const auto d = choose<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      bwd_data, dtype, workspace_limit, "backward-data", shape, any_determinism, bwd_data_ws);
  CUDNN_CHECK(cudnnSetConvolutionMathType(c->bwd_data_conv, d.math));
  const auto g = choose<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      bwd_filter, dtype, workspace_limit, "backward-filter", shape, any_determinism, bwd_filter_ws);
  CUDNN_CHECK(cudnnSetConvolutionMathType(c->bwd_filter_conv, g.math));

  c->fwd = f.algo;
  c->bwd_data = d.algo;
  c->bwd_filter = g.algo;
  c->fwd_ws = f.workspace;
  c->bwd_data_ws = d.workspace;
  c->bwd_filter_ws = g.workspace;
  c->fwd_det = f.deterministic;
  c->bwd_data_det = d.deterministic;
  c->bwd_filter_det = g.deterministic;

  ConvPlan plan;
  plan.shape = shape;
  plan.dtype = dtype;
  plan.workspace_bytes = std::max({f.workspace, d.workspace, g.workspace});
  std::ostringstream os;
  os << "fwd=" << algo_name(f.algo) << " bwd_data=" << algo_name(d.algo) << (d.deterministic ? "" : "(nondet)")
     << " bwd_filter=" << algo_name(g.algo) << (g.deterministic ? "" : "(nondet)")
     << " math=" << math_name(f.math) << "/" << math_name(d.math) << "/" << math_name(g.math);
  if (graph) {
    const bool measure = search == ConvAlgoSearch::graph_measure;
    // Each direction's graph plan, or the reason it has none (the legacy choice above runs).
    auto try_graph = [&](ConvDirection dir, float beta, const char* label) -> std::unique_ptr<GraphConv> {
      std::string why;
      std::unique_ptr<GraphConv> gc;
      try {
        std::unique_lock<std::mutex> lock(measured_mutex, std::defer_lock);  // one timing per GPU at a time
        if (measure) lock.lock();
        gc = plan_graph_conv(ctx, shape, dtype, dir, beta, measure, workspace_limit, &why);
      } catch (const Error& e) {
        why = e.what();
      }
      if (gc) {
        os << " graph." << label << "=eng" << gc->engine << "#" << gc->rank;
        if (gc->ms >= 0) os << "(" << gc->ms << "ms)";
        plan.workspace_bytes = std::max(plan.workspace_bytes, static_cast<size_t>(gc->workspace));
      } else {
        os << " graph." << label << "=legacy(" << why << ")";
      }
      return gc;
    };
    c->g_fwd = try_graph(ConvDirection::forward, 0.f, "fwd");
    c->g_bwd_data = try_graph(ConvDirection::backward_data, 0.f, "bwd_data");
    c->g_bwd_data_acc = try_graph(ConvDirection::backward_data, 1.f, "bwd_data_acc");
    c->g_bwd_filter = try_graph(ConvDirection::backward_filter, 0.f, "bwd_filter");
    plan.graph_directions = int(c->g_fwd != nullptr) + int(c->g_bwd_data != nullptr) +
                            int(c->g_bwd_data_acc != nullptr) + int(c->g_bwd_filter != nullptr);
  }
  os << " ws=" << megabytes(plan.workspace_bytes) << " search=" << conv_algo_name(search);
  plan.algorithms = os.str();
  // LOCKSTEP_CONV_LOG=1: every plan's choice on stderr, with cuDNN's time and rank for each
  // direction (how a measured choice can be checked against the heuristic one).
  if (const char* log = std::getenv("LOCKSTEP_CONV_LOG"); log && *log && *log != '0')
    std::fprintf(stderr, "conv plan %s %s: %s (ms/rank fwd %.3f/%d bwd_data %.3f/%d bwd_filter %.3f/%d)\n",
                 std::string(dtype_name(dtype)).c_str(), shape.str().c_str(), plan.algorithms.c_str(), f.ms, f.rank, d.ms, d.rank,
                 g.ms, g.rank);
  plan.backend = std::move(c);  // shared_ptr<void> keeps CudnnConv's destructor
  ctx.reserve_workspace(plan.workspace_bytes);
  return plan;
}

void conv2d_forward(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& w, Tensor& y) {
  const CudnnConv& c = backend_of(ctx, plan, "conv2d_forward");
  if (c.g_fwd) {
    CUDNN_CHECK(c.g_fwd->run(ctx.cuda().cudnn_handle(), x.raw(), w.raw(), y.raw(), ctx.workspace()));
    return;
  }
  const float one = 1.0f, zero = 0.0f;  // float scalars: the compute type is CUDNN_DATA_FLOAT
  CUDNN_CHECK(cudnnConvolutionForward(ctx.cuda().cudnn_handle(), &one, c.x, x.raw(), c.w, w.raw(), c.fwd_conv, c.fwd,
                                      ctx.workspace(), c.fwd_ws, &zero, c.y, y.raw()));
}

void conv2d_backward_data(Context& ctx, const ConvPlan& plan, const Tensor& dy, const Tensor& w, Tensor& dx,
                          bool accumulate) {
  const CudnnConv& c = backend_of(ctx, plan, "conv2d_backward_data");
  if (const GraphConv* g = accumulate ? c.g_bwd_data_acc.get() : c.g_bwd_data.get()) {
    CUDNN_CHECK(g->run(ctx.cuda().cudnn_handle(), dx.raw(), w.raw(), dy.raw(), ctx.workspace()));
    return;
  }
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;  // cuDNN blends dx = result + beta * dx
  CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cuda().cudnn_handle(), &one, c.w, w.raw(), c.y, dy.raw(), c.bwd_data_conv,
                                           c.bwd_data, ctx.workspace(), c.bwd_data_ws, &beta, c.x, dx.raw()));
}

void conv2d_backward_filter(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& dy, Tensor& dw) {
  const CudnnConv& c = backend_of(ctx, plan, "conv2d_backward_filter");
  if (c.g_bwd_filter) {
    CUDNN_CHECK(c.g_bwd_filter->run(ctx.cuda().cudnn_handle(), x.raw(), dw.raw(), dy.raw(), ctx.workspace()));
    return;
  }
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cuda().cudnn_handle(), &one, c.x, x.raw(), c.y, dy.raw(),
                                             c.bwd_filter_conv, c.bwd_filter, ctx.workspace(), c.bwd_filter_ws,
                                             &zero, c.w, dw.raw()));
}

}  // namespace lockstep::cuda
