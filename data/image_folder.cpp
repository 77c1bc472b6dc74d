// Folder scanning. The rules, in the order they are applied to each directory entry:
//   1. names starting with '.' are ignored (hidden files and folders, ".", "..");
//   2. a symlink is resolved with canonical(); it is followed only when the target exists and
//      lies inside the canonical root. A loop (ELOOP), a dangling link or a target outside the
//      root is recorded in `problems` and skipped, never opened;
//   3. below the root, directories are class folders; inside a class folder, regular files are
//      samples and sub-folders are walked recursively (as torchvision's ImageFolder does). A
//      directory whose canonical path is already on the walk's stack (a directory cycle through
//      a link that stays inside the root) is recorded in `problems` and skipped;
//   4. anything else (sockets, fifos, devices) is recorded in `problems` and skipped.
// Regular files are listed without being opened: their format is sniffed from their bytes at
// decode time, so a non-image or unreadable file is a bad sample for the loader to count.
// Samples are sorted by (label, path relative to the class folder) in byte order.
#include "data/image_folder.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>
#include <system_error>

namespace lockstep::data {

namespace fs = std::filesystem;

const char* format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::jpeg: return "jpeg";
    case ImageFormat::png: return "png";
    case ImageFormat::unknown: return "unknown";
  }
  return "unknown";
}

ImageFormat sniff_format(const uint8_t* bytes, size_t n) {
  static constexpr uint8_t kJpeg[] = {0xFF, 0xD8, 0xFF};
  static constexpr uint8_t kPng[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (bytes && n >= sizeof(kPng) && std::memcmp(bytes, kPng, sizeof(kPng)) == 0) return ImageFormat::png;
  if (bytes && n >= sizeof(kJpeg) && std::memcmp(bytes, kJpeg, sizeof(kJpeg)) == 0) return ImageFormat::jpeg;
  return ImageFormat::unknown;
}

namespace {

[[noreturn]] void fail(const std::string& what) { throw DataError(what); }

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.empty() || name[0] == '.';
}

// True when `p` (canonical) is `root` (canonical) or below it.
bool inside(const fs::path& p, const fs::path& root) {
  auto [r, q] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
  return r == root.end();
}

enum class Kind { skip, directory, file };

// Classifies one entry by rules 2-4 above. For a followed link, `target` is its canonical path;
// for a plain directory, the directory's own canonical path.
Kind classify(const fs::path& path, const fs::path& root, std::vector<std::string>& problems, fs::path& target) {
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(path, ec);
  if (ec) {
    problems.push_back(path.string() + ": cannot stat: " + ec.message());
    return Kind::skip;
  }
  if (fs::is_symlink(link)) {
    fs::path t = fs::canonical(path, ec);
    if (ec) {
      if (ec == std::errc::too_many_symbolic_link_levels)
        problems.push_back(path.string() + ": symlink loop, not followed");
      else
        problems.push_back(path.string() + ": broken symlink, not followed: " + ec.message());
      return Kind::skip;
    }
    if (!inside(t, root)) {
      problems.push_back(path.string() + ": symlink to " + t.string() + " leaves the root, not followed");
      return Kind::skip;
    }
    target = t;
    const fs::file_status st = fs::status(t, ec);
    if (!ec && fs::is_directory(st)) return Kind::directory;
    if (!ec && fs::is_regular_file(st)) return Kind::file;
    problems.push_back(path.string() + ": symlink to neither a file nor a folder, skipped");
    return Kind::skip;
  }
  if (fs::is_directory(link)) {
    target = fs::canonical(path, ec);
    if (ec) {
      problems.push_back(path.string() + ": cannot resolve: " + ec.message());
      return Kind::skip;
    }
    return Kind::directory;
  }
  if (fs::is_regular_file(link)) return Kind::file;
  problems.push_back(path.string() + ": not a regular file, skipped");
  return Kind::skip;
}

// Lists the entries of a directory, sorted by name; throws DataError on failure when `required`,
// otherwise records a problem and returns nothing.
std::vector<fs::path> list_dir(const fs::path& dir, bool required, std::vector<std::string>& problems) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) out.push_back(it->path());
  if (ec) {
    if (required) fail("cannot list folder " + dir.string() + ": " + ec.message());
    problems.push_back(dir.string() + ": cannot list folder: " + ec.message());
    return {};
  }
  std::sort(out.begin(), out.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return out;
}

