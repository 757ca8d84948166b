// Tests of the snapshot format and RestoreSnapshot.
#include "storage/snapshot_stream.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cairn::storage {
namespace {

namespace fs = std::filesystem;
using Pairs = std::vector<std::pair<std::string, std::string>>;

constexpr char kMagic[] = "CAIRNSNAP1\n";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;

std::string Sha256(std::string_view data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, data.data(), data.size());
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(md), len);
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A snapshot file in the documented format from raw records, with a valid
// trailer: lets tests feed RestoreSnapshot bodies the writer never makes.
std::string CraftSnapshot(const std::string& body_after_magic) {
  std::string out(kMagic, kMagicLen);
  out += body_after_magic;
  out.append((512 - out.size() % 512) % 512, '\0');
  out += Sha256(out);
  return out;
}
std::string Record(int column, std::string_view key, std::string_view value) {
  std::string out(1, static_cast<char>(column));
  PutU32(&out, static_cast<uint32_t>(key.size()));
  out.append(key);
  PutU32(&out, static_cast<uint32_t>(value.size()));
  out.append(value);
  return out;
}
const std::string kEnd(1, '\xfe');

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

class SnapshotStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/snapshot_stream_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    source_ = OpenEngine(dir_ + "/source");
  }
  void TearDown() override {
    source_.reset();
    fs::remove_all(dir_);
  }

  static std::unique_ptr<Engine> OpenEngine(const std::string& path) {
    EngineOptions eo;
    eo.path = path;
    auto engine = Engine::Open(eo);
    EXPECT_TRUE(engine.ok()) << engine.status().ToString();
    return engine.ok() ? std::move(engine).value() : nullptr;
  }

  void Write(Column c, const Pairs& puts) {
    WriteBatch b(source_.get());
    for (const auto& [k, v] : puts) b.Put(c, k, v);
    ASSERT_TRUE(source_->Write(b, false).ok());
  }

  // Records in every column, binary keys and values included; some log.
  void Fill() {
    Write(Column::kMeta, {{"current_rev", std::string(8, '\x01')}, {"format", "cairn-v1"}});
    Pairs keys;
    for (int i = 0; i < 300; i++) {
      std::string k = "key" + std::to_string(i);
      k.push_back('\0');
      k.push_back(static_cast<char>(i & 0xff));
      keys.emplace_back(k, std::string(static_cast<size_t>(i % 50), static_cast<char>(i)));
    }
    keys.emplace_back(std::string("\xff\xfe", 2), "");  // a key like the end marker
    Write(Column::kKey, keys);
    Write(Column::kRev, {{std::string(16, '\0'), "vkey"}, {std::string(16, '\x01'), "tkey"}});
    Write(Column::kLease, {{std::string(8, '\x07'), std::string(8, '\x00')}});
    Write(Column::kLeaseKey, {{std::string(8, '\x07') + "key1", ""}});
    Write(Column::kLog,
          {{std::string(8, '\x00') + "1", "entry 1"}, {std::string(8, '\x00') + "2", "entry 2"}});
  }

  // The whole stream of `engine` at `snap`, `chunk` bytes at a time.
  static std::string Stream(Engine* engine, std::shared_ptr<const Snapshot> snap, size_t chunk) {
    SnapshotReader reader(engine, std::move(snap));
    std::string out;
    int calls = 0;
    while (true) {
      std::string piece;
      auto more = reader.NextChunk(&piece, chunk);
      EXPECT_TRUE(more.ok()) << more.status().ToString();
      if (!more.ok() || !*more) break;
      EXPECT_FALSE(piece.empty());
      out += piece;
      EXPECT_LT(++calls, 1000000) << "the reader makes no progress";
      if (calls >= 1000000) break;
    }
    EXPECT_TRUE(reader.done());
    std::string after;
    EXPECT_FALSE(reader.NextChunk(&after, chunk).value());  // stays done
    EXPECT_TRUE(after.empty());
    return out;
  }
  std::string StreamSource(size_t chunk = 64 << 10) {
    return Stream(source_.get(), source_->GetSnapshot(), chunk);
  }

  static Pairs Rows(Engine* engine, storage::Column c) {
    Pairs out;
    auto it = engine->NewIterator(c);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out.emplace_back(std::string(it->key()), std::string(it->value()));
    }
    EXPECT_TRUE(it->status().ok());
    return out;
  }

  std::string SaveSnapshot(const std::string& data, const std::string& name = "snap.db") {
    std::string path = dir_ + "/" + name;
    WriteFile(path, data);
    return path;
  }

  std::string dir_;
  std::unique_ptr<Engine> source_;
};

