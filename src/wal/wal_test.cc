#include "wal/wal.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace cairn::wal {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSmallSegment = 64 << 10;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void WriteFile(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

Entry MakeEntry(uint64_t index, size_t bytes = 100, uint64_t term = 1, char salt = 'a') {
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; i++) data[i] = static_cast<char>(salt + (index * 7 + i) % 23);
  return Entry{index, term, 0, std::move(data)};
}

// Fails fallocate and/or fdatasync on demand.
class FaultyEnv : public WalEnv {
 public:
  std::atomic<int> allocate_error{0};
  std::atomic<int> sync_error{0};
  int Allocate(int fd, uint64_t bytes) override {
    int e = allocate_error.load();
    return e ? e : WalEnv::Allocate(fd, bytes);
  }
  int SyncData(int fd) override {
    int e = sync_error.load();
    return e ? e : WalEnv::SyncData(fd);
  }
};

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wal_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/wal";
    options_.segment_bytes = kSmallSegment;
    options_.env = &env_;
  }
  void TearDown() override {
    wal_.reset();
    fs::remove_all(root_);
  }

  Status TryOpen(const std::string& dir = "") {
    wal_.reset();
    auto w = Wal::Open(dir.empty() ? dir_ : dir, options_);
    if (!w.ok()) return w.status();
    wal_ = std::move(w).value();
    return Status::Ok();
  }
  void Open() {
    Status s = TryOpen();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void AppendRange(uint64_t from, uint64_t to, size_t bytes = 100, char salt = 'a', bool sync = true) {
    std::vector<Entry> entries;
    for (uint64_t i = from; i <= to; i++) entries.push_back(MakeEntry(i, bytes, 1, salt));
    Status s = wal_->Append(entries);
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (sync) {
      s = wal_->Sync();
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }

  std::vector<Entry> ReadAll(uint64_t from, size_t max_bytes = 1 << 20) {
    std::vector<Entry> all;
    while (true) {
      auto r = wal_->ReadFrom(from, max_bytes);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok() || r->empty()) break;
      for (auto& e : *r) all.push_back(std::move(e));
      from = all.back().index + 1;
    }
    return all;
  }

  // Entries from..to are there (more may follow).
  void ExpectEntries(uint64_t from, uint64_t to, size_t bytes = 100, char salt = 'a') {
    auto all = ReadAll(from);
    ASSERT_GE(all.size(), to + 1 - from);
    for (uint64_t i = from; i <= to; i++) {
      ASSERT_EQ(all[i - from], MakeEntry(i, bytes, 1, salt)) << "entry " << i;
    }
  }

  std::vector<fs::path> SegmentFiles() {
    std::vector<fs::path> files;
    for (auto& e : fs::directory_iterator(dir_)) {
      if (e.path().extension() == ".wal") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  std::string root_;
  std::string dir_;
  FaultyEnv env_;
  WalOptions options_;
  std::unique_ptr<Wal> wal_;
};

TEST(RecordTest, Crc32cIsCastagnoli) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(RecordTest, ZerosAreNeverARecord) {
  std::string zeros(256, '\0');
  RecordView v;
  EXPECT_EQ(PlausibleRecordLength(zeros, 0), 0u);
  EXPECT_FALSE(DecodeRecord(zeros, 0, &v));
  SegmentHeader h;
  EXPECT_FALSE(DecodeSegmentHeader(zeros, &h));
}

TEST(RecordTest, RecordsRoundTripAndCarryTheirSegment) {
  std::string buf;
  Entry e{42, 7, 3, "payload"};
  EncodeEntry(5, 41, e, &buf);
  EXPECT_EQ(buf.size(), EntryRecordBytes(e.data.size()));
  EXPECT_EQ(buf.size() % kRecordAlign, 0u);
  RecordView v;
  ASSERT_TRUE(DecodeRecord(buf, 5, &v));
  EXPECT_EQ(v.type, RecordType::kEntry);
  EXPECT_EQ(v.index, 42u);
  EXPECT_EQ(v.term, 7u);
  EXPECT_EQ(v.entry_type, 3);
  EXPECT_EQ(v.synced_index, 41u);
  EXPECT_EQ(v.data, "payload");
  // A recycled file's old record (another seq) is not a record of this one.
  EXPECT_FALSE(DecodeRecord(buf, 6, &v));
}

TEST_F(WalTest, NewLogIsEmptyAndStartsAtOne) {
  Open();
  EXPECT_TRUE(wal_->empty());
  EXPECT_EQ(wal_->first_index(), 1u);
  EXPECT_EQ(wal_->last_index(), 0u);
  EXPECT_TRUE(wal_->hard_state().empty());
  auto r = wal_->ReadFrom(1, 100);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST_F(WalTest, RoundTripAndRestart) {
  Open();
  AppendRange(1, 10);
  EXPECT_EQ(wal_->last_index(), 10u);
  EXPECT_EQ(wal_->synced_index(), 10u);
  ExpectEntries(1, 10);
  AppendRange(11, 20);
  Open();
  EXPECT_EQ(wal_->first_index(), 1u);
  EXPECT_EQ(wal_->last_index(), 20u);
  ExpectEntries(1, 20);
  // Appending after a restart continues the same segment.
  AppendRange(21, 30);
  Open();
  ExpectEntries(1, 30);
  EXPECT_EQ(SegmentFiles().size(), 1u);
}

TEST_F(WalTest, AppendRejectsAGap) {
  Open();
  AppendRange(1, 3);
  std::vector<Entry> bad{MakeEntry(5)};
  EXPECT_EQ(wal_->Append(bad).code(), Code::kInvalidArgument);
  std::vector<Entry> unordered{MakeEntry(4), MakeEntry(6)};
  EXPECT_EQ(wal_->Append(unordered).code(), Code::kInvalidArgument);
  EXPECT_EQ(wal_->last_index(), 3u);
}

TEST_F(WalTest, UnsyncedEntriesAreNotReadAndNotDurable) {
  Open();
  AppendRange(1, 5);
  AppendRange(6, 8, 100, 'a', /*sync=*/false);
  EXPECT_EQ(wal_->last_index(), 8u);
  EXPECT_EQ(ReadAll(1).size(), 5u);
  // Reopening without a Sync (as after a crash): the buffer never reached
  // the file.
  Open();
  EXPECT_EQ(wal_->last_index(), 5u);
}

TEST_F(WalTest, ReadFromRespectsMaxBytesAndStartsAnywhere) {
  Open();
  AppendRange(1, 300);
  auto r = wal_->ReadFrom(100, 250);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].index, 100u);
  // At least one entry even when it is larger than max_bytes.
  r = wal_->ReadFrom(7, 1);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0], MakeEntry(7));
  ExpectEntries(129, 300);
  r = wal_->ReadFrom(301, 100);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST_F(WalTest, RolloverAcrossSegments) {
  Open();
  // ~144 bytes a record, 64 KiB segments: about 450 entries a segment.
  for (uint64_t i = 1; i <= 2000; i += 100) AppendRange(i, i + 99);
  EXPECT_GE(wal_->segment_count(), 4u);
  ExpectEntries(1, 2000);
  Open();
  EXPECT_EQ(wal_->last_index(), 2000u);
  ExpectEntries(1, 2000);
  AppendRange(2001, 2500);
  Open();
  ExpectEntries(1, 2500);
}

