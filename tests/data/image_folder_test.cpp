// scan_folder: class mapping, ordering, hidden entries, val subsets, startup errors that name the
// path, and symlinks that loop or leave the root.
#include <gtest/gtest.h>

#include <algorithm>

#include "data/image_folder.h"
#include "data_test_util.h"

namespace lockstep::data {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_text;

std::vector<std::string> names(const FolderIndex& idx) {
  std::vector<std::string> out;
  for (const Sample& s : idx.samples)
    out.push_back(std::to_string(s.label) + ":" + s.path.parent_path().filename().string() + "/" +
                  s.path.filename().string());
  return out;
}

bool any_problem_mentions(const FolderIndex& idx, const std::string& needle) {
  return std::any_of(idx.problems.begin(), idx.problems.end(),
                     [&](const std::string& p) { return p.find(needle) != std::string::npos; });
}

// The message of the DataError that `f` throws ("" if none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

TEST(ImageFolder, ClassesSortedAndSamplesInCanonicalOrder) {
  TempDir d;
  // Created out of order; classes and files must come back sorted by name (byte order).
  write_text(d.path() / "n02" / "b.JPEG", "x");
  write_text(d.path() / "n02" / "a.JPEG", "x");
  write_text(d.path() / "Zeta" / "z.png", "x");
  write_text(d.path() / "n01" / "c.JPEG", "x");
  write_text(d.path() / "n01" / "B.JPEG", "x");
  FolderIndex idx = scan_folder(d.path());
  EXPECT_EQ(idx.classes, (std::vector<std::string>{"Zeta", "n01", "n02"}));
  EXPECT_EQ(names(idx), (std::vector<std::string>{"0:Zeta/z.png", "1:n01/B.JPEG", "1:n01/c.JPEG", "2:n02/a.JPEG",
                                                  "2:n02/b.JPEG"}));
  EXPECT_EQ(idx.root, fs::canonical(d.path()));
  for (const Sample& s : idx.samples) EXPECT_TRUE(s.path.is_absolute()) << s.path;
  EXPECT_TRUE(idx.problems.empty());
}

TEST(ImageFolder, HiddenEntriesIgnored) {
  TempDir d;
  write_text(d.path() / "cat" / "1.jpg", "x");
  write_text(d.path() / "cat" / ".DS_Store", "x");
  write_text(d.path() / ".hidden_class" / "1.jpg", "x");
  write_text(d.path() / "cat" / ".thumbs" / "2.jpg", "x");
  write_text(d.path() / "README.txt", "a file at the root is not a class");
  FolderIndex idx = scan_folder(d.path());
  EXPECT_EQ(idx.classes, (std::vector<std::string>{"cat"}));
  EXPECT_EQ(names(idx), (std::vector<std::string>{"0:cat/1.jpg"}));
}

TEST(ImageFolder, NestedFoldersInsideAClassAreWalked) {
  TempDir d;
  write_text(d.path() / "cat" / "sub" / "2.jpg", "x");
  write_text(d.path() / "cat" / "1.jpg", "x");
  FolderIndex idx = scan_folder(d.path());
  ASSERT_EQ(idx.samples.size(), 2u);
  EXPECT_EQ(idx.samples[0].path.filename(), "1.jpg");
  EXPECT_EQ(idx.samples[1].path.filename(), "2.jpg");
}

TEST(ImageFolder, ValUsesTrainMappingForASubset) {
  TempDir d;
  for (const char* c : {"a", "b", "c"}) write_text(d.path() / "train" / c / "1.jpg", "x");
  write_text(d.path() / "val" / "c" / "1.jpg", "x");
  write_text(d.path() / "val" / "a" / "1.jpg", "x");
  FolderIndex train = scan_folder(d.path() / "train");
  FolderIndex val = scan_folder(d.path() / "val", &train.classes);
  EXPECT_EQ(val.classes, train.classes);
  ASSERT_EQ(val.samples.size(), 2u);
  EXPECT_EQ(val.samples[0].label, 0);
  EXPECT_EQ(val.samples[0].path.parent_path().filename(), "a");
  EXPECT_EQ(val.samples[1].label, 2);
  EXPECT_EQ(val.samples[1].path.parent_path().filename(), "c");
}

TEST(ImageFolder, ValClassUnknownToTrainIsAnErrorNamingIt) {
  TempDir d;
  write_text(d.path() / "train" / "a" / "1.jpg", "x");
  write_text(d.path() / "val" / "a" / "1.jpg", "x");
  write_text(d.path() / "val" / "zebra" / "1.jpg", "x");
  FolderIndex train = scan_folder(d.path() / "train");
  std::string msg = error_of([&] { scan_folder(d.path() / "val", &train.classes); });
  EXPECT_NE(msg.find("zebra"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a class of the training set"), std::string::npos) << msg;
}

TEST(ImageFolder, MissingRootIsAnErrorNamingIt) {
  TempDir d;
  const fs::path root = d.path() / "no_such_folder";
  std::string msg = error_of([&] { scan_folder(root); });
  EXPECT_NE(msg.find(root.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST(ImageFolder, RootThatIsAFileIsAnErrorNamingIt) {
  TempDir d;
  write_text(d.path() / "file", "x");
  std::string msg = error_of([&] { scan_folder(d.path() / "file"); });
  EXPECT_NE(msg.find((d.path() / "file").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a directory"), std::string::npos) << msg;
}

TEST(ImageFolder, NoClassFoldersIsAnErrorNamingTheRoot) {
  TempDir d;
  write_text(d.path() / "loose.jpg", "x");
  fs::create_directories(d.path() / ".hidden");
  std::string msg = error_of([&] { scan_folder(d.path()); });
  EXPECT_NE(msg.find(d.path().string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("no class folders"), std::string::npos) << msg;
}

TEST(ImageFolder, EmptyClassFolderIsAnErrorNamingIt) {
  TempDir d;
  write_text(d.path() / "a" / "1.jpg", "x");
  fs::create_directories(d.path() / "empty_class");
  write_text(d.path() / "only_hidden" / ".x", "x");
  std::string msg = error_of([&] { scan_folder(d.path()); });
  EXPECT_NE(msg.find("empty_class"), std::string::npos) << msg;
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
  fs::remove(d.path() / "empty_class");
  msg = error_of([&] { scan_folder(d.path()); });
  EXPECT_NE(msg.find("only_hidden"), std::string::npos) << msg;
}

TEST(ImageFolder, SymlinkLoopIsReportedNotFollowed) {
  TempDir d;
  write_text(d.path() / "a" / "1.jpg", "x");
  // A link cycle (ELOOP) and a folder link back to an ancestor (a directory cycle).
  fs::create_symlink(d.path() / "a" / "loop2", d.path() / "a" / "loop1");
  fs::create_symlink(d.path() / "a" / "loop1", d.path() / "a" / "loop2");
  fs::create_directory_symlink(d.path() / "a", d.path() / "a" / "self");
  fs::create_directory_symlink(d.path(), d.path() / "a" / "up");
  fs::create_directory_symlink(d.path(), d.path() / "rootlink");
  FolderIndex idx = scan_folder(d.path());
  EXPECT_EQ(idx.classes, (std::vector<std::string>{"a"}));
  EXPECT_EQ(names(idx), (std::vector<std::string>{"0:a/1.jpg"}));
  EXPECT_TRUE(any_problem_mentions(idx, "loop1")) << ::testing::PrintToString(idx.problems);
  EXPECT_TRUE(any_problem_mentions(idx, "loop2"));
  EXPECT_TRUE(any_problem_mentions(idx, "symlink loop"));
  EXPECT_TRUE(any_problem_mentions(idx, (d.path() / "a" / "self").string() + ": directory cycle"));
  EXPECT_TRUE(any_problem_mentions(idx, (d.path() / "a" / "up").string() + ": directory cycle"));
  EXPECT_TRUE(any_problem_mentions(idx, "rootlink"));
}

TEST(ImageFolder, SymlinkOutOfRootIsReportedNotFollowed) {
  TempDir d;
  const fs::path root = d.path() / "root";
  write_text(root / "a" / "1.jpg", "x");
  write_text(d.path() / "outside" / "secret.jpg", "x");
  write_text(d.path() / "outside_file.jpg", "x");
  fs::create_directory_symlink(d.path() / "outside", root / "escaped_class");
  fs::create_directory_symlink(d.path() / "outside", root / "a" / "escaped_dir");
  fs::create_symlink(d.path() / "outside_file.jpg", root / "a" / "escaped.jpg");
  fs::create_symlink("../../outside_file.jpg", root / "a" / "relative_escape.jpg");
  fs::create_symlink(root / "nothing_here", root / "a" / "dangling.jpg");
  // A link that stays inside the root is followed.
  fs::create_symlink(root / "a" / "1.jpg", root / "a" / "2.jpg");
  FolderIndex idx = scan_folder(root);
  EXPECT_EQ(idx.classes, (std::vector<std::string>{"a"}));
  EXPECT_EQ(names(idx), (std::vector<std::string>{"0:a/1.jpg", "0:a/2.jpg"}));
  for (const char* n : {"escaped_class", "escaped_dir", "escaped.jpg", "relative_escape.jpg"})
    EXPECT_TRUE(any_problem_mentions(idx, std::string(n) + ": symlink to")) << n << " "
                                                                            << ::testing::PrintToString(idx.problems);
  EXPECT_TRUE(any_problem_mentions(idx, "leaves the root"));
  EXPECT_TRUE(any_problem_mentions(idx, "dangling.jpg: broken symlink"));
  for (const Sample& s : idx.samples) EXPECT_EQ(s.path.string().find("outside"), std::string::npos);
}

TEST(ImageFolder, RootGivenThroughASymlinkWorks) {
  TempDir d;
  write_text(d.path() / "real" / "a" / "1.jpg", "x");
  fs::create_directory_symlink(d.path() / "real", d.path() / "link");
  FolderIndex idx = scan_folder(d.path() / "link");
  EXPECT_EQ(idx.samples.size(), 1u);
  EXPECT_TRUE(idx.problems.empty()) << ::testing::PrintToString(idx.problems);
}

TEST(ImageFolder, SpacesAndNonAsciiNames) {
  TempDir d;
  const std::string cls = "n01 caf\xc3\xa9 \xe7\x8c\xab";  // "n01 café 猫"
  const std::string file = "photo of a \xc3\xa9l\xc3\xa9phant \xf0\x9f\x90\x98.JPEG";
  write_text(d.path() / cls / file, "x");
  write_text(d.path() / "n00" / "plain.jpg", "x");
  FolderIndex idx = scan_folder(d.path());
  ASSERT_EQ(idx.classes.size(), 2u);
  EXPECT_EQ(idx.classes[1], cls);
  ASSERT_EQ(idx.samples.size(), 2u);
  EXPECT_EQ(idx.samples[1].path.filename().string(), file);
  EXPECT_EQ(idx.samples[1].label, 1);
  EXPECT_TRUE(fs::exists(idx.samples[1].path));
}

TEST(ImageFolder, SniffFormatByBytes) {
  const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10};
  const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0};
  const uint8_t text[] = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  EXPECT_EQ(sniff_format(jpeg, sizeof(jpeg)), ImageFormat::jpeg);
  EXPECT_EQ(sniff_format(png, sizeof(png)), ImageFormat::png);
  EXPECT_EQ(sniff_format(png, 7), ImageFormat::unknown);   // too short for the signature
  EXPECT_EQ(sniff_format(jpeg, 2), ImageFormat::unknown);
  EXPECT_EQ(sniff_format(text, sizeof(text)), ImageFormat::unknown);
  EXPECT_EQ(sniff_format(nullptr, 0), ImageFormat::unknown);
  EXPECT_STREQ(format_name(ImageFormat::jpeg), "jpeg");
  EXPECT_STREQ(format_name(ImageFormat::png), "png");
  EXPECT_STREQ(format_name(ImageFormat::unknown), "unknown");
}

}  // namespace
}  // namespace lockstep::data
