#include "server/node.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <random>

#include <sys/statvfs.h>

#include "common/check.h"
#include "common/proto_parse.h"
#include "common/logging.h"
#include "common/thread_name.h"
#include "common/trace_points.h"
#include "server/member_id.h"
#include "server/meta_keys.h"
#include "storage/snapshot_stream.h"

namespace cairn::server {

using storage::Column;
namespace fs = std::filesystem;

namespace {
constexpr std::string_view kMetaAppliedIndex = "applied_index";
// etcd's request timeout: 5 s plus two election timeouts.
constexpr int64_t kRequestTimeoutBaseMs = 5000;

std::string LogKey(uint64_t index) {
  std::string k;
  storage::PutFixed64BE(&k, index);
  return k;
}

Status LostEntries(const std::string& dir, uint64_t last_index, uint64_t applied) {
  return Status(Code::kDataLoss, "the log in " + dir + " ends at index " + std::to_string(last_index) +
                                     " but the database has applied " + std::to_string(applied) +
                                     ": the log lost acknowledged entries");
}

uint64_t RandomId() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return v == 0 ? 1 : v;
}
}  // namespace

// A member without peers: nothing to send. (The peer transport comes with
// the multi-member cluster.)
class Node::NoPeers final : public Transport {
 public:
  void Send(std::vector<raft::Message> messages) override {
    for (const auto& m : messages) CAIRN_LOG(kWarn) << "raft: no transport for " << m.ToString();
  }
  void Forward(raft::NodeId, std::vector<std::pair<uint64_t, std::string>>) override {}
  void Refuse(raft::NodeId, uint64_t, const Status&) override {}
  void ForwardLeaseRenewals(raft::NodeId, std::vector<int64_t>) override {}
};

Node::Node(NodeOptions options) : options_(std::move(options)) {}

Node::~Node() { Stop(); }

Status Node::OpenStorage() {
  std::error_code ec;
  fs::path dir(options_.data_dir);
  fs::path db = dir / "cairn.db";
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    return Status(Code::kFailedPrecondition, "data dir " + dir.string() + " is not a directory");
  }
  if (fs::exists(dir, ec) && !fs::exists(db, ec)) {
    for (auto it = fs::directory_iterator(dir, ec); it != fs::directory_iterator(); ++it) {
      // fixtures/: certificates --auto-tls generated before the first start.
      if (it->path().filename() == "fixtures" && it->is_directory()) continue;
      return Status(Code::kFailedPrecondition,
                    "data dir " + dir.string() +
                        " is not empty and holds no cairn database (is it another program's?)");
    }
  }
  fs::create_directories(dir, ec);
  if (ec) return Status(Code::kFailedPrecondition, "cannot create data dir: " + ec.message());
  const bool fresh = !fs::exists(db, ec);
  storage::EngineOptions eo;
  eo.path = db.string();
  auto engine = storage::Engine::Open(eo);
  if (!engine.ok()) {
    return Status(engine.status().code(),
                  "cannot open the database in " + db.string() + ": " + engine.status().message());
  }
  engine_ = std::move(*engine);

  std::string v;
  auto found = engine_->Get(Column::kMeta, meta::kFormat, &v);
  if (!found.ok()) return found.status();
  if (!*found) {
    if (!fresh) {
      return Status(Code::kFailedPrecondition,
                    db.string() + " is a database without cairn's format marker; refusing it");
    }
    storage::WriteBatch init(engine_.get());
    init.Put(Column::kMeta, meta::kFormat, meta::kFormatV1);
    if (options_.join_existing) {
      Status joined = AdoptRemoteIds();
      if (!joined.ok()) return joined;
    } else {
      ids_.member_id = ComputeMemberId(options_.peer_urls, options_.initial_cluster_token);
      std::vector<uint64_t> founders;
      for (const auto& [name, urls] : FoundingMembers()) {
        founders.push_back(ComputeMemberId(urls, options_.initial_cluster_token));
      }
      ids_.cluster_id = ComputeClusterId(founders);
    }
    meta::PutIds(&init, ids_.cluster_id, ids_.member_id);
    Status s = engine_->Write(init, true);
    if (!s.ok()) return s;
  } else {
    if (v != meta::kFormatV1) {
      return Status(Code::kFailedPrecondition, "unknown cairn data format '" + v + "' in " + db.string());
    }
    std::string cluster, member;
    auto has_cluster = engine_->Get(Column::kMeta, meta::kClusterId, &cluster);
    auto has_member = engine_->Get(Column::kMeta, meta::kMemberId, &member);
    if (!has_cluster.ok()) return has_cluster.status();
    if (!has_member.ok()) return has_member.status();
    if (!*has_cluster && !*has_member) {
      // Restored from a snapshot (cairnctl snapshot restore): a new cluster.
      storage::WriteBatch ids(engine_.get());
      ids_.cluster_id = RandomId();
      ids_.member_id = RandomId();
      meta::PutIds(&ids, ids_.cluster_id, ids_.member_id);
      Status s = engine_->Write(ids, true);
      if (!s.ok()) return s;
      CAIRN_LOG(kInfo) << "first start after a restore: new member and cluster ids";
    } else {
      if (!*has_cluster || cluster.size() != 8 || !*has_member || member.size() != 8) {
        return Status(Code::kDataLoss, "corrupt data dir: member or cluster id missing");
      }
      ids_.cluster_id = storage::DecodeFixed64BE(cluster);
      ids_.member_id = storage::DecodeFixed64BE(member);
    }
  }
  Status s = FinishInterruptedInstall();
  if (!s.ok()) return s;
  kv_ = std::make_unique<mvcc::KvStore>(engine_.get());
  s = kv_->Open();
  if (!s.ok()) return s;
  lessor_ = std::make_unique<lease::Lessor>(engine_.get(), &clock_, options_.lessor);
  s = lessor_->Open();
  if (!s.ok()) return s;
  applier_ = std::make_unique<apply::Applier>(engine_.get(), kv_.get(), lessor_.get(), ids_.member_id);
  return applier_->Open();
}

