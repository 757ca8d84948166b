#include "watch/watch_hub.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "mvcc/kv_store.h"
#include "storage/engine.h"

namespace cairn::watch {
namespace {

using etcdserverpb::WatchCreateRequest;
using etcdserverpb::WatchResponse;

constexpr uint64_t kClusterId = 77;

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(WatchHubOptions()); }

  void Open(WatchHubOptions options) {
    char tmpl[] = "/tmp/watch_hub_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    storage::EngineOptions eo;
    eo.path = dir_;
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    store_ = std::make_unique<mvcc::KvStore>(engine_.get());
    ASSERT_TRUE(store_->Open().ok());
    hub_ = std::make_unique<WatchHub>(
        store_.get(), options,
        [](etcdserverpb::ResponseHeader* h) { h->set_cluster_id(kClusterId); });
  }

  void TearDown() override {
    streams_.clear();
    hub_.reset();
    store_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  // One write transaction of puts (value "" means delete), committed and
  // published as the apply thread does. Returns the new revision.
  int64_t Write(const std::vector<std::pair<std::string, std::string>>& ops) {
    storage::WriteBatch batch(engine_.get());
    mvcc::WriteTxn txn(store_.get(), &batch);
    for (const auto& [key, value] : ops) {
      if (value.empty()) {
        EXPECT_TRUE(txn.DeleteRange(key, "").ok());
      } else {
        EXPECT_TRUE(txn.Put(key, value, 0).ok());
      }
    }
    EXPECT_TRUE(store_->Commit(batch, txn.end_rev(), false).ok());
    hub_->Publish(txn.end_rev(), txn.changes());
    return txn.end_rev();
  }
  int64_t Put(const std::string& key, const std::string& value) { return Write({{key, value}}); }
  int64_t Delete(const std::string& key) { return Write({{key, ""}}); }

  void Compact(int64_t rev) {
    storage::WriteBatch batch(engine_.get());
    ASSERT_TRUE(store_->ScheduleCompaction(&batch, rev).ok());
    ASSERT_TRUE(store_->Commit(batch, store_->CurrentRevision(), false).ok());
    store_->SetCompactRevisionAfterCommit(rev);
    ASSERT_TRUE(store_->CompactPhysical(rev).ok());
  }

  WatchStream* NewStream(std::function<void()> on_ready = nullptr) {
    streams_.push_back(hub_->NewStream(std::move(on_ready)));
    return streams_.back().get();
  }

  static WatchCreateRequest Req(const std::string& key, const std::string& end = "",
                                int64_t start = 0) {
    WatchCreateRequest r;
    r.set_key(key);
    r.set_range_end(end);
    r.set_start_revision(start);
    return r;
  }

  // WatchStream::Next, checking that the hand-made serialization is exactly
  // what protobuf itself would write for the parsed response.
  static bool NextChecked(WatchStream* s, WatchResponse* r) {
    std::string bytes;
    if (!s->NextEncoded(&bytes)) return false;
    EXPECT_TRUE(r->ParseFromString(bytes));
    EXPECT_EQ(r->SerializeAsString(), bytes) << r->ShortDebugString();
    return true;
  }

  static std::vector<WatchResponse> Drain(WatchStream* s) {
    std::vector<WatchResponse> out;
    WatchResponse r;
    while (NextChecked(s, &r)) out.push_back(r);
    return out;
  }

  // Creates a watch and consumes its created response.
  int64_t Watch(WatchStream* s, const WatchCreateRequest& req) {
    int64_t id = s->Create(req);
    WatchResponse r;
    EXPECT_TRUE(NextChecked(s, &r));
    EXPECT_TRUE(r.created());
    EXPECT_FALSE(r.canceled());
    EXPECT_EQ(r.watch_id(), id);
    return id;
  }

  std::string dir_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<mvcc::KvStore> store_;
  std::unique_ptr<WatchHub> hub_;
  std::vector<std::shared_ptr<WatchStream>> streams_;
};

// 100,000 watchers are 100,000 watchers and, while their clients read, as
// many queued responses: their sizes are the memory per watcher that make
// bench measures (docs/benchmarks.md, "RSS per watcher"). With libstdc++ on
// x86-64; a growth past these needs a measurement, not a new number here.
TEST(WatchMemoryTest, WatcherAndQueuedResponseStayCompact) {
  EXPECT_LE(sizeof(Watcher), 56u);  // with its reference count; + key and end: 64 bytes for "w/".."w0"
  EXPECT_LE(sizeof(QueuedResponse), 72u);  // one per watcher and revision queued
  EXPECT_LE(sizeof(EventList), 40u);
}

TEST_F(WatchHubTest, LiveDeliveryOfOneKey) {
  WatchStream* s = NewStream();
  const int64_t before = store_->CurrentRevision();
  int64_t id = s->Create(Req("foo"));
  EXPECT_EQ(id, 0);
  WatchResponse r;
  ASSERT_TRUE(NextChecked(s, &r));
  EXPECT_TRUE(r.created());
  EXPECT_EQ(r.header().revision(), before);
  EXPECT_EQ(r.header().cluster_id(), kClusterId);

  int64_t rev = Put("foo", "v1");
  Put("bar", "x");
  Put("foo2", "x");
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].watch_id(), id);
  EXPECT_EQ(got[0].header().revision(), rev);
  EXPECT_EQ(got[0].header().cluster_id(), kClusterId);
  ASSERT_EQ(got[0].events_size(), 1);
  EXPECT_EQ(got[0].events(0).type(), mvccpb::Event::PUT);
  EXPECT_EQ(got[0].events(0).kv().key(), "foo");
  EXPECT_EQ(got[0].events(0).kv().value(), "v1");
  EXPECT_EQ(got[0].events(0).kv().mod_revision(), rev);
  EXPECT_FALSE(got[0].events(0).has_prev_kv());
  EXPECT_EQ(hub_->WatcherCount(), 1u);
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
}

