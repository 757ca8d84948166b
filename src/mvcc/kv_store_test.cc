#include "mvcc/kv_store.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "mvcc/key_codec.h"

namespace cairn::mvcc {
namespace {

using google::protobuf::util::MessageDifferencer;
using storage::Column;

const std::string kFromKey(1, '\0');

// One change of a write transaction: a put (end unused) or a delete of the
// range [key, end) with etcd's encoding of end ("" single key, "\0" from key).
struct Op {
  enum Type { kPut, kDelete } type;
  std::string key;
  std::string value_or_end;
  int64_t lease = 0;
};
Op PutOp(std::string key, std::string value, int64_t lease = 0) {
  return {Op::kPut, std::move(key), std::move(value), lease};
}
Op DelOp(std::string key, std::string end = "") {
  return {Op::kDelete, std::move(key), std::move(end), 0};
}

std::string Describe(const mvccpb::KeyValue& kv) {
  return testing::PrintToString(kv.key()) + "=" + testing::PrintToString(kv.value()) + " c" +
         std::to_string(kv.create_revision()) + " m" + std::to_string(kv.mod_revision()) + " v" +
         std::to_string(kv.version()) + " l" + std::to_string(kv.lease());
}

class KvStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kv_store_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open();
  }
  void TearDown() override {
    store_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Open() {
    storage::EngineOptions eo;
    eo.path = dir_ + "/db";
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    store_ = std::make_unique<KvStore>(engine_.get());
    Status s = store_->Open();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Closes and reopens the engine and the store, as a restart does.
  void Reopen() {
    store_.reset();
    engine_.reset();
    Open();
  }

  // Runs `ops` in one write transaction and commits it. Returns the
  // revision after commit; the transaction's events land in last_changes_.
  int64_t Txn(const std::vector<Op>& ops) {
    storage::WriteBatch batch(engine_.get());
    WriteTxn txn(store_.get(), &batch);
    for (const auto& op : ops) {
      if (op.type == Op::kPut) {
        auto r = txn.Put(op.key, op.value_or_end, op.lease);
        EXPECT_TRUE(r.ok()) << r.status().ToString();
      } else {
        auto r = txn.DeleteRange(op.key, op.value_or_end);
        EXPECT_TRUE(r.ok()) << r.status().ToString();
      }
    }
    last_changes_ = txn.changes();
    Status s = store_->Commit(batch, txn.end_rev(), false);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return txn.end_rev();
  }
  int64_t Put(const std::string& key, const std::string& value, int64_t lease = 0) {
    return Txn({PutOp(key, value, lease)});
  }
  int64_t Delete(const std::string& key, const std::string& end = "") {
    return Txn({DelOp(key, end)});
  }

  Result<RangeResult> Range(const std::string& key, const std::string& end, int64_t rev = 0,
                            int64_t limit = 0, bool count_only = false) {
    RangeOptions ro;
    ro.rev = rev;
    ro.limit = limit;
    ro.count_only = count_only;
    return store_->Read()->Range(key, end, ro);
  }
  std::optional<mvccpb::KeyValue> Get(const std::string& key, int64_t rev = 0) {
    auto r = Range(key, "", rev);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || r->kvs.empty()) return std::nullopt;
    EXPECT_EQ(r->kvs.size(), 1u);
    return r->kvs[0];
  }
  std::vector<std::string> Keys(const std::string& key, const std::string& end, int64_t rev = 0) {
    auto r = Range(key, end, rev);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::vector<std::string> out;
    if (r.ok()) {
      for (const auto& kv : r->kvs) out.push_back(kv.key());
    }
    return out;
  }

  // Schedules (and, unless told otherwise, physically runs) a compaction
  // as the applier does.
  void Compact(int64_t rev, bool physical = true) {
    storage::WriteBatch batch(engine_.get());
    Status s = store_->ScheduleCompaction(&batch, rev);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(store_->Commit(batch, store_->CurrentRevision(), false).ok());
    store_->SetCompactRevisionAfterCommit(rev);
    if (physical) {
      s = store_->CompactPhysical(rev);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }

  // Physical records of column kKey, as "key@main.sub" (t = tombstone).
  std::vector<std::string> VersionRecords() {
    std::vector<std::string> out;
    auto it = engine_->NewIterator(Column::kKey);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string key;
      int64_t main = 0, sub = 0;
      EXPECT_TRUE(DecodeVersionKey(it->key(), &key, &main, &sub));
      out.push_back(key + "@" + std::to_string(main) + "." + std::to_string(sub) +
                    (it->value()[0] == 't' ? "t" : ""));
    }
    return out;
  }
  std::vector<int64_t> ChangeLogRevisions() {
    std::vector<int64_t> out;
    auto it = engine_->NewIterator(Column::kRev);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      int64_t main = 0, sub = 0;
      EXPECT_TRUE(DecodeRevKey(it->key(), &main, &sub));
      out.push_back(main);
    }
    return out;
  }
  std::vector<mvccpb::Event> AllEvents(int64_t from, int64_t to, size_t max_events = 1 << 20,
                                       bool prev_kv = true, int64_t* next_rev = nullptr) {
    int64_t next = 0;
    auto r = store_->Read()->Events(from, to, max_events, prev_kv, &next);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (next_rev) *next_rev = next;
    return r.ok() ? *r : std::vector<mvccpb::Event>{};
  }
  uint32_t Hash(int64_t rev, int64_t* hash_rev = nullptr, int64_t* compact_rev = nullptr) {
    int64_t hr = 0, cr = 0;
    auto h = store_->HashKV(rev, &hr, &cr);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    if (hash_rev) *hash_rev = hr;
    if (compact_rev) *compact_rev = cr;
    return h.ok() ? *h : 0;
  }

