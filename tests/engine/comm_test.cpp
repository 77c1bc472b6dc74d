// Communicators: every LocalCommunicator operation against a scalar model for N = 1..8 and odd
// sizes, bit-identical results on every rank whatever the arrival order, abort and timeout
// behaviour; on a GPU, NCCL all-reduce / all-gather and LocalCommunicator over CUDA tensors.
// Each rank is a thread with its own Context; every test has a deadline (run_ranks) that fails
// it instead of hanging.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <random>
#include <thread>

#include "engine/comm/group.h"
#include "kernels/half.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

using namespace std::chrono_literals;
using Comms = std::vector<std::unique_ptr<Communicator>>;

// Runs fn(rank, comm, ctx) on one thread per rank, each with its own Context on devices[rank]
// (cpu when empty). Returns each rank's error message ("" when it returned normally). Past the
// deadline the test fails and the group is aborted so the threads can be joined.
template <typename F>
std::vector<std::string> run_ranks(Comms& comms, F fn, std::chrono::milliseconds deadline = 120s,
                                   std::vector<Device> devices = {}) {
  const int n = static_cast<int>(comms.size());
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::future<void>> done;
  for (int r = 0; r < n; ++r) {
    Device dev = devices.empty() ? Device::cpu() : devices[static_cast<size_t>(r)];
    done.push_back(std::async(std::launch::async, [&, r, dev] {
      try {
        Context ctx(dev);
        fn(r, *comms[static_cast<size_t>(r)], ctx);
        ctx.synchronize();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    }));
  }
  const auto until = std::chrono::steady_clock::now() + deadline;
  for (int r = 0; r < n; ++r) {
    if (done[static_cast<size_t>(r)].wait_until(until) != std::future_status::ready) {
      ADD_FAILURE() << "rank " << r << " still running after " << deadline.count() << " ms";
      comms[0]->abort("test deadline passed");
      break;
    }
  }
  for (auto& f : done) f.wait();
  return errors;
}

void expect_no_errors(const std::vector<std::string>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

std::vector<float> rank_data(int n, int rank, int64_t numel, DType dt, uint32_t salt = 0) {
  return test::rounded(test::random_floats(numel, 7919u * static_cast<uint32_t>(n) + 31u * rank + salt), dt);
}

// Host tensor of dtype dt holding `values` (already representable in dt).
OwnedTensor host_of(const std::vector<float>& values, DType dt) {
  OwnedTensor t(Device::cpu(), Shape{static_cast<int64_t>(values.size())}, dt);
  for (size_t i = 0; i < values.size(); ++i) {
    if (dt == DType::f32) t.data<float>()[i] = values[i];
    else t.data<uint16_t>()[i] = bf16_from_f32(values[i]);
  }
  return t;
}

std::vector<float> values_of(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = t.dtype() == DType::f32 ? t.data<float>()[i] : f32_from_bf16(t.data<uint16_t>()[i]);
  return v;
}

// The scalar model: sum in rank order 0..n-1 in f32, / n for average, rounded once to dt.
std::vector<float> model_all_reduce(int n, int64_t numel, DType dt, ReduceOp op, uint32_t salt = 0) {
  std::vector<std::vector<float>> in;
  for (int r = 0; r < n; ++r) in.push_back(rank_data(n, r, numel, dt, salt));
  std::vector<float> out(static_cast<size_t>(numel));
  for (size_t i = 0; i < out.size(); ++i) {
    float acc = in[0][i];
    for (int r = 1; r < n; ++r) acc += in[static_cast<size_t>(r)][i];
    if (op == ReduceOp::average) acc /= static_cast<float>(n);
    out[i] = test::rounded({acc}, dt)[0];
  }
  return out;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const int64_t kSizes[] = {1, 7, 1000003};

TEST(LocalCommunicator, AllReduceMatchesScalarModelForEveryGroupSizeDtypeAndOp) {
  for (int n = 1; n <= 8; ++n) {
    for (DType dt : {DType::f32, DType::bf16}) {
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::average}) {
        for (int64_t numel : kSizes) {
          std::vector<float> want = model_all_reduce(n, numel, dt, op);
          std::vector<std::vector<float>> got(static_cast<size_t>(n));
          Comms comms = make_local_group(n);
          expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
            EXPECT_EQ(c.rank(), r);
            EXPECT_EQ(c.size(), n);
            OwnedTensor buf = host_of(rank_data(n, r, numel, dt), dt);
            c.all_reduce(ctx, buf, op);
            got[static_cast<size_t>(r)] = values_of(buf);
          }));
          for (int r = 0; r < n; ++r)
            EXPECT_TRUE(bit_equal(got[static_cast<size_t>(r)], want))
                << "N=" << n << " " << dtype_name(dt) << " " << reduce_op_name(op) << " numel=" << numel
                << " rank " << r << " differs from the scalar model";
        }
      }
    }
  }
}

