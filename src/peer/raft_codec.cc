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
  if (m.snapshot) {
    const raft::SnapshotMetadata& meta = m.snapshot->metadata;
    out->set_snapshot_index(meta.index);
    out->set_snapshot_term(meta.term);
    for (auto id : meta.conf_state.voters) out->add_snapshot_voters(id);
    for (auto id : meta.conf_state.learners) out->add_snapshot_learners(id);
  }
}

Result<raft::Message> FromProto(const cairnpb::RaftMessage& m) {
  if (m.type() > static_cast<uint32_t>(raft::MessageType::kReadIndexResponse)) {
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
  if (r.type == raft::MessageType::kSnapshot) {
    if (m.snapshot_index() == 0 || m.snapshot_voters_size() == 0) {
      return Status(Code::kInvalidArgument, "snapshot message without metadata");
    }
    auto snap = std::make_shared<raft::Snapshot>();
    snap->metadata.index = m.snapshot_index();
    snap->metadata.term = m.snapshot_term();
    snap->metadata.conf_state.voters.assign(m.snapshot_voters().begin(), m.snapshot_voters().end());
    snap->metadata.conf_state.learners.assign(m.snapshot_learners().begin(), m.snapshot_learners().end());
    r.snapshot = std::move(snap);
  }
  return r;
}

}  // namespace cairn::peer