  std::string dir_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<KvStore> store_;
  std::vector<mvccpb::Event> last_changes_;
};

using Strings = std::vector<std::string>;

TEST_F(KvStoreTest, RevisionsStartAtOne) {
  EXPECT_EQ(store_->CurrentRevision(), 1);
  EXPECT_EQ(store_->CompactRevision(), -1);  // etcd: Compact(0) is valid once
  auto txn = store_->Read();
  EXPECT_EQ(txn->Rev(), 1);
  auto all = txn->Range("", kFromKey, RangeOptions{});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->rev, 1);
  EXPECT_EQ(all->count, 0);
  // A write transaction without changes does not move the revision.
  EXPECT_EQ(Txn({}), 1);
  EXPECT_EQ(Delete("missing"), 1);
  EXPECT_EQ(store_->CurrentRevision(), 1);
  EXPECT_EQ(Put("a", "1"), 2);
  EXPECT_EQ(store_->CurrentRevision(), 2);
}

TEST_F(KvStoreTest, CreateModVersion) {
  EXPECT_EQ(Put("a", "1", 0), 2);
  auto a = Get("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value(), "1");
  EXPECT_EQ(a->create_revision(), 2);
  EXPECT_EQ(a->mod_revision(), 2);
  EXPECT_EQ(a->version(), 1);
  EXPECT_EQ(Put("b", "x"), 3);
  EXPECT_EQ(Put("a", "2", 77), 4);
  a = Get("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value(), "2");
  EXPECT_EQ(a->create_revision(), 2);
  EXPECT_EQ(a->mod_revision(), 4);
  EXPECT_EQ(a->version(), 2);
  EXPECT_EQ(a->lease(), 77);
  // Several keys in one transaction share the revision.
  EXPECT_EQ(Txn({PutOp("c", "1"), PutOp("d", "1"), PutOp("a", "3")}), 5);
  for (const char* k : {"c", "d", "a"}) EXPECT_EQ(Get(k)->mod_revision(), 5) << k;
  EXPECT_EQ(Get("a")->version(), 3);
  EXPECT_EQ(Get("c")->create_revision(), 5);
}

TEST_F(KvStoreTest, TombstonesAndRecreation) {
  Put("k", "1");  // 2
  Put("k", "2");  // 3
  int64_t del_rev = Delete("k");
  EXPECT_EQ(del_rev, 4);
  EXPECT_FALSE(Get("k"));
  EXPECT_FALSE(Get("k", 4));
  EXPECT_EQ(Get("k", 3)->value(), "2");
  EXPECT_EQ(Delete("k"), 4);  // deleting a deleted key changes nothing
  EXPECT_EQ(Put("k", "new"), 5);
  auto k = Get("k");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->create_revision(), 5);
  EXPECT_EQ(k->version(), 1);
  EXPECT_EQ(k->mod_revision(), 5);
  EXPECT_EQ(Get("k", 2)->version(), 1);
  EXPECT_EQ(Get("k", 3)->version(), 2);
}

TEST_F(KvStoreTest, RangeKinds) {
  const std::string zero(1, '\0');
  const Strings keys = {"a",
                        std::string("a\0", 2),
                        std::string("a\0b", 3),
                        "a\xff",
                        "ab",
                        "b",
                        "ba",
                        zero,
                        "\xff",
                        "\xff\xff"};
  for (const auto& k : keys) Put(k, "v" + k);
  // Single key: exactly that key, never its extensions.
  EXPECT_EQ(Keys("a", ""), Strings{"a"});
  EXPECT_EQ(Keys(std::string("a\0", 2), ""), Strings{std::string("a\0", 2)});
  EXPECT_EQ(Keys(zero, ""), Strings{zero});
  EXPECT_EQ(Keys("nope", ""), Strings{});
  // [key, end)
  EXPECT_EQ(Keys("a", "b"),
            (Strings{"a", std::string("a\0", 2), std::string("a\0b", 3), "ab", "a\xff"}));
  EXPECT_EQ(Keys("a", std::string("a\0b", 3)), (Strings{"a", std::string("a\0", 2)}));
  EXPECT_EQ(Keys(std::string("a\0", 2), "a\x01"),
            (Strings{std::string("a\0", 2), std::string("a\0b", 3)}));
  // Prefix "a\xff" (etcd's end is "b").
  EXPECT_EQ(Keys("a\xff", "b"), Strings{"a\xff"});
  // Prefix "\xff" has no end but "\0": from key.
  EXPECT_EQ(Keys("\xff", kFromKey), (Strings{"\xff", "\xff\xff"}));
  EXPECT_EQ(Keys("b", kFromKey), (Strings{"b", "ba", "\xff", "\xff\xff"}));
  // All keys, as etcdctl asks for them.
  auto all = Keys(zero, kFromKey);
  Strings sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(all, sorted);
  EXPECT_EQ(Keys("", kFromKey), sorted);
  // An end at or before the key is an empty range.
  EXPECT_EQ(Keys("b", "a"), Strings{});
  EXPECT_EQ(Keys("b", "b"), Strings{});
}

TEST_F(KvStoreTest, LimitAndCount) {
  for (const char* k : {"k1", "k2", "k3", "k4", "k5"}) Put(k, "v");
  Delete("k3");
  auto r = Range("k", "l", 0, 2);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 2u);
  EXPECT_EQ(r->kvs[0].key(), "k1");
  EXPECT_EQ(r->kvs[1].key(), "k2");
  EXPECT_EQ(r->count, 4);  // the whole range, ignoring the limit
  EXPECT_EQ(r->rev, 7);
  r = Range("k", "l", 0, 0, /*count_only=*/true);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->kvs.empty());
  EXPECT_EQ(r->count, 4);
  r = Range("k", "l", 0, 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 4u);
  // Historical count: k3 was alive at revision 5.
  r = Range("k", "l", 5, 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->count, 4);
  EXPECT_EQ(r->rev, 7);  // the reader's current revision, not the one asked for
  r = Range("k", "l", 6);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 5);
}

