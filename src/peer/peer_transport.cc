#include "peer/peer_transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>

#include "api/http/protocol_classifier.h"
#include "common/logging.h"
#include "common/thread_name.h"
#include "common/trace_points.h"
#include "peer/peer_stream.h"
#include "peer/raft_codec.h"

namespace cairn::peer {

namespace {
size_t PayloadBytes(const raft::Message& m) {
  size_t n = 64 + m.context.size();
  for (const auto& e : m.entries) n += e.data.size() + 24;
  return n;
}

void Signal(int wake_fd) {
  const uint64_t one = 1;
  (void)!::write(wake_fd, &one, sizeof(one));
}

void Drain(int wake_fd) {
  uint64_t n;
  (void)!::read(wake_fd, &n, sizeof(n));
}

std::string ErrnoText(int err) {
  std::string t = std::strerror(err);
  if (!t.empty()) t[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(t[0])));
  return t;
}

// Connects to `target` (host:port, [v6]:port) within 3 s; -1 and `error` if
// it cannot, or when `wake_fd` says the peer stops (`stopping`).
int Dial(const std::string& target, int wake_fd, const std::function<bool()>& stopping, std::string* error) {
  const size_t colon = target.rfind(':');
  std::string host = target.substr(0, colon);
  const std::string port = target.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int gai = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) {
    *error = "dial tcp " + target + ": lookup " + host + ": " + ::gai_strerror(gai);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *error = "dial tcp " + target + ": socket: " + ErrnoText(errno);
      continue;
    }
    int err = 0;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
      while (err == EINPROGRESS || err == EINTR) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
          err = ETIMEDOUT;
          break;
        }
        pollfd p[2] = {{fd, POLLOUT, 0}, {wake_fd, POLLIN, 0}};
        if (::poll(p, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) {
          err = errno;
          break;
        }
        if (p[1].revents & POLLIN) {
          Drain(wake_fd);
          if (stopping()) {
            err = ECANCELED;
            break;
          }
        }
        if (p[0].revents != 0) {
          socklen_t len = sizeof(err);
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          break;
        }
      }
    }
    if (err != 0) {
      *error = "dial tcp " + target + ": connect: " + ErrnoText(err);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return -1;
  const int one = 1, idle = 2, interval = 1, count = 2, user_timeout_ms = 5000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
  return fd;
}
}  // namespace

std::string TargetOf(const std::string& url) {
  size_t p = url.find("://");
  if (p == std::string::npos) return "";
  const std::string scheme = url.substr(0, p);
  if (scheme != "http" && scheme != "https") return "";
  std::string rest = url.substr(p + 3);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.rfind(':') == std::string::npos) return "";
  if (rest.starts_with("localhost:")) rest = "127.0.0.1" + rest.substr(9);
  return rest;
}

std::shared_ptr<grpc::ChannelCredentials> CredentialsFor(const std::string& url,
                                                         const std::shared_ptr<grpc::ChannelCredentials>& tls) {
  if (!url.starts_with("https://")) return grpc::InsecureChannelCredentials();
  return tls ? tls : grpc::SslCredentials(grpc::SslCredentialsOptions{});
}

std::shared_ptr<grpc::ChannelCredentials> PeerTransport::CredentialsOf(const Peer& peer) const {
  return CredentialsFor(peer.tls ? "https://" : "http://", options_.tls_credentials);
}

PeerTransport::PeerTransport(PeerTransportOptions options) : options_(options) {}

PeerTransport::Peer::~Peer() {
  if (fd >= 0) ::close(fd);
  if (wake_fd >= 0) ::close(wake_fd);
}

PeerTransport::~PeerTransport() { Stop(); }

void PeerTransport::SetIdentity(uint64_t cluster_id, uint64_t member_id) {
  cluster_id_ = cluster_id;
  member_id_ = member_id;
}

