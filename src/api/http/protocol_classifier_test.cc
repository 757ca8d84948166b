#include "api/http/protocol_classifier.h"

#include <gtest/gtest.h>

#include <string>

namespace cairn::http {
namespace {

TEST(ProtocolClassifierTest, PrefacePrefixesNeedMore) {
  for (size_t n = 1; n < kHttp2Preface.size(); ++n) {
    EXPECT_EQ(ClassifyPrefix(kHttp2Preface.substr(0, n)), ConnectionProtocol::kNeedMore) << n;
  }
  EXPECT_EQ(ClassifyPrefix(kHttp2Preface), ConnectionProtocol::kHttp2);
  EXPECT_EQ(ClassifyPrefix(std::string(kHttp2Preface) + "SETTINGS"), ConnectionProtocol::kHttp2);
}

TEST(ProtocolClassifierTest, HttpMethodsAreHttp1AtTheFirstDifferentByte) {
  EXPECT_EQ(ClassifyPrefix("G"), ConnectionProtocol::kHttp1);
  EXPECT_EQ(ClassifyPrefix("PUT / HTTP/1.1\r\n"), ConnectionProtocol::kHttp1);
  EXPECT_EQ(ClassifyPrefix("PR"), ConnectionProtocol::kNeedMore);
  EXPECT_EQ(ClassifyPrefix("PRX"), ConnectionProtocol::kHttp1);
  // Shorter than the preface and not a prefix of it: decided without waiting.
  EXPECT_EQ(ClassifyPrefix("GET / HTTP/1.0\r\n\r\n"), ConnectionProtocol::kHttp1);
}

TEST(ProtocolClassifierTest, TlsClientHelloIsRecognized) {
  EXPECT_EQ(ClassifyPrefix(std::string("\x16", 1)), ConnectionProtocol::kNeedMore);
  EXPECT_EQ(ClassifyPrefix(std::string("\x16\x03\x01\x02\x00", 5)), ConnectionProtocol::kTls);
  EXPECT_EQ(ClassifyPrefix(std::string("\x16\x01", 2)), ConnectionProtocol::kHttp1);
}

TEST(ProtocolClassifierTest, PeerStreamMagicIsRecognized) {
  for (size_t n = 1; n < kPeerStreamMagic.size(); ++n) {
    EXPECT_EQ(ClassifyPrefix(kPeerStreamMagic.substr(0, n)), ConnectionProtocol::kNeedMore) << n;
  }
  EXPECT_EQ(ClassifyPrefix(kPeerStreamMagic), ConnectionProtocol::kPeerStream);
  EXPECT_EQ(ClassifyPrefix(std::string(kPeerStreamMagic) + "frames"), ConnectionProtocol::kPeerStream);
  // A NUL byte followed by anything else is not a peer stream.
  EXPECT_EQ(ClassifyPrefix(std::string("\0CAX", 4)), ConnectionProtocol::kHttp1);
  EXPECT_EQ(ClassifyPrefix(std::string("\0", 1) + "GET"), ConnectionProtocol::kHttp1);
}

}  // namespace
}  // namespace cairn::http
