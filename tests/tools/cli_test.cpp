// `lockstep train` / `lockstep eval` option parsing: a full command line lands in the right
// fields, a bad value is a ConfigError naming its flag, --help lists every option with its
// default.
#include <gtest/gtest.h>

#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "tools/lockstep/cli_train.h"

namespace lockstep::cli {
namespace {

using engine::Command;
using engine::OptimizerKind;
using engine::ScheduleKind;

TrainConfig train(std::initializer_list<const char*> args, std::ostream* notes = nullptr) {
  std::vector<const char*> argv{"train"};
  argv.insert(argv.end(), args);
  std::ostringstream sink;
  return parse_train_args(static_cast<int>(argv.size()), argv.data(), notes ? *notes : sink);
}

TrainConfig eval(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"eval"};
  argv.insert(argv.end(), args);
  std::ostringstream sink;
  return parse_eval_args(static_cast<int>(argv.size()), argv.data(), sink);
}

// Expects a ConfigError whose message contains `flag`; returns the message.
template <typename F>
std::string error_of(F f, const std::string& flag) {
  try {
    f();
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(flag), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    return what;
  }
  ADD_FAILURE() << "no ConfigError for " << flag;
  return "";
}

TEST(CliTrain, FullCommandLine) {
  TrainConfig c = train({"--arch", "resnet20", "--classes", "10", "--image-size", "32", "--synthetic",
                         "--device", "cpu", "--workers", "2", "--batch-size", "64", "--accumulate", "4",
                         "--epochs", "12", "--steps-per-epoch", "40", "--eval-steps", "3", "--base-lr", "0.2",
                         "--no-lr-scaling", "--warmup-epochs", "1.5", "--schedule", "poly", "--poly-power", "1.5",
                         "--optimizer", "lars", "--momentum", "0.8", "--nesterov", "--weight-decay", "5e-5",
                         "--wd-on-bn", "--lars-eta", "0.002", "--label-smoothing", "0.1",
                         "--no-zero-init-residual", "--precision", "fp32", "--seed", "42", "--out", "runs/t",
                         "--log-every", "5"});
  EXPECT_EQ(c.command, Command::train);
  EXPECT_EQ(c.arch, "resnet20");
  EXPECT_EQ(c.classes, 10);
  EXPECT_EQ(c.image_size, 32);
  EXPECT_TRUE(c.synthetic);
  EXPECT_EQ(c.device, Device::cpu());
  EXPECT_EQ(c.workers, 2);
  EXPECT_EQ(c.batch_size, 64);
  EXPECT_EQ(c.accumulate, 4);
  EXPECT_EQ(c.global_batch(), 512);
  EXPECT_EQ(c.epochs, 12);
  EXPECT_EQ(c.steps_per_epoch, 40);
  EXPECT_EQ(c.eval_steps, 3);
  EXPECT_DOUBLE_EQ(c.base_lr, 0.2);
  EXPECT_FALSE(c.lr_scaling);
  EXPECT_DOUBLE_EQ(c.warmup_epochs, 1.5);
  EXPECT_EQ(c.schedule, ScheduleKind::poly);
  EXPECT_DOUBLE_EQ(c.poly_power, 1.5);
  EXPECT_EQ(c.optimizer, OptimizerKind::lars);
  EXPECT_DOUBLE_EQ(c.momentum, 0.8);
  EXPECT_TRUE(c.nesterov);
  EXPECT_DOUBLE_EQ(c.weight_decay, 5e-5);
  EXPECT_TRUE(c.wd_on_bn);
  EXPECT_DOUBLE_EQ(c.lars_eta, 0.002);
  EXPECT_DOUBLE_EQ(c.label_smoothing, 0.1);
  EXPECT_FALSE(c.zero_init_residual);
  EXPECT_EQ(c.precision, DType::f32);
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.out_dir, "runs/t");
  EXPECT_EQ(c.log_every, 5);
}

TEST(CliTrain, DefaultsMatchTheStruct) {
  TrainConfig c = train({"--synthetic", "--device", "cpu", "--steps-per-epoch", "5", "--arch", "tiny",
                         "--image-size", "16"});
  TrainConfig d;
  EXPECT_EQ(c.batch_size, d.batch_size);
  EXPECT_EQ(c.epochs, d.epochs);
  EXPECT_EQ(c.classes, 10);  // tiny's own default, as for the CIFAR nets
  EXPECT_DOUBLE_EQ(c.base_lr, d.base_lr);
  EXPECT_TRUE(c.lr_scaling);
  EXPECT_TRUE(c.zero_init_residual);
  EXPECT_EQ(c.schedule, ScheduleKind::step);
  EXPECT_EQ(c.precision, DType::f32);  // the cpu default
  EXPECT_EQ(c.out_dir.rfind("runs/", 0), 0u);
  EXPECT_EQ(c.eval_steps, 0);
}

