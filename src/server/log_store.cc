#include "server/log_store.h"

#include <algorithm>

#include "common/check.h"
#include "common/logging.h"
#include "raft/errors.h"
#include "raft/membership.h"

namespace cairn::server {

namespace {
void PutU64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; i--) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
bool GetU64(const std::string& in, size_t* pos, uint64_t* v) {
  if (in.size() < *pos + 8) return false;
  *v = 0;
  for (int i = 0; i < 8; i++) *v = (*v << 8) | static_cast<uint8_t>(in[*pos + i]);
  *pos += 8;
  return true;
}
bool GetIds(const std::string& in, size_t* pos, std::vector<raft::NodeId>* ids) {
  uint64_t n = 0;
  if (!GetU64(in, pos, &n) || n > (in.size() - *pos) / 8) return false;
  ids->resize(n);
  for (auto& id : *ids) {
    if (!GetU64(in, pos, &id)) return false;
  }
  return true;
}
}  // namespace

std::string LogBase::Encode() const {
  std::string out;
  PutU64(&out, index);
  PutU64(&out, term);
  PutU64(&out, conf_state.voters.size());
  for (auto id : conf_state.voters) PutU64(&out, id);
  PutU64(&out, conf_state.learners.size());
  for (auto id : conf_state.learners) PutU64(&out, id);
  return out;
}

Result<LogBase> LogBase::Decode(const std::string& data) {
  LogBase b;
  size_t pos = 0;
  if (!GetU64(data, &pos, &b.index) || !GetU64(data, &pos, &b.term) ||
      !GetIds(data, &pos, &b.conf_state.voters) || !GetIds(data, &pos, &b.conf_state.learners) ||
      pos != data.size()) {
    return Status(Code::kDataLoss, "corrupt raft log base record");
  }
  return b;
}

wal::Entry ToWal(const raft::Entry& e) {
  wal::Entry w;
  w.index = e.index;
  w.term = e.term;
  w.type = static_cast<uint8_t>(e.type);
  w.data = e.data;
  return w;
}

raft::Entry FromWal(wal::Entry e) {
  raft::Entry r;
  r.index = e.index;
  r.term = e.term;
  r.type = static_cast<raft::EntryType>(e.type);
  r.data = std::move(e.data);
  return r;
}

LogStore::LogStore(wal::Wal* wal, LogBase base, SaveBase save_base, uint64_t cache_bytes)
    : wal_(wal), base_(std::move(base)), save_base_(std::move(save_base)), cache_bytes_(cache_bytes) {
  terms_.push_back(base_.term);
}

Result<std::unique_ptr<LogStore>> LogStore::Open(wal::Wal* wal, LogBase base, SaveBase save_base,
                                                 uint64_t cache_bytes) {
  std::unique_ptr<LogStore> store(new LogStore(wal, std::move(base), std::move(save_base), cache_bytes));
  Status s = store->Load();
  if (!s.ok()) return s;
  return store;
}

Status LogStore::Load() {
  if (wal_->first_index() > base_.index + 1) {
    return Status(Code::kDataLoss, "the log in " + wal_->dir() + " starts at index " +
                                       std::to_string(wal_->first_index()) + " but its base is index " +
                                       std::to_string(base_.index) + ": entries in between are missing");
  }
  if (wal_->last_index() < base_.index) {
    // A snapshot was installed (the database holds everything up to the
    // base, saved with it) and the member stopped before the log started
    // over. Whether anything applied after it is missing, the host checks
    // against the applied index.
    Status s = wal_->Reset(base_.index + 1);
    if (!s.ok()) return s;
    CAIRN_LOG(kInfo) << "log: starting over after the installed snapshot at index " << base_.index;
  }
  uint64_t next = base_.index + 1;
  while (next <= wal_->last_index()) {
    auto entries = wal_->ReadFrom(next, 4 << 20);
    if (!entries.ok()) return entries.status();
    if (entries->empty()) {
      return Status(Code::kDataLoss, "log entry " + std::to_string(next) + " is missing");
    }
    for (wal::Entry& e : *entries) {
      CHECK(e.index == next) << "log read out of order: " << e.index << " for " << next;
      Track(FromWal(std::move(e)));
      next++;
    }
  }
  return Status::Ok();
}