TEST_F(KvStoreTest, FutureRevisionIsRefused) {
  Put("a", "1");
  auto r = Range("a", "", 3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), errors::FutureRev());
  EXPECT_TRUE(Range("a", "", 2).ok());
}

// A random history checked against a model at every revision.
TEST_F(KvStoreTest, HistoricalReadsAtEveryRevisionMatchAModel) {
  const Strings pool = {"a", std::string("a\0", 2), "a\xff", "ab",
                        "b", std::string(1, '\0'),  "\xff",  "\xff\xff"};
  std::mt19937 rng(20240601);
  using State = std::map<std::string, mvccpb::KeyValue>;
  std::vector<State> at(2);  // at[rev]; revision 1 is empty
  std::vector<mvccpb::Event> live_events;
  for (int t = 0; t < 60; t++) {
    State next = at.back();
    const int64_t rev = static_cast<int64_t>(at.size());
    std::vector<Op> ops;
    int nops = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < nops; i++) {
      const std::string& k = pool[rng() % pool.size()];
      switch (rng() % 5) {
        case 0:
        case 1:
        case 2: {
          std::string v = "v" + std::to_string(t) + "." + std::to_string(i);
          int64_t lease = (rng() % 4 == 0) ? 100 + t : 0;
          ops.push_back(PutOp(k, v, lease));
          mvccpb::KeyValue kv;
          auto it = next.find(k);
          kv.set_key(k);
          kv.set_value(v);
          kv.set_create_revision(it == next.end() ? rev : it->second.create_revision());
          kv.set_mod_revision(rev);
          kv.set_version(it == next.end() ? 1 : it->second.version() + 1);
          kv.set_lease(lease);
          next[k] = kv;
          break;
        }
        case 3:
          ops.push_back(DelOp(k));
          next.erase(k);
          break;
        case 4: {
          // Also "\0" from the pool: a from-key delete, as on the wire.
          const std::string& e = pool[rng() % pool.size()];
          const std::string end = e == k ? kFromKey : e;
          ops.push_back(DelOp(k, end));
          for (auto it = next.begin(); it != next.end();) {
            bool in = it->first >= k && (end == kFromKey || it->first < end);
            it = in ? next.erase(it) : std::next(it);
          }
          break;
        }
      }
    }
    int64_t got = Txn(ops);
    live_events.insert(live_events.end(), last_changes_.begin(), last_changes_.end());
    if (last_changes_.empty()) {
      ASSERT_EQ(got, rev - 1);
      std::string desc;
      for (const auto& op : ops) {
        desc += (op.type == Op::kPut ? " put " : " del ") + testing::PrintToString(op.key) + " " +
                testing::PrintToString(op.value_or_end);
      }
      ASSERT_EQ(next.size(), at.back().size())
          << "a transaction without changes changed the model:" << desc;
    } else {
      ASSERT_EQ(got, rev);
      at.push_back(next);
    }
    // Some versions in SST files, the later ones in the memtable: reads
    // before writes and the checks below cross both.
    if (t % 15 == 14) ASSERT_TRUE(engine_->CompactAll().ok());
  }
  const int64_t cur = store_->CurrentRevision();
  ASSERT_EQ(cur, static_cast<int64_t>(at.size()) - 1);
  ASSERT_GT(cur, 30);

  Strings bounds = pool;
  bounds.push_back("zz");
  bounds.push_back("a\x01");
  std::sort(bounds.begin(), bounds.end());
  for (int64_t rev = 1; rev <= cur; rev++) {
    const State& want = at[rev];
    auto check = [&](const std::string& key, const std::string& end) {
      std::vector<const mvccpb::KeyValue*> expected;
      for (const auto& [k, kv] : want) {
        bool in = end.empty() ? k == key : (k >= key && (end == kFromKey || k < end));
        if (in) expected.push_back(&kv);
      }
      auto r = Range(key, end, rev);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_EQ(r->count, static_cast<int64_t>(expected.size()))
          << "rev " << rev << " range " << testing::PrintToString(key) << ".."
          << testing::PrintToString(end);
      ASSERT_EQ(r->kvs.size(), expected.size());
      for (size_t i = 0; i < expected.size(); i++) {
        ASSERT_TRUE(MessageDifferencer::Equals(r->kvs[i], *expected[i]))
            << "rev " << rev << ": got " << Describe(r->kvs[i]) << " want "
            << Describe(*expected[i]);
      }
      auto limited = Range(key, end, rev, 1);
      ASSERT_TRUE(limited.ok());
      ASSERT_EQ(limited->count, static_cast<int64_t>(expected.size()));
      ASSERT_EQ(limited->kvs.size(), std::min<size_t>(1, expected.size()));
    };
    for (const auto& k : bounds) {
      check(k, "");
      check(k, kFromKey);
      for (const auto& e : bounds) {
        if (e > k) check(k, e);
      }
    }
  }

  // Replaying the change log gives exactly the events the transactions
  // produced, prev_kv included.
  auto replay = AllEvents(1, cur);
  ASSERT_EQ(replay.size(), live_events.size());
  for (size_t i = 0; i < replay.size(); i++) {
    ASSERT_TRUE(MessageDifferencer::Equals(replay[i], live_events[i]))
        << "event " << i << "\nreplay: " << replay[i].ShortDebugString()
        << "\nlive:   " << live_events[i].ShortDebugString();
  }
}

