// The process metrics registry: etcd's metrics under etcd's exact names.
//
// Dashboards and alert rules written for etcd (etcd3_alert.rules, the seeds'
// Prometheus alerts) must work unchanged against cairn, so every family here
// copies etcd 3.5's name, help string, label names and histogram buckets
// (etcdserver/metrics.go, mvcc/metrics.go, wal/metrics.go,
// mvcc/backend/metrics.go, lease/metrics.go, v3rpc/metrics.go, rafthttp,
// go-grpc-prometheus and client_golang's process collector). Families that
// etcd 3.4 marked "remove in 3.5" (etcd_debugging_mvcc_{put,delete,range,
// txn}_total, etcd_debugging_mvcc_db_total_size_in_bytes) are left out.
//
// Ownership: one Metrics per server, owned by the server and passed down by
// pointer (or by group, e.g. `MvccMetrics*`); it must outlive every user.
// All handle pointers in the groups are owned by Metrics and never null.
//
// Thread-safety: everything is thread-safe. Handles (prometheus::Counter,
// Gauge, Histogram) are safe to update from any thread; Serialize() and the
// gRPC helpers may run concurrently with updates.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace cairn {

// What /metrics answers with, as Go's promhttp does for text format 0.0.4.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// gRPC status codes 0..16, named as Go's codes.Code.String() names them,
// which is what go-grpc-prometheus puts in the grpc_code label.
inline constexpr int kGrpcCodeCount = 17;
// Returns "OK", "Canceled", ... "Unauthenticated"; "Unknown" for codes
// outside 0..16 (keeps the label set bounded).
std::string_view GrpcCodeName(int code);

// go-grpc-prometheus's grpc_type values.
inline constexpr std::string_view kGrpcUnary = "unary";
inline constexpr std::string_view kGrpcClientStream = "client_stream";
inline constexpr std::string_view kGrpcServerStream = "server_stream";
inline constexpr std::string_view kGrpcBidiStream = "bidi_stream";

// etcd_server_* and friends (etcdserver/metrics.go). Note that
// proposals_committed_total / proposals_applied_total are gauges in etcd
// (set to the raft commit / apply index), not counters.
struct ServerMetrics {
  prometheus::Gauge* has_leader;
  prometheus::Gauge* is_leader;
  prometheus::Gauge* is_learner;
  prometheus::Counter* leader_changes_seen_total;
  prometheus::Counter* learner_promote_successes;
  prometheus::Counter* heartbeat_send_failures_total;
  prometheus::Counter* slow_apply_total;
  prometheus::Gauge* snapshot_apply_in_progress_total;
  prometheus::Gauge* proposals_committed_total;
  prometheus::Gauge* proposals_applied_total;
  prometheus::Gauge* proposals_pending;
  prometheus::Counter* proposals_failed_total;
  prometheus::Counter* slow_read_indexes_total;
  prometheus::Counter* read_indexes_failed_total;
  prometheus::Counter* lease_expired_total;  // etcd_debugging_server_...
  prometheus::Gauge* quota_backend_bytes;
  prometheus::Counter* health_success;
  prometheus::Counter* health_failures;
};

// etcd_mvcc_* and etcd_debugging_mvcc_* (mvcc/metrics.go).
struct MvccMetrics {
  prometheus::Counter* range_total;
  prometheus::Counter* put_total;
  prometheus::Counter* delete_total;
  prometheus::Counter* txn_total;
  prometheus::Gauge* keys_total;
  prometheus::Gauge* watch_stream_total;
  prometheus::Gauge* watcher_total;
  prometheus::Gauge* slow_watcher_total;
  prometheus::Counter* events_total;
  prometheus::Gauge* pending_events_total;
  prometheus::Histogram* index_compaction_pause_duration_milliseconds;
  prometheus::Histogram* db_compaction_pause_duration_milliseconds;
  prometheus::Histogram* db_compaction_total_duration_milliseconds;
  prometheus::Counter* db_compaction_keys_total;
  // etcd computes these at scrape time; refresh them from a scrape callback.
  prometheus::Gauge* db_total_size_in_bytes;
  prometheus::Gauge* db_total_size_in_use_in_bytes;
  prometheus::Gauge* db_open_read_transactions;
  prometheus::Gauge* current_revision;
  prometheus::Gauge* compact_revision;
  prometheus::Histogram* hash_duration_seconds;
  prometheus::Histogram* hash_rev_duration_seconds;
  prometheus::Gauge* total_put_size_in_bytes;
};