TEST_F(WatchHubTest, EventsOfOneRevisionComeInOneResponse) {
  WatchStream* s = NewStream();
  Watch(s, Req("a", "b"));
  int64_t rev = Write({{"a1", "x"}, {"a2", "y"}, {"c", "z"}, {"a3", "w"}});
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].header().revision(), rev);
  ASSERT_EQ(got[0].events_size(), 3);
  EXPECT_EQ(got[0].events(0).kv().key(), "a1");
  EXPECT_EQ(got[0].events(1).kv().key(), "a2");
  EXPECT_EQ(got[0].events(2).kv().key(), "a3");
}

TEST_F(WatchHubTest, PrefixAndFromKeyAndAllKeys) {
  WatchStream* s = NewStream();
  int64_t prefix = Watch(s, Req("a/", "a0"));
  int64_t from_key = Watch(s, Req("m", std::string(1, '\0')));
  int64_t all = Watch(s, Req("", std::string(1, '\0')));
  Put("a/1", "x");
  Put("a0", "x");
  Put("b", "x");
  Put("m", "x");
  Put("zz", "x");
  std::map<int64_t, std::vector<std::string>> keys;
  for (const auto& r : Drain(s)) {
    for (const auto& ev : r.events()) keys[r.watch_id()].push_back(ev.kv().key());
  }
  EXPECT_EQ(keys[prefix], (std::vector<std::string>{"a/1"}));
  EXPECT_EQ(keys[from_key], (std::vector<std::string>{"m", "zz"}));
  EXPECT_EQ(keys[all], (std::vector<std::string>{"a/1", "a0", "b", "m", "zz"}));
}

TEST_F(WatchHubTest, Filters) {
  WatchStream* s = NewStream();
  WatchCreateRequest no_put = Req("k");
  no_put.add_filters(WatchCreateRequest::NOPUT);
  WatchCreateRequest no_delete = Req("k");
  no_delete.add_filters(WatchCreateRequest::NODELETE);
  int64_t deletes_only = Watch(s, no_put);
  int64_t puts_only = Watch(s, no_delete);
  int64_t put_rev = Put("k", "v");
  int64_t del_rev = Delete("k");
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 2u);  // a filtered-out revision sends nothing
  EXPECT_EQ(got[0].watch_id(), puts_only);
  EXPECT_EQ(got[0].events(0).type(), mvccpb::Event::PUT);
  EXPECT_EQ(got[0].header().revision(), put_rev);
  EXPECT_EQ(got[1].watch_id(), deletes_only);
  EXPECT_EQ(got[1].events(0).type(), mvccpb::Event::DELETE);
  EXPECT_EQ(got[1].events(0).kv().mod_revision(), del_rev);
}