TEST_F(SnapshotStreamTest, FormatAndEtcdctlSizeRule) {
  Fill();
  std::string data = StreamSource();
  ASSERT_GT(data.size(), 512u);
  EXPECT_EQ(data.size() % 512, 32u);  // what etcdctl snapshot save checks
  EXPECT_EQ(data.compare(0, kMagicLen, kMagic), 0);
  const std::string body = data.substr(0, data.size() - 32);
  EXPECT_EQ(data.substr(data.size() - 32), Sha256(body));
  // An empty database streams to a header, an end marker, padding, hash.
  auto empty = OpenEngine(dir_ + "/empty");
  std::string e = Stream(empty.get(), empty->GetSnapshot(), 100);
  ASSERT_EQ(e.size(), 512u + 32u);
  EXPECT_EQ(e[kMagicLen], '\xfe');
  EXPECT_EQ(e.substr(kMagicLen + 1, 512 - kMagicLen - 1), std::string(512 - kMagicLen - 1, '\0'));
}

TEST_F(SnapshotStreamTest, ChunkSizeDoesNotChangeTheBytes) {
  Fill();
  auto snap = source_->GetSnapshot();
  const std::string whole = Stream(source_.get(), snap, 64 << 20);
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{511}, size_t{512}, size_t{4096}}) {
    EXPECT_EQ(Stream(source_.get(), snap, chunk), whole) << "chunk " << chunk;
  }
}

TEST_F(SnapshotStreamTest, RoundTripRestoresEveryColumnButTheLog) {
  Fill();
  const std::string path = SaveSnapshot(StreamSource(1000));
  const std::string target = dir_ + "/restored/cairn.db";
  fs::create_directories(dir_ + "/restored");
  Status s = RestoreSnapshot(path, target);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto restored = OpenEngine(target);
  ASSERT_NE(restored, nullptr);
  for (int c = 0; c < static_cast<int>(Column::kCount); c++) {
    const auto column = static_cast<storage::Column>(c);
    if (column == Column::kLog) continue;
    auto want = Rows(source_.get(), column);
    EXPECT_FALSE(want.empty()) << "column " << c;
    EXPECT_EQ(Rows(restored.get(), column), want) << "column " << c;
  }
  EXPECT_TRUE(Rows(restored.get(), Column::kLog).empty());
  // A restored database streams to the same snapshot again.
  restored.reset();
  auto reopened = OpenEngine(target);
  EXPECT_EQ(Stream(reopened.get(), reopened->GetSnapshot(), 4096), StreamSource());
}

TEST_F(SnapshotStreamTest, TheStreamIsAPointInTime) {
  Write(Column::kKey, {{"before", "1"}});
  auto snap = source_->GetSnapshot();
  Write(Column::kKey, {{"after", "1"}});
  {
    WriteBatch b(source_.get());
    b.Delete(Column::kKey, "before");
    ASSERT_TRUE(source_->Write(b, false).ok());
  }
  const std::string path = SaveSnapshot(Stream(source_.get(), snap, 10));
  ASSERT_TRUE(RestoreSnapshot(path, dir_ + "/restored").ok());
  auto restored = OpenEngine(dir_ + "/restored");
  EXPECT_EQ(Rows(restored.get(), Column::kKey), (Pairs{{"before", "1"}}));
}

TEST_F(SnapshotStreamTest, LargeValuesAndABodyBeyondOneRestoreBatch) {
  // More than the 16 MiB RestoreSnapshot writes at a time.
  std::string big(1 << 20, 'x');
  for (int i = 0; i < 20; i++) {
    big[0] = static_cast<char>('a' + i);
    Write(Column::kKey, {{"big" + std::to_string(100 + i), big}});
  }
  Write(Column::kMeta, {{"last", "one"}});
  const std::string data = StreamSource(256 << 10);
  EXPECT_EQ(data.size() % 512, 32u);
  const std::string path = SaveSnapshot(data);
  ASSERT_TRUE(RestoreSnapshot(path, dir_ + "/restored").ok());
  auto restored = OpenEngine(dir_ + "/restored");
  auto rows = Rows(restored.get(), Column::kKey);
  ASSERT_EQ(rows.size(), 20u);
  EXPECT_EQ(rows[19].second.size(), size_t{1} << 20);
  EXPECT_EQ(rows[19].second[0], 't');
  EXPECT_EQ(Rows(restored.get(), Column::kMeta), (Pairs{{"last", "one"}}));
}

TEST_F(SnapshotStreamTest, ACorruptedByteIsRefused) {
  Fill();
  const std::string good = StreamSource();
  const size_t positions[] = {0,
                              5,
                              kMagicLen,
                              kMagicLen + 3,
                              good.size() / 2,
                              good.size() - 33,  // the last padding byte
                              good.size() - 32,  // the first hash byte
                              good.size() - 1};
  for (size_t pos : positions) {
    std::string bad = good;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x01);
    const std::string path = SaveSnapshot(bad, "bad.db");
    const std::string target = dir_ + "/bad-target";
    Status s = RestoreSnapshot(path, target);
    EXPECT_FALSE(s.ok()) << "byte " << pos;
    if (pos >= kMagicLen) {
      EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
      EXPECT_NE(s.message().find("checksum"), std::string::npos) << s.ToString();
    }
    EXPECT_FALSE(fs::exists(target)) << "byte " << pos << ": nothing may be created";
  }
}

