// The backup/coded aggregator with its shards on a GPU (--sync backup and coded with GPU workers):
// the same arithmetic as the host aggregator on the same pushes (average and decoded weighted sum,
// late and stale gradients dropped alike), shards over two contexts of one GPU (the multi-GPU code
// path); no backups and no stragglers equal all-reduce on the GPU bit for bit (two workers sharing
// it); coded training on the GPU follows the full batch's trajectory.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "engine/trainer.h"
#include "kernels/copy.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-5f * (1.f + std::fabs(want[i]))) << what << " [" << i << "]";
}

TEST(BackupAggregatorGpu, ShardsOnTheGpuMatchHostShards) {
  LS_REQUIRE_GPU();
  const int64_t n = 777;
  const std::vector<float> init = test::random_floats(n, 5, -1.f, 1.f);
  const std::vector<std::pair<uint32_t, uint32_t>> decay{{0, 300}, {500, 777}};
  for (bool decoded : {false, true}) {
    SCOPED_TRACE(decoded ? "decoded" : "average");
    BackupOptions o;
    o.needed = 2;
    o.momentum = 0.9f;
    o.weight_decay = 0.01f;
    if (decoded)
      o.decode = [](const std::vector<int>& ranks) {
        return std::vector<double>{0.25 + ranks[0], -1.5 + ranks[1]};
      };
    auto lr = [](int64_t t) { return 0.05f * static_cast<float>(t + 1); };
    BackupAggregator host(init, decay, 3, o, lr);
    BackupAggregator gpu(init, decay, 3, o, lr, {Device::cuda(0), Device::cuda(0)});
    EXPECT_NE(gpu.placement().find("cuda:0 (shards 0 1)"), std::string::npos) << gpu.placement();
    Context worker(Device::cuda(0));
    OwnedTensor grad(worker.device(), {n}, DType::f32), params(worker.device(), {n}, DType::f32);
    // Step t: ranks arrive (t + 2) % 3, t % 3, (t + 1) % 3; the third is late. Then a stale push.
    for (int64_t t = 0; t < 4; ++t) {
      for (int k = 0; k < 3; ++k) {
        const int rank = static_cast<int>((t + 2 + k) % 3);
        const std::vector<float> g = test::random_floats(n, static_cast<uint32_t>(50 + 3 * t + k), -2.f, 2.f);
        const bool want = host.push(rank, t, g.data());
        OwnedTensor gd = test::device_tensor(worker, {n}, g);
        copy(worker, gd, grad);
        EXPECT_EQ(gpu.push(worker, rank, t, grad), want) << "step " << t << " rank " << rank;
        fill_bytes(worker, grad, 0xFF);  // reused at once: the aggregator holds its own copy
      }
      EXPECT_FALSE(gpu.push(worker, 0, t, grad)) << "stale";
      host.push(0, t, init.data());
      EXPECT_EQ(gpu.read(worker, t + 1, params), host.read(t + 1, std::vector<float>(n).data()));
    }
    expect_near_all(test::to_host_f32(worker, params), host.params(), "params");
    expect_near_all(gpu.momentum(), host.momentum(), "momentum");
    EXPECT_EQ(gpu.accepted(), host.accepted());
    EXPECT_EQ(gpu.dropped(), host.dropped());
    BackupAggregator again(init, decay, 3, o, lr, {Device::cuda(0)});
    again.restore(gpu.params(), gpu.momentum(), gpu.step());
    EXPECT_EQ(again.params(), gpu.params());
    EXPECT_EQ(again.momentum(), gpu.momentum());
    EXPECT_EQ(again.step(), 4);
  }
}

TrainConfig gpu_config(const std::string& out, int workers, int batch) {
  TrainConfig c = test_util::cpu_config(out, "tiny_nobn", workers, batch);
  c.device = Device::cuda(0);
  c.workers_per_gpu = workers;
  return c;
}

std::vector<float> run_params(TrainConfig c, bool from_aggregator) {
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  t.worker(0).ctx().make_current();
  if (from_aggregator) {
    EXPECT_NE(out.str().find("aggregator in cuda:0"), std::string::npos) << out.str();
    return t.backup_aggregator()->params();
  }
  return test::to_host_f32(t.worker(0).ctx(), t.worker(0).model().params().params());
}

TEST(BackupGpu, NoBackupsAndNoStragglersIsAllReduceBitForBit) {
  LS_REQUIRE_GPU();
  TrainConfig ar = gpu_config("bk-gpu-ar", 2, 4), bk = gpu_config("bk-gpu-0", 2, 4);
  bk.sync = SyncKind::backup;
  EXPECT_EQ(run_params(bk, true), run_params(ar, false));
}

TEST(CodedGpu, DecodedGradientsFollowTheFullBatchTrajectory) {
  LS_REQUIRE_GPU();
  TrainConfig coded = gpu_config("coded-gpu", 3, 4);
  coded.sync = SyncKind::coded;
  coded.stragglers = 1;
  TrainConfig full = gpu_config("coded-gpu-full", 1, 12);
  EXPECT_LT(test::rel_error(run_params(coded, true), run_params(full, false)), 1e-4);
}

}  // namespace
}  // namespace lockstep::engine
