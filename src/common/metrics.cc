#include "common/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace cairn {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::MetricFamily;
using prometheus::Registry;

// Go's codes.Code.String() for 0..16.
constexpr std::array<std::string_view, kGrpcCodeCount> kGrpcCodeNames = {
    "OK",       "Canceled",        "Unknown",          "InvalidArgument",   "DeadlineExceeded",
    "NotFound", "AlreadyExists",   "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",  "OutOfRange",      "Unimplemented",    "Internal",          "Unavailable",
    "DataLoss", "Unauthenticated",
};
constexpr int kGrpcCodeUnknown = 2;

// client_golang's prometheus.DefBuckets (go-grpc-prometheus's handling time).
const Histogram::BucketBoundaries kDefBuckets = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

Counter* NewCounter(Registry& r, const std::string& name, const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

Gauge* NewGauge(Registry& r, const std::string& name, const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

Histogram* NewHistogram(Registry& r, const std::string& name, const std::string& help,
                        const Histogram::BucketBoundaries& buckets) {
  return &prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}

// Reads at most `max_bytes` of a (small, /proc) file. Empty on failure.
std::string ReadSmallFile(const char* path, size_t max_bytes) {
  std::string out;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  out.resize(max_bytes);
  size_t used = 0;
  while (used < max_bytes) {
    ssize_t n = ::read(fd, out.data() + used, max_bytes - used);
    if (n <= 0) break;
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(used);
  return out;
}

// The fields of /proc/self/stat after the ")" that ends the command name
// (which may itself contain spaces); element 0 is field 3 ("state").
std::vector<std::string_view> ProcStatFields(const std::string& stat) {
  std::vector<std::string_view> fields;
  size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return fields;
  std::string_view rest(stat);
  rest.remove_prefix(close_paren + 1);
  while (!rest.empty()) {
    size_t start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    size_t end = rest.find_first_of(" \n");
    fields.push_back(rest.substr(0, end));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  return fields;
}

// Field number `n` (1-based, as in proc(5)) of /proc/self/stat.
double StatField(const std::vector<std::string_view>& fields, size_t n) {
  if (n < 3 || n - 3 >= fields.size()) return 0;
  return std::strtod(std::string(fields[n - 3]).c_str(), nullptr);
}

constexpr size_t kStatUtime = 14;
constexpr size_t kStatStime = 15;
constexpr size_t kStatStarttime = 22;
constexpr size_t kStatVsize = 23;
constexpr size_t kStatRss = 24;

double BootTimeSeconds() {
  std::string stat = ReadSmallFile("/proc/stat", 1 << 16);
  size_t pos = stat.find("\nbtime ");
  if (pos == std::string::npos) return 0;
  return std::strtod(stat.c_str() + pos + 7, nullptr);
}

double ClockTicksPerSecond() {
  long hz = ::sysconf(_SC_CLK_TCK);
  return hz > 0 ? static_cast<double>(hz) : 100.0;
}

// As client_golang's process collector: boot time + starttime / USER_HZ.
double ProcessStartTimeSeconds() {
  std::string stat = ReadSmallFile("/proc/self/stat", 4096);
  std::vector<std::string_view> fields = ProcStatFields(stat);
  return BootTimeSeconds() + StatField(fields, kStatStarttime) / ClockTicksPerSecond();
}

double OpenFdCount() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  int own_fd = ::dirfd(dir);
  std::string own = std::to_string(own_fd);
  double count = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string_view name(entry->d_name);
    if (name == "." || name == ".." || name == own) continue;
    count += 1;
  }
  ::closedir(dir);
  return count;
}

// RLIM_INFINITY shows up as 2^64-1, as Go prints it.
double Limit(int resource) {
  struct rlimit limit {};
  if (::getrlimit(resource, &limit) != 0) return 0;
  return static_cast<double>(limit.rlim_cur);
}

MetricFamily ScalarFamily(std::string name, std::string help, prometheus::MetricType type,
                          double value) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

// client_golang's process collector plus etcd's os_fd_* gauges, read now.
// etcd refreshes os_fd_* every 10 minutes; reading at scrape time is fresher.
void AppendProcessFamilies(double start_time_seconds, std::vector<MetricFamily>* out) {
  using prometheus::MetricType;
  std::string stat = ReadSmallFile("/proc/self/stat", 4096);
  std::vector<std::string_view> fields = ProcStatFields(stat);
  const double hz = ClockTicksPerSecond();
  const double page_size = static_cast<double>(::sysconf(_SC_PAGESIZE));
  const double open_fds = OpenFdCount();
  const double max_fds = Limit(RLIMIT_NOFILE);

  out->push_back(ScalarFamily(
      "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
      MetricType::Counter, (StatField(fields, kStatUtime) + StatField(fields, kStatStime)) / hz));
  out->push_back(ScalarFamily("process_open_fds", "Number of open file descriptors.",
                              MetricType::Gauge, open_fds));
  out->push_back(ScalarFamily("process_max_fds", "Maximum number of open file descriptors.",
                              MetricType::Gauge, max_fds));
  out->push_back(ScalarFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                              MetricType::Gauge, StatField(fields, kStatVsize)));
  out->push_back(ScalarFamily("process_virtual_memory_max_bytes",
                              "Maximum amount of virtual memory available in bytes.",
                              MetricType::Gauge, Limit(RLIMIT_AS)));
  out->push_back(ScalarFamily("process_resident_memory_bytes", "Resident memory size in bytes.",
                              MetricType::Gauge, StatField(fields, kStatRss) * page_size));
  out->push_back(ScalarFamily("process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.",
                              MetricType::Gauge, start_time_seconds));
  out->push_back(ScalarFamily("os_fd_used", "The number of used file descriptors.",
                              MetricType::Gauge, open_fds));
  out->push_back(
      ScalarFamily("os_fd_limit", "The file descriptor limit.", MetricType::Gauge, max_fds));
}

std::string GrpcKey(std::string_view type, std::string_view service, std::string_view method) {
  std::string key;
  key.reserve(type.size() + service.size() + method.size() + 2);
  key.append(type).push_back('\0');
  key.append(service).push_back('\0');
  key.append(method);
  return key;
}

int GrpcCodeFromName(std::string_view name) {
  for (int i = 0; i < kGrpcCodeCount; ++i) {
    if (kGrpcCodeNames[i] == name) return i;
  }
  return kGrpcCodeUnknown;
}

}  // namespace