void PeerTransport::SetUnreachableHandler(std::function<void(raft::NodeId)> handler) {
  std::lock_guard<std::mutex> lock(handler_mu_);
  unreachable_ = std::move(handler);
}

void PeerTransport::SetStats(Stats stats) { stats_ = std::move(stats); }

void PeerTransport::SetSnapshotHandlers(SnapshotOpener open, std::function<void(raft::NodeId, bool)> report) {
  std::lock_guard<std::mutex> lock(handler_mu_);
  open_snapshot_ = std::move(open);
  report_snapshot_ = std::move(report);
}

void PeerTransport::Unreachable(raft::NodeId id) {
  std::function<void(raft::NodeId)> handler;
  {
    std::lock_guard<std::mutex> lock(handler_mu_);
    handler = unreachable_;
  }
  if (handler) handler(id);
}

void PeerTransport::SetPeer(raft::NodeId id, const std::vector<std::string>& peer_urls) {
  if (id == member_id_.load() || peer_urls.empty()) return;
  const std::string target = TargetOf(peer_urls.front());
  const bool tls = peer_urls.front().starts_with("https://");
  if (target.empty()) {
    CAIRN_LOG(kWarn) << "peer " << std::hex << id << std::dec << ": unusable peer URL " << peer_urls.front();
    return;
  }
  std::shared_ptr<Peer> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    auto it = peers_.find(id);
    if (it != peers_.end()) {
      if (it->second->target == target && it->second->tls == tls) return;
      old = it->second;
      peers_.erase(it);
    }
  }
  if (old) StopPeer(old);
  auto peer = std::make_shared<Peer>();
  peer->id = id;
  peer->target = target;
  peer->tls = tls;
  peer->raw = !tls;
  if (peer->raw) {
    peer->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (peer->wake_fd < 0) {
      CAIRN_LOG(kError) << "peer " << std::hex << id << std::dec << ": eventfd: " << ErrnoText(errno);
      return;
    }
  }
  Peer* raw = peer.get();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    peers_[id] = peer;
  }
  peer->thread = std::thread([this, raw] {
    SetThreadName("cairn-peer-send");
    if (raw->raw) {
      RunRaw(raw);
    } else {
      Run(raw);
    }
  });
  peer->probe_thread = std::thread([this, raw] {
    SetThreadName("cairn-peer-probe");
    Probe(raw);
  });
  CAIRN_LOG(kInfo) << "peer " << std::hex << id << std::dec << " at " << target;
}

void PeerTransport::RemovePeer(raft::NodeId id) {
  std::shared_ptr<Peer> peer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    peer = it->second;
    peers_.erase(it);
  }
  StopPeer(peer);
}

void PeerTransport::StopPeer(const std::shared_ptr<Peer>& peer) {
  std::thread snapshot;
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    peer->stopping = true;
    if (peer->active) peer->active->TryCancel();
    if (peer->snapshot_ctx) peer->snapshot_ctx->TryCancel();
    snapshot = std::move(peer->snapshot_thread);
  }
  peer->cv.notify_all();
  if (peer->wake_fd >= 0) Signal(peer->wake_fd);
  peer->probe_cv.notify_all();
  if (peer->thread.joinable()) peer->thread.join();
  if (peer->probe_thread.joinable()) peer->probe_thread.join();
  if (snapshot.joinable()) snapshot.join();
}

void PeerTransport::StartSnapshot(const std::shared_ptr<Peer>& peer, raft::Message message) {
  std::thread previous;
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    if (peer->stopping) return;
    if (peer->snapshot_running) {
      // The core waits for the report of the one in flight; a second one
      // means it gave up on it: it gets its report when that one ends.
      return;
    }
    previous = std::move(peer->snapshot_thread);
    peer->snapshot_running = true;
  }
  if (previous.joinable()) previous.join();  // finished: it cleared snapshot_running
  Peer* raw = peer.get();
  std::lock_guard<std::mutex> lock(peer->mu);
  peer->snapshot_thread = std::thread([this, raw, message = std::move(message)] {
    SetThreadName("cairn-snap-send");
    const bool ok = SendSnapshot(raw, message);
    std::function<void(raft::NodeId, bool)> report;
    {
      std::lock_guard<std::mutex> l(handler_mu_);
      report = report_snapshot_;
    }
    if (report) report(raw->id, ok);
    std::lock_guard<std::mutex> l(raw->mu);
    raw->snapshot_running = false;
  });
}

