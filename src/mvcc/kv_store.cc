#include "mvcc/kv_store.h"

#include <algorithm>
#include <boost/crc.hpp>
#include <mutex>
#include <tuple>
#include <unordered_set>

#include "common/check.h"
#include "mvcc/key_codec.h"

namespace cairn::mvcc {

using storage::Column;

namespace {
constexpr char kLive = 'v';
constexpr char kTombstone = 't';
constexpr size_t kCompactionChunk = 10000;

bool IsFromKey(std::string_view end) { return end.size() == 1 && end[0] == '\0'; }

std::string LeaseKeyRow(int64_t lease, std::string_view key) {
  std::string out;
  storage::PutFixed64BE(&out, static_cast<uint64_t>(lease));
  out.append(key);
  return out;
}

std::string EncodeMeta(int64_t v) {
  std::string out;
  storage::PutFixed64BE(&out, static_cast<uint64_t>(v));
  return out;
}

Result<int64_t> ReadMeta(storage::Engine* engine, std::string_view key, int64_t dflt) {
  std::string v;
  auto found = engine->Get(Column::kMeta, key, &v);
  if (!found.ok()) return found.status();
  if (!*found) return dflt;
  if (v.size() != 8) return Status(Code::kDataLoss, "mvcc: malformed meta " + std::string(key));
  return static_cast<int64_t>(storage::DecodeFixed64BE(v));
}

// The range scan shared by read and write transactions. `make_iter` returns
// an iterator over column kKey bounded to [lower, upper).
template <typename MakeIter>
Result<RangeResult> RangeImpl(MakeIter make_iter, std::string_view key, std::string_view end,
                              const RangeOptions& options, int64_t cur_rev, int64_t compact_rev) {
  int64_t rev = options.rev;
  if (rev > cur_rev) return errors::FutureRev();
  if (rev <= 0) rev = cur_rev;
  if (rev < compact_rev) return errors::Compacted();

  RangeResult result;
  result.rev = cur_rev;
  const bool single = end.empty();
  if (!single && !IsFromKey(end) && end <= key) return result;

  std::string lower = single ? KeyPrefix(key) : EscapeKey(key);
  std::string upper = single ? KeyPrefixEnd(key) : (IsFromKey(end) ? "" : EscapeKey(end));
  auto it = make_iter(lower, upper);
  const uint64_t inverted = ~static_cast<uint64_t>(rev);
  it->Seek(lower);
  while (it->Valid()) {
    std::string_view encoded = it->key();
    if (encoded.size() < kVersionSuffixBytes + 2) {
      return Status(Code::kDataLoss, "mvcc: malformed version key");
    }
    const size_t prefix_size = encoded.size() - kVersionSuffixBytes;
    uint64_t version_inverted = storage::DecodeFixed64BE(encoded.substr(prefix_size, 8));
    if (version_inverted < inverted) {
      // Newer than `rev`: jump to the newest version <= rev of this key.
      // (Copy the prefix first: Seek invalidates the iterator's key.)
      std::string seek(encoded.substr(0, prefix_size));
      storage::PutFixed64BE(&seek, inverted);
      storage::PutFixed64BE(&seek, 0);
      it->Seek(seek);
      if (!it->Valid()) break;
      if (it->key().size() != prefix_size + kVersionSuffixBytes ||
          it->key().substr(0, prefix_size) != std::string_view(seek).substr(0, prefix_size)) {
        continue;  // no version <= rev; now on the next key
      }
      encoded = it->key();
    }
    std::string_view value = it->value();
    if (value.empty()) return Status(Code::kDataLoss, "mvcc: empty version record");
    if (value[0] == kLive) {
      result.count++;
      if (!options.count_only &&
          (options.limit <= 0 || static_cast<int64_t>(result.kvs.size()) < options.limit)) {
        mvccpb::KeyValue kv;
        if (!kv.ParseFromArray(value.data() + 1, static_cast<int>(value.size() - 1))) {
          return Status(Code::kDataLoss, "mvcc: malformed KeyValue");
        }
        result.kvs.push_back(std::move(kv));
      }
    }
    if (single) break;
    it->Seek(NextKeySeekTarget(encoded));
  }
  Status s = it->status();
  if (!s.ok()) return s;
  return result;
}

// The newest version of a key through `it` (bounded to the key's versions).
Result<bool> LatestLive(storage::Iterator* it, mvccpb::KeyValue* kv) {
  it->SeekToFirst();
  if (!it->Valid()) {
    Status s = it->status();
    if (!s.ok()) return s;
    return false;
  }
  std::string_view value = it->value();
  if (value.empty() || value[0] != kLive) return false;
  if (!kv->ParseFromArray(value.data() + 1, static_cast<int>(value.size() - 1))) {
    return Status(Code::kDataLoss, "mvcc: malformed KeyValue");
  }
  return true;
}
}  // namespace

Result<bool> ParseVersion(std::string_view encoded_key, std::string_view value,
                          mvccpb::KeyValue* kv, bool* tombstone) {
  if (value.empty()) return Status(Code::kDataLoss, "mvcc: empty version record");
  if (value[0] == kTombstone) {
    *tombstone = true;
    std::string key;
    int64_t rev = 0, sub = 0;
    if (!DecodeVersionKey(encoded_key, &key, &rev, &sub)) {
      return Status(Code::kDataLoss, "mvcc: malformed version key");
    }
    kv->Clear();
    kv->set_key(key);
    kv->set_mod_revision(rev);
    return true;
  }
  *tombstone = false;
  if (!kv->ParseFromArray(value.data() + 1, static_cast<int>(value.size() - 1))) {
    return Status(Code::kDataLoss, "mvcc: malformed KeyValue");
  }
  return true;
}

// ---------------------------------------------------------------- ReadTxn

Result<RangeResult> ReadTxn::Range(std::string_view key, std::string_view end,
                                   const RangeOptions& options) {
  auto make_iter = [&](std::string_view lower, std::string_view upper) {
    return store_->engine_->NewIterator(Column::kKey, snapshot_.get(), lower, upper);
  };
  return RangeImpl(make_iter, key, end, options, rev_, compact_rev_);
}

Result<std::vector<mvccpb::Event>> ReadTxn::Events(int64_t from_rev, int64_t to_rev,
                                                   size_t max_events, bool with_prev_kv,
                                                   int64_t* next_rev) {
  std::vector<mvccpb::Event> events;
  *next_rev = from_rev;
  if (from_rev > to_rev) return events;
  auto it = store_->engine_->NewIterator(Column::kRev, snapshot_.get(), RevKey(from_rev, 0),
                                         RevKey(to_rev + 1, 0));
  int64_t last_main = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    int64_t main = 0, sub = 0;
    if (!DecodeRevKey(it->key(), &main, &sub)) {
      return Status(Code::kDataLoss, "mvcc: malformed revision key");
    }
    if (main != last_main && events.size() >= max_events) break;
    last_main = main;
    std::string_view row = it->value();
    if (row.empty()) return Status(Code::kDataLoss, "mvcc: empty revision record");
    std::string key(row.substr(1));
    mvccpb::Event ev;
    if (row[0] == kTombstone) {
      ev.set_type(mvccpb::Event::DELETE);
      ev.mutable_kv()->set_key(key);
      ev.mutable_kv()->set_mod_revision(main);
    } else {
      std::string value;
      auto found = store_->engine_->Get(Column::kKey, VersionKey(key, main, sub), &value,
                                        snapshot_.get());
      if (!found.ok()) return found.status();
      CHECK(*found) << "revision " << main << " has no version record";
      if (!ev.mutable_kv()->ParseFromArray(value.data() + 1, static_cast<int>(value.size() - 1))) {
        return Status(Code::kDataLoss, "mvcc: malformed KeyValue");
      }
      ev.set_type(mvccpb::Event::PUT);
    }
    const bool create = ev.type() == mvccpb::Event::PUT &&
                        ev.kv().create_revision() == ev.kv().mod_revision();
    if (with_prev_kv && !create) {  // etcd: no prev_kv on create events
      auto pit = store_->engine_->NewIterator(Column::kKey, snapshot_.get(), KeyPrefix(key),
                                              KeyPrefixEnd(key));
      // As etcd: the key as of the previous main revision.
      pit->Seek(VersionSeekKey(key, main - 1));
      if (pit->Valid() && !pit->value().empty() && pit->value()[0] == kLive) {
        ev.mutable_prev_kv()->ParseFromArray(pit->value().data() + 1,
                                             static_cast<int>(pit->value().size() - 1));
      }
    }
    events.push_back(std::move(ev));
    *next_rev = main + 1;
  }
  Status s = it->status();
  if (!s.ok()) return s;
  if (!it->Valid()) *next_rev = to_rev + 1;  // scanned everything up to to_rev
  return events;
}

