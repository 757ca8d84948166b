// WatchService over a real gRPC server on 127.0.0.1 with only this service,
// driven by the generated etcdserverpb::Watch stub.
#include "api/watch_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "mvcc/kv_store.h"
#include "storage/engine.h"
#include "watch/watch_hub.h"

namespace cairn::api {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

constexpr uint64_t kMemberId = 42;

class WatchServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/watch_service_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    storage::EngineOptions eo;
    eo.path = dir_;
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    store_ = std::make_unique<mvcc::KvStore>(engine_.get());
    ASSERT_TRUE(store_->Open().ok());
    watch::WatchHubOptions options;
    options.max_pending_responses = 16;
    hub_ = std::make_unique<watch::WatchHub>(
        store_.get(), options, [](etcdserverpb::ResponseHeader* h) { h->set_member_id(kMemberId); });
    service_ = std::make_unique<WatchService>(hub_.get(), burst_interval_);

    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = etcdserverpb::Watch::NewStub(channel_);

    // The server's catch-up loop.
    syncer_ = std::thread([this] {
      while (!stop_) {
        if (hub_->SyncUnsynced(100) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }

  void TearDown() override {
    StopServer();
    stop_ = true;
    syncer_.join();
    EXPECT_EQ(hub_->StreamCount(), 0u);
    service_.reset();
    hub_.reset();
    store_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StopServer() {
    if (!server_) return;
    // Watch streams never end by themselves: Shutdown cancels them at the deadline.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    server_->Wait();
    server_.reset();
  }

  int64_t Put(const std::string& key, const std::string& value) {
    storage::WriteBatch batch(engine_.get());
    mvcc::WriteTxn txn(store_.get(), &batch);
    EXPECT_TRUE(txn.Put(key, value, 0).ok());
    EXPECT_TRUE(store_->Commit(batch, txn.end_rev(), false).ok());
    hub_->Publish(txn.end_rev(), txn.changes());
    return txn.end_rev();
  }

  static WatchRequest Create(const std::string& key, const std::string& end = "",
                             int64_t start = 0) {
    WatchRequest r;
    r.mutable_create_request()->set_key(key);
    r.mutable_create_request()->set_range_end(end);
    r.mutable_create_request()->set_start_revision(start);
    return r;
  }

  std::chrono::milliseconds burst_interval_{0};  // set before SetUp
  std::string dir_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<mvcc::KvStore> store_;
  std::unique_ptr<watch::WatchHub> hub_;
  std::unique_ptr<WatchService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  std::atomic<bool> stop_{false};
  std::thread syncer_;
};

TEST_F(WatchServiceTest, CreateEventsProgressCancel) {
  grpc::ClientContext ctx;
  auto rw = stub_->Watch(&ctx);
  ASSERT_TRUE(rw->Write(Create("foo")));
  WatchResponse r;
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_TRUE(r.created());
  EXPECT_EQ(r.watch_id(), 0);
  EXPECT_EQ(r.header().member_id(), kMemberId);

  int64_t rev = Put("foo", "bar");
  Put("other", "x");
  ASSERT_TRUE(rw->Read(&r));
  ASSERT_EQ(r.events_size(), 1);
  EXPECT_EQ(r.events(0).kv().value(), "bar");
  EXPECT_EQ(r.header().revision(), rev);
  EXPECT_EQ(r.header().member_id(), kMemberId);

  WatchRequest progress;
  progress.mutable_progress_request();
  ASSERT_TRUE(rw->Write(progress));
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_EQ(r.watch_id(), -1);
  EXPECT_EQ(r.header().revision(), rev + 1);

  WatchRequest cancel;
  cancel.mutable_cancel_request()->set_watch_id(0);
  ASSERT_TRUE(rw->Write(cancel));
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_TRUE(r.canceled());
  EXPECT_EQ(r.watch_id(), 0);

  ctx.TryCancel();
  EXPECT_FALSE(rw->Read(&r));
  EXPECT_EQ(rw->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(WatchServiceTest, InvalidRangeIsRefusedOnTheStream) {
  grpc::ClientContext ctx;
  auto rw = stub_->Watch(&ctx);
  ASSERT_TRUE(rw->Write(Create("b", "a")));
  WatchResponse r;
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_TRUE(r.created());
  EXPECT_TRUE(r.canceled());
  EXPECT_EQ(r.watch_id(), -1);
  EXPECT_EQ(r.cancel_reason(), "mvcc: watcher range is empty");
  ctx.TryCancel();
  rw->Finish();
}

// A client that does not read while thousands of revisions are written: the
// writer never blocks, and the client later gets every event once, in order.
TEST_F(WatchServiceTest, SlowClientGetsEverythingInOrder) {
  grpc::ClientContext ctx;
  auto rw = stub_->Watch(&ctx);
  ASSERT_TRUE(rw->Write(Create("k", "l")));
  WatchResponse r;
  ASSERT_TRUE(rw->Read(&r));
  ASSERT_TRUE(r.created());
  const int kWrites = 3000;
  const std::string value(4000, 'v');  // 12 MB: beyond gRPC's flow-control windows
  const int64_t first = store_->CurrentRevision() + 1;
  size_t max_slow = 0;
  for (int i = 0; i < kWrites; i++) {
    Put("k" + std::to_string(i % 17), value);
    max_slow = std::max(max_slow, hub_->SlowWatcherCount());
  }
  EXPECT_EQ(max_slow, 1u);  // fell behind instead of blocking Put
  int64_t expect = first;
  while (expect < first + kWrites) {
    ASSERT_TRUE(rw->Read(&r));
    for (const auto& ev : r.events()) ASSERT_EQ(ev.kv().mod_revision(), expect++);
  }
  ctx.TryCancel();
  rw->Finish();
}

TEST_F(WatchServiceTest, ReplayFromStartRevisionAfterHalfClose) {
  for (int i = 0; i < 20; i++) Put("r", std::to_string(i));
  grpc::ClientContext ctx;
  auto rw = stub_->Watch(&ctx);
  ASSERT_TRUE(rw->Write(Create("r", "", 5)));
  ASSERT_TRUE(rw->WritesDone());  // as etcd, events keep flowing
  WatchResponse r;
  ASSERT_TRUE(rw->Read(&r));
  ASSERT_TRUE(r.created());
  int64_t expect = 5;
  const int64_t last = Put("r", "live");
  while (expect <= last) {
    ASSERT_TRUE(rw->Read(&r));
    for (const auto& ev : r.events()) ASSERT_EQ(ev.kv().mod_revision(), expect++);
  }
  ctx.TryCancel();
  rw->Finish();
}

// Streams open (some with a write pending on a client that does not read)
// when the server shuts down: every reactor reaches OnDone and closes its
// stream; nothing is used after free (run under ASan/TSan to be sure).
TEST_F(WatchServiceTest, ShutdownWithOpenStreams) {
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<WatchRequest, WatchResponse>>> streams;
  for (int i = 0; i < 8; i++) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub_->Watch(contexts.back().get()));
    ASSERT_TRUE(streams.back()->Write(Create("s")));
  }
  for (auto& s : streams) {
    WatchResponse r;
    ASSERT_TRUE(s->Read(&r));
  }
  for (int i = 0; i < 500; i++) Put("s", std::string(1000, 'x'));
  EXPECT_EQ(hub_->StreamCount(), 8u);
  StopServer();
  EXPECT_EQ(hub_->StreamCount(), 0u);
  EXPECT_EQ(hub_->WatcherCount(), 0u);
  for (auto& s : streams) {
    WatchResponse r;
    while (s->Read(&r)) {
    }
    s->Finish();
  }
}

TEST_F(WatchServiceTest, StopEndsOpenStreamsWithServerStopped) {
  grpc::ClientContext ctx;
  auto rw = stub_->Watch(&ctx);
  ASSERT_TRUE(rw->Write(Create("s")));
  WatchResponse r;
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_EQ(service_->OpenStreams(), 1u);
  service_->Stop();
  while (rw->Read(&r)) {
  }
  grpc::Status status = rw->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "etcdserver: server stopped");

  grpc::ClientContext late_ctx;
  auto late = stub_->Watch(&late_ctx);
  while (late->Read(&r)) {
  }
  EXPECT_EQ(late->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);

  auto start = std::chrono::steady_clock::now();
  StopServer();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(400));
  EXPECT_EQ(service_->OpenStreams(), 0u);
}

TEST_F(WatchServiceTest, ClientCancelReleasesTheStream) {
  for (int round = 0; round < 20; round++) {
    grpc::ClientContext ctx;
    auto rw = stub_->Watch(&ctx);
    ASSERT_TRUE(rw->Write(Create("c")));
    WatchResponse r;
    ASSERT_TRUE(rw->Read(&r));
    Put("c", "x");
    ctx.TryCancel();
    rw->Finish();
  }
  for (int i = 0; i < 200 && hub_->StreamCount() != 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(hub_->StreamCount(), 0u);
}

// With a burst interval, a busy stream sends a watcher one response per
// interval carrying every revision since the last, in order.
class WatchServiceBatchTest : public WatchServiceTest {
 protected:
  void SetUp() override {
    burst_interval_ = std::chrono::milliseconds(300);
    WatchServiceTest::SetUp();
  }
};

TEST_F(WatchServiceBatchTest, BusyStreamMergesRevisionsPerInterval) {
  grpc::ClientContext ctx;
  auto rw = stub_->Watch(&ctx);
  ASSERT_TRUE(rw->Write(Create("k")));
  WatchResponse r;
  ASSERT_TRUE(rw->Read(&r));
  ASSERT_TRUE(r.created());
  const int64_t first = Put("k", "0");
  ASSERT_TRUE(rw->Read(&r));
  ASSERT_EQ(r.events_size(), 1);
  EXPECT_EQ(r.events(0).kv().mod_revision(), first);
  // A thousand more revisions, about as fast as the writer sends a response:
  // once a response happens to merge revisions (the writer fell behind), the
  // stream sends each watcher one response per interval, so they come in a
  // few responses after that point. (Without the interval: 500-700.)
  constexpr int kPuts = 1000;
  for (int i = 1; i <= kPuts; i++) Put("k", std::to_string(i));
  int responses = 0;
  int64_t next = first + 1;
  while (next <= first + kPuts) {
    ASSERT_TRUE(rw->Read(&r));
    responses++;
    EXPECT_EQ(r.header().revision(), r.events(r.events_size() - 1).kv().mod_revision());
    for (const auto& ev : r.events()) {
      EXPECT_EQ(ev.kv().mod_revision(), next);
      EXPECT_EQ(ev.kv().value(), std::to_string(next - first));
      next++;
    }
  }
  EXPECT_EQ(next, first + kPuts + 1);
  EXPECT_LE(responses, 250);
  // Control responses are not held back.
  WatchRequest cancel;
  cancel.mutable_cancel_request()->set_watch_id(r.watch_id());
  ASSERT_TRUE(rw->Write(cancel));
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_TRUE(r.canceled());
  ctx.TryCancel();
}

}  // namespace
}  // namespace cairn::api
