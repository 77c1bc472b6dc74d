// fusion_probe: does cuDNN on this GPU run the fusions MLPerf's ResNets are built on, and how
// fast? For a few ResNet-50 convolutions at batch 256 in bf16 it builds, through the graph API,
//   conv                    x * w -> y
//   conv+genstats           the same with the per-channel sum and sum of squares of y (the BN
//                           statistics) in the epilogue
//   sbr+conv+genstats       relu(x * scale + bias) as the prologue (the previous BN applied on
//                           the fly), then conv+genstats
//   wgrad                   dw from x and dy
//   sbr+wgrad               dw from relu(x * scale + bias) and dy
// and prints, per pattern and shape: whether each operation finalizes (no GPU needed), how many
// engine configurations cuDNN's heuristics offer, the first that builds a plan (engine, runtime
// compiled or not), and its time against the plain pattern's. Run by tools/device/check.sh; the
// answer decides whether lockstep's BN should move into its convolutions (bench/RESULTS.md).
// Usage: fusion_probe [--batch N]
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/context.h"
#include "kernels/conv.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/conv_graph.h"
#include "kernels/cuda/conv_timing.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/cudnn_backend.h"
#include "kernels/device.h"
#include "kernels/memory.h"

namespace lockstep::cuda {
namespace {

// A tensor of the graph: NHWC strides, or (1, C, 1, 1) per-channel when c_only; virtual ones are
// intermediates that never reach memory (f32).
struct TensorSpec {
  int64_t uid, n, c, h, w;
  DType dtype;
  bool is_virtual = false;
};

BackendDescriptor make_tensor(const TensorSpec& t) {
  BackendDescriptor d(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const cudnnDataType_t type = t.is_virtual ? CUDNN_DATA_FLOAT : cudnn_data_type(t.dtype, "fusion_probe");
  d.set_data_type(CUDNN_ATTR_TENSOR_DATA_TYPE, type);
  d.set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, {t.n, t.c, t.h, t.w});
  d.set_int64s(CUDNN_ATTR_TENSOR_STRIDES, {t.h * t.w * t.c, 1, t.w * t.c, t.c});
  d.set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, t.uid);
  d.set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, 16);
  if (t.is_virtual) {
    const bool yes = true;
    d.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes);
  }
  LS_CHECK(d.finalize() == CUDNN_STATUS_SUCCESS, "tensor " << t.uid << " refused: " << last_cudnn_error());
  return d;
}

// The graph being built: its descriptors (kept alive), its operations, and the memory tensors
// a run needs (uid -> bytes).
struct Graph {
  std::deque<BackendDescriptor> keep;  // a deque: the references handed out stay valid as it grows
  std::vector<cudnnBackendDescriptor_t> ops;
  std::map<int64_t, size_t> memory;
  std::string failure;  // the first refusal
  std::map<int64_t, const BackendDescriptor*> tensors;

  const BackendDescriptor& tensor(const TensorSpec& t) {
    if (auto it = tensors.find(t.uid); it != tensors.end()) return *it->second;
    keep.push_back(make_tensor(t));
    tensors[t.uid] = &keep.back();
    if (!t.is_virtual) memory[t.uid] = size_t(t.n * t.c * t.h * t.w) * dtype_size(t.dtype);
    return keep.back();
  }
  void add(BackendDescriptor op, const char* what) {
    if (!failure.empty()) return;
    if (cudnnStatus_t s = op.finalize(); s != CUDNN_STATUS_SUCCESS) {
      failure = std::string(what) + ": " + cudnnGetErrorString(s) + " " + last_cudnn_error();
      return;
    }
    ops.push_back(op.get());
    keep.push_back(std::move(op));
  }
};

// y = mode(x[, b]) elementwise, in f32.
void pointwise(Graph& g, cudnnPointwiseMode_t mode, const BackendDescriptor& x, const BackendDescriptor* b,
               const BackendDescriptor& y, const char* what) {
  BackendDescriptor pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  pw.set_data_type(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_DATA_FLOAT);
  if (pw.finalize() != CUDNN_STATUS_SUCCESS) {
    g.failure = std::string(what) + " descriptor: " + last_cudnn_error();
    return;
  }
  BackendDescriptor op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw);
  op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
  if (b) op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
  op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
  g.keep.push_back(std::move(pw));
  g.add(std::move(op), what);
}

enum Uid : int64_t { kX = 1, kW, kY, kSum, kSqSum, kScale, kBias, kDy, kDw, kT1, kT2, kT3 };

// relu(x * scale + bias) into a virtual tensor: the previous layer's BN and ReLU, on the fly.
const BackendDescriptor& scale_bias_relu(Graph& g, const ConvShape& s, DType dt) {
  const BackendDescriptor& x = g.tensor({kX, s.n, s.c, s.h, s.w, dt});
  const BackendDescriptor& scale = g.tensor({kScale, 1, s.c, 1, 1, dt});
  const BackendDescriptor& bias = g.tensor({kBias, 1, s.c, 1, 1, dt});
  const BackendDescriptor& t1 = g.tensor({kT1, s.n, s.c, s.h, s.w, dt, true});
  const BackendDescriptor& t2 = g.tensor({kT2, s.n, s.c, s.h, s.w, dt, true});
  const BackendDescriptor& t3 = g.tensor({kT3, s.n, s.c, s.h, s.w, dt, true});
  pointwise(g, CUDNN_POINTWISE_MUL, x, &scale, t1, "scale");
  pointwise(g, CUDNN_POINTWISE_ADD, t1, &bias, t2, "bias");
  pointwise(g, CUDNN_POINTWISE_RELU_FWD, t2, nullptr, t3, "relu");
  return t3;
}

