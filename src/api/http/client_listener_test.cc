#include "api/http/client_listener.h"

#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <grpcpp/support/byte_buffer.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cairn::http {
namespace {

using std::chrono::milliseconds;

constexpr int kIoTimeoutMs = 5000;

int ConnectTo(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads up to `max` bytes, waiting at most kIoTimeoutMs for each. Returns ""
// on EOF, timeout or error.
std::string ReadSome(int fd, size_t max = 4096) {
  struct pollfd pfd = {fd, POLLIN, 0};
  if (::poll(&pfd, 1, kIoTimeoutMs) <= 0) return "";
  std::string out(max, '\0');
  ssize_t n = ::recv(fd, out.data(), max, 0);
  if (n <= 0) return "";
  out.resize(static_cast<size_t>(n));
  return out;
}

// Reads exactly `n` bytes (or fewer on EOF / timeout).
std::string ReadExactly(int fd, size_t n) {
  std::string out;
  while (out.size() < n) {
    std::string chunk = ReadSome(fd, n - out.size());
    if (chunk.empty()) break;
    out += chunk;
  }
  return out;
}

bool PeerClosed(int fd) {
  struct pollfd pfd = {fd, POLLIN, 0};
  if (::poll(&pfd, 1, kIoTimeoutMs) <= 0) return false;
  char c;
  // 0 for a FIN; -1 (ECONNRESET) when the listener closed with our bytes unread.
  return ::recv(fd, &c, 1, 0) <= 0;
}

struct RawResponse {
  int status = 0;
  std::string head;
  std::string body;
};

// Reads one Content-Length-framed HTTP/1.x response.
RawResponse ReadResponse(int fd) {
  RawResponse response;
  std::string data;
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    std::string chunk = ReadSome(fd);
    if (chunk.empty()) return response;
    data += chunk;
  }
  response.head = data.substr(0, head_end + 2);
  response.status = std::stoi(response.head.substr(9, 3));
  size_t length = 0;
  size_t cl = response.head.find("Content-Length: ");
  if (cl != std::string::npos) length = std::stoul(response.head.substr(cl + 16));
  response.body = data.substr(head_end + 4);
  if (response.body.size() < length) {
    response.body += ReadExactly(fd, length - response.body.size());
  }
  return response;
}

HttpResponse Health(const HttpRequest&) {
  HttpResponse response;
  response.content_type = "application/json";
  response.body = R"({"health":"true"})";
  return response;
}

ClientListener::Options TestOptions() {
  ClientListener::Options options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.read_timeout = milliseconds(kIoTimeoutMs);
  options.write_timeout = milliseconds(kIoTimeoutMs);
  return options;
}

TEST(ClientListenerTest, ServesHttpWithKeepAlive) {
  ClientListener listener(TestOptions());
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  ASSERT_NE(listener.port(), 0);

  int fd = ConnectTo(listener.port());
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
  RawResponse first = ReadResponse(fd);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, R"({"health":"true"})");
  EXPECT_NE(first.head.find("Content-Type: application/json\r\n"), std::string::npos);
  // Same socket, second request.
  SendAll(fd, "GET /health?serializable=true HTTP/1.1\r\nHost: localhost\r\n\r\n");
  RawResponse second = ReadResponse(fd);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, R"({"health":"true"})");
  ::close(fd);
}

TEST(ClientListenerTest, PassesRequestPartsToHandler) {
  ClientListener listener(TestOptions());
  listener.Handle("POST", "/v3/kv/", [](const HttpRequest& request) {
    HttpResponse response;
    response.body = request.method + "|" + request.path + "|" + request.query + "|" +
                    std::string(request.Header("x-test")) + "|" + request.body;
    response.headers.emplace_back("X-Reply", "yes");
    return response;
  });
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd,
          "POST /v3/kv/range?a=b HTTP/1.1\r\nHost: x\r\nX-Test: hello\r\n"
          "Content-Length: 5\r\n\r\nabcde");
  RawResponse response = ReadResponse(fd);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "POST|/v3/kv/range|a=b|hello|abcde");
  EXPECT_NE(response.head.find("X-Reply: yes\r\n"), std::string::npos);
  ::close(fd);
}