Status Node::ReplayLegacyLog() {
  // Data dirs written before the log had files of its own keep their log in
  // column kLog. Apply what it holds past the applied index, then empty the
  // column; the new log starts after it (OpenLog).
  auto it = engine_->NewIterator(Column::kLog);
  it->SeekToFirst();
  if (!it->Valid()) return it->status();
  legacy_log_found_ = true;
  uint64_t replayed = 0;
  for (it->Seek(LogKey(applier_->applied_index() + 1)); it->Valid(); it->Next()) {
    uint64_t index = storage::DecodeFixed64BE(it->key());
    cairnpb::LogEntry entry;
    if (!entry.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status(Code::kDataLoss, "corrupt log entry at index " + std::to_string(index));
    }
    cairnpb::InternalRequest req;
    if (!ParseWithRecursionLimit(entry.data(), kLogEntryRecursion, &req)) {
      return Status(Code::kDataLoss, "corrupt request in log entry " + std::to_string(index));
    }
    applier_->Apply(index, req);
    replayed++;
  }
  if (!it->status().ok()) return it->status();
  it.reset();
  // Synced: the re-applied effects must be durable before the entries go.
  storage::WriteBatch drop(engine_.get());
  drop.DeleteRange(Column::kLog, LogKey(0), std::string(9, '\xff'));
  Status s = engine_->Write(drop, /*sync=*/true);
  if (!s.ok()) return s;
  CAIRN_LOG(kInfo) << "moved to the log files: replayed " << replayed
                   << " entries of the old log column, up to index " << applier_->applied_index();
  return Status::Ok();
}