// etcd_disk_* (wal/metrics.go, mvcc/backend/metrics.go) and etcd_snap_*.
struct DiskMetrics {
  prometheus::Histogram* wal_fsync_duration_seconds;
  prometheus::Gauge* wal_write_bytes_total;  // a gauge in etcd, too
  prometheus::Histogram* backend_commit_duration_seconds;
  prometheus::Histogram* backend_defrag_duration_seconds;
  prometheus::Histogram* backend_snapshot_duration_seconds;
  prometheus::Gauge* defrag_inflight;
  prometheus::Histogram* snap_fsync_duration_seconds;
  prometheus::Histogram* snap_db_save_total_duration_seconds;
  prometheus::Histogram* snap_db_fsync_duration_seconds;
};

// etcd_debugging_lease_* (lease/metrics.go).
struct LeaseMetrics {
  prometheus::Counter* granted_total;
  prometheus::Counter* revoked_total;
  prometheus::Counter* renewed_total;
  prometheus::Histogram* ttl_total;
};

// etcd_debugging_auth_* (auth/metrics.go).
struct AuthMetrics {
  prometheus::Gauge* revision;
  // cairn's own: logins refused for a wrong password or unknown user, and
  // logins refused unchecked while that user name is throttled.
  prometheus::Counter* failed_logins_total;
  prometheus::Counter* throttled_logins_total;
};

// etcd_network_* (v3rpc/metrics.go, rafthttp/metrics.go). Per-peer families
// are labelled by the peer's hex ID ("To" / "From"); the peer layer calls
// Add({{"To", id}}) once per peer and keeps the returned reference.
struct NetworkMetrics {
  prometheus::Counter* client_grpc_received_bytes_total;
  prometheus::Counter* client_grpc_sent_bytes_total;
  prometheus::Family<prometheus::Counter>* peer_sent_bytes_total;           // To
  prometheus::Family<prometheus::Counter>* peer_received_bytes_total;       // From
  prometheus::Family<prometheus::Counter>* peer_sent_failures_total;        // To
  prometheus::Family<prometheus::Counter>* peer_received_failures_total;    // From
  prometheus::Family<prometheus::Histogram>* peer_round_trip_time_seconds;  // To
  prometheus::Family<prometheus::Gauge>* active_peers;                      // Local, Remote
  prometheus::Family<prometheus::Counter>* disconnected_peers_total;        // Local, Remote
};

// cairn_listener_* (cairn only; etcd has no such metrics): the client port
// listener's defences. The series exist at zero from the start.
struct ListenerMetrics {
  // cairn_listener_connections_rejected_total{reason}: connections closed for
  // a limit or a timeout (http::RejectReasonName gives the label values).
  prometheus::Counter* rejected_per_source_limit;
  prometheus::Counter* rejected_total_limit;
  prometheus::Counter* rejected_first_bytes_timeout;
  prometheus::Counter* rejected_read_timeout;
  // cairn_listener_connections_unidentified: accepted, protocol not yet known.
  prometheus::Gauge* connections_unidentified;
};

// The handles of one gRPC method (go-grpc-prometheus's series for one
// grpc_type/grpc_service/grpc_method). Owned by Metrics; stable for its life.
struct GrpcMethodMetrics {
  prometheus::Counter* started;
  prometheus::Counter* msg_received;
  prometheus::Counter* msg_sent;
  std::array<prometheus::Counter*, kGrpcCodeCount> handled;  // by code
  prometheus::Histogram* handling_seconds;                   // null unless Options::extensive
};

class Metrics {
 public:
  struct Options {
    // The etcd_server_version label. Default: "3.5.0" (the etcd API level
    // cairn speaks; clients and dashboards key on it).
    std::string server_version = "3.5.0";
    // etcd's --metrics=extensive: also grpc_server_handling_seconds.
    // Default: false (etcd's "basic").
    bool extensive = false;
    // Bound on distinct gRPC (type, service, method) label sets; calls past it
    // are counted under service and method "unknown". Default: 1024.
    size_t max_grpc_methods = 1024;
  };