// A convolution direction over g's tensors (x may be the prologue's virtual output).
void conv(Graph& g, ConvDirection dir, const BackendDescriptor& x, const BackendDescriptor& w,
          const BackendDescriptor& y, const ConvShape& s, const char* what) {
  g.keep.push_back(conv_descriptor(s));
  g.add(conv_operation(dir, x, w, y, g.keep.back(), 0.f), what);
}

void conv_forward(Graph& g, const ConvShape& s, DType dt, const BackendDescriptor& x) {
  conv(g, ConvDirection::forward, x, g.tensor({kW, s.k, s.c, s.r, s.s, dt}),
       g.tensor({kY, s.n, s.k, s.out_h(), s.out_w(), dt}), s, "conv forward");
}

void genstats(Graph& g, const ConvShape& s, DType dt) {
  const BackendDescriptor& y = g.tensor({kY, s.n, s.k, s.out_h(), s.out_w(), dt});
  const BackendDescriptor& sum = g.tensor({kSum, 1, s.k, 1, 1, DType::f32});
  const BackendDescriptor& sqsum = g.tensor({kSqSum, 1, s.k, 1, 1, DType::f32});
  BackendDescriptor op(CUDNN_BACKEND_OPERATION_GEN_STATS_DESCRIPTOR);
  const cudnnGenStatsMode_t mode = CUDNN_GENSTATS_SUM_SQSUM;
  op.set(CUDNN_ATTR_OPERATION_GENSTATS_MODE, CUDNN_TYPE_GENSTATS_MODE, 1, &mode);
  op.set_data_type(CUDNN_ATTR_OPERATION_GENSTATS_MATH_PREC, CUDNN_DATA_FLOAT);
  op.set_descriptor(CUDNN_ATTR_OPERATION_GENSTATS_XDESC, y);
  op.set_descriptor(CUDNN_ATTR_OPERATION_GENSTATS_SUMDESC, sum);
  op.set_descriptor(CUDNN_ATTR_OPERATION_GENSTATS_SQSUMDESC, sqsum);
  g.add(std::move(op), "genstats");
}

void wgrad(Graph& g, const ConvShape& s, DType dt, const BackendDescriptor& x) {
  conv(g, ConvDirection::backward_filter, x, g.tensor({kDw, s.k, s.c, s.r, s.s, dt}),
       g.tensor({kDy, s.n, s.k, s.out_h(), s.out_w(), dt}), s, "wgrad");
}

struct Pattern {
  const char* name;
  const char* base;  // the pattern it is timed against ("" for a base)
  std::function<void(Graph&, const ConvShape&, DType)> build;
};

std::vector<Pattern> patterns() {
  return {
      {"conv", "", [](Graph& g, const ConvShape& s, DType dt) {
         conv_forward(g, s, dt, g.tensor({kX, s.n, s.c, s.h, s.w, dt}));
       }},
      {"conv+genstats", "conv", [](Graph& g, const ConvShape& s, DType dt) {
         conv_forward(g, s, dt, g.tensor({kX, s.n, s.c, s.h, s.w, dt}));
         genstats(g, s, dt);
       }},
      {"sbr+conv+genstats", "conv", [](Graph& g, const ConvShape& s, DType dt) {
         conv_forward(g, s, dt, scale_bias_relu(g, s, dt));
         genstats(g, s, dt);
       }},
      {"wgrad", "", [](Graph& g, const ConvShape& s, DType dt) {
         wgrad(g, s, dt, g.tensor({kX, s.n, s.c, s.h, s.w, dt}));
       }},
      {"sbr+wgrad", "wgrad", [](Graph& g, const ConvShape& s, DType dt) { wgrad(g, s, dt, scale_bias_relu(g, s, dt)); }},
  };
}

ConvShape conv_shape(int n, int h, int c, int k, int r, int stride) {
  ConvShape s;
  s.n = n, s.h = s.w = h, s.c = c, s.k = k, s.r = s.s = r, s.stride_h = s.stride_w = stride, s.pad_h = s.pad_w = r / 2;
  return s;
}

// The first engine configuration that builds a plan, timed (best of kTimedRuns after one call).
struct Outcome {
  int configs = 0;
  int64_t engine = -1;
  bool runtime_compiled = false;
  float ms = -1;
  std::string note;
};

