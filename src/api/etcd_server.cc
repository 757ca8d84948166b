#include "api/etcd_server.h"

#include <grpcpp/server_posix.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <future>
#include <thread>

#include "api/auth_service.h"
#include "api/election_service.h"
#include "api/health_service.h"
#include "api/http/client_listener.h"
#include "api/async_unary.h"
#include "api/kv_service.h"
#include "api/lease_service.h"
#include "api/lock_service.h"
#include "api/maintenance_service.h"
#include "api/metrics_interceptor.h"
#include "api/peer_credentials.h"
#include "api/unknown_method_service.h"
#include "api/watch_service.h"
#include "common/logging.h"
#include "peer/peer_service.h"
#include "peer/peer_stream.h"
#include "peer/peer_transport.h"
#include "watch/watch_hub.h"

namespace cairn::api {

namespace {
constexpr int64_t kDefaultQuotaBytes = 2LL << 30;
constexpr int kGrpcOverheadBytes = 512 * 1024;

// A member id as etcd's peer metrics label it (types.ID.String(): hex
// without leading zeros).
std::string HexId(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(id));
  return buf;
}

// The listener's closures and its unidentified connections, summed over all
// listeners, as cairn_listener_* metrics.
void ExportListenerMetrics(Metrics* metrics, http::ClientListener::Options* options) {
  ListenerMetrics* m = &metrics->listener();
  options->on_rejected = [m](http::RejectReason reason) {
    switch (reason) {
      case http::RejectReason::kPerSourceLimit: m->rejected_per_source_limit->Increment(); break;
      case http::RejectReason::kTotalLimit: m->rejected_total_limit->Increment(); break;
      case http::RejectReason::kFirstBytesTimeout: m->rejected_first_bytes_timeout->Increment(); break;
      case http::RejectReason::kReadTimeout: m->rejected_read_timeout->Increment(); break;
    }
  };
  options->on_unidentified_change = [m](int delta) { m->connections_unidentified->Increment(delta); };
}
}  // namespace

EtcdServer::EtcdServer(ServerConfig config) : config_(std::move(config)) {}

EtcdServer::~EtcdServer() { Stop(); }

Status EtcdServer::PrepareClientTls() {
  http::TlsOptions o;
  const TransportSecurity& sec = config_.client_tls;
  o.cert_file = sec.cert_file;
  o.key_file = sec.key_file;
  o.trusted_ca_file = sec.trusted_ca_file;
  o.client_cert_auth = sec.client_cert_auth;
  o.allowed_hostnames = sec.allowed_hostname;
  o.crl_file = sec.crl_file;
  o.cipher_suites = config_.cipher_suites;
  o.min_version = config_.tls_min_version;
  o.max_version = config_.tls_max_version;
  if (sec.auto_tls) {
    if (!sec.Empty()) {
      CAIRN_LOG(kWarn) << "ignoring client auto TLS since certs given";
    } else {
      std::vector<std::string> hosts;
      for (const auto& url : config_.listen_client_urls) {
        if (auto u = ParseUrl(url); u.ok()) hosts.push_back(u->host);
      }
      auto files = http::EnsureSelfSignedCert(config_.data_dir + "/fixtures/client", hosts,
                                              static_cast<int>(config_.self_signed_cert_validity),
                                              /*client_usage=*/false);
      if (!files.ok()) return Status(files.status().code(), "failed to get client self-signed certs: " +
                                                               files.status().message());
      o.cert_file = files->cert_file;
      o.key_file = files->key_file;
    }
  }
  const bool have_cert = !o.cert_file.empty() || !o.key_file.empty();
  bool any_https = false;
  for (const auto& url : config_.listen_client_urls) {
    auto u = ParseUrl(url);
    if (u->scheme == "https") {
      if (!have_cert) {
        return Status(Code::kInvalidArgument, "TLS key/cert (--cert-file, --key-file) must be provided for client url " +
                                                  url + " with HTTPS scheme");
      }
      any_https = true;
    } else {
      if (have_cert && !sec.auto_tls) {
        CAIRN_LOG(kWarn) << "scheme is http or unix while key and cert files are present; ignoring key and cert "
                            "files (client-url "
                         << url << ")";
      }
      if (sec.client_cert_auth) {
        CAIRN_LOG(kWarn) << "scheme is http or unix while --client-cert-auth is enabled; ignoring client cert auth "
                            "for this URL (client-url "
                         << url << ")";
      }
    }
  }
  for (const auto& url : config_.listen_metrics_urls) {
    if (ParseUrl(url)->scheme != "https") continue;
    if (!have_cert) {
      return Status(Code::kInvalidArgument,
                    "client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url");
    }
    any_https = true;
  }
  if (!any_https) return Status::Ok();
  auto context = http::TlsContext::Create(o);
  if (!context.ok()) return context.status();
  client_tls_ = *context;
  CAIRN_LOG(kInfo) << "starting with client TLS (cert-file " << o.cert_file << ", key-file " << o.key_file
                   << ", trusted-ca-file " << o.trusted_ca_file << ", client-cert-auth "
                   << (o.RequiresClientCertificate() ? "true" : "false") << ")";
  return Status::Ok();
}

