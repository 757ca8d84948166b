#include "api/api_context.h"

#include <chrono>

namespace cairn::api {

Result<apply::AuthInfo> ApiContext::AuthInfoOf(const grpc::ServerContextBase& context) const {
  apply::AuthStore* store = auth();
  if (!store->enabled()) return apply::AuthInfo{};
  const auto& md = context.client_metadata();
  auto it = md.find("token");
  if (it == md.end()) it = md.find("authorization");
  if (it != md.end()) {
    std::string token(it->second.data(), it->second.size());
    if (token.starts_with("Bearer ")) token = token.substr(7);
    auto info = store->TokenInfo(token);
    if (!info) return errors::InvalidAuthToken();
    return *info;
  }
  if (tls_common_name) {
    std::string cn = tls_common_name(context.peer());
    if (!cn.empty()) return apply::AuthInfo{std::move(cn), store->revision()};
  }
  return apply::AuthInfo{};
}

Status ApiContext::RequireUser(const grpc::ServerContextBase& context) const {
  if (!auth()->enabled()) return Status::Ok();
  auto who = AuthInfoOf(context);
  if (!who.ok()) return who.status();
  return who->user.empty() ? errors::UserEmpty() : Status::Ok();
}

Status ApiContext::RequireRoot(const grpc::ServerContextBase& context) const {
  auto who = AuthInfoOf(context);
  if (!who.ok()) return who.status();
  return auth()->IsAdminPermitted(*who);
}

void ProposeChecked(const ApiContext& ctx, cairnpb::InternalRequest req, bool needs_space,
                    std::function<void(const Status&, const cairnpb::InternalResponse&)> done) {
  static const cairnpb::InternalResponse kNone;
  req.set_proposed_at_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  if (req.ByteSizeLong() > ctx.limits.max_request_bytes) {
    done(errors::RequestTooLarge(), kNone);
    return;
  }
  if (needs_space) {
    if (ctx.node->applier()->NoSpaceAlarm()) {
      done(errors::NoSpace(), kNone);
      return;
    }
    // etcd's backend quota: refuse, and raise the NOSPACE alarm for everyone.
    const uint64_t quota = static_cast<uint64_t>(ctx.limits.quota_backend_bytes);
    auto over_quota = [&](uint64_t used) { return quota > 0 && used + req.ByteSizeLong() > quota; };
    // Over the backend quota or the disk's reserve: the same answer, NOSPACE.
    if (ctx.node->DiskLow() ||
        (over_quota(ctx.node->DbSizeBytes()) && over_quota(ctx.node->RefreshDbSizeBytes()))) {
      cairnpb::InternalRequest alarm;
      alarm.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
      alarm.mutable_alarm()->set_memberid(ctx.node->ids().member_id);
      alarm.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
      ctx.node->Propose(std::move(alarm),
                        [done = std::move(done)](const cairnpb::InternalResponse&) { done(errors::NoSpace(), kNone); });
      return;
    }
  }
  ctx.node->Propose(std::move(req), [done = std::move(done)](const cairnpb::InternalResponse& resp) {
    done(FromResponse(resp), resp);
  });
}

void ProposeAndFinish(const ApiContext& ctx, cairnpb::InternalRequest req, bool needs_space,
                      grpc::ServerUnaryReactor* reactor,
                      std::function<Status(const cairnpb::InternalResponse&)> on_applied) {
  ProposeChecked(ctx, std::move(req), needs_space,
                 [reactor, on_applied = std::move(on_applied)](const Status& status,
                                                               const cairnpb::InternalResponse& resp) {
                   Status s = status;
                   if (s.ok()) s = on_applied(resp);
                   reactor->Finish(ToGrpc(s));
                 });
}

}  // namespace cairn::api
