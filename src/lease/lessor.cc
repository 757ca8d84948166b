#include "lease/lessor.h"

#include "common/check.h"

namespace cairn::lease {

using storage::Column;

std::string LeaseRowKey(int64_t id) {
  std::string out;
  storage::PutFixed64BE(&out, static_cast<uint64_t>(id));
  return out;
}

Lessor::Lessor(storage::Engine* engine, const Clock* clock, LessorOptions options)
    : engine_(engine), clock_(clock), options_(options) {}

Status Lessor::Open() {
  std::lock_guard<std::mutex> lock(mu_);
  leases_.clear();
  auto it = engine_->NewIterator(Column::kLease);
  const int64_t now = clock_->NowMs();
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8 || it->value().size() != 8) {
      return Status(Code::kDataLoss, "lease: malformed lease record");
    }
    int64_t id = static_cast<int64_t>(storage::DecodeFixed64BE(it->key()));
    int64_t ttl = static_cast<int64_t>(storage::DecodeFixed64BE(it->value()));
    leases_[id] = Entry{ttl, now + ttl * 1000, -1};
  }
  return it->status();
}

Result<LeaseInfo> Lessor::Grant(storage::WriteBatch* batch, int64_t id, int64_t ttl_seconds) {
  CHECK(id != 0) << "lease id must be chosen before the log";
  if (ttl_seconds > options_.max_ttl_seconds) return errors::LeaseTTLTooLarge();
  std::lock_guard<std::mutex> lock(mu_);
  if (leases_.count(id)) return errors::LeaseExist();
  int64_t ttl = std::max(ttl_seconds, options_.min_ttl_seconds);
  std::string value;
  storage::PutFixed64BE(&value, static_cast<uint64_t>(ttl));
  batch->Put(Column::kLease, LeaseRowKey(id), value);
  leases_[id] = Entry{ttl, clock_->NowMs() + ttl * 1000, -1};
  return LeaseInfo{id, ttl, ttl * 1000};
}

Status Lessor::Revoke(storage::WriteBatch* batch, int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return errors::LeaseNotFound();
  batch->Delete(Column::kLease, LeaseRowKey(id));
  leases_.erase(it);
  return Status::Ok();
}

bool Lessor::Exists(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return leases_.count(id) > 0;
}

Result<int64_t> Lessor::Renew(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return errors::LeaseNotFound();
  it->second.deadline_ms = clock_->NowMs() + it->second.ttl_seconds * 1000;
  it->second.reported_ms = -1;
  return it->second.ttl_seconds;
}

void Lessor::Promote(int64_t extend_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowMs();
  for (auto& [id, e] : leases_) {
    e.deadline_ms = now + extend_ms + e.ttl_seconds * 1000;
    e.reported_ms = -1;
  }
}

Result<LeaseInfo> Lessor::Get(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return errors::LeaseNotFound();
  return LeaseInfo{id, it->second.ttl_seconds,
                   std::max<int64_t>(0, it->second.deadline_ms - clock_->NowMs())};
}

std::vector<int64_t> Lessor::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> ids;
  ids.reserve(leases_.size());
  for (const auto& [id, e] : leases_) ids.push_back(id);
  return ids;
}

std::vector<int64_t> Lessor::Expired(size_t max, int64_t retry_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowMs();
  std::vector<int64_t> out;
  for (auto& [id, e] : leases_) {
    if (out.size() >= max) break;
    if (e.deadline_ms > now) continue;
    if (e.reported_ms >= 0 && now - e.reported_ms < retry_ms) continue;
    e.reported_ms = now;
    out.push_back(id);
  }
  return out;
}

size_t Lessor::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leases_.size();
}

}  // namespace cairn::lease
