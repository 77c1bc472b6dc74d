// The checkpoint layer below the trainer: torchvision layouts and names, loading that refuses a
// file whole (nothing changes), fine-tuning's fc re-initialisation, state.json's strict reading,
// checkpoint names, verification and pruning. End-to-end resume is in tests/resume.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "engine/checkpoint/checkpoint.h"
#include "engine/config.h"
#include "engine/trainer.h"
#include "kernels/copy.h"
#include "kernels/half.h"

namespace lockstep::engine {
namespace {

namespace fs = std::filesystem;

struct Net {
  Context ctx{Device::cpu(), 0};
  nets::Model model;
  Net(const std::string& arch, int classes, uint64_t seed, int image = 16)
      : model(nets::ModelOptions{arch, classes, image, 2, DType::f32, ConvAlgoSearch::heuristic}) {
    model.setup(ctx);
    model.init(ctx, seed, false);
    // BN statistics that are not the defaults, so a load that skipped them would show.
    std::vector<float> b = host_copy(ctx, model.params().buffers());
    for (size_t i = 0; i < b.size(); ++i) b[i] = 0.5f + 0.001f * static_cast<float>(i % 97);
    Tensor h(b.data(), Shape{static_cast<int64_t>(b.size())}, DType::f32, Device::cpu());
    copy(ctx, h, model.params().buffers());
  }
  std::vector<float> params() { return host_copy(ctx, model.params().params()); }
  std::vector<float> buffers() { return host_copy(ctx, model.params().buffers()); }
};

fs::path temp(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("lockstep_ckpt_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

SafetensorsFile parse(const std::vector<TensorEntry>& entries, const std::string& name = "test.safetensors") {
  return SafetensorsFile::parse(serialize_safetensors(entries), name);
}

std::string load_error(Net& n, const std::vector<TensorEntry>& entries, const WeightsLoadOptions& o = {}) {
  try {
    load_model_weights(n.model, n.ctx, parse(entries), o);
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "";
}

TEST(Weights, ConvLayoutConvertsBothWays) {
  nets::ParamSpec s{"conv1.weight", {2, 3, 3, 4}, {2, 4, 3, 3}, nets::ParamKind::conv_weight};
  std::vector<float> krsc(72), kcrs(72), back(72);
  for (int i = 0; i < 72; ++i) krsc[i] = static_cast<float>(i);
  to_torch_layout(s, krsc.data(), kcrs.data());
  // (k=1, c=2, r=0, s=1) in KCRS is (k=1, r=0, s=1, c=2) in KRSC.
  EXPECT_EQ(kcrs[((1 * 4 + 2) * 3 + 0) * 3 + 1], krsc[((1 * 3 + 0) * 3 + 1) * 4 + 2]);
  from_torch_layout(s, kcrs.data(), back.data());
  EXPECT_EQ(back, krsc);
}

TEST(Weights, ModelStateHasTorchvisionsNamesOrderAndShapes) {
  Net n("resnet18", 10, 1, 32);
  HostTensors st = model_state(n.model, n.ctx, 7);
  const std::vector<std::string> names = n.model.state_dict_names();
  ASSERT_EQ(st.entries.size(), names.size());
  EXPECT_EQ(names.size(), 122u);  // torchvision resnet18's state_dict length
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(st.entries[i].name, names[i]);
  EXPECT_EQ(st.entries[0].name, "conv1.weight");
  EXPECT_EQ(st.entries[0].shape, (std::vector<int64_t>{64, 3, 7, 7}));
  EXPECT_EQ(st.entries[5].name, "bn1.num_batches_tracked");
  EXPECT_EQ(st.entries[5].dtype, "I64");
  EXPECT_TRUE(st.entries[5].shape.empty());
  int64_t tracked;
  std::memcpy(&tracked, st.entries[5].data, 8);
  EXPECT_EQ(tracked, 7);
  EXPECT_EQ(st.entries.back().name, "fc.bias");
}

TEST(Weights, SaveAndLoadRoundTripBitForBit) {
  Net a("tiny", 10, 1), b("tiny", 10, 2);
  const fs::path dir = temp("roundtrip");
  save_model_weights(a.model, a.ctx, dir / "m.safetensors", 3, {{"arch", "tiny"}});
  ASSERT_NE(a.params(), b.params());
  WeightsLoadReport r = load_model_weights(b.model, b.ctx, SafetensorsFile::open(dir / "m.safetensors"));
  EXPECT_EQ(a.params(), b.params());
  EXPECT_EQ(a.buffers(), b.buffers());
  EXPECT_EQ(r.bn_batches, 3);
  EXPECT_TRUE(r.reinitialised.empty());
}

TEST(Weights, SixteenBitFilesLoadConverted) {
  Net a("tiny", 10, 1), b("tiny", 10, 2);
  HostTensors st = model_state(a.model, a.ctx, 0);
  std::vector<std::vector<uint16_t>> halves;
  halves.reserve(st.entries.size());
  std::vector<TensorEntry> entries;
  for (const TensorEntry& e : st.entries) {
    if (e.dtype != "F32") {
      entries.push_back(e);
      continue;
    }
    const float* f = static_cast<const float*>(e.data);
    std::vector<uint16_t>& h = halves.emplace_back(e.bytes / 4);
    for (size_t i = 0; i < h.size(); ++i) h[i] = bf16_from_f32(f[i]);
    entries.push_back({e.name, "BF16", e.shape, h.data(), h.size() * 2});
  }
  load_model_weights(b.model, b.ctx, parse(entries));
  const std::vector<float> pa = a.params(), pb = b.params();
  for (size_t i = 0; i < pa.size(); ++i) ASSERT_EQ(pb[i], f32_from_bf16(bf16_from_f32(pa[i]))) << i;
}

TEST(Weights, BadFilesAreRefusedWholeNamingTheTensor) {
  Net a("tiny", 10, 1), b("tiny", 10, 2);
  const std::vector<float> before = b.params(), before_buf = b.buffers();
  HostTensors st = model_state(a.model, a.ctx, 0);
  auto without = [&](const std::string& name) {
    std::vector<TensorEntry> e;
    for (const TensorEntry& t : st.entries)
      if (t.name != name) e.push_back(t);
    return e;
  };
  EXPECT_NE(load_error(b, without("layer1.0.bn1.running_var")).find("tensor 'layer1.0.bn1.running_var': missing"),
            std::string::npos);
  // num_batches_tracked is optional (older PyTorch files lack it).
  Net c("tiny", 10, 3);
  EXPECT_EQ(load_error(c, without("bn1.num_batches_tracked")), "");

  std::vector<TensorEntry> extra = st.entries;
  float one = 1;
  extra.push_back({"layer9.weight", "F32", {1}, &one, 4});
  EXPECT_NE(load_error(b, extra).find("tensor 'layer9.weight': not in tiny's state_dict"), std::string::npos);

  std::vector<TensorEntry> wrong = st.entries;
  for (TensorEntry& e : wrong)
    if (e.name == "fc.weight") e.shape = {e.shape[1], e.shape[0]};
  EXPECT_NE(load_error(b, wrong).find("tensor 'fc.weight': shape [16, 10] in the file, the model's is [10, 16]"),
            std::string::npos);

  std::vector<TensorEntry> nan = st.entries;
  std::vector<float> bad(static_cast<size_t>(nan.back().bytes / 4), std::nanf(""));
  nan.back().data = bad.data();
  EXPECT_NE(load_error(b, nan).find("tensor 'fc.bias': element 0 is not finite"), std::string::npos);

  std::vector<TensorEntry> ints = st.entries;
  ints.back().dtype = "I32";
  EXPECT_NE(load_error(b, ints).find("dtype I32 is not F32, F16 or BF16"), std::string::npos);

  EXPECT_EQ(b.params(), before) << "a refused file changed the weights";
  EXPECT_EQ(b.buffers(), before_buf);
}

TEST(Weights, FineTuningReinitialisesFcForAnotherClassCount) {
  Net a("tiny", 10, 1), b("tiny", 7, 2);
  const fs::path dir = temp("finetune");
  save_model_weights(a.model, a.ctx, dir / "m.safetensors", 0);
  const SafetensorsFile f = SafetensorsFile::open(dir / "m.safetensors");
  std::string err;
  try {
    load_model_weights(b.model, b.ctx, f);
  } catch (const SafetensorsError& e) {
    err = e.what();
  }
  EXPECT_NE(err.find("'fc.weight': shape [10, 16] in the file, the model's is [7, 16]"), std::string::npos) << err;

  const std::vector<float> fc_before = b.params();
  WeightsLoadOptions o;
  o.reinit_fc_on_class_mismatch = true;
  WeightsLoadReport r = load_model_weights(b.model, b.ctx, f, o);
  EXPECT_EQ(r.reinitialised, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  const std::vector<float> pa = a.params(), pb = b.params();
  for (const nets::ParamSpec& s : b.model.params().specs()) {
    const nets::ParamSpec* sa = nullptr;
    for (const nets::ParamSpec& t : a.model.params().specs())
      if (t.name == s.name) sa = &t;
    ASSERT_NE(sa, nullptr);
    const bool fc = s.name.rfind("fc.", 0) == 0;
    for (int64_t i = 0; i < s.numel(); ++i) {
      const float want = fc ? fc_before[s.offset + i] : pa[sa->offset + i];
      ASSERT_EQ(pb[s.offset + i], want) << s.name;
    }
  }
}

TEST(Weights, ParamStateRoundTripsWithAPrefix) {
  Net a("tiny", 10, 1);
  const nets::ParamTable& t = a.model.params();
  std::vector<float> flat(static_cast<size_t>(t.count()));
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<float>(i) * 0.25f;
  HostTensors st = param_state(t, flat, "rank1.");
  EXPECT_EQ(st.entries.front().name, "rank1.conv1.weight");
  const SafetensorsFile f = parse(st.entries);
  EXPECT_EQ(read_param_state(t, f, "rank1."), flat);
  EXPECT_THROW(read_param_state(t, f, "rank0."), SafetensorsError);  // none under that prefix
}

TEST(CheckpointNames, StepNumbersParseStrictly) {
  EXPECT_EQ(checkpoint_name(12), "step-12");
  EXPECT_EQ(checkpoint_step("step-12"), 12);
  EXPECT_EQ(checkpoint_step("step-0"), 0);
  for (const char* bad : {"step-", "step-01", "step-1x", "step--1", "latest", ".tmp-step-3-1-0123456789abcdef"})
    EXPECT_FALSE(checkpoint_step(bad)) << bad;
  EXPECT_EQ(run_dir_of("runs/a/checkpoints/step-3"), fs::path("runs/a"));
  EXPECT_EQ(run_dir_of("runs/a/checkpoints/step-3/"), fs::path("runs/a"));
}

CheckpointContents small_checkpoint(int64_t update, Net& n) {
  CheckpointContents c;
  c.state.lockstep_version = "test";
  c.state.update = update;
  c.state.batch_size = 2;
  c.state.workers.resize(1);
  c.state.config = TrainConfig{}.to_json();
  c.model = model_state(n.model, n.ctx, update);
  c.optimizer = param_state(n.model.params(), n.params());
  return c;
}

TEST(Checkpoint, StateJsonRoundTripsAndNamesBadFields) {
  CheckpointState s;
  s.lockstep_version = "0.1";
  s.created = "now";
  s.update = 9;
  s.epoch = 3;
  s.epoch_step = 2;
  s.world = 2;
  s.batch_size = 8;
  s.workers = {{5, 1.5, 2, 3, 16}, {7, 0.25, 1, 1, 16}};
  s.scaler_enabled = true;
  s.scaler_scale = 1024;
  s.config = {{"arch", "tiny"}};
  const CheckpointState r = CheckpointState::from_json(s.to_json(), "state.json");
  EXPECT_EQ(r.to_json(), s.to_json());
  EXPECT_EQ(r.workers[1].rng_offset, 7u);

  nlohmann::json j = s.to_json();
  j.erase("epoch_step");
  EXPECT_THROW(
      {
        try {
          CheckpointState::from_json(j, "x/state.json");
        } catch (const CheckpointError& e) {
          EXPECT_STREQ(e.what(), "x/state.json: field 'epoch_step' is missing");
          throw;
        }
      },
      CheckpointError);
  j = s.to_json();
  j["loss_scaler"]["scale"] = "big";
  try {
    CheckpointState::from_json(j, "s.json");
    ADD_FAILURE();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'loss_scaler.scale' has the wrong type"), std::string::npos);
  }
  j = s.to_json();
  j["format"] = 99;
  EXPECT_THROW(CheckpointState::from_json(j, "s.json"), CheckpointError);
  // The saved config is read here too, so every reader (--resume, eval --weights, ckpt) refuses
  // a config that does not read, naming the file and the field.
  j = s.to_json();
  j["config"]["classes"] = "ten";
  try {
    CheckpointState::from_json(j, "x/state.json");
    ADD_FAILURE();
  } catch (const CheckpointError& e) {
    EXPECT_STREQ(e.what(), "x/state.json: field 'config.classes' is \"ten\", expected an integer");
  }
}

TEST(Checkpoint, WrittenCheckpointsVerifyAndCorruptionIsNamed) {
  Net n("tiny", 10, 1);
  const fs::path run = temp("verify");
  CheckpointContents c = small_checkpoint(4, n);
  const fs::path dir = write_checkpoint(run, c);
  EXPECT_EQ(dir, run / "checkpoints" / "step-4");
  LoadedCheckpoint ck = open_checkpoint(dir);
  EXPECT_EQ(ck.state.update, 4);
  EXPECT_EQ(ck.model.tensors().size(), n.model.state_dict_names().size());
  EXPECT_FALSE(ck.workers.has_value());

  auto error_of = [&] {
    try {
      open_checkpoint(dir);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const fs::path opt = dir / "optimizer.safetensors";
  const auto size = fs::file_size(opt);
  fs::resize_file(opt, size - 1);
  EXPECT_NE(error_of().find("optimizer.safetensors: " + std::to_string(size - 1) + " bytes, state.json says"),
            std::string::npos)
      << error_of();
  fs::remove(opt);
  EXPECT_NE(error_of().find("optimizer.safetensors: missing"), std::string::npos) << error_of();
  std::ofstream(dir / "state.json") << "{not json";
  EXPECT_NE(error_of().find("state.json: not valid JSON"), std::string::npos) << error_of();
  fs::remove(dir / "state.json");
  EXPECT_NE(error_of().find("state.json: missing"), std::string::npos) << error_of();
}

TEST(Checkpoint, MultiWorkerCheckpointsNeedTheWorkersFile) {
  Net n("tiny", 10, 1);
  const fs::path run = temp("workers-file");
  CheckpointContents c = small_checkpoint(2, n);
  c.state.world = 2;
  c.state.workers.resize(2);
  const fs::path dir = write_checkpoint(run, c);
  try {
    open_checkpoint(dir);
    ADD_FAILURE() << "a two-worker checkpoint without workers.safetensors verified";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'files.workers.safetensors' is missing (world_size 2"),
              std::string::npos)
        << e.what();
  }
}

TEST(Checkpoint, AnUnreadableLatestFallsBackToTheNewestValidOne) {
  Net n("tiny", 10, 1);
  const fs::path run = temp("latest-unreadable");
  for (int64_t u : {1, 2}) {
    CheckpointContents c = small_checkpoint(u, n);
    write_checkpoint(run, c);
  }
  EXPECT_EQ(read_latest(run).name, "step-2");
  fs::remove(run / "checkpoints" / "latest");
  EXPECT_EQ(read_latest(run).problem, "missing");
  fs::create_directory(run / "checkpoints" / "latest");  // a read error
  EXPECT_TRUE(read_latest(run).name.empty());
  std::vector<std::string> warnings;
  LoadedCheckpoint ck = resolve_checkpoint(run, &warnings);
  EXPECT_EQ(ck.state.update, 2);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("taking the newest valid checkpoint"), std::string::npos) << warnings[0];
}

TEST(Checkpoint, PruneKeepsTheNewestAndTheOneJustWritten) {
  Net n("tiny", 10, 1);
  const fs::path run = temp("prune");
  for (int64_t u : {1, 2, 3, 4, 5}) {
    CheckpointContents c = small_checkpoint(u, n);
    write_checkpoint(run, c);
  }
  EXPECT_TRUE(prune_checkpoints(run, 0, run / "checkpoints" / "step-5").empty());
  // A resumed run re-saving an older step keeps it and the newest other one.
  std::vector<fs::path> removed = prune_checkpoints(run, 2, run / "checkpoints" / "step-3");
  EXPECT_EQ(removed.size(), 3u);
  std::vector<fs::path> left = list_checkpoints(run);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].filename(), "step-5");
  EXPECT_EQ(left[1].filename(), "step-3");
  removed = prune_checkpoints(run, 1, run / "checkpoints" / "step-5");
  ASSERT_EQ(list_checkpoints(run).size(), 1u);
  EXPECT_EQ(list_checkpoints(run)[0].filename(), "step-5");
}

TEST(Checkpoint, TrainerInitFromReportsTheFcAndKeepsTheRest) {
  Net a("tiny", 10, 1);
  const fs::path dir = temp("init-from");
  save_model_weights(a.model, a.ctx, dir / "w.safetensors", 0);
  TrainConfig c;
  c.arch = "tiny";
  c.classes = 4;
  c.image_size = 16;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.batch_size = 2;
  c.epochs = 1;
  c.steps_per_epoch = 1;
  c.warmup_epochs = 0;
  c.checkpoints = false;
  c.init_from = (dir / "w.safetensors").string();
  c.out_dir = (dir / "run").string();
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  EXPECT_NE(out.str().find("fc re-initialised for 4 classes"), std::string::npos) << out.str();
  const std::vector<float> pa = a.params();
  std::vector<float> pt = host_copy(t.worker().ctx(), t.worker().model().params().params());
  for (const nets::ParamSpec& s : t.worker().model().params().specs()) {
    if (s.name.rfind("fc.", 0) == 0) continue;
    for (const nets::ParamSpec& sa : a.model.params().specs())
      if (sa.name == s.name) {
        ASSERT_EQ(pt[s.offset], pa[sa.offset]) << s.name;
      }
  }
}

}  // namespace
}  // namespace lockstep::engine
