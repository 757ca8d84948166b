#include "storage/engine.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/table_properties.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cairn::storage {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/engine_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open();
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string DbPath() const { return dir_ + "/db"; }

  void Open() {
    engine_.reset();
    EngineOptions eo;
    eo.path = DbPath();
    auto engine = Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
  }

  void Commit(const Pairs& puts, Column c = Column::kKey) {
    WriteBatch b(engine_.get());
    for (const auto& [k, v] : puts) b.Put(c, k, v);
    ASSERT_TRUE(engine_->Write(b, false).ok());
  }

  std::optional<std::string> Get(Column c, const std::string& key, const Snapshot* snap = nullptr) {
    std::string v;
    auto found = engine_->Get(c, key, &v, snap);
    EXPECT_TRUE(found.ok()) << found.status().ToString();
    if (!found.ok() || !*found) return std::nullopt;
    return v;
  }

  static std::optional<std::string> BatchGet(const WriteBatch& b, Column c,
                                             const std::string& key) {
    std::string v;
    auto found = b.Get(c, key, &v);
    EXPECT_TRUE(found.ok()) << found.status().ToString();
    if (!found.ok() || !*found) return std::nullopt;
    return v;
  }

  static Pairs Forward(Iterator* it) {
    Pairs out;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out.emplace_back(std::string(it->key()), std::string(it->value()));
    }
    EXPECT_TRUE(it->status().ok());
    return out;
  }
  static Pairs Backward(Iterator* it) {
    Pairs out;
    for (it->SeekToLast(); it->Valid(); it->Prev()) {
      out.emplace_back(std::string(it->key()), std::string(it->value()));
    }
    EXPECT_TRUE(it->status().ok());
    return out;
  }
  static std::vector<std::string> Keys(const Pairs& p) {
    std::vector<std::string> out;
    for (const auto& kv : p) out.push_back(kv.first);
    return out;
  }
  using Strings = std::vector<std::string>;

  std::string dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, PutGetAndColumnsAreSeparate) {
  Commit({{"k", "in key"}}, Column::kKey);
  Commit({{"k", "in meta"}}, Column::kMeta);
  EXPECT_EQ(Get(Column::kKey, "k"), "in key");
  EXPECT_EQ(Get(Column::kMeta, "k"), "in meta");
  EXPECT_EQ(Get(Column::kLease, "k"), std::nullopt);
  EXPECT_EQ(Get(Column::kKey, "missing"), std::nullopt);
  // Binary keys and values, including empty ones.
  Commit({{std::string("\0\xff", 2), std::string("\0", 1)}, {"empty", ""}});
  EXPECT_EQ(Get(Column::kKey, std::string("\0\xff", 2)), std::string("\0", 1));
  EXPECT_EQ(Get(Column::kKey, "empty"), "");
}

