// Durable, atomic file and directory writing for checkpoints (ARCHITECTURE decision 10).
//
// A checkpoint directory is built under a temporary name and renamed into place only when every
// byte is on disk, so a crash at any moment leaves either the previous state or the complete new
// one, plus at most a `.tmp-*` leftover that clean_stale_temporaries() removes on the next start:
//   1. mkdir <parent>/.tmp-<name>-<pid>-<16 hex>          (AtomicDir's constructor)
//   2. write each file into it, fsync each file           (write_file / write_safetensors)
//   3. fsync the temporary directory                      stage "files-written" before, "dir-synced" after
//   4. rename it to <parent>/<name>                       stage "renamed"
//   5. fsync <parent>                                     stage "parent-synced"
// Existing target: commit() refuses by default (renameat2 RENAME_NOREPLACE, so even an empty
// directory is never silently replaced); with Existing::replace the old directory is swapped out
// atomically (RENAME_EXCHANGE) - there is no instant at which <name> is missing - and then
// removed from its temporary name (a crash before that removal leaves a `.tmp-*` leftover).
// An AtomicDir destroyed without commit() (an exception) removes its temporary directory.
//
// Every failed syscall throws IoError naming the operation, the path and strerror (ENOSPC and
// EFBIG included). The stage hook exists for crash tests: it is called with the stage's name and
// may throw or _exit() to simulate a crash there.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/error.h"

namespace lockstep::engine {

// A failed system call: what() is "<op> <path>: <strerror>".
class IoError : public Error {
 public:
  IoError(std::string op, std::filesystem::path path, int err);
  int error_code() const { return err_; }  // errno
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int err_;
};

using StageHook = std::function<void(const char* stage)>;

// A file descriptor opened for writing, closed by the destructor. close() reports errors.
class WriteFile {
 public:
  // open(path, O_WRONLY | O_CLOEXEC | extra_flags, 0644); throws IoError.
  WriteFile(std::filesystem::path path, int extra_flags);
  ~WriteFile();
  WriteFile(const WriteFile&) = delete;
  WriteFile& operator=(const WriteFile&) = delete;

  void write(const void* data, size_t bytes);  // all of it, retrying short writes and EINTR
  void sync();                                 // fsync
  void close();                                // throws IoError if close fails
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Whole-file read; throws IoError.
std::vector<std::byte> read_file(const std::filesystem::path& path);
// Creates or truncates `path`, writes `bytes`, fsyncs and closes it; throws IoError.
void write_file_synced(const std::filesystem::path& path, std::span<const std::byte> bytes);
// fsync on a directory, so that entries created or renamed in it are durable.
void fsync_directory(const std::filesystem::path& dir);

// Replaces `path`'s contents atomically: readers see the old file or the new one, never a mix.
// Writes <dir>/.tmp-<filename>-<pid>-<hex>, fsyncs it, renames it over `path`, fsyncs <dir>.
// Stages: "files-written", "renamed", "parent-synced". On an exception the temporary is removed.
void atomic_write_file(const std::filesystem::path& path, std::span<const std::byte> bytes,
                       const StageHook& hook = {});
void atomic_write_file(const std::filesystem::path& path, std::string_view text,
                       const StageHook& hook = {});

// True for names this file's writers give temporaries: ".tmp-<name>-<decimal pid>-<16 hex>".
bool is_temporary_name(std::string_view filename);
// Removes every entry of `parent` whose name is_temporary_name() (leftovers of crashed writes),
// and nothing else; returns what it removed. The caller must be the only writer in `parent`.
std::vector<std::filesystem::path> clean_stale_temporaries(const std::filesystem::path& parent);

class AtomicDir {
 public:
  enum class Existing { refuse, replace };

  // Creates <parent>/.tmp-<name>-<pid>-<hex>. `parent` must exist; `name` is one path component.
  AtomicDir(std::filesystem::path parent, std::string name, StageHook hook = {});
  ~AtomicDir();  // without commit(): removes the temporary directory (best effort)
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::filesystem::path& temp_path() const { return temp_; }
  std::filesystem::path final_path() const { return parent_ / name_; }
  // Where to write a file of the directory (for writers such as write_safetensors, which fsync
  // what they write). Only a plain file name is accepted.
  std::filesystem::path file_path(std::string_view filename) const;
  // Writes and fsyncs one file of the directory.
  void write_file(std::string_view filename, std::span<const std::byte> bytes);
  void write_file(std::string_view filename, std::string_view text);

  // Steps 3-5 above; returns final_path(). Throws Error if the target exists and `existing` is
  // refuse, IoError for a failed syscall.
  std::filesystem::path commit(Existing existing = Existing::refuse);

 private:
  void stage(const char* name) const;

  std::filesystem::path parent_;
  std::string name_;
  StageHook hook_;
  std::filesystem::path temp_;
  bool committed_ = false;
};

}  // namespace lockstep::engine
