#include "common/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace cairn {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The line of `text` that starts with `prefix`, or "" if none.
std::string LineStartingWith(const std::string& text, const std::string& prefix) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (line.rfind(prefix, 0) == 0) return line;
    pos = end + 1;
  }
  return "";
}

TEST(MetricsTest, ExposesEtcdNamesWithTheirTypes) {
  Metrics metrics;
  // Labelled families appear once they have a series, as in Go.
  metrics.SetServerId(1);
  metrics.GrpcMethod("etcdserverpb.KV", "Range", kGrpcUnary);
  std::string text = metrics.Serialize();
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"etcd_server_has_leader", "gauge"},
      {"etcd_server_is_leader", "gauge"},
      {"etcd_server_leader_changes_seen_total", "counter"},
      // Gauges in etcd despite the suffix: they mirror raft indexes.
      {"etcd_server_proposals_committed_total", "gauge"},
      {"etcd_server_proposals_applied_total", "gauge"},
      {"etcd_server_proposals_pending", "gauge"},
      {"etcd_server_proposals_failed_total", "counter"},
      {"etcd_server_id", "gauge"},
      {"etcd_server_version", "gauge"},
      {"etcd_mvcc_db_total_size_in_bytes", "gauge"},
      {"etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"},
      {"etcd_debugging_mvcc_keys_total", "gauge"},
      {"etcd_mvcc_put_total", "counter"},
      {"etcd_mvcc_delete_total", "counter"},
      {"etcd_mvcc_range_total", "counter"},
      {"etcd_mvcc_txn_total", "counter"},
      {"etcd_disk_wal_fsync_duration_seconds", "histogram"},
      {"etcd_disk_backend_commit_duration_seconds", "histogram"},
      {"etcd_network_client_grpc_received_bytes_total", "counter"},
      {"etcd_network_client_grpc_sent_bytes_total", "counter"},
      {"etcd_debugging_mvcc_watcher_total", "gauge"},
      {"etcd_debugging_mvcc_slow_watcher_total", "gauge"},
      {"etcd_debugging_lease_granted_total", "counter"},
      {"etcd_debugging_lease_revoked_total", "counter"},
      {"grpc_server_started_total", "counter"},
      {"grpc_server_handled_total", "counter"},
      {"grpc_server_msg_received_total", "counter"},
      {"grpc_server_msg_sent_total", "counter"},
      {"process_resident_memory_bytes", "gauge"},
      {"process_open_fds", "gauge"},
      {"process_start_time_seconds", "gauge"},
      {"process_cpu_seconds_total", "counter"},
  };
  for (const auto& [name, type] : expected) {
    EXPECT_THAT(text, HasSubstr("\n# TYPE " + name + " " + type + "\n")) << name;
  }
  EXPECT_THAT(text, HasSubstr("# HELP etcd_server_has_leader Whether or not a leader exists. "
                              "1 is existence, 0 is not.\n"));
  EXPECT_THAT(text, HasSubstr("etcd_server_version{server_version=\"3.5.0\"} 1\n"));
  // Removed in etcd 3.5.
  EXPECT_THAT(text, Not(HasSubstr("etcd_debugging_mvcc_put_total")));
}

TEST(MetricsTest, CountersAndGaugesShowTheirValues) {
  Metrics metrics;
  metrics.mvcc().put_total->Increment();
  metrics.mvcc().put_total->Increment();
  metrics.server().has_leader->Set(1);
  metrics.server().proposals_committed_total->Set(42);
  metrics.lease().granted_total->Increment(3);
  metrics.network().client_grpc_sent_bytes_total->Increment(100);
  std::string text = metrics.Serialize();
  EXPECT_EQ(LineStartingWith(text, "etcd_mvcc_put_total "), "etcd_mvcc_put_total 2");
  EXPECT_EQ(LineStartingWith(text, "etcd_mvcc_delete_total "), "etcd_mvcc_delete_total 0");
  EXPECT_EQ(LineStartingWith(text, "etcd_server_has_leader "), "etcd_server_has_leader 1");
  EXPECT_EQ(LineStartingWith(text, "etcd_server_proposals_committed_total "),
            "etcd_server_proposals_committed_total 42");
  EXPECT_EQ(LineStartingWith(text, "etcd_debugging_lease_granted_total "),
            "etcd_debugging_lease_granted_total 3");
  EXPECT_EQ(LineStartingWith(text, "etcd_network_client_grpc_sent_bytes_total "),
            "etcd_network_client_grpc_sent_bytes_total 100");
}

