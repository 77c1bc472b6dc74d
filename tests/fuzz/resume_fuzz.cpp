// Fuzz target: a checkpoint's state.json as `lockstep train --resume` and `lockstep eval
// --weights` read it. At start-up a real one-update run of the tiny net writes a checkpoint;
// each input replaces its state.json (the input's "files" replaced by the real ones, when the
// input is a JSON object, so that the hashes match and the fuzzer explores the state and the
// saved configuration rather than SHA-256). Only lockstep's errors may come out.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/checkpoint.h"
#include "engine/config.h"
#include "engine/run.h"
#include "tests/fuzz/fuzz_target.h"
#include "tools/lockstep/cli_train.h"

namespace {

namespace fs = std::filesystem;
using namespace lockstep;

struct Checkpoint {
  fs::path root, dir;
  nlohmann::json files;
  Checkpoint() {
    root = fs::temp_directory_path() / ("lockstep_resume_fuzz_" + std::to_string(::getpid()));
    fs::remove_all(root);
    engine::TrainConfig c;
    c.arch = "tiny";
    c.classes = 4;
    c.image_size = 16;
    c.synthetic = true;
    c.steps_per_epoch = 1;
    c.epochs = 1;
    c.warmup_epochs = 0;
    c.batch_size = 2;
    c.device = Device::cpu();
    c.precision = DType::f32;
    c.tensorboard = false;
    c.out_dir = (root / "run").string();
    std::ostringstream quiet;
    std::streambuf* was = std::cout.rdbuf(quiet.rdbuf());
    engine::run_train(c);
    std::cout.rdbuf(was);
    dir = engine::list_checkpoints(root / "run").at(0);
    std::ifstream in(dir / "state.json");
    files = nlohmann::json::parse(in).at("files");
  }
  ~Checkpoint() { fs::remove_all(root); }
};

std::vector<const char*> argv_of(const std::vector<std::string>& args) {
  std::vector<const char*> v;
  for (const std::string& a : args) v.push_back(a.c_str());
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Checkpoint ck;
  std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_discarded() && j.is_object()) text = (j["files"] = ck.files, j.dump());
  std::ofstream(ck.dir / "state.json", std::ios::binary | std::ios::trunc) << text;

  std::ostringstream notes;
  const std::string dir = ck.dir.string(), out = (ck.root / "resumed").string();
  fuzz::expect_clean("open_checkpoint", [&] { (void)engine::open_checkpoint(ck.dir); });
  fuzz::expect_clean("train --resume", [&] {
    const std::vector<std::string> a = {"train", "--resume", dir, "--out", out};
    const std::vector<const char*> v = argv_of(a);
    (void)cli::parse_train_args(static_cast<int>(v.size()), v.data(), notes);
  });
  fuzz::expect_clean("eval --weights", [&] {
    const std::vector<std::string> a = {"eval", "--weights", dir};
    const std::vector<const char*> v = argv_of(a);
    (void)cli::parse_eval_args(static_cast<int>(v.size()), v.data(), notes);
  });
  return 0;
}
