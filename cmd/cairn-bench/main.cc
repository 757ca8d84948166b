// cairn-bench: a load generator speaking the etcd v3 gRPC API, so the same
// run can be pointed at etcd and at cairn. Modelled on etcd's tools/benchmark:
//
//   cairn-bench --endpoints 127.0.0.1:2379 --clients 64 --conns 8
//       put --val-size 256 --key-space 100000 --total 100000
//   cairn-bench range --consistency s --clients 64 --duration 10 --json
//   cairn-bench watch --watchers 1000 --streams 100 --put-rate 1000 --duration 10
//
// Flags go into the option structs of bench_options.h; everything else lives
// in the workload files. Exit status: 0 ran clean, 1 errors or a failed
// check, 2 bad usage or no connection.
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>
#include <thread>

#include "bench_options.h"
#include "closed_loop.h"
#include "connections.h"
#include "kv_clients.h"
#include "watch_bench.h"
#include "workloads.h"

namespace cairn::bench {
namespace {

struct KeyFlags {
  KeyOptions options;
  std::string default_prefix;
};

void AddKeyFlags(CLI::App* command, KeyFlags* flags) {
  command->add_option("--key-prefix", flags->options.key_prefix,
                      "Prefix of every key (default: " + flags->default_prefix + ")");
  command->add_option("--key-size", flags->options.key_size,
                      "Key length in bytes including the prefix")
      ->capture_default_str();
  command->add_option("--val-size", flags->options.value_size, "Value length in bytes")
      ->capture_default_str();
  command->add_option("--key-space", flags->options.key_space, "Number of distinct keys")
      ->capture_default_str();
  command->add_flag("--sequential-keys", flags->options.sequential_keys,
                    "Use keys in order (operation n -> key n % key-space), not at random");
}

KeySpec ToKeySpec(const KeyFlags& flags, uint64_t seed) {
  KeySpec spec;
  spec.prefix = flags.options.key_prefix.empty() ? flags.default_prefix : flags.options.key_prefix;
  spec.key_size = flags.options.key_size;
  spec.value_size = flags.options.value_size;
  spec.key_space = flags.options.key_space;
  spec.sequential = flags.options.sequential_keys;
  spec.seed = seed;
  return spec;
}

nlohmann::json CommonConfig(const CommonOptions& common) {
  nlohmann::json j;
  j["endpoints"] = common.endpoints;
  j["clients"] = common.clients;
  j["conns"] = common.conns;
  j["tls"] = !common.cacert.empty();
  j["auth"] = !common.user.empty();
  if (common.duration_seconds > 0) {
    j["duration_seconds"] = common.duration_seconds;
  } else {
    j["total"] = common.total;
  }
  return j;
}

void AddKeyConfig(const KeySpec& keys, nlohmann::json* config) {
  (*config)["key_prefix"] = keys.prefix;
  (*config)["key_size"] = keys.key_size;
  (*config)["val_size"] = keys.value_size;
  (*config)["key_space"] = keys.key_space;
  (*config)["sequential_keys"] = keys.sequential;
}

// `ready`: polls with a Range until one succeeds; prints the time it took.
int RunReady(const CommonOptions& common, double wait_seconds) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(wait_seconds));
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // Retry the connection quickly while the server is still starting.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 50);
  std::string error;
  auto credentials = MakeCredentials(common.cacert, common.cert, common.key, &error);
  if (!credentials) {
    std::cerr << "cairn-bench: " << error << std::endl;
    return 2;
  }
  auto channel = grpc::CreateCustomChannel(EndpointToTarget(common.endpoints[0]), credentials, args);
  auto kv = etcdserverpb::KV::NewStub(channel);
  std::string last_error = "no attempt";
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    context.set_wait_for_ready(true);
    etcdserverpb::RangeRequest request;
    request.set_key(std::string(1, '\0'));
    etcdserverpb::RangeResponse response;
    grpc::Status status = kv->Range(&context, request, &response);
    if (status.ok()) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (common.json) {
        std::cout << nlohmann::json{{"workload", "ready"}, {"ready", true},
                                    {"elapsed_seconds", elapsed}}.dump()
                  << std::endl;
      } else {
        std::cout << "ready after " << elapsed << " s" << std::endl;
      }
      return 0;
    }
    last_error = DescribeStatus(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::cerr << "cairn-bench ready: no Range answered within " << wait_seconds
            << " s (last: " << last_error << ")" << std::endl;
  return 1;
}

// Every flag's destination; one field per subcommand option struct.
struct Flags {
  CommonOptions common;
  std::string endpoints = "127.0.0.1:2379";

  KeyFlags put_keys{KeyOptions{}, "p/"};
  KeyFlags range_keys{KeyOptions{}, "r/"};
  RangeOptions range;
  std::string range_consistency = "l";
  bool range_no_preload = false;
  KeyFlags txn_keys{KeyOptions{}, "t/"};
  bool txn_shared_keys = false;
  KeyFlags mixed_keys{KeyOptions{}, "m/"};
  MixedOptions mixed;
  std::string mixed_consistency = "l";
  bool mixed_no_preload = false;
  KeyFlags watch_keys{KeyOptions{}, "w/"};
  WatchOptions watch;
  LeaseOptions lease;
  double ready_wait_seconds = 60;

