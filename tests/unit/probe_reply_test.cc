// Where a probe is answered: at the member address its sender names inside
// it, never at the datagram's claimed source (a copy resent from a spoofed
// source must not make a node send there).
#include <gtest/gtest.h>

#include "codec.h"
#include "starling/sim/simulator.h"

namespace starling::membership {
namespace {

// The nodes that were sent an ack for `seq` by `from`.
std::vector<int> AcksFor(const std::vector<std::tuple<int, int, Bytes>>& wire, int from, uint32_t seq,
                         const std::string& cluster) {
  std::vector<int> to;
  for (const auto& [f, t, bytes] : wire) {
    if (f != from) continue;
    auto decoded = wire::DecodePacket(bytes, cluster);
    auto* msgs = std::get_if<std::vector<wire::Message>>(&decoded);
    if (msgs == nullptr) continue;
    for (const auto& m : *msgs)
      if (auto* ack = std::get_if<wire::Ack>(&m); ack != nullptr && ack->seq == seq) to.push_back(t);
  }
  return to;
}

TEST(ProbeReply, APingIsAnsweredAtTheAddressItNamesNotItsSource) {
  sim::Cluster c(5, sim::ProfileConfig("local"));
  for (int i = 0; i < 3; ++i) c.Add();
  ASSERT_TRUE(c.FormAll(std::chrono::seconds(1), std::chrono::seconds(30)));
  std::vector<std::tuple<int, int, Bytes>> wire;
  c.OnWire([&](sim::Cluster::Wire kind, int from, int to, const Bytes& bytes) {
    if (kind == sim::Cluster::Wire::kPacket) wire.emplace_back(from, to, bytes);
  });
  const std::string cluster = c.node(0).config().cluster;
  // Node 1's ping of node 0, arriving with node 2's address as its source.
  const uint32_t seq = 0xabcde;
  const Bytes ping = wire::EncodePacket(cluster, {wire::Ping{seq, c.name(0), c.name(1), c.addr(1)}});
  c.node(0).HandlePacket(c.addr(2), ping);
  c.loop().RunFor(std::chrono::seconds(1));
  EXPECT_EQ(AcksFor(wire, 0, seq, cluster), std::vector<int>{1});
  EXPECT_EQ(c.node(0).counters().at("probes_answered_at_named_address"), 1u);

  // The same for an indirect probe: the ack goes back to the asker it names.
  const uint32_t seq2 = 0xabcdf;
  const Bytes ask =
      wire::EncodePacket(cluster, {wire::IndirectPing{seq2, c.name(1), c.addr(1), false, c.name(2), c.addr(2)}});
  c.node(0).HandlePacket(c.addr(1), ask);
  c.loop().RunFor(std::chrono::seconds(1));
  EXPECT_EQ(AcksFor(wire, 0, seq2, cluster), std::vector<int>{2});
}

}  // namespace
}  // namespace starling::membership
