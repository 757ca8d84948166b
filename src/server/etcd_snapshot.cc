#include "server/etcd_snapshot.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <tuple>
#include <nlohmann/json.hpp>

#include "apply/applier.h"
#include "cairnpb/internal.pb.h"
#include "bolt/bolt_file.h"
#include "leasepb/lease.pb.h"
#include "lease/lessor.h"
#include "mvcc/key_codec.h"
#include "mvcc/kv_store.h"
#include "mvccpb/kv.pb.h"
#include "server/meta_keys.h"
#include "storage/engine.h"

namespace cairn::server {

namespace {

namespace fs = std::filesystem;
using storage::Column;

constexpr size_t kShaBytes = 32;
constexpr size_t kRevBytes = 17;         // BE64 main, '_', BE64 sub
constexpr size_t kBatchRecords = 10000;  // records per write while importing

Status Corrupt(const std::string& what) { return Status(Code::kDataLoss, "invalid etcd snapshot: " + what); }

std::string Hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

// SHA-256, for etcd's snapshot trailer (checked on import, written on export).
struct Sha256 {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx{EVP_MD_CTX_new(), EVP_MD_CTX_free};
  Sha256() { EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr); }
  void Update(std::string_view b) { EVP_DigestUpdate(ctx.get(), b.data(), b.size()); }
  std::string Final() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &len);
    return std::string(reinterpret_cast<char*>(md), len);
  }
};

// etcdctl's check: a file whose size is 32 past a multiple of 512 carries
// the SHA-256 of what precedes it; a file without one is refused unless
// `skip_hash_check`. Returns the database's size. The messages say how the
// file is broken: cut short (the meta pages say how long it should be) or
// changed (the hash).
Result<int64_t> CheckHash(const std::string& path, bool skip_hash_check) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) return Status(Code::kNotFound, "cannot read " + path + ": " + ec.message());
  auto pages = bolt::BoltReader::PagesOf(path);
  if (!pages.ok()) {
    return Status(Code::kDataLoss, path + " is truncated or corrupt: " + pages.status().message() + " (it has " +
                                       std::to_string(size) + " bytes)");
  }
  const uint64_t db_bytes = static_cast<uint64_t>(pages->first) * pages->second;
  const bool has_hash = size % 512 == kShaBytes;
  // Short of its pages, or with a piece of a hash after them.
  if ((has_hash && size - kShaBytes < db_bytes) || (!has_hash && size != db_bytes && size < db_bytes + kShaBytes)) {
    return Status(Code::kDataLoss, path + " is truncated or corrupt: an etcd snapshot of " +
                                       std::to_string(pages->second) + " pages should have " +
                                       std::to_string(db_bytes + kShaBytes) + " bytes, it has " + std::to_string(size));
  }
  if (!has_hash) {
    if (!skip_hash_check) return Status(Code::kDataLoss, "snapshot missing hash but --skip-hash-check=false");
    return static_cast<int64_t>(size);
  }
  std::ifstream in(path, std::ios::binary);
  Sha256 hasher;
  std::vector<char> buf(1 << 20);
  uint64_t left = size - kShaBytes;
  while (left > 0 && in) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    in.read(buf.data(), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in.gcount()) != n) break;
    hasher.Update(std::string_view(buf.data(), n));
    left -= n;
  }
  unsigned char want[kShaBytes];
  in.read(reinterpret_cast<char*>(want), kShaBytes);
  if (left != 0 || !in) return Status(Code::kInternal, "cannot read " + path);
  const std::string got = hasher.Final();
  if (got.size() != kShaBytes || std::memcmp(got.data(), want, kShaBytes) != 0) {
    return Status(Code::kDataLoss, path + " is corrupt: snapshot checksum mismatch (expected sha256 " +
                                       Hex(want, kShaBytes) + ", got " +
                                       Hex(reinterpret_cast<const unsigned char*>(got.data()), got.size()) + ")");
  }
  return static_cast<int64_t>(size - kShaBytes);
}