Status Node::OpenLog() {
  wal::WalOptions wo;
  wo.segment_bytes = options_.log_segment_bytes;
  const std::string dir = (fs::path(options_.data_dir) / "wal").string();
  auto opened = wal::Wal::Open(dir, wo);
  if (!opened.ok()) {
    return Status(opened.status().code(), "cannot open the log in " + dir + ": " + opened.status().message());
  }
  wal_ = std::move(opened).value();
  // A segment ready before the first write (and for Reset below); failing
  // here (a full disk) is not fatal, the first rollover tries again.
  Status prepared = wal_->Maintain();
  if (!prepared.ok()) {
    CAIRN_LOG(kWarn) << "log: cannot prepare a segment: " << prepared.message();
  }
  LogBase base;
  std::string v;
  auto found = engine_->Get(Column::kMeta, meta::kLogBase, &v);
  if (!found.ok()) return found.status();
  Status s;
  if (*found) {
    auto decoded = LogBase::Decode(v);
    if (!decoded.ok()) return decoded.status();
    base = std::move(*decoded);
  } else if (applier_->applied_index() == 0 && wal_->empty() && !legacy_log_found_) {
    if (options_.join_existing) {
      // A joining member starts with an empty log: the leader sends it the
      // log from the founding entries on, or a snapshot.
      storage::WriteBatch batch(engine_.get());
      batch.Put(Column::kMeta, meta::kLogBase, base.Encode());
      s = engine_->Write(batch, /*sync=*/true);
    } else {
      s = Bootstrap(&base);
    }
  } else {
    s = ConvertPreRaftLog(&base);
  }
  if (!s.ok()) return s;
  auto store = LogStore::Open(wal_.get(), base, [this](const LogBase& b) {
    storage::WriteBatch batch(engine_.get());
    batch.Put(Column::kMeta, meta::kLogBase, b.Encode());
    return engine_->Write(batch, /*sync=*/true);
  });
  if (!store.ok()) return store.status();
  log_store_ = std::move(*store);
  log_store_->SetSnapshotSource([this] { return TakeSnapshotImage(); });
  const uint64_t applied = applier_->applied_index();
  if (log_store_->LastIndex() < applied) {
    return LostEntries(dir, log_store_->LastIndex(), applied);
  }
  if (applied < base.index) {
    return Status(Code::kDataLoss, "the database has applied index " + std::to_string(applied) +
                                       " but the log starts after index " + std::to_string(base.index) +
                                       ": the entries in between are missing");
  }
  return AlignHardState(wal_.get(), base, applied);
}

Status Node::Bootstrap(LogBase* base) {
  // A founding member writes the initial membership as committed entries of
  // term 1, as every founder does (MemoryStorage::Bootstrap).
  *base = LogBase{};
  storage::WriteBatch batch(engine_.get());
  batch.Put(Column::kMeta, meta::kLogBase, base->Encode());
  Status s = engine_->Write(batch, /*sync=*/true);
  if (!s.ok()) return s;
  // In member id order, so that every founder writes the same entries.
  std::map<uint64_t, cairnpb::Member> founders;
  for (const auto& [name, urls] : FoundingMembers()) {
    cairnpb::Member m;
    m.set_id(ComputeMemberId(urls, options_.initial_cluster_token));
    m.set_name(name);
    for (const auto& u : urls) m.add_peer_urls(u);
    founders[m.id()] = m;
  }
  std::vector<raft::ConfChange> changes;
  for (const auto& [id, m] : founders) {
    changes.push_back(raft::ConfChange{raft::ConfChangeType::kAddVoter, id, m.SerializeAsString()});
  }
  return WriteFoundingEntries(wal_.get(), changes);
}