std::string_view GrpcCodeName(int code) {
  if (code < 0 || code >= kGrpcCodeCount) return kGrpcCodeNames[kGrpcCodeUnknown];
  return kGrpcCodeNames[code];
}

prometheus::Histogram::BucketBoundaries Metrics::ExponentialBuckets(double start, double factor,
                                                                    int count) {
  prometheus::Histogram::BucketBoundaries buckets;
  buckets.reserve(count > 0 ? count : 0);
  for (int i = 0; i < count; ++i) {
    buckets.push_back(start);
    start *= factor;
  }
  return buckets;
}

Metrics::Metrics() : Metrics(Options()) {}

Metrics::Metrics(Options options)
    : options_(std::move(options)),
      registry_(std::make_shared<Registry>()),
      process_start_time_seconds_(ProcessStartTimeSeconds()) {
  RegisterServer();
  RegisterMvcc();
  RegisterDisk();
  RegisterLease();
  RegisterNetwork();
  RegisterGrpc();
  RegisterListener();
}

Metrics::~Metrics() = default;

void Metrics::RegisterServer() {
  Registry& r = *registry_;
  ServerMetrics& s = server_;
  s.has_leader = NewGauge(r, "etcd_server_has_leader",
                          "Whether or not a leader exists. 1 is existence, 0 is not.");
  s.is_leader = NewGauge(r, "etcd_server_is_leader",
                         "Whether or not this member is a leader. 1 if is, 0 otherwise.");
  s.is_learner = NewGauge(r, "etcd_server_is_learner",
                          "Whether or not this member is a learner. 1 if is, 0 otherwise.");
  s.leader_changes_seen_total =
      NewCounter(r, "etcd_server_leader_changes_seen_total", "The number of leader changes seen.");
  s.learner_promote_successes =
      NewCounter(r, "etcd_server_learner_promote_successes",
                 "The total number of successful learner promotions while this member is leader.");
  s.heartbeat_send_failures_total = NewCounter(
      r, "etcd_server_heartbeat_send_failures_total",
      "The total number of leader heartbeat send failures (likely overloaded from slow disk).");
  s.slow_apply_total =
      NewCounter(r, "etcd_server_slow_apply_total",
                 "The total number of slow apply requests (likely overloaded from slow disk).");
  s.snapshot_apply_in_progress_total =
      NewGauge(r, "etcd_server_snapshot_apply_in_progress_total",
               "1 if the server is applying the incoming snapshot. 0 if none.");
  s.proposals_committed_total = NewGauge(r, "etcd_server_proposals_committed_total",
                                         "The total number of consensus proposals committed.");
  s.proposals_applied_total = NewGauge(r, "etcd_server_proposals_applied_total",
                                       "The total number of consensus proposals applied.");
  s.proposals_pending = NewGauge(r, "etcd_server_proposals_pending",
                                 "The current number of pending proposals to commit.");
  s.proposals_failed_total = NewCounter(r, "etcd_server_proposals_failed_total",
                                        "The total number of failed proposals seen.");
  s.slow_read_indexes_total =
      NewCounter(r, "etcd_server_slow_read_indexes_total",
                 "The total number of pending read indexes not in sync with leader's or timed out "
                 "read index requests.");
  s.read_indexes_failed_total = NewCounter(r, "etcd_server_read_indexes_failed_total",
                                           "The total number of failed read indexes seen.");
  s.lease_expired_total = NewCounter(r, "etcd_debugging_server_lease_expired_total",
                                     "The total number of expired leases.");
  s.quota_backend_bytes = NewGauge(r, "etcd_server_quota_backend_bytes",
                                   "Current backend storage quota size in bytes.");
  s.health_success =
      NewCounter(r, "etcd_server_health_success", "The total number of successful health checks");
  s.health_failures =
      NewCounter(r, "etcd_server_health_failures", "The total number of failed health checks");
  auth_.revision =
      NewGauge(r, "etcd_debugging_auth_revision", "The current revision of auth store.");
  auth_.failed_logins_total = NewCounter(r, "cairn_auth_failed_logins_total",
                                         "Logins refused for a wrong password or an unknown user.");
  auth_.throttled_logins_total =
      NewCounter(r, "cairn_auth_logins_throttled_total",
                 "Logins refused without checking the password because their user name failed too often.");

  prometheus::BuildGauge()
      .Name("etcd_server_version")
      .Help("Which version is running. 1 for 'server_version' label with current version.")
      .Register(r)
      .Add({{"server_version", options_.server_version}})
      .Set(1);
  server_id_family_ =
      &prometheus::BuildGauge()
           .Name("etcd_server_id")
           .Help(
               "Server or member ID in hexadecimal format. 1 for 'server_id' label with "
               "current ID.")
           .Register(r);
  cluster_version_family_ =
      &prometheus::BuildGauge()
           .Name("etcd_cluster_version")
           .Help(
               "Which version is running. 1 for 'cluster_version' label with current cluster "
               "version")
           .Register(r);
}

