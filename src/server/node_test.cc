#include "server/node.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

namespace cairn::server {
namespace {

namespace fs = std::filesystem;

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/node_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    options_.data_dir = root_ + "/member";
    options_.log_segment_bytes = 64 << 10;
  }
  void TearDown() override {
    node_.reset();
    fs::remove_all(root_);
  }

  void Start() {
    node_.reset();
    node_ = std::make_unique<Node>(options_);
    Status s = node_->Start(NodeHooks{});
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = node_->Publish();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Stop() { node_.reset(); }

  cairnpb::InternalResponse Put(const std::string& key, const std::string& value) {
    cairnpb::InternalRequest req;
    req.mutable_put()->set_key(key);
    req.mutable_put()->set_value(value);
    std::promise<cairnpb::InternalResponse> done;
    node_->Propose(std::move(req), [&](const cairnpb::InternalResponse& r) { done.set_value(r); });
    return done.get_future().get();
  }

  // The value of `key`, or "" if it is not there.
  std::string Get(const std::string& key) {
    auto r = node_->kv()->Read()->Range(key, "", mvcc::RangeOptions{});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || r->kvs.empty()) return "";
    return r->kvs[0].value();
  }

  size_t SegmentFiles() {
    size_t n = 0;
    for (auto& e : fs::directory_iterator(options_.data_dir + "/wal")) n += e.path().extension() == ".wal";
    return n;
  }

  std::string root_;
  NodeOptions options_;
  std::unique_ptr<Node> node_;
};

TEST_F(NodeTest, WritesGoThroughTheLogAndSurviveRestart) {
  Start();
  for (int i = 0; i < 20; i++) {
    EXPECT_EQ(Put("k" + std::to_string(i), "v" + std::to_string(i)).error_code(), 0);
  }
  // Entries 1 (the membership), 2 (the leader's empty entry), 3 (this
  // member's attributes), then the puts.
  EXPECT_EQ(node_->applied_index(), 23u);
  EXPECT_EQ(node_->kv()->CurrentRevision(), 21);
  EXPECT_TRUE(fs::exists(options_.data_dir + "/wal"));
  Stop();
  Start();
  // A new term: its empty entry and the attributes again.
  EXPECT_EQ(node_->applied_index(), 25u);
  EXPECT_EQ(node_->kv()->CurrentRevision(), 21);
  EXPECT_EQ(Get("k7"), "v7");
  EXPECT_EQ(Put("k20", "v20").error_code(), 0);
  EXPECT_EQ(node_->applied_index(), 26u);
  EXPECT_EQ(node_->raft_term(), 3u);
  EXPECT_EQ(node_->leader_id(), node_->ids().member_id);
}

TEST_F(NodeTest, MemberIdsAreEtcds) {
  Start();
  // etcd's ids for --initial-advertise-peer-urls http://localhost:2380 and
  // the default token (`etcd` with no flags prints these).
  EXPECT_EQ(node_->ids().member_id, 0x8e9e05c52164694dULL);
  EXPECT_EQ(node_->ids().cluster_id, 0xcdf818194e3a8c32ULL);
  auto members = node_->applier()->Members();
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].name(), "default");
  EXPECT_EQ(members[0].peer_urls(0), "http://localhost:2380");
  EXPECT_EQ(members[0].client_urls(0), "http://localhost:2379");
}

// The apply writes are not synced; after a power loss RocksDB may come back
// older than the log. Simulated with a copy of the database taken earlier.
TEST_F(NodeTest, ReplaysTheLogPastAnOlderDatabase) {
  Start();
  for (int i = 0; i < 10; i++) ASSERT_EQ(Put("a" + std::to_string(i), "1").error_code(), 0);
  Stop();
  fs::copy(options_.data_dir + "/cairn.db", root_ + "/old.db", fs::copy_options::recursive);
  Start();
  for (int i = 0; i < 10; i++) ASSERT_EQ(Put("b" + std::to_string(i), "2").error_code(), 0);
  int64_t rev = node_->kv()->CurrentRevision();
  Stop();
  fs::remove_all(options_.data_dir + "/cairn.db");
  fs::rename(root_ + "/old.db", options_.data_dir + "/cairn.db");
  Start();  // returns once everything in the log is applied again
  EXPECT_EQ(node_->kv()->CurrentRevision(), rev);
  EXPECT_EQ(Get("b9"), "2");
}

// Data dirs of the version before the log files keep their log in column
// kLog: entries past the applied index are applied once, then the column is
// emptied and the new log starts after them.
class NodeLegacyTest : public NodeTest, public ::testing::WithParamInterface<bool> {};

