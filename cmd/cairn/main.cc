// cairn: an etcd v3-compatible configuration store. Flags follow etcd's names
// so an etcd systemd unit or manifest can point at this binary.
#include <CLI/CLI.hpp>
#include <absl/synchronization/mutex.h>
#include <yaml-cpp/yaml.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <set>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "api/etcd_server.h"
#include "common/logging.h"

// jemalloc (linked into this binary, see CMakeLists.txt) reads this at start.
// Freed pages go back to the OS within about a second, on jemalloc's own
// background thread: a burst (a refused 64 MiB request, a big snapshot) does
// not leave its memory with the server, and an idle server gives back what a
// busy period used (measured 2026-12-06: 300,000 puts left 193 MiB resident
// as with glibc's malloc; jemalloc's default 10 s decay left 224 MiB).
// One arena per CPU rather than jemalloc's four per CPU, and a 250 ms decay:
// watch fan-out frees and reallocates one response per watcher and revision,
// and with eight arenas on two cores their pages stayed resident (100,000
// watchers on 1,000 streams, 1 put/s, 2026-12-07: RSS held per watcher 606 B
// with the old setting, 515 B with this one; puts with 64 clients and watch
// CPU per event unchanged within the noise of 3 rounds each).
// MALLOC_CONF in the environment still overrides it.
extern "C" {
// NOLINTNEXTLINE: the name is jemalloc's.
const char* malloc_conf =
    "background_thread:true,percpu_arena:percpu,dirty_decay_ms:250,muzzy_decay_ms:0";
}

namespace {

cairn::api::EtcdServer* g_server = nullptr;

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t p = s.find(',', start);
    if (p == std::string::npos) p = s.size();
    if (p > start) out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
  return out;
}

// etcd's YAML config file uses the flag names as keys.
bool LoadConfigFile(const std::string& path, cairn::api::ServerConfig* c) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    std::cerr << "cairn: cannot read config file " << path << ": " << e.what() << std::endl;
    return false;
  }
  try {
    auto str = [&](const char* key, std::string* out) {
      if (root[key]) *out = root[key].as<std::string>();
    };
    auto urls = [&](const char* key, std::vector<std::string>* out) {
      if (root[key]) *out = SplitCommas(root[key].as<std::string>());
    };
    auto num = [&](const char* key, int64_t* out) {
      if (root[key]) *out = root[key].as<int64_t>();
    };
    str("name", &c->name);
    str("data-dir", &c->data_dir);
    urls("listen-client-urls", &c->listen_client_urls);
    urls("advertise-client-urls", &c->advertise_client_urls);
    urls("listen-metrics-urls", &c->listen_metrics_urls);
    urls("initial-advertise-peer-urls", &c->initial_advertise_peer_urls);
    urls("listen-peer-urls", &c->listen_peer_urls);
    str("initial-cluster", &c->initial_cluster);
    str("initial-cluster-state", &c->initial_cluster_state);
    str("initial-cluster-token", &c->initial_cluster_token);
    num("heartbeat-interval", &c->heartbeat_interval_ms);
    num("election-timeout", &c->election_timeout_ms);
    num("snapshot-count", &c->snapshot_count);
    num("quota-backend-bytes", &c->quota_backend_bytes);
    num("max-request-bytes", &c->max_request_bytes);
    num("max-txn-ops", &c->max_txn_ops);
    str("auto-compaction-mode", &c->auto_compaction_mode);
    str("auto-compaction-retention", &c->auto_compaction_retention);
    str("log-level", &c->log_level);
    str("experimental-watch-batch-interval", &c->watch_batch_interval);
    auto list = [&](const YAML::Node& node, std::vector<std::string>* out) {
      if (!node) return;
      if (node.IsSequence()) {
        out->clear();
        for (const auto& item : node) out->push_back(item.as<std::string>());
      } else {
        *out = SplitCommas(node.as<std::string>());
      }
    };
    auto security = [&](const char* key, cairn::api::TransportSecurity* t) {
      const YAML::Node node = root[key];
      if (!node) return;
      auto field = [&](const char* k, std::string* out) {
        if (node[k]) *out = node[k].as<std::string>();
      };
      field("cert-file", &t->cert_file);
      field("key-file", &t->key_file);
      field("client-cert-file", &t->client_cert_file);
      field("client-key-file", &t->client_key_file);
      field("trusted-ca-file", &t->trusted_ca_file);
      if (node["client-cert-auth"]) t->client_cert_auth = node["client-cert-auth"].as<bool>();
      if (node["auto-tls"]) t->auto_tls = node["auto-tls"].as<bool>();
      list(node["allowed-cn"], &t->allowed_cn);
      list(node["allowed-hostname"], &t->allowed_hostname);
      field("crl-file", &t->crl_file);
    };
    security("client-transport-security", &c->client_tls);
    security("peer-transport-security", &c->peer_tls);
    list(root["cipher-suites"], &c->cipher_suites);
    str("tls-min-version", &c->tls_min_version);
    str("tls-max-version", &c->tls_max_version);
    num("self-signed-cert-validity", &c->self_signed_cert_validity);
    str("auth-token", &c->auth_token);
    num("auth-token-ttl", &c->auth_token_ttl);
    num("bcrypt-cost", &c->bcrypt_cost);
  } catch (const std::exception& e) {
    std::cerr << "cairn: bad value in config file " << path << ": " << e.what() << std::endl;
    return false;
  }
  return true;
}

