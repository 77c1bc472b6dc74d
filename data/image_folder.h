// Scanning an ImageNet-style folder: root/<class>/<files>. Classes are the sub-folders sorted by
// name (byte order) and numbered from 0; train and val share train's mapping. A file's format is
// decided by its first bytes, never its name. Hidden entries (".name") are ignored. Nothing
// outside the root is ever read: a symlink that leaves the root, or loops, is reported in
// `problems` and skipped. Startup errors throw DataError naming the folder or file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/error.h"

namespace lockstep::data {

class DataError : public Error {
 public:
  using Error::Error;
};

enum class ImageFormat { jpeg, png, unknown };
const char* format_name(ImageFormat f);
// JPEG: FF D8 FF; PNG: 89 'P' 'N' 'G' 0D 0A 1A 0A. Anything else (or too short) is unknown.
ImageFormat sniff_format(const uint8_t* bytes, size_t n);

struct Sample {
  std::filesystem::path path;  // absolute
  int32_t label = 0;
};

struct FolderIndex {
  std::filesystem::path root;
  std::vector<std::string> classes;   // label -> class folder name
  std::vector<Sample> samples;        // sorted by (label, file name): the canonical order
  std::vector<std::string> problems;  // skipped entries and why (escaping / looping symlinks)
};

// Scans `root`. With `classes` given (train's), the folder's classes must be a subset of them
// and take their labels; otherwise the folder defines the classes. Throws DataError for a
// missing root, a root with no class folders, an empty class folder, or an unknown val class.
// Files are listed, not opened: unreadable or corrupt files surface when decoded.
FolderIndex scan_folder(const std::filesystem::path& root, const std::vector<std::string>* classes = nullptr);

}  // namespace lockstep::data
