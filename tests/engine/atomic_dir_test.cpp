// AtomicDir, atomic_write_file and clean_stale_temporaries: the success path; an exception at
// every stage and a real crash (a forked child that _exit()s there, so no destructor runs) each
// leave the previous directory intact and never a half-named target; stale temporaries are
// cleaned and nothing else is; a full disk (RLIMIT_FSIZE, and a 64 KiB tmpfs where mounting is
// allowed) gives an IoError naming the path and strerror with the old state intact.
#include <gtest/gtest.h>

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "engine/checkpoint/atomic_dir.h"
#include "engine/checkpoint/safetensors.h"

namespace lockstep::engine {
namespace {

namespace fs = std::filesystem;

const char* const kStages[] = {"files-written", "dir-synced", "renamed", "parent-synced"};

std::string read_text(const fs::path& p) {
  auto b = read_file(p);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

size_t temporaries_in(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += is_temporary_name(e.path().filename().string());
  return n;
}

struct Stop {};  // thrown by a stage hook to simulate a failure there

class AtomicDirTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(testing::TempDir()) / "atomic-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    parent_ = tmpl;
  }
  void TearDown() override { fs::remove_all(parent_); }

  // A checkpoint-like directory <name> with two files whose contents are tagged by `tag`.
  fs::path save(const std::string& name, const std::string& tag, StageHook hook = {},
                AtomicDir::Existing existing = AtomicDir::Existing::refuse) {
    AtomicDir d(parent_, name, std::move(hook));
    d.write_file("state.json", "{\"tag\":\"" + tag + "\"}");
    const float w[3] = {1, 2, 3};
    write_safetensors(d.file_path("model.safetensors"), {{"w", "F32", {3}, w, sizeof w}}, {{"tag", tag}});
    return d.commit(existing);
  }

  // Checks that <name> is a complete directory written by save(name, tag).
  void expect_complete(const std::string& name, const std::string& tag) {
    const fs::path dir = parent_ / name;
    ASSERT_TRUE(fs::is_directory(dir)) << dir;
    EXPECT_EQ(listing(dir), (std::vector<std::string>{"model.safetensors", "state.json"}));
    EXPECT_EQ(read_text(dir / "state.json"), "{\"tag\":\"" + tag + "\"}");
    EXPECT_EQ(SafetensorsFile::open(dir / "model.safetensors").metadata().at("tag"), tag);
  }

  // Runs `body` in a forked child and returns its wait status. The child never returns.
  template <typename F>
  static int in_child(F body) {
    pid_t pid = ::fork();
    if (pid == 0) {
      try {
        body();
      } catch (...) {
        ::_exit(3);
      }
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  }

  fs::path parent_;
};

TEST_F(AtomicDirTest, WritesAndRenamesIntoPlace) {
  std::vector<std::string> seen;
  const fs::path out = save("step-1", "one", [&](const char* s) {
    seen.emplace_back(s);
    // Before the rename only the temporary exists; after it only the target.
    bool renamed = std::string(s) == "renamed" || std::string(s) == "parent-synced";
    EXPECT_EQ(fs::exists(parent_ / "step-1"), renamed) << s;
    EXPECT_EQ(temporaries_in(parent_), renamed ? 0u : 1u) << s;
  });
  EXPECT_EQ(out, parent_ / "step-1");
  EXPECT_EQ(seen, (std::vector<std::string>(std::begin(kStages), std::end(kStages))));
  expect_complete("step-1", "one");
  EXPECT_EQ(listing(parent_), std::vector<std::string>{"step-1"});
}

TEST_F(AtomicDirTest, TemporaryNameFollowsThePattern) {
  AtomicDir d(parent_, "step-7");
  const std::string name = d.temp_path().filename().string();
  EXPECT_TRUE(is_temporary_name(name)) << name;
  EXPECT_EQ(name.rfind(".tmp-step-7-" + std::to_string(::getpid()) + "-", 0), 0u) << name;
  EXPECT_EQ(d.temp_path().parent_path(), parent_);
  EXPECT_THROW(d.file_path("../escape"), Error);
  EXPECT_THROW(d.file_path(""), Error);
  EXPECT_THROW(AtomicDir(parent_, "a/b"), Error);
}

TEST_F(AtomicDirTest, UncommittedDirectoryIsRemoved) {
  {
    AtomicDir d(parent_, "step-1");
    d.write_file("a", "x");
    EXPECT_EQ(temporaries_in(parent_), 1u);
  }
  EXPECT_TRUE(listing(parent_).empty());
}

TEST_F(AtomicDirTest, RefusesAnExistingTarget) {
  save("step-1", "old");
  fs::create_directory(parent_ / "empty");
  for (const char* name : {"step-1", "empty"}) {
    try {
      save(name, "new");
      ADD_FAILURE() << "no error for " << name;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "cannot write " + (parent_ / name).string() +
                                           ": it already exists (refusing to replace it)");
    }
  }
  expect_complete("step-1", "old");
  EXPECT_TRUE(fs::is_empty(parent_ / "empty"));  // plain rename(2) would have replaced it
  EXPECT_EQ(listing(parent_), (std::vector<std::string>{"empty", "step-1"}));
}

TEST_F(AtomicDirTest, ReplaceSwapsTheOldDirectoryOut) {
  save("step-1", "old");
  save("step-1", "new", {}, AtomicDir::Existing::replace);
  expect_complete("step-1", "new");
  EXPECT_EQ(listing(parent_), std::vector<std::string>{"step-1"});
}

TEST_F(AtomicDirTest, MissingParentNamesThePath) {
  try {
    AtomicDir d(parent_ / "nope", "step-1");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.error_code(), ENOENT);
    EXPECT_EQ(std::string(e.what()).rfind("mkdir " + (parent_ / "nope").string() + "/.tmp-step-1-", 0), 0u)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(": No such file or directory"), std::string::npos);
  }
}

