#include "peer/raft_codec.h"

namespace cairn::peer {

void ToProto(const raft::Message& m, cairnpb::RaftMessage* out) {
  out->set_type(static_cast<uint32_t>(m.type));
  out->set_from(m.from);
  out->set_to(m.to);
  out->set_term(m.term);
  out->set_log_term(m.log_term);
  out->set_index(m.index);
  out->set_commit(m.commit);
  out->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
  for (const auto& e : m.entries) {
    auto* pe = out->add_entries();
    pe->set_term(e.term);
    pe->set_index(e.index);
    pe->set_type(static_cast<uint32_t>(e.type));
    pe->set_data(e.data);
  }
  out->set_reject(m.reject);
  out->set_reject_hint(m.reject_hint);
  out->set_read_round(m.read_round);
  out->set_leader_transfer(m.leader_transfer);
  out->set_context(m.context);
}

Result<raft::Message> FromProto(const cairnpb::RaftMessage& m) {
  if (m.type() > static_cast<uint32_t>(raft::MessageType::kReadIndexResponse) ||
      m.type() == static_cast<uint32_t>(raft::MessageType::kSnapshot)) {
    return Status(Code::kInvalidArgument, "unknown raft message type " + std::to_string(m.type()));
  }
  raft::Message r;
  r.type = static_cast<raft::MessageType>(m.type());
  r.from = m.from();
  r.to = m.to();
  r.term = m.term();
  r.log_term = m.log_term();
  r.index = m.index();
  r.commit = m.commit();
  r.entries.reserve(m.entries_size());
  for (const auto& pe : m.entries()) {
    if (pe.type() > static_cast<uint32_t>(raft::EntryType::kConfChange)) {
      return Status(Code::kInvalidArgument, "unknown raft entry type " + std::to_string(pe.type()));
    }
    raft::Entry e;
    e.term = pe.term();
    e.index = pe.index();
    e.type = static_cast<raft::EntryType>(pe.type());
    e.data = pe.data();
    r.entries.push_back(std::move(e));
  }
  r.reject = m.reject();
  r.reject_hint = m.reject_hint();
  r.read_round = m.read_round();
  r.leader_transfer = m.leader_transfer();
  r.context = m.context();
  return r;
}

}  // namespace cairn::peer
