// cairn: an etcd v3-compatible configuration store. Flags follow etcd's names
// so an etcd systemd unit or manifest can point at this binary.
#include <CLI/CLI.hpp>
#include <absl/synchronization/mutex.h>
#include <yaml-cpp/yaml.h>

#include <csignal>
#include <iostream>
#include <thread>

#include "api/etcd_server.h"
#include "common/logging.h"
#include "memory_trimmer.h"

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
    num("quota-backend-bytes", &c->quota_backend_bytes);
    num("max-request-bytes", &c->max_request_bytes);
    num("max-txn-ops", &c->max_txn_ops);
    str("auto-compaction-mode", &c->auto_compaction_mode);
    str("auto-compaction-retention", &c->auto_compaction_retention);
    str("log-level", &c->log_level);
  } catch (const std::exception& e) {
    std::cerr << "cairn: bad value in config file " << path << ": " << e.what() << std::endl;
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  cairn::api::ServerConfig config;
  CLI::App app{"cairn: an etcd v3-compatible, Raft-replicated configuration store"};
  app.allow_extras(false);
  std::string config_file, listen_client_urls, advertise_client_urls, listen_metrics_urls,
      initial_advertise_peer_urls;
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
  // etcd flags accepted for compatibility that a single member ignores.
  for (const char* f : {"--listen-peer-urls", "--initial-cluster", "--initial-cluster-state",
                        "--initial-cluster-token", "--logger", "--heartbeat-interval",
                        "--election-timeout", "--snapshot-count"}) {
    app.add_option(f, ignored, "accepted for etcd compatibility; not used yet");
  }
  CLI11_PARSE(app, argc, argv);
  // gRPC's absl::Mutex checks lock order in every acquisition by default,
  // through one global graph; that is a debugging aid, not for serving.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  if (!listen_client_urls.empty()) config.listen_client_urls = SplitCommas(listen_client_urls);
  if (!advertise_client_urls.empty()) config.advertise_client_urls = SplitCommas(advertise_client_urls);
  if (!listen_metrics_urls.empty()) config.listen_metrics_urls = SplitCommas(listen_metrics_urls);
  if (!initial_advertise_peer_urls.empty()) {
    config.initial_advertise_peer_urls = SplitCommas(initial_advertise_peer_urls);
  }
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

  cairn::MemoryTrimmer trimmer(cairn::MemoryTrimmer::Options{});
  cairn::api::EtcdServer server(config);
  cairn::Status s = server.Start();
  if (!s.ok()) {
    std::cerr << "cairn: " << s.message() << std::endl;
    server.Stop();
    return 1;
  }
  g_server = &server;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    CAIRN_LOG(kInfo) << "received signal " << sig << ", shutting down";
    server.Stop();
  });
  server.Wait();
  waiter.join();
  server.Stop();
  CAIRN_LOG(kInfo) << "stopped";
  return 0;
}
