// `--json FILE` of the bench commands: checked before the benchmark runs, so a path that cannot
// be written fails at once, naming the flag, instead of after minutes of measuring.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "engine/config.h"

namespace lockstep::cli {

inline void check_json_path(const std::string& file) {
  namespace fs = std::filesystem;
  const fs::path p(file);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  std::error_code ec;
  if (file.empty() || fs::is_directory(p, ec))
    throw engine::ConfigError("--json", "--json '" + file + "' must name a file");
  if (!fs::is_directory(dir, ec))
    throw engine::ConfigError("--json", "--json " + file + ": no folder " + dir.string());
  if (::access(dir.c_str(), W_OK) != 0)
    throw engine::ConfigError("--json", "--json " + file + ": the folder " + dir.string() + " is not writable");
}

}  // namespace lockstep::cli