// ---- failures and crashes at each stage ------------------------------------------------------

class AtomicDirStage : public AtomicDirTest, public testing::WithParamInterface<const char*> {
 protected:
  bool after_rename() const {
    return std::string(GetParam()) == "renamed" || std::string(GetParam()) == "parent-synced";
  }
  StageHook stop_at(bool crash) const {
    std::string stage = GetParam();
    return [stage, crash](const char* s) {
      if (stage != s) return;
      if (crash) ::_exit(0);  // like SIGKILL: no destructor, no cleanup
      throw Stop{};
    };
  }
};

TEST_P(AtomicDirStage, ExceptionLeavesThePreviousCheckpointAndNoTemporary) {
  save("step-1", "one");
  EXPECT_THROW(save("step-2", "two", stop_at(false)), Stop);
  expect_complete("step-1", "one");
  if (after_rename()) {
    expect_complete("step-2", "two");  // the rename happened: the new one is whole
  } else {
    EXPECT_FALSE(fs::exists(parent_ / "step-2"));
  }
  EXPECT_EQ(temporaries_in(parent_), 0u);  // unwinding removed it
}

TEST_P(AtomicDirStage, CrashLeavesThePreviousCheckpointAndACleanableTemporary) {
  save("step-1", "one");
  int status = in_child([&] { save("step-2", "two", stop_at(true)); });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  expect_complete("step-1", "one");
  if (after_rename()) {
    expect_complete("step-2", "two");
    EXPECT_EQ(temporaries_in(parent_), 0u);
  } else {
    EXPECT_FALSE(fs::exists(parent_ / "step-2"));
    EXPECT_EQ(temporaries_in(parent_), 1u);
  }
  clean_stale_temporaries(parent_);
  EXPECT_EQ(temporaries_in(parent_), 0u);
  expect_complete("step-1", "one");
}

TEST_P(AtomicDirStage, ReplaceNeverLeavesTheTargetMissing) {
  save("step-1", "old");
  int status = in_child([&] { save("step-1", "new", stop_at(true), AtomicDir::Existing::replace); });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  expect_complete("step-1", after_rename() ? "new" : "old");
  EXPECT_EQ(temporaries_in(parent_), 1u);  // the new one before the swap, the old one after it
  EXPECT_EQ(clean_stale_temporaries(parent_).size(), 1u);
  expect_complete("step-1", after_rename() ? "new" : "old");

  EXPECT_THROW(save("step-1", "newer", stop_at(false), AtomicDir::Existing::replace), Stop);
  expect_complete("step-1", after_rename() ? "newer" : "old");
  EXPECT_EQ(listing(parent_), std::vector<std::string>{"step-1"});
}

