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
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

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
  options.read_timeout = milliseconds(200);
  ClientListener listener(options);
  ASSERT_TRUE(listener.Start().ok());
  int fd = ConnectTo(listener.port());
  EXPECT_TRUE(PeerClosed(fd));
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

TEST(ClientListenerTest, TooManyConnectionsAreClosed) {
  ClientListener::Options options = TestOptions();
  options.max_connections = 1;
  ClientListener listener(options);
  listener.Handle("GET", "/health", Health);
  ASSERT_TRUE(listener.Start().ok());
  int first = ConnectTo(listener.port());
  SendAll(first, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ReadResponse(first).status, 200);  // now holds the only slot
  int second = ConnectTo(listener.port());
  EXPECT_TRUE(PeerClosed(second));
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

}  // namespace
}  // namespace cairn::http
