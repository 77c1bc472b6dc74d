// Running the `lockstep` binary from a test: fork + exec with extra environment variables, an
// optional file-size limit (a "full disk" for one process), output captured to a file. The
// resume tests need real processes: a resumed run must start from nothing but the files.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace lockstep::test {

struct ProcessResult {
  int rc = -1;      // exit status, or -1 when killed
  int signal = 0;   // the signal that killed it
  std::string output;  // stdout and stderr together
};

struct ProcessOptions {
  std::vector<std::string> env;  // "NAME=value", added to the environment
  long fsize_limit = -1;         // RLIMIT_FSIZE in bytes (SIGXFSZ ignored: writes fail with EFBIG)
};

inline pid_t spawn(const std::vector<std::string>& argv, const std::string& output_file,
                   const ProcessOptions& o = {}) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  const int fd = open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) _exit(126);
  dup2(fd, 1);
  dup2(fd, 2);
  close(fd);
  for (const std::string& e : o.env) putenv(const_cast<char*>(e.c_str()));
  if (o.fsize_limit >= 0) {
    signal(SIGXFSZ, SIG_IGN);  // an ignored disposition survives exec
    struct rlimit rl {static_cast<rlim_t>(o.fsize_limit), static_cast<rlim_t>(o.fsize_limit)};
    setrlimit(RLIMIT_FSIZE, &rl);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  _exit(127);
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline ProcessResult wait_for(pid_t pid, const std::string& output_file) {
  int status = 0;
  waitpid(pid, &status, 0);
  ProcessResult r;
  if (WIFEXITED(status)) r.rc = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.output = read_text(output_file);
  return r;
}

inline ProcessResult run_process(const std::vector<std::string>& argv, const std::string& output_file,
                                 const ProcessOptions& o = {}) {
  return wait_for(spawn(argv, output_file, o), output_file);
}

}  // namespace lockstep::test
