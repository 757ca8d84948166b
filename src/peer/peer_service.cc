#include "peer/peer_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

#include "common/logging.h"
#include "common/trace_points.h"
#include "peer/raft_codec.h"
#include "storage/snapshot_stream.h"

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

// Whether a batch from a peer may be used (see the header).
Status CheckSender(const PeerServiceHandlers& h, const cairnpb::PeerBatch& batch, const std::string& peer) {
  if (batch.cluster_id() != h.cluster_id) {
    if (ShouldLog(&last_mismatch_log_ms)) {
      CAIRN_LOG(kError) << "refused a peer of another cluster (" << peer << ": cluster " << std::hex
                        << batch.cluster_id() << ", member " << batch.from() << "; ours " << h.cluster_id << ")";
    }
    return Status(Code::kFailedPrecondition, "cluster ID mismatch");
  }
  if (batch.to() != h.member_id) {
    return Status(Code::kFailedPrecondition, "member ID mismatch");
  }
  if (h.is_removed(batch.from())) {
    if (ShouldLog(&last_removed_log_ms)) {
      CAIRN_LOG(kWarn) << "refused removed member " << std::hex << batch.from() << " (" << peer << ")";
    }
    return Status(Code::kNotFound, "the member has been permanently removed from the cluster");
  }
  return Status::Ok();
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}
}  // namespace

Status PeerService::Deliver(cairnpb::PeerBatch* batch, const std::string& peer) const {
  Status refusal = CheckSender(handlers_, *batch, peer);
  if (!refusal.ok()) return refusal;
  if (handlers_.on_received) handlers_.on_received(batch->from(), batch->ByteSizeLong());
  for (const auto& pm : batch->messages()) {
    auto m = FromProto(pm);
    // Snapshots come only through InstallSnapshot, with their image.
    if (!m.ok() || m->from != batch->from() || m->to != handlers_.member_id ||
        m->type == raft::MessageType::kSnapshot) {
      if (ShouldLog(&last_malformed_log_ms)) {
        CAIRN_LOG(kWarn) << "peer " << peer << ": dropped a malformed raft message"
                         << (m.ok() ? "" : ": " + m.status().message());
      }
      continue;
    }
    if (trace::Recorder::Get().enabled()) {
      if (m->type == raft::MessageType::kAppend && !m->entries.empty()) trace::Point("recv_app", m->entries.back().index);
      if (m->type == raft::MessageType::kAppendResponse) trace::Point("recv_resp", m->index);
    }
    handlers_.step(std::move(*m));
  }
  auto& proposals = *batch->mutable_proposals();
  for (int i = 0; i < proposals.size(); i++) {
    // (ids 0 from a sender that sends none: its waiter times out)
    const uint64_t id = i < batch->proposal_ids_size() ? batch->proposal_ids(i) : 0;
    handlers_.propose_forwarded(batch->from(), id, std::move(proposals[i]));
  }
  for (const auto& r : batch->refusals()) {
    // (a code this member does not know is an error all the same)
    const bool known = r.code() > 0 && r.code() <= static_cast<int32_t>(Code::kUnauthenticated);
    handlers_.refused(r.id(), Status(known ? static_cast<Code>(r.code()) : Code::kUnknown, r.message()));
  }
  for (int64_t id : batch->lease_renewals()) handlers_.renew_lease(id);
  return Status::Ok();
}

class PeerService::Reactor final : public grpc::ServerReadReactor<cairnpb::PeerBatch> {
 public:
  Reactor(const PeerService* service, grpc::CallbackServerContext* context) : service_(service), context_(context) {
    StartRead(&batch_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    Status s = service_->Deliver(&batch_, context_->peer());
    if (!s.ok()) {
      Finish(ToGrpc(s));
      return;
    }
    batch_.Clear();
    StartRead(&batch_);
  }

  void OnDone() override { delete this; }

 private:
  const PeerService* service_;
  grpc::CallbackServerContext* context_;
  cairnpb::PeerBatch batch_;
};

class PeerService::SnapshotReactor final : public grpc::ServerReadReactor<cairnpb::SnapshotChunk> {
 public:
  SnapshotReactor(const PeerServiceHandlers* handlers, grpc::CallbackServerContext* context)
      : handlers_(handlers), context_(context) {
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    grpc::Status st = ok ? Take() : Complete();
    if (!st.ok() || !ok) {
      if (!st.ok()) Discard();
      Finish(st);
      return;
    }
    chunk_.Clear();
    StartRead(&chunk_);
  }