TEST_F(WatchHubTest, PrevKvOnlyWhenAsked) {
  WatchStream* s = NewStream();
  WatchCreateRequest with = Req("k");
  with.set_prev_kv(true);
  int64_t with_id = Watch(s, with);
  int64_t without_id = Watch(s, Req("k"));
  Put("k", "v1");
  Put("k", "v2");
  Delete("k");
  std::map<int64_t, std::vector<mvccpb::Event>> evs;
  for (const auto& r : Drain(s)) {
    for (const auto& ev : r.events()) evs[r.watch_id()].push_back(ev);
  }
  ASSERT_EQ(evs[with_id].size(), 3u);
  EXPECT_FALSE(evs[with_id][0].has_prev_kv());  // a create has none
  EXPECT_EQ(evs[with_id][1].prev_kv().value(), "v1");
  EXPECT_EQ(evs[with_id][2].prev_kv().value(), "v2");
  ASSERT_EQ(evs[without_id].size(), 3u);
  for (const auto& ev : evs[without_id]) EXPECT_FALSE(ev.has_prev_kv());
}

TEST_F(WatchHubTest, PrevKvOnReplayFromStorage) {
  int64_t first = Put("k", "v1");
  Put("k", "v2");
  WatchStream* s = NewStream();
  WatchCreateRequest req = Req("k", "", first);
  req.set_prev_kv(true);
  Watch(s, req);
  EXPECT_EQ(hub_->SlowWatcherCount(), 1u);
  while (hub_->SyncUnsynced(100) > 0) {
  }
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].events_size(), 2);
  EXPECT_FALSE(got[0].events(0).has_prev_kv());
  EXPECT_EQ(got[0].events(1).prev_kv().value(), "v1");
}

TEST_F(WatchHubTest, FutureStartRevision) {
  WatchStream* s = NewStream();
  const int64_t start = store_->CurrentRevision() + 3;
  Watch(s, Req("k", "", start));
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
  Put("k", "1");
  Put("k", "2");
  int64_t rev = Put("k", "3");
  ASSERT_EQ(rev, start);
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].events(0).kv().mod_revision(), start);
}

// Replay from storage while the apply thread keeps publishing: every
// revision exactly once, in order, and the watcher ends synced.
TEST_F(WatchHubTest, ReplayThenLiveWithoutGapOrDuplicate) {
  for (int i = 0; i < 50; i++) Put("p/" + std::to_string(i % 7), std::to_string(i));
  const int64_t start = 10;
  WatchStream* s = NewStream();
  Watch(s, Req("p/", "p0", start));
  EXPECT_EQ(hub_->SlowWatcherCount(), 1u);

  std::atomic<bool> done{false};
  std::thread apply([&] {
    for (int i = 0; i < 2000; i++) {
      Put(i % 5 == 0 ? "other" : "p/" + std::to_string(i % 11), std::to_string(i));
    }
    done = true;
  });
  std::vector<int64_t> revs;
  WatchResponse r;
  while (true) {
    bool finished = done.load();
    size_t work = hub_->SyncUnsynced(7);  // a small cap forces many rounds
    while (NextChecked(s, &r)) {
      ASSERT_FALSE(r.canceled());
      int64_t last = 0;
      for (const auto& ev : r.events()) {
        ASSERT_GE(ev.kv().mod_revision(), last);
        if (ev.kv().mod_revision() != last) revs.push_back(ev.kv().mod_revision());
        last = ev.kv().mod_revision();
        ASSERT_LE(last, r.header().revision());
      }
    }
    if (finished && work == 0 && hub_->SlowWatcherCount() == 0) break;
  }
  apply.join();
  while (NextChecked(s, &r)) {
    for (const auto& ev : r.events()) {
      if (revs.empty() || revs.back() != ev.kv().mod_revision()) {
        revs.push_back(ev.kv().mod_revision());
      }
    }
  }
  // Every revision from `start` that touched p/ appears exactly once.
  std::vector<int64_t> want;
  auto txn = store_->Read();
  int64_t next = 0;
  auto all = txn->Events(start, txn->Rev(), 1 << 20, false, &next);
  ASSERT_TRUE(all.ok());
  for (const auto& ev : *all) {
    if (ev.kv().key().rfind("p/", 0) == 0 &&
        (want.empty() || want.back() != ev.kv().mod_revision())) {
      want.push_back(ev.kv().mod_revision());
    }
  }
  EXPECT_EQ(revs, want);
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
}