void Metrics::RegisterMvcc() {
  Registry& r = *registry_;
  MvccMetrics& m = mvcc_;
  m.range_total =
      NewCounter(r, "etcd_mvcc_range_total", "Total number of ranges seen by this member.");
  m.put_total = NewCounter(r, "etcd_mvcc_put_total", "Total number of puts seen by this member.");
  m.delete_total =
      NewCounter(r, "etcd_mvcc_delete_total", "Total number of deletes seen by this member.");
  m.txn_total = NewCounter(r, "etcd_mvcc_txn_total", "Total number of txns seen by this member.");
  m.keys_total = NewGauge(r, "etcd_debugging_mvcc_keys_total", "Total number of keys.");
  m.watch_stream_total =
      NewGauge(r, "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.");
  m.watcher_total = NewGauge(r, "etcd_debugging_mvcc_watcher_total", "Total number of watchers.");
  m.slow_watcher_total = NewGauge(r, "etcd_debugging_mvcc_slow_watcher_total",
                                  "Total number of unsynced slow watchers.");
  m.events_total = NewCounter(r, "etcd_debugging_mvcc_events_total",
                              "Total number of events sent by this member.");
  m.pending_events_total = NewGauge(r, "etcd_debugging_mvcc_pending_events_total",
                                    "Total number of pending events to be sent.");
  m.index_compaction_pause_duration_milliseconds = NewHistogram(
      r, "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
      "Bucketed histogram of index compaction pause duration.", ExponentialBuckets(0.5, 2, 14));
  m.db_compaction_pause_duration_milliseconds = NewHistogram(
      r, "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
      "Bucketed histogram of db compaction pause duration.", ExponentialBuckets(1, 2, 13));
  m.db_compaction_total_duration_milliseconds = NewHistogram(
      r, "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
      "Bucketed histogram of db compaction total duration.", ExponentialBuckets(100, 2, 14));
  m.db_compaction_keys_total = NewCounter(r, "etcd_debugging_mvcc_db_compaction_keys_total",
                                          "Total number of db keys compacted.");
  m.db_total_size_in_bytes =
      NewGauge(r, "etcd_mvcc_db_total_size_in_bytes",
               "Total size of the underlying database physically allocated in bytes.");
  m.db_total_size_in_use_in_bytes =
      NewGauge(r, "etcd_mvcc_db_total_size_in_use_in_bytes",
               "Total size of the underlying database logically in use in bytes.");
  m.db_open_read_transactions = NewGauge(r, "etcd_mvcc_db_open_read_transactions",
                                         "The number of currently open read transactions");
  m.current_revision =
      NewGauge(r, "etcd_debugging_mvcc_current_revision", "The current revision of store.");
  m.compact_revision = NewGauge(r, "etcd_debugging_mvcc_compact_revision",
                                "The revision of the last compaction in store.");
  m.hash_duration_seconds = NewHistogram(r, "etcd_mvcc_hash_duration_seconds",
                                         "The latency distribution of storage hash operation.",
                                         ExponentialBuckets(.01, 2, 15));
  m.hash_rev_duration_seconds =
      NewHistogram(r, "etcd_mvcc_hash_rev_duration_seconds",
                   "The latency distribution of storage hash by revision operation.",
                   ExponentialBuckets(.01, 2, 15));
  m.total_put_size_in_bytes = NewGauge(r, "etcd_debugging_mvcc_total_put_size_in_bytes",
                                       "The total size of put kv pairs seen by this member.");
}