TEST(LocalCommunicator, AllReduceIsIdenticalOnEveryRankWhateverTheArrivalOrder) {
  const int n = 5;
  const int64_t numel = 4099;
  const int iters = 12;
  Comms comms = make_local_group(n);
  std::vector<std::vector<std::vector<float>>> got(static_cast<size_t>(n));
  expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
    std::mt19937 gen(static_cast<uint32_t>(r) * 101u + 7u);
    std::uniform_int_distribution<int> sleep_us(0, 3000);
    for (int it = 0; it < iters; ++it) {
      DType dt = it % 2 ? DType::bf16 : DType::f32;
      OwnedTensor buf = host_of(rank_data(n, r, numel, dt, static_cast<uint32_t>(it)), dt);
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us(gen)));
      c.all_reduce(ctx, buf, ReduceOp::sum);
      got[static_cast<size_t>(r)].push_back(values_of(buf));
    }
  }));
  for (int it = 0; it < iters; ++it) {
    DType dt = it % 2 ? DType::bf16 : DType::f32;
    std::vector<float> want = model_all_reduce(n, numel, dt, ReduceOp::sum, static_cast<uint32_t>(it));
    for (int r = 0; r < n; ++r)
      EXPECT_TRUE(bit_equal(got[static_cast<size_t>(r)][static_cast<size_t>(it)], want))
          << "iteration " << it << " rank " << r;
  }
}

TEST(LocalCommunicator, AllGatherConcatenatesInRankOrder) {
  for (int n = 1; n <= 8; ++n) {
    for (int64_t per_rank : {int64_t{1}, int64_t{7}, int64_t{1000003} / n}) {
      for (DType dt : {DType::f32, DType::bf16}) {
        Comms comms = make_local_group(n);
        std::vector<int> ok(static_cast<size_t>(n), 0);
        expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
          OwnedTensor send = host_of(rank_data(n, r, per_rank, dt), dt);
          OwnedTensor recv(Device::cpu(), Shape{n * per_rank}, dt);
          test::poison(ctx, recv);
          c.all_gather(ctx, send, recv);
          std::vector<float> want;
          for (int j = 0; j < n; ++j) {
            std::vector<float> part = rank_data(n, j, per_rank, dt);
            want.insert(want.end(), part.begin(), part.end());
          }
          ok[static_cast<size_t>(r)] = bit_equal(values_of(recv), want);
        }));
        for (int r = 0; r < n; ++r)
          EXPECT_TRUE(ok[static_cast<size_t>(r)]) << "N=" << n << " per_rank=" << per_rank << " "
                                                  << dtype_name(dt) << " rank " << r;
      }
    }
  }
}

TEST(LocalCommunicator, BroadcastFromEveryRoot) {
  for (int n = 1; n <= 8; ++n) {
    for (int64_t numel : kSizes) {
      Comms comms = make_local_group(n);
      std::vector<int> ok(static_cast<size_t>(n), 1);
      expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
        for (int root = 0; root < n; ++root) {
          OwnedTensor buf = host_of(rank_data(n, r, numel, DType::f32, static_cast<uint32_t>(root)), DType::f32);
          c.broadcast(ctx, buf, root);
          if (!bit_equal(values_of(buf), rank_data(n, root, numel, DType::f32, static_cast<uint32_t>(root))))
            ok[static_cast<size_t>(r)] = 0;
        }
      }));
      for (int r = 0; r < n; ++r) EXPECT_TRUE(ok[static_cast<size_t>(r)]) << "N=" << n << " numel=" << numel << " rank " << r;
    }
  }
}