TEST(ClientListenerTest, UnknownPathIs404AndWrongMethodIs405) {
  ClientListener listener(TestOptions());
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  RawResponse not_found = ReadResponse(fd);
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.body, "404 page not found\n");
  SendAll(fd, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  RawResponse not_allowed = ReadResponse(fd);
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_NE(not_allowed.head.find("Allow: GET\r\n"), std::string::npos);
  ::close(fd);
}

// Shorter than the 24-byte preface: must be answered, not wait for more bytes.
TEST(ClientListenerTest, ShortHttp10RequestIsAnsweredAndClosed) {
  ClientListener listener(TestOptions());
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "GET / HTTP/1.0\r\n\r\n");
  RawResponse response = ReadResponse(fd);
  EXPECT_EQ(response.status, 404);
  EXPECT_TRUE(PeerClosed(fd));
  ::close(fd);
}

TEST(ClientListenerTest, OversizedBodyIs413) {
  ClientListener::Options options = TestOptions();
  options.max_body_bytes = 16;
  ClientListener listener(options);
  listener.Handle("POST", "/echo", [](const HttpRequest& r) {
    return HttpResponse{200, "", r.body, {}};
  });
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).status, 413);
  EXPECT_TRUE(PeerClosed(fd));
  ::close(fd);
}

TEST(ClientListenerTest, OversizedHeaderIs431) {
  ClientListener::Options options = TestOptions();
  options.max_header_bytes = 1024;
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).status, 431);
  ::close(fd);
}

TEST(ClientListenerTest, Http2PrefaceReachesCallbackUnread) {
  std::promise<int> handed;
  ClientListener::Options options = TestOptions();
  options.on_grpc_connection = [&](int fd) { handed.set_value(fd); };
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  // Split inside the preface to exercise waiting for the rest.
  std::string_view preface = kHttp2Preface;
  SendAll(fd, preface.substr(0, 9));
  std::this_thread::sleep_for(milliseconds(50));
  SendAll(fd, std::string(preface.substr(9)) + "SETTINGS");
  auto future = handed.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  int server_fd = future.get();
  EXPECT_EQ(ReadExactly(server_fd, preface.size() + 8), std::string(preface) + "SETTINGS");
  // The callback owns the descriptor; the listener no longer counts it.
  EXPECT_EQ(listener.active_connections(), 0u);
  ::close(server_fd);
  ::close(fd);
}

TEST(ClientListenerTest, PeerStreamMagicReachesItsCallbackUnread) {
  std::promise<int> handed;
  ClientListener::Options options = TestOptions();
  options.on_grpc_connection = [&](int fd) { ::close(fd); };
  options.on_peer_stream = [&](int fd) { handed.set_value(fd); };
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, kPeerStreamMagic.substr(0, 3));
  std::this_thread::sleep_for(milliseconds(50));
  SendAll(fd, std::string(kPeerStreamMagic.substr(3)) + "frame");
  auto future = handed.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  int server_fd = future.get();
  EXPECT_EQ(ReadExactly(server_fd, kPeerStreamMagic.size() + 5), std::string(kPeerStreamMagic) + "frame");
  EXPECT_EQ(listener.active_connections(), 0u);
  ::close(server_fd);
  ::close(fd);
}

TEST(ClientListenerTest, PeerStreamWithoutTakerIsHttp1) {
  ClientListener listener(TestOptions());
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, std::string(kPeerStreamMagic) + "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).status, 400);
  ::close(fd);
}

TEST(ClientListenerTest, ExpectContinueGetsInterimResponse) {
  ClientListener listener(TestOptions());
  listener.Handle("PUT", "/echo", [](const HttpRequest& r) {
    return HttpResponse{200, "", r.body, {}};
  });
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(ReadExactly(fd, 25), "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(fd, "abc");
  RawResponse response = ReadResponse(fd);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "abc");
  ::close(fd);
}

