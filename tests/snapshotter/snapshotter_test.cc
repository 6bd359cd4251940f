// Snapshotter over the real file system (no mounts are made here: the
// returned mount specs are checked; conformance and integration tests mount
// them): containerd's overlayfs mount shapes, directories, one daemon per
// root, Cleanup, and the remote handshake falling back when it cannot serve.
#include "ocix/snapshotter/snapshotter.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace ocix::snapshotter {
namespace {

namespace fs = std::filesystem;

class SnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ocix-sn-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open();
  }
  void TearDown() override {
    sn_.reset();
    fs::remove_all(dir_);
  }
  void Open() {
    sn_.reset();
    Snapshotter::Options o;
    o.root = dir_ + "/root";
    o.config.prefetch = config::PrefetchMode::kNone;
    o.config.fetch_attempts = 1;
    o.config.connect_timeout = std::chrono::milliseconds(200);
    auto s = Snapshotter::Open(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    sn_ = std::move(*s);
  }
  std::string Fs(const std::string& id) const { return dir_ + "/root/snapshots/" + id + "/fs"; }
  std::string dir_;
  std::unique_ptr<Snapshotter> sn_;
};

TEST_F(SnapshotterTest, MountShapesMatchContainerdOverlayfs) {
  auto base = sn_->Prepare("base", "", {});
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  ASSERT_EQ(base->size(), 1u);
  EXPECT_EQ((*base)[0], (MountSpec{"bind", Fs("1"), {"rw", "rbind"}}));
  EXPECT_TRUE(fs::is_directory(Fs("1")));
  EXPECT_TRUE(fs::is_directory(dir_ + "/root/snapshots/1/work"));
  ASSERT_TRUE(sn_->Commit("L1", "base", {}).ok());
  EXPECT_FALSE(fs::exists(dir_ + "/root/snapshots/1/work"));

  auto view = sn_->View("v1", "L1", {});
  ASSERT_TRUE(view.ok());
  EXPECT_EQ((*view)[0], (MountSpec{"bind", Fs("1"), {"ro", "rbind"}}));

  auto top = sn_->Prepare("top", "L1", {});
  ASSERT_TRUE(top.ok());
  ASSERT_EQ((*top)[0].type, "overlay");
  const auto& o = (*top)[0].options;
  ASSERT_GE(o.size(), 3u);
  EXPECT_EQ(o[0], "workdir=" + dir_ + "/root/snapshots/3/work");
  EXPECT_EQ(o[1], "upperdir=" + Fs("3"));
  EXPECT_EQ(o[2], "lowerdir=" + Fs("1"));
  auto again = sn_->Mounts("top");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *top);
  EXPECT_EQ(sn_->Mounts("L1").status().code(), core::Code::kFailedPrecondition);

  ASSERT_TRUE(sn_->Commit("L2", "top", {}).ok());
  auto view2 = sn_->View("v2", "L2", {});
  ASSERT_TRUE(view2.ok());
  EXPECT_EQ((*view2)[0].type, "overlay");
  EXPECT_EQ((*view2)[0].options[0], "lowerdir=" + Fs("3") + ":" + Fs("1"));
}

TEST_F(SnapshotterTest, RemoveDeletesTheDirectoryAndRefusesParents) {
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  ASSERT_TRUE(sn_->Commit("A", "a", {}).ok());
  ASSERT_TRUE(sn_->Prepare("b", "A", {}).ok());
  EXPECT_EQ(sn_->Remove("A").code(), core::Code::kFailedPrecondition);
  ASSERT_TRUE(sn_->Remove("b").ok());
  EXPECT_FALSE(fs::exists(dir_ + "/root/snapshots/2"));
  ASSERT_TRUE(sn_->Remove("A").ok());
  EXPECT_TRUE(fs::is_empty(dir_ + "/root/snapshots"));
}

