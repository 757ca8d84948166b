#include "server/node.h"

#include <chrono>
#include <filesystem>
#include <random>

#include <sys/statvfs.h>

#include "common/check.h"
#include "common/logging.h"

namespace cairn::server {

using storage::Column;
namespace fs = std::filesystem;

namespace {
constexpr std::string_view kMetaFormat = "format";
constexpr std::string_view kFormatV1 = "cairn-v1";
constexpr std::string_view kMetaClusterId = "cluster_id";
constexpr std::string_view kMetaMemberId = "member_id";

std::string LogKey(uint64_t index) {
  std::string k;
  storage::PutFixed64BE(&k, index);
  return k;
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

uint64_t RandomId() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return v == 0 ? 1 : v;
}
}  // namespace

Node::Node(NodeOptions options)
    : options_(std::move(options)), queue_(options_.max_pending_proposals) {}

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
  auto found = engine_->Get(Column::kMeta, kMetaFormat, &v);
  if (!found.ok()) return found.status();
  if (!*found) {
    if (!fresh) {
      return Status(Code::kFailedPrecondition,
                    db.string() + " is a database without cairn's format marker; refusing it");
    }
    storage::WriteBatch init(engine_.get());
    init.Put(Column::kMeta, kMetaFormat, kFormatV1);
    std::string id;
    ids_.cluster_id = RandomId();
    ids_.member_id = RandomId();
    storage::PutFixed64BE(&id, ids_.cluster_id);
    init.Put(Column::kMeta, kMetaClusterId, id);
    id.clear();
    storage::PutFixed64BE(&id, ids_.member_id);
    init.Put(Column::kMeta, kMetaMemberId, id);
    Status s = engine_->Write(init, true);
    if (!s.ok()) return s;
  } else {
    if (v != kFormatV1) {
      return Status(Code::kFailedPrecondition, "unknown cairn data format '" + v + "' in " + db.string());
    }
    std::string cluster, member;
    auto has_cluster = engine_->Get(Column::kMeta, kMetaClusterId, &cluster);
    auto has_member = engine_->Get(Column::kMeta, kMetaMemberId, &member);
    if (!has_cluster.ok()) return has_cluster.status();
    if (!has_member.ok()) return has_member.status();
    if (!*has_cluster && !*has_member) {
      // Restored from a snapshot (cairnctl snapshot restore): a new cluster.
      storage::WriteBatch ids(engine_.get());
      ids_.cluster_id = RandomId();
      ids_.member_id = RandomId();
      std::string v;
      storage::PutFixed64BE(&v, ids_.cluster_id);
      ids.Put(Column::kMeta, kMetaClusterId, v);
      v.clear();
      storage::PutFixed64BE(&v, ids_.member_id);
      ids.Put(Column::kMeta, kMetaMemberId, v);
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
  kv_ = std::make_unique<mvcc::KvStore>(engine_.get());
  Status s = kv_->Open();
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
    if (!req.ParseFromString(entry.data())) {
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
  const uint64_t applied = applier_->applied_index();
  if (wal_->empty() || legacy_log_found_) {
    // A new data dir, a restored snapshot or an old data dir (whose log
    // files, if any, predate what the old version wrote to the column): the
    // log starts right after what the database holds.
    if (!wal_->empty() || wal_->first_index() != applied + 1) {
      Status s = wal_->Reset(applied + 1);
      if (!s.ok()) return s;
    }
  } else if (wal_->first_index() > applied + 1) {
    return Status(Code::kDataLoss, "the log in " + dir + " starts at index " +
                                       std::to_string(wal_->first_index()) +
                                       " but the database has applied only " + std::to_string(applied) +
                                       ": the entries in between are missing");
  } else if (wal_->last_index() < applied) {
    return Status(Code::kDataLoss, "the log in " + dir + " ends at index " +
                                       std::to_string(wal_->last_index()) + " but the database has applied " +
                                       std::to_string(applied) + ": the log lost acknowledged entries");
  }
  last_log_index_ = wal_->last_index();
  return Status::Ok();
}

Status Node::Replay() {
  // Entries past the applied index were acknowledged by the log but their
  // effects may be lost with the un-synced apply write: apply them again.
  uint64_t replayed = 0;
  while (applier_->applied_index() < last_log_index_) {
    auto entries = wal_->ReadFrom(applier_->applied_index() + 1, 4 << 20);
    if (!entries.ok()) return entries.status();
    if (entries->empty()) {
      return Status(Code::kDataLoss,
                    "log entry " + std::to_string(applier_->applied_index() + 1) + " is missing");
    }
    for (const wal::Entry& e : *entries) {
      cairnpb::InternalRequest req;
      if (!req.ParseFromString(e.data)) {
        return Status(Code::kDataLoss, "corrupt request in log entry " + std::to_string(e.index));
      }
      applier_->Apply(e.index, req);
      replayed++;
    }
  }
  applied_index_ = applier_->applied_index();
  if (replayed) {
    CAIRN_LOG(kInfo) << "replayed " << replayed << " log entries";
  }
  return Status::Ok();
}

void Node::ReleaseLog() {
  const uint64_t applied = applied_index_.load();
  if (applied <= options_.log_retention_entries) return;
  const uint64_t keep_from = applied - options_.log_retention_entries;
  if (!wal_->CanReleaseBefore(keep_from)) return;
  // The apply writes are not synced: entries may leave the log only once
  // their effects are durable. One RocksDB WAL sync per released segment.
  Status s = engine_->SyncWal();
  if (!s.ok()) {
    CAIRN_LOG(kWarn) << "log: keeping old segments, the database sync failed: " << s.message();
    return;
  }
  wal_->ReleaseBefore(keep_from);
}

Status Node::Start(NodeHooks hooks) {
  hooks_ = std::move(hooks);
  Status s = OpenStorage();
  if (!s.ok()) return s;
  s = ReplayLegacyLog();
  if (!s.ok()) return s;
  s = OpenLog();
  if (!s.ok()) return s;
  s = Replay();
  if (!s.ok()) return s;
  lease_id_counter_ = (ids_.member_id & 0x7fff000000000000ULL) ^
                      (static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) & 0xffffffffffffULL);
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  AddPeriodic("lease-expiry", options_.lease_check_interval_ms, [this] { LeaseLoop(); });
  CheckDisk();
  AddPeriodic("disk-space", 100, [this] { CheckDisk(); });
  // Prepares the next log segment (64 MiB of zeros) off the apply thread,
  // and recycles released ones.
  AddPeriodic("log-segments", 100, [this, last_error = std::string()]() mutable {
    Status m = wal_->Maintain();
    if (!m.ok() && m.message() != last_error) {
      CAIRN_LOG(kWarn) << "log: cannot prepare a segment: " << m.message();
    }
    last_error = m.ok() ? std::string() : m.message();
  });
  return Status::Ok();
}

void Node::Stop() {
  if (stopping_.exchange(true)) return;
  queue_.Close();
  if (apply_thread_.joinable()) apply_thread_.join();
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
  periodic_threads_.emplace_back([this, interval_ms, fn = std::move(fn)] {
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
  Proposal p{std::move(request), std::move(done)};
  if (stopping_.load() || !queue_.TryPush(p)) {
    cairnpb::InternalResponse resp;
    Status s = stopping_.load() ? errors::Stopped() : errors::TooManyRequests();
    resp.set_error_code(static_cast<int>(s.code()));
    resp.set_error_message(s.message());
    p.done(resp);
  }
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
  for (int64_t id : lessor_->Expired(1000)) {
    cairnpb::InternalRequest req;
    req.mutable_lease_revoke()->set_id(id);
    Propose(std::move(req), [](const cairnpb::InternalResponse&) {});
  }
}

void Node::ApplyLoop() {
  std::vector<Proposal> batch;
  std::vector<wal::Entry> entries;  // kept across batches: reuses the buffers
  while (true) {
    batch.clear();
    if (!queue_.PopBatch(&batch, options_.max_batch_entries, std::chrono::milliseconds(100))) break;
    if (batch.empty()) continue;

    // 1. Append the whole batch to the log and make it durable with one
    // fdatasync.
    entries.resize(batch.size());
    std::vector<uint64_t> indexes;
    indexes.reserve(batch.size());
    for (size_t i = 0; i < batch.size(); i++) {
      entries[i].index = last_log_index_ + 1 + i;
      entries[i].term = raft_term();
      batch[i].request.SerializeToString(&entries[i].data);
      indexes.push_back(entries[i].index);
    }
    Status s = wal_->Append(entries);
    if (!s.ok() && s.code() == Code::kResourceExhausted) {
      // The disk is full and the log needs a new segment: nothing of the
      // batch is in the log, so nothing was applied. Refuse the batch as
      // etcd refuses writes over quota, and raise NOSPACE so clients and
      // monitoring see why.
      CAIRN_LOG(kError) << "log append failed, disk full: " << s.message();
      applier_->RaiseAlarmInMemory(etcdserverpb::NOSPACE);
      cairnpb::InternalResponse resp;
      resp.set_error_code(static_cast<int>(errors::NoSpace().code()));
      resp.set_error_message(errors::NoSpace().message());
      for (auto& p : batch) p.done(resp);
      continue;
    }
    CHECK(s.ok()) << "log append failed: " << s.ToString();
    auto t0 = std::chrono::steady_clock::now();
    s = wal_->Sync();
    // A failed fdatasync leaves the file's state unknown (the kernel may have
    // dropped the dirty pages): stop, and let recovery read what is there.
    CHECK(s.ok()) << "log sync failed: " << s.ToString();
    if (hooks_.on_log_sync) hooks_.on_log_sync(SecondsSince(t0));
    last_log_index_ = indexes.back();

    // 2. Apply in index order with one atomic write, then per entry:
    // publish its events, answer.
    std::vector<const cairnpb::InternalRequest*> requests;
    requests.reserve(batch.size());
    for (auto& p : batch) requests.push_back(&p.request);
    auto t1 = std::chrono::steady_clock::now();
    bool timed = false;
    applier_->ApplyBatch(indexes.front(), requests, [&](size_t i, apply::ApplyResult& r) {
      if (!timed && hooks_.on_apply_commit) {
        hooks_.on_apply_commit(SecondsSince(t1), batch.size());
        timed = true;
      }
      applied_index_ = indexes[i];
      if (!r.events.empty() && hooks_.on_events) hooks_.on_events(r.revision, r.events);
      batch[i].done(r.response);
    });
    ReleaseLog();
  }
  // Drain: whatever is left is refused.
  batch.clear();
  while (queue_.PopBatch(&batch, 1024, std::chrono::milliseconds(0)) && !batch.empty()) {
    for (auto& p : batch) {
      cairnpb::InternalResponse resp;
      resp.set_error_code(static_cast<int>(Code::kUnavailable));
      resp.set_error_message(errors::Stopped().message());
      p.done(resp);
    }
    batch.clear();
  }
}

}  // namespace cairn::server