TEST(MetricsTest, FsyncHistogramHasEtcdBuckets) {
  Metrics metrics;
  metrics.disk().wal_fsync_duration_seconds->Observe(0.003);
  metrics.disk().backend_commit_duration_seconds->Observe(20);
  std::string text = metrics.Serialize();
  // 0.001 * 2^n for n = 0..13, then +Inf.
  const char* bounds[] = {"0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064",
                          "0.128", "0.256", "0.512", "1.024", "2.048", "4.096", "8.192"};
  for (const char* le : bounds) {
    std::string series =
        std::string("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"") + le + "\"} ";
    std::string line = LineStartingWith(text, series);
    ASSERT_FALSE(line.empty()) << le;
    const bool below = std::string(le) == "0.001" || std::string(le) == "0.002";
    EXPECT_EQ(line, series + (below ? "0" : "1"));
    EXPECT_FALSE(LineStartingWith(
                     text, std::string("etcd_disk_backend_commit_duration_seconds_bucket{le=\"") +
                               le + "\"} 0")
                     .empty());
  }
  EXPECT_EQ(LineStartingWith(text, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 1");
  EXPECT_EQ(LineStartingWith(text, "etcd_disk_wal_fsync_duration_seconds_count"),
            "etcd_disk_wal_fsync_duration_seconds_count 1");
  EXPECT_EQ(LineStartingWith(text, "etcd_disk_backend_commit_duration_seconds_bucket{le=\"+Inf\"}"),
            "etcd_disk_backend_commit_duration_seconds_bucket{le=\"+Inf\"} 1");
  EXPECT_EQ(LineStartingWith(text, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"16.384\"}"),
            "");
}

TEST(MetricsTest, ExponentialBucketsMatchGo) {
  auto buckets = Metrics::ExponentialBuckets(0.001, 2, 14);
  ASSERT_EQ(buckets.size(), 14u);
  EXPECT_DOUBLE_EQ(buckets.front(), 0.001);
  EXPECT_DOUBLE_EQ(buckets.back(), 8.192);
}

TEST(MetricsTest, ServerIdAndClusterVersionAreReplacedNotAccumulated) {
  Metrics metrics;
  metrics.SetServerId(0xbdae9bbc11dd390dULL);
  metrics.SetServerId(0x8e9e05c52164694dULL);
  metrics.SetClusterVersion("3.5");
  std::string text = metrics.Serialize();
  EXPECT_THAT(text, HasSubstr("etcd_server_id{server_id=\"8e9e05c52164694d\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("bdae9bbc11dd390d")));
  EXPECT_THAT(text, HasSubstr("etcd_cluster_version{cluster_version=\"3.5\"} 1\n"));
}

TEST(MetricsTest, GrpcSeriesUseGoGrpcPrometheusLabels) {
  Metrics metrics;
  metrics.GrpcMethod("etcdserverpb.KV", "Put", kGrpcUnary);  // pre-registration
  metrics.GrpcStarted("etcdserverpb.KV", "Range", kGrpcUnary);
  metrics.GrpcMsgReceived("etcdserverpb.KV", "Range", kGrpcUnary);
  metrics.GrpcHandled("etcdserverpb.KV", "Range", kGrpcUnary, "OK");
  metrics.GrpcHandled("etcdserverpb.KV", "Range", kGrpcUnary, "OK");
  metrics.GrpcMsgSent("etcdserverpb.KV", "Range", kGrpcUnary);
  metrics.GrpcHandled("etcdserverpb.Watch", "Watch", kGrpcBidiStream, "Canceled");
  auto& watch = metrics.GrpcMethod("etcdserverpb.Watch", "Watch", kGrpcBidiStream);
  Metrics::Handled(watch, 1).Increment();
  std::string text = metrics.Serialize();
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\","
                              "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("grpc_server_started_total{grpc_method=\"Range\","
                              "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("grpc_server_msg_sent_total{grpc_method=\"Range\","
                              "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total{grpc_code=\"Canceled\","
                              "grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\","
                              "grpc_type=\"bidi_stream\"} 2\n"));
  // Pre-registered methods show every code at zero, like grpc_prometheus.Register.
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total{grpc_code=\"Unauthenticated\","
                              "grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\","
                              "grpc_type=\"unary\"} 0\n"));
  EXPECT_THAT(text, Not(HasSubstr("grpc_server_handling_seconds")));
  EXPECT_EQ(GrpcCodeName(16), "Unauthenticated");
  EXPECT_EQ(GrpcCodeName(99), "Unknown");
}

TEST(MetricsTest, GrpcMethodsAreBounded) {
  Metrics::Options options;
  options.max_grpc_methods = 2;
  Metrics metrics(options);
  metrics.GrpcStarted("s", "a", kGrpcUnary);
  metrics.GrpcStarted("s", "b", kGrpcUnary);
  metrics.GrpcStarted("s", "c", kGrpcUnary);
  metrics.GrpcStarted("s", "d", kGrpcUnary);
  std::string text = metrics.Serialize();
  EXPECT_THAT(text, Not(HasSubstr("grpc_method=\"c\"")));
  EXPECT_THAT(text, HasSubstr("grpc_server_started_total{grpc_method=\"unknown\","
                              "grpc_service=\"unknown\",grpc_type=\"unary\"} 2\n"));
}

TEST(MetricsTest, ExtensiveAddsHandlingHistogram) {
  Metrics::Options options;
  options.extensive = true;
  Metrics metrics(options);
  metrics.GrpcMethod("etcdserverpb.KV", "Range", kGrpcUnary).handling_seconds->Observe(0.02);
  std::string text = metrics.Serialize();
  EXPECT_THAT(text, HasSubstr("# TYPE grpc_server_handling_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("grpc_server_handling_seconds_bucket{grpc_method=\"Range\","
                              "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\",le=\"0.025\"} "
                              "1\n"));
}

TEST(MetricsTest, ScrapeCallbacksRefreshGaugesUntilRemoved) {
  Metrics metrics;
  int db_size = 4096;
  auto id = metrics.AddScrapeCallback([&] { metrics.mvcc().db_total_size_in_bytes->Set(db_size); });
  EXPECT_EQ(LineStartingWith(metrics.Serialize(), "etcd_mvcc_db_total_size_in_bytes "),
            "etcd_mvcc_db_total_size_in_bytes 4096");
  db_size = 8192;
  EXPECT_EQ(LineStartingWith(metrics.Serialize(), "etcd_mvcc_db_total_size_in_bytes "),
            "etcd_mvcc_db_total_size_in_bytes 8192");
  metrics.RemoveScrapeCallback(id);
  db_size = 1;
  EXPECT_EQ(LineStartingWith(metrics.Serialize(), "etcd_mvcc_db_total_size_in_bytes "),
            "etcd_mvcc_db_total_size_in_bytes 8192");
}

TEST(MetricsTest, ProcessMetricsComeFromProc) {
  Metrics metrics;
  std::string text = metrics.Serialize();
  std::string rss = LineStartingWith(text, "process_resident_memory_bytes ");
  ASSERT_FALSE(rss.empty());
  EXPECT_GT(std::stod(rss.substr(rss.find(' ') + 1)), 0);
  std::string fds = LineStartingWith(text, "process_open_fds ");
  ASSERT_FALSE(fds.empty());
  EXPECT_GE(std::stod(fds.substr(fds.find(' ') + 1)), 3);  // stdin, stdout, stderr
  std::string start = LineStartingWith(text, "process_start_time_seconds ");
  ASSERT_FALSE(start.empty());
  EXPECT_GT(std::stod(start.substr(start.find(' ') + 1)), 1.6e9);
  EXPECT_FALSE(LineStartingWith(text, "process_cpu_seconds_total ").empty());
  EXPECT_FALSE(LineStartingWith(text, "os_fd_limit ").empty());
}

TEST(MetricsTest, ConcurrentUpdatesAndScrapes) {
  Metrics metrics;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) metrics.Serialize();
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        metrics.mvcc().range_total->Increment();
        metrics.GrpcHandled("etcdserverpb.KV", "Range", kGrpcUnary, "OK");
        metrics.GrpcStarted("svc", "m" + std::to_string(i % 8), kGrpcUnary);
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  scraper.join();
  std::string text = metrics.Serialize();
  EXPECT_EQ(LineStartingWith(text, "etcd_mvcc_range_total "), "etcd_mvcc_range_total 4000");
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\","
                              "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 4000\n"));
}

}  // namespace
}  // namespace cairn