Status EtcdServer::Start() {
  Status s = config_.Validate();
  if (!s.ok()) return s;
  if (config_.data_dir.empty()) config_.data_dir = config_.name + ".cairn";
  s = PrepareClientTls();
  if (!s.ok()) return s;
  std::unique_ptr<apply::JwtTokens> jwt;
  if (config_.auth_token != "simple") {
    const size_t comma = config_.auth_token.find(',');
    auto made = apply::JwtTokens::Create(comma == std::string::npos ? "" : config_.auth_token.substr(comma + 1));
    if (!made.ok()) return Status(made.status().code(), "failed to create token provider: " + made.status().message());
    jwt = std::move(*made);
  }

  metrics_ = std::make_unique<Metrics>();
  server::NodeOptions no;
  no.data_dir = config_.data_dir;
  no.name = config_.name;
  no.peer_urls = config_.initial_advertise_peer_urls;
  no.client_urls = config_.advertise_client_urls;
  no.initial_cluster_token = config_.initial_cluster_token;
  no.initial_members = config_.InitialMembers().value();
  no.heartbeat_interval_ms = config_.heartbeat_interval_ms;
  no.election_timeout_ms = config_.election_timeout_ms;
  if (config_.snapshot_count > 0) no.log_retention_entries = static_cast<uint64_t>(config_.snapshot_count);
  if (config_.log_segment_bytes > 0) no.log_segment_bytes = static_cast<uint64_t>(config_.log_segment_bytes);
  if (config_.initial_cluster_state == "existing") {
    no.join_existing = true;
    no.fetch_cluster = [this] { return FetchCluster(); };
  }
  auto peer_credentials = BuildPeerCredentials(config_, config_.data_dir);
  if (!peer_credentials.ok()) return peer_credentials.status();
  peer_credentials_ = *peer_credentials;
  peer::PeerTransportOptions transport_options;
  transport_options.tls_credentials = peer_credentials_.channel;
  transport_ = std::make_unique<peer::PeerTransport>(transport_options);
  node_ = std::make_unique<server::Node>(no);

  ctx_.node = node_.get();
  ctx_.metrics = metrics_.get();
  ctx_.name = config_.name;
  ctx_.client_urls = config_.advertise_client_urls;
  ctx_.peer_urls = config_.initial_advertise_peer_urls;
  ctx_.now_ms = [] { return peer::PeerTransport::NowMs(); };
  ctx_.is_learner = [this] { return is_learner_.load(std::memory_order_relaxed); };
  ctx_.peer_connected_since_ms = [this](uint64_t id) {
    return transport_ ? transport_->ConnectedSinceMs(id) : int64_t{0};
  };
  ctx_.bcrypt_cost = static_cast<int>(config_.bcrypt_cost);
  ctx_.limits.max_txn_ops = static_cast<int>(config_.max_txn_ops);
  ctx_.limits.max_request_bytes = static_cast<size_t>(config_.max_request_bytes);
  ctx_.limits.quota_backend_bytes =
      config_.quota_backend_bytes > 0 ? config_.quota_backend_bytes : kDefaultQuotaBytes;

  auto fill_header = [this](etcdserverpb::ResponseHeader* h) { ctx_.FillHeader(h); };
  server::NodeHooks hooks;
  hooks.on_events = [this](int64_t rev, const std::vector<mvccpb::Event>& events) {
    if (auto* hub = hub_ptr_.load()) hub->Publish(rev, events);
    key_events_.Publish(rev, events);
  };
  // The apply thread answers the writes; it also collects their finished calls.
  hooks.after_apply_batch = [this] {
    if (auto* calls = async_kv_ptr_.load()) calls->Collect();
  };
  hooks.on_log_sync = [this](double sec) { metrics_->disk().wal_fsync_duration_seconds->Observe(sec); };
  hooks.on_apply_commit = [this](double sec, size_t entries) {
    metrics_->disk().backend_commit_duration_seconds->Observe(sec);
    // etcd warns of an apply over 100 ms (warnApplyDuration); here the
    // unit is a batch's commit.
    if (sec > 0.1) metrics_->server().slow_apply_total->Increment();
    metrics_->server().proposals_committed_total->Set(static_cast<double>(node_->commit_index()));
    metrics_->server().proposals_applied_total->Set(static_cast<double>(node_->applied_index()));
  };
  hooks.on_leader_change = [this](uint64_t leader, uint64_t) {
    metrics_->server().has_leader->Set(leader != 0 ? 1 : 0);
    metrics_->server().is_leader->Set(leader != 0 && leader == node_->ids().member_id ? 1 : 0);
    if (leader != 0) metrics_->server().leader_changes_seen_total->Increment();
  };
  hooks.on_member_change = [this](const cairnpb::MemberChange& change) {
    const auto& m = change.member();
    if (m.id() == node_->ids().member_id) {
      if (change.type() == cairnpb::MemberChange::ADD_LEARNER || change.type() == cairnpb::MemberChange::ADD_VOTER) {
        SetLearner(change.type() == cairnpb::MemberChange::ADD_LEARNER);
      }
      if (change.type() == cairnpb::MemberChange::REMOVE) {
        // etcd stops a member that applies its own removal (and exits 0).
        Removed();
      }
      return;
    }
    if (change.type() == cairnpb::MemberChange::REMOVE) {
      transport_->RemovePeer(m.id());
    } else {
      std::vector<std::string> urls(m.peer_urls().begin(), m.peer_urls().end());
      if (!urls.empty()) transport_->SetPeer(m.id(), urls);
    }
  };
  hooks.on_snapshot_installed = [this](int64_t revision) {
    if (auto* hub = hub_ptr_.load()) hub->Restored(revision);
    ConnectPeers(node_->applier()->Members());
  };
  s = node_->Start(hooks, transport_.get());
  if (!s.ok()) return s;
  node_->applier()->auth()->set_token_ttl(std::chrono::seconds(config_.auth_token_ttl));
  if (jwt) node_->applier()->auth()->set_jwt(std::move(jwt));
  if (config_.client_tls.client_cert_auth) {
    // etcd's AuthInfoFromTLS: the verified client certificate's CN is the
    // user when no token came. gRPC names a connection we handed it by fd.
    ctx_.tls_common_name = [this](const std::string& peer) -> std::string {
      if (!peer.starts_with("fd:")) return "";
      const int fd = std::atoi(peer.c_str() + 3);
      std::lock_guard<std::mutex> lock(listeners_mu_);
      for (const auto& l : listeners_) {
        std::string cn = l->PeerCommonName(fd);
        if (!cn.empty()) return cn;
      }
      return "";
    };
  }
  transport_->SetIdentity(node_->ids().cluster_id, node_->ids().member_id);
  transport_->SetUnreachableHandler([this](uint64_t id) { node_->raft()->ReportUnreachable(id); });
  peer::PeerTransport::Stats stats;
  stats.sent = [this](uint64_t to, size_t bytes) {
    metrics_->network().peer_sent_bytes_total->Add({{"To", HexId(to)}}).Increment(static_cast<double>(bytes));
  };
  stats.send_failed = [this](uint64_t to) {
    metrics_->network().peer_sent_failures_total->Add({{"To", HexId(to)}}).Increment();
  };
  stats.removed = [this] { Removed(); };
  stats.heartbeat_dropped = [this] { metrics_->server().heartbeat_send_failures_total->Increment(); };
  stats.round_trip = [this](uint64_t to, double seconds) {
    // etcd's buckets: 0.0001 s doubling, 16 of them.
    metrics_->network()
        .peer_round_trip_time_seconds->Add({{"To", HexId(to)}}, Metrics::ExponentialBuckets(0.0001, 2, 16))
        .Observe(seconds);
  };
  transport_->SetStats(std::move(stats));
  transport_->SetSnapshotHandlers(
      [this](uint64_t index) -> std::unique_ptr<storage::SnapshotReader> {
        auto image = node_->SnapshotImage(index);
        if (!image) return nullptr;
        return std::make_unique<storage::SnapshotReader>(node_->engine(), std::move(image));
      },
      [this](uint64_t id, bool delivered) { node_->raft()->ReportSnapshot(id, delivered); });
  // (A member that just joined knows the others from the peer it asked
  // until its own table is replicated.)
  ConnectPeers(node_->remote_members());
  ConnectPeers(node_->applier()->Members());
  // A learner knows it from the table (or, joining, from the peer's).
  for (const auto& table : {node_->remote_members(), node_->applier()->Members()}) {
    for (const auto& m : table) {
      if (m.id() == node_->ids().member_id) SetLearner(m.is_learner());
    }
  }
  s = StartPeerServer();
  if (!s.ok()) return s;
  // Serve clients only once this member's attributes are applied: then it
  // has applied everything committed before it started.
  s = node_->Publish();
  if (!s.ok()) return s;
  // Built after the node so it sees the recovered store; Publish is a no-op
  // until then, which is fine: nobody can watch before the services start.
  hub_ = std::make_unique<watch::WatchHub>(node_->kv(), watch::WatchHubOptions{}, fill_header);
  hub_ptr_ = hub_.get();

  metrics_->SetServerId(node_->ids().member_id);
  metrics_->server().quota_backend_bytes->Set(static_cast<double>(ctx_.limits.quota_backend_bytes));
  metrics_->AddScrapeCallback([this] {
    metrics_->mvcc().db_total_size_in_bytes->Set(static_cast<double>(node_->engine()->TotalSizeBytes()));
    metrics_->mvcc().db_total_size_in_use_in_bytes->Set(
        static_cast<double>(node_->engine()->LiveDataSizeBytes()));
    metrics_->mvcc().current_revision->Set(static_cast<double>(node_->kv()->CurrentRevision()));
    metrics_->mvcc().compact_revision->Set(static_cast<double>(node_->kv()->CompactRevision()));
    metrics_->server().proposals_pending->Set(static_cast<double>(node_->pending_proposals()));
    if (auto* hub = hub_ptr_.load()) {
      metrics_->mvcc().watch_stream_total->Set(static_cast<double>(hub->StreamCount()));
      metrics_->mvcc().watcher_total->Set(static_cast<double>(hub->WatcherCount()));
      metrics_->mvcc().slow_watcher_total->Set(static_cast<double>(hub->SlowWatcherCount()));
    }
    // Counters the node keeps as totals: add what is new since the last scrape.
    auto catch_up = [](prometheus::Counter* c, uint64_t total) {
      if (static_cast<double>(total) > c->Value()) c->Increment(static_cast<double>(total) - c->Value());
    };
    catch_up(metrics_->server().proposals_failed_total, node_->proposals_failed());
    catch_up(metrics_->server().slow_read_indexes_total, node_->raft()->read_index_timeouts());
    catch_up(metrics_->server().read_indexes_failed_total, node_->raft()->read_index_failures());
    metrics_->auth().revision->Set(static_cast<double>(node_->applier()->auth()->revision()));
  });

  // Watch catch-up and progress notifications run on node-owned threads.
  node_->AddPeriodic("watch-sync", 10, [this] {
    for (int i = 0; i < 100 && hub_->SyncUnsynced(1000) > 0; i++) {
    }
  });
  node_->AddPeriodic("watch-progress", 10 * 60 * 1000, [this] { hub_->NotifyProgress(); });
  StartAutoCompaction();

  auto kv_service = std::make_unique<KvService>(&ctx_, OneOfSeveral());
  KvService* kv = kv_service.get();
  services_.push_back(std::move(kv_service));
  auto watch_service = std::make_unique<WatchService>(
      hub_.get(), std::chrono::milliseconds(config_.WatchBatchIntervalMs()));
  watch_service_ = watch_service.get();
  watch_service->SetLearnerCheck([this] { return ctx_.IsLearner(); });
  watch_service->SetAuthCheck([this](const grpc::ServerContextBase& context,
                                     const etcdserverpb::WatchCreateRequest& r) -> std::string {
    auto who = ctx_.AuthInfoOf(context);
    cairn::Status s = who.ok() ? ctx_.auth()->IsRangePermitted(*who, r.key().empty() ? std::string(1, '\0') : r.key(),
                                                               r.range_end())
                               : who.status();
    if (s.ok()) return "";
    // etcd sends the gRPC error's text: "rpc error: code = ... desc = ...".
    static const char* kCodes[] = {"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
                                   "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
                                   "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
                                   "Unauthenticated"};
    const int code = static_cast<int>(s.code());
    return std::string("rpc error: code = ") + (code >= 0 && code <= 16 ? kCodes[code] : "Unknown") +
           " desc = " + s.message();
  });
  services_.push_back(std::move(watch_service));
  services_.push_back(std::make_unique<LeaseService>(&ctx_));
  services_.push_back(std::make_unique<MaintenanceService>(&ctx_));
  services_.push_back(std::make_unique<ClusterService>(&ctx_));
  services_.push_back(std::make_unique<AuthService>(&ctx_));
  local_client_ = std::make_unique<LocalClient>(&ctx_, &key_events_);
  services_.push_back(std::make_unique<LockService>(local_client_.get()));
  services_.push_back(std::make_unique<ElectionService>(local_client_.get()));
  auto health = std::make_unique<HealthService>();
  health_service_ = health.get();
  services_.push_back(std::move(health));

  grpc::ServerBuilder builder;
  for (auto& svc : services_) builder.RegisterService(svc.get());
  unknown_methods_ = std::make_unique<UnknownMethodService>(std::vector<std::string>{
      "etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease", "etcdserverpb.Maintenance",
      "etcdserverpb.Cluster", "etcdserverpb.Auth", "grpc.health.v1.Health",
      "v3lockpb.Lock", "v3electionpb.Election"});
  builder.RegisterCallbackGenericService(unknown_methods_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_request_bytes) + kGrpcOverheadBytes);
  builder.SetMaxSendMessageSize(INT32_MAX);
  // Go clients (etcdctl, clientv3) ping idle connections every 10 s or more;
  // gRPC C++ would answer such pings with GOAWAY "too_many_pings" and break
  // long idle watches. Accept them as etcd's server does (min time 5 s).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<MetricsInterceptorFactory>(metrics_.get(), &calls_in_flight_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // (a server completion queue only with async methods: whoever waits on
  // one becomes one of gRPC's pollers)
  auto kv_methods = kv->AsyncMethods();
  std::unique_ptr<grpc::ServerCompletionQueue> kv_arrivals;
  if (!kv_methods.empty()) kv_arrivals = builder.AddCompletionQueue();
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_) return Status(Code::kInternal, "cannot start the gRPC server");
  if (kv_arrivals) {
    async_kv_ = std::make_unique<AsyncUnary>(std::move(kv_methods), std::move(kv_arrivals));
    async_kv_->Start();
    async_kv_ptr_ = async_kv_.get();
  }
  {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(INT32_MAX);
    gateway_ = std::make_unique<JsonGateway>(grpc_server_->InProcessChannel(args));
  }

  for (const auto& url : config_.listen_client_urls) {
    auto u = ParseUrl(url);
    http::ClientListener::Options lo;
    lo.host = u->host;
    lo.port = u->port;
    // A gateway body carries the request in JSON, bytes in base64 (4/3):
    // room for the largest request gRPC would take, which then answers
    // "request is too large" as etcd's gateway does.
    lo.max_body_bytes = 2 * (static_cast<size_t>(config_.max_request_bytes) + kGrpcOverheadBytes);
    // etcd's client URL with its default --cors '*': CORS headers on every
    // response, and OPTIONS (a browser's preflight) answered on every path.
    lo.default_headers = {{"Access-Control-Allow-Headers", "accept, content-type, authorization"},
                          {"Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"},
                          {"Access-Control-Allow-Origin", "*"}};
    lo.answer_options = true;
    grpc::Server* server = grpc_server_.get();
    lo.on_grpc_connection = [server](int fd) { grpc::AddInsecureChannelFromFd(server, fd); };
    if (u->scheme == "https") lo.tls = client_tls_;
    ExportListenerMetrics(metrics_.get(), &lo);
    auto listener = std::make_unique<http::ClientListener>(lo);
    RegisterHttp(listener.get());
    gateway_->Register(listener.get());
    s = listener->Start();
    if (!s.ok()) return Status(s.code(), "cannot listen on " + url + ": " + s.message());
    CAIRN_LOG(kInfo) << "serving client requests on " << url;
    std::lock_guard<std::mutex> lock(listeners_mu_);
    listeners_.push_back(std::move(listener));
  }
  for (const auto& url : config_.listen_metrics_urls) {
    auto u = ParseUrl(url);
    http::ClientListener::Options lo;
    lo.host = u->host;
    lo.port = u->port;
    lo.http_only = true;
    if (u->scheme == "https") lo.tls = client_tls_;
    ExportListenerMetrics(metrics_.get(), &lo);
    auto listener = std::make_unique<http::ClientListener>(lo);
    RegisterHttp(listener.get());
    s = listener->Start();
    if (!s.ok()) return Status(s.code(), "cannot listen on " + url + ": " + s.message());
    CAIRN_LOG(kInfo) << "serving metrics on " << url;
    std::lock_guard<std::mutex> lock(listeners_mu_);
    listeners_.push_back(std::move(listener));
  }
  CAIRN_LOG(kInfo) << "cairn member " << std::hex << node_->ids().member_id << std::dec
                   << " ready; data dir " << config_.data_dir << ", revision "
                   << node_->kv()->CurrentRevision();
  return Status::Ok();
}

