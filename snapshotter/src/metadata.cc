#include "ocix/snapshotter/metadata.h"

#include <sqlite3.h>

#include <string_view>

namespace ocix::snapshotter {
namespace {

using core::Result;
using core::Status;

// The schema. snapshots.id is AUTOINCREMENT so an id (a directory name) is
// never reused after a Remove. parent_id has no ON DELETE: removing a parent
// with children is refused before SQL sees it.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  parent_id INTEGER REFERENCES snapshots(id),
  kind INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  usage_size INTEGER NOT NULL DEFAULT 0,
  usage_inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS labels (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (snapshot_id, key)
);
CREATE TABLE IF NOT EXISTS remote (
  snapshot_id INTEGER PRIMARY KEY REFERENCES snapshots(id) ON DELETE CASCADE,
  image_ref TEXT NOT NULL,
  layer_digest TEXT NOT NULL,
  layer_size INTEGER NOT NULL,
  toc_digest TEXT NOT NULL,
  toc_offset INTEGER NOT NULL,
  toc_size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_annotations (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (snapshot_id, key)
);
)sql";

// One prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status status() const { return rc_ == SQLITE_OK ? Status() : Error("prepare"); }
  Stmt& Bind(int i, int64_t v) {
    Track(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Stmt& Bind(int i, std::string_view v) {
    Track(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& BindNull(int i) {
    Track(sqlite3_bind_null(stmt_, i));
    return *this;
  }
  // True when a row is available, false when done.
  Result<bool> Step() {
    if (rc_ != SQLITE_OK) return Error("bind");
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    rc_ = rc;
    return Error("step");
  }
  Status Run() {
    Result<bool> r = Step();
    return r.ok() ? Status() : r.status();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p == nullptr ? std::string() : std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }

 private:
  void Track(int rc) {
    if (rc_ == SQLITE_OK && rc != SQLITE_OK) rc_ = rc;
  }
  Status Error(std::string_view what) const {
    return core::IoError("metadata " + std::string(what) + ": " + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    ok_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Transaction() {
    if (ok_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Status Begun() const { return ok_ ? Status() : core::IoError(std::string("metadata begin: ") + sqlite3_errmsg(db_)); }
  Status Commit() {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
      return core::IoError(std::string("metadata commit: ") + sqlite3_errmsg(db_));
    done_ = true;
    return {};
  }

 private:
  sqlite3* db_;
  bool ok_ = false, done_ = false;
};

Status SnapshotNotFound(const std::string& key) { return core::NotFound("snapshot " + key + " does not exist"); }

}  // namespace

std::string_view KindName(Kind k) {
  switch (k) {
    case Kind::kView: return "view";
    case Kind::kActive: return "active";
    case Kind::kCommitted: return "committed";
    case Kind::kUnknown: break;
  }
  return "unknown";
}

Status ValidateLabels(const Labels& labels) {
  constexpr size_t kMaxLabel = 4096;
  for (const auto& [k, v] : labels) {
    if (k.size() + v.size() > kMaxLabel)
      return core::InvalidArgument("label key and value greater than maximum size (4096 bytes), key: " +
                                   k.substr(0, 10));
  }
  return {};
}

void Metadata::DbCloser::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

Metadata::~Metadata() = default;

Result<std::unique_ptr<Metadata>> Metadata::Open(const std::string& path) {
  std::unique_ptr<Metadata> m(new Metadata());
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  m->db_.reset(db);
  if (rc != SQLITE_OK)
    return core::IoError("open metadata " + path + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
  sqlite3_busy_timeout(db, 5000);
  std::lock_guard lock(m->mu_);
  OCIX_RETURN_IF_ERROR(m->ExecLocked("PRAGMA journal_mode=WAL"));
  OCIX_RETURN_IF_ERROR(m->ExecLocked("PRAGMA synchronous=FULL"));
  OCIX_RETURN_IF_ERROR(m->ExecLocked("PRAGMA foreign_keys=ON"));
  OCIX_RETURN_IF_ERROR(m->ExecLocked(kSchema));
  return m;
}

Status Metadata::ExecLocked(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errmsg(db_.get());
    sqlite3_free(err);
    return core::IoError("metadata: " + msg);
  }
  return {};
}

Result<Snapshot> Metadata::LoadSnapshotLocked(const std::string& key) const {
  Stmt q(db_.get(),
         "SELECT s.id, s.kind, s.parent_id, EXISTS(SELECT 1 FROM remote r WHERE r.snapshot_id = s.id) "
         "FROM snapshots s WHERE s.key = ?");
  OCIX_RETURN_IF_ERROR(q.status());
  q.Bind(1, key);
  OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return SnapshotNotFound(key);
  Snapshot s;
  s.id = q.Int(0);
  s.kind = static_cast<Kind>(q.Int(1));
  s.remote = q.Int(3) != 0;
  std::optional<int64_t> parent;
  if (!q.IsNull(2)) parent = q.Int(2);
  while (parent) {
    s.parent_ids.push_back(*parent);
    Stmt step(db_.get(), "SELECT parent_id FROM snapshots WHERE id = ?");
    step.Bind(1, *parent);
    OCIX_ASSIGN_OR_RETURN(bool found, step.Step());
    if (!found) return core::Internal("metadata: parent id " + std::to_string(*parent) + " is missing");
    parent = step.IsNull(0) ? std::nullopt : std::optional<int64_t>(step.Int(0));
  }
  return s;
}

Result<Labels> Metadata::LoadLabelsLocked(int64_t id) const {
  Stmt q(db_.get(), "SELECT key, value FROM labels WHERE snapshot_id = ?");
  OCIX_RETURN_IF_ERROR(q.status());
  q.Bind(1, id);
  Labels labels;
  while (true) {
    OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    labels.emplace(q.Text(0), q.Text(1));
  }
  return labels;
}

Status Metadata::WriteLabelsLocked(int64_t id, const Labels& labels) {
  Stmt del(db_.get(), "DELETE FROM labels WHERE snapshot_id = ?");
  OCIX_RETURN_IF_ERROR(del.status());
  del.Bind(1, id);
  OCIX_RETURN_IF_ERROR(del.Run());
  for (const auto& [k, v] : labels) {
    Stmt ins(db_.get(), "INSERT INTO labels (snapshot_id, key, value) VALUES (?, ?, ?)");
    ins.Bind(1, id).Bind(2, k).Bind(3, v);
    OCIX_RETURN_IF_ERROR(ins.Run());
  }
  return {};
}

Result<Snapshot> Metadata::Create(Kind kind, const std::string& key, const std::string& parent, const Labels& labels,
                                  int64_t now_ns, const std::optional<RemoteLayer>& remote,
                                  const std::function<Status(const Snapshot&)>& prepare) {
  if (remote ? kind != Kind::kCommitted : (kind != Kind::kActive && kind != Kind::kView))
    return core::InvalidArgument("snapshot type " + std::string(KindName(kind)) + " invalid; only view or active");
  if (key.empty()) return core::InvalidArgument("snapshot key must not be empty");
  OCIX_RETURN_IF_ERROR(ValidateLabels(labels));
  std::lock_guard lock(mu_);
  Transaction tx(db_.get());
  OCIX_RETURN_IF_ERROR(tx.Begun());
  Snapshot s;
  s.kind = kind;
  s.remote = remote.has_value();
  std::optional<int64_t> parent_id;
  if (!parent.empty()) {
    auto p = LoadSnapshotLocked(parent);
    if (!p.ok()) {
      if (p.status().code() == core::Code::kNotFound) return core::NotFound("parent " + parent + " does not exist");
      return p.status();
    }
    if (p->kind != Kind::kCommitted) return core::FailedPrecondition("parent " + parent + " is not committed snapshot");
    parent_id = p->id;
    s.parent_ids.push_back(p->id);
    s.parent_ids.insert(s.parent_ids.end(), p->parent_ids.begin(), p->parent_ids.end());
  }
  {
    Stmt exists(db_.get(), "SELECT 1 FROM snapshots WHERE key = ?");
    exists.Bind(1, key);
    OCIX_ASSIGN_OR_RETURN(bool row, exists.Step());
    if (row) return core::AlreadyExists("snapshot " + key + " already exists");
  }
  Stmt ins(db_.get(), "INSERT INTO snapshots (key, parent_id, kind, created_ns, updated_ns) VALUES (?, ?, ?, ?, ?)");
  ins.Bind(1, key);
  if (parent_id) {
    ins.Bind(2, *parent_id);
  } else {
    ins.BindNull(2);
  }
  ins.Bind(3, static_cast<int64_t>(kind)).Bind(4, now_ns).Bind(5, now_ns);
  OCIX_RETURN_IF_ERROR(ins.Run());
  s.id = sqlite3_last_insert_rowid(db_.get());
  OCIX_RETURN_IF_ERROR(WriteLabelsLocked(s.id, labels));
  if (remote) {
    Stmt r(db_.get(),
           "INSERT INTO remote (snapshot_id, image_ref, layer_digest, layer_size, toc_digest, toc_offset, toc_size) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)");
    r.Bind(1, s.id).Bind(2, remote->image_ref).Bind(3, remote->layer_digest).Bind(4, remote->layer_size);
    r.Bind(5, remote->toc_digest).Bind(6, static_cast<int64_t>(remote->toc_offset));
    r.Bind(7, static_cast<int64_t>(remote->toc_size));
    OCIX_RETURN_IF_ERROR(r.Run());
    for (const auto& [k, v] : remote->annotations) {
      Stmt a(db_.get(), "INSERT INTO remote_annotations (snapshot_id, key, value) VALUES (?, ?, ?)");
      a.Bind(1, s.id).Bind(2, k).Bind(3, v);
      OCIX_RETURN_IF_ERROR(a.Run());
    }
  }
  if (prepare) OCIX_RETURN_IF_ERROR(prepare(s));
  OCIX_RETURN_IF_ERROR(tx.Commit());
  return s;
}

Result<Snapshot> Metadata::GetActive(const std::string& key) const {
  std::lock_guard lock(mu_);
  OCIX_ASSIGN_OR_RETURN(Snapshot s, LoadSnapshotLocked(key));
  if (s.kind != Kind::kActive && s.kind != Kind::kView)
    return core::FailedPrecondition("requested snapshot " + key + " not active or view");
  return s;
}

Result<Snapshot> Metadata::Get(const std::string& key) const {
  std::lock_guard lock(mu_);
  return LoadSnapshotLocked(key);
}

Result<Info> Metadata::GetInfo(const std::string& key) const {
  std::lock_guard lock(mu_);
  Stmt q(db_.get(),
         "SELECT s.id, s.kind, s.created_ns, s.updated_ns, p.key FROM snapshots s "
         "LEFT JOIN snapshots p ON p.id = s.parent_id WHERE s.key = ?");
  OCIX_RETURN_IF_ERROR(q.status());
  q.Bind(1, key);
  OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return SnapshotNotFound(key);
  Info info;
  info.name = key;
  info.kind = static_cast<Kind>(q.Int(1));
  info.created_ns = q.Int(2);
  info.updated_ns = q.Int(3);
  info.parent = q.Text(4);
  OCIX_ASSIGN_OR_RETURN(info.labels, LoadLabelsLocked(q.Int(0)));
  return info;
}

Result<Info> Metadata::UpdateInfo(const Info& info, const std::vector<std::string>& fieldpaths, int64_t now_ns) {
  {
    std::lock_guard lock(mu_);
    Transaction tx(db_.get());
    OCIX_RETURN_IF_ERROR(tx.Begun());
    OCIX_ASSIGN_OR_RETURN(Snapshot s, LoadSnapshotLocked(info.name));
    OCIX_ASSIGN_OR_RETURN(Labels labels, LoadLabelsLocked(s.id));
    if (fieldpaths.empty()) {
      labels = info.labels;
    } else {
      for (const std::string& path : fieldpaths) {
        if (path.starts_with("labels.")) {
          std::string k = path.substr(7);
          auto it = info.labels.find(k);
          if (it == info.labels.end() || it->second.empty()) {
            labels.erase(k);
          } else {
            labels[k] = it->second;
          }
        } else if (path == "labels") {
          labels = info.labels;
        } else {
          return core::InvalidArgument("cannot update " + path + " field on snapshot " + info.name);
        }
      }
    }
    OCIX_RETURN_IF_ERROR(ValidateLabels(labels));
    OCIX_RETURN_IF_ERROR(WriteLabelsLocked(s.id, labels));
    Stmt u(db_.get(), "UPDATE snapshots SET updated_ns = ? WHERE id = ?");
    u.Bind(1, now_ns).Bind(2, s.id);
    OCIX_RETURN_IF_ERROR(u.Run());
    OCIX_RETURN_IF_ERROR(tx.Commit());
  }
  return GetInfo(info.name);
}

Result<Snapshot> Metadata::Commit(const std::string& key, const std::string& name, const Labels& labels,
                                  const Usage& usage, int64_t now_ns) {
  if (name.empty()) return core::InvalidArgument("snapshot name must not be empty");
  OCIX_RETURN_IF_ERROR(ValidateLabels(labels));
  std::lock_guard lock(mu_);
  Transaction tx(db_.get());
  OCIX_RETURN_IF_ERROR(tx.Begun());
  {
    Stmt exists(db_.get(), "SELECT 1 FROM snapshots WHERE key = ?");
    exists.Bind(1, name);
    OCIX_ASSIGN_OR_RETURN(bool row, exists.Step());
    if (row) return core::AlreadyExists("snapshot " + name + " already exists");
  }
  OCIX_ASSIGN_OR_RETURN(Snapshot s, LoadSnapshotLocked(key));
  if (s.kind != Kind::kActive) return core::FailedPrecondition("snapshot " + key + " is not active");
  Stmt u(db_.get(),
         "UPDATE snapshots SET key = ?, kind = ?, created_ns = ?, updated_ns = ?, usage_size = ?, usage_inodes = ? "
         "WHERE id = ?");
  u.Bind(1, name).Bind(2, static_cast<int64_t>(Kind::kCommitted)).Bind(3, now_ns).Bind(4, now_ns);
  u.Bind(5, usage.size).Bind(6, usage.inodes).Bind(7, s.id);
  OCIX_RETURN_IF_ERROR(u.Run());
  OCIX_RETURN_IF_ERROR(WriteLabelsLocked(s.id, labels));
  OCIX_RETURN_IF_ERROR(tx.Commit());
  s.kind = Kind::kCommitted;
  return s;
}

Result<Snapshot> Metadata::Remove(const std::string& key, const std::function<Status(const Snapshot&)>& remove) {
  std::lock_guard lock(mu_);
  Transaction tx(db_.get());
  OCIX_RETURN_IF_ERROR(tx.Begun());
  OCIX_ASSIGN_OR_RETURN(Snapshot s, LoadSnapshotLocked(key));
  {
    Stmt c(db_.get(), "SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1");
    c.Bind(1, s.id);
    OCIX_ASSIGN_OR_RETURN(bool row, c.Step());
    if (row) return core::FailedPrecondition("cannot remove snapshot " + key + " with child");
  }
  Stmt d(db_.get(), "DELETE FROM snapshots WHERE id = ?");
  d.Bind(1, s.id);
  OCIX_RETURN_IF_ERROR(d.Run());
  if (remove) OCIX_RETURN_IF_ERROR(remove(s));
  OCIX_RETURN_IF_ERROR(tx.Commit());
  return s;
}

Result<Usage> Metadata::GetUsage(const std::string& key) const {
  std::lock_guard lock(mu_);
  Stmt q(db_.get(), "SELECT usage_size, usage_inodes FROM snapshots WHERE key = ?");
  OCIX_RETURN_IF_ERROR(q.status());
  q.Bind(1, key);
  OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return SnapshotNotFound(key);
  return Usage{q.Int(0), q.Int(1)};
}

Status Metadata::Walk(const std::function<void(const Info&)>& fn) const {
  std::vector<Info> infos;
  {
    std::lock_guard lock(mu_);
    std::map<int64_t, size_t> index;
    Stmt q(db_.get(),
           "SELECT s.id, s.key, s.kind, s.created_ns, s.updated_ns, p.key FROM snapshots s "
           "LEFT JOIN snapshots p ON p.id = s.parent_id ORDER BY s.id");
    OCIX_RETURN_IF_ERROR(q.status());
    while (true) {
      OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      Info info;
      info.name = q.Text(1);
      info.kind = static_cast<Kind>(q.Int(2));
      info.created_ns = q.Int(3);
      info.updated_ns = q.Int(4);
      info.parent = q.Text(5);
      index[q.Int(0)] = infos.size();
      infos.push_back(std::move(info));
    }
    Stmt l(db_.get(), "SELECT snapshot_id, key, value FROM labels");
    OCIX_RETURN_IF_ERROR(l.status());
    while (true) {
      OCIX_ASSIGN_OR_RETURN(bool row, l.Step());
      if (!row) break;
      if (auto it = index.find(l.Int(0)); it != index.end()) infos[it->second].labels.emplace(l.Text(1), l.Text(2));
    }
  }
  for (const Info& info : infos) fn(info);
  return {};
}

Result<std::vector<std::string>> Metadata::RemoteKeys() const {
  std::lock_guard lock(mu_);
  Stmt q(db_.get(), "SELECT s.key FROM snapshots s JOIN remote r ON r.snapshot_id = s.id ORDER BY s.id");
  OCIX_RETURN_IF_ERROR(q.status());
  std::vector<std::string> keys;
  while (true) {
    OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    keys.push_back(q.Text(0));
  }
  return keys;
}

Result<std::set<std::string>> Metadata::TocDigests() const {
  std::lock_guard lock(mu_);
  Stmt q(db_.get(), "SELECT DISTINCT toc_digest FROM remote");
  OCIX_RETURN_IF_ERROR(q.status());
  std::set<std::string> out;
  while (true) {
    OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.insert(q.Text(0));
  }
  return out;
}

Result<std::optional<RemoteLayer>> Metadata::GetRemote(int64_t id) const {
  std::lock_guard lock(mu_);
  Stmt q(db_.get(),
         "SELECT image_ref, layer_digest, layer_size, toc_digest, toc_offset, toc_size FROM remote "
         "WHERE snapshot_id = ?");
  OCIX_RETURN_IF_ERROR(q.status());
  q.Bind(1, id);
  OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return std::optional<RemoteLayer>();
  RemoteLayer r;
  r.image_ref = q.Text(0);
  r.layer_digest = q.Text(1);
  r.layer_size = q.Int(2);
  r.toc_digest = q.Text(3);
  r.toc_offset = static_cast<uint64_t>(q.Int(4));
  r.toc_size = static_cast<uint64_t>(q.Int(5));
  Stmt a(db_.get(), "SELECT key, value FROM remote_annotations WHERE snapshot_id = ?");
  a.Bind(1, id);
  while (true) {
    OCIX_ASSIGN_OR_RETURN(bool more, a.Step());
    if (!more) break;
    r.annotations.emplace(a.Text(0), a.Text(1));
  }
  return std::optional<RemoteLayer>(std::move(r));
}

Result<std::vector<int64_t>> Metadata::Ids() const {
  std::lock_guard lock(mu_);
  Stmt q(db_.get(), "SELECT id FROM snapshots ORDER BY id");
  OCIX_RETURN_IF_ERROR(q.status());
  std::vector<int64_t> ids;
  while (true) {
    OCIX_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    ids.push_back(q.Int(0));
  }
  return ids;
}

}  // namespace ocix::snapshotter
