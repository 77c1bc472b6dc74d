// Durable writes: see atomic_dir.h for the protocol and the policy on existing targets.
#include "engine/checkpoint/atomic_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <system_error>
#include <utility>

namespace lockstep::engine {

namespace fs = std::filesystem;

namespace {

std::string describe(const std::string& op, const fs::path& path, int err) {
  return op + " " + path.string() + ": " + std::strerror(err);
}

// ".tmp-<name>-<pid>-<16 hex>", unique per process and call.
std::string temporary_name(std::string_view name) {
  static std::random_device device;
  uint64_t r = (static_cast<uint64_t>(device()) << 32) ^ device();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(r));
  return ".tmp-" + std::string(name) + "-" + std::to_string(::getpid()) + "-" + hex;
}

// A plain, single path component: no separators, not "." or "..", not empty.
void check_component(std::string_view what, std::string_view name) {
  LS_CHECK(!name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
               name.find('\0') == std::string_view::npos,
           what << " must be a plain file name (got '" << name << "')");
}

// Removes a directory tree or a file; throws IoError.
void remove_tree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) throw IoError("remove", path, ec.value());
}

}  // namespace

IoError::IoError(std::string op, fs::path path, int err)
    : Error(describe(op, path, err)), path_(std::move(path)), err_(err) {}

// ---- WriteFile -----------------------------------------------------------------------------

WriteFile::WriteFile(fs::path path, int extra_flags) : path_(std::move(path)) {
  do {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC | extra_flags, 0644);
  } while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) throw IoError("open", path_, errno);
}

WriteFile::~WriteFile() {
  if (fd_ >= 0) ::close(fd_);
}

void WriteFile::write(const void* data, size_t bytes) {
  LS_CHECK(fd_ >= 0, "write to closed file " << path_.string());
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd_, p, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError("write", path_, errno);
    }
    if (n == 0) throw IoError("write", path_, ENOSPC);  // no progress: treat as a full device
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void WriteFile::sync() {
  LS_CHECK(fd_ >= 0, "fsync of closed file " << path_.string());
  if (::fsync(fd_) != 0) throw IoError("fsync", path_, errno);
}

void WriteFile::close() {
  if (fd_ < 0) return;
  int fd = std::exchange(fd_, -1);
  // Linux closes the descriptor even when close() reports an error: never retry it.
  if (::close(fd) != 0 && errno != EINTR) throw IoError("close", path_, errno);
}

// ---- whole files ---------------------------------------------------------------------------

std::vector<std::byte> read_file(const fs::path& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError("open", path, errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw IoError("stat", path, errno);
  if (!S_ISREG(st.st_mode)) throw IoError("read", path, S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
  std::vector<std::byte> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError("read", path, errno);
    }
    if (n == 0) break;  // the file shrank while we read it: return what is there
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  // A file that grew while we read it: take the rest too, so the bytes are one whole file.
  std::byte buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError("read", path, errno);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buf, buf + n);
  }
  return bytes;
}

void write_file_synced(const fs::path& path, std::span<const std::byte> bytes) {
  WriteFile f(path, O_CREAT | O_TRUNC);
  f.write(bytes.data(), bytes.size());
  f.sync();
  f.close();
}

