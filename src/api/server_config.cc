#include "api/server_config.h"

#include <algorithm>
#include <cctype>

#include "api/http/tls_context.h"
#include "common/duration.h"

namespace cairn::api {

Result<Url> ParseUrl(const std::string& url) {
  Url u;
  size_t p = url.find("://");
  if (p == std::string::npos) return Status(Code::kInvalidArgument, "URL must have a scheme: " + url);
  u.scheme = url.substr(0, p);
  if (u.scheme != "http" && u.scheme != "https") {
    return Status(Code::kInvalidArgument, "unsupported URL scheme (http or https): " + url);
  }
  std::string rest = url.substr(p + 3);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return Status(Code::kInvalidArgument, "URL must have a port: " + url);
  u.host = rest.substr(0, colon);
  if (!u.host.empty() && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
  std::string port = rest.substr(colon + 1);
  if (port.empty() || port.size() > 5) return Status(Code::kInvalidArgument, "bad port in URL: " + url);
  for (char c : port) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return Status(Code::kInvalidArgument, "bad port in URL: " + url);
    }
  }
  int v = std::stoi(port);
  if (v > 65535) return Status(Code::kInvalidArgument, "bad port in URL: " + url);
  u.port = static_cast<uint16_t>(v);
  if (u.host == "localhost") u.host = "127.0.0.1";
  return u;
}

Result<int64_t> ParseRetentionMs(const std::string& r) {
  if (r.empty()) return int64_t{0};
  bool all_digits = true;
  for (char c : r) all_digits &= std::isdigit(static_cast<unsigned char>(c)) != 0;
  if (all_digits) return std::stoll(r) * 3600 * 1000;
  return ParseGoDurationMs(r);
}

Result<std::vector<std::pair<std::string, std::vector<std::string>>>> ServerConfig::InitialMembers() const {
  std::vector<std::pair<std::string, std::vector<std::string>>> members;
  auto add = [&](const std::string& n, const std::string& url) {
    for (auto& [mn, urls] : members) {
      if (mn == n) {
        urls.push_back(url);
        return;
      }
    }
    members.push_back({n, {url}});
  };
  if (initial_cluster.empty()) {
    for (const auto& u : initial_advertise_peer_urls) add(name, u);
  } else {
    size_t start = 0;
    while (start <= initial_cluster.size()) {
      size_t comma = initial_cluster.find(',', start);
      if (comma == std::string::npos) comma = initial_cluster.size();
      std::string item = initial_cluster.substr(start, comma - start);
      start = comma + 1;
      if (item.empty()) continue;
      size_t eq = item.find('=');
      if (eq == std::string::npos || eq == 0) {
        return Status(Code::kInvalidArgument, "initial cluster " + initial_cluster + " is malformed: " + item);
      }
      add(item.substr(0, eq), item.substr(eq + 1));
    }
  }
  std::vector<std::string> seen;
  for (const auto& [mn, urls] : members) {
    for (const auto& u : urls) {
      auto parsed = ParseUrl(u);
      if (!parsed.ok()) return parsed.status();
      if (std::find(seen.begin(), seen.end(), u) != seen.end()) {
        return Status(Code::kInvalidArgument, "initial cluster " + initial_cluster + " has duplicate url");
      }
      seen.push_back(u);
    }
  }
  const std::vector<std::string>* mine = nullptr;
  for (const auto& [mn, urls] : members) {
    if (mn == name) mine = &urls;
  }
  if (!mine) {
    return Status(Code::kInvalidArgument,
                  "couldn't find local name \"" + name + "\" in the initial cluster configuration");
  }
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  if (sorted(*mine) != sorted(initial_advertise_peer_urls)) {
    std::string cluster_urls, advertised;
    for (const auto& u : sorted(*mine)) cluster_urls += (cluster_urls.empty() ? "" : ",") + u;
    for (const auto& u : sorted(initial_advertise_peer_urls)) advertised += (advertised.empty() ? "" : ",") + u;
    return Status(Code::kInvalidArgument, "--initial-cluster has " + name + "=" + cluster_urls +
                                              " but missing from --initial-advertise-peer-urls=" + advertised);
  }
  return members;
}

