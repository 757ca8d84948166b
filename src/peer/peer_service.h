// PeerService: the receiving side of the peer protocol (cairnpb.Peer/Stream,
// and the raw peer stream of peer_stream.h), served on --listen-peer-urls. Each batch is checked before anything in it
// is used: the sender's cluster id must be ours ("cluster ID mismatch"), the
// batch must be addressed to this member, and its sender must not have been
// removed from the cluster ("the member has been permanently removed from
// the cluster"); a refused stream ends with that error and is logged. Raft
// messages must name the batch's sender and this member; malformed ones are
// dropped. Nothing a peer sends can crash the member.
//
// Thread-safety: reactors run on gRPC threads; the handlers must be
// thread-safe and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cairnpb/peer.grpc.pb.h"
#include "raft/message.h"

namespace cairn::peer {

struct PeerServiceHandlers {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
  std::function<bool(uint64_t member_id)> is_removed;
  std::function<void(raft::Message)> step;
  // A proposal follower `from` forwarded to this member as its waiter `id`.
  std::function<void(uint64_t from, uint64_t id, std::string data)> propose_forwarded;
  // The leader refused the proposal this member forwarded as `id`.
  std::function<void(uint64_t id, const Status& status)> refused;
  // A lease keep-alive a follower received.
  std::function<void(int64_t lease_id)> renew_lease;
  // Where received snapshot images are written, and the most bytes one may
  // have.
  std::string snapshot_dir;
  uint64_t max_snapshot_bytes = 64ULL << 30;
  // Bytes received from `from` (for etcd's peer metrics).
  std::function<void(uint64_t from, size_t bytes)> on_received;
  // The member table, for a member that joins.
  std::function<std::vector<cairnpb::Member>()> members;
};

class PeerService final : public cairnpb::Peer::CallbackService {
 public:
  explicit PeerService(PeerServiceHandlers handlers) : handlers_(std::move(handlers)) {}

  // Checks one batch from a peer (`peer` names it in the log) and hands on
  // what it carries; not OK: the refusal that ends the sender's stream. For
  // both cairnpb.Peer/Stream and the raw peer stream (peer_stream.h).
  Status Deliver(cairnpb::PeerBatch* batch, const std::string& peer) const;

  grpc::ServerReadReactor<cairnpb::PeerBatch>* Stream(grpc::CallbackServerContext* context,
                                                     cairnpb::PeerStreamEnd* end) override;
  // Stores the image, verifies its checksum, then steps the snapshot
  // message (its data naming the stored file) into the Raft core.
  grpc::ServerReadReactor<cairnpb::SnapshotChunk>* InstallSnapshot(grpc::CallbackServerContext* context,
                                                                  cairnpb::PeerStreamEnd* end) override;
  grpc::ServerUnaryReactor* Probe(grpc::CallbackServerContext* context, const cairnpb::ProbeRequest* request,
                                  cairnpb::ProbeResponse* response) override;
  grpc::ServerUnaryReactor* Members(grpc::CallbackServerContext* context, const cairnpb::MembersRequest* request,
                                    cairnpb::MembersResponse* response) override;

 private:
  class Reactor;
  class SnapshotReactor;
  PeerServiceHandlers handlers_;
};

}  // namespace cairn::peer