TEST_F(WalTest, MaintainPreparesSparesAheadOfRollover) {
  Open();
  ASSERT_TRUE(wal_->Maintain().ok());
  EXPECT_EQ(wal_->spare_count(), 1u);
  AppendRange(1, 10);  // activates the spare
  EXPECT_EQ(wal_->spare_count(), 0u);
  ASSERT_TRUE(wal_->Maintain().ok());
  EXPECT_EQ(wal_->spare_count(), 1u);
  // Spares are zero-filled, full size.
  auto files = SegmentFiles();
  ASSERT_EQ(files.size(), 2u);
  std::string spare = ReadFile(files.back());
  EXPECT_EQ(spare.size(), kSmallSegment);
  EXPECT_EQ(spare, std::string(kSmallSegment, '\0'));
  // A spare survives a restart as a spare.
  Open();
  EXPECT_EQ(wal_->spare_count(), 1u);
  EXPECT_EQ(wal_->segment_count(), 1u);
}

TEST_F(WalTest, AnEntryLargerThanASegmentGetsItsOwnSegment) {
  Open();
  AppendRange(1, 3);
  std::vector<Entry> big{MakeEntry(4, 200 << 10)};
  ASSERT_TRUE(wal_->Append(big).ok());
  AppendRange(5, 6);
  Open();
  auto all = ReadAll(1, 1);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[3], MakeEntry(4, 200 << 10));
  EXPECT_EQ(all[5], MakeEntry(6));
}