TEST(CliTrain, EqualsSyntax) {
  TrainConfig c = train({"--synthetic", "--device=cpu", "--steps-per-epoch=5", "--batch-size=7"});
  EXPECT_EQ(c.batch_size, 7);
}

TEST(CliTrain, DeviceDefaultFollowsTheMachineAndSaysSo) {
  std::ostringstream notes;
  TrainConfig c = train({"--synthetic", "--steps-per-epoch", "5"}, &notes);
  if (gpu_status().available) {
    EXPECT_EQ(c.device, Device::cuda(0));
    EXPECT_EQ(c.precision, DType::bf16);
    EXPECT_NE(notes.str().find("using cuda:0"), std::string::npos) << notes.str();
  } else {
    EXPECT_EQ(c.device, Device::cpu());
    EXPECT_EQ(c.precision, DType::f32);
    EXPECT_NE(notes.str().find("using cpu (" + gpu_status().reason + ")"), std::string::npos) << notes.str();
  }
}

TEST(CliTrain, BadValuesNameTheFlag) {
  auto base = [](std::initializer_list<const char*> more) {
    return [more] {
      std::vector<const char*> a{"--synthetic", "--device", "cpu", "--steps-per-epoch", "10"};
      a.insert(a.end(), more);
      std::vector<const char*> argv{"train"};
      argv.insert(argv.end(), a.begin(), a.end());
      std::ostringstream sink;
      parse_train_args(static_cast<int>(argv.size()), argv.data(), sink);
    };
  };
  EXPECT_EQ(error_of(base({"--batch-size", "0"}), "--batch-size"), "--batch-size must be > 0 (got 0)");
  EXPECT_EQ(error_of(base({"--conv-algo", "quick"}), "--conv-algo"),
            "--conv-algo: expected heuristic, measure, fastest, heuristic-any, graph or graph-measure, got 'quick'");
  EXPECT_EQ(error_of(base({"--stem-channels", "2"}), "--stem-channels"),
            "--stem-channels must be 0 (off) or 3..64 (got 2)");
  EXPECT_EQ(error_of(base({"--arch", "resnet20", "--stem-space-to-depth"}), "--stem-space-to-depth"),
            "--stem-space-to-depth needs a stride-2 stem (the ImageNet nets); resnet20's is stride 1");
  EXPECT_EQ(error_of(base({"--arch", "resnet18", "--stem-space-to-depth", "--stem-channels", "4"}),
                     "--stem-space-to-depth"),
            "--stem-space-to-depth and --stem-channels exclude each other (the blocks' 12 channels are padded to 16 "
            "already)");
  EXPECT_EQ(error_of(base({"--bn-kernels", "fast"}), "--bn-kernels"),
            "--bn-kernels: expected auto, lockstep, scalar or cudnn, got 'fast'");
  EXPECT_EQ(error_of(base({"--bn-kernels", "cudnn"}), "--bn-kernels"),
            "--bn-kernels cudnn needs --device cuda (the CPU runs lockstep's kernels)");
  EXPECT_EQ(error_of(base({"--bn-kernels", "scalar"}), "--bn-kernels"),
            "--bn-kernels scalar needs --device cuda (the CPU runs lockstep's kernels)");
  EXPECT_EQ(error_of(base({"--cuda-graph"}), "--cuda-graph"),
            "--cuda-graph needs --device cuda (CUDA graphs replay GPU work)");
  EXPECT_EQ(error_of(base({"--batch-size", "abc"}), "--batch-size"), "--batch-size: expected an integer, got 'abc'");
  error_of(base({"--batch-size", "12x"}), "--batch-size");
  error_of(base({"--batch-size", "99999999999"}), "--batch-size");
  error_of(base({"--base-lr", "fast"}), "--base-lr");
  error_of(base({"--base-lr", "nan"}), "--base-lr");
  error_of(base({"--base-lr", "inf"}), "--base-lr");
  error_of(base({"--base-lr=-0.1"}), "--base-lr");
  error_of(base({"--arch", "resnet51"}), "--arch");
  error_of(base({"--device", "tpu"}), "--device");
  error_of(base({"--precision", "int8"}), "--precision");
  error_of(base({"--precision", "bf16"}), "--precision");  // on cpu
  error_of(base({"--schedule", "linear"}), "--schedule");
  error_of(base({"--optimizer", "adam"}), "--optimizer");
  error_of(base({"--warmup-epochs", "100"}), "--warmup-epochs");
  error_of(base({"--accumulate", "0"}), "--accumulate");
  error_of(base({"--image-size", "4"}), "--image-size");
  error_of(base({"--seed=-1"}), "--seed");
  error_of(base({"--no-such-flag"}), "no-such-flag");
  error_of(base({"extra"}), "extra");
  error_of(base({"--zero-init-residual", "--no-zero-init-residual"}), "--no-zero-init-residual");
}

