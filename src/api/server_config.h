// The member's configuration, under etcd's flag names. Built from flags and
// the YAML config file in cmd/; defaults are etcd's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace cairn::api {

// etcd's client-transport-security / peer-transport-security (the flags
// --cert-file ... and --peer-cert-file ...).
struct TransportSecurity {
  std::string cert_file, key_file;
  std::string client_cert_file, client_key_file;  // this member as a TLS client (peers)
  std::string trusted_ca_file;
  bool client_cert_auth = false;
  bool auto_tls = false;
  std::vector<std::string> allowed_cn;        // peers: --peer-cert-allowed-cn
  std::vector<std::string> allowed_hostname;  // --peer-cert-allowed-hostname, --client-cert-allowed-hostname
  std::string crl_file;                       // --peer-crl-file, --client-crl-file
  // etcd's TLSInfo.Empty(): no certificate given.
  bool Empty() const { return cert_file.empty() && key_file.empty(); }
};

struct ServerConfig {
  std::string name = "default";
  // Default: "<name>.cairn" in the working directory (etcd: "<name>.etcd").
  std::string data_dir;
  std::vector<std::string> listen_client_urls = {"http://localhost:2379"};
  std::vector<std::string> advertise_client_urls = {"http://localhost:2379"};
  std::vector<std::string> listen_metrics_urls;
  std::vector<std::string> initial_advertise_peer_urls = {"http://localhost:2380"};
  std::vector<std::string> listen_peer_urls = {"http://localhost:2380"};
  // "name=url,name=url,..."; empty: this member alone, with its
  // --initial-advertise-peer-urls (as etcd does when the flag is not set).
  std::string initial_cluster;
  std::string initial_cluster_state = "new";  // "new" or "existing"
  std::string initial_cluster_token = "etcd-cluster";
  // Log entries kept behind the applied index for followers that fall
  // behind; one further behind gets a snapshot of the database. (etcd:
  // entries between snapshots.) 0: cairn's default (10,000).
  int64_t snapshot_count = 0;
  // cairn's own: bytes of one log segment file (0: 64 MiB).
  int64_t log_segment_bytes = 0;
  // cairn's own: a watch stream busy with events writes each watcher at most
  // one response per interval, carrying every revision since the last (Go
  // duration; "0" writes every response at once). See WatchService.
  std::string watch_batch_interval = "40ms";
  int64_t heartbeat_interval_ms = 100;
  int64_t election_timeout_ms = 1000;
  // 0 means etcd's default of 2 GiB.
  int64_t quota_backend_bytes = 0;
  int64_t max_request_bytes = 1572864;
  int64_t max_txn_ops = 128;
  std::string auto_compaction_mode = "periodic";  // "periodic" or "revision"
  std::string auto_compaction_retention = "0";    // 0 = off
  std::string log_level = "info";
  TransportSecurity client_tls, peer_tls;
  std::vector<std::string> cipher_suites;  // Go's names
  std::string tls_min_version = "TLS1.2";
  std::string tls_max_version;
  int64_t self_signed_cert_validity = 1;  // years, for --auto-tls
  std::string auth_token = "simple";       // --auth-token: simple, or jwt,pub-key=...,priv-key=...,sign-method=...
  int64_t auth_token_ttl = 300;            // seconds a simple token lives unused
  int64_t bcrypt_cost = 10;

  Status Validate() const;
  // watch_batch_interval in milliseconds; REQUIRES: Validate() passed.
  int64_t WatchBatchIntervalMs() const;
  // The founding members: name -> peer URLs, in --initial-cluster order.
  // Errors are etcd's.
  Result<std::vector<std::pair<std::string, std::vector<std::string>>>> InitialMembers() const;
};

struct Url {
  std::string scheme, host;
  uint16_t port = 0;
};
Result<Url> ParseUrl(const std::string& url);

// etcd's retention: an integer is hours in periodic mode, a Go duration
// ("30m", "1h30m") otherwise; in revision mode an integer count.
Result<int64_t> ParseRetentionMs(const std::string& retention);

}  // namespace cairn::api
