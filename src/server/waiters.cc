#include "server/waiters.h"

#include <vector>

#include "common/check.h"
#include "common/trace_points.h"

namespace cairn::server {

cairnpb::InternalResponse Waiters::ErrorResponse(const Status& status) {
  cairnpb::InternalResponse r;
  r.set_error_code(static_cast<int>(status.code()));
  r.set_error_message(status.message());
  return r;
}

void Waiters::Add(uint64_t id, int64_t deadline_ms, Callback done) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = by_id_.try_emplace(id);
  CHECK(inserted) << "request id " << id << " is already waiting";
  it->second.done = std::move(done);
  it->second.deadline_ms = deadline_ms;
  by_deadline_.emplace(deadline_ms, id);
}

void Waiters::SetPosition(uint64_t id, uint64_t term, uint64_t index) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;  // already answered (applied or timed out)
  it->second.term = term;
  it->second.index = index;
  it->second.proposed = true;
  by_index_[index] = id;
}

void Waiters::MarkForwarded(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(id);
  if (it != by_id_.end()) it->second.proposed = true;
}

Waiters::Callback Waiters::TakeLocked(uint64_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return {};
  Callback done = std::move(it->second.done);
  auto range = by_deadline_.equal_range(it->second.deadline_ms);
  for (auto d = range.first; d != range.second; ++d) {
    if (d->second == id) {
      by_deadline_.erase(d);
      break;
    }
  }
  if (it->second.index != 0) {
    auto i = by_index_.find(it->second.index);
    if (i != by_index_.end() && i->second == id) by_index_.erase(i);
  }
  by_id_.erase(it);
  return done;
}

void Waiters::Complete(uint64_t id, const cairnpb::InternalResponse& response) {
  Callback done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done = TakeLocked(id);
  }
  if (done) done(response);
  trace::Point("done", id);
}

void Waiters::FailAt(uint64_t index, uint64_t term) {
  Callback done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto i = by_index_.find(index);
    if (i == by_index_.end()) return;
    auto w = by_id_.find(i->second);
    if (w == by_id_.end() || w->second.term == term) return;
    done = TakeLocked(i->second);
  }
  if (!done) return;
  failed_.fetch_add(1, std::memory_order_relaxed);
  done(ErrorResponse(errors::LeaderChanged()));
}

void Waiters::Fail(uint64_t id, const Status& status) {
  Callback done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done = TakeLocked(id);
  }
  if (!done) return;
  failed_.fetch_add(1, std::memory_order_relaxed);
  done(ErrorResponse(status));
}

void Waiters::ExpireBefore(int64_t now_ms) {
  std::vector<std::pair<Callback, bool>> expired;  // (done, proposed)
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!by_deadline_.empty() && by_deadline_.begin()->first < now_ms) {
      const uint64_t id = by_deadline_.begin()->second;
      const bool proposed = by_id_.count(id) && by_id_[id].proposed;
      expired.emplace_back(TakeLocked(id), proposed);
    }
  }
  failed_.fetch_add(expired.size(), std::memory_order_relaxed);
  for (auto& [done, proposed] : expired) {
    if (done) done(ErrorResponse(proposed ? errors::Timeout() : errors::ContextDeadlineExceeded()));
  }
}

void Waiters::FailAll(const Status& status) {
  std::vector<Callback> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, w] : by_id_) all.push_back(std::move(w.done));
    by_id_.clear();
    by_deadline_.clear();
    by_index_.clear();
  }
  failed_.fetch_add(all.size(), std::memory_order_relaxed);
  auto response = ErrorResponse(status);
  for (auto& done : all) {
    if (done) done(response);
  }
}

size_t Waiters::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_id_.size();
}

}  // namespace cairn::server