// Scans over several keys and one key's lookups with the versions spread
// over several SST files and the memtable. (A guard for read options that
// let RocksDB skip files, such as prefix blooms: a scan in prefix mode lost
// every key here; see docs/benchmarks.md, "Prefix blooms".)
TEST_F(KvStoreTest, ScansAndLookupsAcrossFilesAndMemtable) {
  constexpr int kKeys = 300;
  // Longer than a version suffix, as most real keys: a scan's seek target
  // (the escaped key alone) is then in the prefix extractor's domain.
  const std::string dir = "config/payments/limits/";
  auto name = [&](int i) {
    char buf[16];
    snprintf(buf, sizeof(buf), "k%03d", i);
    return dir + buf;
  };
  for (int round = 0; round < 3; round++) {
    for (int i = round; i < kKeys; i += 3) Put(name(i), "v" + std::to_string(i));
    if (round < 2) ASSERT_TRUE(engine_->CompactAll().ok());
  }
  for (int i = 0; i < kKeys; i += 7) Put(name(i), "w" + std::to_string(i));  // versions everywhere
  std::vector<std::string> all = Keys(dir, dir + "l");
  ASSERT_EQ(all.size(), static_cast<size_t>(kKeys));
  for (int i = 0; i < kKeys; i++) ASSERT_EQ(all[i], name(i));
  EXPECT_EQ(Keys(name(10), name(20)).size(), 10u);
  EXPECT_EQ(Keys(name(295), kFromKey).size(), 5u);
  for (int i = 0; i < kKeys; i++) {
    auto kv = Get(name(i));
    ASSERT_TRUE(kv.has_value()) << name(i);
    EXPECT_EQ(kv->value(), (i % 7 == 0 ? "w" : "v") + std::to_string(i));
    EXPECT_EQ(kv->version(), i % 7 == 0 ? 2 : 1) << name(i);
  }
  EXPECT_FALSE(Get(dir + "k").has_value());     // a prefix of every key, itself absent
  EXPECT_FALSE(Get(name(1) + "0").has_value());  // an extension of a key, absent
  EXPECT_FALSE(Get(dir + "j").has_value());
}

