// etcd's v3election service (server/etcdserver/api/v3election, on
// client/v3/concurrency's Election), on this member. A candidate's key is
// `name/<lease hex>`, put with its lease; the leader is the key of `name/`
// with the oldest create revision. Campaign returns once the caller leads;
// Proclaim and Resign act only while the key still has the create revision
// the caller was elected with; Leader reads the leader's key; Observe
// streams the leader's key each time the leader or its value changes.
//
// Thread-safety: thread-safe.
#pragma once

#include "api/local_client.h"
#include "api/parsed_request.h"
#include "v3electionpb/v3election.grpc.pb.h"

namespace cairn::api {

class ElectionService final : public ParsesRequests<v3electionpb::Election::CallbackService> {
 public:
  explicit ElectionService(const LocalClient* client);

  grpc::ServerUnaryReactor* Campaign(grpc::CallbackServerContext* context,
                                     const v3electionpb::CampaignRequest* request,
                                     v3electionpb::CampaignResponse* response) override;
  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* context,
                                     const v3electionpb::ProclaimRequest* request,
                                     v3electionpb::ProclaimResponse* response) override;
  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* context, const v3electionpb::LeaderRequest* request,
                                   v3electionpb::LeaderResponse* response) override;
  grpc::ServerWriteReactor<v3electionpb::LeaderResponse>* Observe(grpc::CallbackServerContext* context,
                                                                  const v3electionpb::LeaderRequest* request) override;
  grpc::ServerUnaryReactor* Resign(grpc::CallbackServerContext* context, const v3electionpb::ResignRequest* request,
                                   v3electionpb::ResignResponse* response) override;

  // Observe streams' pending responses, each at most (a slower reader's
  // stream ends with "too many requests").
  static constexpr size_t kMaxObservePending = 1024;

 private:
  const LocalClient* const client_;
};

}  // namespace cairn::api