Status ServerConfig::Validate() const {
  if (name.empty()) return Status(Code::kInvalidArgument, "--name must not be empty");
  if (initial_cluster_state != "new" && initial_cluster_state != "existing") {
    return Status(Code::kInvalidArgument, "unexpected clusterState \"" + initial_cluster_state + "\"");
  }
  if (heartbeat_interval_ms <= 0) {
    return Status(Code::kInvalidArgument,
                  "--heartbeat-interval must be >0 (set to " + std::to_string(heartbeat_interval_ms) + "ms)");
  }
  if (election_timeout_ms < 5 * heartbeat_interval_ms) {
    return Status(Code::kInvalidArgument, "--election-timeout[" + std::to_string(election_timeout_ms) +
                                              "ms] should be at least as 5 times as --heartbeat-interval[" +
                                              std::to_string(heartbeat_interval_ms) + "ms]");
  }
  if (election_timeout_ms > 50000) {
    return Status(Code::kInvalidArgument, "--election-timeout[" + std::to_string(election_timeout_ms) +
                                              "ms] is too long, and should be set less than 50000ms");
  }
  for (const auto& u : listen_peer_urls) {
    auto p = ParseUrl(u);
    if (!p.ok()) return p.status();
  }
  auto members = InitialMembers();
  if (!members.ok()) return members.status();
  if (listen_client_urls.empty()) return Status(Code::kInvalidArgument, "--listen-client-urls is empty");
  for (const auto& u : listen_client_urls) {
    auto p = ParseUrl(u);
    if (!p.ok()) return p.status();
  }
  for (const auto& u : listen_metrics_urls) {
    auto p = ParseUrl(u);
    if (!p.ok()) return p.status();
  }
  if (self_signed_cert_validity <= 0) {
    return Status(Code::kInvalidArgument, "selfSignedCertValidity is invalid,it should be greater than 0");
  }
  if (Status s = http::ValidateTlsVersions(tls_min_version, tls_max_version, cipher_suites); !s.ok()) return s;
  if (auth_token != "simple" && auth_token != "jwt" && !auth_token.starts_with("jwt,")) {
    return Status(Code::kInvalidArgument, "unknown token type: " + auth_token.substr(0, auth_token.find(',')));
  }
  if (auth_token_ttl <= 0) return Status(Code::kInvalidArgument, "--auth-token-ttl must be > 0");
  if (bcrypt_cost < 4 || bcrypt_cost > 31) {
    return Status(Code::kInvalidArgument, "invalid bcrypt-cost: " + std::to_string(bcrypt_cost) +
                                              " (must be between 4 and 31)");
  }
  if (max_request_bytes <= 0) return Status(Code::kInvalidArgument, "--max-request-bytes must be > 0");
  if (max_txn_ops <= 0) return Status(Code::kInvalidArgument, "--max-txn-ops must be > 0");
  if (quota_backend_bytes < 0) return Status(Code::kInvalidArgument, "--quota-backend-bytes must be >= 0");
  if (auto_compaction_mode != "periodic" && auto_compaction_mode != "revision") {
    return Status(Code::kInvalidArgument,
                  "unknown auto-compaction-mode '" + auto_compaction_mode + "'");
  }
  if (auto_compaction_mode == "revision") {
    for (char c : auto_compaction_retention) {
      if (!std::isdigit(static_cast<unsigned char>(c))) {
        return Status(Code::kInvalidArgument, "revision retention must be an integer");
      }
    }
  } else {
    auto r = ParseRetentionMs(auto_compaction_retention);
    if (!r.ok()) return r.status();
  }
  auto batch = ParseGoDurationMs(watch_batch_interval);
  if (!batch.ok() || *batch < 0 || *batch > 1000) {
    return Status(Code::kInvalidArgument,
                  "--experimental-watch-batch-interval must be a duration from 0 to 1s (set to '" +
                      watch_batch_interval + "')");
  }
  return Status::Ok();
}

int64_t ServerConfig::WatchBatchIntervalMs() const {
  auto batch = ParseGoDurationMs(watch_batch_interval);
  return batch.ok() ? *batch : 0;
}

}  // namespace cairn::api
