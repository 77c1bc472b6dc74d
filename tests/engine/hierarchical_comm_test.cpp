// HierarchicalCommunicator: P simulated processes of L workers each, with local groups standing
// in for MPI as the cross-process communicator, checked against the flat semantics of one group
// of P x L ranks (communicator.h): ranks, all-reduce (sum and average, bit-identical on every
// rank), all-gather in global rank order, broadcast from every root, all-to-all routing,
// barrier, and abort reaching every process.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <thread>

#include "engine/comm/group.h"
#include "engine/comm/hierarchical_communicator.h"

namespace lockstep::engine {
namespace {

using namespace std::chrono_literals;

struct Simulated {
  std::vector<std::unique_ptr<Communicator>> cross;  // one per process (rank = process)
  std::vector<std::unique_ptr<Communicator>> ranks;  // P x L, in global rank order
};

Simulated simulate(int processes, int local) {
  LocalOptions o;
  o.timeout = 20s;
  Simulated s;
  s.cross = make_local_group(processes, o);
  for (int p = 0; p < processes; ++p)
    for (auto& c : make_hierarchical_group(make_local_group(local, o), *s.cross[static_cast<size_t>(p)]))
      s.ranks.push_back(std::move(c));
  return s;
}

// fn(rank, comm, ctx) on one thread per rank; returns each rank's error ("" when none).
template <typename F>
std::vector<std::string> run_all(Simulated& s, F fn) {
  const size_t n = s.ranks.size();
  std::vector<std::string> errors(n);
  std::vector<std::future<void>> done;
  for (size_t r = 0; r < n; ++r)
    done.push_back(std::async(std::launch::async, [&, r] {
      try {
        Context ctx(Device::cpu());
        fn(static_cast<int>(r), *s.ranks[r], ctx);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    }));
  const auto until = std::chrono::steady_clock::now() + 60s;
  for (auto& f : done)
    if (f.wait_until(until) != std::future_status::ready) {
      ADD_FAILURE() << "a rank is still running after 60 s";
      s.ranks[0]->abort("test deadline");
      break;
    }
  for (auto& f : done) f.wait();
  return errors;
}

float value(int rank, int64_t i) { return std::sin(0.37f * static_cast<float>(rank * 1000 + i)) * (1 + rank); }

class Hierarchical : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(Hierarchical, RanksAreProcessTimesLocalPlusThread) {
  auto [P, L] = GetParam();
  Simulated s = simulate(P, L);
  for (int r = 0; r < P * L; ++r) {
    EXPECT_EQ(s.ranks[static_cast<size_t>(r)]->rank(), r);
    EXPECT_EQ(s.ranks[static_cast<size_t>(r)]->size(), P * L);
  }
}

TEST_P(Hierarchical, AllReduceEqualsTheFlatSumOnEveryRankBitForBit) {
  auto [P, L] = GetParam();
  const int n = P * L;
  const int64_t numel = 1000 + 7;  // not a multiple of the process count
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::average}) {
    Simulated s = simulate(P, L);
    std::vector<std::vector<float>> out(static_cast<size_t>(n), std::vector<float>(numel));
    auto errors = run_all(s, [&](int r, Communicator& c, Context& ctx) {
      std::vector<float>& v = out[static_cast<size_t>(r)];
      for (int64_t i = 0; i < numel; ++i) v[static_cast<size_t>(i)] = value(r, i);
      Tensor t(v.data(), Shape{numel}, DType::f32, Device::cpu());
      c.all_reduce(ctx, t, op);
    });
    for (const auto& e : errors) ASSERT_EQ(e, "");
    for (int64_t i = 0; i < numel; ++i) {
      double want = 0;
      for (int r = 0; r < n; ++r) want += value(r, i);
      if (op == ReduceOp::average) want /= n;
      EXPECT_NEAR(out[0][static_cast<size_t>(i)], want, 1e-5 * (1 + std::abs(want))) << "element " << i;
      for (int r = 1; r < n; ++r)
        ASSERT_EQ(out[static_cast<size_t>(r)][static_cast<size_t>(i)], out[0][static_cast<size_t>(i)])
            << "rank " << r << " element " << i;
    }
  }
}

TEST_P(Hierarchical, AllGatherConcatenatesInGlobalRankOrder) {
  auto [P, L] = GetParam();
  const int n = P * L;
  const int64_t numel = 13;
  Simulated s = simulate(P, L);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n), std::vector<int32_t>(static_cast<size_t>(numel * n)));
  auto errors = run_all(s, [&](int r, Communicator& c, Context& ctx) {
    std::vector<int32_t> send(static_cast<size_t>(numel));
    for (int64_t i = 0; i < numel; ++i) send[static_cast<size_t>(i)] = r * 100 + static_cast<int32_t>(i);
    Tensor st(send.data(), Shape{numel}, DType::i32, Device::cpu());
    Tensor rt(out[static_cast<size_t>(r)].data(), Shape{numel * n}, DType::i32, Device::cpu());
    c.all_gather(ctx, st, rt);
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  for (int r = 0; r < n; ++r)
    for (int k = 0; k < n; ++k)
      for (int64_t i = 0; i < numel; ++i)
        ASSERT_EQ(out[static_cast<size_t>(r)][static_cast<size_t>(k * numel + i)], k * 100 + i)
            << "rank " << r << " block " << k;
}

TEST_P(Hierarchical, BroadcastFromEveryRoot) {
  auto [P, L] = GetParam();
  const int n = P * L;
  for (int root = 0; root < n; ++root) {
    Simulated s = simulate(P, L);
    std::vector<std::vector<float>> out(static_cast<size_t>(n), std::vector<float>(33));
    auto errors = run_all(s, [&](int r, Communicator& c, Context& ctx) {
      std::vector<float>& v = out[static_cast<size_t>(r)];
      for (size_t i = 0; i < v.size(); ++i) v[i] = value(r, static_cast<int64_t>(i));
      Tensor t(v.data(), Shape{33}, DType::f32, Device::cpu());
      c.broadcast(ctx, t, root);
    });
    for (const auto& e : errors) ASSERT_EQ(e, "");
    for (int r = 0; r < n; ++r)
      for (int64_t i = 0; i < 33; ++i)
        ASSERT_EQ(out[static_cast<size_t>(r)][static_cast<size_t>(i)], value(root, i)) << "root " << root << " rank " << r;
  }
}

TEST_P(Hierarchical, AllToAllRoutesChunkJToRankJ) {
  auto [P, L] = GetParam();
  const int n = P * L;
  const int64_t chunk = 5, numel = chunk * n;
  Simulated s = simulate(P, L);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n), std::vector<int32_t>(static_cast<size_t>(numel)));
  auto errors = run_all(s, [&](int r, Communicator& c, Context& ctx) {
    std::vector<int32_t> send(static_cast<size_t>(numel));
    for (int j = 0; j < n; ++j)
      for (int64_t i = 0; i < chunk; ++i) send[static_cast<size_t>(j * chunk + i)] = r * 10000 + j * 100 + static_cast<int32_t>(i);
    Tensor st(send.data(), Shape{numel}, DType::i32, Device::cpu());
    Tensor rt(out[static_cast<size_t>(r)].data(), Shape{numel}, DType::i32, Device::cpu());
    c.all_to_all(ctx, st, rt);
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < n; ++i)
      for (int64_t k = 0; k < chunk; ++k)  // chunk i of recv came from rank i, addressed to r
        ASSERT_EQ(out[static_cast<size_t>(r)][static_cast<size_t>(i * chunk + k)], i * 10000 + r * 100 + k);
}

TEST_P(Hierarchical, AbortOnOneRankStopsEveryProcess) {
  auto [P, L] = GetParam();
  const int n = P * L;
  Simulated s = simulate(P, L);
  auto errors = run_all(s, [&](int r, Communicator& c, Context& ctx) {
    if (r == n - 1) {
      std::this_thread::sleep_for(50ms);
      c.abort("rank " + std::to_string(r) + " gave up");
      throw Error("aborted on purpose");
    }
    c.barrier(ctx);  // the others wait for the last rank, which never comes
  });
  for (int r = 0; r < n - 1; ++r)
    EXPECT_NE(errors[static_cast<size_t>(r)].find("gave up"), std::string::npos) << "rank " << r << ": " << errors[r];
}

INSTANTIATE_TEST_SUITE_P(ProcessesByWorkers, Hierarchical,
                         ::testing::Values(std::pair{1, 3}, std::pair{2, 1}, std::pair{2, 2}, std::pair{3, 2}),
                         [](const auto& info) {
                           return std::to_string(info.param.first) + "x" + std::to_string(info.param.second);
                         });

}  // namespace
}  // namespace lockstep::engine
