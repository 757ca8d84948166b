#include "raft/raft_log.h"

#include <algorithm>

#include "common/check.h"
#include "raft/errors.h"

namespace cairn::raft {

// ---------------------------------------------------------------- Unstable

void Unstable::Reset(uint64_t offset) {
  snapshot_.reset();
  snapshot_in_progress_ = false;
  entries_.clear();
  offset_ = offset;
  offset_in_progress_ = offset;
}

std::optional<uint64_t> Unstable::MaybeFirstIndex() const {
  if (snapshot_) return snapshot_->metadata.index + 1;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeLastIndex() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->metadata.index;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeTerm(uint64_t index) const {
  if (index < offset_) {
    if (snapshot_ && snapshot_->metadata.index == index) return snapshot_->metadata.term;
    return std::nullopt;
  }
  auto last = MaybeLastIndex();
  if (!last || index > *last) return std::nullopt;
  return entries_[index - offset_].term;
}

void Unstable::StableTo(uint64_t index, uint64_t term) {
  auto current = MaybeTerm(index);
  // Below offset_: already stable (or it is the snapshot, acknowledged
  // separately). A different term: the entry was overwritten after it was
  // handed out; its replacement is acknowledged by a later Ready.
  if (!current || index < offset_ || *current != term) return;
  const size_t drop = index + 1 - offset_;
  entries_.erase(entries_.begin(), entries_.begin() + drop);
  offset_ = index + 1;
  offset_in_progress_ = std::max(offset_in_progress_, offset_);
  if (entries_.capacity() > 1024 && entries_.size() < entries_.capacity() / 4) {
    entries_.shrink_to_fit();
  }
}

void Unstable::StableSnapTo(uint64_t index) {
  if (snapshot_ && snapshot_->metadata.index == index) {
    snapshot_.reset();
    snapshot_in_progress_ = false;
  }
}

void Unstable::Restore(const Snapshot& snapshot) {
  offset_ = snapshot.metadata.index + 1;
  offset_in_progress_ = offset_;
  entries_.clear();
  snapshot_ = snapshot;
  snapshot_in_progress_ = false;
}

void Unstable::TruncateAndAppend(std::vector<Entry> entries) {
  if (entries.empty()) return;
  const uint64_t from = entries.front().index;
  const uint64_t end = offset_ + entries_.size();
  if (from == end) {
    if (entries_.empty()) {
      entries_ = std::move(entries);
    } else {
      entries_.insert(entries_.end(), std::make_move_iterator(entries.begin()),
                      std::make_move_iterator(entries.end()));
    }
  } else if (from <= offset_) {
    // Replaces everything unstable (and a suffix of storage, which the host
    // overwrites when it persists these).
    offset_ = from;
    offset_in_progress_ = from;
    entries_ = std::move(entries);
  } else {
    CHECK(from < end) << "gap in unstable log: appending " << from << " after " << end - 1;
    entries_.resize(from - offset_);
    entries_.insert(entries_.end(), std::make_move_iterator(entries.begin()),
                    std::make_move_iterator(entries.end()));
    // Anything from `from` on that was handed out is stale; hand out again.
    offset_in_progress_ = std::min(offset_in_progress_, from);
  }
}

void Unstable::Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes, std::vector<Entry>* out) const {
  CHECK(offset_ <= lo) << "unstable slice " << lo << " below offset " << offset_;
  CHECK(hi <= offset_ + entries_.size()) << "unstable slice " << hi << " beyond end";
  uint64_t bytes = 0;
  for (const Entry& e : *out) bytes += EntryPayloadSize(e);
  for (uint64_t i = lo; i < hi; ++i) {
    const Entry& entry = entries_[i - offset_];
    bytes += EntryPayloadSize(entry);
    if (!out->empty() && bytes > max_bytes) break;
    out->push_back(entry);
  }
}

std::vector<Entry> Unstable::EntriesToPersist() const {
  if (!HasEntriesToPersist()) return {};
  return std::vector<Entry>(entries_.begin() + (offset_in_progress_ - offset_), entries_.end());
}

void Unstable::AcceptInProgress() {
  offset_in_progress_ = offset_ + entries_.size();
  if (snapshot_) snapshot_in_progress_ = true;
}

// ---------------------------------------------------------------- RaftLog

RaftLog::RaftLog(Storage* storage, uint64_t max_committed_bytes_per_ready)
    : storage_(storage), max_committed_bytes_per_ready_(max_committed_bytes_per_ready) {}

Status RaftLog::Init(uint64_t committed, uint64_t applied) {
  unstable_.Reset(storage_->LastIndex() + 1);
  const uint64_t first = storage_->FirstIndex();
  // The storage's snapshot (or bootstrap) point counts as committed and applied.
  committed_ = std::max(committed, first - 1);
  if (committed_ > LastIndex()) {
    return errors::InvalidConfig("hard state commit " + std::to_string(committed) +
                                 " beyond last index " + std::to_string(LastIndex()));
  }
  applied = std::max(applied, first - 1);
  if (applied > committed_) {
    return errors::InvalidConfig("applied " + std::to_string(applied) + " beyond commit " +
                                 std::to_string(committed_));
  }
  applied_ = applied;
  applying_ = applied;
  return Status::Ok();
}

uint64_t RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  return storage_->FirstIndex();
}