TEST_F(EngineTest, MultiGetReadsManyKeysAtASnapshot) {
  Commit({{"a", "1"}, {"b", "2"}, {"c", ""}});
  auto snap = engine_->GetSnapshot();
  Commit({{"a", "changed"}, {"d", "4"}});
  std::vector<std::string> values;
  std::vector<bool> found;
  ASSERT_TRUE(engine_->MultiGet(Column::kKey, {"c", "zz", "a", "d"}, &values, &found, snap.get()).ok());
  EXPECT_EQ(found, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(values[0], "");
  EXPECT_EQ(values[2], "1");
  ASSERT_TRUE(engine_->MultiGet(Column::kKey, {"a", "d"}, &values, &found).ok());
  EXPECT_EQ(values, (std::vector<std::string>{"changed", "4"}));
  ASSERT_TRUE(engine_->MultiGet(Column::kMeta, {}, &values, &found).ok());
  EXPECT_TRUE(values.empty());
}

TEST_F(EngineTest, BatchReadsItsOwnWritesOverCommittedState) {
  Commit({{"a", "1"}, {"b", "1"}, {"c", "1"}});
  WriteBatch b(engine_.get());
  b.Put(Column::kKey, "b", "2");
  b.Delete(Column::kKey, "c");
  b.Put(Column::kKey, "d", "2");
  b.Put(Column::kKey, "d", "3");  // the later put wins
  EXPECT_EQ(BatchGet(b, Column::kKey, "a"), "1");
  EXPECT_EQ(BatchGet(b, Column::kKey, "b"), "2");
  EXPECT_EQ(BatchGet(b, Column::kKey, "c"), std::nullopt);
  EXPECT_EQ(BatchGet(b, Column::kKey, "d"), "3");
  EXPECT_EQ(BatchGet(b, Column::kMeta, "b"), std::nullopt);  // per column
  // Nothing visible outside the batch until written.
  EXPECT_EQ(Get(Column::kKey, "b"), "1");
  EXPECT_EQ(Get(Column::kKey, "d"), std::nullopt);
  auto it = b.NewIterator(Column::kKey);
  EXPECT_EQ(Forward(it.get()), (Pairs{{"a", "1"}, {"b", "2"}, {"d", "3"}}));
  EXPECT_EQ(Backward(it.get()), (Pairs{{"d", "3"}, {"b", "2"}, {"a", "1"}}));
  // Delete then put again in the same batch: visible.
  b.Delete(Column::kKey, "a");
  EXPECT_EQ(BatchGet(b, Column::kKey, "a"), std::nullopt);
  b.Put(Column::kKey, "a", "again");
  EXPECT_EQ(BatchGet(b, Column::kKey, "a"), "again");
  ASSERT_TRUE(engine_->Write(b, true).ok());
  EXPECT_EQ(Get(Column::kKey, "a"), "again");
  EXPECT_EQ(Get(Column::kKey, "b"), "2");
  EXPECT_EQ(Get(Column::kKey, "c"), std::nullopt);
  EXPECT_EQ(Get(Column::kKey, "d"), "3");
}

// RocksDB's iterator over a WriteBatchWithIndex does not apply the read
// bounds to the batch's own entries; the engine must.
TEST_F(EngineTest, BatchIteratorHonoursBoundsForBatchEntries) {
  Commit({{"b", "db"}, {"d", "db"}, {"f", "db"}});
  WriteBatch b(engine_.get());
  for (const char* k : {"a", "c", "e", "g", "b0"}) b.Put(Column::kKey, k, "batch");
  b.Delete(Column::kKey, "d");
  auto it = b.NewIterator(Column::kKey, "b", "f");
  EXPECT_EQ(Keys(Forward(it.get())), (Strings{"b", "b0", "c", "e"}));
  EXPECT_EQ(Keys(Backward(it.get())), (Strings{"e", "c", "b0", "b"}));
  // Seeks outside the bounds clamp to them.
  it->Seek("a");
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "b");
  it->Seek("ee");
  EXPECT_FALSE(it->Valid());  // "f" and "g" are beyond the upper bound
  it->SeekForPrev("zzz");
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "e");
  it->SeekForPrev("f");  // the upper bound itself is excluded
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "e");
  it->SeekForPrev("c1");
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "c");
  it->SeekForPrev("a");
  EXPECT_FALSE(it->Valid());
  // Walking off either end stops at the bound.
  it->Seek("e");
  it->Next();
  EXPECT_FALSE(it->Valid());
  it->Seek("b");
  it->Prev();
  EXPECT_FALSE(it->Valid());

  // Lower bound only, upper bound only.
  auto lower_only = b.NewIterator(Column::kKey, "e");
  EXPECT_EQ(Keys(Forward(lower_only.get())), (Strings{"e", "f", "g"}));
  EXPECT_EQ(Keys(Backward(lower_only.get())), (Strings{"g", "f", "e"}));
  auto upper_only = b.NewIterator(Column::kKey, "", "c");
  EXPECT_EQ(Keys(Forward(upper_only.get())), (Strings{"a", "b", "b0"}));
  EXPECT_EQ(Keys(Backward(upper_only.get())), (Strings{"b0", "b", "a"}));
  // An empty range.
  auto empty = b.NewIterator(Column::kKey, "c0", "c1");
  EXPECT_TRUE(Forward(empty.get()).empty());
  EXPECT_TRUE(Backward(empty.get()).empty());
}