int64_t Be64(std::string_view s) { return static_cast<int64_t>(storage::DecodeFixed64BE(s.substr(0, 8))); }

// etcd's revision key: main and sub, and whether it marks a deletion.
bool ParseRevKey(std::string_view k, int64_t* main, int64_t* sub, bool* tombstone) {
  if ((k.size() != kRevBytes && k.size() != kRevBytes + 1) || k[8] != '_') return false;
  if (k.size() == kRevBytes + 1 && k[kRevBytes] != 't') return false;
  *main = Be64(k);
  *sub = Be64(k.substr(9));
  *tombstone = k.size() == kRevBytes + 1;
  return *main > 0 && *sub >= 0;
}

// Writes records in batches of kBatchRecords.
class Loader {
 public:
  explicit Loader(storage::Engine* engine)
      : engine_(engine), batch_(std::make_unique<storage::WriteBatch>(engine)) {}
  Status Put(Column c, std::string_view k, std::string_view v) {
    batch_->Put(c, k, v);
    if (++count_ < kBatchRecords) return Status::Ok();
    return Flush(false);
  }
  Status Flush(bool sync) {
    Status s = engine_->Write(*batch_, sync);
    batch_ = std::make_unique<storage::WriteBatch>(engine_);
    count_ = 0;
    return s;
  }

 private:
  storage::Engine* engine_;
  std::unique_ptr<storage::WriteBatch> batch_;
  size_t count_ = 0;
};

