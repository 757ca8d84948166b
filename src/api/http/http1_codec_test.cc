#include "api/http/http1_codec.h"

#include <gtest/gtest.h>

#include <string>

namespace cairn::http {
namespace {

using State = Http1RequestReader::State;

TEST(Http1RequestReaderTest, ByteAtATimeThenPipelinedRequest) {
  Http1RequestReader reader(1024, 1024);
  EXPECT_FALSE(reader.started());
  const std::string first = "POST /v3/kv/put?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab";
  for (size_t i = 0; i + 1 < first.size(); ++i) {
    ASSERT_EQ(reader.Feed(first.substr(i, 1)), State::kNeedMore) << i;
    EXPECT_TRUE(reader.started());
  }
  ASSERT_EQ(reader.Feed(first.substr(first.size() - 1) + "GET /b HTTP/1.0\r\n\r\n"), State::kDone);
  HttpRequest request = reader.TakeRequest("1.2.3.4:5");
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/v3/kv/put");
  EXPECT_EQ(request.query, "x=1");
  EXPECT_EQ(request.body, "ab");
  EXPECT_EQ(request.Header("HOST"), "h");
  EXPECT_EQ(request.remote_address, "1.2.3.4:5");
  EXPECT_TRUE(reader.keep_alive());
  // The pipelined second request was buffered and parses on Next().
  ASSERT_EQ(reader.Next(), State::kDone);
  EXPECT_EQ(reader.TakeRequest("").path, "/b");
  EXPECT_FALSE(reader.keep_alive());
  EXPECT_EQ(reader.version(), 10u);
  EXPECT_EQ(reader.Next(), State::kNeedMore);
  EXPECT_FALSE(reader.started());
}

TEST(Http1RequestReaderTest, ExpectContinueIsReportedOnce) {
  Http1RequestReader reader(1024, 1024);
  ASSERT_EQ(reader.Feed("PUT / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"),
            State::kNeedMore);
  EXPECT_TRUE(reader.TakeContinueRequest());
  EXPECT_FALSE(reader.TakeContinueRequest());
  EXPECT_EQ(reader.Feed("abc"), State::kDone);
}

TEST(Http1RequestReaderTest, LimitsAndGarbageGiveTheirResponses) {
  Http1RequestReader small_body(1024, 4);
  ASSERT_EQ(small_body.Feed("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), State::kError);
  EXPECT_EQ(small_body.error_response()->status, 413);

  Http1RequestReader small_header(64, 1024);
  ASSERT_EQ(small_header.Feed("GET / HTTP/1.1\r\nX: " + std::string(100, 'a')), State::kError);
  EXPECT_EQ(small_header.error_response()->status, 431);

  Http1RequestReader garbage(1024, 1024);
  ASSERT_EQ(garbage.Feed(std::string("\x16\x03\x01\x00\x05hello\r\n\r\n", 14)), State::kError);
  EXPECT_EQ(garbage.error_response()->status, 400);

  Http1RequestReader half(1024, 1024);
  ASSERT_EQ(half.Feed("GET / HTTP/1.1\r\nHo"), State::kNeedMore);
  EXPECT_EQ(half.FeedEof(), State::kError);
  EXPECT_FALSE(half.error_response().has_value());  // nobody to answer
}

TEST(SerializeResponseTest, HeadersBodyAndHead) {
  HttpResponse response{201, "application/json", "{}", {{"X-A", "1"}, {"X-Bad", "a\r\nInjected: 1"}}};
  std::string bytes = SerializeResponse(response, {{"Access-Control-Allow-Origin", "*"}}, 11,
                                        /*keep_alive=*/true, /*head_only=*/false);
  EXPECT_EQ(bytes.rfind("HTTP/1.1 201 Created\r\n", 0), 0u) << bytes;
  EXPECT_NE(bytes.find("X-A: 1\r\n"), std::string::npos);
  EXPECT_EQ(bytes.find("Injected"), std::string::npos);
  EXPECT_NE(bytes.find("Access-Control-Allow-Origin: *\r\n"), std::string::npos);
  EXPECT_NE(bytes.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_EQ(bytes.substr(bytes.size() - 6), "\r\n\r\n{}");

  std::string head = SerializeResponse(response, {}, 10, /*keep_alive=*/false, /*head_only=*/true);
  EXPECT_EQ(head.rfind("HTTP/1.0 201 Created\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
}

}  // namespace
}  // namespace cairn::http