bool PeerTransport::SendSnapshot(Peer* peer, const raft::Message& message) {
  std::unique_ptr<storage::SnapshotReader> reader;
  {
    std::lock_guard<std::mutex> lock(handler_mu_);
    if (open_snapshot_) reader = open_snapshot_(message.snapshot->metadata.index);
  }
  if (!reader) {
    CAIRN_LOG(kWarn) << "raft: snapshot image at index " << message.snapshot->metadata.index
                     << " is gone; the leader takes another";
    return false;
  }
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  auto stub = cairnpb::Peer::NewStub(grpc::CreateCustomChannel(peer->target, CredentialsOf(*peer), args));
  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    if (peer->stopping) return false;
    peer->snapshot_ctx = &ctx;
  }
  const auto t0 = std::chrono::steady_clock::now();
  cairnpb::PeerStreamEnd end;
  auto writer = stub->InstallSnapshot(&ctx, &end);
  cairnpb::SnapshotChunk chunk;
  auto* header = chunk.mutable_header();
  header->set_cluster_id(cluster_id_.load());
  header->set_from(member_id_.load());
  header->set_to(peer->id);
  ToProto(message, header->add_messages());
  bool ok = writer->Write(chunk);
  size_t bytes = 0;
  while (ok) {
    chunk.Clear();
    auto more = reader->NextChunk(chunk.mutable_data(), 1 << 20);
    if (!more.ok()) {
      CAIRN_LOG(kError) << "raft: reading the snapshot image failed: " << more.status().message();
      ok = false;
      break;
    }
    if (!chunk.data().empty()) {
      bytes += chunk.data().size();
      ok = writer->Write(chunk);
    }
    if (!*more) break;
  }
  if (ok) ok = writer->WritesDone();
  grpc::Status st = writer->Finish();
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    peer->snapshot_ctx = nullptr;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (ok && st.ok()) {
    CAIRN_LOG(kInfo) << "raft: sent the snapshot at index " << message.snapshot->metadata.index << " ("
                     << bytes << " bytes) to " << std::hex << peer->id << std::dec << " in " << seconds << " s";
    return true;
  }
  CAIRN_LOG(kWarn) << "raft: sending the snapshot at index " << message.snapshot->metadata.index << " to "
                   << std::hex << peer->id << std::dec << " failed: " << st.error_message();
  return false;
}

void PeerTransport::Stop() {
  std::map<raft::NodeId, std::shared_ptr<Peer>> peers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    peers.swap(peers_);
  }
  for (auto& [id, peer] : peers) StopPeer(peer);
}

std::shared_ptr<PeerTransport::Peer> PeerTransport::Find(raft::NodeId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second;
}

void PeerTransport::Send(std::vector<raft::Message> messages) {
  // Each peer is written to (or woken) once, after all its messages of this
  // turn are queued: they go in one frame.
  std::vector<std::shared_ptr<Peer>> touched;
  for (auto& m : messages) {
    auto peer = Find(m.to);
    if (m.type == raft::MessageType::kSnapshot) {
      // (An unknown peer cannot be sent to; it is known once its
      // membership entry is applied, and the leader asks again.)
      if (peer && m.snapshot) StartSnapshot(peer, std::move(m));
      continue;
    }
    bool dropped = true;
    if (peer) {
      std::lock_guard<std::mutex> lock(peer->mu);
      const size_t bytes = PayloadBytes(m);
      if (!peer->stopping && peer->messages.size() + peer->proposals.size() < options_.max_queued_per_peer &&
          peer->queued_bytes + bytes <= options_.max_queued_bytes_per_peer) {
        peer->queued_bytes += bytes;
        peer->messages.push_back(std::move(m));
        dropped = false;
      }
    }
    if (peer && !dropped && (touched.empty() || touched.back() != peer)) {
      bool seen = false;
      for (const auto& t : touched) seen = seen || t == peer;
      if (!seen) touched.push_back(peer);
    }
    if (dropped) {
      if (m.type == raft::MessageType::kHeartbeat && stats_.heartbeat_dropped) stats_.heartbeat_dropped();
      if (stats_.send_failed) stats_.send_failed(m.to);
      Unreachable(m.to);
    }
  }
  for (const auto& peer : touched) Kick(peer.get());
}

