#include "raft/membership.h"

#include <algorithm>

#include "common/check.h"
#include "raft/errors.h"

namespace cairn::raft {
namespace {

void Insert(std::vector<NodeId>* set, NodeId id) {
  auto it = std::lower_bound(set->begin(), set->end(), id);
  if (it == set->end() || *it != id) set->insert(it, id);
}

void Erase(std::vector<NodeId>* set, NodeId id) {
  auto it = std::lower_bound(set->begin(), set->end(), id);
  if (it != set->end() && *it == id) set->erase(it);
}

}  // namespace

Status ValidateConfChange(const ConfState& current, const ConfChange& change) {
  const NodeId id = change.node_id;
  if (id == kNoNode) return errors::InvalidConfChange("node id 0");
  switch (change.type) {
    case ConfChangeType::kAddVoter:
      if (current.IsVoter(id)) return errors::InvalidConfChange(std::to_string(id) + " is already a voter");
      return Status::Ok();
    case ConfChangeType::kAddLearner:
      if (current.IsLearner(id)) {
        return errors::InvalidConfChange(std::to_string(id) + " is already a learner");
      }
      if (current.IsVoter(id) && current.voters.size() == 1) {
        return errors::InvalidConfChange("cannot demote the last voter");
      }
      return Status::Ok();
    case ConfChangeType::kRemoveNode:
      if (!current.Contains(id)) return errors::InvalidConfChange(std::to_string(id) + " is not a member");
      if (current.IsVoter(id) && current.voters.size() == 1) {
        return errors::InvalidConfChange("cannot remove the last voter");
      }
      return Status::Ok();
  }
  return errors::InvalidConfChange("unknown change type");
}

ConfState ApplyConfChange(const ConfState& current, const ConfChange& change) {
  ConfState next = current;
  if (!ValidateConfChange(current, change).ok()) return next;
  switch (change.type) {
    case ConfChangeType::kAddVoter:
      Erase(&next.learners, change.node_id);
      Insert(&next.voters, change.node_id);
      break;
    case ConfChangeType::kAddLearner:
      Erase(&next.voters, change.node_id);
      Insert(&next.learners, change.node_id);
      break;
    case ConfChangeType::kRemoveNode:
      Erase(&next.voters, change.node_id);
      Erase(&next.learners, change.node_id);
      break;
  }
  return next;
}

void MembershipLog::Reset(uint64_t base_index, ConfState base) {
  base_index_ = base_index;
  base_ = std::move(base);
  changes_.clear();
}

void MembershipLog::Append(const Entry& entry) {
  if (entry.type != EntryType::kConfChange) return;
  CHECK(entry.index > LastChangeIndex())
      << "membership change at " << entry.index << " not after " << LastChangeIndex();
  auto change = DecodeConfChange(entry.data);
  // A malformed change is a no-op everywhere (the leader never proposes one).
  ConfState next = change.ok() ? ApplyConfChange(Current(), *change) : Current();
  changes_.emplace_back(entry.index, std::move(next));
}

void MembershipLog::TruncateFrom(uint64_t index) {
  CHECK(index > base_index_) << "truncating membership at " << index << " below base " << base_index_;
  while (!changes_.empty() && changes_.back().first >= index) changes_.pop_back();
}

void MembershipLog::CompactTo(uint64_t index) {
  size_t keep_from = 0;
  while (keep_from < changes_.size() && changes_[keep_from].first <= index) ++keep_from;
  if (keep_from == 0) return;
  base_index_ = changes_[keep_from - 1].first;
  base_ = std::move(changes_[keep_from - 1].second);
  changes_.erase(changes_.begin(), changes_.begin() + keep_from);
}

const ConfState& MembershipLog::Current() const {
  return changes_.empty() ? base_ : changes_.back().second;
}

uint64_t MembershipLog::LastChangeIndex() const {
  return changes_.empty() ? base_index_ : changes_.back().first;
}

Result<ConfState> MembershipLog::At(uint64_t index) const {
  if (index < base_index_) return errors::Compacted();
  const ConfState* result = &base_;
  for (const auto& [at, conf] : changes_) {
    if (at > index) break;
    result = &conf;
  }
  return *result;
}

}  // namespace cairn::raft