Status Node::AdoptRemoteIds() {
  if (!options_.fetch_cluster) return Status(Code::kInvalidArgument, "no way to reach the cluster's peers");
  auto remote = options_.fetch_cluster();
  if (!remote.ok()) return remote.status();
  std::vector<std::string> mine = options_.peer_urls;
  std::sort(mine.begin(), mine.end());
  for (const auto& m : remote->members) {
    std::vector<std::string> theirs(m.peer_urls().begin(), m.peer_urls().end());
    std::sort(theirs.begin(), theirs.end());
    if (theirs == mine) {
      if (!m.name().empty() && m.name() != options_.name) {
        return Status(Code::kFailedPrecondition, "member " + options_.name + " has already been bootstrapped");
      }
      ids_.cluster_id = remote->cluster_id;
      ids_.member_id = m.id();
      remote_members_ = remote->members;
      return Status::Ok();
    }
  }
  std::string urls;
  for (const auto& u : options_.peer_urls) urls += (urls.empty() ? "" : ",") + u;
  return Status(Code::kFailedPrecondition,
                "error validating peerURLs: no member of the cluster has the peer URLs " + urls +
                    " (add it first: etcdctl member add)");
}

std::vector<std::pair<std::string, std::vector<std::string>>> Node::FoundingMembers() const {
  if (!options_.initial_members.empty()) return options_.initial_members;
  return {{options_.name, options_.peer_urls}};
}

Status Node::ConvertPreRaftLog(LogBase* base) {
  const std::string& dir = wal_->dir();
  if (!wal_->empty() && !legacy_log_found_) {
    // Entries past the applied index were acknowledged but their effects may
    // be lost with the un-synced apply write: apply them again first.
    const uint64_t applied = applier_->applied_index();
    if (wal_->first_index() > applied + 1) {
      return Status(Code::kDataLoss, "the log in " + dir + " starts at index " +
                                         std::to_string(wal_->first_index()) +
                                         " but the database has applied only " + std::to_string(applied) +
                                         ": the entries in between are missing");
    }
    if (wal_->last_index() < applied) {
      return LostEntries(dir, wal_->last_index(), applied);
    }
    uint64_t replayed = 0;
    while (applier_->applied_index() < wal_->last_index()) {
      auto entries = wal_->ReadFrom(applier_->applied_index() + 1, 4 << 20);
      if (!entries.ok()) return entries.status();
      if (entries->empty()) {
        return Status(Code::kDataLoss,
                      "log entry " + std::to_string(applier_->applied_index() + 1) + " is missing");
      }
      for (const wal::Entry& e : *entries) {
        cairnpb::InternalRequest req;
        if (!ParseWithRecursionLimit(e.data, kLogEntryRecursion, &req)) {
          return Status(Code::kDataLoss, "corrupt request in log entry " + std::to_string(e.index));
        }
        applier_->Apply(e.index, req);
        replayed++;
      }
    }
    if (replayed) CAIRN_LOG(kInfo) << "replayed " << replayed << " log entries";
  }
  // The log starts over right after what the database holds, as a one-member
  // Raft log whose base is the applied index. The base is written (synced,
  // with everything applied) before the old entries go.
  const uint64_t applied = applier_->applied_index();
  base->index = applied;
  base->term = 1;
  base->conf_state = raft::ConfState{{ids_.member_id}, {}};
  storage::WriteBatch batch(engine_.get());
  batch.Put(Column::kMeta, meta::kLogBase, base->Encode());
  Status s = engine_->Write(batch, /*sync=*/true);
  if (!s.ok()) return s;
  if (!wal_->empty() || wal_->first_index() != applied + 1) {
    s = wal_->Reset(applied + 1);
    if (!s.ok()) return s;
  }
  s = wal_->SetHardState(wal::HardState{1, 0, applied});
  if (s.ok()) s = wal_->Sync();
  if (s.ok()) CAIRN_LOG(kInfo) << "log: starting the Raft log after applied index " << applied;
  return s;
}

std::string Node::snapshot_dir() const { return (fs::path(options_.data_dir) / "snap").string(); }

Result<uint64_t> Node::TakeSnapshotImage() {
  auto snap = engine_->GetSnapshot();
  std::string v;
  auto found = engine_->Get(Column::kMeta, kMetaAppliedIndex, &v, snap.get());
  if (!found.ok()) return found.status();
  const uint64_t index = *found ? storage::DecodeFixed64BE(v) : 0;
  std::lock_guard<std::mutex> lock(image_mu_);
  image_index_ = index;
  image_ = std::move(snap);
  return index;
}

