// `lockstep dataset`: import-idx, make-synthetic and inspect. argv[0] is "dataset".
//
//   import-idx --images F --labels F --out DIR [--split train|val] [--class-names a,b,...] [--fashion]
//       IDX (MNIST, Fashion-MNIST; raw or gzip'd) -> DIR/<split>/<class>/<index>.jpg, RGB JPEGs.
//       The split defaults to val for the test files (name starting "t10k"), train otherwise.
//       Class folders keep the IDX label order: "0".."9", or "<label>_<name>" with names
//       (--fashion: the ten Fashion-MNIST names). Atomic and idempotent (data/idx.h).
//   make-synthetic --out DIR --classes K --per-class M [--val-per-class V] [--quirks] [--seed S]
//       DIR/train/<class>/*.JPEG (M per class) and DIR/val/<class>/*.JPEG (V per class, default
//       max(1, M / 10)): real JPEGs of 300..600 x 250..500 pixels, one in ten grayscale, each
//       class its own colours and stripes. Deterministic in --seed. --quirks adds to train's
//       first class what ILSVRC-2012 holds: a PNG named .JPEG, a CMYK JPEG, a JPEG truncated at
//       half, a zero-byte file and a hidden file. DIR must not hold train/ or val/ already.
//   inspect DIR
//       For DIR/train and DIR/val (or DIR itself when it has neither): classes and per-class
//       counts, formats by their bytes, width and height min/median/max, and every file that
//       does not decode with the reason. Exit 0 whatever it finds; 1 when DIR cannot be scanned.
//
// Bad usage is a ConfigError (exit 2); failures while working are DataError (exit 1).
#pragma once

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>

#include "tools/lockstep/cli_train.h"

namespace lockstep::cli {

struct SyntheticFolderSpec {
  std::filesystem::path out;
  int classes = 10;
  int per_class = 100;
  int val_per_class = -1;  // -1: max(1, per_class / 10)
  bool quirks = false;
  uint64_t seed = 0;
  int threads = 0;         // 0: the cores available
};

struct SyntheticFolderResult {
  int64_t train_files = 0, val_files = 0;  // hidden file included
};

SyntheticFolderResult make_synthetic_folder(const SyntheticFolderSpec& spec);

// Prints the report of `inspect` for one folder of class folders.
void inspect_split(const std::filesystem::path& dir, const std::vector<std::string>* classes, std::ostream& out,
                   int threads = 0);

int run_dataset(int argc, const char* const* argv, std::ostream& out);

// Shared by the data subcommands: an integer option in [lo, hi], else ConfigError naming it.
int64_t parse_int_option(const std::string& flag, const std::string& text, int64_t lo, int64_t hi);

}  // namespace lockstep::cli
