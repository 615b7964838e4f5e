// Desired-state documents: YAML or JSON text from `starling apply` (any user
// the socket lets in) and, re-serialized, every document a peer's log entry
// carries. Beyond not crashing, the functions must keep the promises in
// store/include/starling/store/document.h, since their output is hashed and
// compared across nodes: a broken round trip means nodes disagree on the
// desired state.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "starling/store/document.h"

namespace store = starling::store;
using starling::Status;

namespace {

std::string Clip(const std::string& s) { return s.substr(0, 400); }

// Reads `text` back and expects the same document.
void CheckReadsBack(const std::string& text, const store::Json& doc, const char* what) {
  auto again = store::ParseDocument(text);
  FUZZ_CHECK(again.ok(),
             std::string(what) + " does not parse back: " + again.status().message() + "\n" + Clip(text));
  FUZZ_CHECK(store::CanonicalJson(*again) == store::CanonicalJson(doc),
             std::string(what) + " reads back different:\n" + Clip(store::CanonicalJson(doc)) + "\n" +
                 Clip(store::CanonicalJson(*again)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // Durations come from the same text fields; cheap to try on every input.
  if (auto d = store::ParseDuration(text); d.ok()) FUZZ_CHECK(d->count() >= 0, std::string(text));

  auto parsed = store::ParseDocument(text);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() == Status::Code::kInvalidArgument, parsed.status().ToString());
    FUZZ_CHECK(!parsed.status().message().empty(), "empty error");
    return 0;
  }
  const store::Json& doc = *parsed;
  FUZZ_CHECK(doc.is_object(), "a document that is not a mapping was accepted");

  const Status valid = store::ValidateDocument(doc);
  FUZZ_CHECK(valid.ok() || valid.code() == Status::Code::kInvalidArgument, valid.ToString());

  // Functions on the parsed form never fail, valid document or not.
  const std::string canonical = store::CanonicalJson(doc);
  CheckReadsBack(canonical, doc, "canonical JSON");
  CheckReadsBack(store::ToYaml(doc), doc, "ToYaml output");

  auto edges = store::ServiceEdges(doc);
  FUZZ_CHECK(std::is_sorted(edges.begin(), edges.end()) &&
                 std::adjacent_find(edges.begin(), edges.end()) == edges.end(),
             "service edges not sorted and unique");

  FUZZ_CHECK(store::Diff(doc, doc).empty(), "a document differs from itself");
  FUZZ_CHECK(store::Diff(nullptr, doc).size() == doc.size(), "Diff(null, doc) must list every section once");

  auto objects = store::SplitObjects(doc);
  store::Json joined = store::JoinObjects(objects);
  if (valid.ok()) {
    // The one documented loss: an empty map section.
    store::Json expected = doc;
    for (const char* section : {"packages", "services", "nodes"})
      if (auto it = expected.find(section); it != expected.end() && it->is_object() && it->empty())
        expected.erase(it);
    FUZZ_CHECK(store::CanonicalJson(joined) == store::CanonicalJson(expected),
               "split and join changed a valid document:\n" + Clip(store::CanonicalJson(expected)) + "\n" +
                   Clip(store::CanonicalJson(joined)));
    for (const auto& [key, _] : objects) FUZZ_CHECK(store::SectionOwns(doc, key), "not owned: " + key);
  }
  return 0;
}
