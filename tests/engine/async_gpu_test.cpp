// The parameter server with its shards on a GPU (--sync async with GPU workers): the same
// arithmetic as the host server on the same pushes, shards spread over two contexts of one GPU
// (the multi-GPU code path, peer copies degenerate to device copies), one GPU worker against it
// equal to plain SGD on that GPU bit for bit, and two workers sharing the GPU in a fixed
// interleaving repeating bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "engine/trainer.h"
#include "kernels/copy.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

TEST(ParameterServerGpu, ShardsOnTheGpuMatchHostShards) {
  LS_REQUIRE_GPU();
  ParameterServerOptions o;
  o.shards = 5;
  o.momentum = 0.9f;
  o.weight_decay = 0.01f;
  o.ema = 0.5;
  o.staleness_lr = true;
  const int64_t n = 1001;
  const std::vector<float> init = test::random_floats(n, 11, -1.f, 1.f);
  const std::vector<std::pair<uint32_t, uint32_t>> decay{{100, 400}, {600, 1001}};
  auto lr = [](int64_t u) { return 0.1f / static_cast<float>(u + 1); };
  ParameterServer host(init, decay, o, lr);
  ParameterServer gpu(init, decay, o, lr, {Device::cuda(0), Device::cuda(0)});
  EXPECT_NE(gpu.placement().find("cuda:0 (shards 0 1 2 3 4)"), std::string::npos) << gpu.placement();
  EXPECT_EQ(host.placement(), "host memory");

  Context worker(Device::cuda(0));
  OwnedTensor params(worker.device(), {n}, DType::f32), grad(worker.device(), {n}, DType::f32);
  for (int step = 0; step < 6; ++step) {
    const std::vector<float> g = test::random_floats(n, 100 + step, -2.f, 2.f);
    const int64_t version = step / 2;  // stale reads: staleness 0, 1, 1, 2, 2, 3
    const int64_t s_host = host.push(g.data(), version);
    OwnedTensor gd = test::device_tensor(worker, {n}, g);
    copy(worker, gd, grad);
    EXPECT_EQ(gpu.push(worker, grad, version), s_host);
    fill_bytes(worker, grad, 0xFF);  // the worker reuses its buffer: the server must have its copy
  }
  EXPECT_EQ(gpu.read(worker, params), host.read(std::vector<float>(n).data()));
  const std::vector<float> want = host.params(), got = test::to_host_f32(worker, params);
  ASSERT_EQ(got.size(), want.size());
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(got[i], want[i], 1e-5f * (1.f + std::fabs(want[i]))) << i;
  const std::vector<float> me = host.momentum(), mg = gpu.momentum(), ee = host.ema(), eg = gpu.ema();
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(mg[i], me[i], 1e-5f * (1.f + std::fabs(me[i]))) << i;
    EXPECT_NEAR(eg[i], ee[i], 1e-5f * (1.f + std::fabs(ee[i]))) << i;
  }
  EXPECT_EQ(gpu.staleness().histogram, host.staleness().histogram);

  // Checkpoint round trip: restore into a fresh GPU server and read the same state back.
  ParameterServer again(init, decay, o, lr, {Device::cuda(0)});
  again.restore(gpu.params(), gpu.momentum(), gpu.ema(), gpu.updates());
  EXPECT_EQ(again.params(), gpu.params());
  EXPECT_EQ(again.momentum(), gpu.momentum());
  EXPECT_EQ(again.ema(), gpu.ema());
  EXPECT_EQ(again.updates(), 6);
}

TrainConfig gpu_async_config(const std::string& out, int workers) {
  TrainConfig c = test_util::cpu_config(out, "tiny", workers, 8);
  c.device = Device::cuda(0);
  c.workers_per_gpu = workers;
  c.steps_per_epoch = 4;
  c.sync = SyncKind::async;
  c.async_ramp_epochs = 0;
  c.validate();
  return c;
}

std::vector<float> trained(const TrainConfig& c, int64_t* updates = nullptr) {
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  t.worker(0).ctx().make_current();
  if (updates && c.sync == SyncKind::async) *updates = t.parameter_server()->updates();
  if (c.sync == SyncKind::async) {
    EXPECT_NE(out.str().find("parameter server: 4 shard(s) in cuda:0"), std::string::npos) << out.str();
    EXPECT_EQ(t.parameter_server()->params(), test::to_host_f32(t.worker(0).ctx(), t.worker(0).model().params().params()))
        << "after the run every worker holds the server's parameters";
  }
  return test::to_host_f32(t.worker(0).ctx(), t.worker(0).model().params().params());
}

TEST(AsyncGpu, OneWorkerIsPlainSgdBitForBit) {
  LS_REQUIRE_GPU();
  TrainConfig async = gpu_async_config("async-gpu-1", 1);
  TrainConfig sync = async;
  sync.sync = SyncKind::allreduce;
  sync.out_dir += "-sgd";
  int64_t updates = 0;
  EXPECT_EQ(trained(async, &updates), trained(sync));
  EXPECT_EQ(updates, 8);
}

TEST(AsyncGpu, TwoWorkersSharingTheGpuRepeatInAFixedInterleaving) {
  LS_REQUIRE_GPU();
  TrainConfig a = gpu_async_config("async-gpu-rr-a", 2), b = gpu_async_config("async-gpu-rr-b", 2);
  a.async_round_robin = b.async_round_robin = true;
  int64_t updates = 0;
  const std::vector<float> pa = trained(a, &updates), pb = trained(b);
  EXPECT_EQ(pa, pb);
  EXPECT_EQ(updates, 16);  // 2 epochs x 4 steps x 2 workers
  for (float v : pa) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace lockstep::engine