// ---------------------------------------------------------------- WriteTxn

WriteTxn::WriteTxn(KvStore* store, storage::WriteBatch* batch, int64_t begin_rev)
    : store_(store),
      batch_(batch),
      begin_rev_(begin_rev >= 0 ? begin_rev : store->CurrentRevision()) {}

int64_t WriteTxn::FirstRev() const { return store_->CompactRevision(); }

Result<RangeResult> WriteTxn::Range(std::string_view key, std::string_view end,
                                    const RangeOptions& options) {
  auto make_iter = [&](std::string_view lower, std::string_view upper) {
    return batch_->NewIterator(Column::kKey, lower, upper);
  };
  return RangeImpl(make_iter, key, end, options, Rev(), store_->CompactRevision());
}

Result<bool> WriteTxn::Get(std::string_view key, mvccpb::KeyValue* kv) {
  auto it = batch_->NewIterator(Column::kKey, KeyPrefix(key), KeyPrefixEnd(key));
  return LatestLive(it.get(), kv);
}

Result<int64_t> WriteTxn::Put(std::string_view key, std::string_view value, int64_t lease) {
  const int64_t rev = begin_rev_ + 1;
  const int64_t sub = static_cast<int64_t>(changes_.size());
  mvccpb::KeyValue prev;
  auto found = Get(key, &prev);
  if (!found.ok()) return found.status();

  mvccpb::Event ev;
  ev.set_type(mvccpb::Event::PUT);
  mvccpb::KeyValue* kv = ev.mutable_kv();
  kv->set_key(std::string(key));
  kv->set_value(std::string(value));
  kv->set_create_revision(*found ? prev.create_revision() : rev);
  kv->set_mod_revision(rev);
  kv->set_version(*found ? prev.version() + 1 : 1);
  kv->set_lease(lease);

  std::string record(1, kLive);
  kv->AppendToString(&record);
  batch_->Put(Column::kKey, VersionKey(key, rev, sub), record);
  std::string row(1, kLive);
  row.append(key);
  batch_->Put(Column::kRev, RevKey(rev, sub), row);
  if (*found && prev.lease() != 0) batch_->Delete(Column::kLeaseKey, LeaseKeyRow(prev.lease(), key));
  if (lease != 0) batch_->Put(Column::kLeaseKey, LeaseKeyRow(lease, key), "");
  SetEventPrevKv(key, *found ? &prev : nullptr, &ev);
  changes_.push_back(std::move(ev));
  return rev;
}

