// Metadata: containerd's storage semantics (errors, kinds, parents, labels,
// commit keeping the id) and durability across reopen.
#include "ocix/snapshotter/metadata.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace ocix::snapshotter {
namespace {

class MetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ocix-meta-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    m_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    m_.reset();
    auto m = Metadata::Open(dir_ + "/metadata.db");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    m_ = std::move(*m);
  }
  std::string dir_;
  std::unique_ptr<Metadata> m_;
};

TEST_F(MetadataTest, CreateCommitAndStatKeepTheIdAndNanoseconds) {
  auto a = m_->Create(Kind::kActive, "extract-1 sha256:aa", "", {{"k", "v"}}, 1'700'000'000'123'456'789);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(a->parent_ids.empty());
  auto c = m_->Commit("extract-1 sha256:aa", "sha256:aa", {{"x", "y"}}, Usage{4096, 3}, 1'700'000'001'000'000'001);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->id, a->id);
  EXPECT_EQ(m_->GetInfo("extract-1 sha256:aa").status().code(), core::Code::kNotFound);
  Reopen();
  auto info = m_->GetInfo("sha256:aa");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(info->created_ns, 1'700'000'001'000'000'001);
  EXPECT_EQ(info->labels, (Labels{{"x", "y"}}));
  auto u = m_->GetUsage("sha256:aa");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->size, 4096);
  EXPECT_EQ(u->inodes, 3);
}

TEST_F(MetadataTest, ErrorsMatchContainerd) {
  ASSERT_TRUE(m_->Create(Kind::kActive, "a", "", {}, 1).ok());
  EXPECT_EQ(m_->Create(Kind::kActive, "a", "", {}, 1).status().code(), core::Code::kAlreadyExists);
  EXPECT_EQ(m_->Create(Kind::kActive, "b", "missing", {}, 1).status().code(), core::Code::kNotFound);
  EXPECT_EQ(m_->Create(Kind::kActive, "b", "a", {}, 1).status().code(), core::Code::kFailedPrecondition);
  EXPECT_EQ(m_->Create(Kind::kCommitted, "c", "", {}, 1).status().code(), core::Code::kInvalidArgument);
  ASSERT_TRUE(m_->Commit("a", "A", {}, {}, 2).ok());
  EXPECT_EQ(m_->Commit("A", "A2", {}, {}, 2).status().code(), core::Code::kFailedPrecondition);
  ASSERT_TRUE(m_->Create(Kind::kView, "v", "A", {}, 3).ok());
  EXPECT_EQ(m_->Commit("v", "V", {}, {}, 3).status().code(), core::Code::kFailedPrecondition);
  EXPECT_EQ(m_->GetActive("A").status().code(), core::Code::kFailedPrecondition);
  EXPECT_EQ(m_->Remove("A").status().code(), core::Code::kFailedPrecondition);  // has a child
  ASSERT_TRUE(m_->Remove("v").ok());
  ASSERT_TRUE(m_->Remove("A").ok());
  EXPECT_EQ(m_->Remove("A").status().code(), core::Code::kNotFound);
  std::string big(5000, 'x');
  EXPECT_EQ(m_->Create(Kind::kActive, "big", "", {{"k", big}}, 1).status().code(), core::Code::kInvalidArgument);
}

TEST_F(MetadataTest, ParentChainNearestFirst) {
  ASSERT_TRUE(m_->Create(Kind::kActive, "1", "", {}, 1).ok());
  ASSERT_TRUE(m_->Commit("1", "L1", {}, {}, 1).ok());
  ASSERT_TRUE(m_->Create(Kind::kActive, "2", "L1", {}, 1).ok());
  ASSERT_TRUE(m_->Commit("2", "L2", {}, {}, 1).ok());
  auto top = m_->Create(Kind::kActive, "top", "L2", {}, 1);
  ASSERT_TRUE(top.ok());
  auto l1 = m_->Get("L1"), l2 = m_->Get("L2");
  ASSERT_EQ(top->parent_ids, (std::vector<int64_t>{l2->id, l1->id}));
  EXPECT_EQ(m_->GetInfo("top")->parent, "L2");
}

TEST_F(MetadataTest, UpdateFieldPaths) {
  ASSERT_TRUE(m_->Create(Kind::kActive, "a", "", {{"keep", "1"}, {"drop", "2"}}, 10).ok());
  Info in;
  in.name = "a";
  in.labels = {{"new", "3"}, {"drop", ""}};
  auto r = m_->UpdateInfo(in, {"labels.new", "labels.drop"}, 20);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->labels, (Labels{{"keep", "1"}, {"new", "3"}}));
  EXPECT_EQ(r->created_ns, 10);
  EXPECT_EQ(r->updated_ns, 20);
  in.labels = {{"only", "x"}};
  EXPECT_EQ(m_->UpdateInfo(in, {}, 30)->labels, (Labels{{"only", "x"}}));
  EXPECT_EQ(m_->UpdateInfo(in, {"labels"}, 30)->labels, (Labels{{"only", "x"}}));
  EXPECT_EQ(m_->UpdateInfo(in, {"parent"}, 30).status().code(), core::Code::kInvalidArgument);
  in.name = "nope";
  EXPECT_EQ(m_->UpdateInfo(in, {}, 30).status().code(), core::Code::kNotFound);
}

TEST_F(MetadataTest, RemoteLayersAreCommittedAndSurviveReopen) {
  RemoteLayer r;
  r.image_ref = "127.0.0.1:5000/img:1";
  r.layer_digest = "sha256:" + std::string(64, 'a');
  r.toc_digest = "sha256:" + std::string(64, 'b');
  r.toc_offset = 100;
  r.toc_size = 20;
  r.annotations = {{"containerd.io/snapshot/ocix/toc.size", "20"}};
  bool called = false;
  auto s = m_->Create(Kind::kCommitted, "sha256:chain", "", {{"containerd.io/snapshot.ref", "sha256:chain"}}, 5, r,
                      [&](const Snapshot& snap) {
                        called = true;
                        EXPECT_TRUE(snap.remote);
                        return core::Status();
                      });
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(called);
  Reopen();
  auto got = m_->GetRemote(s->id);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->image_ref, r.image_ref);
  EXPECT_EQ((*got)->toc_offset, 100u);
  EXPECT_EQ((*got)->annotations, r.annotations);
  EXPECT_TRUE(m_->Get("sha256:chain")->remote);
}

TEST_F(MetadataTest, FailedPrepareCallbackRecordsNothing) {
  auto s = m_->Create(Kind::kActive, "a", "", {}, 1, std::nullopt,
                      [](const Snapshot&) { return core::IoError("disk full"); });
  EXPECT_EQ(s.status().code(), core::Code::kIoError);
  EXPECT_EQ(m_->Get("a").status().code(), core::Code::kNotFound);
  ASSERT_TRUE(m_->Create(Kind::kActive, "a", "", {}, 1).ok());
}

TEST_F(MetadataTest, IdsAreNeverReused) {
  auto a = m_->Create(Kind::kActive, "a", "", {}, 1);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(m_->Remove("a").ok());
  auto b = m_->Create(Kind::kActive, "a", "", {}, 1);
  ASSERT_TRUE(b.ok());
  EXPECT_GT(b->id, a->id);
}

}  // namespace
}  // namespace ocix::snapshotter