std::shared_ptr<const storage::Snapshot> Node::SnapshotImage(uint64_t index) const {
  std::lock_guard<std::mutex> lock(image_mu_);
  return image_index_ == index ? image_ : nullptr;
}

namespace {
// What an image from another member may not overwrite: this member's own
// identity and Raft log state.
bool IsLocalMeta(std::string_view key) {
  return key == meta::kFormat || key == meta::kClusterId || key == meta::kMemberId || key == meta::kLogBase ||
         key == meta::kInstalling;
}
}  // namespace

Status Node::ReplaceDatabase(const std::string& image_path, const LogBase& base) {
  auto local = [](Column c, std::string_view key) { return c == Column::kMeta && IsLocalMeta(key); };
  Status s = storage::ReplaceWithSnapshot(engine_.get(), image_path, local);
  if (!s.ok()) return s;
  storage::WriteBatch done(engine_.get());
  done.Put(Column::kMeta, meta::kLogBase, base.Encode());
  done.Delete(Column::kMeta, meta::kInstalling);
  return engine_->Write(done, /*sync=*/true);
}

Status Node::FinishInterruptedInstall() {
  std::string v;
  auto found = engine_->Get(Column::kMeta, meta::kInstalling, &v);
  if (!found.ok()) return found.status();
  if (!*found) return Status::Ok();
  const size_t nl = v.find('\n');
  auto base = LogBase::Decode(nl == std::string::npos ? "" : v.substr(nl + 1));
  if (!base.ok()) return base.status();
  const std::string path = v.substr(0, nl);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return Status(Code::kDataLoss, "an interrupted snapshot install left the database incomplete and its image " +
                                       path + " is gone; remove the data dir and add the member again");
  }
  CAIRN_LOG(kInfo) << "finishing the snapshot install interrupted at the last stop, from " << path;
  Status s = ReplaceDatabase(path, *base);
  if (s.ok()) fs::remove(path, ec);
  return s;
}

Status Node::InstallSnapshot(const raft::Snapshot& snapshot) {
  const std::string& path = snapshot.data;
  LogBase base{snapshot.metadata.index, snapshot.metadata.term, snapshot.metadata.conf_state};
  // Everything committed before the snapshot is applied first; the image
  // holds it anyway, but the apply thread must not write meanwhile.
  if (!apply_->WaitIdle()) return errors::Stopped();
  const auto t0 = std::chrono::steady_clock::now();
  storage::WriteBatch marker(engine_.get());
  marker.Put(Column::kMeta, meta::kInstalling, path + "\n" + base.Encode());
  Status s = engine_->Write(marker, /*sync=*/true);
  if (!s.ok()) return s;
  s = kv_->ReplaceContents([&] { return ReplaceDatabase(path, base); });
  if (!s.ok()) return s;
  s = lessor_->Open();
  if (s.ok()) s = applier_->Open();
  if (s.ok()) s = log_store_->ResetToSnapshot(base);
  if (!s.ok()) return s;
  apply_->SetApplied(base.index);
  std::error_code ec;
  fs::remove(path, ec);
  CAIRN_LOG(kInfo) << "installed the leader's snapshot at index " << base.index << " (revision "
                   << kv_->CurrentRevision() << ") in "
                   << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s";
  if (hooks_.on_snapshot_installed) hooks_.on_snapshot_installed(kv_->CurrentRevision());
  return Status::Ok();
}