void LogStore::Track(const raft::Entry& entry) {
  CHECK(entry.index == LastIndex() + 1) << "log gap: " << entry.index << " after " << LastIndex();
  terms_.push_back(entry.term);
  if (entry.type == raft::EntryType::kConfChange) {
    auto change = raft::DecodeConfChange(entry.data);
    // A malformed change changes nothing, as in the core (ApplyConfChange).
    if (change.ok()) conf_changes_.emplace_back(entry.index, raft::ApplyConfChange(LastConfState(), *change));
  }
  cache_.push_back(entry);
  cache_used_bytes_ += entry.data.size() + 32;
  while (cache_.size() > 1 && cache_used_bytes_ > cache_bytes_) {
    cache_used_bytes_ -= cache_.front().data.size() + 32;
    cache_.pop_front();
  }
}

void LogStore::ForgetFrom(uint64_t index) {
  while (LastIndex() >= index) terms_.pop_back();
  while (!conf_changes_.empty() && conf_changes_.back().first >= index) conf_changes_.pop_back();
  while (!cache_.empty() && cache_.back().index >= index) {
    cache_used_bytes_ -= cache_.back().data.size() + 32;
    cache_.pop_back();
  }
}

const raft::ConfState& LogStore::LastConfState() const {
  return conf_changes_.empty() ? base_.conf_state : conf_changes_.back().second;
}

raft::ConfState LogStore::ConfStateAt(uint64_t index) const {
  const raft::ConfState* conf = &base_.conf_state;
  for (const auto& [at, c] : conf_changes_) {
    if (at > index) break;
    conf = &c;
  }
  return *conf;
}

Status LogStore::Append(const std::vector<raft::Entry>& entries) {
  if (entries.empty()) return Status::Ok();
  const uint64_t first = entries.front().index;
  CHECK(first > base_.index) << "append at " << first << " at or before the log base " << base_.index;
  CHECK(first <= LastIndex() + 1) << "append at " << first << " leaves a gap after " << LastIndex();
  if (first <= LastIndex()) {
    // A follower's conflicting suffix: the new entries replace it.
    Status s = wal_->TruncateAfter(first - 1);
    if (!s.ok()) return s;
    ForgetFrom(first);
  }
  std::vector<wal::Entry> out;
  out.reserve(entries.size());
  for (const auto& e : entries) out.push_back(ToWal(e));
  Status s = wal_->Append(out);
  if (!s.ok()) return s;
  for (const auto& e : entries) Track(e);
  return Status::Ok();
}

Status LogStore::SetHardState(const raft::HardState& hs) {
  return wal_->SetHardState(wal::HardState{hs.term, hs.vote, hs.commit});
}

Status LogStore::Sync() { return wal_->Sync(); }

Status LogStore::CompactBefore(uint64_t index) {
  CHECK(index <= LastIndex() + 1) << "compacting before " << index << " past the log end " << LastIndex();
  if (index <= base_.index + 1) return Status::Ok();
  LogBase next;
  next.index = index - 1;
  next.term = terms_[next.index - base_.index];
  next.conf_state = ConfStateAt(next.index);
  // The base first: once it is durable the older entries are not needed,
  // whatever happens to the files.
  Status s = save_base_(next);
  if (!s.ok()) return s;
  terms_.erase(terms_.begin(), terms_.begin() + static_cast<ptrdiff_t>(next.index - base_.index));
  while (!conf_changes_.empty() && conf_changes_.front().first <= next.index) conf_changes_.pop_front();
  while (!cache_.empty() && cache_.front().index <= next.index) {
    cache_used_bytes_ -= cache_.front().data.size() + 32;
    cache_.pop_front();
  }
  base_ = std::move(next);
  wal_->ReleaseBefore(index);
  return Status::Ok();
}