// With the log folder removed (a data dir of the old version), and with it
// kept (the old version ran on a data dir the new one had written: its log
// files are stale).
TEST_P(NodeLegacyTest, OldLogColumnIsReplayedThenDropped) {
  Start();
  ASSERT_EQ(Put("x", "1").error_code(), 0);
  ASSERT_EQ(Put("y", "1").error_code(), 0);
  Stop();
  if (GetParam()) fs::remove_all(options_.data_dir + "/wal");
  {
    storage::EngineOptions eo;
    eo.path = options_.data_dir + "/cairn.db";
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    storage::WriteBatch b(engine->get());
    // The old version's layout: no Raft log base, applied index 2 (x and y;
    // that version had no membership or empty entries).
    b.Delete(storage::Column::kMeta, "raft_log_base");
    std::string applied;
    storage::PutFixed64BE(&applied, 2);
    b.Put(storage::Column::kMeta, "applied_index", applied);
    // An applied entry (1) that must not be applied again, and two that were
    // logged but not applied (3, 4).
    for (uint64_t index : {1, 3, 4}) {
      cairnpb::InternalRequest req;
      req.mutable_put()->set_key(index == 1 ? "x" : "z" + std::to_string(index));
      req.mutable_put()->set_value("legacy");
      cairnpb::LogEntry entry;
      entry.set_index(index);
      entry.set_term(2);
      entry.set_data(req.SerializeAsString());
      std::string key;
      storage::PutFixed64BE(&key, index);
      b.Put(storage::Column::kLog, key, entry.SerializeAsString());
    }
    ASSERT_TRUE((*engine)->Write(b, true).ok());
  }
  Start();
  // The old log's entries 3 and 4 were applied, then the Raft log started
  // after them: 5 the leader's empty entry, 6 the attributes.
  EXPECT_EQ(node_->applied_index(), 6u);
  EXPECT_EQ(Get("x"), "1");
  EXPECT_EQ(Get("z3"), "legacy");
  EXPECT_EQ(Get("z4"), "legacy");
  {
    auto it = node_->engine()->NewIterator(storage::Column::kLog);
    it->SeekToFirst();
    EXPECT_FALSE(it->Valid());
  }
  EXPECT_EQ(Put("w", "new").error_code(), 0);
  EXPECT_EQ(node_->applied_index(), 7u);
  Stop();
  Start();
  EXPECT_EQ(node_->applied_index(), 9u);
  EXPECT_EQ(Get("w"), "new");
  EXPECT_EQ(Get("z4"), "legacy");
}

INSTANTIATE_TEST_SUITE_P(WithAndWithoutLogFiles, NodeLegacyTest, ::testing::Bool());

// `cairnctl snapshot restore` makes a data dir without a log: it starts
// right after the restored applied index.
TEST_F(NodeTest, DataDirWithoutALogStartsItAfterTheAppliedIndex) {
  Start();
  for (int i = 0; i < 5; i++) ASSERT_EQ(Put("r" + std::to_string(i), "1").error_code(), 0);
  const uint64_t applied = node_->applied_index();
  Stop();
  // What cairnctl snapshot restore leaves: the database without its log,
  // ids, log base and member table.
  fs::remove_all(options_.data_dir + "/wal");
  {
    storage::EngineOptions eo;
    eo.path = options_.data_dir + "/cairn.db";
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    storage::WriteBatch b(engine->get());
    for (const char* key : {"cluster_id", "member_id", "raft_log_base"}) b.Delete(storage::Column::kMeta, key);
    ASSERT_TRUE((*engine)->Write(b, true).ok());
  }
  Start();
  EXPECT_EQ(node_->applied_index(), applied + 2);
  EXPECT_NE(node_->ids().member_id, 0x8e9e05c52164694dULL);  // a new cluster
  EXPECT_EQ(Put("r5", "1").error_code(), 0);
  EXPECT_EQ(node_->applied_index(), applied + 3);
  Stop();
  Start();
  EXPECT_EQ(node_->applied_index(), applied + 5);
  EXPECT_EQ(Get("r5"), "1");
  EXPECT_EQ(Get("r4"), "1");
}

TEST_F(NodeTest, LogIsRefusedWhenItLacksAppliedEntries) {
  Start();
  for (int i = 0; i < 5; i++) ASSERT_EQ(Put("q" + std::to_string(i), "1").error_code(), 0);
  Stop();
  // Another (shorter) log in place of this one.
  fs::remove_all(options_.data_dir + "/wal");
  {
    auto w = wal::Wal::Open(options_.data_dir + "/wal", wal::WalOptions{});
    ASSERT_TRUE(w.ok());
    std::vector<wal::Entry> e{wal::Entry{1, 2, 0, "x"}};
    ASSERT_TRUE((*w)->Append(e).ok());
    ASSERT_TRUE((*w)->Sync().ok());
  }
  node_ = std::make_unique<Node>(options_);
  Status s = node_->Start(NodeHooks{});
  EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("lost acknowledged entries"), std::string::npos) << s.message();
}

TEST_F(NodeTest, OldSegmentsAreReleasedBehindTheRetention) {
  options_.log_retention_entries = 200;
  Start();
  const std::string value(400, 'v');
  for (int i = 0; i < 3000; i++) ASSERT_EQ(Put("p" + std::to_string(i % 50), value).error_code(), 0);
  // ~460 bytes a record: ~140 entries per 64 KiB segment, ~21 segments in
  // all; kept: the retention (200 entries), the active one and a spare.
  // The release runs on the maintenance thread's own schedule, which a
  // loaded machine delays: wait for it (bounded).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (SegmentFiles() > 6u && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Stop();
  EXPECT_LE(SegmentFiles(), 6u);
  Start();
  EXPECT_EQ(node_->kv()->CurrentRevision(), 3001);
  EXPECT_EQ(Get("p49"), value);
}

}  // namespace
}  // namespace cairn::server