void Metrics::RegisterDisk() {
  Registry& r = *registry_;
  DiskMetrics& d = disk_;
  // 1 ms .. 8.192 s: the range in which a healthy disk's fsync lives.
  const auto fsync_buckets = ExponentialBuckets(0.001, 2, 14);
  d.wal_fsync_duration_seconds =
      NewHistogram(r, "etcd_disk_wal_fsync_duration_seconds",
                   "The latency distributions of fsync called by WAL.", fsync_buckets);
  d.wal_write_bytes_total =
      NewGauge(r, "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.");
  d.backend_commit_duration_seconds =
      NewHistogram(r, "etcd_disk_backend_commit_duration_seconds",
                   "The latency distributions of commit called by backend.", fsync_buckets);
  d.backend_defrag_duration_seconds = NewHistogram(
      r, "etcd_disk_backend_defrag_duration_seconds",
      "The latency distribution of backend defragmentation.", ExponentialBuckets(.1, 2, 13));
  d.backend_snapshot_duration_seconds = NewHistogram(
      r, "etcd_disk_backend_snapshot_duration_seconds",
      "The latency distribution of backend snapshots.", ExponentialBuckets(.01, 2, 17));
  d.defrag_inflight =
      NewGauge(r, "etcd_disk_defrag_inflight",
               "Whether or not defrag is active on the member. 1 means active, 0 means not.");
  d.snap_fsync_duration_seconds =
      NewHistogram(r, "etcd_snap_fsync_duration_seconds",
                   "The latency distributions of fsync called by snap.", fsync_buckets);
  d.snap_db_save_total_duration_seconds = NewHistogram(
      r, "etcd_snap_db_save_total_duration_seconds",
      "The total latency distributions of v3 snapshot save", ExponentialBuckets(0.1, 2, 10));
  d.snap_db_fsync_duration_seconds =
      NewHistogram(r, "etcd_snap_db_fsync_duration_seconds",
                   "The latency distributions of fsyncing .snap.db file", fsync_buckets);
}

void Metrics::RegisterLease() {
  Registry& r = *registry_;
  LeaseMetrics& l = lease_;
  l.granted_total =
      NewCounter(r, "etcd_debugging_lease_granted_total", "The total number of granted leases.");
  l.revoked_total =
      NewCounter(r, "etcd_debugging_lease_revoked_total", "The total number of revoked leases.");
  l.renewed_total = NewCounter(r, "etcd_debugging_lease_renewed_total",
                               "The number of renewed leases seen by the leader.");
  // 1 second .. about 3 months.
  l.ttl_total = NewHistogram(r, "etcd_debugging_lease_ttl_total",
                             "Bucketed histogram of lease TTLs.", ExponentialBuckets(1, 2, 24));
}