// A consumer that does not read while thousands of revisions are published:
// the writer never blocks, the stream holds at most its bounded queue, and
// draining later yields every event exactly once, in order.
TEST_F(WatchHubTest, SlowConsumerFallsBehindAndCatchesUp) {
  WatchHubOptions o;
  o.max_pending_responses = 8;
  o.max_merged_response_bytes = 0;  // one response per revision
  TearDown();
  Open(o);
  WatchStream* s = NewStream();
  Watch(s, Req("k", "l"));
  const int kWrites = 5000;
  const int64_t first = store_->CurrentRevision() + 1;
  for (int i = 0; i < kWrites; i++) Put("k" + std::to_string(i % 13), std::to_string(i));
  EXPECT_EQ(hub_->SlowWatcherCount(), 1u);

  std::vector<int64_t> revs;
  size_t responses_before_sync = 0;
  WatchResponse r;
  while (NextChecked(s, &r)) {
    responses_before_sync++;
    for (const auto& ev : r.events()) revs.push_back(ev.kv().mod_revision());
  }
  EXPECT_EQ(responses_before_sync, 8u);  // the bound held
  while (true) {
    size_t work = hub_->SyncUnsynced(100);
    while (NextChecked(s, &r)) {
      for (const auto& ev : r.events()) revs.push_back(ev.kv().mod_revision());
    }
    if (work == 0) break;
  }
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
  ASSERT_EQ(revs.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; i++) ASSERT_EQ(revs[i], first + i);
  // Synced again: live delivery resumes.
  int64_t rev = Put("k1", "again");
  ASSERT_TRUE(NextChecked(s, &r));
  EXPECT_EQ(r.events(0).kv().mod_revision(), rev);
}

// A backed-up stream gets each watcher's later revisions appended to its
// queued response: fewer, larger responses, every event once and in order,
// the header at the last revision carried, and never past a control
// response queued after it.
TEST_F(WatchHubTest, BackedUpStreamMergesRevisionsPerWatcher) {
  WatchHubOptions o;
  o.max_pending_responses = 8;
  o.max_merged_response_bytes = 4096;
  TearDown();
  Open(o);
  WatchStream* s = NewStream();
  const int64_t a = Watch(s, Req("k", "l"));
  WatchCreateRequest only_puts = Req("k", "l");
  only_puts.add_filters(WatchCreateRequest::NODELETE);
  only_puts.set_prev_kv(true);
  const int64_t b = Watch(s, only_puts);
  const int64_t first = store_->CurrentRevision() + 1;
  const int kWrites = 300;
  for (int i = 0; i < kWrites; i++) {
    if (i % 10 == 9) {
      Delete("k" + std::to_string(i % 7));
    } else {
      Put("k" + std::to_string(i % 7), std::to_string(i));
    }
  }
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);  // merged, not fallen behind
  // A control response now: events published later must come after it.
  const int64_t c = s->Create(Req("zzz"));
  bool seen_created = false;
  const int64_t after = Put("k1", "after");
  std::map<int64_t, std::vector<int64_t>> revs;
  std::map<int64_t, int> responses;
  bool seen_after = false;
  WatchResponse r;
  while (NextChecked(s, &r)) {
    if (r.created()) {
      EXPECT_EQ(r.watch_id(), c);
      seen_created = true;
    }
    if (r.events_size() == 0) continue;
    EXPECT_EQ(seen_created, r.events(0).kv().mod_revision() == after);
    responses[r.watch_id()]++;
    EXPECT_EQ(r.header().revision(), r.events(r.events_size() - 1).kv().mod_revision());
    for (const auto& ev : r.events()) {
      revs[r.watch_id()].push_back(ev.kv().mod_revision());
      if (r.watch_id() == b) {
        EXPECT_EQ(ev.type(), mvccpb::Event::PUT);
        EXPECT_TRUE(ev.has_prev_kv() || ev.kv().version() == 1);
      } else {
        EXPECT_FALSE(ev.has_prev_kv());
      }
    }
    if (r.events(r.events_size() - 1).kv().mod_revision() == after) seen_after = true;
  }
  EXPECT_TRUE(seen_after);
  ASSERT_EQ(revs[a].size(), static_cast<size_t>(kWrites) + 1);
  for (int i = 0; i < kWrites; i++) ASSERT_EQ(revs[a][i], first + i);
  EXPECT_EQ(revs[a].back(), after);
  ASSERT_EQ(revs[b].size(), static_cast<size_t>(kWrites - kWrites / 10) + 1);
  EXPECT_LT(responses[a], 40);  // ~50 bytes per event, 4 KiB per response
  EXPECT_GT(responses[a], 2);
}

