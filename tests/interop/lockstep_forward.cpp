// lockstep_forward: one eval-mode forward pass of a torchvision-named checkpoint on the CPU, for
// the torchvision interop test (torchvision_interop.py). Reads the batch and writes the logits
// as safetensors so Python can compare them with torchvision's without any other format.
//
//   lockstep_forward --arch A --classes K --image-size S --weights W.safetensors
//                    --input X.safetensors --output Y.safetensors
//   X: "input" F32 (N, S, S, 3), NHWC, already normalized.   Y: "logits" F32 (N, K).
// Any failure: one line on stderr, exit status 1.
#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/weights.h"
#include "kernels/context.h"
#include "kernels/error.h"
#include "nets/resnet.h"

namespace {

using namespace lockstep;

std::map<std::string, std::string> parse_args(int argc, char** argv) {
  const char* kNames[] = {"--arch", "--classes", "--image-size", "--weights", "--input", "--output"};
  std::map<std::string, std::string> args;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    LS_CHECK(std::find(std::begin(kNames), std::end(kNames), flag) != std::end(kNames), "unknown option " << flag);
    LS_CHECK(i + 1 < argc, flag << " needs a value");
    args[flag] = argv[i + 1];
  }
  for (const char* n : kNames) LS_CHECK(args.count(n), n << " is required");
  return args;
}

int to_int(const std::string& flag, const std::string& v) {
  size_t used = 0;
  int n = 0;
  try {
    n = std::stoi(v, &used);
  } catch (const std::exception&) {
  }
  LS_CHECK(used == v.size() && n > 0, flag << ": expected a positive integer, got '" << v << "'");
  return n;
}

int run(int argc, char** argv) {
  const auto args = parse_args(argc, argv);
  nets::ModelOptions o;
  o.arch = args.at("--arch");
  o.classes = to_int("--classes", args.at("--classes"));
  o.image_size = to_int("--image-size", args.at("--image-size"));

  const engine::SafetensorsFile in = engine::SafetensorsFile::open(args.at("--input"));
  const engine::TensorInfo* x_info = in.find("input");
  const int64_t s = o.image_size;
  LS_CHECK(x_info && x_info->dtype == "F32" && x_info->shape.size() == 4 && x_info->shape[0] > 0 &&
               x_info->shape[1] == s && x_info->shape[2] == s && x_info->shape[3] == 3,
           args.at("--input") << ": expected an F32 tensor \"input\" of shape (N, " << s << ", " << s << ", 3)");
  o.batch = static_cast<int>(x_info->shape[0]);

  nets::Model model(o);
  Context ctx(Device::cpu());
  model.setup(ctx);
  engine::load_model_weights(model, ctx, engine::SafetensorsFile::open(args.at("--weights")));

  std::vector<float> x(x_info->numel());  // (N, S, S, 3)
  in.read(*x_info, x.data(), x.size() * sizeof(float));
  const Tensor logits = model.forward(ctx, Tensor(x.data(), model.input_shape(), DType::f32, Device::cpu()), nets::Mode::eval);
  const std::vector<float> y = engine::host_copy(ctx, logits);  // (N, K)
  engine::write_safetensors(args.at("--output"),
                            {{"logits", "F32", {logits.dim(0), logits.dim(1)}, y.data(), y.size() * sizeof(float)}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "lockstep_forward: " << e.what() << "\n";
    return 1;
  }
}
