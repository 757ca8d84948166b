// PeerTransport: sends Raft messages and forwarded proposals to the other
// members: on the raw peer stream (peer_stream.h) to an http:// peer URL,
// over gRPC (cairnpb.Peer/Stream) to an https:// one.
//
// One bounded outbox and one sender thread per peer. Send() and Forward()
// never block the raft thread: when a peer's outbox is full the message is
// dropped and the peer reported unreachable (Raft retransmits; a dropped
// forwarded proposal times out at its waiter).
//
// Raw stream: the caller of Send() (the raft thread) frames what is queued
// and writes it itself with one non-blocking send() when the connection is
// up and nothing is waiting before it; the sender thread only dials,
// finishes writes the socket could not take at once (at most
// max_batch_bytes framed ahead), and reads the peer's refusal if one comes.
// TCP keepalive (2 s, then 2 probes 1 s apart) and TCP_USER_TIMEOUT (5 s)
// notice a peer host that went away without a reset.
//
// gRPC stream: the sender thread writes a batch of whatever is queued per
// write of one client stream; HTTP/2 keepalive pings (every 2 s, 2 s
// timeout) notice a peer that went silent, so a stuck write does not hold
// the sender for long.
//
// Either way a failed stream is reported unreachable and reopened with a
// backoff (100 ms doubling to 1 s). A prober thread per peer measures the
// round trip of a Peer/Probe call every 4 s (etcd's prober interval) for
// etcd_network_peer_round_trip_time_seconds.
//
// Every batch carries the cluster id and both member ids; the receiver
// refuses a batch of another cluster ("cluster ID mismatch") or from a
// removed member, and the sender logs why its stream ended.
//
// Thread-safety: all methods are thread-safe. The unreachable handler runs
// on sender threads and must not block.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cairnpb/peer.grpc.pb.h"
#include "server/raft_host.h"
#include "storage/snapshot_stream.h"

namespace cairn::peer {

struct PeerTransportOptions {
  // Messages and proposals waiting for one peer; more are dropped.
  size_t max_queued_per_peer = 4096;
  // Bytes of queued message payload for one peer; more are dropped.
  size_t max_queued_bytes_per_peer = 64 << 20;
  // Payload bytes in one write of the stream (at least one message).
  size_t max_batch_bytes = 4 << 20;
  // For peers at https:// URLs (peer TLS); null: gRPC's default TLS.
  std::shared_ptr<grpc::ChannelCredentials> tls_credentials;
};

// The credentials for dialing `url` (a peer URL): TLS for https://.
std::shared_ptr<grpc::ChannelCredentials> CredentialsFor(const std::string& url,
                                                         const std::shared_ptr<grpc::ChannelCredentials>& tls);

class PeerTransport final : public server::Transport {
 public:
  explicit PeerTransport(PeerTransportOptions options);
  ~PeerTransport() override;

  // This member's ids, known once its data dir is open; set before the
  // first SetPeer.
  void SetIdentity(uint64_t cluster_id, uint64_t member_id);
  // Called when a peer cannot be reached (a dropped message, a broken
  // stream). Set before the node starts.
  void SetUnreachableHandler(std::function<void(raft::NodeId)> handler);
  // Snapshot messages: `open` gives the image for a snapshot index (null if
  // it is gone), `report` is told whether the follower got it.
  using SnapshotOpener = std::function<std::unique_ptr<storage::SnapshotReader>(uint64_t index)>;
  void SetSnapshotHandlers(SnapshotOpener open, std::function<void(raft::NodeId, bool)> report);
  // For etcd's peer metrics: bytes written to a peer's stream, a write or
  // stream that failed, a heartbeat that could not be queued. Set before the
  // node starts; called on sender threads (or the raft thread for drops).
  struct Stats {
    std::function<void(raft::NodeId to, size_t bytes)> sent;
    std::function<void(raft::NodeId to)> send_failed;
    std::function<void()> heartbeat_dropped;
    // A probe's round trip (etcd's peer RTT histogram).
    std::function<void(raft::NodeId to, double seconds)> round_trip;
    // A peer answered that this member was removed from the cluster (it
    // then stops, as etcd's does).
    std::function<void()> removed;
  };
  void SetStats(Stats stats);
  // Adds or updates a peer (its peer URLs: the first is used).
  void SetPeer(raft::NodeId id, const std::vector<std::string>& peer_urls);
  void RemovePeer(raft::NodeId id);
  // Since when (steady-clock ms) `id` has answered every probe; 0 if it is
  // not connected or unknown. For etcd's "unhealthy cluster" checks.
  int64_t ConnectedSinceMs(raft::NodeId id);
  static int64_t NowMs();
  // Stops every sender; later sends are dropped.
  void Stop();