Outcome run_graph(Context& ctx, Graph& g) {
  Outcome o;
  cudnnHandle_t h = ctx.cuda().cudnn_handle();
  BackendDescriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(g.ops.size()),
            g.ops.data());
  if (graph.finalize() != CUDNN_STATUS_SUCCESS) {
    o.note = "operation graph refused: " + last_cudnn_error();
    return o;
  }
  std::vector<BackendDescriptor> configs = engine_configs(graph);
  o.configs = static_cast<int>(configs.size());
  for (BackendDescriptor& cfg : configs) {
    BackendDescriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    plan.set_descriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfg);
    if (plan.finalize() != CUDNN_STATUS_SUCCESS) continue;
    const EngineInfo info = engine_info(cfg);
    o.engine = info.global_index;
    o.runtime_compiled = info.has(CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION);
    int64_t ws = 0, n = 0;
    CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                         &n, &ws));
    std::vector<Buffer> buffers;
    std::vector<int64_t> uids;
    std::vector<void*> ptrs;
    for (const auto& [uid, bytes] : g.memory) {
      buffers.emplace_back(ctx.device(), bytes);
      CUDA_CHECK(cudaMemsetAsync(buffers.back().data(), 0x3C, bytes, stream(ctx)));
      uids.push_back(uid);
      ptrs.push_back(buffers.back().data());
    }
    Buffer workspace(ctx.device(), static_cast<size_t>(std::max<int64_t>(ws, 0)));
    void* wsp = workspace.data();
    BackendDescriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<int64_t>(uids.size()), uids.data());
    pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(ptrs.size()), ptrs.data());
    pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &wsp);
    if (pack.finalize() != CUDNN_STATUS_SUCCESS) {
      o.note = "variant pack refused: " + last_cudnn_error();
      return o;
    }
    o.ms = time_runs(stream(ctx), [&] { return cudnnBackendExecute(h, plan.get(), pack.get()); });
    if (o.ms == std::numeric_limits<float>::infinity()) o.note = "the plan failed to run: " + last_cudnn_error();
    CUDA_CHECK(cudaStreamSynchronize(stream(ctx)));
    return o;
  }
  o.note = o.configs ? "no configuration built a plan" : "heuristics offered nothing: " + last_cudnn_error();
  return o;
}

int probe(int batch) {
  struct Case {
    const char* name;
    ConvShape s;
  };
  const std::vector<Case> cases = {
      {"layer1 3x3 64->64 56px", conv_shape(batch, 56, 64, 64, 3, 1)},
      {"layer1 1x1 64->256 56px", conv_shape(batch, 56, 64, 256, 1, 1)},
      {"layer3 1x1 1024->256 14px", conv_shape(batch, 14, 1024, 256, 1, 1)},
      {"layer4 3x3 512->512 7px", conv_shape(batch, 7, 512, 512, 3, 1)},
  };
  const DType dt = DType::bf16;
  const bool gpu = gpu_status().available;
  std::printf("fusion_probe: cuDNN %zu, bf16, batch %d%s\n", cudnnGetVersion(), batch,
              gpu ? "" : " (no GPU: operations only)");
  std::printf("%-20s %-27s %-9s %8s %-18s %10s %10s\n", "pattern", "shape", "ops", "configs", "engine", "ms",
              "vs base");
  std::unique_ptr<Context> ctx;
  if (gpu) ctx = std::make_unique<Context>(Device::cuda(0));
  int refused = 0;
  for (const Case& c : cases) {
    std::map<std::string, float> times;
    for (const Pattern& p : patterns()) {
      Graph g;
      std::string ops = "ok";
      try {
        p.build(g, c.s, dt);
      } catch (const std::exception& e) {
        g.failure = e.what();
      }
      if (!g.failure.empty()) {
        ops = "refused";
        ++refused;
      }
      Outcome o;
      if (gpu && g.failure.empty()) o = run_graph(*ctx, g);
      if (o.ms >= 0) times[p.name] = o.ms;
      char engine[32] = "-", ms[16] = "-", ratio[16] = "-";
      if (o.engine >= 0) std::snprintf(engine, sizeof engine, "eng%lld%s", static_cast<long long>(o.engine),
                                       o.runtime_compiled ? " (rtc)" : "");
      if (o.ms >= 0 && o.ms < 1e30f) std::snprintf(ms, sizeof ms, "%.3f", o.ms);
      if (*p.base && times.count(p.base) && o.ms >= 0 && o.ms < 1e30f)
        std::snprintf(ratio, sizeof ratio, "%.2fx", o.ms / times[p.base]);
      std::printf("%-20s %-27s %-9s %8d %-18s %10s %10s", p.name, c.name, ops.c_str(), o.configs, engine, ms, ratio);
      if (!g.failure.empty()) std::printf("  %s", g.failure.c_str());
      if (!o.note.empty()) std::printf("  %s", o.note.c_str());
      std::printf("\n");
    }
  }
  return refused == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lockstep::cuda

int main(int argc, char** argv) {
  int batch = 256;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
      batch = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: fusion_probe [--batch N]\n");
      return 2;
    }
  }
  if (batch < 1) {
    std::fprintf(stderr, "fusion_probe: --batch must be >= 1\n");
    return 2;
  }
  try {
    return lockstep::cuda::probe(batch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fusion_probe: %s\n", e.what());
    return 1;
  }
}