TEST_F(KvStoreTest, WriteTxnReadsItsOwnChanges) {
  Put("a", "1");  // 2
  storage::WriteBatch batch(engine_.get());
  WriteTxn txn(store_.get(), &batch);
  EXPECT_EQ(txn.Rev(), 2);
  ASSERT_TRUE(txn.Put("b", "2", 0).ok());
  EXPECT_EQ(txn.Rev(), 3);
  auto r = txn.Range("a", "z", RangeOptions{});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 2u);
  EXPECT_EQ(r->kvs[1].key(), "b");
  EXPECT_EQ(r->rev, 3);
  // Reading at the revision before the transaction does not see it.
  RangeOptions before;
  before.rev = 2;
  r = txn.Range("a", "z", before);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 1u);
  auto d = txn.DeleteRange("a", "");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->first, 1);
  EXPECT_EQ(d->second, 3);
  mvccpb::KeyValue kv;
  EXPECT_FALSE(txn.Get("a", &kv).value());
  EXPECT_TRUE(txn.Get("b", &kv).value());
  // A delete of nothing in a transaction that changed something reports the
  // transaction's revision (etcd's storeTxnWrite.DeleteRange).
  d = txn.DeleteRange("nothing", "");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->first, 0);
  EXPECT_EQ(d->second, 3);
  // Others see nothing until commit.
  EXPECT_TRUE(Get("a"));
  EXPECT_FALSE(Get("b"));
  ASSERT_TRUE(store_->Commit(batch, txn.end_rev(), false).ok());
  EXPECT_FALSE(Get("a"));
  EXPECT_TRUE(Get("b"));
}

TEST_F(KvStoreTest, ReadTxnIsAStableView) {
  Put("a", "1");
  auto view = store_->Read();
  Put("a", "2");
  Put("b", "2");
  EXPECT_EQ(view->Rev(), 2);
  auto r = view->Range("a", "z", RangeOptions{});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].value(), "1");
  EXPECT_EQ(r->rev, 2);
  RangeOptions future;
  future.rev = 3;
  EXPECT_EQ(view->Range("a", "", future).status(), errors::FutureRev());
}