void Metrics::RegisterListener() {
  Registry& r = *registry_;
  auto& rejected = prometheus::BuildCounter()
                       .Name("cairn_listener_connections_rejected_total")
                       .Help("Client port connections closed by the listener for a limit or a "
                             "timeout, by reason.")
                       .Register(r);
  listener_.rejected_per_source_limit = &rejected.Add({{"reason", "per_source_limit"}});
  listener_.rejected_total_limit = &rejected.Add({{"reason", "total_limit"}});
  listener_.rejected_first_bytes_timeout = &rejected.Add({{"reason", "first_bytes_timeout"}});
  listener_.rejected_read_timeout = &rejected.Add({{"reason", "read_timeout"}});
  listener_.connections_unidentified =
      NewGauge(r, "cairn_listener_connections_unidentified",
               "Client port connections accepted whose protocol (gRPC or HTTP/1.x) is not yet "
               "known.");
}

void Metrics::RegisterNetwork() {
  Registry& r = *registry_;
  NetworkMetrics& n = network_;
  n.client_grpc_received_bytes_total =
      NewCounter(r, "etcd_network_client_grpc_received_bytes_total",
                 "The total number of bytes received from grpc clients.");
  n.client_grpc_sent_bytes_total = NewCounter(r, "etcd_network_client_grpc_sent_bytes_total",
                                              "The total number of bytes sent to grpc clients.");
  auto counters = [&r](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(r);
  };
  n.peer_sent_bytes_total =
      counters("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.");
  n.peer_received_bytes_total = counters("etcd_network_peer_received_bytes_total",
                                         "The total number of bytes received from peers.");
  n.peer_sent_failures_total = counters("etcd_network_peer_sent_failures_total",
                                        "The total number of send failures from peers.");
  n.peer_received_failures_total = counters("etcd_network_peer_received_failures_total",
                                            "The total number of receive failures from peers.");
  n.disconnected_peers_total =
      counters("etcd_network_disconnected_peers_total", "The total number of disconnected peers.");
  n.peer_round_trip_time_seconds = &prometheus::BuildHistogram()
                                        .Name("etcd_network_peer_round_trip_time_seconds")
                                        .Help("Round-Trip-Time histogram between peers")
                                        .Register(r);
  n.active_peers = &prometheus::BuildGauge()
                        .Name("etcd_network_active_peers")
                        .Help("The current number of active peer connections.")
                        .Register(r);
}

void Metrics::RegisterGrpc() {
  Registry& r = *registry_;
  grpc_started_ = &prometheus::BuildCounter()
                       .Name("grpc_server_started_total")
                       .Help("Total number of RPCs started on the server.")
                       .Register(r);
  grpc_handled_ = &prometheus::BuildCounter()
                       .Name("grpc_server_handled_total")
                       .Help(
                           "Total number of RPCs completed on the server, regardless of "
                           "success or failure.")
                       .Register(r);
  grpc_msg_received_ = &prometheus::BuildCounter()
                            .Name("grpc_server_msg_received_total")
                            .Help("Total number of RPC stream messages received on the server.")
                            .Register(r);
  grpc_msg_sent_ = &prometheus::BuildCounter()
                        .Name("grpc_server_msg_sent_total")
                        .Help("Total number of gRPC stream messages sent by the server.")
                        .Register(r);
  if (options_.extensive) {
    grpc_handling_seconds_ = &prometheus::BuildHistogram()
                                  .Name("grpc_server_handling_seconds")
                                  .Help(
                                      "Histogram of response latency (seconds) of gRPC that "
                                      "had been application-level handled by the server.")
                                  .Register(r);
  }
}

void Metrics::SetServerId(uint64_t id) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%" PRIx64, id);
  std::lock_guard<std::mutex> lock(labels_mu_);
  if (server_id_ != nullptr) server_id_family_->Remove(server_id_);
  server_id_ = &server_id_family_->Add({{"server_id", hex}});
  server_id_->Set(1);
}

void Metrics::SetClusterVersion(std::string_view version) {
  std::lock_guard<std::mutex> lock(labels_mu_);
  if (cluster_version_ != nullptr) cluster_version_family_->Remove(cluster_version_);
  cluster_version_ = &cluster_version_family_->Add({{"cluster_version", std::string(version)}});
  cluster_version_->Set(1);
}