TEST(ClientListenerTest, PartialPrefaceThenHalfCloseIsClosed) {
  std::atomic<bool> called{false};
  ClientListener::Options options = TestOptions();
  options.on_grpc_connection = [&](int fd) {
    called = true;
    ::close(fd);
  };
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, kHttp2Preface.substr(0, 10));
  ::shutdown(fd, SHUT_WR);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(PeerClosed(fd));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_FALSE(called.load());
  ::close(fd);
}

TEST(ClientListenerTest, SilentConnectionTimesOut) {
  ClientListener::Options options = TestOptions();
  options.first_bytes_timeout = milliseconds(200);
  std::atomic<int> timeouts{0};
  options.on_rejected = [&](RejectReason reason) {
    if (reason == RejectReason::kFirstBytesTimeout) ++timeouts;
  };
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(PeerClosed(fd));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(150));
  EXPECT_EQ(timeouts.load(), 1);
  EXPECT_EQ(listener.stats().rejected[static_cast<int>(RejectReason::kFirstBytesTimeout)], 1u);
  ::close(fd);
}

TEST(ClientListenerTest, HttpOnlyClosesHttp2) {
  std::atomic<bool> called{false};
  ClientListener::Options options = TestOptions();
  options.http_only = true;
  options.on_grpc_connection = [&](int fd) {
    called = true;
    ::close(fd);
  };
  ClientListener listener(options);
  listener.Handle("GET", "/metrics", Health);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, kHttp2Preface);
  EXPECT_TRUE(PeerClosed(fd));
  EXPECT_FALSE(called.load());
  ::close(fd);
}

// Over the cap the newcomer is served and the oldest idle connection goes.
TEST(ClientListenerTest, OverTotalLimitClosesOldestIdleConnection) {
  ClientListener::Options options = TestOptions();
  options.max_connections = 1;
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int first = ConnectTo(listener.port());
  SendAll(first, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(first).status, 200);  // now holds the only slot, idle
  int second = ConnectTo(listener.port());
  EXPECT_TRUE(PeerClosed(first));
  SendAll(second, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(second).status, 200);
  EXPECT_EQ(listener.stats().rejected[static_cast<int>(RejectReason::kTotalLimit)], 1u);
  ::close(second);
  ::close(first);
}

TEST(ClientListenerTest, StopEndsIdleKeepAliveConnections) {
  auto listener = std::make_unique<ClientListener>(TestOptions());
  listener->Handle("GET", "/health", Health);
  ASSERT_TRUE(listener->Start().ok());
  int fd = ConnectTo(listener->port());
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).status, 200);
  auto start = std::chrono::steady_clock::now();
  listener->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(PeerClosed(fd));
  ::close(fd);
  EXPECT_LT(ConnectTo(listener->port()), 0);
}

TEST(ClientListenerTest, BindFailureIsAStatus) {
  ClientListener first(TestOptions());
  ASSERT_TRUE(first.Start().ok());
  ClientListener::Options options = TestOptions();
  options.port = first.port();
  ClientListener second(options);
  Status status = second.Start();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("address already in use"), std::string::npos) << status.message();
}

size_t Rejected(const ClientListener& listener, RejectReason reason) {
  return listener.stats().rejected[static_cast<int>(reason)];
}

// Polls `done` every 5 ms for up to kIoTimeoutMs.
bool Eventually(const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + milliseconds(kIoTimeoutMs);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return done();
}

// One GET /health on a fresh connection; the status, or 0.
int HealthOnNewConnection(uint16_t port) {
  int fd = ConnectTo(port);
  if (fd < 0) return 0;
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  int status = ReadResponse(fd).status;
  ::close(fd);
  return status;
}

