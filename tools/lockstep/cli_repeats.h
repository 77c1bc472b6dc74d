// An option given twice on a subcommand's command line is refused, naming it and both values:
// cxxopts would keep the last one silently, and `--lr 0.1 ... --lr 1` is more often a slip (or a
// script's default followed by an override that was meant to replace it) than a wish.
#pragma once

#include <cxxopts.hpp>

#include <map>
#include <string>

#include "engine/config.h"

namespace lockstep::cli {

inline void refuse_repeats(const cxxopts::ParseResult& r, const std::string& see) {
  std::map<std::string, std::string> first;
  for (const cxxopts::KeyValue& kv : r.arguments()) {
    const auto [at, fresh] = first.emplace(kv.key(), kv.value());
    if (!fresh)
      throw engine::ConfigError("--" + kv.key(), "--" + kv.key() + " given twice ('" + at->second + "' and '" +
                                                     kv.value() + "'): give it once (see " + see + " --help)");
  }
}

}  // namespace lockstep::cli
