#include "raft/progress.h"

#include <algorithm>
#include <sstream>

#include "common/check.h"

namespace cairn::raft {

const char* ProgressStateName(ProgressState state) {
  switch (state) {
    case ProgressState::kProbe: return "probe";
    case ProgressState::kReplicate: return "replicate";
    case ProgressState::kSnapshot: return "snapshot";
  }
  return "unknown";
}

void Inflights::Add(uint64_t last_index, uint64_t bytes) {
  CHECK(count_ < max_msgs_) << "inflights overflow";
  if (count_ == ring_.size()) {
    // Grow lazily up to max_msgs_, re-laying the ring out from slot 0.
    const size_t new_size = std::min(max_msgs_, std::max<size_t>(4, ring_.size() * 2));
    std::vector<Item> grown(new_size);
    for (size_t i = 0; i < count_; ++i) grown[i] = ring_[(start_ + i) % ring_.size()];
    ring_ = std::move(grown);
    start_ = 0;
  }
  ring_[(start_ + count_) % ring_.size()] = Item{last_index, bytes};
  ++count_;
  bytes_ += bytes;
}

void Inflights::FreeLE(uint64_t index) {
  while (count_ > 0 && ring_[start_].index <= index) {
    bytes_ -= ring_[start_].bytes;
    start_ = (start_ + 1) % ring_.size();
    --count_;
  }
  if (count_ == 0) start_ = 0;
}

void Inflights::FreeFirstOne() {
  if (count_ > 0) FreeLE(ring_[start_].index);
}

void Inflights::Reset() {
  start_ = 0;
  count_ = 0;
  bytes_ = 0;
}

void Progress::BecomeProbe() {
  // Coming back from a snapshot, continue after it (if it was applied the
  // follower acknowledges it; if not, probing finds out).
  if (state == ProgressState::kSnapshot) {
    next = std::max(match + 1, pending_snapshot + 1);
  } else {
    next = match + 1;
  }
  state = ProgressState::kProbe;
  pending_snapshot = 0;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  pending_snapshot = 0;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.Reset();
}

bool Progress::MaybeUpdate(uint64_t index) {
  bool updated = false;
  if (match < index) {
    match = index;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, index + 1);
  return updated;
}

void Progress::SentAppend(size_t count, uint64_t last_index, uint64_t bytes) {
  switch (state) {
    case ProgressState::kReplicate:
      if (count > 0) {
        next = last_index + 1;
        inflights.Add(last_index, bytes);
      }
      break;
    case ProgressState::kProbe:
      probe_sent = true;
      break;
    case ProgressState::kSnapshot:
      CHECK(false) << "sending entries while a snapshot is pending";
  }
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // Pipelined: a rejection of an index at or below match is stale.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probing: only the answer to the probe in flight (for next - 1) counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe: return probe_sent;
    case ProgressState::kReplicate: return inflights.Full();
    case ProgressState::kSnapshot: return true;
  }
  return true;
}

std::string Progress::ToString() const {
  std::ostringstream out;
  out << ProgressStateName(state) << " match=" << match << " next=" << next;
  if (is_learner) out << " learner";
  if (state == ProgressState::kSnapshot) out << " pending_snapshot=" << pending_snapshot;
  if (probe_sent) out << " probe_sent";
  if (inflights.count()) out << " inflight=" << inflights.count() << "/" << inflights.bytes() << "B";
  return out.str();
}

}  // namespace cairn::raft