TEST(CliTrain, CudaWithoutGpu) {
  if (gpu_status().available) GTEST_SKIP() << "a GPU is present";
  error_of([] { train({"--synthetic", "--steps-per-epoch", "5", "--device", "cuda"}); }, "--device cuda");
}

TEST(CliTrain, HelpListsEveryOptionWithItsDefault) {
  try {
    train({"--help"});
    FAIL() << "--help did not throw HelpRequested";
  } catch (const HelpRequested& h) {
    EXPECT_EQ(h.text, train_help());
    for (const char* opt :
         {"--arch", "--classes", "--image-size", "--synthetic", "--data", "--steps-per-epoch", "--eval-steps",
          "--device", "--workers", "--batch-size", "--accumulate", "--precision", "--epochs", "--base-lr",
          "--no-lr-scaling", "--warmup-epochs", "--schedule", "--poly-power", "--optimizer", "--momentum",
          "--nesterov", "--weight-decay", "--wd-on-bn", "--lars-eta", "--label-smoothing",
          "--zero-init-residual", "--no-zero-init-residual", "--seed", "--out", "--log-every", "--help"})
      EXPECT_NE(h.text.find(opt), std::string::npos) << opt;
    for (const char* def : {"(default: resnet50)", "default: 1000 for ImageNet nets", "default: 224 for ImageNet nets", "(default: 32)",
                            "(default: 90)", "(default: 0.1)", "(default: 5)", "(default: step)",
                            "(default: sgd)", "(default: 0.9)", "(default: 0.0001)", "(default: 0.001)",
                            "(default: 10)", "default: runs/<UTC", "default: cuda when a GPU",
                            "default: bf16 on cuda"})
      EXPECT_NE(h.text.find(def), std::string::npos) << def << "\n" << h.text;
  }
  EXPECT_THROW(train({"-h"}), HelpRequested);
}

TEST(CliTrain, ClassesAndImageSizeFollowTheArch) {
  TrainConfig imagenet = train({"--synthetic", "--device", "cpu", "--steps-per-epoch", "5", "--arch", "resnet18"});
  EXPECT_EQ(imagenet.classes, 1000);
  EXPECT_EQ(imagenet.image_size, 224);
  TrainConfig cifar = train({"--synthetic", "--device", "cpu", "--steps-per-epoch", "5", "--arch", "resnet56"});
  EXPECT_EQ(cifar.classes, 10);
  EXPECT_EQ(cifar.image_size, 32);
  TrainConfig given = train({"--synthetic", "--device", "cpu", "--steps-per-epoch", "5", "--arch", "resnet56",
                             "--classes", "100", "--image-size", "40"});
  EXPECT_EQ(given.classes, 100);
  EXPECT_EQ(given.image_size, 40);
}

TEST(CliEval, ParsesItsOptions) {
  TrainConfig c = eval({"--arch", "resnet32", "--classes", "100", "--image-size", "40", "--synthetic", "--device",
                        "cpu", "--batch-size", "16", "--precision", "fp32", "--seed", "7", "--eval-steps", "4"});
  EXPECT_EQ(c.command, Command::eval);
  EXPECT_EQ(c.arch, "resnet32");
  EXPECT_EQ(c.classes, 100);
  EXPECT_EQ(c.image_size, 40);
  EXPECT_TRUE(c.synthetic);
  EXPECT_EQ(c.batch_size, 16);
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.eval_steps, 4);
  EXPECT_EQ(eval({"--synthetic", "--device", "cpu"}).eval_steps, 10);  // eval's default
}

TEST(CliEval, RejectsTrainingOptionsAndBadValues) {
  error_of([] { eval({"--synthetic", "--device", "cpu", "--epochs", "3"}); }, "epochs");
  error_of([] { eval({"--synthetic", "--device", "cpu", "--checkpoint", "x"}); }, "checkpoint");
  error_of([] { eval({"--device", "cpu", "--weights", "/nonexistent/w.safetensors"}); }, "--weights");
  error_of([] { eval({"--synthetic", "--data", "/tmp", "--device", "cpu"}); }, "--data");
  error_of([] { eval({"--synthetic", "--device", "cpu", "--eval-steps", "0"}); }, "--eval-steps");
  error_of([] { eval({"--synthetic", "--device", "cpu", "--batch-size", "-5"}); }, "--batch-size");
}

TEST(CliEval, Help) {
  try {
    eval({"--help"});
    FAIL();
  } catch (const HelpRequested& h) {
    EXPECT_EQ(h.text, eval_help());
    EXPECT_NE(h.text.find("--eval-steps"), std::string::npos);
    EXPECT_NE(h.text.find("(default: 10)"), std::string::npos);
    EXPECT_EQ(h.text.find("--epochs"), std::string::npos);
  }
}

}  // namespace
}  // namespace lockstep::cli