void WriteTxn::SetEventPrevKv(std::string_view key, const mvccpb::KeyValue* latest,
                              mvccpb::Event* ev) {
  // etcd never gives a create event a prev_kv, even when the key existed
  // before this revision (deleted and created again in one txn).
  const bool create = ev->type() == mvccpb::Event::PUT &&
                      ev->kv().create_revision() == ev->kv().mod_revision();
  if (create) {
    changed_keys_.insert(std::string(key));
    return;
  }
  // Watchers get the key as of the previous revision (etcd reads prev_kv at
  // mod_revision - 1), not an earlier change of this same txn.
  if (changed_keys_.insert(std::string(key)).second) {
    if (latest) *ev->mutable_prev_kv() = *latest;
    return;
  }
  auto before = RangeImpl(
      [&](std::string_view lower, std::string_view upper) {
        return batch_->NewIterator(Column::kKey, lower, upper);
      },
      key, "", RangeOptions{0, begin_rev_, false}, begin_rev_ + 1, -1);
  if (before.ok() && !before->kvs.empty()) *ev->mutable_prev_kv() = std::move(before->kvs[0]);
}

Result<std::pair<int64_t, int64_t>> WriteTxn::DeleteRange(std::string_view key,
                                                         std::string_view end) {
  auto existing = Range(key, end, RangeOptions{});
  if (!existing.ok()) return existing.status();
  const int64_t rev = begin_rev_ + 1;
  for (auto& prev : existing->kvs) {
    const int64_t sub = static_cast<int64_t>(changes_.size());
    batch_->Put(Column::kKey, VersionKey(prev.key(), rev, sub), std::string(1, kTombstone));
    std::string row(1, kTombstone);
    row.append(prev.key());
    batch_->Put(Column::kRev, RevKey(rev, sub), row);
    if (prev.lease() != 0) batch_->Delete(Column::kLeaseKey, LeaseKeyRow(prev.lease(), prev.key()));
    mvccpb::Event ev;
    ev.set_type(mvccpb::Event::DELETE);
    ev.mutable_kv()->set_key(prev.key());
    ev.mutable_kv()->set_mod_revision(rev);
    SetEventPrevKv(prev.key(), &prev, &ev);
    changes_.push_back(std::move(ev));
  }
  int64_t n = static_cast<int64_t>(existing->kvs.size());
  return std::make_pair(n, (n != 0 || !changes_.empty()) ? rev : begin_rev_);
}