TEST_F(EngineTest, EngineIteratorBounds) {
  Commit({{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}});
  auto it = engine_->NewIterator(Column::kKey, nullptr, "b", "d");
  EXPECT_EQ(Keys(Forward(it.get())), (Strings{"b", "c"}));
  EXPECT_EQ(Keys(Backward(it.get())), (Strings{"c", "b"}));
  auto all = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Keys(Forward(all.get())), (Strings{"a", "b", "c", "d"}));
  EXPECT_TRUE(Forward(engine_->NewIterator(Column::kLease).get()).empty());
}

TEST_F(EngineTest, SnapshotIsolation) {
  Commit({{"a", "1"}, {"b", "1"}});
  auto snap = engine_->GetSnapshot();
  Commit({{"a", "2"}, {"c", "2"}});
  {
    WriteBatch del(engine_.get());
    del.Delete(Column::kKey, "b");
    ASSERT_TRUE(engine_->Write(del, false).ok());
  }
  EXPECT_EQ(Get(Column::kKey, "a", snap.get()), "1");
  EXPECT_EQ(Get(Column::kKey, "b", snap.get()), "1");
  EXPECT_EQ(Get(Column::kKey, "c", snap.get()), std::nullopt);
  auto it = engine_->NewIterator(Column::kKey, snap.get());
  EXPECT_EQ(Forward(it.get()), (Pairs{{"a", "1"}, {"b", "1"}}));
  auto bounded = engine_->NewIterator(Column::kKey, snap.get(), "b", "z");
  EXPECT_EQ(Forward(bounded.get()), (Pairs{{"b", "1"}}));
  // The latest state.
  EXPECT_EQ(Get(Column::kKey, "a"), "2");
  EXPECT_EQ(Get(Column::kKey, "b"), std::nullopt);
  auto latest = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Forward(latest.get()), (Pairs{{"a", "2"}, {"c", "2"}}));
  // A snapshot shared by copies stays valid until the last one goes.
  auto copy = snap;
  snap.reset();
  EXPECT_EQ(Get(Column::kKey, "a", copy.get()), "1");
}

TEST_F(EngineTest, DeleteRangeAppliesAtWriteAndIsInvisibleToBatchReads) {
  Commit({{"a", "1"}, {"b", "1"}, {"c", "1"}, {"d", "1"}});
  Commit({{"b", "meta"}}, Column::kMeta);
  WriteBatch b(engine_.get());
  b.DeleteRange(Column::kKey, "b", "d");
  // Documented: the range deletion is not indexed, so reads through the
  // batch still see the keys.
  EXPECT_EQ(BatchGet(b, Column::kKey, "b"), "1");
  EXPECT_EQ(b.Count(), 1u);
  EXPECT_GT(b.ByteSize(), 0u);
  ASSERT_TRUE(engine_->Write(b, false).ok());
  auto it = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Keys(Forward(it.get())), (Strings{"a", "d"}));
  EXPECT_EQ(Get(Column::kMeta, "b"), "meta");  // other columns untouched

  // Puts after a DeleteRange in the same batch survive it.
  WriteBatch b2(engine_.get());
  b2.DeleteRange(Column::kKey, "a", "z");
  b2.Put(Column::kKey, "c", "new");
  ASSERT_TRUE(engine_->Write(b2, false).ok());
  auto it2 = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Forward(it2.get()), (Pairs{{"c", "new"}}));
}

TEST_F(EngineTest, ClearDropsEverythingStaged) {
  Commit({{"a", "1"}});
  WriteBatch b(engine_.get());
  b.Put(Column::kKey, "x", "1");
  b.Delete(Column::kKey, "a");
  b.DeleteRange(Column::kKey, "a", "z");
  EXPECT_EQ(b.Count(), 3u);
  b.Clear();
  EXPECT_EQ(b.Count(), 0u);
  EXPECT_EQ(BatchGet(b, Column::kKey, "x"), std::nullopt);
  EXPECT_EQ(BatchGet(b, Column::kKey, "a"), "1");
  b.Put(Column::kKey, "y", "1");
  ASSERT_TRUE(engine_->Write(b, false).ok());
  auto it = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Keys(Forward(it.get())), (Strings{"a", "y"}));
}