TEST(LocalCommunicator, AllToAllRoutesChunkJToRankJ) {
  for (int n = 1; n <= 8; ++n) {
    for (int64_t chunk : {int64_t{1}, int64_t{7}, int64_t{1000003} / n}) {
      Comms comms = make_local_group(n);
      std::vector<int> ok(static_cast<size_t>(n), 0);
      expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
        // Element k of rank s's send is s * 1e6 + k: exact in f32 for these sizes.
        OwnedTensor send(Device::cpu(), Shape{n * chunk}, DType::f32);
        for (int64_t k = 0; k < n * chunk; ++k) send.data<float>()[k] = static_cast<float>(r * 1000000 + k % 1000000);
        OwnedTensor recv(Device::cpu(), Shape{n * chunk}, DType::f32);
        test::poison(ctx, recv);
        c.all_to_all(ctx, send, recv);
        bool good = true;
        for (int s = 0; s < n; ++s)
          for (int64_t k = 0; k < chunk; ++k)
            good = good && recv.data<float>()[s * chunk + k] ==
                               static_cast<float>(s * 1000000 + (r * chunk + k) % 1000000);
        ok[static_cast<size_t>(r)] = good;
      }));
      for (int r = 0; r < n; ++r) EXPECT_TRUE(ok[static_cast<size_t>(r)]) << "N=" << n << " chunk=" << chunk << " rank " << r;
    }
  }
}

TEST(LocalCommunicator, BarrierReleasesNobodyBeforeEveryoneArrived) {
  const int n = 6, rounds = 20;
  Comms comms = make_local_group(n);
  std::vector<std::atomic<int>> arrived(rounds);
  std::atomic<int> early{0};
  expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
    std::mt19937 gen(static_cast<uint32_t>(r));
    std::uniform_int_distribution<int> sleep_us(0, 2000);
    for (int k = 0; k < rounds; ++k) {
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us(gen)));
      arrived[static_cast<size_t>(k)]++;
      c.barrier(ctx);
      if (arrived[static_cast<size_t>(k)].load() != n) early++;
    }
  }));
  EXPECT_EQ(early.load(), 0);
}

TEST(LocalCommunicator, AbortWakesEveryWaiterPromptly) {
  const int n = 4;
  Comms comms = make_local_group(n, LocalOptions{60s});
  std::vector<double> woke_after_abort_s(n, -1);
  std::atomic<int64_t> abort_at_ns{0};
  auto errors = run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
    if (r == 3) return;  // never arrives
    if (r == 2) {
      std::this_thread::sleep_for(200ms);
      abort_at_ns = std::chrono::steady_clock::now().time_since_epoch().count();
      c.abort("rank 2 failed at step 3");
      // Operations after an abort fail at once, too.
      OwnedTensor b(Device::cpu(), Shape{4}, DType::f32);
      c.all_reduce(ctx, b, ReduceOp::sum);
      return;
    }
    OwnedTensor b(Device::cpu(), Shape{1000}, DType::f32);
    test::poison(ctx, b);
    try {
      if (r == 0) c.all_reduce(ctx, b, ReduceOp::sum);
      else c.barrier(ctx);
    } catch (...) {
      woke_after_abort_s[static_cast<size_t>(r)] =
          (std::chrono::steady_clock::now().time_since_epoch().count() - abort_at_ns.load()) * 1e-9;
      throw;
    }
  }, 20s);
  for (int r : {0, 1, 2}) {
    EXPECT_NE(errors[static_cast<size_t>(r)].find("rank 2 failed at step 3"), std::string::npos)
        << "rank " << r << ": " << errors[static_cast<size_t>(r)];
  }
  for (int r : {0, 1}) {
    EXPECT_GE(woke_after_abort_s[static_cast<size_t>(r)], 0.0) << "rank " << r;
    EXPECT_LT(woke_after_abort_s[static_cast<size_t>(r)], 1.0) << "rank " << r;
  }
  EXPECT_TRUE(comms[3]->aborted());
}