void PeerTransport::Kick(Peer* peer) {
  if (!peer->raw) {
    peer->cv.notify_one();
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    if (peer->fd >= 0 && !peer->broken) FlushLocked(peer);
    wake = peer->fd < 0 || peer->broken || peer->out_pos < peer->out.size() || HasWorkLocked(*peer);
  }
  if (wake) Signal(peer->wake_fd);
}

void PeerTransport::Forward(raft::NodeId to, std::vector<std::pair<uint64_t, std::string>> proposals) {
  auto peer = Find(to);
  if (!peer) return;  // their waiters time out
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    for (auto& p : proposals) {
      if (peer->stopping || peer->messages.size() + peer->proposals.size() >= options_.max_queued_per_peer ||
          peer->queued_bytes + p.second.size() > options_.max_queued_bytes_per_peer) {
        break;
      }
      peer->queued_bytes += p.second.size();
      peer->proposals.push_back(std::move(p));
    }
  }
  Kick(peer.get());
}

void PeerTransport::Refuse(raft::NodeId to, uint64_t id, const Status& status) {
  auto peer = Find(to);
  if (!peer) return;  // the follower's waiter times out
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    if (peer->refusals.size() >= options_.max_queued_per_peer) return;
    cairnpb::ProposalRefusal r;
    r.set_id(id);
    r.set_code(static_cast<int32_t>(status.code()));
    r.set_message(status.message());
    peer->refusals.push_back(std::move(r));
  }
  Kick(peer.get());
}

void PeerTransport::ForwardLeaseRenewals(raft::NodeId to, std::vector<int64_t> lease_ids) {
  auto peer = Find(to);
  if (!peer) return;
  {
    std::lock_guard<std::mutex> lock(peer->mu);
    for (int64_t id : lease_ids) {
      if (peer->renewals.size() >= options_.max_queued_per_peer) break;
      peer->renewals.push_back(id);
    }
  }
  Kick(peer.get());
}

bool PeerTransport::HasWorkLocked(const Peer& peer) const {
  return !peer.messages.empty() || !peer.proposals.empty() || !peer.renewals.empty() || !peer.refusals.empty();
}

bool PeerTransport::TakeBatch(Peer* peer, cairnpb::PeerBatch* batch) {
  std::unique_lock<std::mutex> lock(peer->mu);
  peer->cv.wait_for(lock, std::chrono::seconds(1), [&] { return peer->stopping || HasWorkLocked(*peer); });
  if (peer->stopping) return false;
  TakeBatchLocked(peer, batch);
  return true;
}

void PeerTransport::TakeBatchLocked(Peer* peer, cairnpb::PeerBatch* batch) {
  for (int64_t id : peer->renewals) batch->add_lease_renewals(id);
  peer->renewals.clear();
  for (auto& r : peer->refusals) *batch->add_refusals() = std::move(r);
  peer->refusals.clear();
  size_t bytes = 0;
  while (!peer->proposals.empty() &&
         (bytes == 0 || bytes + peer->proposals.front().second.size() <= options_.max_batch_bytes)) {
    bytes += peer->proposals.front().second.size();
    peer->queued_bytes -= peer->proposals.front().second.size();
    batch->add_proposal_ids(peer->proposals.front().first);
    batch->add_proposals(std::move(peer->proposals.front().second));
    peer->proposals.pop_front();
  }
  while (!peer->messages.empty()) {
    const size_t b = PayloadBytes(peer->messages.front());
    if (bytes != 0 && bytes + b > options_.max_batch_bytes) break;
    bytes += b;
    peer->queued_bytes -= b;
    ToProto(peer->messages.front(), batch->add_messages());
    peer->messages.pop_front();
  }
}