void EtcdServer::HandOverLeadership() {
  // etcd's TransferLeadership on a clean stop: a leader with other voters
  // hands over first, so clients see no election pause. Bounded: a stop
  // never waits more than two election timeouts for it.
  if (!node_ || removed_.load() || !node_->raft() || node_->leader_id() != node_->ids().member_id) return;
  uint64_t target = 0;
  for (const auto& m : node_->applier()->Members()) {
    if (m.is_learner() || m.id() == node_->ids().member_id) continue;
    if (transport_ && transport_->ConnectedSinceMs(m.id()) != 0) {
      target = m.id();
      break;
    }
  }
  if (target == 0) return;
  auto done = std::make_shared<std::promise<cairn::Status>>();
  auto result = done->get_future();
  node_->raft()->TransferLeader(target, [done](const cairn::Status& s) { done->set_value(s); });
  const auto wait = std::chrono::milliseconds(2 * config_.election_timeout_ms);
  if (result.wait_for(wait) == std::future_status::ready && result.get().ok()) {
    CAIRN_LOG(kInfo) << "leadership transferred to " << HexId(target) << " before stopping";
  } else {
    CAIRN_LOG(kWarn) << "could not hand leadership to " << HexId(target) << " before stopping";
  }
}

void EtcdServer::SetLearner(bool learner) {
  is_learner_ = learner;
  metrics_->server().is_learner->Set(learner ? 1 : 0);
}

