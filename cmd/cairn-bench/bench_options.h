// Options for every cairn-bench workload: one plain struct per concern, built
// from flags in main.cc, each with its defaults written here and a Validate()
// that returns the first problem as a message (empty when valid).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cairn::bench {

// Shared by every workload.
struct CommonOptions {
  // gRPC targets, "host:port" or "http://host:port". Default: 127.0.0.1:2379.
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};
  // Closed-loop clients, each with at most one request in flight. Default: 1.
  int clients = 1;
  // gRPC connections (one TCP connection each); clients are spread over them
  // round-robin, and connections over endpoints. Default: 1.
  int conns = 1;
  // Operations to run; ignored when duration_seconds > 0. Default: 10000.
  int64_t total = 10000;
  // Run for this long instead of a fixed total. Default: 0 (use total).
  double duration_seconds = 0;
  // Deadline of one request. Default: 10 s.
  double request_timeout_seconds = 10;
  // Print one JSON object instead of the human-readable report.
  bool json = false;
  // Seed of the per-client key generators (client i uses seed + i).
  uint64_t seed = 1;
  // TLS, as etcdctl's flags: the CA that signed the server's certificate
  // (set: the connections use TLS), and a client certificate and key for
  // servers that require one. Paths; empty: unused.
  std::string cacert;
  std::string cert;
  std::string key;
  // "name:password" (etcdctl's --user): sign in once with Authenticate and
  // send the token with every request. Empty: no auth.
  std::string user;

  std::string Validate() const;
};

// Keys and values written by put, txn-put, mixed and the range preload.
struct KeyOptions {
  // Every key starts with this; empty means the workload's own default.
  std::string key_prefix;
  // Length of a key including the prefix (the index is zero-padded to fit;
  // a longer index makes the key longer). Default: 16.
  int key_size = 16;
  // Length of every value written. Default: 8.
  int value_size = 8;
  // Distinct keys: operations pick among key_space keys. Default: 1.
  int64_t key_space = 1;
  // Walk the key space in order (operation n uses key n % key_space) rather
  // than uniformly at random.
  bool sequential_keys = false;

  std::string Validate() const;
};

enum class Consistency { kLinearizable, kSerializable };

struct RangeOptions {
  Consistency consistency = Consistency::kLinearizable;
  // 1: every Range reads one key. N > 1: every Range reads a prefix holding N
  // keys. The keys are written before the timed run. Default: 1.
  int64_t keys_per_range = 1;
  // Write the keys first (turn off to range over whatever is there).
  bool preload = true;

  std::string Validate() const;
};

struct MixedOptions {
  // Fraction of operations that are Ranges; the rest are Puts. Default: 0.95.
  double read_fraction = 0.95;
  Consistency consistency = Consistency::kLinearizable;
  // Write every key of the key space before the timed run.
  bool preload = true;

  std::string Validate() const;
};

struct LeaseOptions {
  // TTL of the lease each client keeps alive. Default: 60 s.
  int64_t ttl_seconds = 60;
};

struct WatchOptions {
  // Watchers, all on the same prefix. Default: 100.
  int watchers = 100;
  // Watch streams the watchers are spread over. Default: 10.
  int streams = 10;
  // The writer's fixed rate in puts per second (open loop). 0: as fast as it
  // can, max_puts_in_flight outstanding (needs --total). Default: 100.
  double put_rate = 100;
  // Most puts the writer keeps in flight; past it, the writer falls behind
  // schedule (reported as writer_stalls). Default: 1024.
  int max_puts_in_flight = 1024;
  // After the last put, how long to wait for every event. Default: 10 s.
  double drain_timeout_seconds = 10;
  // Written (empty) once every watcher is created, before the writer starts:
  // tells a script when to measure the server with the watchers in place.
  // Default: none.
  std::string created_file;

  std::string Validate() const;
};

// Parses "l"/"linearizable"/"s"/"serializable".
bool ParseConsistency(const std::string& text, Consistency* out);
const char* ConsistencyName(Consistency consistency);

}  // namespace cairn::bench