Result<std::vector<std::string>> WriteTxn::LeaseKeys(int64_t lease) {
  std::string lower, upper;
  storage::PutFixed64BE(&lower, static_cast<uint64_t>(lease));
  storage::PutFixed64BE(&upper, static_cast<uint64_t>(lease) + 1);
  auto it = batch_->NewIterator(Column::kLeaseKey, lower, upper);
  std::vector<std::string> keys;
  for (it->SeekToFirst(); it->Valid(); it->Next()) keys.emplace_back(it->key().substr(8));
  Status s = it->status();
  if (!s.ok()) return s;
  return keys;
}

// ---------------------------------------------------------------- KvStore

KvStore::KvStore(storage::Engine* engine) : engine_(engine) {}

Status KvStore::Open() {
  auto cur = ReadMeta(engine_, kMetaCurrentRev, 1);
  if (!cur.ok()) return cur.status();
  auto compact = ReadMeta(engine_, kMetaCompactRev, -1);
  if (!compact.ok()) return compact.status();
  auto scheduled = ReadMeta(engine_, kMetaScheduledCompactRev, 0);
  if (!scheduled.ok()) return scheduled.status();
  auto finished = ReadMeta(engine_, kMetaFinishedCompactRev, 0);
  if (!finished.ok()) return finished.status();
  current_rev_ = *cur;
  compact_rev_ = *compact;
  if (*scheduled > *finished) return CompactPhysical(*scheduled);
  return Status::Ok();
}

Status KvStore::ReplaceContents(const std::function<Status()>& replace) {
  std::unique_lock<std::shared_mutex> lock(commit_mu_);
  Status s = replace();
  if (!s.ok()) return s;
  auto cur = ReadMeta(engine_, kMetaCurrentRev, 1);
  if (!cur.ok()) return cur.status();
  auto compact = ReadMeta(engine_, kMetaCompactRev, -1);
  if (!compact.ok()) return compact.status();
  current_rev_ = *cur;
  compact_rev_ = *compact;
  return Status::Ok();
}

std::unique_ptr<ReadTxn> KvStore::Read() const {
  auto txn = std::unique_ptr<ReadTxn>(new ReadTxn());
  txn->store_ = this;
  std::shared_lock<std::shared_mutex> lock(commit_mu_);
  txn->snapshot_ = engine_->GetSnapshot();
  txn->rev_ = current_rev_.load();
  txn->compact_rev_ = compact_rev_.load();
  return txn;
}

Status KvStore::Commit(storage::WriteBatch& batch, int64_t new_rev, bool sync) {
  CHECK(new_rev >= current_rev_.load()) << "revision going backwards: " << new_rev;
  if (new_rev != current_rev_.load()) batch.Put(Column::kMeta, kMetaCurrentRev, EncodeMeta(new_rev));
  std::unique_lock<std::shared_mutex> lock(commit_mu_);
  Status s = engine_->Write(batch, sync);
  if (s.ok()) current_rev_ = new_rev;
  return s;
}

