#include "peer/peer_stream.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "api/http/protocol_classifier.h"

namespace cairn::peer {
namespace {

cairnpb::PeerBatch Batch(uint64_t cluster, uint64_t from, uint64_t to, int proposals) {
  cairnpb::PeerBatch b;
  b.set_cluster_id(cluster);
  b.set_from(from);
  b.set_to(to);
  for (int i = 0; i < proposals; i++) b.add_proposals(std::string(100 + i, 'p'));
  return b;
}

TEST(FrameDecoderTest, RoundTripsFramesFedByteByByte) {
  std::string wire;
  AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, 2), &wire);
  AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, 0), &wire);
  cairnpb::StreamRefusal refusal;
  refusal.set_code(9);
  refusal.set_message("cluster ID mismatch");
  AppendFrame(FrameKind::kRefusal, refusal, &wire);
  FrameDecoder d(1 << 20);
  std::vector<std::pair<FrameKind, std::string>> frames;
  for (char c : wire) {
    d.Feed(std::string_view(&c, 1));
    FrameKind kind;
    std::string_view payload;
    std::string error;
    FrameDecoder::Result r;
    while ((r = d.Next(&kind, &payload, &error)) == FrameDecoder::Result::kFrame) {
      frames.emplace_back(kind, std::string(payload));
    }
    ASSERT_EQ(r, FrameDecoder::Result::kNeedMore) << error;
  }
  ASSERT_EQ(frames.size(), 3u);
  cairnpb::PeerBatch b;
  ASSERT_TRUE(b.ParseFromString(frames[0].second));
  EXPECT_EQ(frames[0].first, FrameKind::kBatch);
  EXPECT_EQ(b.proposals_size(), 2);
  EXPECT_EQ(b.proposals(1), std::string(101, 'p'));
  ASSERT_TRUE(b.ParseFromString(frames[1].second));
  EXPECT_EQ(b.to(), 3u);
  cairnpb::StreamRefusal r;
  ASSERT_TRUE(r.ParseFromString(frames[2].second));
  EXPECT_EQ(frames[2].first, FrameKind::kRefusal);
  EXPECT_EQ(r.message(), "cluster ID mismatch");
}

TEST(FrameDecoderTest, AStreamThatLostBytesFailsAtOnce) {
  std::string wire;
  AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, 3), &wire);
  AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, 3), &wire);
  // A proxy swallowed the first 40 bytes: the header read from the middle
  // of a payload does not check out.
  FrameDecoder d(1 << 30);
  d.Feed(std::string_view(wire).substr(40));
  FrameKind kind;
  std::string_view payload;
  std::string error;
  EXPECT_EQ(d.Next(&kind, &payload, &error), FrameDecoder::Result::kBad);
  EXPECT_EQ(error, "bad frame header checksum");
}

TEST(FrameDecoderTest, AFrameOverTheLimitIsRefusedBeforeItArrives) {
  std::string wire;
  AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, 10), &wire);
  FrameDecoder d(100);
  d.Feed(std::string_view(wire).substr(0, kFrameHeaderBytes));
  FrameKind kind;
  std::string_view payload;
  std::string error;
  EXPECT_EQ(d.Next(&kind, &payload, &error), FrameDecoder::Result::kBad);
  EXPECT_NE(error.find("more than 100"), std::string::npos) << error;
}

// A receiver whose deliver records batches and refuses cluster 666.
struct Recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<cairnpb::PeerBatch> batches;
  PeerStreamReceiver::Deliver deliver() {
    return [this](cairnpb::PeerBatch* b, const std::string&) {
      if (b->cluster_id() == 666) return Status(Code::kFailedPrecondition, "cluster ID mismatch");
      std::lock_guard<std::mutex> lock(mu);
      batches.push_back(*b);
      cv.notify_all();
      return Status::Ok();
    };
  }
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(5), [&] { return batches.size() >= n; });
  }
};

void Write(int fd, const std::string& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
}

// Reads until the other end closes (5 s at most); what arrived.
std::string ReadToClose(int fd) {
  std::string got;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
  ADD_FAILURE() << "not closed";
  return got;
}