// More silent and half-sent connections than the old thread-per-connection
// design allowed (512) hold no thread: a new client is answered at once, on a
// listener with a single handler thread.
TEST(ClientListenerTest, IdleAndPartialConnectionsDoNotBlockNewClients) {
  // Both ends live in this process: about 1500 descriptors.
  struct rlimit limit = {};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 4096) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 4096);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < 2048) GTEST_SKIP() << "RLIMIT_NOFILE too low: " << limit.rlim_cur;
  ClientListener::Options options = TestOptions();
  options.handler_threads = 1;
  options.first_bytes_timeout = milliseconds(30000);  // the test ends them, not the timeout
  options.read_timeout = milliseconds(30000);
  std::atomic<int> unidentified{0};
  options.on_unidentified_change = [&](int delta) { unidentified += delta; };
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());

  std::vector<int> held;
  for (int i = 0; i < 600; ++i) held.push_back(ConnectTo(listener.port()));  // silent
  for (int i = 0; i < 50; ++i) {
    int fd = ConnectTo(listener.port());
    SendAll(fd, "GET /health HTTP/1.1\r\nHost:");  // slowloris
    held.push_back(fd);
  }
  for (int i = 0; i < 50; ++i) {
    int fd = ConnectTo(listener.port());
    SendAll(fd, kHttp2Preface.substr(0, 20));  // a preface that never ends
    held.push_back(fd);
  }
  for (int i = 0; i < 50; ++i) {  // idle keep-alive after one request
    int fd = ConnectTo(listener.port());
    SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(ReadResponse(fd).status, 200);
    held.push_back(fd);
  }
  for (int fd : held) ASSERT_GE(fd, 0);
  ASSERT_TRUE(Eventually([&] { return listener.stats().unidentified == 650; }))
      << listener.stats().unidentified;
  EXPECT_EQ(unidentified.load(), 650);
  EXPECT_EQ(listener.stats().http1, 100u);

  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(HealthOnNewConnection(listener.port()), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  for (int fd : held) ::close(fd);
  EXPECT_TRUE(Eventually([&] { return listener.active_connections() == 0; }));
  EXPECT_EQ(unidentified.load(), 0);
}

TEST(ClientListenerTest, PerSourceLimitClosesOldestUnidentifiedOfThatSource) {
  ClientListener::Options options = TestOptions();
  options.max_connections_per_source = 3;
  std::atomic<int> per_source{0};
  options.on_rejected = [&](RejectReason reason) {
    if (reason == RejectReason::kPerSourceLimit) ++per_source;
  };
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int silent[3];
  for (int& fd : silent) fd = ConnectTo(listener.port());
  ASSERT_TRUE(Eventually([&] { return listener.stats().unidentified == 3; }));
  // The fourth still gets in and is served; the oldest silent one pays.
  EXPECT_EQ(HealthOnNewConnection(listener.port()), 200);
  EXPECT_TRUE(PeerClosed(silent[0]));
  EXPECT_EQ(per_source.load(), 1);
  EXPECT_EQ(Rejected(listener, RejectReason::kPerSourceLimit), 1u);
  EXPECT_EQ(listener.stats().unidentified, 2u);
  for (int fd : silent) ::close(fd);
}

