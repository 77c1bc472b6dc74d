// The zoo against torchvision: parameter counts, names and state_dict order; initialisation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "nets/resnet.h"
#include "tests/kernels/test_util.h"

namespace lockstep::nets {
namespace {

std::unique_ptr<Model> make(const std::string& arch, int classes, int image, int batch = 1, Context* ctx = nullptr) {
  ModelOptions o;
  o.arch = arch;
  o.classes = classes;
  o.image_size = image;
  o.batch = batch;
  auto m = std::make_unique<Model>(o);
  Context local(Device::cpu());
  m->setup(ctx ? *ctx : local);
  return m;
}

struct CountCase {
  const char* arch;
  int classes;
  int64_t params;       // torchvision's count (ImageNet nets); our formula for the CIFAR ones
  size_t state_entries; // len(model.state_dict())
};

// ImageNet counts are torchvision's (torchvision.models.resnetXX(num_classes=1000)); the CIFAR
// counts are He et al.'s resnets with projection shortcuts (option B), 10 classes.
const CountCase kCounts[] = {
    {"resnet18", 1000, 11689512, 122},  {"resnet34", 1000, 21797672, 218},
    {"resnet50", 1000, 25557032, 320},  {"resnet101", 1000, 44549160, 626},
    {"resnet152", 1000, 60192808, 932}, {"resnet20", 10, 272474, 0},
    {"resnet32", 10, 466906, 0},        {"resnet44", 10, 661338, 0},
    {"resnet56", 10, 855770, 0},        {"resnet110", 10, 1730714, 0},
    {"tiny", 10, 5266, 0},
};

TEST(Zoo, ParameterCountsEqualTorchvision) {
  for (const CountCase& c : kCounts) {
    const ArchInfo* a = find_arch(c.arch);
    ASSERT_NE(a, nullptr) << c.arch;
    auto m = make(c.arch, c.classes, a->min_image_size);
    EXPECT_EQ(m->params().count(), c.params) << c.arch;
    if (c.state_entries) {
      EXPECT_EQ(m->state_dict_names().size(), c.state_entries) << c.arch;
    }
  }
}

TEST(Zoo, AnyClassCountChangesOnlyTheHead) {
  auto a = make("resnet18", 1000, 32), b = make("resnet18", 7, 32);
  EXPECT_EQ(a->params().count() - b->params().count(), 993 * 512 + 993);
}

TEST(Zoo, Resnet50NamesAndOrderMatchTorchvision) {
  auto m = make("resnet50", 1000, 32);
  std::vector<std::string> n = m->state_dict_names();
  ASSERT_EQ(n.size(), 320u);
  EXPECT_EQ(n[0], "conv1.weight");
  EXPECT_EQ(n[1], "bn1.weight");
  EXPECT_EQ(n[2], "bn1.bias");
  EXPECT_EQ(n[3], "bn1.running_mean");
  EXPECT_EQ(n[4], "bn1.running_var");
  EXPECT_EQ(n[5], "bn1.num_batches_tracked");
  EXPECT_EQ(n[6], "layer1.0.conv1.weight");
  EXPECT_EQ(n[7], "layer1.0.bn1.weight");
  // torchvision's order inside a bottleneck: conv1 bn1 conv2 bn2 conv3 bn3 downsample.0 downsample.1
  auto pos = [&](const std::string& s) { return std::find(n.begin(), n.end(), s) - n.begin(); };
  EXPECT_LT(pos("layer1.0.bn3.num_batches_tracked"), pos("layer1.0.downsample.0.weight"));
  EXPECT_LT(pos("layer1.0.downsample.1.running_var"), pos("layer1.1.conv1.weight"));
  EXPECT_NE(pos("layer4.2.bn3.running_var"), static_cast<long>(n.size()));
  EXPECT_EQ(pos("layer2.1.downsample.0.weight"), static_cast<long>(n.size()));  // only the first block projects
  EXPECT_EQ(n[318], "fc.weight");
  EXPECT_EQ(n[319], "fc.bias");
}

TEST(Zoo, ShapesUseLockstepAndTorchvisionLayouts) {
  auto m = make("resnet50", 1000, 32);
  const auto& specs = m->params().specs();
  EXPECT_EQ(specs[0].name, "conv1.weight");
  EXPECT_EQ(specs[0].shape, (Shape{64, 7, 7, 3}));        // KRSC
  EXPECT_EQ(specs[0].torch_shape, (Shape{64, 3, 7, 7}));  // KCRS
  EXPECT_EQ(specs.back().shape, (Shape{1000}));
  EXPECT_EQ(specs[specs.size() - 2].shape, (Shape{1000, 2048}));
}

TEST(Zoo, FlatBuffersAreInReverseRegistrationOrder) {
  auto m = make("resnet18", 1000, 32);
  const auto& specs = m->params().specs();
  EXPECT_EQ(specs.back().offset, 0);  // fc.bias first: its gradient is ready first
  int64_t expect = 0;
  for (auto it = specs.rbegin(); it != specs.rend(); ++it) {
    EXPECT_EQ(it->offset, expect) << it->name;
    EXPECT_EQ(it->rng_offset, expect) << it->name;
    expect += it->numel();
  }
  EXPECT_EQ(expect, m->params().count());
}

// 10 classes: the fc bias (10 values) would leave every later parameter 8-byte aligned, which
// cuDNN's NHWC batch norm cannot read (a misaligned-address fault on an H100, 2026-11-26). It
// goes last; every other parameter keeps reverse order and starts on a multiple of 8 elements;
// the initialization's counters stay in plain reverse order, so the values do not move.
TEST(Zoo, SizesThatBreakAlignmentGoLast) {
  auto m = make("resnet18", 10, 32);
  const auto& specs = m->params().specs();
  const int64_t total = m->params().count();
  EXPECT_EQ(specs.back().name, "fc.bias");
  EXPECT_EQ(specs.back().offset, total - 10);
  EXPECT_EQ(specs.back().rng_offset, 0);
  int64_t expect = 0;
  for (auto it = specs.rbegin() + 1; it != specs.rend(); ++it) {
    EXPECT_EQ(it->offset, expect) << it->name;
    EXPECT_EQ(it->offset % nets::ParamTable::kAlignElements, 0) << it->name;
    EXPECT_EQ(it->rng_offset, expect + 10) << it->name;
    expect += it->numel();
  }
  EXPECT_EQ(expect + 10, total);
}

TEST(Zoo, RejectsUnknownArchAndTooSmallImages) {
  ModelOptions o;
  o.arch = "resnet51";
  EXPECT_THROW(Model{o}, Error);
  o.arch = "resnet50";
  o.image_size = 16;
  EXPECT_THROW(Model{o}, Error);
}

TEST(Init, FollowsTorchvisionAndIsDeterministic) {
  Context ctx(Device::cpu());
  auto m = make("resnet18", 10, 32, 1, &ctx);
  m->init(ctx, 5, /*zero_init_residual=*/true);
  const auto& specs = m->params().specs();
  auto values = [&](int i) {
    Tensor t = m->params().param(i);
    return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
  };
  // conv1: Kaiming normal, fan_out = 64 * 7 * 7
  std::vector<float> w = values(0);
  double sum = 0, sq = 0;
  for (float v : w) sum += v, sq += double(v) * v;
  double mean = sum / w.size(), sd = std::sqrt(sq / w.size() - mean * mean);
  EXPECT_NEAR(sd, std::sqrt(2.0 / (64 * 49)), 0.05 * std::sqrt(2.0 / (64 * 49)));
  EXPECT_NEAR(mean, 0.0, 0.005);
  for (size_t i = 0; i < specs.size(); ++i) {
    std::vector<float> v = values(static_cast<int>(i));
    bool residual_gamma = std::count(m->residual_gammas().begin(), m->residual_gammas().end(), int(i)) > 0;
    for (float x : v) {
      if (specs[i].kind == ParamKind::bn_weight) {
        ASSERT_EQ(x, residual_gamma ? 0.f : 1.f) << specs[i].name;
      } else if (specs[i].kind == ParamKind::bn_bias) {
        ASSERT_EQ(x, 0.f) << specs[i].name;
      } else if (specs[i].kind == ParamKind::fc_weight || specs[i].kind == ParamKind::fc_bias) {
        ASSERT_LE(std::fabs(x), 1.f / std::sqrt(512.f)) << specs[i].name;
      }
    }
  }
  EXPECT_EQ(m->residual_gammas().size(), 8u);
  auto m2 = make("resnet18", 10, 32, 1, &ctx);
  m2->init(ctx, 5, true);
  EXPECT_EQ(values(3), std::vector<float>(m2->params().param(3).data<float>(),
                                          m2->params().param(3).data<float>() + m2->params().param(3).numel()));
  m2->init(ctx, 6, true);
  EXPECT_NE(values(3), std::vector<float>(m2->params().param(3).data<float>(),
                                          m2->params().param(3).data<float>() + m2->params().param(3).numel()));
}

TEST(MemoryPlan, CountsEverything) {
  auto m = make("resnet20", 10, 32, 8);
  MemoryPlan p = m->memory_plan();
  EXPECT_EQ(p.parameters, 272474);
  EXPECT_EQ(p.param_bytes, 272474u * 8);
  EXPECT_GT(p.activation_bytes, 8u * 32 * 32 * 16 * 4 * 19);  // at least one f32 map per conv and BN
  EXPECT_NE(p.str().find("272474 parameters"), std::string::npos) << p.str();
}

}  // namespace
}  // namespace lockstep::nets