Status Node::StartRaft() {
  ApplyWorkerHooks ah;
  ah.on_events = hooks_.on_events;
  ah.on_apply_commit = hooks_.on_apply_commit;
  ah.on_member_change = hooks_.on_member_change;
  ah.after_batch = hooks_.after_apply_batch;
  apply_ = std::make_unique<ApplyWorker>(applier_.get(), &waiters_, std::move(ah));

  RaftHostOptions ro;
  ro.raft.id = ids_.member_id;
  ro.raft.applied = applier_->applied_index();
  ro.tick_interval_ms = options_.heartbeat_interval_ms;
  ro.raft.heartbeat_interval_ticks = 1;
  ro.raft.election_timeout_ticks =
      static_cast<int>(std::max<int64_t>(2, options_.election_timeout_ms / options_.heartbeat_interval_ms));
  ro.max_inbox = options_.max_pending_proposals;
  ro.max_parked_proposals = options_.max_pending_proposals;
  ro.max_batch_entries = options_.max_batch_entries;
  ro.log_retention_entries = options_.log_retention_entries;
  RaftHostHooks rh;
  rh.apply = [this](std::vector<raft::Entry> entries) { return apply_->Push(std::move(entries)); };
  rh.applied_index = [this] { return apply_->applied_index(); };
  rh.sync_applied = [this] { return engine_->SyncWal(); };
  rh.accepted = [this](uint64_t id, uint64_t term, uint64_t index) {
    trace::Point("accept", id, index);
    waiters_.SetPosition(id, term, index);
  };
  rh.refused = [this](uint64_t id, const Status& s) { waiters_.Fail(id, s); };
  rh.forwarded = [this](uint64_t id) { waiters_.MarkForwarded(id); };
  rh.on_tick = [this](int64_t now) { waiters_.ExpireBefore(now); };
  rh.on_log_sync = hooks_.on_log_sync;
  rh.on_leader_change = [this](raft::NodeId leader, uint64_t term) {
    if (leader == ids_.member_id) lessor_->Promote(options_.election_timeout_ms);
    if (hooks_.on_leader_change) hooks_.on_leader_change(leader, term);
  };
  ro.request_timeout_ms = kRequestTimeoutBaseMs + 2 * options_.election_timeout_ms;
  rh.install_snapshot = [this](const raft::Snapshot& snap) { return InstallSnapshot(snap); };
  rh.on_read_index = [this](uint64_t index, std::vector<RaftHost::ReadCallback> reads) {
    apply_->WhenApplied(index, std::move(reads));
  };
  rh.on_log_full = [this](const Status& s) {
    if (!log_full_.exchange(true)) {
      CAIRN_LOG(kError) << "log append failed, disk full: " << s.message()
                        << "; refusing writes (NOSPACE) until there is room";
    }
  };
  if (!transport_) {
    no_peers_ = std::make_unique<NoPeers>();
    transport_ = no_peers_.get();
  }
  raft_ = std::make_unique<RaftHost>(ro, log_store_.get(), transport_, &clock_, std::move(rh));
  apply_->Start();
  for (int i = 0; i < 2; i++) {
    read_threads_.emplace_back([this] {
      SetThreadName("cairn-read");
      std::vector<std::function<void()>> batch;
      while (true) {
        batch.clear();
        if (!read_queue_.PopBatch(&batch, 64, std::chrono::milliseconds(100))) break;
        for (auto& fn : batch) fn();
      }
    });
  }
  return raft_->Start();
}

Status Node::Start(NodeHooks hooks, Transport* transport) {
  hooks_ = std::move(hooks);
  transport_ = transport;
  Status s = OpenStorage();
  if (!s.ok()) return s;
  s = ReplayLegacyLog();
  if (!s.ok()) return s;
  s = OpenLog();
  if (!s.ok()) return s;
  lease_id_counter_ = (ids_.member_id & 0x7fff000000000000ULL) ^
                      (static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) & 0xffffffffffffULL);
  // etcd's idutil: the member id's low 16 bits, then the time in ms, then a
  // counter: unique across restarts of this member.
  const uint64_t now_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  request_id_counter_ = ((ids_.member_id & 0xffff) << 48) | ((now_ms & 0xffffffffffULL) << 8);
  s = StartRaft();
  if (!s.ok()) return s;
  AddPeriodic("lease-expiry", options_.lease_check_interval_ms, [this] { LeaseLoop(); });
  CheckDisk();
  AddPeriodic("disk-space", 100, [this] { CheckDisk(); });
  // Prepares the next log segment (64 MiB of zeros) off the raft thread,
  // and recycles released ones.
  AddPeriodic("log-segments", 100, [this, last_error = std::string()]() mutable {
    Status m = wal_->Maintain();
    if (!m.ok() && m.message() != last_error) {
      CAIRN_LOG(kWarn) << "log: cannot prepare a segment: " << m.message();
    }
    last_error = m.ok() ? std::string() : m.message();
    if (m.ok() && wal_->spare_count() > 0) log_full_ = false;
  });
  return Status::Ok();
}

