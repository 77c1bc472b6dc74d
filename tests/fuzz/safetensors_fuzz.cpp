// Fuzz target: a safetensors file (a checkpoint's model or optimizer state, or --init-from
// weights) parsed, every tensor read, and loaded into a tiny model as `lockstep train
// --init-from` and `lockstep eval --weights` do. Only SafetensorsError / Error may come out.
#include <vector>

#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/weights.h"
#include "nets/resnet.h"
#include "tests/fuzz/fuzz_target.h"

namespace {

using namespace lockstep;

struct TinyNet {
  Context ctx{Device::cpu(), 0};
  nets::Model model{nets::ModelOptions{"tiny", 10, 16, 2, DType::f32, ConvAlgoSearch::heuristic}};
  TinyNet() {
    model.setup(ctx);
    model.init(ctx, 1, false);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TinyNet net;
  const auto* p = reinterpret_cast<const std::byte*>(data);
  fuzz::expect_clean("safetensors", [&] {
    const engine::SafetensorsFile f = engine::SafetensorsFile::parse(std::vector<std::byte>(p, p + size), "fuzz");
    std::vector<std::byte> buffer;
    for (const engine::TensorInfo& t : f.tensors()) {
      buffer.resize(t.bytes());
      f.read(t, buffer.data(), buffer.size());
      (void)f.data(t);
      (void)t.numel();
    }
    fuzz::expect_clean("read_param_state", [&] { (void)engine::read_param_state(net.model.params(), f); });
    fuzz::expect_clean("read_buffer_state", [&] { (void)engine::read_buffer_state(net.model.params(), f, ""); });
    engine::load_model_weights(net.model, net.ctx, f, engine::WeightsLoadOptions{true});
  });
  return 0;
}