TEST(ClientListenerTest, TotalLimitEvictsUnidentifiedBeforeIdleHttp) {
  ClientListener::Options options = TestOptions();
  options.max_connections = 2;
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int idle_http = ConnectTo(listener.port());
  SendAll(idle_http, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(ReadResponse(idle_http).status, 200);
  int silent = ConnectTo(listener.port());
  ASSERT_TRUE(Eventually([&] { return listener.stats().unidentified == 1; }));
  int newcomer = ConnectTo(listener.port());
  EXPECT_TRUE(PeerClosed(silent));
  SendAll(newcomer, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(newcomer).status, 200);
  // The older keep-alive connection survived.
  SendAll(idle_http, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(idle_http).status, 200);
  EXPECT_EQ(Rejected(listener, RejectReason::kTotalLimit), 1u);
  ::close(newcomer);
  ::close(silent);
  ::close(idle_http);
}

// A connection inside a handler is never evicted; with nothing evictable the
// newcomer is the one refused.
TEST(ClientListenerTest, TotalLimitRefusesNewcomerWhenNothingIsEvictable) {
  ClientListener::Options options = TestOptions();
  options.max_connections = 1;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> entered;
  ClientListener listener(options);
  listener.Handle("GET", "/slow", [&](const HttpRequest& r) {
    entered.set_value();
    released.wait();
    return Health(r);
  });
  ASSERT_TRUE(listener.Start().ok());
  int busy = ConnectTo(listener.port());
  SendAll(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  int refused = ConnectTo(listener.port());
  EXPECT_TRUE(PeerClosed(refused));
  EXPECT_EQ(Rejected(listener, RejectReason::kTotalLimit), 1u);
  release.set_value();
  EXPECT_EQ(ReadResponse(busy).status, 200);
  ::close(refused);
  ::close(busy);
}

TEST(ClientListenerTest, PartialPrefaceTimesOut) {
  std::atomic<bool> called{false};
  ClientListener::Options options = TestOptions();
  options.first_bytes_timeout = milliseconds(200);
  options.on_grpc_connection = [&](int fd) {
    called = true;
    ::close(fd);
  };
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, kHttp2Preface.substr(0, 23));
  EXPECT_TRUE(PeerClosed(fd));
  EXPECT_FALSE(called.load());
  EXPECT_EQ(Rejected(listener, RejectReason::kFirstBytesTimeout), 1u);
  ::close(fd);
}

// A preface sent one byte at a time, within the timeout, is classified and
// arrives whole and unread.
TEST(ClientListenerTest, DribbledPrefaceIsHandedOffUnread) {
  std::promise<int> handed;
  ClientListener::Options options = TestOptions();
  options.on_grpc_connection = [&](int fd) { handed.set_value(fd); };
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  for (char c : kHttp2Preface) {
    SendAll(fd, std::string_view(&c, 1));
    std::this_thread::sleep_for(milliseconds(5));
  }
  auto future = handed.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  int server_fd = future.get();
  EXPECT_EQ(ReadExactly(server_fd, kHttp2Preface.size()), std::string(kHttp2Preface));
  EXPECT_EQ(listener.stats().unidentified, 0u);
  ::close(server_fd);
  ::close(fd);
}

// Slowloris: a request whose headers trickle in is cut at read_timeout.
TEST(ClientListenerTest, TricklingRequestHitsReadTimeout) {
  ClientListener::Options options = TestOptions();
  options.read_timeout = milliseconds(300);
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "GET /health HTTP/1.1\r\n");
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    if (::send(fd, "X", 1, MSG_NOSIGNAL) != 1) {
      closed = true;
      break;
    }
    struct pollfd pfd = {fd, POLLIN, 0};
    if (::poll(&pfd, 1, 50) > 0) closed = true;  // EOF (or RST) from the listener
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(Rejected(listener, RejectReason::kReadTimeout), 1u);
  ::close(fd);
}

TEST(ClientListenerTest, IdleKeepAliveClosesQuietlyAtReadTimeout) {
  ClientListener::Options options = TestOptions();
  options.read_timeout = milliseconds(200);
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).status, 200);
  EXPECT_TRUE(PeerClosed(fd));
  EXPECT_EQ(Rejected(listener, RejectReason::kReadTimeout), 0u);  // idle is not an offence
  ::close(fd);
}

TEST(ClientListenerTest, PipelinedRequestsAreAnsweredInOrder) {
  ClientListener listener(TestOptions());
  listener.Handle("GET", "/a", [](const HttpRequest&) { return HttpResponse{200, "", "A", {}}; });
  listener.Handle("GET", "/b", [](const HttpRequest&) { return HttpResponse{200, "", "B", {}}; });
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  // Both responses may arrive in one segment (ReadResponse would drop the second).
  std::string data;
  while (data.find("\r\n\r\nB") == std::string::npos) {
    std::string chunk = ReadSome(fd);
    if (chunk.empty()) break;
    data += chunk;
  }
  size_t a = data.find("\r\n\r\nA");
  size_t b = data.find("\r\n\r\nB");
  ASSERT_NE(a, std::string::npos) << data;
  ASSERT_NE(b, std::string::npos) << data;
  EXPECT_LT(a, b);
  ::close(fd);
}