TEST(LocalCommunicator, TimeoutNamesTheRanksThatDidNotArrive) {
  const int n = 4;
  Comms comms = make_local_group(n, LocalOptions{300ms});
  auto t0 = std::chrono::steady_clock::now();
  auto errors = run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
    if (r == 2) return;
    OwnedTensor b(Device::cpu(), Shape{7}, DType::f32);
    c.all_reduce(ctx, b, ReduceOp::average);
  }, 20s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (int r : {0, 1, 3}) {
    const std::string& e = errors[static_cast<size_t>(r)];
    EXPECT_NE(e.find("did not arrive: 2 (3 of 4 arrived)"), std::string::npos) << "rank " << r << ": " << e;
    EXPECT_NE(e.find("all_reduce"), std::string::npos) << e;
  }
  EXPECT_TRUE(comms[0]->aborted());
}

TEST(LocalCommunicator, DisagreeingCallsFailOnEveryRank) {
  Comms comms = make_local_group(2, LocalOptions{10s});
  auto errors = run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
    OwnedTensor b(Device::cpu(), Shape{8}, DType::f32);
    if (r == 0) c.all_reduce(ctx, b, ReduceOp::sum);
    else c.broadcast(ctx, b, 0);
  }, 20s);
  for (const std::string& e : errors) EXPECT_NE(e.find("different operations"), std::string::npos) << e;
}

TEST(LocalCommunicator, RejectsBadArguments) {
  Comms comms = make_local_group(2);
  Context ctx(Device::cpu());
  OwnedTensor send(Device::cpu(), Shape{4}, DType::f32);
  OwnedTensor small(Device::cpu(), Shape{7}, DType::f32);
  OwnedTensor ints(Device::cpu(), Shape{4}, DType::i32);
  EXPECT_THROW(comms[0]->all_gather(ctx, send, small), Error);
  EXPECT_THROW(comms[0]->all_to_all(ctx, small, small), Error);
  EXPECT_THROW(comms[0]->all_reduce(ctx, ints, ReduceOp::sum), Error);
  EXPECT_THROW(comms[0]->broadcast(ctx, send, 2), Error);
  EXPECT_THROW(make_local_group(0), Error);
  EXPECT_FALSE(comms[0]->aborted());  // argument errors are local: nobody waited
}

TEST(NcclGroup, FailsClearlyWithoutCudaOrGpu) {
  if (cuda_backend_built() && gpu_status().available) GTEST_SKIP() << "a GPU is present";
  try {
    make_nccl_group({0});
    FAIL() << "make_nccl_group succeeded without a GPU";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_TRUE(m.find("without its CUDA backend") != std::string::npos ||
                m.find("no usable GPU") != std::string::npos) << m;
  }
}

// ---- GPU ----

