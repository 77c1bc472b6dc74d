// detect_process_launch: each launcher's variables, the first present wins, malformed or
// inconsistent values count as absent; Processes::join alone without a launcher.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "engine/comm/launch.h"
#include "engine/comm/processes.h"

namespace lockstep::engine {
namespace {

// Sets variables for one test and restores the launcher variables' previous values after.
class LaunchEnv {
 public:
  LaunchEnv() {
    for (const char* v : kAll) {
      const char* old = std::getenv(v);
      saved_.push_back(old ? std::optional<std::string>(old) : std::nullopt);
      unsetenv(v);
    }
  }
  ~LaunchEnv() {
    for (size_t i = 0; i < std::size(kAll); ++i) {
      if (saved_[i]) setenv(kAll[i], saved_[i]->c_str(), 1);
      else unsetenv(kAll[i]);
    }
  }
  void set(const char* name, const char* value) { setenv(name, value, 1); }

 private:
  static constexpr const char* kAll[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK",
                                         "PMIX_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID"};
  std::vector<std::optional<std::string>> saved_;
};

TEST(ProcessLaunch, AloneWithoutLauncherVariables) {
  LaunchEnv env;
  ProcessLaunch l = detect_process_launch();
  EXPECT_EQ(l.size, 1);
  EXPECT_EQ(l.rank, 0);
  EXPECT_EQ(l.launcher, "");
}

TEST(ProcessLaunch, OpenMpiMpichPmixAndSlurm) {
  const std::vector<std::vector<const char*>> cases = {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
                                                       {"PMI_SIZE", "PMI_RANK"},
                                                       {"PMIX_SIZE", "PMIX_RANK"},
                                                       {"SLURM_STEP_NUM_TASKS", "SLURM_PROCID"}};
  for (const auto& c : cases) {
    LaunchEnv env;
    env.set(c[0], "4");
    env.set(c[1], "3");
    ProcessLaunch l = detect_process_launch();
    EXPECT_EQ(l.size, 4) << c[0];
    EXPECT_EQ(l.rank, 3) << c[0];
    EXPECT_EQ(l.launcher, c[0]);
  }
}

TEST(ProcessLaunch, MalformedOrInconsistentValuesAreIgnored) {
  {
    LaunchEnv env;
    env.set("OMPI_COMM_WORLD_SIZE", "two");
    EXPECT_EQ(detect_process_launch().launcher, "");
  }
  {
    LaunchEnv env;
    env.set("PMI_SIZE", "2");
    env.set("PMI_RANK", "2");  // a rank must be below the size
    EXPECT_EQ(detect_process_launch().launcher, "");
  }
  {
    LaunchEnv env;  // a malformed first launcher does not hide a good second one
    env.set("OMPI_COMM_WORLD_SIZE", "-1");
    env.set("PMIX_SIZE", "2");
    env.set("PMIX_RANK", "1");
    EXPECT_EQ(detect_process_launch().launcher, "PMIX_SIZE");
  }
}

TEST(Processes, JoinWithoutLauncherIsThisProcessAlone) {
  LaunchEnv env;
  std::unique_ptr<Processes> p = Processes::join(std::chrono::seconds(5));
  EXPECT_EQ(p->rank(), 0);
  EXPECT_EQ(p->size(), 1);
  EXPECT_FALSE(p->several());
  EXPECT_FALSE(p->joined());
  EXPECT_EQ(p->comm(), nullptr);
}

}  // namespace
}  // namespace lockstep::engine