void PeerTransport::FlushLocked(Peer* peer) {
  const char* traced_before = nullptr;
  const char* traced_after = nullptr;
  uint64_t traced_index = 0;
  while (HasWorkLocked(*peer) && peer->out.size() - peer->out_pos < options_.max_batch_bytes) {
    cairnpb::PeerBatch batch;
    TakeBatchLocked(peer, &batch);
    batch.set_cluster_id(cluster_id_.load());
    batch.set_from(member_id_.load());
    batch.set_to(peer->id);
    const size_t before = peer->out.size();
    AppendFrame(FrameKind::kBatch, batch, &peer->out);
    if (stats_.sent) stats_.sent(peer->id, peer->out.size() - before);
    if (trace::Recorder::Get().enabled()) {
      for (const auto& pm : batch.messages()) {
        if (pm.type() == static_cast<uint32_t>(raft::MessageType::kAppend) && pm.entries_size() > 0) {
          traced_before = "write_app";
          traced_after = "wrote_app";
          traced_index = pm.entries(pm.entries_size() - 1).index();
        } else if (pm.type() == static_cast<uint32_t>(raft::MessageType::kAppendResponse)) {
          traced_before = "write_resp";
          traced_after = "wrote_resp";
          traced_index = pm.index();
        }
      }
    }
  }
  if (traced_before) trace::Point(traced_before, traced_index);
  WriteLocked(peer);
  if (traced_after) trace::Point(traced_after, traced_index);
}