// A request being handled when Stop() begins still gets its response.
TEST(ClientListenerTest, StopLetsARunningHandlerAnswer) {
  auto listener = std::make_unique<ClientListener>(TestOptions());
  std::promise<void> entered;
  listener->Handle("GET", "/slow", [&](const HttpRequest& r) {
    entered.set_value();
    std::this_thread::sleep_for(milliseconds(200));
    return Health(r);
  });
  ASSERT_TRUE(listener->Start().ok());
  int fd = ConnectTo(listener->port());
  SendAll(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  listener->Stop();
  RawResponse response = ReadResponse(fd);
  EXPECT_EQ(response.status, 200);
  EXPECT_NE(response.head.find("Connection: close"), std::string::npos) << response.head;
  ::close(fd);
}

// A real gRPC server that has no port of its own, fed through the listener,
// next to HTTP on the same port.
TEST(ClientListenerTest, GrpcServerWorksThroughListener) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // Without at least one service of its own gRPC refuses to build the server
  // (the health service is only added at Start); this one answers UNIMPLEMENTED.
  grpc::CallbackGenericService unimplemented;
  builder.RegisterCallbackGenericService(&unimplemented);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  ClientListener::Options options = TestOptions();
  options.on_grpc_connection = [&](int fd) { grpc::AddInsecureChannelFromFd(server.get(), fd); };
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());

  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(listener.port()),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);  // HealthCheckRequest{service: ""}
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status status) { done.set_value(status); });
  grpc::Status status = done.get_future().get();
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING

  int fd = ConnectTo(listener.port());
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).body, R"({"health":"true"})");
  ::close(fd);

  listener.Stop();  // first, so no connection arrives at a stopped server
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

// Reads until `want` has arrived (or kIoTimeoutMs passes without a byte).
std::string ReadUntil(int fd, std::string_view want) {
  std::string data;
  while (data.find(want) == std::string::npos) {
    std::string chunk = ReadSome(fd);
    if (chunk.empty()) break;
    data += chunk;
  }
  return data;
}

TEST(ClientListenerTest, AsyncHandlerAnswersLaterWithoutHoldingAHandlerThread) {
  auto options = TestOptions();
  options.handler_threads = 1;
  ClientListener listener(options);
  std::mutex mu;
  std::shared_ptr<ResponseWriter> parked;
  listener.HandleAsync("POST", "/wait", [&](const HttpRequest&, std::shared_ptr<ResponseWriter> w) {
    std::lock_guard<std::mutex> lock(mu);
    parked = std::move(w);
  });
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int waiting = ConnectTo(listener.port());
  SendAll(waiting, "POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  // The only handler thread is free for others meanwhile.
  int other = ConnectTo(listener.port());
  SendAll(other, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(other).status, 200);
  std::shared_ptr<ResponseWriter> w;
  for (int i = 0; i < 500 && !w; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
    std::lock_guard<std::mutex> lock(mu);
    w = parked;
  }
  ASSERT_TRUE(w);
  HttpResponse response;
  response.body = "later";
  w->Send(response);
  w->Send(response);  // a second answer is ignored
  RawResponse got = ReadResponse(waiting);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, "later");
  // Keep-alive: the connection serves the next request.
  SendAll(waiting, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(waiting).status, 200);
  ::close(waiting);
  ::close(other);
}