INSTANTIATE_TEST_SUITE_P(Stages, AtomicDirStage, testing::ValuesIn(kStages),
                         [](const testing::TestParamInfo<const char*>& info) {
                           std::string name;
                           for (const char* c = info.param; *c; ++c) {
                             if (*c != '-') name += (c == info.param || c[-1] == '-') ? char(std::toupper(*c)) : *c;
                           }
                           return name;
                         });

// ---- stale temporaries -----------------------------------------------------------------------

TEST(AtomicDirNames, TemporaryPattern) {
  EXPECT_TRUE(is_temporary_name(".tmp-step-3-1234-0123456789abcdef"));
  EXPECT_TRUE(is_temporary_name(".tmp-latest-1-fedcba9876543210"));
  EXPECT_TRUE(is_temporary_name(".tmp-a-b-c-99-0000000000000000"));  // a name with dashes
  for (const char* name : {".tmp-foo", ".tmp-", ".tmp-step-3-12a4-0123456789abcdef", ".tmp-step-3--0123456789abcdef",
                           ".tmp-step-3-1234-0123456789ABCDEF", ".tmp-step-3-1234-0123456789abcde",
                           ".tmp-step-3-1234-0123456789abcdef0", ".tmp--1234-0123456789abcdef",
                           ".tmp-1234-0123456789abcdef", "tmp-step-3-1234-0123456789abcdef", "step-3",
                           ".TMP-step-3-1234-0123456789abcdef", ".tmp-step-3-1234_0123456789abcdef"}) {
    EXPECT_FALSE(is_temporary_name(name)) << name;
  }
}

TEST_F(AtomicDirTest, CleanRemovesOnlyTemporaries) {
  const fs::path outside = parent_ / "outside";
  fs::create_directories(outside / "keep");
  std::vector<std::string> keep = {"step-3", ".tmp-foo", ".tmp-step-3-12a4-0123456789abcdef", "latest",
                                   "tmp-step-3-1234-0123456789abcdef", "outside"};
  fs::create_directories(parent_ / "step-3");
  fs::create_directories(parent_ / ".tmp-foo");
  fs::create_directories(parent_ / ".tmp-step-3-12a4-0123456789abcdef");
  atomic_write_file(parent_ / "latest", "step-3");
  fs::create_directories(parent_ / "tmp-step-3-1234-0123456789abcdef");
  // Stale: a half-written directory, a temporary file, and a link that must go without its target.
  fs::create_directories(parent_ / ".tmp-step-4-1234-0123456789abcdef" / "sub");
  atomic_write_file(parent_ / ".tmp-step-4-1234-0123456789abcdef" / "sub" / "f", "x");
  atomic_write_file(parent_ / ".tmp-latest-99-fedcba9876543210", "step-4");
  fs::create_directory_symlink(outside, parent_ / ".tmp-link-5-aaaaaaaaaaaaaaaa");

  auto removed = clean_stale_temporaries(parent_);
  EXPECT_EQ(removed.size(), 3u);
  std::sort(keep.begin(), keep.end());
  EXPECT_EQ(listing(parent_), keep);
  EXPECT_TRUE(fs::is_directory(outside / "keep"));
  EXPECT_TRUE(clean_stale_temporaries(parent_).empty());
}

// ---- atomic_write_file -----------------------------------------------------------------------

TEST_F(AtomicDirTest, AtomicWriteFileReplacesContents) {
  const fs::path latest = parent_ / "latest";
  atomic_write_file(latest, "step-1");
  EXPECT_EQ(read_text(latest), "step-1");
  std::vector<std::string> seen;
  atomic_write_file(latest, "step-20", [&](const char* s) {
    seen.emplace_back(s);
    // Readers see the old contents until the rename, the new ones after it.
    EXPECT_EQ(read_text(latest), std::string(s) == "files-written" ? "step-1" : "step-20") << s;
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"files-written", "renamed", "parent-synced"}));
  EXPECT_EQ(read_text(latest), "step-20");
  EXPECT_EQ(listing(parent_), std::vector<std::string>{"latest"});
}