void nccl_all_reduce_and_gather(const std::vector<int>& gpus) {
  const int n = static_cast<int>(gpus.size());
  Comms comms = make_nccl_group(gpus);
  std::vector<Device> devs;
  for (int g : gpus) devs.push_back(Device::cuda(g));
  const int64_t numel = 1000003;
  std::vector<std::vector<float>> sum(n), avg(n), bsum(n), gathered(n);
  expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
    OwnedTensor a = test::device_tensor(ctx, Shape{numel}, rank_data(n, r, numel, DType::f32));
    c.all_reduce(ctx, a, ReduceOp::sum);
    OwnedTensor b = test::device_tensor(ctx, Shape{numel}, rank_data(n, r, numel, DType::f32));
    c.all_reduce(ctx, b, ReduceOp::average);
    OwnedTensor h = test::device_tensor(ctx, Shape{numel}, rank_data(n, r, numel, DType::bf16), DType::bf16);
    c.all_reduce(ctx, h, ReduceOp::sum);
    OwnedTensor send = test::device_tensor(ctx, Shape{7}, rank_data(n, r, 7, DType::f32));
    OwnedTensor recv(ctx.device(), Shape{7 * n}, DType::f32);
    c.all_gather(ctx, send, recv);
    c.barrier(ctx);
    ctx.synchronize();
    sum[r] = test::to_host_f32(ctx, a);
    avg[r] = test::to_host_f32(ctx, b);
    bsum[r] = test::to_host_f32(ctx, h);
    gathered[r] = test::to_host_f32(ctx, recv);
  }, 120s, devs));
  std::vector<float> want_gather;
  for (int j = 0; j < n; ++j) {
    auto p = rank_data(n, j, 7, DType::f32);
    want_gather.insert(want_gather.end(), p.begin(), p.end());
  }
  for (int r = 0; r < n; ++r) {
    EXPECT_LT(test::rel_error(sum[r], model_all_reduce(n, numel, DType::f32, ReduceOp::sum)), 1e-6);
    EXPECT_LT(test::rel_error(avg[r], model_all_reduce(n, numel, DType::f32, ReduceOp::average)), 1e-6);
    EXPECT_LT(test::rel_error(bsum[r], model_all_reduce(n, numel, DType::bf16, ReduceOp::sum)), 1e-2);
    EXPECT_TRUE(bit_equal(gathered[r], want_gather)) << "rank " << r;
    EXPECT_TRUE(bit_equal(sum[r], sum[0])) << "rank " << r << " differs from rank 0";
  }
}

TEST(NcclCommunicator, AllReduceAndAllGatherWorldSizeOne) {
  LS_REQUIRE_GPU();
  nccl_all_reduce_and_gather({0});
}

TEST(NcclCommunicator, AllReduceAndAllGatherOverEveryGpu) {
  LS_REQUIRE_GPU();
  if (gpu_status().count < 2) GTEST_SKIP() << "one GPU: covered by the world-size-one test";
  std::vector<int> gpus;
  for (int g = 0; g < gpu_status().count; ++g) gpus.push_back(g);
  nccl_all_reduce_and_gather(gpus);
}

TEST(LocalCommunicator, TwoRanksSharingOneGpuStageThroughTheHost) {
  LS_REQUIRE_GPU();
  const int n = 2;
  Comms comms = make_local_group(n);
  std::vector<int> ok(n, 0);
  expect_no_errors(run_ranks(comms, [&](int r, Communicator& c, Context& ctx) {
    bool good = true;
    for (DType dt : {DType::f32, DType::bf16}) {
      for (int64_t numel : kSizes) {
        OwnedTensor buf = test::device_tensor(ctx, Shape{numel}, rank_data(n, r, numel, dt), dt);
        c.all_reduce(ctx, buf, ReduceOp::average);
        good = good && bit_equal(test::to_host_f32(ctx, buf), model_all_reduce(n, numel, dt, ReduceOp::average));
      }
    }
    OwnedTensor send = test::device_tensor(ctx, Shape{7}, rank_data(n, r, 7, DType::f32));
    OwnedTensor recv(ctx.device(), Shape{14}, DType::f32);
    c.all_gather(ctx, send, recv);
    std::vector<float> want = rank_data(n, 0, 7, DType::f32), second = rank_data(n, 1, 7, DType::f32);
    want.insert(want.end(), second.begin(), second.end());
    good = good && bit_equal(test::to_host_f32(ctx, recv), want);
    OwnedTensor b = test::device_tensor(ctx, Shape{9}, rank_data(n, r, 9, DType::f32));
    c.broadcast(ctx, b, 1);
    good = good && bit_equal(test::to_host_f32(ctx, b), rank_data(n, 1, 9, DType::f32));
    c.barrier(ctx);
    ok[r] = good;
  }, 120s, {Device::cuda(0), Device::cuda(0)}));
  EXPECT_TRUE(ok[0]);
  EXPECT_TRUE(ok[1]);
}

}  // namespace
}  // namespace lockstep::engine