// Save points let the applier drop one failed request out of a batch that
// holds several.
TEST_F(EngineTest, RollbackToSavePointUndoesOnlyLaterChanges) {
  Commit({{"base", "0"}, {"gone", "0"}});
  WriteBatch b(engine_.get());
  b.Put(Column::kKey, "a", "1");
  b.Put(Column::kKey, "k", "1");
  b.SetSavePoint();
  b.Put(Column::kKey, "k", "2");  // overwrites a key staged before the mark
  b.Put(Column::kKey, "b", "2");
  b.Delete(Column::kKey, "a");
  b.Delete(Column::kKey, "gone");
  b.Put(Column::kMeta, "m", "2");
  EXPECT_EQ(BatchGet(b, Column::kKey, "k"), "2");
  EXPECT_EQ(BatchGet(b, Column::kKey, "a"), std::nullopt);
  b.RollbackToSavePoint();
  EXPECT_EQ(b.Count(), 2u);
  EXPECT_EQ(BatchGet(b, Column::kKey, "k"), "1");
  EXPECT_EQ(BatchGet(b, Column::kKey, "a"), "1");
  EXPECT_EQ(BatchGet(b, Column::kKey, "b"), std::nullopt);
  EXPECT_EQ(BatchGet(b, Column::kKey, "gone"), "0");
  EXPECT_EQ(BatchGet(b, Column::kMeta, "m"), std::nullopt);
  auto it = b.NewIterator(Column::kKey);
  EXPECT_EQ(Forward(it.get()), (Pairs{{"a", "1"}, {"base", "0"}, {"gone", "0"}, {"k", "1"}}));
  // The batch goes on after a rollback.
  b.Put(Column::kKey, "c", "3");
  ASSERT_TRUE(engine_->Write(b, false).ok());
  auto all = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Forward(all.get()),
            (Pairs{{"a", "1"}, {"base", "0"}, {"c", "3"}, {"gone", "0"}, {"k", "1"}}));
}

TEST_F(EngineTest, SavePointsNestAndPopKeepsChanges) {
  WriteBatch b(engine_.get());
  b.SetSavePoint();
  b.Put(Column::kKey, "x", "1");
  b.SetSavePoint();
  b.Put(Column::kKey, "y", "1");
  b.RollbackToSavePoint();  // undoes y, removes the inner mark
  b.SetSavePoint();
  b.Put(Column::kKey, "z", "1");
  b.PopSavePoint();         // keeps z, removes its mark
  b.RollbackToSavePoint();  // back to the outer mark: undoes x and z
  EXPECT_EQ(b.Count(), 0u);
  b.SetSavePoint();
  b.Put(Column::kKey, "w", "1");
  b.PopSavePoint();
  ASSERT_TRUE(engine_->Write(b, false).ok());
  auto it = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Keys(Forward(it.get())), (Strings{"w"}));
}

// WriteBatch's contract: no save points in a batch holding a DeleteRange
// (RocksDB cannot rebuild its batch index over one). Breaking it stops the
// process rather than dropping the range deletion silently.
TEST_F(EngineTest, RollbackOverARangeDeletionStopsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        WriteBatch b(engine_.get());
        b.DeleteRange(Column::kLog, "l1", "l3");
        b.SetSavePoint();
        b.Put(Column::kKey, "dropped", "1");
        b.RollbackToSavePoint();
      },
      "CHECK failed");
}

TEST_F(EngineTest, ReopenKeepsEveryColumn) {
  for (int c = 0; c < static_cast<int>(Column::kCount); c++) {
    Commit({{"k" + std::to_string(c), "v" + std::to_string(c)}}, static_cast<Column>(c));
  }
  {
    WriteBatch b(engine_.get());
    b.Put(Column::kLog, "synced", "1");
    ASSERT_TRUE(engine_->Write(b, true).ok());
  }
  Open();
  for (int c = 0; c < static_cast<int>(Column::kCount); c++) {
    EXPECT_EQ(Get(static_cast<Column>(c), "k" + std::to_string(c)), "v" + std::to_string(c));
  }
  EXPECT_EQ(Get(Column::kLog, "synced"), "1");
  EXPECT_EQ(engine_->path(), DbPath());
}

TEST_F(EngineTest, OpenWithoutCreateFailsOnMissingPath) {
  EngineOptions eo;
  eo.path = dir_ + "/nothing-here";
  eo.create_if_missing = false;
  auto engine = Engine::Open(eo);
  EXPECT_FALSE(engine.ok());
}

