#include "frames.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include "schema/gossip.capnp.h"
#include "starling/capnp_bytes.h"

namespace starling::frames {

Bytes PingPacket(size_t pings, const std::string& target) {
  capnp::MallocMessageBuilder b;
  auto messages = b.initRoot<wire::Packet>().initMessages(static_cast<unsigned>(pings));
  for (unsigned i = 0; i < pings; ++i) {
    auto ping = messages[i].initPing();
    ping.setSeqNo(7 + i);
    ping.setTarget(target);
    ping.setSourceName("intruder");
    ping.setSourceAddr("127.0.0.1:9");
  }
  return capnp_bytes::Flat(b);
}

Bytes Envelope(uint16_t version, const std::string& cluster, const Bytes& payload) {
  capnp::MallocMessageBuilder b;
  auto env = b.initRoot<wire::Envelope>();
  env.setVersion(version);
  env.setCluster(cluster);
  env.setPayload(kj::arrayPtr(payload.data(), payload.size()));
  return capnp_bytes::Flat(b);
}

}  // namespace starling::frames
