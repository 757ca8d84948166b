#include "server/apply_worker.h"

#include <chrono>
#include <iterator>
#include <thread>

#include "common/check.h"
#include "common/proto_parse.h"
#include "common/thread_name.h"
#include "common/trace_points.h"

namespace cairn::server {

Result<cairnpb::InternalRequest> DecodeEntry(const raft::Entry& entry) {
  cairnpb::InternalRequest req;
  if (entry.type == raft::EntryType::kConfChange) {
    auto change = raft::DecodeConfChange(entry.data);
    if (!change.ok()) {
      return Status(Code::kDataLoss, "corrupt membership change in log entry " + std::to_string(entry.index));
    }
    auto* mc = req.mutable_member_change();
    switch (change->type) {
      case raft::ConfChangeType::kAddVoter: mc->set_type(cairnpb::MemberChange::ADD_VOTER); break;
      case raft::ConfChangeType::kAddLearner: mc->set_type(cairnpb::MemberChange::ADD_LEARNER); break;
      case raft::ConfChangeType::kRemoveNode: mc->set_type(cairnpb::MemberChange::REMOVE); break;
    }
    if (!change->context.empty() && !mc->mutable_member()->ParseFromString(change->context)) {
      return Status(Code::kDataLoss, "corrupt member in log entry " + std::to_string(entry.index));
    }
    mc->mutable_member()->set_id(change->node_id);
    // The proposer's waiter completes when this entry is applied.
    req.set_id(mc->member().request_id());
    mc->mutable_member()->clear_request_id();
    return req;
  }
  if (!entry.data.empty() && !ParseWithRecursionLimit(entry.data, kLogEntryRecursion, &req)) {
    return Status(Code::kDataLoss, "corrupt request in log entry " + std::to_string(entry.index));
  }
  return req;
}

ApplyWorker::ApplyWorker(apply::Applier* applier, Waiters* waiters, ApplyWorkerHooks hooks,
                         size_t max_queued_batches)
    : applier_(applier), waiters_(waiters), hooks_(std::move(hooks)), queue_(max_queued_batches) {
  applied_index_ = applier_->applied_index();
}

ApplyWorker::~ApplyWorker() { Stop(); }

void ApplyWorker::Start() {
  thread_ = std::thread([this] {
    SetThreadName("cairn-apply");
    Loop();
  });
}

void ApplyWorker::Stop() {
  stopping_ = true;
  queue_.Close();
  if (thread_.joinable()) thread_.join();
  std::multimap<uint64_t, ReadCallback> waiting;
  {
    std::lock_guard<std::mutex> lock(waiting_mu_);
    stopped_ = true;
    waiting.swap(waiting_);
  }
  for (auto& [index, done] : waiting) done(errors::Stopped());
}

void ApplyWorker::WhenApplied(uint64_t index, std::vector<ReadCallback> callbacks) {
  {
    std::lock_guard<std::mutex> lock(waiting_mu_);
    if (!stopped_ && index > applied_index_.load()) {
      for (auto& done : callbacks) waiting_.emplace(index, std::move(done));
      return;
    }
  }
  const Status s = stopped_ ? errors::Stopped() : Status::Ok();
  for (auto& done : callbacks) done(s);
}

void ApplyWorker::RunApplied() {
  std::vector<ReadCallback> ready;
  {
    std::lock_guard<std::mutex> lock(waiting_mu_);
    const uint64_t applied = applied_index_.load();
    while (!waiting_.empty() && waiting_.begin()->first <= applied) {
      ready.push_back(std::move(waiting_.begin()->second));
      waiting_.erase(waiting_.begin());
    }
  }
  for (auto& done : ready) done(Status::Ok());
}

bool ApplyWorker::Push(std::vector<raft::Entry> entries) {
  if (!queue_.Push(std::move(entries))) return false;
  pushed_batches_++;
  return true;
}

namespace {
// Queued batches applied as one database write, at most this many entries
// or bytes of entry data (one batch alone may be larger).
constexpr size_t kMaxMergedEntries = 4096;
constexpr size_t kMaxMergedBytes = 8 << 20;

size_t DataBytes(const std::vector<raft::Entry>& entries) {
  size_t bytes = 0;
  for (const raft::Entry& e : entries) bytes += e.data.size();
  return bytes;
}
}  // namespace

void ApplyWorker::Loop() {
  std::vector<std::vector<raft::Entry>> batches;
  while (true) {
    batches.clear();
    if (!queue_.PopBatch(&batches, 16, std::chrono::milliseconds(100))) break;
    // The batches waiting are consecutive runs of the log: applying them as
    // one write pays the write's fixed costs (the store's commit, the
    // read-before-write iterators) once. When the apply thread falls behind
    // the log, its batches grow instead of its queue.
    for (size_t b = 0; b < batches.size();) {
      std::vector<raft::Entry>& merged = batches[b];
      size_t bytes = DataBytes(merged);
      size_t n = 1;
      while (b + n < batches.size()) {
        std::vector<raft::Entry>& next = batches[b + n];
        const size_t next_bytes = DataBytes(next);
        if (merged.size() + next.size() > kMaxMergedEntries || bytes + next_bytes > kMaxMergedBytes) break;
        merged.insert(merged.end(), std::make_move_iterator(next.begin()),
                      std::make_move_iterator(next.end()));
        bytes += next_bytes;
        n++;
      }
      ApplyEntries(merged);
      RunApplied();
      applied_batches_ += n;
      b += n;
    }
    if (hooks_.after_batch) hooks_.after_batch();
  }
}

bool ApplyWorker::WaitIdle() {
  while (applied_batches_.load() < pushed_batches_.load()) {
    if (stopping_.load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void ApplyWorker::SetApplied(uint64_t index) {
  applied_index_ = index;
  RunApplied();
}

void ApplyWorker::ApplyEntries(std::vector<raft::Entry>& entries) {
  // Entries at or below the applied index were applied before a restart
  // (the core re-delivers from the applied index it was given, so this is
  // only a guard).
  size_t skip = 0;
  while (skip < entries.size() && entries[skip].index <= applier_->applied_index()) skip++;
  if (skip == entries.size()) return;
  const uint64_t first = entries[skip].index;
  std::vector<cairnpb::InternalRequest> requests(entries.size() - skip);
  std::vector<const cairnpb::InternalRequest*> pointers;
  pointers.reserve(requests.size());
  for (size_t i = skip; i < entries.size(); i++) {
    auto decoded = DecodeEntry(entries[i]);
    CHECK(decoded.ok()) << decoded.status().ToString();
    requests[i - skip] = std::move(*decoded);
    pointers.push_back(&requests[i - skip]);
  }
  trace::Point("apply_start", entries.back().index);
  const auto t0 = std::chrono::steady_clock::now();
  bool timed = false;
  applier_->ApplyBatch(first, pointers, [&](size_t i, apply::ApplyResult& r) {
    if (!timed && hooks_.on_apply_commit) {
      hooks_.on_apply_commit(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                             pointers.size());
      timed = true;
    }
    const raft::Entry& entry = entries[skip + i];
    applied_index_ = entry.index;
    trace::Point("applied", entry.index);
    if (!r.events.empty() && hooks_.on_events) hooks_.on_events(r.revision, r.events);
    const cairnpb::InternalRequest& req = requests[i];
    if (req.has_member_change() && hooks_.on_member_change) hooks_.on_member_change(req.member_change());
    waiters_->FailAt(entry.index, entry.term);
    if (req.id() != 0) waiters_->Complete(req.id(), r.response);
  });
}

}  // namespace cairn::server
