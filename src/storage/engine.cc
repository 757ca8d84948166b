#include "storage/engine.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/utilities/write_batch_with_index.h>

#include "common/check.h"

namespace cairn::storage {

namespace {
const char* const kColumnNames[] = {"default", "key", "rev", "lease", "lease_key", "log"};

Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return Status::Ok();
  if (s.IsNoSpace()) return {Code::kResourceExhausted, "storage: no space: " + s.ToString()};
  if (s.IsCorruption()) return {Code::kDataLoss, "storage: corruption: " + s.ToString()};
  return {Code::kInternal, "storage: " + s.ToString()};
}

rocksdb::Slice S(std::string_view v) { return rocksdb::Slice(v.data(), v.size()); }
}  // namespace

struct IteratorBounds {
  std::string lower, upper;
  rocksdb::Slice lower_slice, upper_slice;
  rocksdb::ReadOptions read_options;
};

namespace {
std::unique_ptr<IteratorBounds> MakeBounds(std::string_view lower, std::string_view upper,
                                           const rocksdb::Snapshot* snap) {
  auto b = std::make_unique<IteratorBounds>();
  b->lower = std::string(lower);
  b->upper = std::string(upper);
  b->lower_slice = rocksdb::Slice(b->lower);
  b->upper_slice = rocksdb::Slice(b->upper);
  if (!b->lower.empty()) b->read_options.iterate_lower_bound = &b->lower_slice;
  if (!b->upper.empty()) b->read_options.iterate_upper_bound = &b->upper_slice;
  b->read_options.snapshot = snap;
  return b;
}
}  // namespace

Snapshot::~Snapshot() { db_->ReleaseSnapshot(snap_); }

Iterator::~Iterator() {
  it_.reset();  // before the bounds it points to
}
// The bounds are enforced here as well as in RocksDB's ReadOptions: the
// iterator over a WriteBatchWithIndex merged with the database does not apply
// them to the batch's own entries.
void Iterator::Seek(std::string_view t) {
  const std::string& lower = bounds_->lower;
  if (!lower.empty() && t < std::string_view(lower)) t = lower;
  it_->Seek(S(t));
}
void Iterator::SeekForPrev(std::string_view t) {
  const std::string& upper = bounds_->upper;
  if (!upper.empty() && t >= std::string_view(upper)) {
    it_->SeekForPrev(S(upper));
    if (it_->Valid() && it_->key() == S(upper)) it_->Prev();
    return;
  }
  it_->SeekForPrev(S(t));
}
void Iterator::SeekToFirst() {
  if (!bounds_->lower.empty()) {
    it_->Seek(S(bounds_->lower));
  } else {
    it_->SeekToFirst();
  }
}
void Iterator::SeekToLast() {
  if (!bounds_->upper.empty()) {
    SeekForPrev(bounds_->upper);
  } else {
    it_->SeekToLast();
  }
}
bool Iterator::Valid() const {
  if (!it_->Valid()) return false;
  rocksdb::Slice k = it_->key();
  if (!bounds_->upper.empty() && k.compare(S(bounds_->upper)) >= 0) return false;
  if (!bounds_->lower.empty() && k.compare(S(bounds_->lower)) < 0) return false;
  return true;
}
void Iterator::Next() { it_->Next(); }
void Iterator::Prev() { it_->Prev(); }
std::string_view Iterator::key() const {
  auto k = it_->key();
  return {k.data(), k.size()};
}
std::string_view Iterator::value() const {
  auto v = it_->value();
  return {v.data(), v.size()};
}
Status Iterator::status() const { return FromRocks(it_->status()); }

WriteBatch::WriteBatch(Engine* engine)
    : engine_(engine),
      batch_(std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(), 0,
                                                            /*overwrite_key=*/true)) {}
WriteBatch::~WriteBatch() = default;