Status KvStore::ScheduleCompaction(storage::WriteBatch* batch, int64_t rev) {
  if (rev <= compact_rev_.load()) return errors::Compacted();
  if (rev > current_rev_.load()) return errors::FutureRev();
  batch->Put(Column::kMeta, kMetaCompactRev, EncodeMeta(rev));
  batch->Put(Column::kMeta, kMetaScheduledCompactRev, EncodeMeta(rev));
  return Status::Ok();
}

void KvStore::SetCompactRevisionAfterCommit(int64_t rev) {
  std::unique_lock<std::shared_mutex> lock(commit_mu_);
  if (rev > compact_rev_.load()) compact_rev_ = rev;
}

Status KvStore::CompactPhysical(int64_t rev) {
  // The change log of `rev` itself keeps the rows whose versions survive
  // (the newest version <= rev of a key, when it is a put), so a watch may
  // start at the compacted revision and get what is left of it, as etcd
  // serves a watch from its compacted revision. Its deletes go with their
  // tombstones. Chunks are taken from a cursor because kept rows remain.
  const std::string rev_end = RevKey(rev + 1, 0);
  std::string cursor;
  while (true) {
    // Take a chunk of the change log up to `rev`.
    std::vector<std::string> rows;
    std::vector<std::string> row_keys;
    std::unordered_set<std::string> keys;
    {
      auto it = engine_->NewIterator(Column::kRev, nullptr, cursor, rev_end);
      for (it->SeekToFirst(); it->Valid() && rows.size() < kCompactionChunk; it->Next()) {
        rows.emplace_back(it->key());
        row_keys.emplace_back(it->value().substr(1));
        keys.emplace(it->value().substr(1));
      }
      Status s = it->status();
      if (!s.ok()) return s;
    }
    if (rows.empty()) break;
    cursor = rows.back() + '\0';
    storage::WriteBatch batch(engine_);
    std::unordered_set<std::string> surviving;  // version keys of `rev` that stay
    for (const auto& key : keys) {
      // Keep the newest version <= rev unless it is a tombstone; drop all older.
      auto it = engine_->NewIterator(Column::kKey, nullptr, KeyPrefix(key), KeyPrefixEnd(key));
      it->Seek(VersionSeekKey(key, rev));
      bool first = true;
      for (; it->Valid(); it->Next()) {
        std::string_view value = it->value();
        if (first) {
          first = false;
          if (!value.empty() && value[0] == kLive) {
            surviving.emplace(it->key());
            continue;
          }
        }
        batch.Delete(Column::kKey, it->key());
      }
      Status s = it->status();
      if (!s.ok()) return s;
    }
    for (size_t i = 0; i < rows.size(); i++) {
      int64_t main = 0, sub = 0;
      if (!DecodeRevKey(rows[i], &main, &sub)) {
        return Status(Code::kDataLoss, "mvcc: malformed revision key");
      }
      if (main == rev && surviving.count(VersionKey(row_keys[i], main, sub)) > 0) continue;
      batch.Delete(Column::kRev, rows[i]);
    }
    std::unique_lock<std::shared_mutex> lock(commit_mu_);
    Status s = engine_->Write(batch, false);
    if (!s.ok()) return s;
  }
  storage::WriteBatch done(engine_);
  done.Put(Column::kMeta, kMetaFinishedCompactRev, EncodeMeta(rev));
  std::unique_lock<std::shared_mutex> lock(commit_mu_);
  return engine_->Write(done, false);
}

