#include "ocix/core/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace ocix::core {
namespace {

namespace fs = std::filesystem;

TEST(WriteFileAtomic, ReplacesWholeAndLeavesNoTempFile) {
  char tmpl[] = "/tmp/ocix-atomic-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/f";
  ASSERT_TRUE(WriteFileAtomic(path, "first version, longer").ok());
  AtomicWriteOptions o;
  o.mode = 0600;
  o.sync = true;
  o.sync_dir = true;
  ASSERT_TRUE(WriteFileAtomic(path, "second", o).ok());
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "second");
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u);

  // A path whose directory is missing fails cleanly, naming the temp file.
  Status s = WriteFileAtomic(dir + "/missing/f", "x");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing/f.tmp."), std::string::npos) << s.message();
  fs::remove_all(dir);
}

TEST(WriteFileAtomic, NewFileTakesTheMode) {
  char tmpl[] = "/tmp/ocix-atomic-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/secret";
  AtomicWriteOptions o;
  o.mode = 0600;
  ASSERT_TRUE(WriteFileAtomic(path, "k", o).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace ocix::core
