#include "raft/read_only.h"

#include <algorithm>

namespace cairn::raft {

void ReadOnly::Add(ReadRequest request) {
  unsent_.push_back(std::move(request));
  ++size_;
}

uint64_t ReadOnly::StartRound(uint64_t commit_index, uint64_t tick) {
  const uint64_t id = next_round_++;
  if (!unsent_.empty()) {
    rounds_.push_back(Round{id, commit_index, std::move(unsent_)});
    unsent_.clear();
  }
  sent_ticks_.emplace_back(id, tick);
  if (sent_ticks_.size() > kRememberedRounds) sent_ticks_.pop_front();
  return id;
}

std::optional<uint64_t> ReadOnly::SentTick(uint64_t round) const {
  for (const auto& [id, tick] : sent_ticks_) {
    if (id == round) return tick;
  }
  return std::nullopt;
}

void ReadOnly::Ack(NodeId voter, uint64_t round) {
  if (round == 0 || round >= next_round_) return;
  uint64_t& acked = acked_[voter];
  acked = std::max(acked, round);
}

uint64_t ReadOnly::AckedRound(NodeId voter) const {
  auto it = acked_.find(voter);
  return it == acked_.end() ? 0 : it->second;
}

std::vector<std::pair<ReadRequest, uint64_t>> ReadOnly::Release(uint64_t round) {
  std::vector<std::pair<ReadRequest, uint64_t>> out;
  while (!rounds_.empty() && rounds_.front().id <= round) {
    Round& r = rounds_.front();
    for (ReadRequest& request : r.requests) out.emplace_back(std::move(request), r.index);
    size_ -= r.requests.size();
    rounds_.pop_front();
  }
  return out;
}

void ReadOnly::Reset() {
  unsent_.clear();
  rounds_.clear();
  sent_ticks_.clear();
  acked_.clear();
  size_ = 0;
}

}  // namespace cairn::raft