TEST(ClientListenerTest, StreamsChunksAndTellsTheHandlerWhenTheClientLeaves) {
  ClientListener listener(TestOptions());
  std::promise<std::shared_ptr<ResponseWriter>> got_writer;
  std::promise<void> closed;
  listener.HandleAsync("POST", "/stream", [&](const HttpRequest&, std::shared_ptr<ResponseWriter> w) {
    HttpResponse head;
    head.content_type = "application/json";
    EXPECT_TRUE(w->Begin(head));
    EXPECT_TRUE(w->Write("{\"n\":1}\n"));
    w->OnClose([&closed] { closed.set_value(); });
    got_writer.set_value(w);
  });
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  std::string data = ReadUntil(fd, "{\"n\":1}\n\r\n");
  EXPECT_NE(data.find("Transfer-Encoding: chunked"), std::string::npos) << data;
  EXPECT_NE(data.find("Content-Type: application/json"), std::string::npos) << data;
  EXPECT_NE(data.find("\r\n\r\n8\r\n{\"n\":1}\n\r\n"), std::string::npos) << data;
  auto w = got_writer.get_future().get();
  EXPECT_TRUE(w->Write("{\"n\":2}\n"));
  EXPECT_NE(ReadUntil(fd, "{\"n\":2}").find("{\"n\":2}"), std::string::npos);
  ::close(fd);
  ASSERT_EQ(closed.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_FALSE(w->Write("{\"n\":3}\n"));
}

TEST(ClientListenerTest, StreamEndsWithTheLastChunkAndKeepsTheConnection) {
  ClientListener listener(TestOptions());
  listener.HandleAsync("POST", "/stream", [](const HttpRequest&, std::shared_ptr<ResponseWriter> w) {
    std::thread([w] {
      w->Begin(HttpResponse());
      w->Write("a");
      w->Write("bc");
      w->End();
      w->Write("ignored");
    }).detach();
  });
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  std::string data = ReadUntil(fd, "0\r\n\r\n");
  EXPECT_NE(data.find("\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"), std::string::npos) << data;
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).status, 200);
  ::close(fd);
}

TEST(ClientListenerTest, StreamToAClientThatDoesNotReadIsBounded) {
  auto options = TestOptions();
  options.max_stream_buffer_bytes = 1 << 20;
  options.write_timeout = milliseconds(300);
  ClientListener listener(options);
  std::promise<size_t> written;
  std::atomic<bool> closed{false};
  listener.HandleAsync("POST", "/stream", [&](const HttpRequest&, std::shared_ptr<ResponseWriter> w) {
    w->OnClose([&closed] { closed = true; });
    std::thread([w, &written, &closed] {
      w->Begin(HttpResponse());
      const std::string part(64 * 1024, 'x');
      size_t total = 0;
      // A refused part is retried (a writer that waits for room) until the
      // listener gives up on the connection; bounded by 10 s of refusals.
      for (int refused = 0; total < (size_t{1} << 30) && !closed && refused < 10000;) {
        if (w->Write(part)) {
          total += part.size();
        } else {
          ++refused;
          std::this_thread::sleep_for(milliseconds(1));
        }
      }
      written.set_value(total);
    }).detach();
  });
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  SendAll(fd, "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  auto f = written.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  // The client never reads: once the kernel's buffers are full nothing more
  // is taken, and after write_timeout the listener closes the connection.
  EXPECT_TRUE(closed);
  EXPECT_LT(f.get(), size_t{64} << 20);
  ::close(fd);
}

TEST(ClientListenerTest, StopClosesStreamsAndAnswersOptions) {
  auto options = TestOptions();
  options.answer_options = true;
  auto listener = std::make_unique<ClientListener>(options);
  std::promise<void> closed;
  std::shared_ptr<ResponseWriter> kept;
  listener->HandleAsync("POST", "/stream", [&](const HttpRequest&, std::shared_ptr<ResponseWriter> w) {
    w->Begin(HttpResponse());
    w->OnClose([&closed] { closed.set_value(); });
    kept = w;
  });
  ASSERT_TRUE(listener->Start().ok());
  int pre = ConnectTo(listener->port());
  SendAll(pre, "OPTIONS /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n");
  RawResponse preflight = ReadResponse(pre);
  EXPECT_EQ(preflight.status, 200);
  EXPECT_EQ(preflight.body, "");
  int fd = ConnectTo(listener->port());
  SendAll(fd, "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_NE(ReadUntil(fd, "\r\n\r\n").find("200 OK"), std::string::npos);
  const auto began = std::chrono::steady_clock::now();
  listener->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(2));
  EXPECT_EQ(closed.get_future().wait_for(std::chrono::seconds(0)), std::future_status::ready);
  listener.reset();
  // A writer kept past the listener is inert.
  EXPECT_FALSE(kept->Write("late"));
  kept->End();
  kept.reset();
  ::close(fd);
  ::close(pre);
}

}  // namespace
}  // namespace cairn::http
