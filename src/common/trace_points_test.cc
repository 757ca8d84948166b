#include "common/trace_points.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace cairn::trace {
namespace {

TEST(TracePoints, RecordsBoundedEventsAndWritesThemAtDump) {
  const std::string path = "/tmp/cairn-trace-test-" + std::to_string(getpid()) + ".txt";
  // Read once, at the first use of the recorder in this process.
  setenv("CAIRN_TRACE", path.c_str(), 1);
  setenv("CAIRN_TRACE_EVENTS", "100", 1);
  ASSERT_TRUE(Recorder::Get().enabled());
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; t++) {
    threads.emplace_back([t] {
      for (uint64_t i = 0; i < 50; i++) Point(t == 0 ? "a" : "b", i, i * 2);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(Recorder::Get().recorded(), 100u);  // 150 points, 100 kept
  Recorder::Get().Dump();
  Point("late", 1);  // after the dump: not recorded, no crash
  std::ifstream in(path);
  std::string stage;
  uint64_t key = 0, value = 0, ns = 0, last_ns = 0;
  int lines = 0;
  while (in >> stage >> key >> value >> ns) {
    EXPECT_TRUE(stage == "a" || stage == "b") << stage;
    EXPECT_EQ(value, key * 2);
    EXPECT_GT(ns, 0u);
    last_ns = ns;
    lines++;
  }
  EXPECT_EQ(lines, 100);
  EXPECT_GT(last_ns, 0u);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace cairn::trace