TEST_F(KvStoreTest, EventsReplayWithPrevKvAndPaging) {
  Put("a", "1");                                        // 2
  Put("b", "1");                                        // 3
  Txn({PutOp("a", "2"), PutOp("c", "1"), DelOp("b")});  // 4
  Delete("a");                                          // 5
  Put("a", "3");                                        // 6
  auto events = AllEvents(1, 6);
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[0].type(), mvccpb::Event::PUT);
  EXPECT_FALSE(events[0].has_prev_kv());
  EXPECT_EQ(events[2].kv().key(), "a");
  EXPECT_EQ(events[2].kv().version(), 2);
  EXPECT_EQ(events[2].prev_kv().value(), "1");
  EXPECT_EQ(events[4].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(events[4].kv().key(), "b");
  EXPECT_EQ(events[4].kv().mod_revision(), 4);
  EXPECT_EQ(events[4].prev_kv().value(), "1");
  EXPECT_EQ(events[5].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(events[5].prev_kv().value(), "2");
  EXPECT_EQ(events[6].kv().version(), 1);
  EXPECT_EQ(events[6].kv().create_revision(), 6);
  EXPECT_FALSE(events[6].has_prev_kv());  // deleted at the previous revision

  // Without prev_kv.
  for (const auto& ev : AllEvents(1, 6, 100, false)) EXPECT_FALSE(ev.has_prev_kv());

  // A sub-range of revisions.
  int64_t next = 0;
  auto mid = AllEvents(4, 5, 100, true, &next);
  ASSERT_EQ(mid.size(), 4u);
  EXPECT_EQ(next, 6);
  // Paging: whole revisions only; a revision larger than the cap comes whole.
  auto page = AllEvents(2, 6, 2, true, &next);
  ASSERT_EQ(page.size(), 2u);  // revisions 2 and 3
  EXPECT_EQ(next, 4);
  page = AllEvents(4, 6, 1, true, &next);
  ASSERT_EQ(page.size(), 3u);  // revision 4 alone exceeds the cap
  EXPECT_EQ(next, 5);
  std::vector<mvccpb::Event> paged;
  for (int64_t from = 1; from <= 6;) {
    auto p = AllEvents(from, 6, 2, true, &next);
    ASSERT_GT(next, from);
    paged.insert(paged.end(), p.begin(), p.end());
    from = next;
  }
  ASSERT_EQ(paged.size(), events.size());
  for (size_t i = 0; i < paged.size(); i++) {
    EXPECT_TRUE(MessageDifferencer::Equals(paged[i], events[i])) << i;
  }
  // An empty or inverted interval.
  EXPECT_TRUE(AllEvents(7, 9, 10, true, &next).empty());
  EXPECT_EQ(next, 10);
  EXPECT_TRUE(AllEvents(5, 4, 10, true, &next).empty());
  EXPECT_EQ(next, 5);
}

// etcd allows a put and a from-key delete of the same key in one txn (the
// interval ["k", "\0") does not intersect "k" in etcd's check). Both changes
// stay in history with their own sub revision.
TEST_F(KvStoreTest, PutThenFromKeyDeleteOfTheSameKeyInOneTxn) {
  Put("k", "old");  // 2
  Put("m", "m");    // 3
  int64_t rev = Txn({PutOp("k", "new"), DelOp("k", kFromKey)});
  ASSERT_EQ(rev, 4);
  ASSERT_EQ(last_changes_.size(), 3u);  // put k, delete k, delete m
  EXPECT_EQ(last_changes_[0].type(), mvccpb::Event::PUT);
  EXPECT_EQ(last_changes_[0].kv().value(), "new");
  EXPECT_EQ(last_changes_[0].kv().version(), 2);
  EXPECT_EQ(last_changes_[0].prev_kv().value(), "old");
  EXPECT_EQ(last_changes_[1].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(last_changes_[1].kv().key(), "k");
  // Watchers get the key as of the previous revision, as etcd does.
  EXPECT_EQ(last_changes_[1].prev_kv().value(), "old");
  EXPECT_EQ(last_changes_[2].kv().key(), "m");

  EXPECT_FALSE(Get("k"));
  EXPECT_FALSE(Get("m"));
  EXPECT_EQ(Get("k", 3)->value(), "old");
  auto replay = AllEvents(4, 4);
  ASSERT_EQ(replay.size(), 3u);
  for (size_t i = 0; i < replay.size(); i++) {
    EXPECT_TRUE(MessageDifferencer::Equals(replay[i], last_changes_[i]))
        << replay[i].ShortDebugString() << " vs " << last_changes_[i].ShortDebugString();
  }
  EXPECT_EQ(VersionRecords(), (Strings{"k@4.1t", "k@4.0", "k@2.0", "m@4.2t", "m@3.0"}));
  // Re-creating it starts a new generation.
  Put("k", "again");
  EXPECT_EQ(Get("k")->version(), 1);
  EXPECT_EQ(Get("k")->create_revision(), 5);

  // The same on a key that did not exist before: no prev_kv anywhere.
  rev = Txn({PutOp("fresh", "1"), DelOp("fresh", kFromKey)});
  ASSERT_EQ(last_changes_.size(), 3u);  // put fresh, delete fresh, delete k
  EXPECT_FALSE(last_changes_[0].has_prev_kv());
  EXPECT_FALSE(last_changes_[1].has_prev_kv());
  EXPECT_FALSE(Get("fresh"));
  // Compacting at that revision drops both changes of the key.
  Compact(rev);
  EXPECT_EQ(VersionRecords(), Strings{});
  EXPECT_EQ(ChangeLogRevisions(), std::vector<int64_t>{});
}

TEST_F(KvStoreTest, LeaseAttachments) {
  Put("a", "1", 7);
  Put("b", "1", 7);
  Put("c", "1", 8);
  auto keys_of = [&](int64_t lease) {
    storage::WriteBatch batch(engine_.get());
    WriteTxn txn(store_.get(), &batch);
    auto k = txn.LeaseKeys(lease);
    EXPECT_TRUE(k.ok());
    return k.ok() ? *k : Strings{};
  };
  EXPECT_EQ(keys_of(7), (Strings{"a", "b"}));
  EXPECT_EQ(keys_of(8), Strings{"c"});
  Put("a", "2");     // detached by a put without lease
  Put("c", "2", 7);  // moved to another lease
  Delete("b");       // detached by delete
  EXPECT_EQ(keys_of(7), Strings{"c"});
  EXPECT_EQ(keys_of(8), Strings{});
  // Seen through the batch before commit.
  storage::WriteBatch batch(engine_.get());
  WriteTxn txn(store_.get(), &batch);
  ASSERT_TRUE(txn.Put("z", "1", 7).ok());
  EXPECT_EQ(txn.LeaseKeys(7).value(), (Strings{"c", "z"}));
}

class CompactionTest : public KvStoreTest {
 protected:
  // a@2 a@3 b@4 b deleted@5 c@6 a@7 d@8 d deleted@9
  void Fill() {
    Put("a", "a2");
    Put("a", "a3");
    Put("b", "b4");
    Delete("b");
    Put("c", "c6");
    Put("a", "a7");
    Put("d", "d8");
    Delete("d");
    ASSERT_EQ(store_->CurrentRevision(), 9);
  }
};

TEST_F(CompactionTest, ReadsBelowFailLatestVersionsSurvive) {
  Fill();
  Compact(6);
  EXPECT_EQ(store_->CompactRevision(), 6);
  for (int64_t rev = 1; rev < 6; rev++) {
    auto r = Range("a", "", rev);
    ASSERT_FALSE(r.ok()) << rev;
    EXPECT_EQ(r.status(), errors::Compacted());
  }
  // At the compacted revision itself everything is still readable.
  EXPECT_EQ(Keys("", kFromKey, 6), (Strings{"a", "c"}));
  EXPECT_EQ(Get("a", 6)->value(), "a3");
  EXPECT_EQ(Get("a", 6)->version(), 2);
  EXPECT_EQ(Get("a", 6)->create_revision(), 2);
  EXPECT_EQ(Keys("", kFromKey, 8), (Strings{"a", "c", "d"}));
  EXPECT_EQ(Keys("", kFromKey), (Strings{"a", "c"}));
  EXPECT_EQ(Get("a")->version(), 3);
  // b, whose last change at or below 6 is a tombstone, is gone entirely.
  EXPECT_EQ(VersionRecords(), (Strings{"a@7.0", "a@3.0", "c@6.0", "d@9.0t", "d@8.0"}));
  // The put of revision 6 stays in the change log: a watch may start there.
  EXPECT_EQ(ChangeLogRevisions(), (std::vector<int64_t>{6, 7, 8, 9}));
  auto at_compacted = AllEvents(6, 6);
  ASSERT_EQ(at_compacted.size(), 1u);
  EXPECT_EQ(at_compacted[0].kv().key(), "c");
  // Events after the compaction are intact, prev_kv included.
  auto events = AllEvents(7, 9);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].prev_kv().value(), "a3");
  EXPECT_EQ(events[2].prev_kv().value(), "d8");
}

