// Hostile bytes at the gossip port: random datagrams, truncated messages,
// foreign protocol versions and cluster names, garbage stream frames. The
// daemon must count them, keep serving and stay in the cluster.
#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "local_cluster.h"
#include "schema/gossip.capnp.h"
#include "starling/membership/config.h"

namespace starling::itest {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes ToBytes(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return Bytes(bytes.begin(), bytes.end());
}

Bytes PingPacket() {
  capnp::MallocMessageBuilder b;
  auto messages = b.initRoot<wire::Packet>().initMessages(1);
  auto ping = messages[0].initPing();
  ping.setSeqNo(7);
  ping.setTarget("node0");
  ping.setSourceName("intruder");
  ping.setSourceAddr("127.0.0.1:9");
  return ToBytes(b);
}

Bytes Envelope(uint16_t version, const std::string& cluster, const Bytes& payload) {
  capnp::MallocMessageBuilder b;
  auto env = b.initRoot<wire::Envelope>();
  env.setVersion(version);
  env.setCluster(cluster);
  env.setPayload(kj::arrayPtr(payload.data(), payload.size()));
  return ToBytes(b);
}

sockaddr_in Endpoint(const std::string& addr) {
  size_t colon = addr.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr);
  return sa;
}

class UdpSender {
 public:
  explicit UdpSender(const std::string& addr) : to_(Endpoint(addr)), fd_(socket(AF_INET, SOCK_DGRAM, 0)) {}
  ~UdpSender() { close(fd_); }
  bool Send(const Bytes& b) {
    return sendto(fd_, b.data(), b.size(), 0, reinterpret_cast<const sockaddr*>(&to_), sizeof(to_)) ==
           static_cast<ssize_t>(b.size());
  }

 private:
  sockaddr_in to_;
  int fd_;
};

// Sends raw bytes on a fresh TCP connection and closes it.
void SendTcp(const std::string& addr, const Bytes& b) {
  sockaddr_in to = Endpoint(addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) == 0) {
    (void)!send(fd, b.data(), b.size(), MSG_NOSIGNAL);
  }
  close(fd);
}

uint64_t Counter(const nlohmann::json& info, const std::string& name) {
  const auto& counters = info["counters"];
  return counters.contains(name) ? counters[name].get<uint64_t>() : 0;
}

uint64_t BadPacketSum(const nlohmann::json& info) {
  uint64_t sum = 0;
  for (const auto& [name, value] : info["counters"].items()) {
    if (name.rfind("bad_packets.", 0) == 0) sum += value.get<uint64_t>();
  }
  return sum;
}

TEST(BadInput, GarbageIsCountedAndTheDaemonKeepsServing) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  ASSERT_EQ(c.Start("node1", {"--join", c.node(0).addr}), 1);
  ASSERT_EQ(c.Start("node2", {"--join", c.node(0).addr}), 2);
  const std::map<std::string, std::string> all_alive = {
      {"node0", "alive"}, {"node1", "alive"}, {"node2", "alive"}};
  ASSERT_EQ(c.AwaitView(c.All(), all_alive, 30s), "");
  std::optional<nlohmann::json> before = c.Info(0);
  ASSERT_TRUE(before);

  const std::string target = c.node(0).addr;
  UdpSender udp(target);
  uint64_t sent = 0;
  auto send = [&](const Bytes& b) {
    ASSERT_TRUE(udp.Send(b));
    ++sent;
  };

  uint32_t seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  std::mt19937 rng(seed);
  for (int i = 0; i < 50; ++i) {
    Bytes junk(1 + rng() % 1400);
    for (auto& byte : junk) byte = static_cast<uint8_t>(rng());
    send(junk);
  }
  const Bytes good = Envelope(membership::kProtocolVersion, "itest", PingPacket());
  for (size_t len = 1; len < good.size(); len += std::max<size_t>(1, good.size() / 20)) {
    send(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)));
  }
  send(Envelope(static_cast<uint16_t>(membership::kProtocolMax + 100), "itest", PingPacket()));
  send(Envelope(membership::kProtocolVersion, "someone-elses-cluster", PingPacket()));
  send(Envelope(membership::kProtocolVersion, "itest", Bytes(24, 0xff)));  // payload is not a Packet

  // Streams: an absurd length prefix, and a frame of junk.
  SendTcp(target, {0xff, 0xff, 0xff, 0x7f, 1, 2, 3});
  SendTcp(target, {16, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});

  // Each datagram above is malformed for a different reason; all of them
  // must be counted (loopback does not drop a hundred datagrams).
  std::optional<nlohmann::json> after;
  bool counted = WaitFor(
      [&] {
        after = c.Info(0);
        return after && BadPacketSum(*after) >= BadPacketSum(*before) + sent &&
               Counter(*after, "bad_packets.version") > Counter(*before, "bad_packets.version");
      },
      10s);
  ASSERT_TRUE(after) << "the daemon stopped answering `starling info`";
  EXPECT_TRUE(counted) << "sent " << sent << " bad datagrams; counters now: " << (*after)["counters"].dump();
  EXPECT_GT(Counter(*after, "bad_packets.version"), 0u);
  EXPECT_GT(Counter(*after, "bad_packets.cluster"), 0u);
  EXPECT_GT(Counter(*after, "bad_packets.decode"), 0u);

  // Still a member in good standing, on every node.
  EXPECT_EQ(c.AwaitView(c.All(), all_alive, 10s), "");
  // And the rejections are logged.
  EXPECT_NE(c.LogOf(0, 100000).find("bad"), std::string::npos) << "no log line about the bad packets";
}

}  // namespace
}  // namespace starling::itest
