#include "server/etcd_snapshot.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "apply/applier.h"
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

// etcdctl's check: a file whose size is 32 past a multiple of 512 carries
// the SHA-256 of what precedes it. Returns the database's size.
Result<int64_t> CheckHash(const std::string& path, bool skip_hash_check) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return Status(Code::kNotFound, "cannot read " + path + ": " + ec.message());
  const bool has_hash = size % 512 == kShaBytes;
  if (!has_hash) {
    if (!skip_hash_check) return Status(Code::kDataLoss, "snapshot missing hash but --skip-hash-check=false");
    return static_cast<int64_t>(size);
  }
  std::ifstream in(path, std::ios::binary);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  uint64_t left = size - kShaBytes;
  while (left > 0 && in) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    in.read(buf.data(), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in.gcount()) != n) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), n);
    left -= n;
  }
  unsigned char want[kShaBytes];
  in.read(reinterpret_cast<char*>(want), kShaBytes);
  if (left != 0 || !in) return Status(Code::kInternal, "cannot read " + path);
  unsigned char got[EVP_MAX_MD_SIZE];
  unsigned int got_len = 0;
  EVP_DigestFinal_ex(ctx.get(), got, &got_len);
  if (std::memcmp(got, want, kShaBytes) != 0) {
    return Status(Code::kDataLoss, "expected sha256 " + Hex(want, kShaBytes) + ", got " + Hex(got, kShaBytes));
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
  bool auth = false;
  for (const char* b : {"authUsers", "authRoles"}) {
    if (!has(b)) continue;
    s = db.ForEach(b, [&](std::string_view, std::string_view) {
      auth = true;
      return Status::Ok();
    });
    if (!s.ok()) return s;
  }
  if (has("auth")) {
    s = db.ForEach("auth", [&](std::string_view k, std::string_view v) {
      if (k == "authEnabled" && v == std::string_view("\x01", 1)) auth = true;
      return Status::Ok();
    });
    if (!s.ok()) return s;
  }
  if (auth) out->warnings.push_back("the snapshot's users, roles and auth setting are not restored: cairn has no auth yet");
  return Status::Ok();
}

}  // namespace

bool IsEtcdSnapshot(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[64] = {};
  in.read(head, sizeof(head));
  return bolt::LooksLikeBolt(std::string_view(head, static_cast<size_t>(in.gcount())));
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

}  // namespace cairn::server
