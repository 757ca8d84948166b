#include "raft/memory_storage.h"

#include <type_traits>

#include "common/check.h"
#include "raft/errors.h"

namespace cairn::raft {

MemoryStorage::MemoryStorage() { entries_.resize(1); }

Status MemoryStorage::Bootstrap(const ConfState& initial) {
  if (LastIndex() != 0 || !hard_state_.empty()) {
    return errors::InvalidConfig("bootstrap of a non-empty storage");
  }
  uint64_t index = 0;
  auto add = [&](ConfChangeType type, NodeId id) {
    Entry entry;
    entry.term = 1;
    entry.index = ++index;
    entry.type = EntryType::kConfChange;
    entry.data = EncodeConfChange(ConfChange{type, id, ""});
    entries_.push_back(std::move(entry));
  };
  for (NodeId id : initial.voters) add(ConfChangeType::kAddVoter, id);
  for (NodeId id : initial.learners) add(ConfChangeType::kAddLearner, id);
  hard_state_ = HardState{1, kNoNode, index};
  return Status::Ok();
}

namespace {
template <typename Vector>
Status AppendTo(std::vector<Entry>& log, Vector&& entries) {
  if (entries.empty()) return Status::Ok();
  const uint64_t offset = log.front().index;
  const uint64_t last = offset + log.size() - 1;
  if (entries.back().index <= offset) return Status::Ok();  // all compacted already
  CHECK(entries.front().index <= last + 1)
      << "gap: appending " << entries.front().index << " after " << last;
  size_t skip = 0;
  if (entries.front().index <= offset) skip = offset + 1 - entries.front().index;
  const uint64_t start = entries[skip].index;
  log.resize(start - offset);  // drop the conflicting suffix
  for (size_t i = skip; i < entries.size(); ++i) {
    CHECK(entries[i].index == start + (i - skip)) << "non-contiguous entries";
    if constexpr (std::is_rvalue_reference_v<Vector&&>) {
      log.push_back(std::move(entries[i]));
    } else {
      log.push_back(entries[i]);
    }
  }
  return Status::Ok();
}
}  // namespace

Status MemoryStorage::Append(const std::vector<Entry>& entries) { return AppendTo(entries_, entries); }

Status MemoryStorage::Append(std::vector<Entry>&& entries) {
  return AppendTo(entries_, std::move(entries));
}

Status MemoryStorage::ApplySnapshot(const Snapshot& snapshot) {
  if (snapshot.metadata.index <= snapshot_.metadata.index) return errors::SnapshotOutOfDate();
  snapshot_ = snapshot;
  entries_.clear();
  Entry placeholder;
  placeholder.index = snapshot.metadata.index;
  placeholder.term = snapshot.metadata.term;
  entries_.push_back(std::move(placeholder));
  return Status::Ok();
}

Status MemoryStorage::CreateSnapshot(uint64_t index, const ConfState& conf_state, std::string data) {
  if (index <= snapshot_.metadata.index) return errors::SnapshotOutOfDate();
  CHECK(index <= LastIndex()) << "snapshot " << index << " beyond last index " << LastIndex();
  auto term = Term(index);
  if (!term.ok()) return term.status();
  snapshot_.metadata.index = index;
  snapshot_.metadata.term = *term;
  snapshot_.metadata.conf_state = conf_state;
  snapshot_.data = std::move(data);
  return Status::Ok();
}

Status MemoryStorage::Compact(uint64_t index) {
  const uint64_t offset = entries_.front().index;
  if (index <= offset) return errors::Compacted();
  CHECK(index <= LastIndex()) << "compact " << index << " beyond last index " << LastIndex();
  const size_t cut = index - offset;
  // entries_[cut] becomes the placeholder; erase in place to keep the
  // capacity (a host compacts often; reallocating each time is costly).
  entries_.erase(entries_.begin(), entries_.begin() + cut);
  entries_.front().data.clear();
  entries_.front().type = EntryType::kNormal;
  return Status::Ok();
}

Result<InitialState> MemoryStorage::GetInitialState() const {
  return InitialState{hard_state_, snapshot_.metadata.conf_state};
}

Result<std::vector<Entry>> MemoryStorage::Entries(uint64_t lo, uint64_t hi,
                                                  uint64_t max_bytes) const {
  const uint64_t offset = entries_.front().index;
  if (lo <= offset) return errors::Compacted();
  CHECK(hi <= LastIndex() + 1) << "entries [" << lo << "," << hi << ") beyond " << LastIndex();
  std::vector<Entry> out;
  if (lo >= hi) return out;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const Entry& entry = entries_[i - offset];
    bytes += EntryPayloadSize(entry);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(entry);
  }
  return out;
}

Result<uint64_t> MemoryStorage::Term(uint64_t index) const {
  const uint64_t offset = entries_.front().index;
  if (index < offset) return errors::Compacted();
  if (index > LastIndex()) return errors::Unavailable();
  return entries_[index - offset].term;
}

}  // namespace cairn::raft