TEST_F(SnapshotterTest, CleanupRemovesOnlyUnownedDirectories) {
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  fs::create_directories(dir_ + "/root/snapshots/99/fs");
  fs::create_directories(dir_ + "/root/snapshots/rm-7/fs");
  ASSERT_TRUE(sn_->Cleanup().ok());
  EXPECT_TRUE(fs::exists(Fs("1")));
  EXPECT_FALSE(fs::exists(dir_ + "/root/snapshots/99"));
  EXPECT_FALSE(fs::exists(dir_ + "/root/snapshots/rm-7"));
}

TEST_F(SnapshotterTest, OneDaemonPerRootAndStateSurvivesReopen) {
  Snapshotter::Options o;
  o.root = dir_ + "/root";
  EXPECT_EQ(Snapshotter::Open(o).status().code(), core::Code::kFailedPrecondition);
  ASSERT_TRUE(sn_->Prepare("k with spaces/and:colons", "", {{"l", "v"}}).ok());
  Open();
  auto info = sn_->Stat("k with spaces/and:colons");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kActive);
  EXPECT_EQ(info->labels.at("l"), "v");
}

TEST_F(SnapshotterTest, RemoteHandshakeFallsBackWhenTheLayerCannotBeServed) {
  // The labels name a registry that does not answer: Prepare must still
  // succeed, as an ordinary snapshot containerd then fills itself.
  Labels labels = {
      {std::string(kLabelTargetRef), "sha256:target"},
      {std::string(kLabelCriImageRef), "127.0.0.1:1/nothing:here"},
      {std::string(kLabelCriLayerDigest), "sha256:" + std::string(64, 'a')},
  };
  auto r = sn_->Prepare("extract-1 sha256:target", "", labels);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0].type, "bind");
  EXPECT_EQ(sn_->Stat("sha256:target").status().code(), core::Code::kNotFound);
  // Once committed, a second Prepare for the same target on the same parent
  // is answered AlreadyExists (containerd then uses the target).
  ASSERT_TRUE(sn_->Commit("sha256:target", "extract-1 sha256:target", labels).ok());
  EXPECT_EQ(sn_->Prepare("extract-2 sha256:target", "", labels).status().code(), core::Code::kAlreadyExists);
  // ...but not on another parent.
  ASSERT_TRUE(sn_->Prepare("p", "", {}).ok());
  ASSERT_TRUE(sn_->Commit("P", "p", {}).ok());
  EXPECT_TRUE(sn_->Prepare("extract-3 sha256:target", "P", labels).ok());
}

TEST(LocateLayer, ReadsCriAndStargzLabels) {
  const std::string digest = "sha256:" + std::string(64, 'b');
  auto cri = LocateLayer({{std::string(kLabelCriImageRef), "reg.example:5000/app:1"},
                          {std::string(kLabelCriLayerDigest), digest},
                          {"containerd.io/snapshot/ocix/toc.size", "10"}});
  ASSERT_TRUE(cri.ok() && cri->has_value());
  EXPECT_EQ((*cri)->ref.host, "reg.example:5000");
  EXPECT_EQ((*cri)->layer.digest, digest);
  EXPECT_EQ((*cri)->layer.annotations.size(), 1u);
  auto sgz = LocateLayer({{std::string(kLabelStargzRef), "reg.example/app:1"},
                          {std::string(kLabelStargzDigest), digest},
                          {std::string(kLabelStargzSize), "1234"}});
  ASSERT_TRUE(sgz.ok() && sgz->has_value());
  EXPECT_EQ((*sgz)->layer.size, 1234);
  auto none = LocateLayer({{std::string(kLabelTargetRef), "x"}});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(LocateLayer({{std::string(kLabelCriImageRef), "reg/app:1"}, {std::string(kLabelCriLayerDigest), "md5:x"}})
                .status()
                .code(),
            core::Code::kInvalidArgument);
}

}  // namespace
}  // namespace ocix::snapshotter