TEST_F(EngineTest, CheckpointIsAConsistentCopy) {
  Commit({{"a", "1"}, {"b", "2"}});
  Commit({{"m", "meta"}}, Column::kMeta);
  const std::string copy_dir = dir_ + "/checkpoint";
  ASSERT_TRUE(engine_->Checkpoint(copy_dir).ok());
  Commit({{"c", "after"}});
  EngineOptions eo;
  eo.path = copy_dir;
  auto copy = Engine::Open(eo);
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  auto it = (*copy)->NewIterator(Column::kKey);
  EXPECT_EQ(Forward(it.get()), (Pairs{{"a", "1"}, {"b", "2"}}));
  std::string v;
  ASSERT_TRUE((*copy)->Get(Column::kMeta, "m", &v).value());
  EXPECT_EQ(v, "meta");
}

TEST_F(EngineTest, CompactAllKeepsDataAndSizesAreReported) {
  std::string value(1000, 'x');
  for (int i = 0; i < 200; i++) Commit({{"key" + std::to_string(i), value}});
  for (int i = 0; i < 100; i++) {
    WriteBatch b(engine_.get());
    b.Delete(Column::kKey, "key" + std::to_string(i));
    ASSERT_TRUE(engine_->Write(b, false).ok());
  }
  EXPECT_GT(engine_->TotalSizeBytes(), 0u);
  EXPECT_GT(engine_->LiveDataSizeBytes(), 0u);
  ASSERT_TRUE(engine_->CompactAll().ok());
  auto it = engine_->NewIterator(Column::kKey);
  EXPECT_EQ(Forward(it.get()).size(), 100u);
  EXPECT_EQ(Get(Column::kKey, "key150"), value);
}

TEST(Fixed64BETest, RoundTripAndOrder) {
  const uint64_t values[] = {0,          1,    255, 256, 65535, 1ULL << 32, (1ULL << 63) - 1,
                             1ULL << 63, ~0ULL};
  std::string prev;
  for (uint64_t v : values) {
    std::string enc;
    PutFixed64BE(&enc, v);
    ASSERT_EQ(enc.size(), 8u);
    EXPECT_EQ(DecodeFixed64BE(enc), v);
    EXPECT_GT(enc, prev) << v;  // byte order == numeric order
    prev = enc;
  }
  std::string two;
  PutFixed64BE(&two, 7);
  PutFixed64BE(&two, 9);  // appends
  EXPECT_EQ(DecodeFixed64BE(two), 7u);
  EXPECT_EQ(DecodeFixed64BE(std::string_view(two).substr(8)), 9u);
}

// Index and filter blocks are cached in pieces: one compacted file of a big
// key column had a 1 MB index block, more than a shard of the block cache
// keeps, and every iterator then read it again (500 us per txn-put; see
// Engine::Open). Partitioned, each piece is a few KiB and the top level is
// small.
TEST_F(EngineTest, BigFilesHavePartitionedIndexAndFilters) {
  for (int round = 0; round < 4; round++) {
    WriteBatch b(engine_.get());
    for (int i = 0; i < 50000; i++) {
      char key[48];
      snprintf(key, sizeof key, "config/service-%06d/feature-%d", i, round);
      b.Put(Column::kKey, key, std::string(40, 'v'));
    }
    ASSERT_TRUE(engine_->Write(b, false).ok());
  }
  ASSERT_TRUE(engine_->CompactAll().ok());
  rocksdb::TablePropertiesCollection tables;
  ASSERT_TRUE(engine_->db()->GetPropertiesOfAllTables(engine_->handle(Column::kKey), &tables).ok());
  ASSERT_FALSE(tables.empty());
  uint64_t index_bytes = 0;
  for (const auto& [file, props] : tables) {
    index_bytes += props->index_size;
    EXPECT_GT(props->index_partitions, 1u) << file;
    EXPECT_LT(props->top_level_index_size, 16u << 10) << file;
  }
  EXPECT_GT(index_bytes, 64u << 10);  // big enough that one block would be a problem
  // Reads still find what was written.
  auto it = engine_->NewIterator(Column::kKey, nullptr, "config/service-012345/", "config/service-012345/\xff");
  it->SeekToFirst();
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "config/service-012345/feature-0");
}

}  // namespace
}  // namespace cairn::storage
