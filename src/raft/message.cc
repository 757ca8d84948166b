#include "raft/message.h"

#include <algorithm>
#include <sstream>

namespace cairn::raft {

bool ConfState::IsVoter(NodeId id) const {
  return std::binary_search(voters.begin(), voters.end(), id);
}

bool ConfState::IsLearner(NodeId id) const {
  return std::binary_search(learners.begin(), learners.end(), id);
}

std::string ConfState::ToString() const {
  std::ostringstream out;
  out << "voters=(";
  for (size_t i = 0; i < voters.size(); ++i) out << (i ? " " : "") << voters[i];
  out << ") learners=(";
  for (size_t i = 0; i < learners.size(); ++i) out << (i ? " " : "") << learners[i];
  out << ")";
  return out.str();
}

// Layout: type (1 byte), node id (8 bytes little-endian), context (rest).
std::string EncodeConfChange(const ConfChange& change) {
  std::string out;
  out.reserve(9 + change.context.size());
  out.push_back(static_cast<char>(change.type));
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((change.node_id >> (8 * i)) & 0xff));
  out += change.context;
  return out;
}

Result<ConfChange> DecodeConfChange(const std::string& data) {
  if (data.size() < 9) return Status(Code::kInvalidArgument, "raft: conf change too short");
  ConfChange change;
  const auto type = static_cast<uint8_t>(data[0]);
  if (type > static_cast<uint8_t>(ConfChangeType::kRemoveNode)) {
    return Status(Code::kInvalidArgument, "raft: unknown conf change type");
  }
  change.type = static_cast<ConfChangeType>(type);
  for (int i = 0; i < 8; ++i) {
    change.node_id |= static_cast<uint64_t>(static_cast<uint8_t>(data[1 + i])) << (8 * i);
  }
  change.context = data.substr(9);
  return change;
}

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kAppend: return "Append";
    case MessageType::kAppendResponse: return "AppendResponse";
    case MessageType::kVote: return "Vote";
    case MessageType::kVoteResponse: return "VoteResponse";
    case MessageType::kPreVote: return "PreVote";
    case MessageType::kPreVoteResponse: return "PreVoteResponse";
    case MessageType::kHeartbeat: return "Heartbeat";
    case MessageType::kHeartbeatResponse: return "HeartbeatResponse";
    case MessageType::kSnapshot: return "Snapshot";
    case MessageType::kTimeoutNow: return "TimeoutNow";
    case MessageType::kReadIndex: return "ReadIndex";
    case MessageType::kReadIndexResponse: return "ReadIndexResponse";
  }
  return "Unknown";
}

std::string Message::ToString() const {
  std::ostringstream out;
  out << from << "->" << to << " " << MessageTypeName(type) << " term=" << term;
  switch (type) {
    case MessageType::kAppend:
      out << " prev=" << index << "/" << log_term << " commit=" << commit
          << " entries=" << entries.size();
      if (!entries.empty()) out << " [" << entries.front().index << ".." << entries.back().index << "]";
      break;
    case MessageType::kAppendResponse:
      out << " index=" << index;
      if (reject) out << " reject hint=" << reject_hint << "/" << log_term;
      break;
    case MessageType::kVote:
    case MessageType::kPreVote:
      out << " last=" << index << "/" << log_term << (leader_transfer ? " transfer" : "");
      break;
    case MessageType::kVoteResponse:
    case MessageType::kPreVoteResponse:
      out << (reject ? " rejected" : " granted");
      break;
    case MessageType::kHeartbeat:
    case MessageType::kHeartbeatResponse:
      out << " commit=" << commit << " round=" << read_round;
      break;
    case MessageType::kSnapshot:
      if (snapshot) out << " snapshot=" << snapshot->metadata.index << "/" << snapshot->metadata.term;
      break;
    case MessageType::kReadIndex:
    case MessageType::kReadIndexResponse:
      out << " index=" << index << " ctx=" << context;
      break;
    case MessageType::kTimeoutNow:
      break;
  }
  return out.str();
}

}  // namespace cairn::raft
