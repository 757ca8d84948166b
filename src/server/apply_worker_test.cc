#include "server/apply_worker.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "lease/lessor.h"
#include "mvcc/kv_store.h"
#include "storage/engine.h"

namespace cairn::server {
namespace {

class ApplyWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/apply_worker_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    storage::EngineOptions eo;
    eo.path = dir_ + "/db";
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    kv_ = std::make_unique<mvcc::KvStore>(engine_.get());
    ASSERT_TRUE(kv_->Open().ok());
    lessor_ = std::make_unique<lease::Lessor>(engine_.get(), &clock_, lease::LessorOptions());
    ASSERT_TRUE(lessor_->Open().ok());
    applier_ = std::make_unique<apply::Applier>(engine_.get(), kv_.get(), lessor_.get(), 42);
    ASSERT_TRUE(applier_->Open().ok());
  }
  void TearDown() override {
    worker_.reset();
    applier_.reset();
    lessor_.reset();
    kv_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  static raft::Entry PutEntry(uint64_t index, const std::string& key) {
    cairnpb::InternalRequest req;
    req.set_id(index);
    req.mutable_put()->set_key(key);
    req.mutable_put()->set_value("v");
    raft::Entry e;
    e.term = 1;
    e.index = index;
    e.data = req.SerializeAsString();
    return e;
  }

  std::string dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<mvcc::KvStore> kv_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<apply::Applier> applier_;
  Waiters waiters_;
  std::unique_ptr<ApplyWorker> worker_;
};

// Batches that queue up while the apply thread is busy are applied as one
// database write, in log order, and every waiter still gets its own answer.
TEST_F(ApplyWorkerTest, BatchesWaitingInTheQueueAreAppliedAsOneWrite) {
  std::mutex mu;
  std::condition_variable cv;
  bool blocked = false;
  bool release = false;
  std::vector<size_t> commits;  // entries per database write
  ApplyWorkerHooks hooks;
  hooks.on_apply_commit = [&](double, size_t entries) {
    std::unique_lock<std::mutex> lock(mu);
    commits.push_back(entries);
    if (commits.size() == 1) {  // hold the first write until the others are queued
      blocked = true;
      cv.notify_all();
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return release; }));
    }
  };
  worker_ = std::make_unique<ApplyWorker>(applier_.get(), &waiters_, std::move(hooks));
  std::vector<int64_t> revisions(6, 0);
  for (uint64_t id = 1; id <= 5; id++) {
    waiters_.Add(id, INT64_MAX, [&, id](const cairnpb::InternalResponse& r) {
      std::lock_guard<std::mutex> lock(mu);
      revisions[id] = r.put().header().revision();
    });
  }
  worker_->Start();
  ASSERT_TRUE(worker_->Push({PutEntry(1, "a")}));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return blocked; }));
  }
  ASSERT_TRUE(worker_->Push({PutEntry(2, "b")}));
  ASSERT_TRUE(worker_->Push({PutEntry(3, "c"), PutEntry(4, "d")}));
  ASSERT_TRUE(worker_->Push({PutEntry(5, "e")}));
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  }
  ASSERT_TRUE(worker_->WaitIdle());
  EXPECT_EQ(worker_->applied_index(), 5u);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(commits, (std::vector<size_t>{1, 4}));
  for (uint64_t id = 1; id <= 5; id++) EXPECT_EQ(revisions[id], static_cast<int64_t>(id) + 1) << id;
  auto r = kv_->Read()->Range("a", "z", mvcc::RangeOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 5u);
}

// after_batch runs on the apply thread after a batch's answers were given
// (the API collects the finished put calls there), and while idle too.
TEST_F(ApplyWorkerTest, AfterBatchRunsAfterTheAnswersAndWhileIdle) {
  std::mutex mu;
  std::condition_variable cv;
  bool answered = false;
  int after_answer = 0;  // after_batch calls once the waiter was answered
  ApplyWorkerHooks hooks;
  hooks.after_batch = [&] {
    std::lock_guard<std::mutex> lock(mu);
    if (answered) after_answer++;
    cv.notify_all();
  };
  worker_ = std::make_unique<ApplyWorker>(applier_.get(), &waiters_, std::move(hooks));
  waiters_.Add(1, INT64_MAX, [&](const cairnpb::InternalResponse&) {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(after_answer, 0);
    answered = true;
  });
  worker_->Start();
  ASSERT_TRUE(worker_->Push({PutEntry(1, "a")}));
  std::unique_lock<std::mutex> lock(mu);
  // One call right after the batch, more every 100 ms while nothing comes.
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return after_answer >= 3; }));
  EXPECT_TRUE(answered);
}

}  // namespace
}  // namespace cairn::server