// etcd reads every flag --foo-bar also from ETCD_FOO_BAR (pkg/flags), which
// is how Debian's etcd.service and /etc/default/etcd configure it. Returns the
// arguments with a --flag=value added for each variable whose flag is not on
// the command line; false (after printing etcd's message) when both are set.
bool AddFlagsFromEnvironment(const CLI::App& app, std::vector<std::string>* args) {
  std::set<std::string> known;
  for (const CLI::Option* opt : app.get_options()) {
    for (const std::string& name : opt->get_lnames()) {
      std::string env = "ETCD_" + name;
      for (char& c : env) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      known.insert(env);
      const char* value = std::getenv(env.c_str());
      if (value == nullptr) continue;
      bool on_command_line = false;
      for (const std::string& a : *args) {
        if (a == "--" + name || a.starts_with("--" + name + "=")) on_command_line = true;
      }
      if (on_command_line) {
        std::cerr << "cairn: conflicting environment variable \"" << env
                  << "\" is shadowed by corresponding command-line flag (either unset environment variable or "
                     "disable flag)"
                  << std::endl;
        return false;
      }
      args->push_back("--" + name + "=" + value);
    }
  }
  for (char** e = environ; *e != nullptr; e++) {
    std::string kv(*e);
    if (!kv.starts_with("ETCD_")) continue;
    if (!known.count(kv.substr(0, kv.find('=')))) {
      CAIRN_LOG(kWarn) << "unrecognized environment variable " << kv;
    }
  }
  return true;
}

