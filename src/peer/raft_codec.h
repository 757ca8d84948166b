// raft::Message <-> cairnpb::RaftMessage (the peer wire form).
//
// Thread-safety: pure functions.
#pragma once

#include "cairnpb/peer.pb.h"
#include "common/status.h"
#include "raft/message.h"

namespace cairn::peer {

void ToProto(const raft::Message& m, cairnpb::RaftMessage* out);
// kInvalidArgument for a message type or entry type this version does not
// know (a malformed or foreign message).
Result<raft::Message> FromProto(const cairnpb::RaftMessage& m);

}  // namespace cairn::peer
