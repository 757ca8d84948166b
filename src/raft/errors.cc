#include "raft/errors.h"

#include <array>
#include <string_view>
#include <utility>

namespace cairn::raft {
namespace {

// One prefix per kind; ErrorKindOf matches on them.
constexpr std::array<std::pair<ErrorKind, std::string_view>, 13> kPrefixes = {{
    {ErrorKind::kNotLeader, "raft: not leader"},
    {ErrorKind::kNoLeader, "raft: no leader"},
    {ErrorKind::kProposalDropped, "raft: proposal dropped"},
    {ErrorKind::kLeaderTransferring, "raft: leader transfer in progress"},
    {ErrorKind::kConfChangePending, "raft: membership change pending"},
    {ErrorKind::kInvalidConfChange, "raft: invalid membership change"},
    {ErrorKind::kLearnerNotReady, "raft: learner not caught up"},
    {ErrorKind::kCompacted, "raft: requested index is unavailable due to compaction"},
    {ErrorKind::kUnavailable, "raft: requested entry is temporarily unavailable"},
    {ErrorKind::kSnapshotOutOfDate, "raft: snapshot is out of date"},
    {ErrorKind::kInvalidMessage, "raft: invalid message"},
    {ErrorKind::kInvalidConfig, "raft: invalid config"},
    {ErrorKind::kInvalidArgument, "raft: invalid argument"},
}};

std::string_view PrefixOf(ErrorKind kind) {
  for (const auto& [k, prefix] : kPrefixes) {
    if (k == kind) return prefix;
  }
  return "raft: error";
}

Status Make(Code code, ErrorKind kind, const std::string& detail) {
  std::string message(PrefixOf(kind));
  if (!detail.empty()) message += ": " + detail;
  return Status(code, std::move(message));
}

}  // namespace

ErrorKind ErrorKindOf(const Status& status) {
  if (status.ok()) return ErrorKind::kNone;
  const std::string& message = status.message();
  for (const auto& [kind, prefix] : kPrefixes) {
    if (message.size() >= prefix.size() && message.compare(0, prefix.size(), prefix) == 0 &&
        (message.size() == prefix.size() || message[prefix.size()] == ':')) {
      return kind;
    }
  }
  return ErrorKind::kOther;
}

namespace errors {
Status NotLeader(NodeId leader_hint) {
  return Make(Code::kUnavailable, ErrorKind::kNotLeader, "leader is " + std::to_string(leader_hint));
}
Status NoLeader() { return Make(Code::kUnavailable, ErrorKind::kNoLeader, ""); }
Status ProposalDropped(const std::string& why) {
  return Make(Code::kResourceExhausted, ErrorKind::kProposalDropped, why);
}
Status LeaderTransferring(NodeId transferee) {
  return Make(Code::kUnavailable, ErrorKind::kLeaderTransferring,
              "to " + std::to_string(transferee));
}
Status ConfChangePending(const std::string& why) {
  return Make(Code::kFailedPrecondition, ErrorKind::kConfChangePending, why);
}
Status InvalidConfChange(const std::string& why) {
  return Make(Code::kInvalidArgument, ErrorKind::kInvalidConfChange, why);
}
Status LearnerNotReady(NodeId id, uint64_t match, uint64_t leader_match) {
  return Make(Code::kFailedPrecondition, ErrorKind::kLearnerNotReady,
              "node " + std::to_string(id) + " has " + std::to_string(match) + ", needs 90% of the leader's " +
                  std::to_string(leader_match));
}
Status Compacted() { return Make(Code::kOutOfRange, ErrorKind::kCompacted, ""); }
Status Unavailable() { return Make(Code::kUnavailable, ErrorKind::kUnavailable, ""); }
Status SnapshotOutOfDate() {
  return Make(Code::kFailedPrecondition, ErrorKind::kSnapshotOutOfDate, "");
}
Status InvalidMessage(const std::string& why) {
  return Make(Code::kInvalidArgument, ErrorKind::kInvalidMessage, why);
}
Status InvalidConfig(const std::string& why) {
  return Make(Code::kInvalidArgument, ErrorKind::kInvalidConfig, why);
}
Status InvalidArgument(const std::string& why) {
  return Make(Code::kInvalidArgument, ErrorKind::kInvalidArgument, why);
}
}  // namespace errors

}  // namespace cairn::raft