Result<raft::InitialState> LogStore::GetInitialState() const {
  raft::InitialState st;
  const wal::HardState& hs = wal_->hard_state();
  st.hard_state = raft::HardState{hs.term, hs.vote, hs.commit};
  st.conf_state = base_.conf_state;
  return st;
}

Result<std::vector<raft::Entry>> LogStore::Entries(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  if (lo < FirstIndex()) return raft::errors::Compacted();
  CHECK(hi <= LastIndex() + 1) << "entries up to " << hi << " past the log end " << LastIndex();
  std::vector<raft::Entry> out;
  uint64_t bytes = 0;
  auto take = [&](const raft::Entry& e) {
    if (!out.empty() && bytes + e.data.size() > max_bytes) return false;
    bytes += e.data.size();
    out.push_back(e);
    return true;
  };
  uint64_t next = lo;
  const uint64_t cache_first = cache_.empty() ? LastIndex() + 1 : cache_.front().index;
  while (next < hi && next < cache_first) {
    auto read = wal_->ReadFrom(next, std::max<uint64_t>(max_bytes, 1) - std::min(bytes, max_bytes));
    if (!read.ok()) return read.status();
    CHECK(!read->empty()) << "log entry " << next << " is missing";
    for (wal::Entry& e : *read) {
      if (next >= hi || next >= cache_first) break;
      if (!take(FromWal(std::move(e)))) return out;
      next++;
    }
  }
  for (; next < hi; next++) {
    if (!take(cache_[next - cache_first])) break;
  }
  return out;
}

Result<uint64_t> LogStore::Term(uint64_t index) const {
  if (index < base_.index) return raft::errors::Compacted();
  if (index > LastIndex()) return raft::errors::Unavailable();
  return terms_[index - base_.index];
}

Result<raft::Snapshot> LogStore::GetSnapshot() const {
  if (!snapshot_source_) return raft::errors::Unavailable();
  auto index = snapshot_source_();
  if (!index.ok()) return raft::errors::Unavailable();
  // The image is of the applied state, which is never behind the base
  // (entries leave the log only once applied) nor past the log.
  if (*index < base_.index || *index > LastIndex()) return raft::errors::Unavailable();
  raft::Snapshot snap;
  snap.metadata.index = *index;
  snap.metadata.term = terms_[*index - base_.index];
  snap.metadata.conf_state = ConfStateAt(*index);
  snap.data = std::to_string(*index);
  return snap;
}

Status LogStore::ResetToSnapshot(const LogBase& base) {
  Status s = wal_->Reset(base.index + 1);
  if (!s.ok()) return s;
  base_ = base;
  terms_.clear();
  terms_.push_back(base_.term);
  conf_changes_.clear();
  cache_.clear();
  cache_used_bytes_ = 0;
  return Status::Ok();
}

Status WriteFoundingEntries(wal::Wal* wal, const std::vector<raft::ConfChange>& changes) {
  std::vector<wal::Entry> entries;
  for (const raft::ConfChange& change : changes) {
    raft::Entry e;
    e.index = entries.size() + 1;
    e.term = 1;
    e.type = raft::EntryType::kConfChange;
    e.data = raft::EncodeConfChange(change);
    entries.push_back(ToWal(e));
  }
  Status s = wal->Append(entries);
  if (s.ok()) s = wal->SetHardState(wal::HardState{1, 0, entries.size()});
  if (s.ok()) s = wal->Sync();
  return s;
}

Status AlignHardState(wal::Wal* wal, const LogBase& base, uint64_t applied) {
  const wal::HardState& hs = wal->hard_state();
  if (hs.commit >= applied && hs.term >= base.term) return Status::Ok();
  const bool new_term = hs.term < base.term;
  Status s = wal->SetHardState(wal::HardState{new_term ? base.term : hs.term, new_term ? 0 : hs.vote,
                                              std::max(hs.commit, applied)});
  if (s.ok()) s = wal->Sync();
  return s;
}

}  // namespace cairn::server