TEST_F(WalTest, BufferIsWrittenOutBeyondItsLimit) {
  options_.max_buffer_bytes = 4096;
  Open();
  AppendRange(1, 200, 100, 'a', /*sync=*/false);
  // Written (not synced) to the file already: a reopen sees it since the
  // page cache survives a process restart.
  Open();
  EXPECT_GE(wal_->last_index(), 150u);
}

TEST_F(WalTest, HardStateSurvivesRestartRolloverAndRelease) {
  Open();
  EXPECT_TRUE(wal_->SetHardState(HardState{3, 2, 0}).ok());
  ASSERT_TRUE(wal_->Sync().ok());
  Open();
  EXPECT_EQ(wal_->hard_state(), (HardState{3, 2, 0}));
  AppendRange(1, 100);
  ASSERT_TRUE(wal_->SetHardState(HardState{4, 1, 90}).ok());
  AppendRange(101, 3000);
  ASSERT_TRUE(wal_->Maintain().ok());
  ASSERT_GT(wal_->ReleaseBefore(2500), 0u);
  ASSERT_TRUE(wal_->Maintain().ok());
  Open();
  EXPECT_EQ(wal_->hard_state(), (HardState{4, 1, 90}));
  // The latest wins.
  ASSERT_TRUE(wal_->SetHardState(HardState{5, 0, 2999}).ok());
  ASSERT_TRUE(wal_->Sync().ok());
  Open();
  EXPECT_EQ(wal_->hard_state(), (HardState{5, 0, 2999}));
}

TEST_F(WalTest, TruncateAfterDropsTheSuffix) {
  Open();
  AppendRange(1, 100);
  ASSERT_TRUE(wal_->SetHardState(HardState{2, 1, 40}).ok());
  ASSERT_TRUE(wal_->TruncateAfter(50).ok());
  EXPECT_EQ(wal_->last_index(), 50u);
  ExpectEntries(1, 50);
  AppendRange(51, 70, 100, 'x');
  Open();
  EXPECT_EQ(wal_->last_index(), 70u);
  ExpectEntries(1, 50);
  ExpectEntries(51, 70, 100, 'x');
  EXPECT_EQ(wal_->hard_state(), (HardState{2, 1, 40}));
}

TEST_F(WalTest, TruncateAcrossSegmentsAndToEmpty) {
  Open();
  AppendRange(1, 2000);
  ASSERT_GE(wal_->segment_count(), 4u);
  // Into the first segment: the later ones are void.
  ASSERT_TRUE(wal_->TruncateAfter(300).ok());
  EXPECT_EQ(wal_->segment_count(), 2u);
  AppendRange(301, 1200, 100, 'y');
  Open();
  ExpectEntries(1, 300);
  ExpectEntries(301, 1200, 100, 'y');
  // Truncating what is already the end changes nothing.
  ASSERT_TRUE(wal_->TruncateAfter(1200).ok());
  EXPECT_EQ(wal_->last_index(), 1200u);
  EXPECT_EQ(wal_->TruncateAfter(1201).code(), Code::kInvalidArgument);
  // Everything.
  ASSERT_TRUE(wal_->TruncateAfter(0).ok());
  EXPECT_TRUE(wal_->empty());
  Open();
  EXPECT_TRUE(wal_->empty());
  EXPECT_EQ(wal_->first_index(), 1u);
  AppendRange(1, 5, 100, 'z');
  Open();
  ExpectEntries(1, 5, 100, 'z');
}

// TruncateAfter's commit point is the new segment's header: the files of
// the void segments may still be there after a crash.
TEST_F(WalTest, TruncationSurvivesACrashBeforeTheVoidFilesAreGone) {
  Open();
  AppendRange(1, 2000);
  auto files = SegmentFiles();
  ASSERT_GE(files.size(), 4u);
  std::vector<std::pair<fs::path, std::string>> saved;
  for (const auto& f : files) saved.emplace_back(f, ReadFile(f));
  ASSERT_TRUE(wal_->TruncateAfter(100).ok());
  AppendRange(101, 150, 100, 't');
  wal_.reset();
  for (const auto& [path, data] : saved) {
    if (!fs::exists(path)) WriteFile(path, data);
  }
  Open();
  EXPECT_EQ(wal_->last_index(), 150u);
  ExpectEntries(1, 100);
  ExpectEntries(101, 150, 100, 't');
  // They were removed this time.
  EXPECT_EQ(SegmentFiles().size(), 2u);
  // The same for Reset.
  files = SegmentFiles();
  saved.clear();
  for (const auto& f : files) saved.emplace_back(f, ReadFile(f));
  ASSERT_TRUE(wal_->Reset(10000).ok());
  wal_.reset();
  for (const auto& [path, data] : saved) {
    if (!fs::exists(path)) WriteFile(path, data);
  }
  Open();
  EXPECT_TRUE(wal_->empty());
  EXPECT_EQ(wal_->first_index(), 10000u);
}