// Watchers of one stream that get the same events of a revision share one
// queued entry (a group; 100,000 watchers of one prefix on 1,000 streams
// queue 1,000 entries per revision, not 100,000), and each still gets its
// own response, in the order they were queued; a backed-up group takes later
// revisions as one merge, as a backed-up watcher's own response does.
TEST_F(WatchHubTest, WatchersWithTheSameEventsShareOneQueuedEntry) {
  WatchStream* s = NewStream();
  const int64_t a = Watch(s, Req("k"));
  const int64_t b = Watch(s, Req("k"));
  const int64_t c = Watch(s, Req("k"));
  WatchCreateRequest with_prev = Req("k");
  with_prev.set_prev_kv(true);
  const int64_t d = Watch(s, with_prev);  // other bytes: its own entry
  const int64_t r1 = Put("k", "1");
  std::vector<int64_t> ids;
  WatchResponse r;
  WatchStream::NextInfo info;
  std::string bytes;
  size_t left = 4;
  while (s->NextEncoded(&bytes, &info)) {
    ASSERT_TRUE(r.ParseFromString(bytes));
    ids.push_back(r.watch_id());
    ASSERT_EQ(r.events_size(), 1);
    EXPECT_EQ(r.events(0).kv().mod_revision(), r1);
    EXPECT_EQ(r.header().revision(), r1);
    EXPECT_EQ(info.queued, --left);  // responses still queued, group members each
  }
  EXPECT_EQ(ids, (std::vector<int64_t>{a, b, c, d}));

  // Two revisions before the client reads: the group takes the second as
  // one merge, as d's own response does.
  const int64_t r2 = Put("k", "2");
  const int64_t r3 = Put("k", "3");
  std::map<int64_t, std::vector<int64_t>> revs;
  std::vector<int64_t> order;
  for (const WatchResponse& resp : Drain(s)) {
    order.push_back(resp.watch_id());
    for (const auto& ev : resp.events()) revs[resp.watch_id()].push_back(ev.kv().mod_revision());
    EXPECT_EQ(resp.events(0).has_prev_kv(), resp.watch_id() == d);
  }
  for (int64_t id : {a, b, c, d}) EXPECT_EQ(revs[id], (std::vector<int64_t>{r2, r3})) << id;
  EXPECT_EQ(order, (std::vector<int64_t>{a, b, c, d}));

  // Once part of a group was sent, the next revision is no longer merged
  // into it: every member still gets every revision once, in order.
  const int64_t r4 = Put("k", "4");
  ASSERT_TRUE(NextChecked(s, &r));
  EXPECT_EQ(r.watch_id(), a);
  const int64_t r5 = Put("k", "5");
  revs.clear();
  order.clear();
  revs[a].push_back(r4);
  for (const WatchResponse& resp : Drain(s)) {
    order.push_back(resp.watch_id());
    for (const auto& ev : resp.events()) revs[resp.watch_id()].push_back(ev.kv().mod_revision());
  }
  for (int64_t id : {a, b, c, d}) EXPECT_EQ(revs[id], (std::vector<int64_t>{r4, r5})) << id;
  EXPECT_EQ(order, (std::vector<int64_t>{b, c, d, a, b, c}));
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
}

// A progress or control response queued behind a watcher's events is never
// overtaken by events merged into them.
TEST_F(WatchHubTest, MergedEventsNeverOvertakeAProgressResponse) {
  WatchStream* s = NewStream();
  Watch(s, Req("k"));
  const int64_t r1 = Put("k", "1");
  s->RequestProgress();  // all synced: queued at once, revision r1
  const int64_t r2 = Put("k", "2");
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_EQ(got[0].events_size(), 1);
  EXPECT_EQ(got[0].events(0).kv().mod_revision(), r1);
  EXPECT_EQ(got[1].watch_id(), -1);
  EXPECT_EQ(got[1].header().revision(), r1);
  ASSERT_EQ(got[2].events_size(), 1);
  EXPECT_EQ(got[2].events(0).kv().mod_revision(), r2);
}

