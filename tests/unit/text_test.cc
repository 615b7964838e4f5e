// Text from hooks and peers, made fit to show and to cut.
#include "starling/text.h"

#include <gtest/gtest.h>

namespace starling::text {
namespace {

TEST(Text, PrintableEscapesControlsAndReplacesInvalidBytes) {
  EXPECT_EQ(Printable("plain\ttext\n€"), "plain\ttext\n€");
  EXPECT_EQ(Printable("a\x1b[31mred\x7f"), "a\\x1b[31mred\\x7f");
  EXPECT_EQ(Printable("line\nnext\ttab", true), "line\\x0anext\\x09tab");
  EXPECT_EQ(Printable("\xc2\x9b" "2J"), "\\u{9b}2J");
  EXPECT_EQ(Printable("\xc2\xa0"), "\xc2\xa0");  // U+00A0 is no control
  EXPECT_EQ(Printable("bad \xff end"), "bad \xef\xbf\xbd end");
  EXPECT_EQ(Printable("cut \xe2\x82"), "cut \xef\xbf\xbd");
}

TEST(Text, CutsFallWhereACharacterStarts) {
  const std::string euros = "€€€€";  // 3 bytes each
  EXPECT_EQ(TailChars(euros, 12), euros);
  EXPECT_EQ(TailChars(euros, 7), "...€€");
  EXPECT_EQ(TailChars(euros, 2), "...");
  EXPECT_EQ(HeadChars(euros, 7), "€€");
  EXPECT_EQ(HeadChars(euros, 2), "");
  EXPECT_EQ(HeadChars("abc", 2), "ab");
  for (size_t n = 0; n < 14; ++n) {
    EXPECT_TRUE(IsUtf8(TailChars(euros, n))) << n;
    EXPECT_TRUE(IsUtf8(HeadChars(euros, n))) << n;
  }
  EXPECT_EQ(Width("a€b"), 3u);
}

TEST(Text, NearestNameForDidYouMean) {
  const std::vector<std::string> commands = {"members", "join", "rollout", "rollback", "keys", "keygen", "info"};
  EXPECT_EQ(NearestName("membrs", commands), "members");  // a letter left out
  EXPECT_EQ(NearestName("memebrs", commands), "members");  // two swapped
  EXPECT_EQ(NearestName("mem", commands), "members");  // the only one it begins
  EXPECT_EQ(NearestName("roll", commands), "rollout or rollback");
  EXPECT_EQ(NearestName("jion", commands), "join");
  EXPECT_EQ(NearestName("xyzzy", commands), "") << "nothing near enough";
  EXPECT_EQ(NearestName("ab", commands), "");
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
}

}  // namespace
}  // namespace starling::text
