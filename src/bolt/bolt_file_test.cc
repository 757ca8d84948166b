#include "bolt/bolt_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>

namespace cairn::bolt {
namespace {

namespace fs = std::filesystem;

class BoltFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bolt_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  using Data = std::map<std::string, std::map<std::string, std::string>>;

  void Write(const std::string& path, const Data& data) {
    auto w = BoltWriter::Create(path);
    ASSERT_TRUE(w.ok()) << w.status().message();
    for (const auto& [bucket, kvs] : data) {
      ASSERT_TRUE((*w)->BeginBucket(bucket).ok());
      for (const auto& [k, v] : kvs) ASSERT_TRUE((*w)->Put(k, v).ok());
    }
    ASSERT_TRUE((*w)->Finish().ok());
    EXPECT_EQ(fs::file_size(path), (*w)->size());
  }

  static Data Read(const BoltReader& r) {
    Data out;
    auto names = r.Buckets();
    EXPECT_TRUE(names.ok());
    for (const auto& name : *names) {
      auto& kvs = out[name];
      std::string last;
      Status s = r.ForEach(name, [&](std::string_view k, std::string_view v) {
        EXPECT_TRUE(kvs.empty() || std::string(k) > last) << "out of order";
        last = std::string(k);
        kvs[std::string(k)] = std::string(v);
        return Status::Ok();
      });
      EXPECT_TRUE(s.ok()) << s.message();
    }
    return out;
  }

  fs::path dir_;
};

TEST_F(BoltFileTest, RoundTripsSmallAndLargeBuckets) {
  Data data;
  data["empty"];
  data["meta"]["consistent_index"] = std::string("\0\0\0\0\0\0\0\x07", 8);
  std::mt19937 rng(7);
  // Enough keys for three levels of branch pages, values of every size,
  // some far larger than a page (overflow pages).
  for (int i = 0; i < 60000; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "%016d_%d", i * 7, i % 3);
    const size_t size = i % 997 == 0 ? 20000 + rng() % 50000 : rng() % 200;
    data["key"][key] = std::string(size, static_cast<char>('a' + i % 26));
  }
  const std::string path = Path("db");
  Write(path, data);
  auto r = BoltReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->page_size(), kDefaultPageSize);
  EXPECT_EQ(Read(**r), data);
  EXPECT_EQ((*r)->ForEach("nope", [](std::string_view, std::string_view) { return Status::Ok(); }).code(),
            Code::kNotFound);
}

TEST_F(BoltFileTest, StreamAfterPlanIsTheFileByteForByte) {
  Data data;
  data["a"];
  for (int i = 0; i < 20000; ++i) data["b"]["k" + std::to_string(1000000 + i)] = std::string(i % 5000 == 0 ? 9000 : i % 90, 'v');
  data["c"]["x"] = "y";
  const std::string path = Path("db");
  Write(path, data);
  auto feed = [&](BoltWriter* w) {
    for (const auto& [bucket, kvs] : data) {
      EXPECT_TRUE(w->BeginBucket(bucket).ok());
      for (const auto& [k, v] : kvs) EXPECT_TRUE(w->Put(k, v).ok());
    }
    return w->Finish();
  };
  auto plan = BoltWriter::Plan();
  auto layout = feed(plan.get());
  ASSERT_TRUE(layout.ok());
  std::string streamed;
  auto stream = BoltWriter::Stream(*layout, [&](std::string_view b) {
    streamed.append(b);
    return Status::Ok();
  });
  ASSERT_TRUE(feed(stream.get()).ok());
  std::ifstream f(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(streamed.size(), file.size());
  EXPECT_TRUE(streamed == file);
  // Other data than planned is refused.
  auto wrong = BoltWriter::Stream(*layout, [](std::string_view) { return Status::Ok(); });
  ASSERT_TRUE(wrong->BeginBucket("a").ok());
  EXPECT_EQ(wrong->Finish().status().code(), Code::kInternal);
}

TEST_F(BoltFileTest, ReadsTheDatabaseBeforeATrailer) {
  Data data;
  data["a"]["k"] = "v";
  const std::string path = Path("db");
  Write(path, data);
  const auto size = static_cast<int64_t>(fs::file_size(path));
  {
    std::ofstream f(path, std::ios::app | std::ios::binary);
    f << std::string(32, 'h');  // etcd's sha256 after the database
  }
  auto r = BoltReader::Open(path, size);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(Read(**r), data);
}

TEST_F(BoltFileTest, RefusesBadOrder) {
  auto w = BoltWriter::Create(Path("db"));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->BeginBucket("b").ok());
  EXPECT_EQ((*w)->Put("", "v").code(), Code::kInvalidArgument);
  ASSERT_TRUE((*w)->Put("k2", "v").ok());
  EXPECT_EQ((*w)->Put("k1", "v").code(), Code::kInvalidArgument);
  EXPECT_EQ((*w)->Put("k2", "v").code(), Code::kInvalidArgument);
  EXPECT_EQ((*w)->BeginBucket("a").code(), Code::kInvalidArgument);
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_FALSE((*w)->Put("k3", "v").ok());
}