void EtcdServer::ConnectPeers(const std::vector<cairnpb::Member>& members) {
  for (const auto& m : members) {
    std::vector<std::string> urls(m.peer_urls().begin(), m.peer_urls().end());
    if (m.id() != node_->ids().member_id && !urls.empty()) transport_->SetPeer(m.id(), urls);
  }
}

Result<server::NodeOptions::RemoteCluster> EtcdServer::FetchCluster() {
  std::vector<std::pair<std::string, std::string>> targets;  // (target, url)
  const auto initial = config_.InitialMembers().value();
  for (const auto& [name, urls] : initial) {
    for (const auto& u : urls) {
      const auto& mine = config_.initial_advertise_peer_urls;
      if (std::find(mine.begin(), mine.end(), u) != mine.end()) continue;
      const std::string t = peer::TargetOf(u);
      if (!t.empty()) targets.push_back({t, u});
    }
  }
  // etcd tries the peers for a while (they may be starting too).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string last_error = "no peer in --initial-cluster";
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& [t, url] : targets) {
      auto stub = cairnpb::Peer::NewStub(
          grpc::CreateChannel(t, peer::CredentialsFor(url, peer_credentials_.channel)));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      cairnpb::MembersResponse resp;
      grpc::Status st = stub->Members(&ctx, cairnpb::MembersRequest{}, &resp);
      if (st.ok() && resp.cluster_id() != 0) {
        server::NodeOptions::RemoteCluster rc;
        rc.cluster_id = resp.cluster_id();
        rc.members.assign(resp.members().begin(), resp.members().end());
        return rc;
      }
      last_error = t + ": " + st.error_message();
    }
    if (targets.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return Status(Code::kUnavailable,
                "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given "
                "URLs (" + last_error + ")");
}