std::unique_ptr<GrpcMethodMetrics> Metrics::NewGrpcMethod(const std::string& service,
                                                          const std::string& method,
                                                          const std::string& type) {
  const prometheus::Labels labels = {
      {"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}};
  auto m = std::make_unique<GrpcMethodMetrics>();
  m->started = &grpc_started_->Add(labels);
  m->msg_received = &grpc_msg_received_->Add(labels);
  m->msg_sent = &grpc_msg_sent_->Add(labels);
  for (int code = 0; code < kGrpcCodeCount; ++code) {
    prometheus::Labels with_code = labels;
    with_code["grpc_code"] = std::string(kGrpcCodeNames[code]);
    m->handled[code] = &grpc_handled_->Add(with_code);
  }
  m->handling_seconds = grpc_handling_seconds_ != nullptr
                            ? &grpc_handling_seconds_->Add(labels, kDefBuckets)
                            : nullptr;
  return m;
}

GrpcMethodMetrics& Metrics::GrpcMethod(std::string_view service, std::string_view method,
                                       std::string_view type) {
  std::string key = GrpcKey(type, service, method);
  {
    std::shared_lock<std::shared_mutex> lock(grpc_mu_);
    auto it = grpc_methods_.find(key);
    if (it != grpc_methods_.end()) return *it->second;
  }
  constexpr std::string_view kUnknown = "unknown";
  {
    std::unique_lock<std::shared_mutex> lock(grpc_mu_);
    auto it = grpc_methods_.find(key);
    if (it != grpc_methods_.end()) return *it->second;
    // Past the bound, fold into go-grpc-prometheus's "unknown"/"unknown" so a
    // flood of bogus method names cannot grow the registry without limit.
    const bool is_unknown = service == kUnknown && method == kUnknown;
    if (grpc_methods_.size() < options_.max_grpc_methods || is_unknown) {
      auto m = NewGrpcMethod(std::string(service), std::string(method), std::string(type));
      GrpcMethodMetrics& ref = *m;
      grpc_methods_.emplace(std::move(key), std::move(m));
      return ref;
    }
  }
  return GrpcMethod(kUnknown, kUnknown, type);
}

prometheus::Counter& Metrics::Handled(GrpcMethodMetrics& method, int code) {
  if (code < 0 || code >= kGrpcCodeCount) code = kGrpcCodeUnknown;
  return *method.handled[code];
}

void Metrics::GrpcStarted(std::string_view service, std::string_view method,
                          std::string_view type) {
  GrpcMethod(service, method, type).started->Increment();
}

void Metrics::GrpcHandled(std::string_view service, std::string_view method, std::string_view type,
                          std::string_view code) {
  GrpcMethod(service, method, type).handled[GrpcCodeFromName(code)]->Increment();
}

void Metrics::GrpcMsgReceived(std::string_view service, std::string_view method,
                              std::string_view type) {
  GrpcMethod(service, method, type).msg_received->Increment();
}

void Metrics::GrpcMsgSent(std::string_view service, std::string_view method,
                          std::string_view type) {
  GrpcMethod(service, method, type).msg_sent->Increment();
}

Metrics::ScrapeCallbackId Metrics::AddScrapeCallback(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(scrape_mu_);
  ScrapeCallbackId id = next_callback_id_++;
  callbacks_.emplace(id, std::move(callback));
  return id;
}

void Metrics::RemoveScrapeCallback(ScrapeCallbackId id) {
  std::lock_guard<std::mutex> lock(scrape_mu_);
  callbacks_.erase(id);
}

std::string Metrics::Serialize() {
  std::vector<MetricFamily> families;
  {
    std::lock_guard<std::mutex> lock(scrape_mu_);
    for (auto& [id, callback] : callbacks_) callback();
    families = registry_->Collect();
  }
  AppendProcessFamilies(process_start_time_seconds_, &families);
  // Go's registry sorts families by name and series by labels; doing the same
  // keeps diffs against a real etcd's /metrics readable.
  std::sort(families.begin(), families.end(),
            [](const MetricFamily& a, const MetricFamily& b) { return a.name < b.name; });
  for (MetricFamily& family : families) {
    std::sort(family.metric.begin(), family.metric.end(),
              [](const prometheus::ClientMetric& a, const prometheus::ClientMetric& b) {
                return a.label < b.label;
              });
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace cairn