TEST_F(AtomicDirTest, AtomicWriteFileFailureKeepsTheOldContents) {
  const fs::path latest = parent_ / "latest";
  atomic_write_file(latest, "step-1");
  EXPECT_THROW(atomic_write_file(latest, "step-2", [](const char* s) {
                 if (std::string(s) == "files-written") throw Stop{};
               }),
               Stop);
  EXPECT_EQ(read_text(latest), "step-1");
  EXPECT_EQ(listing(parent_), std::vector<std::string>{"latest"});

  int status = in_child([&] {
    atomic_write_file(latest, "step-2", [](const char* s) {
      if (std::string(s) == "files-written") ::_exit(0);
    });
  });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(read_text(latest), "step-1");
  EXPECT_EQ(temporaries_in(parent_), 1u);
  EXPECT_EQ(clean_stale_temporaries(parent_).size(), 1u);
  EXPECT_EQ(listing(parent_), std::vector<std::string>{"latest"});
}

TEST_F(AtomicDirTest, ReadersNeverSeeAMixedFile) {
  const fs::path path = parent_ / "latest";
  const std::string a(3000, 'a'), b(5000, 'b');
  atomic_write_file(path, a);
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, bad{0};
  std::thread reader([&] {
    while (!done) {
      std::string s = read_text(path);
      if (s != a && s != b) ++bad;
      ++reads;
    }
  });
  for (int i = 0; i < 40; ++i) atomic_write_file(path, i % 2 ? a : b);
  done = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
}

// ---- full disk -------------------------------------------------------------------------------

// In a child: saves step-1, then tries to save step-2 with a 1 MiB tensor under whatever limit
// `limit` sets up, and writes "<error message>" to `fd` if that fails with IoError `err` while
// leaving step-1 whole and no temporary. Exit codes: 0 checked, 77 limit unavailable, other: bug.
void full_disk_child(const fs::path& parent, int fd, int err, const std::function<bool()>& limit) {
  auto report = [&](const std::string& s) { (void)!::write(fd, s.data(), s.size()); };
  if (!limit()) ::_exit(77);
  {
    AtomicDir d(parent, "step-1");
    d.write_file("state.json", "{\"step\":1}");
    d.commit();
  }
  std::vector<float> big(1 << 18, 1.0f);
  try {
    AtomicDir d(parent, "step-2");
    write_safetensors(d.file_path("model.safetensors"), {{"w", "F32", {1 << 18}, big.data(), big.size() * 4}});
    d.commit();
    report("no error");
    ::_exit(1);
  } catch (const IoError& e) {
    report(e.what());
    if (e.error_code() != err) ::_exit(2);
  }
  if (read_text(parent / "step-1" / "state.json") != "{\"step\":1}") ::_exit(4);
  if (temporaries_in(parent) != 0 || fs::exists(parent / "step-2")) ::_exit(5);
  ::_exit(0);
}

std::pair<int, std::string> run_full_disk(const fs::path& parent, int err, std::function<bool()> limit) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    try {
      full_disk_child(parent, fds[1], err, limit);
    } catch (...) {
      ::_exit(6);
    }
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 100 + status, msg};
}

TEST_F(AtomicDirTest, FileSizeLimitGivesACleanError) {
  auto [code, msg] = run_full_disk(parent_, EFBIG, [] {
    ::signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG instead of killing the process
    rlimit r{64 * 1024, 64 * 1024};
    return ::setrlimit(RLIMIT_FSIZE, &r) == 0;
  });
  ASSERT_NE(code, 77) << "setrlimit failed";
  EXPECT_EQ(code, 0) << msg;
  EXPECT_NE(msg.find("write " + parent_.string() + "/.tmp-step-2-"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/model.safetensors: File too large"), std::string::npos) << msg;
}

TEST_F(AtomicDirTest, FullTmpfsGivesACleanError) {
  const fs::path mnt = parent_ / "mnt";
  fs::create_directory(mnt);
  auto [code, msg] = run_full_disk(mnt, ENOSPC, [&] {
    // A private mount namespace: the tmpfs disappears with the child, whatever happens.
    return ::unshare(CLONE_NEWNS) == 0 && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           ::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") == 0;
  });
  if (code == 77) GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN); FileSizeLimit covers EFBIG";
  EXPECT_EQ(code, 0) << msg;
  EXPECT_NE(msg.find("/model.safetensors: No space left on device"), std::string::npos) << msg;
}

}  // namespace
}  // namespace lockstep::engine