bool EtcdServer::OneOfSeveral() const {
  if (node_->applier()->Members().size() > 1 || node_->remote_members().size() > 1) return true;
  auto founding = config_.InitialMembers();  // (validated before the node started)
  return founding.ok() && founding->size() > 1;
}

Status EtcdServer::StartPeerServer() {
  peer::PeerServiceHandlers h;
  h.cluster_id = node_->ids().cluster_id;
  h.member_id = node_->ids().member_id;
  h.is_removed = [this](uint64_t id) { return node_->applier()->IsRemoved(id); };
  h.step = [this](raft::Message m) { node_->raft()->Step(std::move(m)); };
  h.propose_forwarded = [this](uint64_t from, uint64_t id, std::string data) {
    server::RaftHost::Proposal p{id, std::move(data), /*forwarded=*/true, from};
    if (!node_->raft()->Propose(std::move(p)) && id != 0) {
      transport_->Refuse(from, id, cairn::errors::TooManyRequests());
    }
  };
  h.refused = [this](uint64_t id, const cairn::Status& s) { node_->FailForwarded(id, s); };
  h.renew_lease = [this](int64_t id) { (void)node_->lessor()->Renew(id); };
  h.snapshot_dir = node_->snapshot_dir();
  h.members = [this] { return node_->applier()->Members(); };
  h.on_received = [this](uint64_t from, size_t bytes) {
    metrics_->network().peer_received_bytes_total->Add({{"From", HexId(from)}}).Increment(static_cast<double>(bytes));
  };
  peer_service_ = std::make_unique<peer::PeerService>(std::move(h));
  constexpr int kMaxPeerMessageBytes = 256 << 20;
  grpc::ServerBuilder builder;
  for (const auto& url : config_.listen_peer_urls) {
    auto u = ParseUrl(url);
    if (u->scheme == "https") builder.AddListeningPort(u->host + ":" + std::to_string(u->port), peer_credentials_.server);
  }
  builder.RegisterService(peer_service_.get());
  builder.SetMaxReceiveMessageSize(kMaxPeerMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  peer_server_ = builder.BuildAndStart();
  if (!peer_server_) {
    std::string urls;
    for (const auto& u : config_.listen_peer_urls) urls += (urls.empty() ? "" : ",") + u;
    return Status(Code::kUnavailable, "cannot listen for peers on " + urls);
  }
  // A plain http:// peer URL: one listener tells raw peer streams from gRPC
  // (snapshots, probes, Members, an https-less older stream) by their first
  // bytes.
  peer::PeerService* service = peer_service_.get();
  peer_stream_receiver_ = std::make_unique<peer::PeerStreamReceiver>(
      [service](cairnpb::PeerBatch* batch, const std::string& remote) { return service->Deliver(batch, remote); },
      kMaxPeerMessageBytes);
  for (const auto& url : config_.listen_peer_urls) {
    auto u = ParseUrl(url);
    if (u->scheme == "https") continue;
    http::ClientListener::Options lo;
    lo.host = u->host;
    lo.port = u->port;
    lo.handler_threads = 1;
    grpc::Server* server = peer_server_.get();
    lo.on_grpc_connection = [server](int fd) { grpc::AddInsecureChannelFromFd(server, fd); };
    peer::PeerStreamReceiver* receiver = peer_stream_receiver_.get();
    lo.on_peer_stream = [receiver](int fd) { receiver->Adopt(fd); };
    auto listener = std::make_unique<http::ClientListener>(lo);
    Status s = listener->Start();
    if (!s.ok()) return Status(Code::kUnavailable, "cannot listen for peers on " + url + ": " + s.message());
    peer_listeners_.push_back(std::move(listener));
  }
  for (const auto& url : config_.listen_peer_urls) CAIRN_LOG(kInfo) << "serving peers on " << url;
  return Status::Ok();
}

http::HttpResponse EtcdServer::Health() {
  http::HttpResponse r;
  r.content_type = "text/plain; charset=utf-8";
  auto alarms = node_->applier()->Alarms();
  if (!alarms.empty()) {
    std::string reason = "ALARM";
    for (const auto& a : alarms) reason += a.alarm() == etcdserverpb::NOSPACE ? " NOSPACE" : " CORRUPT";
    r.status = 503;
    r.body = "{\"health\":\"false\",\"reason\":\"" + reason + "\"}";
    metrics_->server().health_failures->Increment();
    return r;
  }
  r.body = "{\"health\":\"true\",\"reason\":\"\"}";
  metrics_->server().health_success->Increment();
  return r;
}

void EtcdServer::RegisterHttp(http::ClientListener* listener) {
  listener->Handle("GET", "/health", [this](const http::HttpRequest&) { return Health(); });
  listener->Handle("GET", "/metrics", [this](const http::HttpRequest&) {
    http::HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_->Serialize();
    return r;
  });
  listener->Handle("GET", "/version", [this](const http::HttpRequest&) {
    http::HttpResponse r;
    r.content_type = "application/json";
    r.body = "{\"etcdserver\":\"" + ctx_.version + "\",\"etcdcluster\":\"3.5.0\"}";
    return r;
  });
}

void EtcdServer::StartAutoCompaction() {
  if (config_.auto_compaction_mode == "revision") {
    int64_t keep = config_.auto_compaction_retention.empty() ? 0 : std::stoll(config_.auto_compaction_retention);
    if (keep <= 0) return;
    node_->AddPeriodic("auto-compaction", 5 * 60 * 1000, [this, keep] {
      int64_t target = node_->kv()->CurrentRevision() - keep;
      if (target <= node_->kv()->CompactRevision()) return;
      cairnpb::InternalRequest req;
      req.mutable_compaction()->set_revision(target);
      node_->Propose(std::move(req), [](const cairnpb::InternalResponse&) {});
    });
    return;
  }
  int64_t retention_ms = ParseRetentionMs(config_.auto_compaction_retention).value();
  if (retention_ms <= 0) return;
  // etcd's periodic compactor: sample the revision every retention/10 and
  // compact to the revision seen one retention period ago.
  int64_t interval = std::max<int64_t>(retention_ms / 10, 1000);
  auto samples = std::make_shared<std::deque<int64_t>>();
  node_->AddPeriodic("auto-compaction", interval, [this, samples] {
    samples->push_back(node_->kv()->CurrentRevision());
    if (samples->size() <= 10) return;
    int64_t target = samples->front();
    samples->pop_front();
    if (target <= node_->kv()->CompactRevision()) return;
    cairnpb::InternalRequest req;
    req.mutable_compaction()->set_revision(target);
    node_->Propose(std::move(req), [](const cairnpb::InternalResponse&) {});
  });
}

std::vector<uint16_t> EtcdServer::client_ports() const {
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < config_.listen_client_urls.size() && i < listeners_.size(); i++) {
    ports.push_back(listeners_[i]->port());
  }
  return ports;
}