  void Send(std::vector<raft::Message> messages) override;
  void Forward(raft::NodeId to, std::vector<std::pair<uint64_t, std::string>> proposals) override;
  void Refuse(raft::NodeId to, uint64_t id, const Status& status) override;
  void ForwardLeaseRenewals(raft::NodeId to, std::vector<int64_t> lease_ids) override;

 private:
  struct Peer {
    ~Peer();
    raft::NodeId id = 0;
    std::string target;  // host:port
    bool tls = false;    // an https:// URL
    bool raw = false;    // the raw peer stream (not TLS)
    std::mutex mu;
    std::condition_variable cv;
    std::deque<raft::Message> messages;   // GUARDED_BY(mu)
    std::deque<std::pair<uint64_t, std::string>> proposals;  // GUARDED_BY(mu): (waiter id, data)
    std::vector<int64_t> renewals;        // GUARDED_BY(mu), bounded like the rest
    std::vector<cairnpb::ProposalRefusal> refusals;  // GUARDED_BY(mu), bounded like the rest
    size_t queued_bytes = 0;              // GUARDED_BY(mu)
    bool stopping = false;                // GUARDED_BY(mu)
    grpc::ClientContext* active = nullptr;  // GUARDED_BY(mu): to cancel a stuck write
    // The raw stream (raw peers only).
    int fd = -1;           // GUARDED_BY(mu): the connection; -1 while there is none
    bool broken = false;   // GUARDED_BY(mu): a write failed; the sender closes fd
    std::string out;       // GUARDED_BY(mu): framed bytes the socket has not taken
    size_t out_pos = 0;    // GUARDED_BY(mu)
    int wake_fd = -1;      // an eventfd: wakes the sender (work, stop)
    std::thread thread;
    // One snapshot at a time (the leader sends the next only after the
    // report of this one).
    std::thread snapshot_thread;               // GUARDED_BY(mu)
    bool snapshot_running = false;             // GUARDED_BY(mu)
    grpc::ClientContext* snapshot_ctx = nullptr;  // GUARDED_BY(mu)
    // Probes the peer's round-trip time every kProbeIntervalMs (its own cv,
    // so a wake-up meant for the sender never goes to the prober).
    std::thread probe_thread;
    std::condition_variable probe_cv;
    // Steady-clock ms of the first of an unbroken run of answered probes; 0
    // while the last probe failed (etcd's transport ActiveSince).
    std::atomic<int64_t> connected_since_ms{0};
  };
  static constexpr int kProbeIntervalMs = 4000;  // etcd's proberInterval
  void Probe(Peer* peer);
  void Run(Peer* peer);
  void RunRaw(Peer* peer);
  // Wakes the peer's sender, or (raw) writes what is queued right away.
  void Kick(Peer* peer);
  bool HasWorkLocked(const Peer& peer) const;
  // Moves what is queued (up to the batch size) into `batch`.
  void TakeBatchLocked(Peer* peer, cairnpb::PeerBatch* batch);
  // Raw: frames what is queued (while less than max_batch_bytes wait
  // unwritten) and writes without blocking.
  void FlushLocked(Peer* peer);
  void WriteLocked(Peer* peer);
  void StartSnapshot(const std::shared_ptr<Peer>& peer, raft::Message message);
  // Streams one snapshot; true if the follower answered OK.
  bool SendSnapshot(Peer* peer, const raft::Message& message);
  // Moves what is queued (up to the batch size) into `batch`; false when
  // the peer is stopping.
  bool TakeBatch(Peer* peer, cairnpb::PeerBatch* batch);
  void Unreachable(raft::NodeId id);
  std::shared_ptr<Peer> Find(raft::NodeId id);
  void StopPeer(const std::shared_ptr<Peer>& peer);

  std::shared_ptr<grpc::ChannelCredentials> CredentialsOf(const Peer& peer) const;

  const PeerTransportOptions options_;
  std::atomic<uint64_t> cluster_id_{0};
  std::atomic<uint64_t> member_id_{0};
  std::mutex handler_mu_;
  std::function<void(raft::NodeId)> unreachable_;  // GUARDED_BY(handler_mu_)
  SnapshotOpener open_snapshot_;                    // GUARDED_BY(handler_mu_)
  Stats stats_;                                     // set before the node starts
  std::function<void(raft::NodeId, bool)> report_snapshot_;  // GUARDED_BY(handler_mu_)
  std::mutex mu_;
  std::map<raft::NodeId, std::shared_ptr<Peer>> peers_;  // GUARDED_BY(mu_)
  bool stopped_ = false;                                  // GUARDED_BY(mu_)
};

// "http://host:port" -> "host:port" (localhost as 127.0.0.1); "" if it is not
// an http(s) URL with a port.
std::string TargetOf(const std::string& url);

}  // namespace cairn::peer