Status Node::Publish() {
  cairnpb::Member self;
  self.set_id(ids_.member_id);
  self.set_name(options_.name);
  for (const auto& u : options_.client_urls) self.add_client_urls(u);
  for (const auto& u : options_.peer_urls) self.add_peer_urls(u);
  const auto started = std::chrono::steady_clock::now();
  while (!stopping_.load()) {
    cairnpb::InternalRequest req;
    *req.mutable_member_attributes() = self;
    auto done = std::make_shared<std::promise<cairnpb::InternalResponse>>();
    Propose(std::move(req), [done](const cairnpb::InternalResponse& r) { done->set_value(r); });
    cairnpb::InternalResponse r = done->get_future().get();
    if (r.error_code() == 0) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (seconds > 1) CAIRN_LOG(kInfo) << "published this member's attributes after " << seconds << " s";
      return Status::Ok();
    }
    CAIRN_LOG(kWarn) << "cannot publish this member's attributes yet (" << r.error_message() << "); retrying";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return errors::Stopped();
}

void Node::Stop() {
  if (stopping_.exchange(true)) return;
  // The apply worker first: the raft thread may be waiting for room in its
  // queue. Committed entries it did not apply are applied after a restart.
  if (apply_) apply_->Stop();
  if (raft_) raft_->Stop();
  waiters_.FailAll(errors::Stopped());
  read_queue_.Close();
  for (auto& t : read_threads_) {
    if (t.joinable()) t.join();
  }
  read_threads_.clear();
  for (auto& t : periodic_threads_) {
    if (t.joinable()) t.join();
  }
  periodic_threads_.clear();
}

int64_t Node::NextLeaseId() {
  uint64_t v = ++lease_id_counter_;
  int64_t id = static_cast<int64_t>(v & 0x7fffffffffffffffULL);
  return id == 0 ? 1 : id;
}

void Node::AddPeriodic(std::string name, int64_t interval_ms, std::function<void()> fn) {
  periodic_threads_.emplace_back([this, name, interval_ms, fn = std::move(fn)] {
    SetThreadName(name);
    auto next = std::chrono::steady_clock::now();
    while (!stopping_.load()) {
      next += std::chrono::milliseconds(interval_ms);
      fn();
      while (!stopping_.load() && std::chrono::steady_clock::now() < next) {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(interval_ms, 50)));
      }
    }
  });
}

void Node::Propose(cairnpb::InternalRequest request, Callback done) {
  if (stopping_.load() || !raft_) {
    done(Waiters::ErrorResponse(errors::Stopped()));
    return;
  }
  // etcd refuses proposals while the apply side is far behind the log.
  if (raft_->commit_index() > apply_->applied_index() + options_.max_apply_gap) {
    proposals_refused_++;
    done(Waiters::ErrorResponse(errors::TooManyRequests()));
    return;
  }
  const uint64_t id = ++request_id_counter_;
  request.set_id(id);
  trace::Point("propose", id);
  RaftHost::Proposal p{id, request.SerializeAsString()};
  const int64_t timeout_ms = kRequestTimeoutBaseMs + 2 * options_.election_timeout_ms;
  waiters_.Add(id, clock_.NowMs() + timeout_ms, std::move(done));
  if (!raft_->Propose(std::move(p))) {
    waiters_.Fail(id, stopping_.load() ? errors::Stopped() : errors::TooManyRequests());
  }
}