void PeerTransport::WriteLocked(Peer* peer) {
  while (peer->out_pos < peer->out.size()) {
    const ssize_t n = ::send(peer->fd, peer->out.data() + peer->out_pos, peer->out.size() - peer->out_pos,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      peer->out_pos += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // the sender waits for room
    peer->broken = true;
    return;
  }
  peer->out.clear();
  peer->out_pos = 0;
}

void PeerTransport::RunRaw(Peer* peer) {
  int64_t backoff_ms = 100;
  std::string last_error;
  auto connected_at = std::chrono::steady_clock::now();
  FrameDecoder replies(1 << 20);
  char buffer[4096];
  auto is_stopping = [peer] {
    std::lock_guard<std::mutex> lock(peer->mu);
    return peer->stopping;
  };
  // Waits `ms` or until the peer stops (work queued meanwhile waits).
  auto pause = [&](int64_t ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!is_stopping()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      pollfd p{peer->wake_fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) > 0) Drain(peer->wake_fd);
    }
  };
  // The stream is over (or never started): what it carried is lost (Raft
  // retransmits); report, log a new reason, back off.
  auto end_stream = [&](const std::string& why, bool refused) {
    {
      std::lock_guard<std::mutex> lock(peer->mu);
      if (peer->fd >= 0) ::close(peer->fd);
      peer->fd = -1;
      peer->broken = false;
      peer->out.clear();
      peer->out_pos = 0;
    }
    replies = FrameDecoder(1 << 20);
    if (why != last_error || std::chrono::steady_clock::now() - connected_at > std::chrono::seconds(5)) {
      last_error = why;
      if (refused) {
        CAIRN_LOG(kError) << "peer " << std::hex << peer->id << std::dec << " at " << peer->target
                          << " refused this member: " << why;
      } else {
        CAIRN_LOG(kWarn) << "peer " << std::hex << peer->id << std::dec << " at " << peer->target
                         << ": stream ended: " << why;
      }
    }
    if (stats_.send_failed) stats_.send_failed(peer->id);
    Unreachable(peer->id);
    pause(backoff_ms);
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 1000);
  };
  while (true) {
    int fd;
    bool broken, work, pending;
    {
      std::lock_guard<std::mutex> lock(peer->mu);
      if (peer->stopping) break;
      fd = peer->fd;
      broken = peer->broken;
      work = HasWorkLocked(*peer);
      pending = peer->out_pos < peer->out.size();
    }
    if (fd >= 0 && broken) {
      end_stream("write failed", false);
      continue;
    }
    if (fd < 0) {
      if (!work) {
        pollfd p{peer->wake_fd, POLLIN, 0};
        if (::poll(&p, 1, 1000) > 0) Drain(peer->wake_fd);
        continue;
      }
      std::string error;
      const int s = Dial(peer->target, peer->wake_fd, is_stopping, &error);
      if (s < 0) {
        if (is_stopping()) break;
        end_stream(error, false);
        continue;
      }
      std::lock_guard<std::mutex> lock(peer->mu);
      if (peer->stopping) {
        ::close(s);
        break;
      }
      peer->fd = s;
      peer->out.assign(http::kPeerStreamMagic);
      peer->out_pos = 0;
      FlushLocked(peer);
      connected_at = std::chrono::steady_clock::now();
      backoff_ms = 100;
      continue;
    }
    pollfd p[2] = {{peer->wake_fd, POLLIN, 0}, {fd, static_cast<short>(POLLIN | (pending ? POLLOUT : 0)), 0}};
    if (::poll(p, 2, 1000) < 0 && errno != EINTR) {
      end_stream("poll: " + ErrnoText(errno), false);
      continue;
    }
    if (p[0].revents & POLLIN) Drain(peer->wake_fd);
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
      if (n == 0) {
        end_stream("connection closed by the peer", false);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        end_stream("read: " + ErrnoText(errno), false);
        continue;
      }
      if (n > 0) {
        // The only thing a receiver writes back: why it refuses this member.
        replies.Feed(std::string_view(buffer, static_cast<size_t>(n)));
        FrameKind kind;
        std::string_view payload;
        std::string error;
        const auto r = replies.Next(&kind, &payload, &error);
        cairnpb::StreamRefusal refusal;
        if (r == FrameDecoder::Result::kFrame && kind == FrameKind::kRefusal &&
            refusal.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
          const auto code = static_cast<Code>(refusal.code());
          if (code == Code::kNotFound && stats_.removed) stats_.removed();
          end_stream(refusal.message(), code == Code::kFailedPrecondition || code == Code::kNotFound);
          continue;
        }
        if (r != FrameDecoder::Result::kNeedMore) {
          end_stream("unexpected bytes from the peer", false);
          continue;
        }
      }
    }
    std::lock_guard<std::mutex> lock(peer->mu);
    if (peer->fd >= 0 && !peer->broken) FlushLocked(peer);
  }
  std::lock_guard<std::mutex> lock(peer->mu);
  if (peer->fd >= 0) ::close(peer->fd);
  peer->fd = -1;
}