// Tells systemd the member serves (Type=notify, as Debian's etcd.service
// declares): one "READY=1" datagram to $NOTIFY_SOCKET, if set.
void NotifySystemdReady() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const char msg[] = "READY=1";
  if (sendto(fd, msg, sizeof(msg) - 1, 0, reinterpret_cast<sockaddr*>(&addr),
             static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len)) < 0) {
    CAIRN_LOG(kWarn) << "cannot notify systemd at " << path << ": " << std::strerror(errno);
  }
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  cairn::api::ServerConfig config;
  CLI::App app{"cairn: an etcd v3-compatible, Raft-replicated configuration store"};
  app.allow_extras(false);
  // A flag given twice: the last one wins, as with etcd's Go flags.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string config_file, listen_client_urls, advertise_client_urls, listen_metrics_urls,
      initial_advertise_peer_urls, listen_peer_urls;
  std::string ignored;
  app.add_option("--config-file", config_file, "YAML file with the flags as keys; overrides flags");
  app.add_option("--name", config.name, "Human-readable name for this member")->capture_default_str();
  app.add_option("--data-dir", config.data_dir, "Path to the data directory (default: <name>.cairn)");
  app.add_option("--listen-client-urls", listen_client_urls,
                 "Comma-separated URLs to listen on for client traffic (gRPC and HTTP)");
  app.add_option("--advertise-client-urls", advertise_client_urls,
                 "Comma-separated client URLs advertised to the rest of the cluster");
  app.add_option("--listen-metrics-urls", listen_metrics_urls,
                 "Comma-separated URLs to serve /metrics and /health on");
  app.add_option("--initial-advertise-peer-urls", initial_advertise_peer_urls,
                 "Peer URLs of this member (reported by MemberList)");
  app.add_option("--listen-peer-urls", listen_peer_urls, "Comma-separated URLs to listen on for peer traffic");
  app.add_option("--initial-cluster", config.initial_cluster,
                 "Initial cluster configuration for bootstrapping: name=peer-url,...");
  app.add_option("--initial-cluster-state", config.initial_cluster_state,
                 "Initial cluster state ('new' or 'existing')")->capture_default_str();
  app.add_option("--initial-cluster-token", config.initial_cluster_token,
                 "Initial cluster token for the cluster during bootstrap")->capture_default_str();
  app.add_option("--heartbeat-interval", config.heartbeat_interval_ms,
                 "Time (in milliseconds) of a heartbeat interval")->capture_default_str();
  app.add_option("--election-timeout", config.election_timeout_ms,
                 "Time (in milliseconds) for an election to timeout")->capture_default_str();
  app.add_option("--quota-backend-bytes", config.quota_backend_bytes,
                 "Raise the NOSPACE alarm when the backend exceeds this size (0 = 2 GiB)");
  app.add_option("--max-request-bytes", config.max_request_bytes,
                 "Maximum client request size in bytes")->capture_default_str();
  app.add_option("--max-txn-ops", config.max_txn_ops, "Maximum operations in a transaction")
      ->capture_default_str();
  app.add_option("--auto-compaction-mode", config.auto_compaction_mode, "'periodic' or 'revision'")
      ->capture_default_str();
  app.add_option("--auto-compaction-retention", config.auto_compaction_retention,
                 "Retention for auto compaction: hours or duration (periodic), count (revision); 0 = off")
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "debug, info, warn, error")->capture_default_str();
  // TLS, with etcd's flags (see docs/security.md).
  std::string cipher_suites, peer_allowed_cn, peer_allowed_hostname, client_allowed_hostname;
  auto& ct = config.client_tls;
  auto& pt = config.peer_tls;
  app.add_option("--cert-file", ct.cert_file, "Path to the client server TLS cert file");
  app.add_option("--key-file", ct.key_file, "Path to the client server TLS key file");
  app.add_option("--client-cert-file", ct.client_cert_file,
                 "Path to an explicit client TLS cert file (accepted for etcd compatibility)");
  app.add_option("--client-key-file", ct.client_key_file,
                 "Path to an explicit client TLS key file (accepted for etcd compatibility)");
  app.add_option("--trusted-ca-file", ct.trusted_ca_file,
                 "Path to the client server TLS trusted CA cert file; client certificates are then required");
  app.add_flag("--client-cert-auth", ct.client_cert_auth, "Enable client cert authentication");
  app.add_flag("--auto-tls", ct.auto_tls, "Client TLS using generated certificates");
  app.add_option("--client-crl-file", ct.crl_file, "Path to the client certificate revocation list file");
  app.add_option("--client-cert-allowed-hostname", client_allowed_hostname,
                 "Comma-separated list of allowed SAN hostnames for client cert authentication");
  app.add_option("--peer-cert-file", pt.cert_file, "Path to the peer server TLS cert file");
  app.add_option("--peer-key-file", pt.key_file, "Path to the peer server TLS key file");
  app.add_option("--peer-client-cert-file", pt.client_cert_file,
                 "Path to an explicit peer client TLS cert file, otherwise the peer cert file is used");
  app.add_option("--peer-client-key-file", pt.client_key_file,
                 "Path to an explicit peer client TLS key file, otherwise the peer key file is used");
  app.add_option("--peer-trusted-ca-file", pt.trusted_ca_file, "Path to the peer server TLS trusted CA file");
  app.add_flag("--peer-client-cert-auth", pt.client_cert_auth, "Enable peer client cert authentication");
  app.add_flag("--peer-auto-tls", pt.auto_tls, "Peer TLS using generated certificates");
  app.add_option("--peer-crl-file", pt.crl_file, "Path to the peer certificate revocation list file");
  app.add_option("--peer-cert-allowed-cn", peer_allowed_cn,
                 "Comma-separated list of allowed CNs for inter-peer TLS authentication");
  app.add_option("--peer-cert-allowed-hostname", peer_allowed_hostname,
                 "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication");
  app.add_option("--cipher-suites", cipher_suites,
                 "Comma-separated list of supported TLS cipher suites between client/server and peers (Go names)");
  app.add_option("--tls-min-version", config.tls_min_version,
                 "Minimum TLS version supported. Possible values: TLS1.2, TLS1.3")->capture_default_str();
  app.add_option("--tls-max-version", config.tls_max_version,
                 "Maximum TLS version supported. Possible values: TLS1.2, TLS1.3 (empty: the highest)");
  app.add_option("--self-signed-cert-validity", config.self_signed_cert_validity,
                 "The validity period of the client and peer certificates, unit is year")->capture_default_str();
  app.add_option("--auth-token", config.auth_token,
                 "Specify auth token type and options: simple, or jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...")
      ->capture_default_str();
  app.add_option("--auth-token-ttl", config.auth_token_ttl, "The lifetime in seconds of the auth token")
      ->capture_default_str();
  app.add_option("--bcrypt-cost", config.bcrypt_cost,
                 "Specify bcrypt algorithm cost factor for auth password hashing")->capture_default_str();
  // etcd flags accepted for compatibility that a single member ignores.
  app.add_option("--snapshot-count", config.snapshot_count,
                 "Log entries kept for followers that fall behind; further behind, they get a snapshot");
  app.add_option("--experimental-log-segment-bytes", config.log_segment_bytes,
                 "cairn's own: bytes of one preallocated log segment file (default 64 MiB)");
  app.add_option("--experimental-watch-batch-interval", config.watch_batch_interval,
                 "cairn's own: a watch stream busy with events sends each watcher at most one "
                 "response per interval, with every revision since the last (0: no batching)")
      ->capture_default_str();
  for (const char* f : {"--logger"}) {
    app.add_option(f, ignored, "accepted for etcd compatibility; not used yet");
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!AddFlagsFromEnvironment(app, &args)) return 1;
  std::reverse(args.begin(), args.end());  // CLI11 takes them last-first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // gRPC's absl::Mutex checks lock order in every acquisition by default,
  // through one global graph; that is a debugging aid, not for serving.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  if (!listen_client_urls.empty()) config.listen_client_urls = SplitCommas(listen_client_urls);
  if (!advertise_client_urls.empty()) config.advertise_client_urls = SplitCommas(advertise_client_urls);
  if (!listen_metrics_urls.empty()) config.listen_metrics_urls = SplitCommas(listen_metrics_urls);
  if (!initial_advertise_peer_urls.empty()) {
    config.initial_advertise_peer_urls = SplitCommas(initial_advertise_peer_urls);
  }
  if (!listen_peer_urls.empty()) config.listen_peer_urls = SplitCommas(listen_peer_urls);
  if (!cipher_suites.empty()) config.cipher_suites = SplitCommas(cipher_suites);
  if (!peer_allowed_cn.empty()) pt.allowed_cn = SplitCommas(peer_allowed_cn);
  if (!peer_allowed_hostname.empty()) pt.allowed_hostname = SplitCommas(peer_allowed_hostname);
  if (!client_allowed_hostname.empty()) ct.allowed_hostname = SplitCommas(client_allowed_hostname);
  if (!config_file.empty() && !LoadConfigFile(config_file, &config)) return 1;

  cairn::LogLevel level;
  if (!cairn::ParseLogLevel(config.log_level, &level)) {
    std::cerr << "cairn: unknown --log-level " << config.log_level << std::endl;
    return 1;
  }
  cairn::SetLogLevel(level);

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  cairn::api::EtcdServer server(config);
  std::atomic<bool> started{false};
  // Waits for the stop signals from the start on: a member waiting for a
  // quorum to publish itself must still stop on SIGTERM.
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (!started.load()) {
      // Nothing was acknowledged to anyone yet; the log is crash-safe.
      CAIRN_LOG(kInfo) << "received signal " << sig << " before serving; exiting";
      std::_Exit(1);
    }
    CAIRN_LOG(kInfo) << "received signal " << sig << ", shutting down";
    server.Stop();
  });
  cairn::Status s = server.Start();
  if (!s.ok()) {
    std::cerr << "cairn: " << s.message() << std::endl;
    server.Stop();
    std::_Exit(1);
  }
  started = true;
  g_server = &server;
  NotifySystemdReady();
  server.Wait();
  // Stopped from inside (this member was removed from the cluster): wake the
  // signal waiter, which stops the server.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  server.Stop();
  CAIRN_LOG(kInfo) << "stopped";
  return 0;
}