// Maintain runs on its own thread while the writer appends and releases.
TEST_F(WalTest, MaintainConcurrentWithTheWriter) {
  options_.spare_segments = 2;
  Open();
  std::atomic<bool> stop{false};
  std::thread maintainer([&] {
    while (!stop.load()) {
      EXPECT_TRUE(wal_->Maintain().ok());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  for (uint64_t i = 1; i <= 20000; i += 50) {
    AppendRange(i, i + 49);
    if (i > 3000) wal_->ReleaseBefore(i - 2000);
  }
  stop = true;
  maintainer.join();
  uint64_t first = wal_->first_index();
  Open();
  EXPECT_EQ(wal_->first_index(), first);
  EXPECT_EQ(wal_->last_index(), 20000u);
  ExpectEntries(first, 20000);
}

TEST_F(WalTest, ResetStartsOverAtAnyIndex) {
  Open();
  AppendRange(1, 1000);
  ASSERT_TRUE(wal_->SetHardState(HardState{9, 0, 1000}).ok());
  ASSERT_TRUE(wal_->Reset(5001).ok());
  EXPECT_TRUE(wal_->empty());
  EXPECT_EQ(wal_->first_index(), 5001u);
  Open();
  EXPECT_TRUE(wal_->empty());
  EXPECT_EQ(wal_->first_index(), 5001u);
  EXPECT_EQ(wal_->hard_state(), (HardState{9, 0, 1000}));
  AppendRange(5001, 5100);
  Open();
  ExpectEntries(5001, 5100);
  auto r = wal_->ReadFrom(10, 100);
  EXPECT_EQ(r.status().code(), Code::kOutOfRange);
  // A new log can start anywhere too.
  fs::remove_all(dir_);
  Open();
  ASSERT_TRUE(wal_->Reset(77).ok());
  AppendRange(77, 80);
  Open();
  ExpectEntries(77, 80);
}

TEST_F(WalTest, ReleaseAndRecycleSegments) {
  Open();
  ASSERT_TRUE(wal_->Maintain().ok());
  AppendRange(1, 3000);
  size_t before = wal_->segment_count();
  ASSERT_GE(before, 6u);
  EXPECT_FALSE(wal_->CanReleaseBefore(1));
  size_t released = wal_->ReleaseBefore(2000);
  EXPECT_GT(released, 0u);
  EXPECT_EQ(wal_->segment_count(), before - released);
  EXPECT_LE(wal_->first_index(), 2000u);
  EXPECT_GT(wal_->first_index(), 1u);
  EXPECT_EQ(wal_->ReadFrom(1, 100).status().code(), Code::kOutOfRange);
  uint64_t first = wal_->first_index();
  ASSERT_TRUE(wal_->Maintain().ok());
  // One released file became the spare (spare_segments = 1), the rest are gone.
  EXPECT_EQ(wal_->spare_count(), 1u);
  EXPECT_EQ(SegmentFiles().size(), wal_->segment_count() + 1);
  Open();
  EXPECT_EQ(wal_->first_index(), first);
  EXPECT_EQ(wal_->spare_count(), 1u);
  ExpectEntries(first, 3000);
  // Fill the recycled segment (full of old records of another seq) and more.
  AppendRange(3001, 6000, 100, 'r');
  Open();
  ExpectEntries(3001, 6000, 100, 'r');
  // The active segment never goes.
  size_t segments = wal_->segment_count();
  EXPECT_EQ(wal_->ReleaseBefore(1000000), segments - 1);
  EXPECT_EQ(wal_->segment_count(), 1u);
  Open();
  EXPECT_EQ(wal_->last_index(), 6000u);
}

TEST_F(WalTest, ReleasedButNotYetRecycledSegmentsStillRecover) {
  Open();
  AppendRange(1, 2000);
  wal_->ReleaseBefore(1500);
  uint64_t first = wal_->first_index();
  // Crash before Maintain: the old files are all still there.
  Open();
  EXPECT_EQ(wal_->first_index(), 1u);
  EXPECT_LT(1u, first);
  ExpectEntries(1, 2000);
}

TEST_F(WalTest, EnospcWhilePreparingASegmentChangesNothing) {
  Open();
  AppendRange(1, 100);
  env_.allocate_error = ENOSPC;
  EXPECT_EQ(wal_->Maintain().code(), Code::kResourceExhausted);
  // Enough for the rollover: refused as a whole.
  std::vector<Entry> entries;
  for (uint64_t i = 101; i <= 1000; i++) entries.push_back(MakeEntry(i));
  Status s = wal_->Append(entries);
  EXPECT_EQ(s.code(), Code::kResourceExhausted) << s.ToString();
  EXPECT_EQ(wal_->last_index(), 100u);
  EXPECT_EQ(wal_->SetHardState(HardState{1, 1, 1}).code(), Code::kOk);  // fits
  // The tmp file is gone.
  for (auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
  // Space is back: the same batch goes in.
  env_.allocate_error = 0;
  ASSERT_TRUE(wal_->Append(entries).ok());
  ASSERT_TRUE(wal_->Sync().ok());
  Open();
  ExpectEntries(1, 1000);
}

TEST_F(WalTest, SyncFailureIsReported) {
  Open();
  AppendRange(1, 10);
  env_.sync_error = EIO;
  std::vector<Entry> more{MakeEntry(11)};
  ASSERT_TRUE(wal_->Append(more).ok());
  EXPECT_EQ(wal_->Sync().code(), Code::kInternal);
  env_.sync_error = ENOSPC;
  EXPECT_EQ(wal_->Sync().code(), Code::kResourceExhausted);
  env_.sync_error = 0;
}

// ------------------------------------------------------------ damage

// Bytes of an entry record of 100 data bytes, without its padding (which no
// CRC covers and nothing reads).
constexpr size_t kRecord100 = kRecordHeaderBytes + kEntryFixedBytes + 100;

class WalDamageTest : public WalTest {
 protected:
  // Where the last batch starts: just after the last record before it (its
  // data bytes are never zero).
  static size_t BatchStart(const std::string& before) {
    return AlignUp(before.find_last_not_of('\0') + 1, kRecordAlign);
  }

  // Writes 1..n in batches of 10 (each synced), then `last` as one more
  // synced batch; returns the file and the byte range the last batch wrote.
  void WriteWithLastBatch(uint64_t n, uint64_t last_from, uint64_t last_to, fs::path* file,
                          std::string* before, std::string* after) {
    Open();
    for (uint64_t i = 1; i <= n; i += 10) AppendRange(i, std::min(n, i + 9));
    *file = SegmentFiles().back();
    *before = ReadFile(*file);
    AppendRange(last_from, last_to);
    *after = ReadFile(*file);
    wal_.reset();
  }
};

TEST_F(WalDamageTest, TornLastRecordAtEveryByteEndsTheLogCleanly) {
  fs::path file;
  std::string before, after;
  WriteWithLastBatch(50, 51, 51, &file, &before, &after);
  ASSERT_EQ(before.size(), after.size());
  const size_t lo = BatchStart(before), hi = lo + kRecord100;
  ASSERT_EQ(before.substr(lo, hi - lo), std::string(hi - lo, '\0'));
  for (size_t k = lo; k < hi; k++) {
    // Only the bytes before k reached the disk.
    std::string torn = after;
    for (size_t i = k; i < hi; i++) torn[i] = before[i];
    WriteFile(file, torn);
    Status s = TryOpen();
    ASSERT_TRUE(s.ok()) << "torn at byte " << k << ": " << s.ToString();
    ASSERT_EQ(wal_->last_index(), 50u) << "torn at byte " << k;
    // And the log goes on from there.
    AppendRange(51, 52, 100, 'n');
    Open();
    ASSERT_EQ(wal_->last_index(), 52u);
    ExpectEntries(51, 52, 100, 'n');
    wal_.reset();
  }
  WriteFile(file, after);
  Open();
  ExpectEntries(1, 51);
}

TEST_F(WalDamageTest, TornBatchWithALaterRecordLandedIsStillATornTail) {
  // Sectors of one write can land out of order: the batch's first record is
  // missing but its second made it. Nobody was told the batch is durable.
  fs::path file;
  std::string before, after;
  WriteWithLastBatch(50, 51, 52, &file, &before, &after);
  const size_t lo = BatchStart(before);
  std::string torn = after;
  for (size_t k = lo; k < lo + EntryRecordBytes(100); k++) torn[k] = before[k];
  WriteFile(file, torn);
  Open();
  EXPECT_EQ(wal_->last_index(), 50u);
  // The stray record was wiped: writing 51' (shorter) then 52' cannot pick
  // up the old 52.
  std::vector<Entry> e{MakeEntry(51, 8, 1, 'q')};
  ASSERT_TRUE(wal_->Append(e).ok());
  ASSERT_TRUE(wal_->Sync().ok());
  Open();
  EXPECT_EQ(wal_->last_index(), 51u);
}

TEST_F(WalDamageTest, BitFlipAtTheTailEndsTheLog) {
  fs::path file;
  std::string before, after;
  WriteWithLastBatch(50, 51, 51, &file, &before, &after);
  const size_t lo = BatchStart(before);
  for (size_t k = lo; k < lo + kRecord100; k++) {
    std::string flipped = after;
    flipped[k] ^= 0x10;
    WriteFile(file, flipped);
    Status s = TryOpen();
    ASSERT_TRUE(s.ok()) << "flip at " << k << ": " << s.ToString();
    ASSERT_EQ(wal_->last_index(), 50u) << "flip at " << k;
    wal_.reset();
  }
}

TEST_F(WalDamageTest, BitFlipInTheMiddleIsDataLoss) {
  fs::path file;
  std::string before, after;
  WriteWithLastBatch(50, 51, 51, &file, &before, &after);
  // Entry 20's record: acknowledged, with later batches after it.
  Open();
  auto e20 = wal_->ReadFrom(20, 1);
  ASSERT_TRUE(e20.ok());
  wal_.reset();
  size_t at = after.find((*e20)[0].data);
  ASSERT_NE(at, std::string::npos);
  size_t start = at - kRecordHeaderBytes - kEntryFixedBytes;
  for (size_t k = start; k < start + kRecord100; k++) {
    std::string flipped = after;
    flipped[k] ^= 0x01;
    WriteFile(file, flipped);
    Status s = TryOpen();
    ASSERT_EQ(s.code(), Code::kDataLoss) << "flip at " << k << ": " << s.ToString();
    EXPECT_NE(s.message().find(file.filename().string()), std::string::npos) << s.message();
  }
}

TEST_F(WalDamageTest, DamageInAnEarlierSegmentIsDataLoss) {
  Open();
  AppendRange(1, 2000);
  wal_.reset();
  auto files = SegmentFiles();
  ASSERT_GE(files.size(), 3u);
  std::string seg = ReadFile(files[1]);
  std::string good = seg;
  // The segment's last record: the next segment no longer follows on.
  size_t end = seg.find_last_not_of('\0');
  seg[end - 10] ^= 0x40;
  WriteFile(files[1], seg);
  EXPECT_EQ(TryOpen().code(), Code::kDataLoss);
  // Its header.
  seg = good;
  seg[20] ^= 0x01;
  WriteFile(files[1], seg);
  EXPECT_EQ(TryOpen().code(), Code::kDataLoss);
  // A whole segment missing.
  WriteFile(files[1], good);
  ASSERT_TRUE(TryOpen().ok());
  wal_.reset();
  fs::remove(files[1]);
  Status s = TryOpen();
  EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
}

TEST_F(WalDamageTest, TornHeaderOfANewSegmentEndsTheLogAtThePreviousOne) {
  Open();
  AppendRange(1, 400);
  size_t segments = wal_->segment_count();
  // The batch that rolls over into a new segment; its header never landed.
  AppendRange(401, 600);
  ASSERT_EQ(wal_->segment_count(), segments + 1);
  uint64_t new_first = 0;
  {
    auto r = wal_->ReadFrom(401, 1 << 20);
    ASSERT_TRUE(r.ok());
  }
  wal_.reset();
  auto files = SegmentFiles();
  std::string seg = ReadFile(files.back());
  SegmentHeader h;
  ASSERT_TRUE(DecodeSegmentHeader(seg, &h));
  new_first = h.first_index;
  std::fill(seg.begin(), seg.begin() + 4096, '\0');
  WriteFile(files.back(), seg);
  Open();
  EXPECT_EQ(wal_->last_index(), new_first - 1);
  ExpectEntries(1, new_first - 1);
  AppendRange(new_first, new_first + 500, 100, 'w');
  Open();
  ExpectEntries(new_first, new_first + 500, 100, 'w');
}

}  // namespace
}  // namespace cairn::wal