  CLI::App* put_command = nullptr;
  CLI::App* range_command = nullptr;
  CLI::App* txn_command = nullptr;
  CLI::App* mixed_command = nullptr;
  CLI::App* watch_command = nullptr;
  CLI::App* lease_command = nullptr;
  CLI::App* ready_command = nullptr;
};

void AddCommonFlags(CLI::App* app, Flags* f) {
  CommonOptions& c = f->common;
  app->add_option("--endpoints", f->endpoints, "Comma-separated gRPC endpoints")
      ->capture_default_str();
  app->add_option("--clients", c.clients, "Concurrent closed-loop clients")->capture_default_str();
  app->add_option("--conns", c.conns, "gRPC connections shared by the clients")
      ->capture_default_str();
  app->add_option("--total", c.total, "Operations to run (watch: puts)")->capture_default_str();
  app->add_option("--duration", c.duration_seconds,
                  "Seconds to run instead of --total (0: use --total)");
  app->add_option("--timeout", c.request_timeout_seconds, "Deadline of one request, seconds")
      ->capture_default_str();
  app->add_flag("--json", c.json, "Print one JSON object (for scripts)");
  app->add_option("--seed", c.seed, "Seed of the key choice")->capture_default_str();
  app->add_option("--cacert", c.cacert, "TLS: verify the server's certificate with this CA (PEM); turns TLS on");
  app->add_option("--cert", c.cert, "TLS: client certificate (PEM)");
  app->add_option("--key", c.key, "TLS: client key (PEM)");
  app->add_option("--user", c.user, "Auth: name:password; sign in once, send the token with every request");
}

void AddKvCommands(CLI::App* app, Flags* f) {
  f->put_command = app->add_subcommand("put", "Put keys (closed loop)");
  AddKeyFlags(f->put_command, &f->put_keys);

  CLI::App* range = f->range_command =
      app->add_subcommand("range", "Range over one key or a prefix of N keys");
  AddKeyFlags(range, &f->range_keys);
  range->add_option("--consistency", f->range_consistency, "l (linearizable) or s (serializable)")
      ->capture_default_str();
  range->add_option("--keys-per-range", f->range.keys_per_range,
                    "1: one key per Range; N: a prefix holding N keys")
      ->capture_default_str();
  range->add_flag("--no-preload", f->range_no_preload, "Do not write the keys first");

  f->txn_keys.options.key_space = 0;  // 0: one key per client
  CLI::App* txn = f->txn_command = app->add_subcommand(
      "txn-put", "Compare-and-swap Txn: If(mod_revision == last seen) Then(Put) Else(Get)");
  AddKeyFlags(txn, &f->txn_keys);
  txn->add_flag("--shared-keys", f->txn_shared_keys,
                "Let every client touch every key (conflicts); default: each owns key-space/clients");

  f->mixed_keys.options.key_space = 10000;
  CLI::App* mixed = f->mixed_command =
      app->add_subcommand("mixed", "Random Ranges and Puts (default 95% reads)");
  AddKeyFlags(mixed, &f->mixed_keys);
  mixed->add_option("--read-fraction", f->mixed.read_fraction, "Fraction of Ranges")
      ->capture_default_str();
  mixed->add_option("--consistency", f->mixed_consistency, "l or s, for the Ranges")
      ->capture_default_str();
  mixed->add_flag("--no-preload", f->mixed_no_preload, "Do not write the key space first");
}

void AddStreamCommands(CLI::App* app, Flags* f) {
  CLI::App* watch = f->watch_command = app->add_subcommand(
      "watch", "Watchers on a prefix while a writer puts at a fixed rate; checks exactly-once");
  AddKeyFlags(watch, &f->watch_keys);
  watch->add_option("--watchers", f->watch.watchers, "Watchers")->capture_default_str();
  watch->add_option("--streams", f->watch.streams, "Watch streams (over --conns)")
      ->capture_default_str();
  watch->add_option("--put-rate", f->watch.put_rate,
                    "Writer puts per second (0: as fast as it can, with --total)")
      ->capture_default_str();
  watch->add_option("--max-puts-in-flight", f->watch.max_puts_in_flight,
                    "Writer's bound on outstanding puts")
      ->capture_default_str();
  watch->add_option("--drain-timeout", f->watch.drain_timeout_seconds,
                    "Seconds to wait for the last events")
      ->capture_default_str();
  watch->add_option("--created-file", f->watch.created_file,
                    "File written once every watcher is created, before the writer starts");

  f->lease_command =
      app->add_subcommand("lease-keepalive", "One lease per client, kept alive on a stream");
  f->lease_command->add_option("--ttl", f->lease.ttl_seconds, "Lease TTL, seconds")
      ->capture_default_str();

  f->ready_command =
      app->add_subcommand("ready", "Wait until the first endpoint answers a Range");
  f->ready_command->add_option("--wait", f->ready_wait_seconds, "Give up after this many seconds")
      ->capture_default_str();
}