void Node::ProposeMemberChange(cairnpb::MemberChange change, Callback done) {
  if (change.type() == cairnpb::MemberChange::UPDATE_PEER_URLS) {
    cairnpb::InternalRequest req;
    *req.mutable_member_change() = std::move(change);
    Propose(std::move(req), std::move(done));
    return;
  }
  if (stopping_.load() || !raft_) {
    done(Waiters::ErrorResponse(errors::Stopped()));
    return;
  }
  const uint64_t id = ++request_id_counter_;
  raft::ConfChange cc;
  switch (change.type()) {
    case cairnpb::MemberChange::ADD_LEARNER: cc.type = raft::ConfChangeType::kAddLearner; break;
    case cairnpb::MemberChange::REMOVE: cc.type = raft::ConfChangeType::kRemoveNode; break;
    default: cc.type = raft::ConfChangeType::kAddVoter; break;
  }
  cc.node_id = change.member().id();
  cairnpb::Member context = change.member();
  context.clear_id();  // the change names it
  context.set_request_id(id);
  cc.context = context.SerializeAsString();
  RaftHost::Proposal p{id, std::string(1, RaftHost::kConfChangeMarker) + raft::EncodeConfChange(cc)};
  const int64_t timeout_ms = kRequestTimeoutBaseMs + 2 * options_.election_timeout_ms;
  waiters_.Add(id, clock_.NowMs() + timeout_ms, std::move(done));
  if (!raft_->Propose(std::move(p))) {
    waiters_.Fail(id, stopping_.load() ? errors::Stopped() : errors::TooManyRequests());
  }
}

void Node::LinearizableRead(std::function<void(const Status&)> done) {
  if (stopping_.load() || !raft_) {
    done(errors::Stopped());
    return;
  }
  if (raft_->sole_voter() && raft_->is_leader()) {
    done(Status::Ok());
    return;
  }
  auto shared = std::make_shared<std::function<void(const Status&)>>(std::move(done));
  raft_->ReadIndex([this, shared](const Status& s) {
    if (!s.ok()) {
      (*shared)(s);
      return;
    }
    std::function<void()> run = [shared] { (*shared)(Status::Ok()); };
    if (!read_queue_.TryPush(run)) (*shared)(stopping_.load() ? errors::Stopped() : errors::TooManyRequests());
  });
}

Result<int64_t> Node::RenewLease(int64_t id) {
  auto ttl = lessor_->Renew(id);
  const raft::NodeId leader = raft_ ? raft_->leader() : 0;
  if (ttl.ok() && leader != 0 && leader != ids_.member_id) transport_->ForwardLeaseRenewals(leader, {id});
  return ttl;
}

void Node::CheckDisk() {
  db_size_bytes_ = engine_->TotalSizeBytes();
  struct statvfs st;
  if (statvfs(options_.data_dir.c_str(), &st) != 0) return;
  uint64_t total = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  uint64_t avail = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  uint64_t reserve = options_.disk_reserve_bytes;
  // Enough for RocksDB to reopen after a crash (a preallocated WAL and a
  // memtable flush, ~70 MiB), a quarter of small disks, never over 256 MiB.
  if (reserve == 0) reserve = std::min<uint64_t>(256ULL << 20, std::max<uint64_t>(total / 4, 128ULL << 20));
  bool low = avail < reserve;
  if (low && !disk_low_.load()) {
    CAIRN_LOG(kWarn) << "disk nearly full: " << avail << " bytes free, reserve " << reserve
                     << "; refusing writes that add data (NOSPACE)";
  }
  disk_low_ = low;
}

void Node::LeaseLoop() {
  // Only the leader expires leases (etcd's primary lessor).
  if (!raft_->is_leader()) return;
  for (int64_t id : lessor_->Expired(1000)) {
    cairnpb::InternalRequest req;
    req.mutable_lease_revoke()->set_id(id);
    Propose(std::move(req), [](const cairnpb::InternalResponse&) {});
  }
}

}  // namespace cairn::server
