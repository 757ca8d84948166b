// The membership RPCs of etcdserverpb.Cluster: etcd's checks (S/server.go
// mayAddMember, mayRemoveMember, mayPromoteMember; membership/cluster.go
// ValidateConfigurationChange) against this member's member table, then the
// change through Raft. The answer comes once the change is applied here.
#include <ctime>
#include <set>

#include "api/maintenance_service.h"
#include "common/status.h"
#include "server/member_id.h"

namespace cairn::api {

namespace {

constexpr int64_t kHealthIntervalMs = 5000;  // etcd's HealthInterval
constexpr size_t kMaxLearners = 1;           // etcd 3.5

// etcd's types.NewURLs: http(s)://host:port with no path.
bool ValidPeerUrls(const google::protobuf::RepeatedPtrField<std::string>& urls) {
  if (urls.empty()) return false;
  for (const auto& u : urls) {
    const size_t p = u.find("://");
    if (p == std::string::npos) return false;
    const std::string scheme = u.substr(0, p);
    if (scheme != "http" && scheme != "https" && scheme != "unix" && scheme != "unixs") return false;
    std::string rest = u.substr(p + 3);
    if (rest.find('/') != std::string::npos || rest.find('?') != std::string::npos) return false;
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon + 1 == rest.size()) return false;
    if (rest.front() == '[' && rest[colon - 1] != ']') return false;
  }
  return true;
}

struct Table {
  std::vector<cairnpb::Member> members;
  const cairnpb::Member* Find(uint64_t id) const {
    for (const auto& m : members) {
      if (m.id() == id) return &m;
    }
    return nullptr;
  }
  size_t Learners() const {
    size_t n = 0;
    for (const auto& m : members) n += m.is_learner() ? 1 : 0;
    return n;
  }
  // A URL of `urls` that a member other than `except` already has.
  bool UrlTaken(const google::protobuf::RepeatedPtrField<std::string>& urls, uint64_t except) const {
    std::set<std::string> taken;
    for (const auto& m : members) {
      if (m.id() == except) continue;
      taken.insert(m.peer_urls().begin(), m.peer_urls().end());
    }
    for (const auto& u : urls) {
      if (taken.count(u)) return true;
    }
    return false;
  }
  // etcd's IsReadyTo*: started voters (those that published a name), with
  // `extra_members` / `extra_started` counted in, must make a quorum of the
  // voters (but `skip`) plus `extra_members`.
  bool StartedQuorum(size_t extra_members, size_t extra_started, uint64_t skip = 0) const {
    size_t n = extra_members, started = extra_started;
    for (const auto& m : members) {
      if (m.is_learner() || m.id() == skip) continue;
      n++;
      if (!m.name().empty()) started++;
    }
    return started >= n / 2 + 1;
  }
};

void ToEtcd(const cairnpb::Member& mem, etcdserverpb::Member* m) {
  m->set_id(mem.id());
  m->set_name(mem.name());
  for (const auto& u : mem.peer_urls()) m->add_peerurls(u);
  for (const auto& u : mem.client_urls()) m->add_clienturls(u);
  m->set_islearner(mem.is_learner());
}

template <typename Response>
void FillMembers(const ApiContext* ctx, const std::vector<cairnpb::Member>& members, Response* response) {
  for (const auto& mem : members) ToEtcd(mem, response->add_members());
  ctx->FillClusterHeader(response->mutable_header());
}

// Proposes `change` and finishes with the member list once it is applied.
template <typename Response, typename Then>
grpc::ServerUnaryReactor* ProposeChange(const ApiContext* ctx, grpc::CallbackServerContext* context,
                                        cairnpb::MemberChange change, Response* response, Then then) {
  auto* reactor = context->DefaultReactor();
  ctx->node->ProposeMemberChange(std::move(change), [ctx, reactor, response, then](
                                                          const cairnpb::InternalResponse& r) {
    Status s = FromResponse(r);
    if (s.ok()) {
      then(response);
      FillMembers(ctx, ctx->node->applier()->Members(), response);
    }
    reactor->Finish(ToGrpc(s));
  });
  return reactor;
}

}  // namespace

void ClusterService::ListMembers(google::protobuf::RepeatedPtrField<etcdserverpb::Member>* out) const {
  for (const auto& mem : ctx_->node->applier()->Members()) ToEtcd(mem, out->Add());
}

bool ClusterService::ConnectedSince5s(bool all) const {
  const uint64_t self = ctx_->node->ids().member_id;
  const int64_t since = ctx_->now_ms ? ctx_->now_ms() - kHealthIntervalMs : 0;
  size_t voters = 0, connected = 0;
  for (const auto& m : ctx_->node->applier()->Members()) {
    if (m.is_learner()) continue;
    voters++;
    if (m.id() == self) {
      connected++;
      continue;
    }
    const int64_t t = ctx_->peer_connected_since_ms ? ctx_->peer_connected_since_ms(m.id()) : 0;
    if (t != 0 && t <= since) connected++;
  }
  if (all) return connected == voters;
  // mayRemoveMember: the voters left after removing a connected one must
  // still be a quorum of the voters left.
  return connected - 1 >= 1 + (voters - 1) / 2;
}