TEST(PeerStreamReceiverTest, DeliversBatchesInOrder) {
  Recorder rec;
  PeerStreamReceiver receiver(rec.deliver(), 1 << 20);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  receiver.Adopt(sv[1]);
  std::string wire(http::kPeerStreamMagic);
  for (int i = 0; i < 5; i++) AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, i), &wire);
  // In two writes split inside the magic and inside a frame.
  Write(sv[0], wire.substr(0, 5));
  Write(sv[0], wire.substr(5, 60));
  Write(sv[0], wire.substr(65));
  ASSERT_TRUE(rec.WaitFor(5));
  for (int i = 0; i < 5; i++) EXPECT_EQ(rec.batches[i].proposals_size(), i);
  ::close(sv[0]);
  receiver.Stop();
}

TEST(PeerStreamReceiverTest, ARefusedStreamIsToldWhyAndClosed) {
  Recorder rec;
  PeerStreamReceiver receiver(rec.deliver(), 1 << 20);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  receiver.Adopt(sv[1]);
  std::string wire(http::kPeerStreamMagic);
  AppendFrame(FrameKind::kBatch, Batch(666, 2, 3, 1), &wire);
  Write(sv[0], wire);
  const std::string reply = ReadToClose(sv[0]);
  FrameDecoder d(1 << 20);
  d.Feed(reply);
  FrameKind kind;
  std::string_view payload;
  std::string error;
  ASSERT_EQ(d.Next(&kind, &payload, &error), FrameDecoder::Result::kFrame);
  EXPECT_EQ(kind, FrameKind::kRefusal);
  cairnpb::StreamRefusal r;
  ASSERT_TRUE(r.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
  EXPECT_EQ(r.code(), static_cast<int32_t>(Code::kFailedPrecondition));
  EXPECT_EQ(r.message(), "cluster ID mismatch");
  EXPECT_TRUE(rec.batches.empty());
  ::close(sv[0]);
}

TEST(PeerStreamReceiverTest, GarbageClosesTheStreamWithoutAnswer) {
  Recorder rec;
  PeerStreamReceiver receiver(rec.deliver(), 1 << 20);
  for (const std::string& garbage :
       {std::string(64, '\xff'), std::string(kFrameHeaderBytes, '\0') + "x",
        // A good header whose payload is not a PeerBatch.
        [] {
          std::string w;
          AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, 1), &w);
          w[kFrameHeaderBytes] = '\xff';
          return w;
        }()}) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    receiver.Adopt(sv[1]);
    Write(sv[0], std::string(http::kPeerStreamMagic) + garbage);
    EXPECT_EQ(ReadToClose(sv[0]), "");
    ::close(sv[0]);
  }
  EXPECT_TRUE(rec.batches.empty());
}

TEST(PeerStreamReceiverTest, ANewerStreamFromTheSameMemberClosesTheOlder) {
  Recorder rec;
  PeerStreamReceiver receiver(rec.deliver(), 1 << 20);
  int old_sv[2], new_sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, old_sv), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, new_sv), 0);
  receiver.Adopt(old_sv[1]);
  std::string wire(http::kPeerStreamMagic);
  AppendFrame(FrameKind::kBatch, Batch(1, 7, 3, 0), &wire);
  Write(old_sv[0], wire);
  ASSERT_TRUE(rec.WaitFor(1));
  receiver.Adopt(new_sv[1]);
  Write(new_sv[0], wire);
  ASSERT_TRUE(rec.WaitFor(2));
  EXPECT_EQ(ReadToClose(old_sv[0]), "");
  ::close(old_sv[0]);
  ::close(new_sv[0]);
}

TEST(PeerStreamReceiverTest, ConnectionsBeyondTheLimitAreClosed) {
  Recorder rec;
  PeerStreamReceiver receiver(rec.deliver(), 1 << 20, /*max_connections=*/2);
  std::vector<int> ours;
  for (int i = 0; i < 3; i++) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    receiver.Adopt(sv[1]);
    ours.push_back(sv[0]);
  }
  EXPECT_EQ(ReadToClose(ours[2]), "");
  // The first two still work; Stop closes them.
  std::string wire(http::kPeerStreamMagic);
  AppendFrame(FrameKind::kBatch, Batch(1, 2, 3, 0), &wire);
  Write(ours[0], wire);
  ASSERT_TRUE(rec.WaitFor(1));
  receiver.Stop();
  EXPECT_EQ(ReadToClose(ours[0]), "");
  EXPECT_EQ(ReadToClose(ours[1]), "");
  for (int fd : ours) ::close(fd);
}

}  // namespace
}  // namespace cairn::peer