// Catch-up responses respect the stream's byte budget (whole revisions only);
// a single revision larger than the budget still goes out when the stream
// has nothing else queued.
TEST_F(WatchHubTest, CatchUpIsCutToTheByteBudget) {
  WatchHubOptions o;
  o.max_pending_bytes = 10 * 1024;
  TearDown();
  Open(o);
  const int64_t first = Put("b", std::string(1000, 'x'));
  for (int i = 1; i < 50; i++) Put("b", std::string(1000, 'x'));
  const int64_t big = Put("b", std::string(30 * 1024, 'y'));
  WatchStream* s = NewStream();
  Watch(s, Req("b", "", first));
  std::vector<int64_t> revs;
  WatchResponse r;
  while (true) {
    size_t work = hub_->SyncUnsynced(1000);
    while (NextChecked(s, &r)) {
      if (r.events_size() > 1) {
        EXPECT_LE(r.ByteSizeLong(), o.max_pending_bytes + 100);
      }
      for (const auto& ev : r.events()) revs.push_back(ev.kv().mod_revision());
      EXPECT_EQ(r.header().revision(), revs.back());
    }
    if (work == 0) break;
  }
  ASSERT_EQ(revs.size(), 51u);
  for (size_t i = 0; i < revs.size(); i++) EXPECT_EQ(revs[i], first + static_cast<int64_t>(i));
  EXPECT_EQ(revs.back(), big);
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
}

TEST_F(WatchHubTest, StalledStreamDoesNotStallOthers) {
  WatchHubOptions o;
  o.max_pending_responses = 4;
  o.max_merged_response_bytes = 0;  // one response per revision
  TearDown();
  Open(o);
  WatchStream* stalled = NewStream();
  WatchStream* live = NewStream();
  Watch(stalled, Req("k"));
  Watch(live, Req("k"));
  int received = 0;
  WatchResponse r;
  for (int i = 0; i < 100; i++) {
    Put("k", std::to_string(i));
    while (NextChecked(live, &r)) received += r.events_size();
  }
  EXPECT_EQ(received, 100);
  EXPECT_EQ(hub_->SlowWatcherCount(), 1u);
  EXPECT_EQ(hub_->SyncUnsynced(100), 0u);  // no room: no wasted reads
}

TEST_F(WatchHubTest, CompactionWhileUnsyncedCancelsWithCompactedResponse) {
  WatchHubOptions o;
  o.max_pending_responses = 2;
  o.max_merged_response_bytes = 0;  // one response per revision
  TearDown();
  Open(o);
  WatchStream* s = NewStream();
  int64_t id = Watch(s, Req("k"));
  for (int i = 0; i < 20; i++) Put("k", std::to_string(i));
  ASSERT_EQ(hub_->SlowWatcherCount(), 1u);
  const int64_t compact_rev = store_->CurrentRevision() - 2;
  Compact(compact_rev);
  auto got = Drain(s);
  EXPECT_EQ(got.size(), 2u);  // what was queued before falling behind
  EXPECT_GT(hub_->SyncUnsynced(100), 0u);
  got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].watch_id(), id);
  EXPECT_TRUE(got[0].canceled());
  EXPECT_EQ(got[0].compact_revision(), compact_rev);
  EXPECT_EQ(got[0].events_size(), 0);
  EXPECT_EQ(hub_->WatcherCount(), 0u);
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
  Put("k", "after");
  EXPECT_TRUE(Drain(s).empty());
}

TEST_F(WatchHubTest, StartRevisionBelowCompactionIsCompacted) {
  for (int i = 0; i < 10; i++) Put("k", std::to_string(i));
  Compact(5);
  WatchStream* s = NewStream();
  int64_t id = s->Create(Req("k", "", 4));
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].created());
  EXPECT_EQ(got[0].watch_id(), id);
  EXPECT_TRUE(got[1].canceled());
  EXPECT_EQ(got[1].compact_revision(), 5);
  EXPECT_EQ(hub_->WatcherCount(), 0u);

  // etcd serves a watch from the compacted revision itself, its put included.
  Watch(s, Req("k", "", 5));
  while (hub_->SyncUnsynced(100) > 0) {
  }
  got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].events(0).kv().mod_revision(), 5);
  EXPECT_EQ(got[0].events_size(), static_cast<int>(store_->CurrentRevision() - 4));
}