struct Walk {
  const fs::path& root;
  std::vector<std::string>& problems;
  std::vector<fs::path> stack;  // canonical paths of the folders being walked: cycle detection
};

// Appends the files below `dir` (named `rel` relative to its class folder) to `files`.
void walk_class(Walk& w, const fs::path& dir, const fs::path& canonical_dir, const std::string& rel,
                bool required, std::vector<std::pair<std::string, fs::path>>& files) {
  w.stack.push_back(canonical_dir);
  for (const fs::path& p : list_dir(dir, required, w.problems)) {
    if (hidden(p)) continue;
    fs::path target;
    const Kind k = classify(p, w.root, w.problems, target);
    const std::string name = rel.empty() ? p.filename().string() : rel + "/" + p.filename().string();
    if (k == Kind::file) {
      files.emplace_back(name, p);
    } else if (k == Kind::directory) {
      if (std::find(w.stack.begin(), w.stack.end(), target) != w.stack.end()) {
        w.problems.push_back(p.string() + ": directory cycle (leads back to " + target.string() +
                             "), not followed");
        continue;
      }
      walk_class(w, p, target, name, false, files);
    }
  }
  w.stack.pop_back();
}

}  // namespace

FolderIndex scan_folder(const fs::path& root_in, const std::vector<std::string>* classes) {
  std::error_code ec;
  const fs::file_status st = fs::status(root_in, ec);
  if (ec || !fs::exists(st)) fail("data folder does not exist: " + root_in.string());
  if (!fs::is_directory(st)) fail("data folder is not a directory: " + root_in.string());
  FolderIndex index;
  index.root = fs::canonical(root_in, ec);
  if (ec) fail("cannot resolve data folder " + root_in.string() + ": " + ec.message());

  // Class folders, in byte order of their names.
  struct ClassDir {
    std::string name;
    fs::path path, canonical;
  };
  std::vector<ClassDir> dirs;
  for (const fs::path& p : list_dir(index.root, true, index.problems)) {
    if (hidden(p)) continue;
    fs::path target;
    if (classify(p, index.root, index.problems, target) != Kind::directory) continue;
    if (target == index.root) {
      index.problems.push_back(p.string() + ": directory cycle (leads back to the root), not followed");
      continue;
    }
    dirs.push_back({p.filename().string(), p, target});
  }
  if (dirs.empty()) fail("data folder has no class folders: " + root_in.string());

  std::map<std::string, int32_t> label_of;
  if (classes) {
    for (size_t i = 0; i < classes->size(); ++i) label_of[(*classes)[i]] = static_cast<int32_t>(i);
    index.classes = *classes;
    for (const ClassDir& d : dirs)
      if (!label_of.count(d.name))
        fail("class folder " + d.path.string() + " is not a class of the training set (" +
             std::to_string(classes->size()) + " classes)");
  } else {
    for (const ClassDir& d : dirs) {
      label_of[d.name] = static_cast<int32_t>(index.classes.size());
      index.classes.push_back(d.name);
    }
  }

  std::vector<std::pair<int32_t, const ClassDir*>> order;
  for (const ClassDir& d : dirs) order.emplace_back(label_of.at(d.name), &d);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [label, d] : order) {
    Walk w{index.root, index.problems, {index.root}};
    std::vector<std::pair<std::string, fs::path>> files;
    walk_class(w, d->path, d->canonical, "", true, files);
    if (files.empty()) fail("class folder is empty (no image files): " + d->path.string());
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& f : files) index.samples.push_back({std::move(f.second), label});
  }
  return index;
}

}  // namespace lockstep::data