void WriteBatch::Put(Column c, std::string_view key, std::string_view value) {
  CHECK(batch_->Put(engine_->handle(c), S(key), S(value)).ok());
}
void WriteBatch::Delete(Column c, std::string_view key) {
  CHECK(batch_->Delete(engine_->handle(c), S(key)).ok());
}
void WriteBatch::DeleteRange(Column c, std::string_view begin, std::string_view end) {
  // Not indexed: WriteBatchWithIndex cannot index range deletions, so the
  // range goes into the raw batch and is invisible to reads through the batch.
  CHECK(batch_->GetWriteBatch()->DeleteRange(engine_->handle(c), S(begin), S(end)).ok());
}
Result<bool> WriteBatch::Get(Column c, std::string_view key, std::string* value) const {
  rocksdb::ReadOptions ro;
  rocksdb::Status s =
      batch_->GetFromBatchAndDB(engine_->db(), ro, engine_->handle(c), S(key), value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s);
  return true;
}
std::unique_ptr<Iterator> WriteBatch::NewIterator(Column c, std::string_view lower,
                                                  std::string_view upper) const {
  auto it = std::unique_ptr<Iterator>(new Iterator());
  it->bounds_ = MakeBounds(lower, upper, nullptr);
  rocksdb::Iterator* base = engine_->db()->NewIterator(it->bounds_->read_options, engine_->handle(c));
  it->it_.reset(batch_->NewIteratorWithBase(engine_->handle(c), base, &it->bounds_->read_options));
  return it;
}
size_t WriteBatch::Count() const { return batch_->GetWriteBatch()->Count(); }
size_t WriteBatch::ByteSize() const { return batch_->GetWriteBatch()->GetDataSize(); }
void WriteBatch::Clear() { batch_->Clear(); }
void WriteBatch::SetSavePoint() { batch_->SetSavePoint(); }
void WriteBatch::RollbackToSavePoint() { CHECK(batch_->RollbackToSavePoint().ok()); }
void WriteBatch::PopSavePoint() { CHECK(batch_->PopSavePoint().ok()); }

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.bytes_per_sync = 1 << 20;
  // Writes to RocksDB are not synced (the log in src/wal/ is what makes a
  // write durable), so its WAL would pile up dirty pages that the kernel
  // writes back in bursts every few seconds, and the log's fdatasync (a
  // cache flush) would wait behind each burst. Written back every MiB.
  db_options.wal_bytes_per_sync = 1 << 20;
  db_options.max_total_wal_size = 256 << 20;
  db_options.keep_log_file_num = 3;
  db_options.recycle_log_file_num = 0;
  db_options.max_open_files = 512;

  rocksdb::BlockBasedTableOptions table;
  // Index and filter blocks live in the block cache (bounded memory with
  // data beyond RAM), so each must fit in one of the cache's shards: an SST
  // of one compacted key column (12 MB, 2026-12-08) had a 1 MB index block,
  // and the 64 MiB cache's default 64 shards of 1 MB could not keep it, so
  // every iterator read and parsed it again (500 us per txn-put, 2,179
  // txn-puts/s on that data against 16,000 on a fresh store). Partitioned
  // index and filters keep every cached block at ~4 KiB (the small top
  // level pinned), and shards of at least 8 MiB hold what an older file's
  // whole index block needs.
  int shard_bits = 0;
  while (shard_bits < 6 && (options.block_cache_bytes >> (shard_bits + 1)) >= (size_t{8} << 20)) shard_bits++;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes, shard_bits);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.metadata_block_size = 4096;
  table.pin_top_level_index_and_filter = true;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options.compression = rocksdb::kLZ4Compression;
  cf_options.write_buffer_size = 32 << 20;

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (int i = 0; i < static_cast<int>(Column::kCount); i++) {
    cfs.emplace_back(kColumnNames[i], cf_options);
  }
  auto engine = std::unique_ptr<Engine>(new Engine());
  engine->path_ = options.path;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, cfs, &engine->handles_, &db);
  if (!s.ok()) {
    // Older snappy-less builds may lack LZ4; retry without compression.
    if (s.IsInvalidArgument() && s.ToString().find("ompression") != std::string::npos) {
      cfs.clear();
      cf_options.compression = rocksdb::kNoCompression;
      for (int i = 0; i < static_cast<int>(Column::kCount); i++) {
        cfs.emplace_back(kColumnNames[i], cf_options);
      }
      s = rocksdb::DB::Open(db_options, options.path, cfs, &engine->handles_, &db);
    }
    if (!s.ok()) return FromRocks(s);
  }
  engine->db_.reset(db);
  return engine;
}