TEST_F(SnapshotStreamTest, TruncatedOrForeignFilesAreRefused) {
  Fill();
  const std::string good = StreamSource();
  const std::string target = dir_ + "/target";
  struct Case {
    const char* name;
    std::string data;
  };
  const std::vector<Case> cases = {
      {"empty", ""},
      {"one byte short", good.substr(0, good.size() - 1)},
      {"one block short", good.substr(0, good.size() - 512)},
      {"hash only", good.substr(good.size() - 32)},
      {"a bolt file", std::string(4096, '\0')},
      {"wrong magic",
       [&] {
         std::string d = good;
         d[0] = 'X';
         return d;
       }()},
  };
  for (const auto& c : cases) {
    Status s = RestoreSnapshot(SaveSnapshot(c.data, "x.db"), target);
    EXPECT_FALSE(s.ok()) << c.name;
    EXPECT_FALSE(fs::exists(target)) << c.name;
  }
  Status s = RestoreSnapshot(dir_ + "/no-such-file", target);
  EXPECT_EQ(s.code(), Code::kNotFound) << s.ToString();
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(SnapshotStreamTest, RefusesAnExistingNonEmptyTarget) {
  Fill();
  const std::string path = SaveSnapshot(StreamSource());
  const std::string target = dir_ + "/target";
  fs::create_directories(target);
  WriteFile(target + "/something", "x");
  Status s = RestoreSnapshot(path, target);
  EXPECT_EQ(s.code(), Code::kAlreadyExists) << s.ToString();
  EXPECT_TRUE(fs::exists(target + "/something"));
  EXPECT_EQ(fs::directory_iterator(target)->path().filename(), "something");
  // A restored database is itself a non-empty target.
  ASSERT_TRUE(RestoreSnapshot(path, dir_ + "/first").ok());
  EXPECT_EQ(RestoreSnapshot(path, dir_ + "/first").code(), Code::kAlreadyExists);
}

// snapshot_stream.h: "Refuses a data dir that already exists and is not
// empty" - so an existing empty directory is accepted.
TEST_F(SnapshotStreamTest, AcceptsAnExistingEmptyTarget) {
  Fill();
  const std::string path = SaveSnapshot(StreamSource());
  const std::string target = dir_ + "/empty-target";
  fs::create_directories(target);
  Status s = RestoreSnapshot(path, target);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(SnapshotStreamTest, ValidHashButMalformedBodyIsRefused) {
  const std::string target = dir_ + "/target";
  struct Case {
    const char* name;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"no end marker", Record(1, "k", "v")},
      {"unknown column", Record(1, "k", "v") + Record(9, "k", "v") + kEnd},
      {"value longer than the file",
       [] {
         std::string r = Record(1, "k", "v");
         r[1 + 4 + 1] = '\x7f';  // value length 0x7f
         return r + kEnd;
       }()},
      {"short record", std::string("\x01\x02\x00", 3)},
  };
  for (const auto& c : cases) {
    Status s = RestoreSnapshot(SaveSnapshot(CraftSnapshot(c.body), "crafted.db"), target);
    EXPECT_EQ(s.code(), Code::kDataLoss) << c.name << ": " << s.ToString();
    fs::remove_all(target);
  }
  // A crafted but well-formed file restores.
  Status s = RestoreSnapshot(
      SaveSnapshot(CraftSnapshot(Record(0, "m", "1") + Record(3, "l", "2") + kEnd), "ok.db"),
      target);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto restored = OpenEngine(target);
  EXPECT_EQ(Rows(restored.get(), Column::kLease), (Pairs{{"l", "2"}}));
}

TEST_F(SnapshotStreamTest, AFailedRestoreLeavesNoDatabaseBehind) {
  const std::string target = dir_ + "/target";
  Status s = RestoreSnapshot(
      SaveSnapshot(CraftSnapshot(Record(1, "k", "v") + Record(9, "k", "v") + kEnd)), target);
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(SnapshotStreamTest, AHugeKeyLengthIsRefusedNotRead) {
  std::string body(1, '\x01');
  PutU32(&body, 0xffffffffu);
  body += "kkkkvvvv";
  Status s = RestoreSnapshot(SaveSnapshot(CraftSnapshot(body + kEnd)), dir_ + "/target");
  EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
}

}  // namespace
}  // namespace cairn::storage
