// --sync coded (gradient coding, Tandon et al. 2017) on a BatchNorm-free net: with or without an
// injected straggler, the decoded gradient is the full batch's, so training follows one worker
// with the whole batch; the straggler's messages are the ones left out.
#include <gtest/gtest.h>

#include <sstream>

#include "engine/trainer.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

TrainConfig coded_config(const std::string& out, int workers, int batch) {
  return test_util::cpu_config(out, "tiny_nobn", workers, batch);
}

std::vector<float> full_batch(int n, int b) {
  TrainConfig c = coded_config("coded-full", 1, n * b);
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  return test::host_values(t.worker(0).model().params().params());
}

struct Coded {
  std::vector<float> params;
  std::vector<int64_t> accepted, dropped;
};

Coded coded(int n, int s, const std::string& code, const std::string& straggler) {
  TrainConfig c = coded_config("coded-" + code, n, 4);
  c.sync = SyncKind::coded;
  c.stragglers = s;
  c.code = code;
  c.straggler = straggler;
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  EXPECT_NE(out.str().find("sync: coded (" + code), std::string::npos) << out.str();
  return {t.backup_aggregator()->params(), t.backup_aggregator()->accepted(), t.backup_aggregator()->dropped()};
}

TEST(Coded, DecodedGradientsFollowTheFullBatchTrajectory) {
  const std::vector<float> reference = full_batch(3, 4);
  for (const char* code : {"cyclic", "fractional"}) {
    const int n = std::string(code) == "cyclic" ? 3 : 4;
    const std::vector<float> want = n == 3 ? reference : full_batch(4, 4);
    const Coded plain = coded(n, 1, code, "");
    EXPECT_LT(test::rel_error(plain.params, want), 1e-5) << code;
    // Worker 1 always late: never among the decoders, and nothing changes.
    const Coded slow = coded(n, 1, code, "rank=1,delay=20ms");
    EXPECT_LT(test::rel_error(slow.params, want), 1e-5) << code << " with a straggler";
    EXPECT_EQ(slow.accepted[1], 0) << code;
  }
}

TEST(Coded, NoStragglersToleratedIsPlainDataParallel) {
  EXPECT_LT(test::rel_error(coded(2, 0, "cyclic", "").params, full_batch(2, 4)), 1e-5);
}

}  // namespace
}  // namespace lockstep::engine