  void OnDone() override {
    Discard();
    delete this;
  }

 private:
  grpc::Status Take() {
    if (!message_) {
      grpc::Status refusal = ToGrpc(CheckSender(*handlers_, chunk_.header(), context_->peer()));
      if (!refusal.ok()) return refusal;
      if (chunk_.header().messages_size() != 1) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "snapshot stream without its message");
      }
      auto m = FromProto(chunk_.header().messages(0));
      if (!m.ok() || m->type != raft::MessageType::kSnapshot || m->from != chunk_.header().from() ||
          m->to != handlers_->member_id) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "snapshot stream with a malformed message");
      }
      message_ = std::make_unique<raft::Message>(std::move(*m));
      std::error_code ec;
      std::filesystem::create_directories(handlers_->snapshot_dir, ec);
      path_ = handlers_->snapshot_dir + "/incoming-" + std::to_string(message_->from) + "-" +
              std::to_string(message_->snapshot->metadata.index) + ".snap";
      out_.open(path_, std::ios::binary | std::ios::trunc);
      if (!out_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot store the snapshot at " + path_);
    }
    bytes_ += chunk_.data().size();
    if (bytes_ > handlers_->max_snapshot_bytes) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "snapshot larger than this member accepts");
    }
    out_.write(chunk_.data().data(), static_cast<std::streamsize>(chunk_.data().size()));
    if (!out_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot write the snapshot to " + path_);
    return grpc::Status::OK;
  }

  grpc::Status Complete() {
    if (!message_) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty snapshot stream");
    out_.flush();
    out_.close();
    // Durable before the install refers to it (a crash mid-install finishes
    // from this file).
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!synced) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot sync the snapshot at " + path_);
    Status v = storage::VerifySnapshotFile(path_);
    if (!v.ok()) {
      CAIRN_LOG(kWarn) << "peer " << std::hex << message_->from << std::dec << ": refused a snapshot: " << v.message();
      return grpc::Status(grpc::StatusCode::DATA_LOSS, v.message());
    }
    const std::string final_path = handlers_->snapshot_dir + "/received-" +
                                   std::to_string(message_->snapshot->metadata.index) + ".snap";
    std::error_code ec;
    std::filesystem::rename(path_, final_path, ec);
    if (ec) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot keep the snapshot: " + ec.message());
    path_.clear();
    auto snap = std::make_shared<raft::Snapshot>(*message_->snapshot);
    snap->data = final_path;
    message_->snapshot = std::move(snap);
    CAIRN_LOG(kInfo) << "received a snapshot at index " << message_->snapshot->metadata.index << " (" << bytes_
                     << " bytes) from " << std::hex << message_->from;
    handlers_->step(std::move(*message_));
    return grpc::Status::OK;
  }

  // Removes a partly received image.
  void Discard() {
    if (path_.empty()) return;
    if (out_.is_open()) out_.close();
    std::error_code ec;
    std::filesystem::remove(path_, ec);
    path_.clear();
  }

  const PeerServiceHandlers* handlers_;
  grpc::CallbackServerContext* context_;
  cairnpb::SnapshotChunk chunk_;
  std::unique_ptr<raft::Message> message_;
  std::string path_;
  std::ofstream out_;
  uint64_t bytes_ = 0;
};

grpc::ServerReadReactor<cairnpb::SnapshotChunk>* PeerService::InstallSnapshot(grpc::CallbackServerContext* context,
                                                                             cairnpb::PeerStreamEnd*) {
  return new SnapshotReactor(&handlers_, context);
}

grpc::ServerReadReactor<cairnpb::PeerBatch>* PeerService::Stream(grpc::CallbackServerContext* context,
                                                                cairnpb::PeerStreamEnd*) {
  return new Reactor(this, context);
}

grpc::ServerUnaryReactor* PeerService::Probe(grpc::CallbackServerContext* context, const cairnpb::ProbeRequest*,
                                             cairnpb::ProbeResponse*) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* PeerService::Members(grpc::CallbackServerContext* context, const cairnpb::MembersRequest*,
                                               cairnpb::MembersResponse* response) {
  response->set_cluster_id(handlers_.cluster_id);
  if (handlers_.members) {
    for (auto& m : handlers_.members()) *response->add_members() = std::move(m);
  }
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace cairn::peer