TEST_F(CompactionTest, ScheduleValidatesLikeEtcd) {
  Fill();
  storage::WriteBatch batch(engine_.get());
  EXPECT_EQ(store_->ScheduleCompaction(&batch, 10), errors::FutureRev());
  Compact(0);  // valid once: the compacted revision starts at -1
  EXPECT_EQ(store_->CompactRevision(), 0);
  EXPECT_EQ(store_->ScheduleCompaction(&batch, 0), errors::Compacted());
  Compact(5);
  EXPECT_EQ(store_->ScheduleCompaction(&batch, 5), errors::Compacted());
  EXPECT_EQ(store_->ScheduleCompaction(&batch, 4), errors::Compacted());
  Compact(9);  // up to the current revision
  EXPECT_EQ(Keys("", kFromKey), (Strings{"a", "c"}));
  EXPECT_EQ(VersionRecords(), (Strings{"a@7.0", "c@6.0"}));
  // Revision 9 was a delete: it goes with its tombstone.
  EXPECT_EQ(ChangeLogRevisions(), std::vector<int64_t>{});
}

TEST_F(CompactionTest, CompactPhysicalIsIdempotent) {
  Fill();
  Compact(6);
  auto records = VersionRecords();
  auto log = ChangeLogRevisions();
  uint32_t hash = Hash(0);
  ASSERT_TRUE(store_->CompactPhysical(6).ok());
  ASSERT_TRUE(store_->CompactPhysical(6).ok());
  EXPECT_EQ(VersionRecords(), records);
  EXPECT_EQ(ChangeLogRevisions(), log);
  EXPECT_EQ(Hash(0), hash);
  // An older compaction run again removes nothing more.
  ASSERT_TRUE(store_->CompactPhysical(4).ok());
  EXPECT_EQ(VersionRecords(), records);
}

// A compaction recorded but not physically done (the process stopped in
// between) is finished by Open().
TEST_F(CompactionTest, OpenFinishesAnInterruptedCompaction) {
  Fill();
  Compact(6, /*physical=*/false);
  EXPECT_EQ(VersionRecords().size(), 8u);  // nothing removed yet
  Reopen();
  EXPECT_EQ(store_->CompactRevision(), 6);
  EXPECT_EQ(store_->CurrentRevision(), 9);
  EXPECT_EQ(VersionRecords(), (Strings{"a@7.0", "a@3.0", "c@6.0", "d@9.0t", "d@8.0"}));
  EXPECT_EQ(Range("a", "", 5).status(), errors::Compacted());
  // Finished: another reopen has nothing left to do and changes nothing.
  std::string finished;
  ASSERT_TRUE(engine_->Get(Column::kMeta, KvStore::kMetaFinishedCompactRev, &finished).value());
  Reopen();
  EXPECT_EQ(VersionRecords().size(), 5u);
}

// More changes than one chunk of the physical compaction.
TEST_F(CompactionTest, LargeCompactionInChunks) {
  constexpr int kKeys = 12000;
  std::vector<Op> first, second;
  for (int i = 0; i < kKeys; i++) {
    char key[16];
    snprintf(key, sizeof(key), "key%06d", i);
    first.push_back(PutOp(key, "1"));
    if (i % 2 == 0) second.push_back(PutOp(key, "2"));
    if (i % 3 == 0) second.push_back(DelOp(std::string(key) + "x"));  // no-ops
  }
  ASSERT_EQ(Txn(first), 2);
  ASSERT_EQ(Txn(second), 3);
  Put("tail", "t");  // 4
  Compact(3);
  EXPECT_EQ(VersionRecords().size(), static_cast<size_t>(kKeys) + 1);
  // The puts of revision 3 stay in the change log; its no-op deletes wrote none.
  std::vector<int64_t> log_revs(kKeys / 2, 3);
  log_revs.push_back(4);
  EXPECT_EQ(ChangeLogRevisions(), log_revs);
  auto r = Range("key", "kez");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->count, kKeys);
  EXPECT_EQ(r->kvs[0].value(), "2");
  EXPECT_EQ(r->kvs[1].value(), "1");
}