TEST_F(WatchHubTest, Cancel) {
  WatchStream* s = NewStream();
  int64_t id = Watch(s, Req("k"));
  Put("k", "1");
  EXPECT_TRUE(s->Cancel(id));
  EXPECT_FALSE(s->Cancel(id));
  EXPECT_FALSE(s->Cancel(42));
  Put("k", "2");
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 2u);  // the event queued before, then canceled
  EXPECT_EQ(got[0].events_size(), 1);
  EXPECT_TRUE(got[1].canceled());
  EXPECT_EQ(got[1].watch_id(), id);
  EXPECT_FALSE(got[1].created());
  EXPECT_EQ(hub_->WatcherCount(), 0u);
}

TEST_F(WatchHubTest, WatchIdsAutoAndChosen) {
  WatchStream* s = NewStream();
  WatchCreateRequest chosen = Req("k");
  chosen.set_watch_id(1);
  EXPECT_EQ(s->Create(Req("k")), 0);
  EXPECT_EQ(s->Create(chosen), 1);
  EXPECT_EQ(s->Create(Req("k")), 2);  // skips the chosen id
  EXPECT_EQ(s->Create(chosen), kInvalidWatchId);
  EXPECT_EQ(s->Create(Req("b", "a")), kInvalidWatchId);
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_TRUE(got[3].created());
  EXPECT_TRUE(got[3].canceled());
  EXPECT_EQ(got[3].watch_id(), -1);
  EXPECT_EQ(got[3].cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");
  EXPECT_TRUE(got[4].created());
  EXPECT_TRUE(got[4].canceled());
  EXPECT_EQ(got[4].cancel_reason(), "mvcc: watcher range is empty");
  // Other streams number their own watches.
  WatchStream* other = NewStream();
  EXPECT_EQ(other->Create(Req("k")), 0);
}

TEST_F(WatchHubTest, ProgressRequestWaitsForUnsyncedWatchers) {
  WatchStream* s = NewStream();
  Watch(s, Req("k"));
  int64_t rev = Put("k", "1");
  s->RequestProgress();
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].watch_id(), -1);
  EXPECT_EQ(got[1].header().revision(), rev);
  EXPECT_EQ(got[1].events_size(), 0);

  // With an unsynced watcher the answer waits until it caught up, and comes
  // after its events; two requests give one answer.
  Watch(s, Req("k", "", 1));
  s->RequestProgress();
  s->RequestProgress();
  EXPECT_TRUE(Drain(s).empty());
  int64_t rev2 = Put("k", "2");
  got = Drain(s);
  ASSERT_EQ(got.size(), 1u);  // the synced watcher's event only
  while (hub_->SyncUnsynced(100) > 0) {
  }
  got = Drain(s);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].events_size(), 2);
  EXPECT_EQ(got[1].watch_id(), -1);
  EXPECT_EQ(got[1].header().revision(), rev2);

  // A stream without watches answers at once.
  WatchStream* empty = NewStream();
  empty->RequestProgress();
  got = Drain(empty);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].watch_id(), -1);
}

TEST_F(WatchHubTest, ProgressNotifyIsElidedAfterEvents) {
  WatchStream* s = NewStream();
  WatchCreateRequest req = Req("k");
  req.set_progress_notify(true);
  int64_t id = Watch(s, req);
  Watch(s, Req("k"));  // did not ask
  hub_->NotifyProgress();
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].watch_id(), id);
  EXPECT_EQ(got[0].events_size(), 0);
  EXPECT_EQ(got[0].header().revision(), hub_->published_revision());

  Put("k", "1");
  Drain(s);
  hub_->NotifyProgress();  // events were sent since the last tick
  EXPECT_TRUE(Drain(s).empty());
  hub_->NotifyProgress();
  EXPECT_EQ(Drain(s).size(), 1u);
}

