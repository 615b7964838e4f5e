// Artifact transfer: the requests and replies peers exchange over the stream
// transport (schema/artifact.capnp), and the catalog manifests that arrive as
// JSON in the desired-state log. Beyond not crashing: whatever decodes must
// encode and decode back the same (a node answers and forwards what it
// accepted), and an accepted manifest must be one the store can use safely.
#include <cstddef>
#include <cstdint>
#include <string>

#include "artifacts.h"
#include "fuzz_check.h"

using namespace starling;
using namespace starling::node;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView bytes(data, size);
  if (auto r = DecodeArtifactRequest(bytes); r.ok()) {
    FUZZ_CHECK(IsArtifactDigest(r->digest), r->digest);
    auto again = DecodeArtifactRequest(EncodeArtifactRequest(r->digest, r->chunk));
    FUZZ_CHECK(again.ok() && *again == *r, "request does not round-trip: " + r->digest);
  }
  if (auto r = DecodeArtifactReply(bytes); r.ok()) {
    auto again = DecodeArtifactReply(EncodeArtifactReply(*r));
    FUZZ_CHECK(again.ok() && *again == *r, "reply does not round-trip");
  }
  const std::string text(reinterpret_cast<const char*>(data), size);
  const store::Json j = store::Json::parse(text, nullptr, false);
  if (!j.is_discarded()) {
    if (auto m = ArtifactManifest::FromJson(j); m.ok()) {
      FUZZ_CHECK(m->chunks.size() == m->ChunkCount(), text.substr(0, 300));
      uint64_t total = 0;
      for (size_t i = 0; i < m->ChunkCount(); ++i) total += m->ChunkLength(i);
      FUZZ_CHECK(total == m->size, text.substr(0, 300));
      auto again = ArtifactManifest::FromJson(m->ToJson());
      FUZZ_CHECK(again.ok() && *again == *m, "manifest does not round-trip: " + text.substr(0, 300));
    }
  }
  return 0;
}
