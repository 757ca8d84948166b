#include "peer/peer_service.h"

#include <atomic>
#include <chrono>

#include "common/logging.h"
#include "peer/raft_codec.h"

namespace cairn::peer {

namespace {
// One log line per kind of refusal every 10 s: a misconfigured peer retries
// forever and must not flood the log.
bool ShouldLog(std::atomic<int64_t>* last_ms) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_ms->load();
  return now - last >= 10000 && last_ms->compare_exchange_strong(last, now);
}
std::atomic<int64_t> last_mismatch_log_ms{-100000};
std::atomic<int64_t> last_removed_log_ms{-100000};
std::atomic<int64_t> last_malformed_log_ms{-100000};
}  // namespace

class PeerService::Reactor final : public grpc::ServerReadReactor<cairnpb::PeerBatch> {
 public:
  Reactor(const PeerServiceHandlers* handlers, grpc::CallbackServerContext* context)
      : handlers_(handlers), context_(context) {
    StartRead(&batch_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    grpc::Status refusal = Check();
    if (!refusal.ok()) {
      Finish(refusal);
      return;
    }
    if (handlers_->on_received) handlers_->on_received(batch_.from(), batch_.ByteSizeLong());
    for (const auto& pm : batch_.messages()) {
      auto m = FromProto(pm);
      if (!m.ok() || m->from != batch_.from() || m->to != handlers_->member_id) {
        if (ShouldLog(&last_malformed_log_ms)) {
          CAIRN_LOG(kWarn) << "peer " << context_->peer() << ": dropped a malformed raft message"
                           << (m.ok() ? "" : ": " + m.status().message());
        }
        continue;
      }
      handlers_->step(std::move(*m));
    }
    for (auto& p : *batch_.mutable_proposals()) handlers_->propose_forwarded(std::move(p));
    for (int64_t id : batch_.lease_renewals()) handlers_->renew_lease(id);
    batch_.Clear();
    StartRead(&batch_);
  }

  void OnDone() override { delete this; }

 private:
  grpc::Status Check() {
    if (batch_.cluster_id() != handlers_->cluster_id) {
      if (ShouldLog(&last_mismatch_log_ms)) {
        CAIRN_LOG(kError) << "refused a peer of another cluster (" << context_->peer() << ": cluster "
                          << std::hex << batch_.cluster_id() << ", member " << batch_.from() << "; ours "
                          << handlers_->cluster_id << ")";
      }
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "cluster ID mismatch");
    }
    if (batch_.to() != handlers_->member_id) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "member ID mismatch");
    }
    if (handlers_->is_removed(batch_.from())) {
      if (ShouldLog(&last_removed_log_ms)) {
        CAIRN_LOG(kWarn) << "refused removed member " << std::hex << batch_.from() << " (" << context_->peer()
                         << ")";
      }
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "the member has been permanently removed from the cluster");
    }
    return grpc::Status::OK;
  }

  const PeerServiceHandlers* handlers_;
  grpc::CallbackServerContext* context_;
  cairnpb::PeerBatch batch_;
};

grpc::ServerReadReactor<cairnpb::PeerBatch>* PeerService::Stream(grpc::CallbackServerContext* context,
                                                                cairnpb::PeerStreamEnd*) {
  return new Reactor(&handlers_, context);
}

}  // namespace cairn::peer