Result<uint32_t> KvStore::HashKV(int64_t rev, int64_t* hash_rev, int64_t* compact_rev) const {
  auto txn = Read();
  if (rev > txn->Rev()) return errors::FutureRev();
  // etcd: a revision at or below the compacted one is compacted; 0 is the current.
  if (rev > 0 && rev <= txn->FirstRev()) return errors::Compacted();
  if (rev <= 0) rev = txn->Rev();
  *hash_rev = rev;
  *compact_rev = txn->FirstRev();
  const int64_t compacted = *compact_rev;
  // etcd's hash (mvcc HashByRev): CRC-32C of "key", then of every record of
  // its key bucket up to `rev` in revision order, the bucket key (BE64 main
  // '_' BE64 sub, 't' for a deletion) and value (the KeyValue; a deletion's
  // holds only the key) of each. At or below the compacted revision only the
  // records in etcd's keep set at `rev` count: a key's newest version at or
  // below `rev` when the key is live there (so a kept old version no longer
  // counts once the key changed after the compaction); if no key is live at
  // `rev`, all of them (etcd's `len(keep) > 0` test). Cairn's records are
  // etcd's records, so the hash is the one etcd gives for the same history,
  // and the same before and after physical compaction.
  struct Kept {
    int64_t main, sub;
    std::string encoded;  // kKey record key
    bool operator<(const Kept& o) const { return std::tie(main, sub) < std::tie(o.main, o.sub); }
  };
  std::vector<Kept> kept;  // one per key at most
  if (compacted > 0) {
    std::vector<Kept> in_keep, others;  // survivors still the newest at `rev`, and the rest
    bool any_live = false;
    auto it = engine_->NewIterator(Column::kKey, txn->snapshot());
    std::string last_prefix;
    bool seen_rev = false, seen_compacted = false, newest_is_old = false;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view encoded = it->key();
      std::string_view prefix = encoded.substr(0, encoded.size() - kVersionSuffixBytes);
      if (prefix != last_prefix) {  // versions come newest first within a key
        last_prefix = std::string(prefix);
        seen_rev = seen_compacted = newest_is_old = false;
      }
      const int64_t main_rev = VersionMain(encoded);
      if (main_rev > rev || seen_compacted) continue;
      const bool live = !it->value().empty() && it->value()[0] == kLive;
      if (!seen_rev) {  // the key's newest version at `rev`
        seen_rev = true;
        any_live = any_live || live;
        newest_is_old = main_rev <= compacted;
      }
      if (main_rev > compacted) continue;
      seen_compacted = true;  // its newest version at or below the compaction
      if (!live) continue;
      std::string key;
      int64_t main = 0, sub = 0;
      if (!DecodeVersionKey(encoded, &key, &main, &sub)) return Status(Code::kDataLoss, "mvcc: malformed version key");
      (newest_is_old ? in_keep : others).push_back({main, sub, std::string(encoded)});
    }
    if (Status st = it->status(); !st.ok()) return st;
    kept = std::move(in_keep);
    if (!any_live) kept.insert(kept.end(), others.begin(), others.end());
    std::sort(kept.begin(), kept.end());
  }

  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes("key", 3);
  auto record = [&crc](int64_t main, int64_t sub, bool tombstone, std::string_view kv) {
    const std::string k = EtcdRevisionKey(main, sub, tombstone);
    crc.process_bytes(k.data(), k.size());
    crc.process_bytes(kv.data(), kv.size());
  };
  std::string value;
  for (const Kept& k : kept) {
    auto found = engine_->Get(Column::kKey, k.encoded, &value, txn->snapshot());
    if (!found.ok()) return found.status();
    if (!*found || value.empty()) return Status(Code::kDataLoss, "mvcc: a kept version vanished");
    record(k.main, k.sub, false, std::string_view(value).substr(1));
  }
  auto it = engine_->NewIterator(Column::kRev, txn->snapshot(), RevKey(std::max<int64_t>(compacted, 0) + 1, 0),
                                 RevKey(rev + 1, 0));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    int64_t main = 0, sub = 0;
    std::string_view row = it->value();
    if (!DecodeRevKey(it->key(), &main, &sub) || row.empty()) return Status(Code::kDataLoss, "mvcc: malformed change log");
    const std::string key(row.substr(1));
    if (row[0] == kTombstone) {
      record(main, sub, true, EtcdTombstoneValue(key));
      continue;
    }
    auto found = engine_->Get(Column::kKey, VersionKey(key, main, sub), &value, txn->snapshot());
    if (!found.ok()) return found.status();
    if (!*found || value.empty() || value[0] != kLive) return Status(Code::kDataLoss, "mvcc: a change without its version");
    record(main, sub, false, std::string_view(value).substr(1));
  }
  if (Status st = it->status(); !st.ok()) return st;
  return static_cast<uint32_t>(crc.checksum());
}

}  // namespace cairn::mvcc
