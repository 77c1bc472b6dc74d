// `lockstep bench ops`: each top-level layer of a net (stem, residual blocks, head) timed forward
// and backward inside real training passes, with its FLOPs, bytes, achieved TFLOP/s and GB/s, so
// the slowest layers are visible.
//
// Method: a nets::Model on synthetic normalized input (train mode) and a synthetic logit
// gradient. --warmup untimed forward + backward passes, then --iters pairs of passes: one untimed
// by layer (the device waited for at its end only: the reference step time) and one with a
// LayerTimer that waits for the device and reads the wall clock around every layer's forward and
// backward call. Per layer and direction the median over --iters is reported. Waiting for the
// device at every layer costs a little (and on the GPU removes overlap between layers), so the
// sum of the layers is printed next to the untimed passes.
// FLOPs and bytes come from nets::Layer::cost() (nets/layer.h): exact for the convolutions and the
// GEMM (backward = data + filter gradients = 2x forward, 1x for the stem's conv, which needs no
// input gradient), approximate for the element-wise ops; bytes are a lower bound on traffic.
// argv[0] is "ops" (run_bench passes argv + 1). Problems are ConfigErrors naming the option.
#pragma once

#include <cstdint>
#include <iostream>
#include <string>

#include "kernels/batchnorm.h"
#include "kernels/conv.h"
#include "kernels/device.h"
#include "kernels/dtype.h"

namespace lockstep::cli {

struct BenchOpsConfig {
  std::string arch = "resnet50";
  int batch = 32;
  int image_size = 224;  // the arch's default unless --image-size
  int classes = 1000;    // the arch's default unless --classes
  Device device = Device::cpu();
  DType precision = DType::f32;
  ConvAlgoSearch conv_algo = ConvAlgoSearch::heuristic;  // as lockstep train's default
  int stem_channels = 0;                                   // ModelOptions::stem_channels
  bool stem_space_to_depth = false;                        // ModelOptions::stem_space_to_depth
  BatchNormKernels bn_kernels = BatchNormKernels::automatic;  // ModelOptions::bn_kernels
  int warmup = 2;        // untimed forward + backward passes
  int iters = 5;         // timed passes (each: one untimed by layer, one timed layer by layer)
  int top = 0;           // rows printed (0: all); --json has every row
  std::string json;      // --json FILE: the rows as one JSON object; "" = none
};

BenchOpsConfig parse_bench_ops_args(int argc, const char* const* argv, std::ostream& notes = std::cerr);
std::string bench_ops_help();
// Runs the bench, prints the table to `out`, writes --json. Errors are thrown.
int run_bench_ops(const BenchOpsConfig& c, std::ostream& out);

}  // namespace lockstep::cli