  // Buckets as Go's prometheus.ExponentialBuckets(start, factor, count).
  static prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor,
                                                                    int count);

  Metrics();
  explicit Metrics(Options options);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  ServerMetrics& server() { return server_; }
  MvccMetrics& mvcc() { return mvcc_; }
  DiskMetrics& disk() { return disk_; }
  LeaseMetrics& lease() { return lease_; }
  AuthMetrics& auth() { return auth_; }
  NetworkMetrics& network() { return network_; }
  ListenerMetrics& listener() { return listener_; }

  // etcd_server_id{server_id="<hex>"} 1, the ID formatted as etcd's
  // types.ID.String() (lowercase hex, no padding). Replaces any earlier ID.
  void SetServerId(uint64_t id);
  // etcd_cluster_version{cluster_version="3.5"} 1. Replaces any earlier one.
  void SetClusterVersion(std::string_view version);

  // gRPC metrics, as go-grpc-prometheus's interceptors record them:
  //   unary:  Started, MsgReceived, Handled(code), MsgSent only if code is OK;
  //   stream: Started, MsgReceived/MsgSent per message, Handled at the end.
  // `type` is one of kGrpcUnary..kGrpcBidiStream. Lookups are cached, so the
  // string forms cost one hash lookup; hot paths can keep the handle from
  // GrpcMethod() instead.
  //
  // GrpcMethod() creates all series of the method at zero (all 17 codes), as
  // grpc_prometheus.Register(server) does for every registered method; call
  // it for each method at startup so zero-valued series exist before traffic.
  GrpcMethodMetrics& GrpcMethod(std::string_view service, std::string_view method,
                                std::string_view type);
  void GrpcStarted(std::string_view service, std::string_view method, std::string_view type);
  void GrpcHandled(std::string_view service, std::string_view method, std::string_view type,
                   std::string_view code);
  void GrpcMsgReceived(std::string_view service, std::string_view method, std::string_view type);
  void GrpcMsgSent(std::string_view service, std::string_view method, std::string_view type);
  // Handles for code given as a number (grpc::StatusCode); see GrpcCodeName.
  static prometheus::Counter& Handled(GrpcMethodMetrics& method, int code);

  // A callback run at the start of each Serialize(), to refresh gauges that
  // etcd computes at scrape time (db size, revisions). Callbacks run on the
  // scraping thread, one scrape at a time, in registration order.
  // REQUIRES: the callback does not call Serialize() nor Add/RemoveScrapeCallback().
  using ScrapeCallbackId = uint64_t;
  ScrapeCallbackId AddScrapeCallback(std::function<void()> callback);
  // After this returns the callback is not running and will not run again, so
  // the caller may destroy what it captured.
  void RemoveScrapeCallback(ScrapeCallbackId id);

  // All families plus process_* and os_fd_* (read from /proc now), in
  // Prometheus text format 0.0.4, sorted by family name like Go's registry.
  std::string Serialize();

  // For components that need a family not listed here. Names must not clash.
  prometheus::Registry& registry() { return *registry_; }

 private:
  void RegisterServer();
  void RegisterMvcc();
  void RegisterDisk();
  void RegisterLease();
  void RegisterNetwork();
  void RegisterGrpc();
  void RegisterListener();
  std::unique_ptr<GrpcMethodMetrics> NewGrpcMethod(const std::string& service,
                                                   const std::string& method,
                                                   const std::string& type);

  const Options options_;
  const std::shared_ptr<prometheus::Registry> registry_;
  const double process_start_time_seconds_;

  ServerMetrics server_{};
  MvccMetrics mvcc_{};
  DiskMetrics disk_{};
  LeaseMetrics lease_{};
  AuthMetrics auth_{};
  NetworkMetrics network_{};
  ListenerMetrics listener_{};

  prometheus::Family<prometheus::Gauge>* server_id_family_ = nullptr;
  prometheus::Family<prometheus::Gauge>* cluster_version_family_ = nullptr;
  prometheus::Family<prometheus::Counter>* grpc_started_ = nullptr;
  prometheus::Family<prometheus::Counter>* grpc_handled_ = nullptr;
  prometheus::Family<prometheus::Counter>* grpc_msg_received_ = nullptr;
  prometheus::Family<prometheus::Counter>* grpc_msg_sent_ = nullptr;
  prometheus::Family<prometheus::Histogram>* grpc_handling_seconds_ = nullptr;

  std::mutex labels_mu_;                          // serializes SetServerId / SetClusterVersion
  prometheus::Gauge* server_id_ = nullptr;        // GUARDED_BY(labels_mu_)
  prometheus::Gauge* cluster_version_ = nullptr;  // GUARDED_BY(labels_mu_)

  // Key: type + '\0' + service + '\0' + method.
  std::shared_mutex grpc_mu_;
  std::unordered_map<std::string, std::unique_ptr<GrpcMethodMetrics>>
      grpc_methods_;  // GUARDED_BY(grpc_mu_)

  // Held for a whole scrape so RemoveScrapeCallback can wait out a running one.
  std::mutex scrape_mu_;
  ScrapeCallbackId next_callback_id_ = 1;                        // GUARDED_BY(scrape_mu_)
  std::map<ScrapeCallbackId, std::function<void()>> callbacks_;  // GUARDED_BY(scrape_mu_)
};

}  // namespace cairn