TEST_F(CompactionTest, OpenRestoresRevisions) {
  Fill();
  Compact(4);
  Reopen();
  EXPECT_EQ(store_->CurrentRevision(), 9);
  EXPECT_EQ(store_->CompactRevision(), 4);
  EXPECT_EQ(Range("a", "", 3).status(), errors::Compacted());
  EXPECT_EQ(Get("a", 4)->value(), "a3");
  EXPECT_EQ(Put("e", "1"), 10);
  Reopen();
  EXPECT_EQ(store_->CurrentRevision(), 10);
  EXPECT_EQ(Get("e")->mod_revision(), 10);
}

TEST_F(KvStoreTest, HashKVStableAcrossReopenAndLaterWrites) {
  int64_t hash_rev = 0, compact_rev = 0;
  uint32_t empty = Hash(0, &hash_rev, &compact_rev);
  EXPECT_EQ(hash_rev, 1);
  EXPECT_EQ(compact_rev, -1);
  Put("a", "1");
  Put("b", "1");
  Txn({PutOp("a", "2"), DelOp("b")});
  uint32_t at4 = Hash(0, &hash_rev);
  EXPECT_EQ(hash_rev, 4);
  EXPECT_NE(at4, empty);
  EXPECT_EQ(Hash(1), empty);
  Put("c", "1");
  Put("a", "3");
  EXPECT_EQ(Hash(4), at4);  // later writes do not change an earlier hash
  uint32_t at6 = Hash(6);
  EXPECT_NE(at6, at4);
  Reopen();
  EXPECT_EQ(Hash(4), at4);
  EXPECT_EQ(Hash(0), at6);
  // Errors as etcd: a future or compacted revision.
  int64_t hr = 0, cr = 0;
  EXPECT_EQ(store_->HashKV(7, &hr, &cr).status(), errors::FutureRev());
}

// Members compact physically at different times; the hash of a revision at
// or above the compaction must not depend on whether the versions below it
// are gone yet (nor on a restart in between).
TEST_F(CompactionTest, HashKVIsTheSameBeforeAndAfterPhysicalCompaction) {
  Fill();
  Txn({PutOp("e", "1"), DelOp("e", kFromKey)});  // 10: put and tombstone at one revision
  Put("a", "a11");                               // 11
  for (int64_t compact_at : {6, 10}) {
    SCOPED_TRACE(compact_at);
    Compact(compact_at, /*physical=*/false);
    std::map<int64_t, uint32_t> logical;
    for (int64_t rev = compact_at + 1; rev <= 11; rev++) logical[rev] = Hash(rev);
    ASSERT_TRUE(store_->CompactPhysical(compact_at).ok());
    for (int64_t rev = compact_at + 1; rev <= 11; rev++) EXPECT_EQ(Hash(rev), logical[rev]) << rev;
    Reopen();
    int64_t hash_rev = 0, compact_rev = 0;
    for (int64_t rev = compact_at + 1; rev <= 11; rev++) EXPECT_EQ(Hash(rev), logical[rev]) << rev;
    Hash(0, &hash_rev, &compact_rev);
    EXPECT_EQ(hash_rev, 11);
    EXPECT_EQ(compact_rev, compact_at);
    int64_t hr = 0, cr = 0;
    // etcd: the compacted revision itself is compacted for HashKV.
    EXPECT_EQ(store_->HashKV(compact_at, &hr, &cr).status(), errors::Compacted());
  }
}

TEST(ParseVersionTest, LiveTombstoneAndMalformed) {
  mvccpb::KeyValue kv;
  kv.set_key("k");
  kv.set_value("v");
  kv.set_mod_revision(3);
  std::string live(1, 'v');
  kv.AppendToString(&live);
  mvccpb::KeyValue out;
  bool tombstone = true;
  ASSERT_TRUE(ParseVersion(VersionKey("k", 3, 0), live, &out, &tombstone).ok());
  EXPECT_FALSE(tombstone);
  EXPECT_EQ(out.value(), "v");
  ASSERT_TRUE(ParseVersion(VersionKey(std::string("k\0", 2), 5, 1), "t", &out, &tombstone).ok());
  EXPECT_TRUE(tombstone);
  EXPECT_EQ(out.key(), std::string("k\0", 2));
  EXPECT_EQ(out.mod_revision(), 5);
  EXPECT_TRUE(out.value().empty());
  EXPECT_FALSE(ParseVersion(VersionKey("k", 3, 0), "", &out, &tombstone).ok());
  EXPECT_FALSE(ParseVersion("bad", "t", &out, &tombstone).ok());
}

}  // namespace
}  // namespace cairn::mvcc