uint64_t RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  return storage_->LastIndex();
}

uint64_t RaftLog::LastTerm() const {
  auto term = Term(LastIndex());
  CHECK(term.ok()) << "term of last index: " << term.status().ToString();
  return *term;
}

Result<uint64_t> RaftLog::Term(uint64_t index) const {
  if (auto t = unstable_.MaybeTerm(index)) return *t;
  if (index + 1 < FirstIndex()) return errors::Compacted();
  if (index > LastIndex()) return errors::Unavailable();
  return storage_->Term(index);
}

bool RaftLog::MatchTerm(uint64_t index, uint64_t term) const {
  auto t = Term(index);
  return t.ok() && *t == term;
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t last_term) const {
  const uint64_t our_term = LastTerm();
  return last_term > our_term || (last_term == our_term && last_index >= LastIndex());
}

uint64_t RaftLog::Append(std::vector<Entry> entries) {
  if (entries.empty()) return LastIndex();
  CHECK(entries.front().index > committed_)
      << "append at " << entries.front().index << " overwrites committed " << committed_;
  unstable_.TruncateAndAppend(std::move(entries));
  return LastIndex();
}

uint64_t RaftLog::FindConflict(const std::vector<Entry>& entries) const {
  for (const Entry& e : entries) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<uint64_t, uint64_t> RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  for (; index > 0; --index) {
    auto ours = Term(index);
    // Compacted or unknown: assume a possible match at this index.
    if (!ours.ok()) return {index, 0};
    if (*ours <= term) return {index, *ours};
  }
  return {0, 0};
}

Result<std::vector<Entry>> RaftLog::Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  if (lo < FirstIndex()) return errors::Compacted();
  CHECK(hi <= LastIndex() + 1) << "slice [" << lo << "," << hi << ") beyond " << LastIndex();
  std::vector<Entry> out;
  if (lo >= hi) return out;
  const uint64_t offset = unstable_.offset();
  if (lo < offset) {
    auto stored = storage_->Entries(lo, std::min(hi, offset), max_bytes);
    if (!stored.ok()) return stored.status();
    out = std::move(stored).value();
    // Storage stopped early because of the size limit: done.
    if (out.size() < std::min(hi, offset) - lo) return out;
  }
  if (hi > offset) unstable_.Slice(std::max(lo, offset), hi, max_bytes, &out);
  return out;
}

Result<std::vector<Entry>> RaftLog::EntriesFrom(uint64_t lo, uint64_t max_bytes) const {
  if (lo > LastIndex()) return std::vector<Entry>{};
  return Slice(lo, LastIndex() + 1, max_bytes);
}

void RaftLog::CommitTo(uint64_t index) {
  if (index <= committed_) return;  // never decrease
  CHECK(index <= LastIndex()) << "commit " << index << " beyond last index " << LastIndex();
  committed_ = index;
}

bool RaftLog::MaybeCommit(uint64_t index, uint64_t term) {
  if (index > committed_ && MatchTerm(index, term)) {
    CommitTo(index);
    return true;
  }
  return false;
}

void RaftLog::AppliedTo(uint64_t index) {
  if (index <= applied_) return;
  CHECK(index <= applying_) << "applied " << index << " beyond handed-out " << applying_;
  applied_ = index;
}

void RaftLog::AcceptInProgress() {
  if (unstable_.HasSnapshotToPersist()) {
    applying_ = std::max(applying_, unstable_.snapshot()->metadata.index);
  }
  unstable_.AcceptInProgress();
}

uint64_t RaftLog::PersistedIndex() const {
  if (unstable_.snapshot()) return 0;
  return unstable_.offset() - 1;
}

uint64_t RaftLog::MaxApplyIndex() const {
  // A snapshot not yet handed out must be applied before anything after it.
  if (unstable_.HasSnapshotToPersist()) return 0;
  return std::min(committed_, unstable_.offset_in_progress() - 1);
}

bool RaftLog::HasNextCommittedEntries() const {
  return std::max(applying_ + 1, FirstIndex()) <= MaxApplyIndex();
}

std::vector<Entry> RaftLog::NextCommittedEntries() const {
  const uint64_t lo = std::max(applying_ + 1, FirstIndex());
  const uint64_t hi = MaxApplyIndex() + 1;
  if (lo >= hi) return {};
  auto entries = Slice(lo, hi, max_committed_bytes_per_ready_);
  CHECK(entries.ok()) << "committed entries [" << lo << "," << hi
                      << ") unavailable: " << entries.status().ToString();
  return std::move(entries).value();
}

void RaftLog::AcceptApplying(uint64_t index) {
  CHECK(index <= committed_) << "applying " << index << " beyond commit " << committed_;
  applying_ = std::max(applying_, index);
}

void RaftLog::Restore(const Snapshot& snapshot) {
  committed_ = snapshot.metadata.index;
  unstable_.Restore(snapshot);
}

Result<Snapshot> RaftLog::GetSnapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->GetSnapshot();
}

}  // namespace cairn::raft
