// `cairnctl snapshot restore|status`: the offline half of etcd's snapshot
// commands, for the files `etcdctl snapshot save` takes from cairn.
//
// Both verify the whole file (storage::RestoreSnapshot checks the SHA-256
// trailer before writing anything) and then read the restored database, so
// what they report is what a member started on it would serve. `status`
// restores into a temporary directory that it removes again.
#include <stdlib.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "api/server_config.h"
#include "commands.h"
#include "mvcc/kv_store.h"
#include "printer.h"
#include "server/etcd_snapshot.h"
#include "server/restore.h"
#include "storage/engine.h"
#include "storage/snapshot_stream.h"

namespace cairn::ctl {
namespace {

namespace fs = std::filesystem;

// The database file name a cairn data dir holds (server/node.cc).
constexpr char kDbName[] = "cairn.db";

struct SnapshotInfo {
  uint32_t hash = 0;             // HashKV at `revision`, as `etcdctl endpoint hashkv`
  int64_t revision = 0;          // the current revision
  int64_t compact_revision = 0;  // the compacted revision (-1: never compacted)
  int64_t total_keys = 0;        // live keys at `revision`
  int64_t total_size_bytes = 0;  // size of the snapshot file
};

// Opens a restored database read-mostly (KvStore::Open may finish a
// compaction that was interrupted when the snapshot was taken).
Result<SnapshotInfo> Inspect(const std::string& db_path) {
  storage::EngineOptions eo;
  eo.path = db_path;
  eo.create_if_missing = false;
  eo.block_cache_bytes = 8 << 20;
  auto engine = storage::Engine::Open(eo);
  if (!engine.ok()) return engine.status();
  mvcc::KvStore kv(engine->get());
  Status s = kv.Open();
  if (!s.ok()) return s;
  SnapshotInfo info;
  info.revision = kv.CurrentRevision();
  info.compact_revision = kv.CompactRevision();
  mvcc::RangeOptions count;
  count.count_only = true;
  auto all = kv.Read()->Range("", std::string(1, '\0'), count);
  if (!all.ok()) return all.status();
  info.total_keys = all->count;
  int64_t hash_rev = 0, compact_rev = 0;
  auto hash = kv.HashKV(0, &hash_rev, &compact_rev);
  if (!hash.ok()) return hash.status();
  info.hash = *hash;
  return info;
}

// A directory removed with everything in it when the scope ends.
class TempDir {
 public:
  static Result<std::unique_ptr<TempDir>> Create(const std::string& prefix) {
    std::error_code ec;
    fs::path base = fs::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string tmpl = (base / (prefix + "XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return Status(Code::kInternal, "cannot create a temporary directory in " + base.string());
    }
    return std::unique_ptr<TempDir>(new TempDir(tmpl));
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// storage's messages start with "restore: "; say which file instead.
std::string SnapshotError(const std::string& path, const Status& s) {
  std::string message = s.message();
  const std::string prefix = "restore: ";
  if (message.compare(0, prefix.size(), prefix) == 0) message.erase(0, prefix.size());
  if (message.find(path) == std::string::npos) message = path + ": " + message;
  return message;
}

Result<int64_t> SnapshotFileSize(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Status(Code::kNotFound, "open " + path + ": no such file");
  }
  auto size = fs::file_size(path, ec);
  if (ec) return Status(Code::kInternal, "stat " + path + ": " + ec.message());
  return static_cast<int64_t>(size);
}

// ---------------------------------------------------------------- status

struct StatusOptions {
  std::string snapshot_path;
};

// A cairn or an etcd snapshot into a new database at `db`.
Status RestoreAnySnapshot(const std::string& path, const std::string& db) {
  if (server::IsEtcdSnapshot(path)) {
    // As etcdctl's status, which reads the database and ignores the hash.
    auto imported = server::ImportEtcdSnapshot(path, db, /*skip_hash_check=*/true);
    return imported.status();
  }
  return storage::RestoreSnapshot(path, db);
}

int RunStatus(const StatusOptions& options, const GlobalOptions& global) {
  auto size = SnapshotFileSize(options.snapshot_path);
  if (!size.ok()) return ExitWithError(kExitError, size.status().message());
  auto tmp = TempDir::Create("cairnctl-status-");
  if (!tmp.ok()) return ExitWithError(kExitError, tmp.status().message());
  const std::string db = (*tmp)->path() + "/" + kDbName;
  Status s = RestoreAnySnapshot(options.snapshot_path, db);
  if (!s.ok()) return ExitWithError(kExitError, SnapshotError(options.snapshot_path, s));
  auto info = Inspect(db);
  if (!info.ok()) return ExitWithError(kExitError, info.status().message());
  info->total_size_bytes = *size;

  if (global.write_out == "json") {
    std::cout << "{\"hash\":" << info->hash << ",\"revision\":" << info->revision
              << ",\"totalKey\":" << info->total_keys << ",\"totalSize\":" << info->total_size_bytes
              << "}" << std::endl;
    return kExitSuccess;
  }
  const std::vector<std::string> row = {Hex(info->hash), std::to_string(info->revision),
                                        std::to_string(info->total_keys),
                                        HumanBytes(static_cast<uint64_t>(info->total_size_bytes))};
  if (global.write_out == "table") {
    std::cout << RenderTable({"hash", "revision", "total keys", "total size"}, {row});
  } else {
    std::cout << row[0] << ", " << row[1] << ", " << row[2] << ", " << row[3] << std::endl;
  }
  return kExitSuccess;
}

// ---------------------------------------------------------------- save

struct SaveOptions {
  std::string data_dir;
  std::string snapshot_path;
};

// An etcd snapshot of a stopped member's data dir (the running server's is
// `etcdctl snapshot save`): written to a temporary file beside the target,
// then renamed, as etcdctl does, so a failed save leaves no half file.
int RunSave(const SaveOptions& options) {
  const std::string db = (fs::path(options.data_dir) / kDbName).string();
  std::error_code ec;
  if (!fs::exists(db, ec)) {
    return ExitWithError(kExitError, "data-dir \"" + options.data_dir + "\" holds no cairn database");
  }
  storage::EngineOptions eo;
  eo.path = db;
  eo.create_if_missing = false;
  eo.block_cache_bytes = 8 << 20;
  auto engine = storage::Engine::Open(eo);
  if (!engine.ok()) {
    return ExitWithError(kExitError, "cannot open " + db + " (is the member still running?): " +
                                         engine.status().message());
  }
  const std::string part = options.snapshot_path + ".part";
  Status s = server::WriteEtcdSnapshot(engine->get(), (*engine)->GetSnapshot(), part);
  if (s.ok()) {
    fs::rename(part, options.snapshot_path, ec);
    if (ec) s = Status(Code::kInternal, "rename " + part + ": " + ec.message());
  }
  if (!s.ok()) {
    fs::remove(part, ec);
    return ExitWithError(kExitError, s.message());
  }
  std::cout << "Snapshot saved at " << options.snapshot_path << std::endl;
  return kExitSuccess;
}

// ---------------------------------------------------------------- restore

struct RestoreOptions {
  std::string snapshot_path;
  std::string data_dir;  // Default: <name>.cairn, as the server's
  bool skip_hash_check = false;
  // The new cluster, with etcd's flags and defaults: this member alone.
  api::ServerConfig cluster;
};

int RunRestore(const RestoreOptions& options) {
  const std::string data_dir =
      options.data_dir.empty() ? options.cluster.name + ".cairn" : options.data_dir;
  auto members = options.cluster.InitialMembers();
  if (!members.ok()) return ExitWithError(kExitError, members.status().message());
  auto size = SnapshotFileSize(options.snapshot_path);
  if (!size.ok()) return ExitWithError(kExitError, size.status().message());

  // Like etcdutl, never write over data: the target must be new or empty.
  std::error_code ec;
  const fs::path dir(data_dir);
  const bool existed = fs::exists(dir, ec);
  if (existed) {
    if (!fs::is_directory(dir, ec)) {
      return ExitWithError(kExitError,
                           "data-dir \"" + data_dir + "\" exists and is not a directory");
    }
    if (!fs::is_empty(dir, ec)) {
      return ExitWithError(kExitError, "data-dir \"" + data_dir + "\" exists and is not empty");
    }
  } else {
    fs::create_directories(dir, ec);
    if (ec) {
      return ExitWithError(kExitError,
                           "cannot create data-dir \"" + data_dir + "\": " + ec.message());
    }
  }
  const std::string db = (dir / kDbName).string();
  std::cout << "restoring snapshot path=" << options.snapshot_path << " data-dir=" << data_dir
            << std::endl;
  auto undo = [&] {
    // Whatever the failed restore left is ours: the target was new or empty.
    fs::remove_all(db, ec);
    if (!existed) fs::remove(dir, ec);
  };
  // A restored member belongs to a new cluster, as with etcdutl: the ids
  // and the membership are the flags', the old cluster's are dropped.
  auto restored = server::RestoreMember(
      options.snapshot_path, db,
      server::NewCluster{options.cluster.name, *members, options.cluster.initial_cluster_token},
      options.skip_hash_check);
  if (!restored.ok()) {
    undo();
    return ExitWithError(kExitError, SnapshotError(options.snapshot_path, restored.status()));
  }
  auto info = Inspect(db);
  if (!info.ok()) {
    undo();
    return ExitWithError(kExitError, "restored database is unreadable: " + info.status().message());
  }
  for (const auto& w : restored->warnings) std::cerr << "warning: " << w << std::endl;
  std::cout << "restored snapshot path=" << options.snapshot_path << " data-dir=" << data_dir
            << " revision=" << info->revision << " keys=" << info->total_keys
            << " hash=" << Hex(info->hash) << " member-id=" << Hex(restored->member_id)
            << " cluster-id=" << Hex(restored->cluster_id) << std::endl;
  return kExitSuccess;
}

}  // namespace

void AddSnapshotCommand(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  CLI::App* snapshot = app.add_subcommand("snapshot", "Saves, verifies and restores snapshots (etcd's file format)");
  snapshot->require_subcommand(1);

  auto restore = std::make_shared<RestoreOptions>();
  CLI::App* r = snapshot->add_subcommand(
      "restore", "Restores a snapshot (from `etcdctl snapshot save`, of cairn or of etcd) into a new data directory");
  r->add_option("filename", restore->snapshot_path, "The snapshot file")->required();
  r->add_option(
      "--data-dir", restore->data_dir,
      "Path to the new data directory; must not exist or be empty (default: <name>.cairn)");
  r->add_option("--name", restore->cluster.name, "Human-readable name for this member")
      ->capture_default_str();
  r->add_option("--initial-cluster", restore->cluster.initial_cluster,
                "Initial cluster configuration for restore bootstrap (default: this member alone, "
                "at --initial-advertise-peer-urls)");
  r->add_option("--initial-cluster-token", restore->cluster.initial_cluster_token,
                "Initial cluster token for the cluster during restore bootstrap")
      ->capture_default_str();
  r->add_option("--initial-advertise-peer-urls", restore->cluster.initial_advertise_peer_urls,
                "List of this member's peer URLs to advertise to the rest of the cluster")
      ->delimiter(',')
      ->capture_default_str();
  r->add_flag("--skip-hash-check", restore->skip_hash_check,
              "Ignore snapshot integrity hash value (required if copied from an etcd data directory)");
  r->callback([restore, exit_code] { *exit_code = RunRestore(*restore); });

  auto save = std::make_shared<SaveOptions>();
  CLI::App* sv = snapshot->add_subcommand(
      "save", "Writes an etcd-format snapshot of a stopped member's data directory (of a running one: etcdctl snapshot save)");
  sv->add_option("filename", save->snapshot_path, "The snapshot file to write")->required();
  sv->add_option("--data-dir", save->data_dir, "The member's data directory")->required();
  sv->callback([save, exit_code] { *exit_code = RunSave(*save); });

  auto status = std::make_shared<StatusOptions>();
  CLI::App* st = snapshot->add_subcommand(
      "status", "Verifies a snapshot and prints its hash, revision, total keys and size");
  st->add_option("filename", status->snapshot_path, "The snapshot file")->required();
  st->callback([status, &global, exit_code] { *exit_code = RunStatus(*status, global); });
}

}  // namespace cairn::ctl