TEST_F(BoltFileTest, TruncatedFileIsDataLoss) {
  Data data;
  for (int i = 0; i < 2000; ++i) data["key"]["k" + std::to_string(100000 + i)] = std::string(100, 'x');
  const std::string path = Path("db");
  Write(path, data);
  fs::resize_file(path, fs::file_size(path) - 4096);
  auto r = BoltReader::Open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDataLoss);
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
  fs::resize_file(path, 100);
  EXPECT_EQ(BoltReader::Open(path).status().code(), Code::kDataLoss);
}

TEST_F(BoltFileTest, OneBadMetaFallsBackToTheOther) {
  Data data;
  data["a"]["k"] = "v";
  const std::string path = Path("db");
  Write(path, data);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(4096 + 16 + 20);  // meta 1 (the newer): its root
  f.put('\x7f');
  f.close();
  auto r = BoltReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)->txid(), 0u);
  EXPECT_EQ(Read(**r), data);
  std::fstream g(path, std::ios::in | std::ios::out | std::ios::binary);
  g.seekp(16 + 20);
  g.put('\x7f');
  g.close();
  EXPECT_EQ(BoltReader::Open(path).status().code(), Code::kDataLoss);
}

TEST_F(BoltFileTest, CorruptPagesGiveErrorsNotCrashes) {
  Data data;
  for (int i = 0; i < 3000; ++i) data["key"]["k" + std::to_string(100000 + i)] = std::string(i % 300, 'x');
  data["meta"]["m"] = "1";
  const std::string path = Path("db");
  Write(path, data);
  std::string original;
  {
    std::ifstream f(path, std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::mt19937 rng(11);
  const std::string bad = Path("bad");
  int errors = 0;
  for (int round = 0; round < 300; ++round) {
    std::string copy = original;
    for (int i = 0; i < 4; ++i) {
      // Past the metas (those are checksummed): page headers and elements.
      const size_t at = 2 * 4096 + rng() % (copy.size() - 2 * 4096);
      copy[at] = static_cast<char>(rng());
    }
    {
      std::ofstream f(bad, std::ios::binary | std::ios::trunc);
      f << copy;
    }
    auto r = BoltReader::Open(bad);
    if (!r.ok()) {
      ++errors;
      continue;
    }
    auto names = (*r)->Buckets();
    if (!names.ok()) {
      ++errors;
      continue;
    }
    for (const auto& n : *names) {
      if (!(*r)->ForEach(n, [](std::string_view, std::string_view) { return Status::Ok(); }).ok()) ++errors;
    }
  }
  EXPECT_GT(errors, 0);  // some flips hit structure and are caught
}

TEST(LooksLikeBoltTest, TellsBoltFromOtherFiles) {
  EXPECT_FALSE(LooksLikeBolt("CAIRNSNAP1\n00000000000000000000000000000"));
  std::string meta(32, '\0');
  meta[16] = '\xed';
  meta[17] = '\xda';
  meta[18] = '\x0c';
  meta[19] = '\xed';
  meta[20] = 2;
  EXPECT_TRUE(LooksLikeBolt(meta));
}

}  // namespace
}  // namespace cairn::bolt