Engine::~Engine() {
  if (db_) {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close();
  }
}

rocksdb::ColumnFamilyHandle* Engine::handle(Column c) const {
  return handles_[static_cast<int>(c)];
}

Status Engine::Write(WriteBatch& batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, batch.batch_->GetWriteBatch()));
}

Status Engine::SyncWal() { return FromRocks(db_->SyncWAL()); }

Result<bool> Engine::Get(Column c, std::string_view key, std::string* value,
                         const Snapshot* snapshot) const {
  rocksdb::ReadOptions ro;
  if (snapshot) ro.snapshot = snapshot->raw();
  rocksdb::Status s = db_->Get(ro, handle(c), S(key), value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s);
  return true;
}

Status Engine::MultiGet(Column c, const std::vector<std::string>& keys, std::vector<std::string>* values,
                        std::vector<bool>* found, const Snapshot* snapshot) const {
  rocksdb::ReadOptions ro;
  if (snapshot) ro.snapshot = snapshot->raw();
  std::vector<rocksdb::Slice> slices;
  slices.reserve(keys.size());
  for (const auto& k : keys) slices.emplace_back(k);
  std::vector<rocksdb::PinnableSlice> pinned(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(ro, handle(c), keys.size(), slices.data(), pinned.data(), statuses.data());
  values->assign(keys.size(), std::string());
  found->assign(keys.size(), false);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    if (!statuses[i].ok()) return FromRocks(statuses[i]);
    (*values)[i].assign(pinned[i].data(), pinned[i].size());
    (*found)[i] = true;
  }
  return Status::Ok();
}

std::shared_ptr<const Snapshot> Engine::GetSnapshot() const {
  return std::shared_ptr<const Snapshot>(new Snapshot(db_.get(), db_->GetSnapshot()));
}

std::unique_ptr<Iterator> Engine::NewIterator(Column c, const Snapshot* snapshot,
                                              std::string_view lower,
                                              std::string_view upper) const {
  auto it = std::unique_ptr<Iterator>(new Iterator());
  it->bounds_ = MakeBounds(lower, upper, snapshot ? snapshot->raw() : nullptr);
  it->it_.reset(db_->NewIterator(it->bounds_->read_options, handle(c)));
  return it;
}

uint64_t Engine::TotalSizeBytes() const {
  uint64_t total = 0;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) total += v;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) total += v;
  }
  return total;
}

uint64_t Engine::LiveDataSizeBytes() const {
  uint64_t total = 0;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kEstimateLiveDataSize, &v)) total += v;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) total += v;
  }
  return total;
}

Status Engine::CompactAll() {
  rocksdb::CompactRangeOptions opts;
  opts.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (auto* h : handles_) {
    Status s = FromRocks(db_->CompactRange(opts, h, nullptr, nullptr));
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status Engine::Checkpoint(const std::string& dir) {
  rocksdb::Checkpoint* cp = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(db_.get(), &cp);
  if (!s.ok()) return FromRocks(s);
  std::unique_ptr<rocksdb::Checkpoint> owner(cp);
  return FromRocks(cp->CreateCheckpoint(dir));
}

void PutFixed64BE(std::string* dst, uint64_t v) {
  char buf[8];
  for (int i = 7; i >= 0; i--) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  dst->append(buf, 8);
}

uint64_t DecodeFixed64BE(std::string_view src) {
  CHECK(src.size() >= 8) << "short fixed64: " << src.size();
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | static_cast<uint8_t>(src[i]);
  return v;
}

}  // namespace cairn::storage
