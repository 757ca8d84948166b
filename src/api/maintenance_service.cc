#include "api/maintenance_service.h"

#include "server/etcd_snapshot.h"

namespace cairn::api {

namespace {
// Streams an etcd snapshot (bbolt, then its SHA-256) of the member's
// database, one write in flight, as etcd's Maintenance.Snapshot.
class SnapshotReactor final : public grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse> {
 public:
  explicit SnapshotReactor(const ApiContext* ctx)
      : ctx_(ctx), stream_(ctx->node->engine(), ctx->node->engine()->GetSnapshot()) {
    ctx_->FillHeader(response_.mutable_header());
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "snapshot stream broken"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  static constexpr size_t kChunkBytes = 32 * 1024;
  void Next() {
    std::string blob;
    auto more = stream_.NextChunk(&blob, kChunkBytes);
    if (!more.ok()) {
      Finish(ToGrpc(more.status()));
      return;
    }
    if (!*more) {
      Finish(grpc::Status::OK);
      return;
    }
    sent_ += blob.size();
    response_.set_blob(std::move(blob));
    response_.set_remaining_bytes(stream_.total_bytes() - sent_);
    StartWrite(&response_);
  }
  const ApiContext* ctx_;
  server::EtcdSnapshotStream stream_;
  etcdserverpb::SnapshotResponse response_;
  uint64_t sent_ = 0;
};

constexpr int kRecursionLimit = 100;  // protobuf's default: nothing here nests

}  // namespace

MaintenanceService::MaintenanceService(const ApiContext* ctx)
    : ParsesRequests("etcdserverpb.Maintenance", kRecursionLimit), ctx_(ctx) {
  ParseRequest("Alarm", &MaintenanceService::Alarm);
  ParseRequest("Status", &MaintenanceService::Status);
  ParseRequest("Defragment", &MaintenanceService::Defragment);
  ParseRequest("Hash", &MaintenanceService::Hash);
  ParseRequest("HashKV", &MaintenanceService::HashKV);
  ParseRequest("Snapshot", &MaintenanceService::Snapshot);
  ParseRequest("MoveLeader", &MaintenanceService::MoveLeader);
  SetLeaderCheck([ctx] { return ctx->node->leader_id() != 0; });
  SetLearnerCheck([ctx] { return ctx->IsLearner(); }, [](const google::protobuf::Message& m) {
    return dynamic_cast<const etcdserverpb::StatusRequest*>(&m) != nullptr ||
           dynamic_cast<const etcdserverpb::SnapshotRequest*>(&m) != nullptr;
  });
  ParseRemainingRequests();
}

ClusterService::ClusterService(const ApiContext* ctx)
    : ParsesRequests("etcdserverpb.Cluster", kRecursionLimit), ctx_(ctx) {
  ParseRequest("MemberList", &ClusterService::MemberList);
  ParseRequest("MemberAdd", &ClusterService::MemberAdd);
  ParseRequest("MemberRemove", &ClusterService::MemberRemove);
  ParseRequest("MemberUpdate", &ClusterService::MemberUpdate);
  ParseRequest("MemberPromote", &ClusterService::MemberPromote);
  SetLeaderCheck([ctx] { return ctx->node->leader_id() != 0; });
  SetLearnerCheck([ctx] { return ctx->IsLearner(); });
  ParseRemainingRequests();
}


namespace {

std::string AlarmName(etcdserverpb::AlarmType t) {
  switch (t) {
    case etcdserverpb::NOSPACE: return "NOSPACE";
    case etcdserverpb::CORRUPT: return "CORRUPT";
    default: return "NONE";
  }
}
}  // namespace

namespace {
// Defragment, Hash, HashKV and Snapshot return the auth store's own error,
// not converted to etcd's gRPC errors (code Unknown, "auth: ..."), as etcd.
cairn::Status RequireRootRaw(const ApiContext* ctx, const grpc::ServerContextBase& context) {
  cairn::Status s = ctx->RequireRoot(context);
  if (s.ok()) return s;
  std::string m = s.message();
  if (m == errors::UserNotFound().message()) return cairn::Status(Code::kUnknown, "auth: user not found");
  if (m.starts_with("etcdserver: ")) m = "auth: " + m.substr(12);
  return cairn::Status(Code::kUnknown, m);
}
}  // namespace

grpc::ServerUnaryReactor* MaintenanceService::Alarm(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::AlarmRequest* request,
                                                    etcdserverpb::AlarmResponse* response) {
  const cairn::Status allowed = request->action() == etcdserverpb::AlarmRequest::GET ? ctx_->RequireUser(*context)
                                                                                    : ctx_->RequireRoot(*context);
  if (!allowed.ok()) return FinishNow(context, allowed);
  cairnpb::InternalRequest req;
  *req.mutable_alarm() = *request;
  return ProposeUnary(ctx_, context, std::move(req), false, response,
                      [](const cairnpb::InternalResponse& r) { return r.alarm(); });
}

grpc::ServerUnaryReactor* MaintenanceService::Status(grpc::CallbackServerContext* context,
                                                     const etcdserverpb::StatusRequest* request,
                                                     etcdserverpb::StatusResponse* response) {
  if (cairn::Status s = ctx_->RequireUser(*context); !s.ok()) return FinishNow(context, s);
  ctx_->FillHeader(response->mutable_header());
  response->set_version(ctx_->version);
  response->set_dbsize(static_cast<int64_t>(ctx_->node->engine()->TotalSizeBytes()));
  response->set_dbsizeinuse(static_cast<int64_t>(ctx_->node->engine()->LiveDataSizeBytes()));
  response->set_leader(ctx_->node->leader_id());
  response->set_raftindex(ctx_->node->commit_index());
  response->set_raftterm(ctx_->node->raft_term());
  response->set_raftappliedindex(ctx_->node->applied_index());
  response->set_islearner(false);
  if (ctx_->node->leader_id() == 0) response->add_errors(errors::NoLeader().message());
  for (const auto& a : ctx_->node->applier()->Alarms()) {
    response->add_errors("memberID:" + std::to_string(a.memberid()) + " alarm:" + AlarmName(a.alarm()) + " ");
  }
  return FinishNow(context, cairn::Status::Ok());
}

grpc::ServerUnaryReactor* MaintenanceService::Defragment(grpc::CallbackServerContext* context,
                                                         const etcdserverpb::DefragmentRequest*,
                                                         etcdserverpb::DefragmentResponse* response) {
  if (cairn::Status denied = RequireRootRaw(ctx_, *context); !denied.ok()) return FinishNow(context, denied);
  // RocksDB rewrites files in the background while reads and writes go on:
  // no stop-the-world pause, unlike bbolt's defrag.
  cairn::Status s = ctx_->node->engine()->CompactAll();
  if (s.ok()) ctx_->FillHeader(response->mutable_header());
  return FinishNow(context, s);
}

grpc::ServerUnaryReactor* MaintenanceService::Hash(grpc::CallbackServerContext* context,
                                                   const etcdserverpb::HashRequest*,
                                                   etcdserverpb::HashResponse* response) {
  if (cairn::Status denied = RequireRootRaw(ctx_, *context); !denied.ok()) return FinishNow(context, denied);
  int64_t hash_rev = 0, compact_rev = 0;
  auto h = ctx_->node->kv()->HashKV(0, &hash_rev, &compact_rev);
  if (!h.ok()) return FinishNow(context, h.status());
  response->set_hash(*h);
  ctx_->FillHeader(response->mutable_header());
  return FinishNow(context, cairn::Status::Ok());
}

grpc::ServerUnaryReactor* MaintenanceService::HashKV(grpc::CallbackServerContext* context,
                                                     const etcdserverpb::HashKVRequest* request,
                                                     etcdserverpb::HashKVResponse* response) {
  if (cairn::Status denied = RequireRootRaw(ctx_, *context); !denied.ok()) return FinishNow(context, denied);
  int64_t hash_rev = 0, compact_rev = 0;
  auto h = ctx_->node->kv()->HashKV(request->revision(), &hash_rev, &compact_rev);
  if (!h.ok()) return FinishNow(context, h.status());
  response->set_hash(*h);
  response->set_compact_revision(compact_rev);
  response->set_hash_revision(hash_rev);
  ctx_->FillHeader(response->mutable_header());
  return FinishNow(context, cairn::Status::Ok());
}

grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>* MaintenanceService::Snapshot(
    grpc::CallbackServerContext* context, const etcdserverpb::SnapshotRequest*) {
  if (cairn::Status denied = RequireRootRaw(ctx_, *context); !denied.ok()) {
    return new RefusedWriteReactor<etcdserverpb::SnapshotResponse>(ToGrpc(denied));
  }
  return new SnapshotReactor(ctx_);
}

grpc::ServerUnaryReactor* MaintenanceService::MoveLeader(grpc::CallbackServerContext* context,
                                                         const etcdserverpb::MoveLeaderRequest* request,
                                                         etcdserverpb::MoveLeaderResponse* response) {
  if (cairn::Status denied = ctx_->RequireRoot(*context); !denied.ok()) return FinishNow(context, denied);
  // etcd: only the leader moves leadership; the target must be a voter.
  if (ctx_->node->leader_id() != ctx_->node->ids().member_id) return FinishNow(context, errors::NotLeader());
  bool voter = false;
  for (const auto& m : ctx_->node->applier()->Members()) {
    if (m.id() == request->targetid() && !m.is_learner()) voter = true;
  }
  if (!voter) return FinishNow(context, errors::BadLeaderTransferee());
  auto* reactor = context->DefaultReactor();
  ctx_->node->raft()->TransferLeader(request->targetid(), [this, reactor, response](const cairn::Status& s) {
    if (s.ok()) ctx_->FillHeader(response->mutable_header());
    reactor->Finish(ToGrpc(s));
  });
  return reactor;
}

grpc::ServerUnaryReactor* ClusterService::MemberList(grpc::CallbackServerContext* context,
                                                     const etcdserverpb::MemberListRequest* request,
                                                     etcdserverpb::MemberListResponse* response) {
  // etcd 3.5.29+: any user may list the members (after the read index).
  return ReadAndFinish(ctx_, context, request->linearizable(), [this, context, response] {
    if (cairn::Status s = ctx_->RequireUser(*context); !s.ok()) return s;
    // The member table, by id as etcd lists it. A member that has not
    // published its attributes yet has no name and no client URLs
    // (etcdctl shows it "unstarted").
    ListMembers(response->mutable_members());
    ctx_->FillClusterHeader(response->mutable_header());
    return cairn::Status::Ok();
  });
}

}  // namespace cairn::api