// Fills the derived fields and checks every option the chosen command uses.
// Returns the first problem, or an empty string.
std::string Finish(Flags* f) {
  CommonOptions& common = f->common;
  common.endpoints.clear();
  for (auto part : CLI::detail::split(f->endpoints, ',')) {
    part = CLI::detail::trim_copy(part);
    if (!part.empty()) common.endpoints.push_back(part);
  }
  if (std::string error = common.Validate(); !error.empty()) return error;
  if (f->txn_keys.options.key_space == 0) f->txn_keys.options.key_space = common.clients;
  for (const KeyFlags* keys :
       {&f->put_keys, &f->range_keys, &f->txn_keys, &f->mixed_keys, &f->watch_keys}) {
    if (std::string error = keys->options.Validate(); !error.empty()) return error;
  }
  if (!ParseConsistency(f->range_consistency, &f->range.consistency) ||
      !ParseConsistency(f->mixed_consistency, &f->mixed.consistency)) {
    return "--consistency: l, linearizable, s or serializable";
  }
  f->range.preload = !f->range_no_preload;
  f->mixed.preload = !f->mixed_no_preload;
  for (const std::string& error : {f->range.Validate(), f->mixed.Validate(), f->watch.Validate()}) {
    if (!error.empty()) return error;
  }
  if (f->watch_command->parsed() && f->watch.put_rate == 0 && common.duration_seconds > 0) {
    return "--put-rate 0 (as fast as it can): give --total puts, not --duration";
  }
  return "";
}

// Runs the chosen workload; its options are echoed into the report's config.
Report RunCommand(Flags& f, ConnectionPool& pool) {
  const CommonOptions& common = f.common;
  nlohmann::json config = CommonConfig(common);
  auto keys_of = [&](const KeyFlags& flags) {
    KeySpec keys = ToKeySpec(flags, common.seed);
    AddKeyConfig(keys, &config);
    return keys;
  };
  Report report;
  if (f.put_command->parsed()) {
    report = RunPut(common, keys_of(f.put_keys), pool);
  } else if (f.range_command->parsed()) {
    config["consistency"] = ConsistencyName(f.range.consistency);
    config["keys_per_range"] = f.range.keys_per_range;
    report = RunRange(common, keys_of(f.range_keys), f.range, pool);
  } else if (f.txn_command->parsed()) {
    config["shared_keys"] = f.txn_shared_keys;
    report = RunTxnPut(common, keys_of(f.txn_keys), f.txn_shared_keys, pool);
  } else if (f.mixed_command->parsed()) {
    config["read_fraction"] = f.mixed.read_fraction;
    config["consistency"] = ConsistencyName(f.mixed.consistency);
    report = RunMixed(common, keys_of(f.mixed_keys), f.mixed, pool);
  } else if (f.watch_command->parsed()) {
    config["watchers"] = f.watch.watchers;
    config["streams"] = f.watch.streams;
    config["put_rate"] = f.watch.put_rate;
    report = RunWatch(common, keys_of(f.watch_keys), f.watch, pool);
  } else if (f.lease_command->parsed()) {
    config["ttl_seconds"] = f.lease.ttl_seconds;
    report = RunLeaseKeepAlive(common, f.lease, pool);
  }
  report.config = std::move(config);
  return report;
}

int Main(int argc, char** argv) {
  CLI::App app{"cairn-bench: etcd v3 API load generator (works against etcd and cairn)"};
  app.require_subcommand(1);
  app.fallthrough();
  Flags flags;
  AddCommonFlags(&app, &flags);
  AddKvCommands(&app, &flags);
  AddStreamCommands(&app, &flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (std::string error = Finish(&flags); !error.empty()) {
    std::cerr << "cairn-bench: " << error << std::endl;
    return 2;
  }
  if (flags.ready_command->parsed()) return RunReady(flags.common, flags.ready_wait_seconds);

  std::string credentials_error;
  auto credentials = MakeCredentials(flags.common.cacert, flags.common.cert, flags.common.key, &credentials_error);
  if (!credentials) {
    std::cerr << "cairn-bench: " << credentials_error << std::endl;
    return 2;
  }
  std::string token;
  if (!flags.common.user.empty()) {
    token = Authenticate(flags.common.endpoints[0], credentials, flags.common.user, &credentials_error);
    if (token.empty()) {
      std::cerr << "cairn-bench: " << credentials_error << std::endl;
      return 2;
    }
  }
  ConnectionPool pool;
  if (std::string error = pool.Connect(flags.common.endpoints, flags.common.conns, 10, credentials, token);
      !error.empty()) {
    std::cerr << "cairn-bench: " << error << std::endl;
    return 2;
  }
  const double cpu_before = ProcessCpuSeconds();
  Report report = RunCommand(flags, pool);
  report.client_cpu_seconds = ProcessCpuSeconds() - cpu_before;
  if (flags.common.json) {
    std::cout << report.ToJson().dump() << std::endl;
  } else {
    report.PrintText(std::cout);
  }
  return report.passed ? 0 : 1;
}

}  // namespace
}  // namespace cairn::bench

int main(int argc, char** argv) { return cairn::bench::Main(argc, argv); }