void PeerTransport::Run(Peer* peer) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxSendMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(peer->target, CredentialsOf(*peer), args);
  auto stub = cairnpb::Peer::NewStub(channel);
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientWriter<cairnpb::PeerBatch>> writer;
  cairnpb::PeerStreamEnd end;
  int64_t backoff_ms = 100;
  std::string last_error;
  auto close_stream = [&]() {
    if (!writer) return;
    grpc::Status st = writer->Finish();
    {
      std::lock_guard<std::mutex> lock(peer->mu);
      peer->active = nullptr;
    }
    writer.reset();
    ctx.reset();
    if (!st.ok() && st.error_message() != last_error) {
      last_error = st.error_message();
      const bool refused = st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                           st.error_code() == grpc::StatusCode::NOT_FOUND;
      if (st.error_code() == grpc::StatusCode::NOT_FOUND && stats_.removed) stats_.removed();
      if (refused) {
        CAIRN_LOG(kError) << "peer " << std::hex << peer->id << std::dec << " at " << peer->target
                          << " refused this member: " << st.error_message();
      } else {
        CAIRN_LOG(kWarn) << "peer " << std::hex << peer->id << std::dec << " at " << peer->target
                         << ": stream ended: " << st.error_message();
      }
    }
  };
  while (true) {
    cairnpb::PeerBatch batch;
    if (!TakeBatch(peer, &batch)) break;
    if (batch.messages_size() == 0 && batch.proposals_size() == 0 && batch.lease_renewals_size() == 0 &&
        batch.refusals_size() == 0) {
      continue;
    }
    batch.set_cluster_id(cluster_id_.load());
    batch.set_from(member_id_.load());
    batch.set_to(peer->id);
    if (!writer) {
      ctx = std::make_unique<grpc::ClientContext>();
      {
        std::lock_guard<std::mutex> lock(peer->mu);
        if (peer->stopping) break;
        peer->active = ctx.get();
      }
      writer = stub->Stream(ctx.get(), &end);
    }
    // Trace points: a write that carries an append or its answer.
    const char* traced_before = nullptr;
    const char* traced_after = nullptr;
    uint64_t traced_index = 0;
    if (trace::Recorder::Get().enabled()) {
      for (const auto& pm : batch.messages()) {
        if (pm.type() == static_cast<uint32_t>(raft::MessageType::kAppend) && pm.entries_size() > 0) {
          traced_before = "write_app";
          traced_after = "wrote_app";
          traced_index = pm.entries(pm.entries_size() - 1).index();
        } else if (pm.type() == static_cast<uint32_t>(raft::MessageType::kAppendResponse)) {
          traced_before = "write_resp";
          traced_after = "wrote_resp";
          traced_index = pm.index();
        }
      }
    }
    if (traced_before) trace::Point(traced_before, traced_index);
    const bool wrote = writer->Write(batch);
    if (traced_after) trace::Point(traced_after, traced_index);
    if (wrote) {
      if (stats_.sent) stats_.sent(peer->id, batch.ByteSizeLong());
      backoff_ms = 100;
      last_error.clear();
      continue;
    }
    if (stats_.send_failed) stats_.send_failed(peer->id);
    // The stream broke: what it carried is lost (Raft retransmits).
    close_stream();
    Unreachable(peer->id);
    std::unique_lock<std::mutex> lock(peer->mu);
    peer->cv.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return peer->stopping; });
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 1000);
  }
  if (writer) {
    writer->WritesDone();
    close_stream();
  }
}

int64_t PeerTransport::NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t PeerTransport::ConnectedSinceMs(raft::NodeId id) {
  auto peer = Find(id);
  return peer ? peer->connected_since_ms.load() : 0;
}

void PeerTransport::Probe(Peer* peer) {
  auto stub = cairnpb::Peer::NewStub(grpc::CreateChannel(peer->target, CredentialsOf(*peer)));
  // The first probe soon after start (etcd logs an unreachable peer early).
  int64_t wait_ms = 1000;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(peer->mu);
      if (peer->probe_cv.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return peer->stopping; })) return;
    }
    wait_ms = kProbeIntervalMs;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    cairnpb::ProbeRequest req;
    cairnpb::ProbeResponse resp;
    const auto t0 = std::chrono::steady_clock::now();
    // (A stop waits out at most the 2 s deadline of a probe in flight.)
    grpc::Status st = stub->Probe(&ctx, req, &resp);
    if (!st.ok()) {
      peer->connected_since_ms = 0;
      continue;
    }
    int64_t expected = 0;
    peer->connected_since_ms.compare_exchange_strong(expected, NowMs());
    if (stats_.round_trip) {
      stats_.round_trip(peer->id, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
}

}  // namespace cairn::peer