TEST_F(WatchHubTest, FragmentSplitsLargeResponsesOnlyWhenAsked) {
  WatchHubOptions o;
  o.max_request_bytes = 2048;
  TearDown();
  Open(o);
  WatchStream* s = NewStream();
  WatchCreateRequest req = Req("f", "g");
  req.set_fragment(true);
  int64_t fragmented = Watch(s, req);
  int64_t whole = Watch(s, Req("f", "g"));
  std::vector<std::pair<std::string, std::string>> ops;
  for (int i = 0; i < 10; i++) ops.emplace_back("f" + std::to_string(i), std::string(500, 'x'));
  int64_t rev = Write(ops);
  auto got = Drain(s);
  int fragments = 0, events = 0;
  for (size_t i = 0; i < got.size(); i++) {
    if (got[i].watch_id() == whole) {
      EXPECT_EQ(got[i].events_size(), 10);
      EXPECT_FALSE(got[i].fragment());
      continue;
    }
    ASSERT_EQ(got[i].watch_id(), fragmented);
    EXPECT_EQ(got[i].header().revision(), rev);
    EXPECT_LT(got[i].ByteSizeLong(), 2048u);
    fragments++;
    events += got[i].events_size();
    const bool last = events == 10;
    EXPECT_EQ(got[i].fragment(), !last);
  }
  EXPECT_GT(fragments, 2);
  EXPECT_EQ(events, 10);
}

TEST_F(WatchHubTest, OnReadyFiresOncePerWakeupAndNeverAfterClose) {
  std::atomic<int> calls{0};
  WatchStream* s = NewStream([&] { calls++; });
  s->Create(Req("k"));
  EXPECT_EQ(calls, 1);  // the reader has not looked yet: wake it
  Put("k", "1");
  Put("k", "2");
  EXPECT_EQ(calls, 1);  // not drained since: no new wakeup needed
  Drain(s);
  Put("k", "3");
  EXPECT_EQ(calls, 2);
  Drain(s);
  s->Close();
  Put("k", "4");
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(hub_->WatcherCount(), 0u);
  WatchResponse r;
  EXPECT_FALSE(NextChecked(s, &r));
}

TEST_F(WatchHubTest, ControlBacklogAsksReaderToPause) {
  WatchHubOptions o;
  o.max_control_responses = 3;
  TearDown();
  Open(o);
  WatchStream* s = NewStream();
  for (int i = 0; i < 3; i++) {
    EXPECT_TRUE(s->CanAcceptRequest());
    s->Create(Req("k"));
  }
  EXPECT_FALSE(s->CanAcceptRequest());
  WatchResponse r;
  ASSERT_TRUE(NextChecked(s, &r));
  EXPECT_TRUE(s->CanAcceptRequest());
}

TEST_F(WatchHubTest, DroppingTheStreamRemovesItsWatchers) {
  auto s = hub_->NewStream(nullptr);
  s->Create(Req("k"));
  s->Create(Req("k", "", 1));
  EXPECT_EQ(hub_->WatcherCount(), 2u);
  EXPECT_EQ(hub_->StreamCount(), 1u);
  s.reset();
  EXPECT_EQ(hub_->WatcherCount(), 0u);
  EXPECT_EQ(hub_->SlowWatcherCount(), 0u);
  EXPECT_EQ(hub_->StreamCount(), 0u);
  Put("k", "1");
  EXPECT_EQ(hub_->SyncUnsynced(10), 0u);
}

TEST_F(WatchHubTest, UnpublishedRevisionsAreReadFromStorage) {
  WatchStream* s = NewStream();
  Watch(s, Req("k"));
  // Commit two revisions without publishing the first (as after a restore).
  storage::WriteBatch batch(engine_.get());
  mvcc::WriteTxn txn(store_.get(), &batch);
  ASSERT_TRUE(txn.Put("k", "hidden", 0).ok());
  ASSERT_TRUE(store_->Commit(batch, txn.end_rev(), false).ok());
  int64_t rev = Put("k", "shown");
  EXPECT_TRUE(Drain(s).empty());
  while (hub_->SyncUnsynced(100) > 0) {
  }
  auto got = Drain(s);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].events_size(), 2);
  EXPECT_EQ(got[0].events(0).kv().value(), "hidden");
  EXPECT_EQ(got[0].events(1).kv().mod_revision(), rev);
}

}  // namespace
}  // namespace cairn::watch