void fsync_directory(const fs::path& dir) {
  int fd;
  do {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError("fsync directory", dir, err);
}

// ---- atomic_write_file ---------------------------------------------------------------------

void atomic_write_file(const fs::path& path, std::span<const std::byte> bytes, const StageHook& hook) {
  const std::string filename = path.filename().string();
  check_component("atomic_write_file's file name", filename);
  fs::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const fs::path temp = dir / temporary_name(filename);
  try {
    {
      WriteFile f(temp, O_CREAT | O_EXCL);
      f.write(bytes.data(), bytes.size());
      f.sync();
      f.close();
    }
    if (hook) hook("files-written");
    if (::rename(temp.c_str(), path.c_str()) != 0) throw IoError("rename " + temp.string() + " to", path, errno);
  } catch (...) {
    ::unlink(temp.c_str());  // best effort; a crash leaves it for clean_stale_temporaries
    throw;
  }
  if (hook) hook("renamed");
  fsync_directory(dir);
  if (hook) hook("parent-synced");
}

void atomic_write_file(const fs::path& path, std::string_view text, const StageHook& hook) {
  atomic_write_file(path, std::as_bytes(std::span(text.data(), text.size())), hook);
}

// ---- stale temporaries ---------------------------------------------------------------------

bool is_temporary_name(std::string_view s) {
  constexpr std::string_view prefix = ".tmp-";
  if (s.size() <= prefix.size() || s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  // <name>-<pid>-<16 hex>, parsed from the end because <name> may contain '-'.
  if (s.size() < 17 || s[s.size() - 17] != '-') return false;
  for (char c : s.substr(s.size() - 16)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  s.remove_suffix(17);
  size_t dash = s.rfind('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == s.size()) return false;
  for (char c : s.substr(dash + 1)) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::vector<fs::path> clean_stale_temporaries(const fs::path& parent) {
  std::vector<fs::path> removed;
  std::error_code ec;
  fs::directory_iterator it(parent, ec);
  if (ec) throw IoError("list directory", parent, ec.value());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (is_temporary_name(it->path().filename().string())) removed.push_back(it->path());
  }
  if (ec) throw IoError("list directory", parent, ec.value());
  for (const fs::path& p : removed) remove_tree(p);
  if (!removed.empty()) fsync_directory(parent);
  return removed;
}

// ---- AtomicDir -----------------------------------------------------------------------------

AtomicDir::AtomicDir(fs::path parent, std::string name, StageHook hook)
    : parent_(std::move(parent)), name_(std::move(name)), hook_(std::move(hook)) {
  check_component("AtomicDir's directory name", name_);
  temp_ = parent_ / temporary_name(name_);
  if (::mkdir(temp_.c_str(), 0755) != 0) throw IoError("mkdir", temp_, errno);
}

AtomicDir::~AtomicDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);  // best effort: a leftover is removed by clean_stale_temporaries
}

fs::path AtomicDir::file_path(std::string_view filename) const {
  check_component("a checkpoint file name", filename);
  LS_CHECK(!committed_, "AtomicDir " << final_path().string() << " is already committed");
  return temp_ / std::string(filename);
}

void AtomicDir::write_file(std::string_view filename, std::span<const std::byte> bytes) {
  write_file_synced(file_path(filename), bytes);
}

void AtomicDir::write_file(std::string_view filename, std::string_view text) {
  write_file(filename, std::as_bytes(std::span(text.data(), text.size())));
}

void AtomicDir::stage(const char* name) const {
  if (hook_) hook_(name);
}

fs::path AtomicDir::commit(Existing existing) {
  LS_CHECK(!committed_, "AtomicDir " << final_path().string() << " is already committed");
  const fs::path target = final_path();
  stage("files-written");
  fsync_directory(temp_);
  stage("dir-synced");
  bool swapped = false;
  if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (err == EEXIST && existing == Existing::replace) {
      // The old directory takes the temporary name in the same atomic step.
      if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0) {
        throw IoError("exchange " + temp_.string() + " with", target, errno);
      }
      swapped = true;
    } else if (err == EEXIST) {
      throw Error("cannot write " + target.string() + ": it already exists (refusing to replace it)");
    } else {
      throw IoError("rename " + temp_.string() + " to", target, err);
    }
  }
  committed_ = !swapped;  // after a swap temp_ holds the old directory: the destructor removes it
  stage("renamed");
  fsync_directory(parent_);
  stage("parent-synced");
  if (swapped) {
    remove_tree(temp_);
    committed_ = true;
    fsync_directory(parent_);
  }
  return target;
}

}  // namespace lockstep::engine