grpc::ServerUnaryReactor* ClusterService::MemberAdd(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::MemberAddRequest* request,
                                                    etcdserverpb::MemberAddResponse* response) {
  if (Status denied = ctx_->RequireRoot(*context); !denied.ok()) return FinishNow(context, denied);
  if (!ValidPeerUrls(request->peerurls())) return FinishNow(context, errors::MemberBadURLs());
  Table t{ctx_->node->applier()->Members()};
  if (!request->islearner() && !t.StartedQuorum(1, 0)) return FinishNow(context, errors::NotEnoughStartedMembers());
  if (!ConnectedSince5s(/*all=*/true)) return FinishNow(context, errors::Unhealthy());
  cairnpb::MemberChange change;
  change.set_type(request->islearner() ? cairnpb::MemberChange::ADD_LEARNER : cairnpb::MemberChange::ADD_VOTER);
  auto* m = change.mutable_member();
  std::vector<std::string> urls(request->peerurls().begin(), request->peerurls().end());
  // etcd (v3rpc MemberAdd): the peer URLs and the Unix time, no token.
  m->set_id(server::ComputeMemberId(urls, "", static_cast<int64_t>(std::time(nullptr))));
  *m->mutable_peer_urls() = request->peerurls();
  m->set_is_learner(request->islearner());
  if (t.Find(m->id()) || ctx_->node->applier()->IsRemoved(m->id())) return FinishNow(context, errors::MemberExist());
  if (t.UrlTaken(request->peerurls(), 0)) return FinishNow(context, errors::PeerURLExist());
  if (request->islearner() && t.Learners() + 1 > kMaxLearners) return FinishNow(context, errors::TooManyLearners());
  const cairnpb::Member added = *m;
  return ProposeChange(ctx_, context, std::move(change), response, [added](etcdserverpb::MemberAddResponse* r) {
    ToEtcd(added, r->mutable_member());
  });
}

grpc::ServerUnaryReactor* ClusterService::MemberRemove(grpc::CallbackServerContext* context,
                                                       const etcdserverpb::MemberRemoveRequest* request,
                                                       etcdserverpb::MemberRemoveResponse* response) {
  if (Status denied = ctx_->RequireRoot(*context); !denied.ok()) return FinishNow(context, denied);
  Table t{ctx_->node->applier()->Members()};
  const cairnpb::Member* m = t.Find(request->id());
  if (!m) return FinishNow(context, errors::MemberNotFound());
  if (!m->is_learner()) {
    if (!t.StartedQuorum(0, 0, request->id())) return FinishNow(context, errors::NotEnoughStartedMembers());
    // A member that is down is safe to remove: it is not in the active quorum.
    const bool self = request->id() == ctx_->node->ids().member_id;
    const bool down = !self && ctx_->peer_connected_since_ms && ctx_->peer_connected_since_ms(request->id()) == 0;
    if (!down && !ConnectedSince5s(/*all=*/false)) return FinishNow(context, errors::Unhealthy());
  }
  cairnpb::MemberChange change;
  change.set_type(cairnpb::MemberChange::REMOVE);
  change.mutable_member()->set_id(request->id());
  return ProposeChange(ctx_, context, std::move(change), response, [](etcdserverpb::MemberRemoveResponse*) {});
}

grpc::ServerUnaryReactor* ClusterService::MemberUpdate(grpc::CallbackServerContext* context,
                                                       const etcdserverpb::MemberUpdateRequest* request,
                                                       etcdserverpb::MemberUpdateResponse* response) {
  if (Status denied = ctx_->RequireRoot(*context); !denied.ok()) return FinishNow(context, denied);
  if (!ValidPeerUrls(request->peerurls())) return FinishNow(context, errors::MemberBadURLs());
  Table t{ctx_->node->applier()->Members()};
  if (!t.Find(request->id())) return FinishNow(context, errors::MemberNotFound());
  if (t.UrlTaken(request->peerurls(), request->id())) return FinishNow(context, errors::PeerURLExist());
  cairnpb::MemberChange change;
  change.set_type(cairnpb::MemberChange::UPDATE_PEER_URLS);
  change.mutable_member()->set_id(request->id());
  *change.mutable_member()->mutable_peer_urls() = request->peerurls();
  return ProposeChange(ctx_, context, std::move(change), response, [](etcdserverpb::MemberUpdateResponse*) {});
}

grpc::ServerUnaryReactor* ClusterService::MemberPromote(grpc::CallbackServerContext* context,
                                                        const etcdserverpb::MemberPromoteRequest* request,
                                                        etcdserverpb::MemberPromoteResponse* response) {
  if (Status denied = ctx_->RequireRoot(*context); !denied.ok()) return FinishNow(context, denied);
  Table t{ctx_->node->applier()->Members()};
  const cairnpb::Member* m = t.Find(request->id());
  if (!m) return FinishNow(context, errors::MemberNotFound());
  if (!m->is_learner()) return FinishNow(context, errors::MemberNotLearner());
  if (!t.StartedQuorum(1, 1)) return FinishNow(context, errors::NotEnoughStartedMembers());
  cairnpb::MemberChange change;
  change.set_type(cairnpb::MemberChange::ADD_VOTER);
  change.mutable_member()->set_id(request->id());
  return ProposeChange(ctx_, context, std::move(change), response, [](etcdserverpb::MemberPromoteResponse*) {});
}

}  // namespace cairn::api
