// Claiming a run folder: see run_dir.h.
#include "engine/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "engine/checkpoint/checkpoint.h"
#include "engine/config.h"

namespace lockstep::engine {

namespace fs = std::filesystem;

namespace {

// What of a run lives in its folder (README: "A run folder").
constexpr const char* kRunEntries[] = {"config.json", "log.jsonl", "summary.json", "tb", "checkpoints"};

std::vector<std::string> run_entries(const fs::path& out) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const char* e : kRunEntries)
    if (fs::exists(out / e, ec)) found.emplace_back(e);
  return found;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool same_folder(const fs::path& a, const fs::path& b) {
  std::error_code ea, eb;
  const fs::path ca = fs::weakly_canonical(a, ea), cb = fs::weakly_canonical(b, eb);
  return !ea && !eb && ca == cb;
}

}  // namespace

RunDirClaim::RunDirClaim(const fs::path& out, const std::string& resume, bool overwrite) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw ConfigError("--out", "--out " + out.string() + ": cannot create the folder (" + ec.message() + ")");
  const fs::path lock = out / ".lock";
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw ConfigError("--out", "--out " + out.string() + ": cannot open " + lock.string() + " (" +
                                   std::strerror(errno) + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    std::ifstream in(lock);
    std::string pid;
    std::getline(in, pid);
    ::close(fd_);
    fd_ = -1;
    throw ConfigError("--out", "--out " + out.string() + " is in use by another lockstep run" +
                                   (pid.empty() ? std::string() : " (pid " + pid + ")") +
                                   "; wait for it to end, or choose another --out");
  }
  // Held from here: the pid is for the message above, the lock itself is the flock.
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    // The message loses the pid; the lock still holds.
  }

  // A new run, or a checkpoint continued in another folder (a branch): the folder must not hold
  // a run already. Continued in its own run folder: the checkpoint must be the newest there.
  const fs::path ck = fs::path(resume).lexically_normal();
  if (resume.empty() || !same_folder(run_dir_of(ck), out)) {
    const std::vector<std::string> found = run_entries(out);
    if (found.empty()) return;
    if (!overwrite)
      throw ConfigError("--out", "--out " + out.string() + " already holds a run (" + joined(found) + "); " +
                                     (resume.empty() ? "continue it with --resume " + out.string() + ", " : "") +
                                     "choose another --out, or pass --overwrite to replace it");
    for (const std::string& e : found) {
      fs::remove_all(out / e, ec);
      if (ec) throw ConfigError("--overwrite", "--overwrite: cannot remove " + (out / e).string() + " (" + ec.message() + ")");
    }
    return;
  }
  // What `latest` names is the run's head (a crash after a newer checkpoint was renamed into place
  // but before `latest` moved leaves that one uncommitted: the run continues from `latest`).
  if (read_latest(out).name == ck.filename().string()) return;
  std::vector<std::string> newer;
  const auto at = checkpoint_step(ck.filename().string());
  for (const fs::path& p : list_checkpoints(out)) {
    const auto n = checkpoint_step(p.filename().string());
    if (!at || !n || *n <= *at) continue;
    try {
      open_checkpoint(p);  // a damaged newer one (why an older one is resumed) may be replaced
      newer.push_back(p.filename().string());
    } catch (const std::exception&) {
    }
  }
  if (newer.empty() || overwrite) return;
  throw ConfigError("--resume", "--resume " + resume + ": the run has newer checkpoints (" + joined(newer) +
                                    ") that continuing from it would write over or prune; resume the newest with "
                                    "--resume " + out.string() + ", branch into another folder with --out, or pass "
                                    "--overwrite to let them go");
}

RunDirClaim::~RunDirClaim() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock; the file stays (a later run reuses it)
}

}  // namespace lockstep::engine