Status Import(const bolt::BoltReader& db, storage::Engine* engine, EtcdImport* out) {
  auto names = db.Buckets();
  if (!names.ok()) return names.status();
  auto has = [&](const char* name) { return std::find(names->begin(), names->end(), name) != names->end(); };
  if (!has("key") || !has("meta")) return Corrupt("no key or meta bucket (not an etcd database?)");

  Loader load(engine);
  int64_t consistent_index = 0;
  int64_t compact = 0, scheduled = 0;
  Status s = db.ForEach("meta", [&](std::string_view k, std::string_view v) {
    if (k == "consistent_index") {
      if (v.size() != 8) return Corrupt("bad consistent_index");
      consistent_index = Be64(v);
    } else if (k == "finishedCompactRev" || k == "scheduledCompactRev") {
      if (v.size() != kRevBytes) return Corrupt("bad " + std::string(k));
      (k == "finishedCompactRev" ? compact : scheduled) = Be64(v);
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;

  // Leases first: a key's attachment needs its lease.
  std::map<int64_t, int64_t> leases;  // id -> TTL
  if (has("lease")) {
    s = db.ForEach("lease", [&](std::string_view k, std::string_view v) {
      leasepb::Lease l;
      if (k.size() != 8 || !l.ParseFromArray(v.data(), static_cast<int>(v.size())) || l.id() != Be64(k)) {
        return Corrupt("bad lease record");
      }
      leases[l.id()] = l.ttl();
      std::string ttl;
      storage::PutFixed64BE(&ttl, static_cast<uint64_t>(l.ttl()));
      return load.Put(Column::kLease, lease::LeaseRowKey(l.id()), ttl);
    });
    if (!s.ok()) return s;
  }

  // Versions in revision order; the latest of each key decides its lease.
  struct Latest {
    bool live = false;
    int64_t lease = 0;
  };
  std::map<std::string, Latest> latest;
  int64_t last_main = 0, last_sub = -1;
  s = db.ForEach("key", [&](std::string_view k, std::string_view v) {
    int64_t main = 0, sub = 0;
    bool tombstone = false;
    if (!ParseRevKey(k, &main, &sub, &tombstone)) return Corrupt("bad revision key");
    if (main < last_main || (main == last_main && sub <= last_sub)) return Corrupt("revisions out of order");
    last_main = main;
    last_sub = sub;
    mvccpb::KeyValue kv;
    if (!kv.ParseFromArray(v.data(), static_cast<int>(v.size())) || kv.key().empty()) {
      return Corrupt("bad key-value at revision " + std::to_string(main));
    }
    if (!tombstone && (kv.mod_revision() != main || kv.create_revision() <= 0 || kv.create_revision() > main ||
                       kv.version() <= 0)) {
      return Corrupt("inconsistent key-value at revision " + std::to_string(main));
    }
    const std::string value = tombstone ? std::string("t") : "v" + std::string(v);
    if (Status st = load.Put(Column::kKey, mvcc::VersionKey(kv.key(), main, sub), value); !st.ok()) return st;
    if (Status st = load.Put(Column::kRev, mvcc::RevKey(main, sub), (tombstone ? "t" : "v") + kv.key()); !st.ok()) {
      return st;
    }
    latest[kv.key()] = Latest{!tombstone, tombstone ? 0 : kv.lease()};
    ++out->versions;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  for (const auto& [key, l] : latest) {
    if (!l.live || l.lease == 0 || leases.count(l.lease) == 0) continue;
    std::string row;
    storage::PutFixed64BE(&row, static_cast<uint64_t>(l.lease));
    row += key;
    if (Status st = load.Put(Column::kLeaseKey, row, ""); !st.ok()) return st;
  }

  // etcd: the current revision is the last version's, and never below the
  // compacted one; a store with no versions is at revision 1.
  int64_t rev = std::max<int64_t>({last_main, compact, 1});
  storage::WriteBatch meta(engine);
  auto put = [&meta](std::string_view k, int64_t v) {
    std::string e;
    storage::PutFixed64BE(&e, static_cast<uint64_t>(v));
    meta.Put(Column::kMeta, k, e);
  };
  put(mvcc::KvStore::kMetaCurrentRev, rev);
  if (compact > 0) {
    put(mvcc::KvStore::kMetaCompactRev, compact);
    put(mvcc::KvStore::kMetaScheduledCompactRev, std::max(compact, scheduled));
    put(mvcc::KvStore::kMetaFinishedCompactRev, compact);
  }
  apply::Applier::PutAppliedIndex(&meta, static_cast<uint64_t>(consistent_index));
  // Users, roles and the auth switch (etcd's auth, authUsers, authRoles).
  apply::StoredAuth auth;
  if (has("auth")) {
    s = db.ForEach("auth", [&](std::string_view k, std::string_view v) {
      if (k == "authEnabled") auth.enabled = v == std::string_view("\x01", 1);
      if (k == "authRevision") {
        if (v.size() != 8) return Corrupt("bad authRevision");
        auth.revision = std::max<uint64_t>(1, static_cast<uint64_t>(Be64(v)));
      }
      return Status::Ok();
    });
    if (!s.ok()) return s;
  }
  if (has("authUsers")) {
    s = db.ForEach("authUsers", [&](std::string_view k, std::string_view v) {
      authpb::User u;
      if (!u.ParseFromArray(v.data(), static_cast<int>(v.size())) || u.name() != k) return Corrupt("bad user record");
      auth.users.push_back(std::move(u));
      return Status::Ok();
    });
    if (!s.ok()) return s;
  }
  if (has("authRoles")) {
    s = db.ForEach("authRoles", [&](std::string_view k, std::string_view v) {
      authpb::Role r;
      if (!r.ParseFromArray(v.data(), static_cast<int>(v.size())) || r.name() != k) return Corrupt("bad role record");
      auth.roles.push_back(std::move(r));
      return Status::Ok();
    });
    if (!s.ok()) return s;
  }
  apply::AuthStore::WriteStored(&meta, auth);
  out->users = auth.users.size();
  out->roles = auth.roles.size();
  out->auth_enabled = auth.enabled;
  meta.Put(Column::kMeta, meta::kFormat, meta::kFormatV1);
  if (Status st = load.Flush(false); !st.ok()) return st;
  if (Status st = engine->Write(meta, /*sync=*/true); !st.ok()) return st;

  out->revision = rev;
  out->compact_revision = compact;
  out->leases = static_cast<int64_t>(leases.size());
  out->consistent_index = static_cast<uint64_t>(consistent_index);
  if (scheduled > compact) {
    out->warnings.push_back("the snapshot was taken during a compaction to revision " + std::to_string(scheduled) +
                            ": it is finished at start-up");
  }
  return Status::Ok();
}

}  // namespace

bool IsEtcdSnapshot(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[64] = {};
  in.read(head, sizeof(head));
  const std::string_view got(head, static_cast<size_t>(in.gcount()));
  // Or cut inside its first page: a meta page header (page 0, flag 0x04).
  return bolt::LooksLikeBolt(got) ||
         (got.size() >= 10 && got.substr(0, 10) == std::string_view("\0\0\0\0\0\0\0\0\x04\0", 10));
}

Result<EtcdImport> ImportEtcdSnapshot(const std::string& path, const std::string& db_path, bool skip_hash_check) {
  std::error_code ec;
  if (fs::exists(db_path, ec) && !fs::is_empty(db_path, ec)) {
    return Status(Code::kAlreadyExists, "restore: " + db_path + " already exists and is not empty");
  }
  auto size = CheckHash(path, skip_hash_check);
  if (!size.ok()) return size.status();
  auto db = bolt::BoltReader::Open(path, *size);
  if (!db.ok()) return db.status();
  EtcdImport out;
  Status s;
  {  // the database is closed before a failed import removes it
    storage::EngineOptions eo;
    eo.path = db_path;
    eo.block_cache_bytes = 8 << 20;
    auto engine = storage::Engine::Open(eo);
    if (!engine.ok()) {
      s = engine.status();
    } else {
      s = Import(**db, engine->get(), &out);
    }
  }
  if (!s.ok()) {
    fs::remove_all(db_path, ec);
    return s;
  }
  return out;
}

// ------------------------------------------------------------------ export

namespace {

std::string Fixed64(uint64_t v) {
  std::string out;
  storage::PutFixed64BE(&out, v);
  return out;
}

// etcd's types.ID.String(): hex, no padding.
std::string IdString(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(id));
  return buf;
}

constexpr const char* kBuckets[] = {"alarm",  "auth",    "authRoles",       "authUsers", "cluster",
                                    "key",    "lease",   "members",         "members_removed", "meta"};
constexpr size_t kBucketCount = sizeof(kBuckets) / sizeof(kBuckets[0]);

}  // namespace

// The records of etcd's buckets for a database at a snapshot, in bbolt's
// order, fed to a writer a few at a time.
class EtcdSnapshotStream::Records {
 public:
  Records(storage::Engine* engine, const storage::Snapshot* snapshot) : engine_(engine), snapshot_(snapshot) {}

  // Feeds up to `budget` records; true once every bucket is written.
  Result<bool> Feed(bolt::BoltWriter* w, size_t budget) {
    while (budget > 0) {
      if (bucket_ == kBucketCount) return true;
      const std::string_view name = kBuckets[bucket_];
      if (!begun_) {
        if (Status s = w->BeginBucket(name); !s.ok()) return s;
        begun_ = true;
        if (Status s = Prepare(name); !s.ok()) return s;
      }
      std::string key, value;
      auto more = Next(name, &key, &value);
      if (!more.ok()) return more.status();
      if (!*more) {
        ++bucket_;
        begun_ = false;
        continue;
      }
      if (Status s = w->Put(key, value); !s.ok()) return s;
      --budget;
    }
    return bucket_ == kBucketCount;
  }

 private:
  Status Prepare(std::string_view name) {
    small_.clear();
    small_pos_ = 0;
    it_.reset();
    if (name == "key") {
      if (Status st = CollectCompacted(); !st.ok()) return st;
      it_ = engine_->NewIterator(Column::kRev, snapshot_);
      it_->SeekToFirst();
    } else if (name == "lease") {
      it_ = engine_->NewIterator(Column::kLease, snapshot_);
      it_->SeekToFirst();
    } else if (name == "auth" || name == "authUsers" || name == "authRoles") {
      // etcd's auth buckets: the switch and revision; users and roles as
      // authpb records by name (the same records cairn keeps).
      auto stored = apply::AuthStore::ReadStored(engine_, snapshot_);
      if (!stored.ok()) return stored.status();
      if (name == "auth") {
        small_.emplace_back("authEnabled", std::string(1, stored->enabled ? '\x01' : '\x00'));
        small_.emplace_back("authRevision", Fixed64(stored->revision));
      } else if (name == "authUsers") {
        for (const auto& u : stored->users) small_.emplace_back(u.name(), u.SerializeAsString());
      } else {
        for (const auto& r : stored->roles) small_.emplace_back(r.name(), r.SerializeAsString());
      }
      std::sort(small_.begin(), small_.end());
    } else if (name == "cluster") {
      small_.emplace_back("clusterVersion", "3.5.0");
    } else if (name == "members" || name == "members_removed") {
      std::vector<uint64_t> removed;
      auto members = apply::Applier::MembersOf(engine_, snapshot_, &removed);
      if (!members.ok()) return members.status();
      if (name == "members") {
        for (const auto& m : *members) {
          // etcd's membership.Member as JSON.
          nlohmann::ordered_json j;
          j["id"] = m.id();
          j["peerURLs"] = std::vector<std::string>(m.peer_urls().begin(), m.peer_urls().end());
          if (m.is_learner()) j["isLearner"] = true;
          if (!m.name().empty()) j["name"] = m.name();
          if (m.client_urls_size() > 0) {
            j["clientURLs"] = std::vector<std::string>(m.client_urls().begin(), m.client_urls().end());
          }
          small_.emplace_back(IdString(m.id()), j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        }
      } else {
        for (uint64_t id : removed) small_.emplace_back(IdString(id), "removed");
      }
      std::sort(small_.begin(), small_.end());
    } else if (name == "meta") {
      auto applied = apply::Applier::AppliedIndexOf(engine_, snapshot_);
      if (!applied.ok()) return applied.status();
      small_.emplace_back("consistent_index", Fixed64(*applied));
      for (const auto& [mine, theirs] : {std::pair{mvcc::KvStore::kMetaFinishedCompactRev, "finishedCompactRev"},
                                         std::pair{mvcc::KvStore::kMetaScheduledCompactRev, "scheduledCompactRev"}}) {
        std::string v;
        auto found = engine_->Get(Column::kMeta, mine, &v, snapshot_);
        if (!found.ok()) return found.status();
        if (*found && v.size() == 8) small_.emplace_back(theirs, mvcc::EtcdRevisionKey(Be64(v), 0, false));
      }
    }
    return Status::Ok();
  }

  // The versions a compaction kept whose change-log rows it removed (the
  // change log starts at the compacted revision; a key's newest version
  // below it stays in kKey only), in revision order.
  Status CollectCompacted() {
    compacted_.clear();
    compacted_pos_ = 0;
    int64_t upto = 0;
    for (auto k : {mvcc::KvStore::kMetaFinishedCompactRev, mvcc::KvStore::kMetaScheduledCompactRev}) {
      std::string v;
      auto found = engine_->Get(Column::kMeta, k, &v, snapshot_);
      if (!found.ok()) return found.status();
      if (*found && v.size() == 8) upto = std::max(upto, Be64(v));
    }
    if (upto <= 0) return Status::Ok();
    auto it = engine_->NewIterator(Column::kKey, snapshot_);
    std::string key, row;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      int64_t main = 0, sub = 0;
      if (!mvcc::DecodeVersionKey(it->key(), &key, &main, &sub)) {
        return Status(Code::kDataLoss, "snapshot: malformed version key");
      }
      if (main > upto) continue;
      auto found = engine_->Get(Column::kRev, mvcc::RevKey(main, sub), &row, snapshot_);
      if (!found.ok()) return found.status();
      if (!*found) compacted_.push_back({main, sub, key});
    }
    if (!it->status().ok()) return it->status();
    std::sort(compacted_.begin(), compacted_.end());
    return Status::Ok();
  }

  Result<bool> Next(std::string_view name, std::string* key, std::string* value) {
    if (name == "key") {
      if (ahead_pos_ == ahead_.size()) {
        if (Status st = ReadAhead(); !st.ok()) return st;
      }
      const bool from_log = ahead_pos_ < ahead_.size();
      const int64_t main = from_log ? ahead_[ahead_pos_].main : 0;
      const int64_t sub = from_log ? ahead_[ahead_pos_].sub : 0;
      if (compacted_pos_ < compacted_.size() &&
          (!from_log || std::tie(compacted_[compacted_pos_].main, compacted_[compacted_pos_].sub) <
                            std::tie(main, sub))) {
        const Compacted& c = compacted_[compacted_pos_++];
        std::string version;
        auto found = engine_->Get(Column::kKey, mvcc::VersionKey(c.key, c.main, c.sub), &version, snapshot_);
        if (!found.ok()) return found.status();
        if (!*found || version.empty()) return Status(Code::kDataLoss, "snapshot: a kept version vanished");
        *value = version[0] == 't' ? mvcc::EtcdTombstoneValue(c.key) : version.substr(1);
        *key = mvcc::EtcdRevisionKey(c.main, c.sub, version[0] == 't');
        return true;
      }
      if (!from_log) return FinishIterator();
      Ahead& a = ahead_[ahead_pos_++];
      *key = mvcc::EtcdRevisionKey(a.main, a.sub, a.tombstone);
      *value = std::move(a.value);
      return true;
    }
    if (name == "lease") {
      if (!it_->Valid()) return FinishIterator();
      if (it_->key().size() != 8 || it_->value().size() != 8) {
        return Status(Code::kDataLoss, "snapshot: malformed lease record");
      }
      leasepb::Lease l;
      l.set_id(Be64(it_->key()));
      l.set_ttl(Be64(it_->value()));
      *key = std::string(it_->key());
      *value = l.SerializeAsString();
      it_->Next();
      return true;
    }
    if (small_pos_ == small_.size()) return false;
    *key = small_[small_pos_].first;
    *value = small_[small_pos_].second;
    ++small_pos_;
    return true;
  }

  // The next change-log rows with their values, the versions read in one
  // MultiGet (a point read per row is most of a snapshot's time).
  Status ReadAhead() {
    constexpr size_t kBatch = 512;
    ahead_.clear();
    ahead_pos_ = 0;
    std::vector<std::string> version_keys;
    std::vector<size_t> wanted;  // index in ahead_ of each version key
    for (; it_->Valid() && ahead_.size() < kBatch; it_->Next()) {
      Ahead a;
      const std::string_view change = it_->value();
      if (!mvcc::DecodeRevKey(it_->key(), &a.main, &a.sub) || change.empty() ||
          (change[0] != 'v' && change[0] != 't')) {
        return Status(Code::kDataLoss, "snapshot: malformed change log record");
      }
      a.tombstone = change[0] == 't';
      const std::string_view user_key = change.substr(1);
      if (a.tombstone) {
        a.value = mvcc::EtcdTombstoneValue(user_key);
      } else {
        version_keys.push_back(mvcc::VersionKey(user_key, a.main, a.sub));
        wanted.push_back(ahead_.size());
      }
      ahead_.push_back(std::move(a));
    }
    if (!it_->status().ok()) return it_->status();
    if (version_keys.empty()) return Status::Ok();
    std::vector<std::string> versions;
    std::vector<bool> found;
    if (Status st = engine_->MultiGet(Column::kKey, version_keys, &versions, &found, snapshot_); !st.ok()) return st;
    for (size_t i = 0; i < wanted.size(); ++i) {
      Ahead& a = ahead_[wanted[i]];
      if (!found[i] || versions[i].empty() || versions[i][0] != 'v') {
        return Status(Code::kDataLoss, "snapshot: no version for the change at revision " + std::to_string(a.main));
      }
      a.value = versions[i].substr(1);
    }
    return Status::Ok();
  }

  Result<bool> FinishIterator() {
    Status s = it_->status();
    it_.reset();
    if (!s.ok()) return s;
    return false;
  }

  storage::Engine* engine_;
  const storage::Snapshot* snapshot_;
  size_t bucket_ = 0;
  bool begun_ = false;
  std::unique_ptr<storage::Iterator> it_;
  std::vector<std::pair<std::string, std::string>> small_;
  size_t small_pos_ = 0;
  struct Compacted {
    int64_t main;
    int64_t sub;
    std::string key;
    bool operator<(const Compacted& o) const { return std::tie(main, sub) < std::tie(o.main, o.sub); }
  };
  std::vector<Compacted> compacted_;  // one per key at most
  size_t compacted_pos_ = 0;
  struct Ahead {
    int64_t main = 0, sub = 0;
    bool tombstone = false;
    std::string value;  // etcd's record value
  };
  std::vector<Ahead> ahead_;  // change-log rows read ahead, with their values
  size_t ahead_pos_ = 0;
};

struct EtcdSnapshotStream::Hasher : Sha256 {};

EtcdSnapshotStream::EtcdSnapshotStream(storage::Engine* engine, std::shared_ptr<const storage::Snapshot> snapshot)
    : engine_(engine), snapshot_(std::move(snapshot)) {}

EtcdSnapshotStream::~EtcdSnapshotStream() = default;

Result<bool> EtcdSnapshotStream::NextChunk(std::string* out, size_t max_bytes) {
  constexpr size_t kRecordsPerStep = 1024;
  if (!planned_) {
    planned_ = true;
    // Pass one: where the pages go.
    auto plan = bolt::BoltWriter::Plan();
    Records records(engine_, snapshot_.get());
    for (;;) {
      auto all = records.Feed(plan.get(), kRecordsPerStep);
      if (!all.ok()) return all.status();
      if (*all) break;
    }
    auto layout = plan->Finish();
    if (!layout.ok()) return layout.status();
    total_bytes_ = layout->pages * bolt::kDefaultPageSize + kShaBytes;
    hasher_ = std::make_unique<Hasher>();
    records_ = std::make_unique<Records>(engine_, snapshot_.get());
    writer_ = bolt::BoltWriter::Stream(*layout, [this](std::string_view bytes) {
      hasher_->Update(bytes);
      pending_.append(bytes);
      return Status::Ok();
    });
  }
  // Pass two: the pages, then the hash of them.
  while (pending_.size() < max_bytes && !done_ && writer_) {
    if (!fed_) {
      auto all = records_->Feed(writer_.get(), kRecordsPerStep);
      if (!all.ok()) return all.status();
      if (!*all) continue;
      fed_ = true;
    }
    auto finished = writer_->Finish();
    if (!finished.ok()) return finished.status();
    pending_ += hasher_->Final();
    writer_.reset();
    records_.reset();
  }
  if (pending_.empty()) {
    done_ = true;
    return false;
  }
  const size_t n = std::min(max_bytes, pending_.size());
  out->append(pending_, 0, n);
  pending_.erase(0, n);
  if (pending_.empty() && !writer_) done_ = true;
  return true;
}

Status WriteEtcdSnapshot(storage::Engine* engine, std::shared_ptr<const storage::Snapshot> snapshot,
                         const std::string& path) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status(Code::kInternal, "cannot create " + path);
  EtcdSnapshotStream stream(engine, std::move(snapshot));
  for (;;) {
    std::string chunk;
    auto more = stream.NextChunk(&chunk, 1 << 20);
    if (!more.ok()) return more.status();
    if (!*more) break;
    f.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  f.close();
  if (!f) return Status(Code::kInternal, "writing " + path);
  return Status::Ok();
}

}  // namespace cairn::server
