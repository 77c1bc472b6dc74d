// TrainConfig::validate(): each invalid value throws a ConfigError whose message names the
// option as the user types it; valid configs pass; to_json/from_json round-trip.
#include <gtest/gtest.h>

#include <cctype>

#include <cmath>
#include <functional>
#include <limits>

#include <nlohmann/json.hpp>

#include "engine/config.h"

namespace lockstep::engine {
namespace {

// A valid CPU config that any machine accepts.
TrainConfig cpu_config() {
  TrainConfig c;
  c.arch = "resnet20";
  c.classes = 10;
  c.image_size = 32;
  c.synthetic = true;
  c.steps_per_epoch = 20;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.epochs = 10;
  c.warmup_epochs = 2;
  return c;
}

TEST(Config, CpuConfigIsValid) { EXPECT_NO_THROW(cpu_config().validate()); }

TEST(Config, DefaultsAreValidOnAGpuMachine) {
  if (!gpu_status().available) GTEST_SKIP() << "no GPU: " << gpu_status().reason;
  TrainConfig c;  // resnet50, 224 px, cuda, bf16
  c.synthetic = true;
  c.steps_per_epoch = 10;
  EXPECT_NO_THROW(c.validate());
}

TEST(Config, Defaults) {
  TrainConfig c;
  EXPECT_EQ(c.arch, "resnet50");
  EXPECT_EQ(c.classes, 1000);
  EXPECT_EQ(c.image_size, 224);
  EXPECT_EQ(c.device, Device::cuda());
  EXPECT_EQ(c.precision, DType::bf16);
  EXPECT_EQ(c.batch_size, 32);
  EXPECT_EQ(c.epochs, 90);
  EXPECT_DOUBLE_EQ(c.base_lr, 0.1);
  EXPECT_TRUE(c.lr_scaling);
  EXPECT_DOUBLE_EQ(c.warmup_epochs, 5);
  EXPECT_EQ(c.schedule, ScheduleKind::step);
  EXPECT_DOUBLE_EQ(c.momentum, 0.9);
  EXPECT_DOUBLE_EQ(c.weight_decay, 1e-4);
  EXPECT_TRUE(c.zero_init_residual);
  EXPECT_EQ(c.optimizer, OptimizerKind::sgd);
  EXPECT_EQ(c.out_dir.rfind("runs/", 0), 0u);
  EXPECT_EQ(c.out_dir.size(), std::string("runs/20250101-000000").size()) << c.out_dir;
}

TEST(Config, GlobalBatchIncludesWorkersAndAccumulation) {
  TrainConfig c = cpu_config();
  c.workers = 4;
  c.batch_size = 64;
  c.accumulate = 8;
  EXPECT_EQ(c.global_batch(), 2048);
  ScheduleConfig s = c.schedule_config(7);
  EXPECT_EQ(s.global_batch, 2048);
  EXPECT_EQ(s.updates_per_epoch, 7);
  EXPECT_EQ(s.epochs, 10);
}

struct Invalid {
  const char* option;          // the flag the message must name
  std::function<void(TrainConfig&)> change;
};

void PrintTo(const Invalid& v, std::ostream* os) { *os << v.option; }

class ConfigInvalid : public ::testing::TestWithParam<Invalid> {};

TEST_P(ConfigInvalid, ThrowsNamingTheOption) {
  TrainConfig c = cpu_config();
  GetParam().change(c);
  try {
    c.validate();
    FAIL() << "accepted an invalid " << GetParam().option;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.option(), GetParam().option);
    std::string what = e.what();
    EXPECT_NE(what.find(GetParam().option), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
}

const double kNan = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

INSTANTIATE_TEST_SUITE_P(
    EachRule, ConfigInvalid,
    ::testing::Values(
        Invalid{"--batch-size", [](TrainConfig& c) { c.batch_size = 0; }},
        Invalid{"--batch-size", [](TrainConfig& c) { c.batch_size = -3; }},
        Invalid{"--arch", [](TrainConfig& c) { c.arch = "resnet51"; }},
        Invalid{"--base-lr", [](TrainConfig& c) { c.base_lr = kNan; }},
        Invalid{"--base-lr", [](TrainConfig& c) { c.base_lr = kInf; }},
        Invalid{"--base-lr", [](TrainConfig& c) { c.base_lr = -0.1; }},
        Invalid{"--warmup-epochs", [](TrainConfig& c) { c.warmup_epochs = 11; }},
        Invalid{"--warmup-epochs", [](TrainConfig& c) { c.warmup_epochs = -1; }},
        Invalid{"--accumulate", [](TrainConfig& c) { c.accumulate = 0; }},
        Invalid{"--image-size", [](TrainConfig& c) { c.image_size = 7; }},
        Invalid{"--image-size", [](TrainConfig& c) { c.arch = "resnet50"; c.image_size = 31; }},
        Invalid{"--classes", [](TrainConfig& c) { c.classes = 0; }},
        Invalid{"--epochs", [](TrainConfig& c) { c.epochs = 0; c.warmup_epochs = 0; }},
        Invalid{"--epochs", [](TrainConfig& c) { c.epochs = 0; }},
        Invalid{"--steps-per-epoch", [](TrainConfig& c) { c.steps_per_epoch = 0; }},
        Invalid{"--steps-per-epoch", [](TrainConfig& c) { c.accumulate = 3; }},  // 20 % 3 != 0
        Invalid{"--label-smoothing", [](TrainConfig& c) { c.label_smoothing = 1.0; }},
        Invalid{"--label-smoothing", [](TrainConfig& c) { c.label_smoothing = -0.1; }},
        Invalid{"--momentum", [](TrainConfig& c) { c.momentum = 1.0; }},
        Invalid{"--momentum", [](TrainConfig& c) { c.momentum = -0.5; }},
        Invalid{"--weight-decay", [](TrainConfig& c) { c.weight_decay = -1e-4; }},
        Invalid{"--precision", [](TrainConfig& c) { c.precision = DType::bf16; }},
        Invalid{"--precision", [](TrainConfig& c) { c.precision = DType::f16; }},
        Invalid{"--log-every", [](TrainConfig& c) { c.log_every = 0; }},
        Invalid{"--workers", [](TrainConfig& c) { c.workers = 0; }},
        Invalid{"--poly-power", [](TrainConfig& c) { c.poly_power = 0; }},
        Invalid{"--lars-eta", [](TrainConfig& c) { c.lars_eta = 0; }},
        Invalid{"--eval-steps", [](TrainConfig& c) { c.eval_steps = -1; }},
        Invalid{"--out", [](TrainConfig& c) { c.out_dir.clear(); }},
        Invalid{"--comm-timeout", [](TrainConfig& c) { c.comm_timeout_s = 1e300; }},
        Invalid{"--classes", [](TrainConfig& c) { c.classes = 2000000000; }},
        Invalid{"--image-size", [](TrainConfig& c) { c.image_size = 100000; }},
        Invalid{"--batch-size", [](TrainConfig& c) { c.batch_size = 100000000; }},
        Invalid{"--nesterov", [](TrainConfig& c) { c.nesterov = true; c.momentum = 0; }},
        Invalid{"--data", [](TrainConfig& c) { c.synthetic = false; }},
        Invalid{"--data", [](TrainConfig& c) { c.data_dir = "/tmp"; }},
        Invalid{"--data", [](TrainConfig& c) { c.synthetic = false; c.data_dir = "/no/such/lockstep/dir"; }},
        Invalid{"--data", [](TrainConfig& c) { c.command = Command::eval; c.synthetic = false; }},
        Invalid{"--eval-steps", [](TrainConfig& c) { c.command = Command::eval; c.eval_steps = 0; }}),
    // "--batch-size" -> "batch_size_3": readable test names (gtest allows only [A-Za-z0-9_]).
    [](const ::testing::TestParamInfo<Invalid>& info) {
      std::string name;
      for (const char* p = info.param.option; *p; ++p)
        if (std::isalnum(static_cast<unsigned char>(*p))) name += *p;
        else if (!name.empty() && name.back() != '_') name += '_';
      return name + "_" + std::to_string(info.index);
    });

TEST(Config, MessagesSayWhy) {
  TrainConfig c = cpu_config();
  c.batch_size = 0;
  try {
    c.validate();
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "--batch-size must be > 0 (got 0)");
  }
  c = cpu_config();
  c.arch = "vgg16";
  try {
    c.validate();
    FAIL();
  } catch (const ConfigError& e) {  // lists the known architectures
    EXPECT_NE(std::string(e.what()).find("resnet18, resnet34"), std::string::npos) << e.what();
  }
  c = cpu_config();
  c.image_size = 2;
  try {
    c.validate();
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "--image-size 2 is too small for resnet20 (at least 8)");
  }
}

TEST(Config, CudaWithoutGpuNamesTheReason) {
  if (gpu_status().available) GTEST_SKIP() << "a GPU is present";
  TrainConfig c = cpu_config();
  c.device = Device::cuda();
  c.precision = DType::bf16;
  try {
    c.validate();
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.option(), "--device");
    EXPECT_NE(std::string(e.what()).find(gpu_status().reason), std::string::npos) << e.what();
  }
}