void EtcdServer::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stop_cv_.notify_all();
  HandOverLeadership();
  // Gateway calls that wait (a Lock) would hold the listener's handlers.
  if (gateway_) gateway_->Stop();
  for (auto& l : listeners_) l->Stop();
  // Watch streams never end by themselves: end them so Shutdown need not
  // wait for its deadline.
  if (watch_service_) watch_service_->Stop();
  if (health_service_) health_service_->Shutdown();
  // Calls in flight get up to 2 s to finish, as etcd's graceful stop. Then
  // the node stops, failing what still waits for the cluster (a removed or
  // cut-off member's reads and proposals would wait for their request
  // timeout) with etcd's "server stopped", and the gRPC server shuts down at
  // once, closing idle connections (a Shutdown with a deadline holds them
  // until the deadline). A removed member has nothing left to finish.
  const auto grace_end =
      std::chrono::steady_clock::now() + (removed_.load() ? std::chrono::seconds(0) : std::chrono::seconds(2));
  while (calls_in_flight_.load() > 0 && std::chrono::steady_clock::now() < grace_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& l : peer_listeners_) l->Stop();
  if (peer_stream_receiver_) peer_stream_receiver_->Stop();
  if (peer_server_) peer_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  if (node_) node_->Stop();
  async_kv_ptr_ = nullptr;  // the apply thread is gone
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now());
  if (transport_) transport_->Stop();
  hub_ptr_ = nullptr;
  if (grpc_server_) grpc_server_->Wait();
  if (async_kv_) async_kv_->Stop();
  listeners_.clear();
  gateway_.reset();
  grpc_server_.reset();
  async_kv_.reset();
  peer_listeners_.clear();
  peer_stream_receiver_.reset();
  peer_server_.reset();
  peer_service_.reset();
  services_.clear();
  local_client_.reset();
  unknown_methods_.reset();
  hub_.reset();
  node_.reset();
  transport_.reset();
}

void EtcdServer::Wait() {
  std::unique_lock<std::mutex> lock(stop_mu_);
  stop_cv_.wait(lock, [this] { return stopped_ || stop_requested_; });
}

void EtcdServer::Removed() {
  if (removed_.exchange(true)) return;
  CAIRN_LOG(kError) << "the member has been permanently removed from the cluster";
  RequestStop();
}

void EtcdServer::RequestStop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_requested_ = true;
  }
  stop_cv_.notify_all();
}

}  // namespace cairn::api