TEST(Config, CudaIndexBeyondTheGpus) {
  if (!gpu_status().available) GTEST_SKIP() << "no GPU: " << gpu_status().reason;
  TrainConfig c = cpu_config();
  c.device = Device::cuda(gpu_status().count);
  c.precision = DType::bf16;
  EXPECT_THROW(c.validate(), ConfigError);
}

TEST(Config, EvalIgnoresTrainingOnlySettings) {
  TrainConfig c = cpu_config();
  c.command = Command::eval;
  c.eval_steps = 5;
  c.epochs = 0;         // not used by eval
  c.steps_per_epoch = 0;
  EXPECT_NO_THROW(c.validate());
}

TEST(Config, WarmupEqualToTrainingIsAllowed) {
  TrainConfig c = cpu_config();
  c.warmup_epochs = c.epochs;
  EXPECT_NO_THROW(c.validate());
}

TEST(Config, JsonRoundTrip) {
  TrainConfig c = cpu_config();
  c.workers = 2;
  c.batch_size = 48;
  c.accumulate = 4;
  c.base_lr = 0.2;
  c.lr_scaling = false;
  c.schedule = ScheduleKind::cosine;
  c.optimizer = OptimizerKind::lars;
  c.nesterov = true;
  c.wd_on_bn = true;
  c.label_smoothing = 0.1;
  c.zero_init_residual = false;
  c.seed = 12345678901234ull;
  c.out_dir = "runs/x";
  c.eval_steps = 3;
  c.conv_algo = ConvAlgoSearch::fastest;
  c.stem_channels = 8;
  nlohmann::json j = c.to_json();
  EXPECT_EQ(j["bn_kernels"], "auto");
  EXPECT_EQ(j["arch"], "resnet20");
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["precision"], "fp32");
  EXPECT_EQ(j["conv_algo"], "fastest");
  EXPECT_EQ(j["stem_channels"], 8);
  EXPECT_EQ(j["schedule"], "cosine");
  EXPECT_EQ(j["optimizer"], "lars");
  EXPECT_EQ(j["global_batch"], 2 * 48 * 4);
  EXPECT_EQ(j["batch_size"], 48);
  EXPECT_EQ(j["seed"], 12345678901234ull);
  EXPECT_EQ(j["out"], "runs/x");
  // text and back
  TrainConfig back = TrainConfig::from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(back, c);
  EXPECT_EQ(back.to_json(), j);
}

// state.json is text a user can edit or a disk can corrupt: a saved config whose field has the
// wrong type, does not fit its C++ type or names no known choice is refused naming the field,
// never converted (found by tests/fuzz/resume_fuzz.cpp: "classes": "4" escaped as nlohmann's
// type_error, and 1e12 became an int).
TEST(Config, FromJsonRefusesMistypedFieldsNamingThem) {
  auto error_of = [](const std::string& key, const nlohmann::json& value) {
    nlohmann::json j = cpu_config().to_json();
    j[key] = value;
    try {
      (void)TrainConfig::from_json(j);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("classes", "four"), "field 'config.classes' is \"four\", expected an integer");
  EXPECT_EQ(error_of("classes", 1e12), "field 'config.classes' is 1000000000000.0, expected an integer");
  EXPECT_EQ(error_of("classes", int64_t{1} << 40), "field 'config.classes' is 1099511627776, expected an integer in range");
  EXPECT_EQ(error_of("batch_size", -(int64_t{1} << 40)),
            "field 'config.batch_size' is -1099511627776, expected an integer in range");
  EXPECT_EQ(error_of("classes", 2.5), "field 'config.classes' is 2.5, expected an integer");
  EXPECT_EQ(error_of("seed", -1), "field 'config.seed' is -1, expected an integer in range");
  EXPECT_EQ(error_of("synthetic", 1), "field 'config.synthetic' is 1, expected true or false");
  EXPECT_EQ(error_of("base_lr", "0.1"), "field 'config.base_lr' is \"0.1\", expected a number");
  EXPECT_EQ(error_of("arch", 50), "field 'config.arch' is 50, expected a string");
  EXPECT_EQ(error_of("devices", nlohmann::json::array({0, "1"})),
            "field 'config.devices' is \"1\", expected an integer");
  EXPECT_EQ(error_of("devices", 3), "field 'config.devices' is 3, expected an array of integers");
  EXPECT_EQ(error_of("sync", "gossip").rfind("field 'config.sync': ", 0), 0u) << error_of("sync", "gossip");
  EXPECT_EQ(error_of("device", 0), "field 'config.device' is 0, expected a string");
  EXPECT_EQ(error_of("command", "serve"), "field 'config.command': unknown command 'serve' (expected train or eval)");
  const std::string long_value = error_of("out", nlohmann::json::array({std::string(100, 'x')}));
  EXPECT_LT(long_value.size(), 120u) << long_value;
  EXPECT_THROW((void)TrainConfig::from_json(nlohmann::json::array()), Error);
  // Integers where a double is wanted, and the largest values each type holds, read as they are.
  nlohmann::json j = cpu_config().to_json();
  j["base_lr"] = 1;
  j["seed"] = std::numeric_limits<uint64_t>::max();
  j["stop_after"] = std::numeric_limits<int64_t>::max();
  j["classes"] = std::numeric_limits<int>::max();
  const TrainConfig c = TrainConfig::from_json(j);
  EXPECT_EQ(c.base_lr, 1.0);
  EXPECT_EQ(c.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.stop_after, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(c.classes, std::numeric_limits<int>::max());
}

TEST(Config, JsonHasEveryField) {
  nlohmann::json j = cpu_config().to_json();
  for (const char* key :
       {"command", "arch", "classes", "image_size", "synthetic", "data", "steps_per_epoch", "eval_steps", "device",
        "workers", "batch_size", "accumulate", "global_batch", "precision", "conv_algo", "stem_channels", "bn_kernels", "epochs", "base_lr", "lr_scaling",
        "warmup_epochs", "schedule", "poly_power", "optimizer", "momentum", "nesterov", "weight_decay", "wd_on_bn",
        "lars_eta", "label_smoothing", "zero_init_residual", "seed", "out", "log_every"})
    EXPECT_TRUE(j.contains(key)) << key;
}

TEST(Config, OptimizerNames) {
  EXPECT_EQ(parse_optimizer("sgd"), OptimizerKind::sgd);
  EXPECT_EQ(parse_optimizer("lars"), OptimizerKind::lars);
  EXPECT_THROW(parse_optimizer("adam"), Error);
}

}  // namespace
}  // namespace lockstep::engine
