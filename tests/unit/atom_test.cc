// Interned values: equal ones share one copy, the pool forgets a value when
// its last handle goes, and handles cross threads.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "starling/atom.h"
#include "starling/membership/config.h"

namespace starling {
namespace {

TEST(Atom, EqualTextsShareOneCopyThatGoesWithTheLastHandle) {
  const size_t before = Atom::pooled();
  {
    Atom a("member-with-a-long-name-0001");
    Atom b(std::string("member-with-a-long-name-0001"));
    EXPECT_TRUE(a.same(b));
    EXPECT_EQ(a.c_str(), b.c_str());
    EXPECT_EQ(Atom::pooled(), before + 1);
    Atom c = a;
    a = Atom("another");
    EXPECT_EQ(Atom::pooled(), before + 2);
    EXPECT_EQ(c, b);
    EXPECT_NE(a, b);
  }
  EXPECT_EQ(Atom::pooled(), before) << "the pool kept values nobody holds";
}

TEST(Atom, ReadsAndComparesLikeTheString) {
  Atom a("n12");
  const std::string s = "n12";
  EXPECT_EQ(a, s);
  EXPECT_EQ(a, "n12");
  EXPECT_EQ(a, std::string_view("n12"));
  EXPECT_LT(Atom("a"), Atom("b"));
  EXPECT_LT(Atom("a"), std::string("b"));
  EXPECT_EQ(a + ":7946", "n12:7946");
  EXPECT_EQ(fmt::format("<{}>", a), "<n12>");
  EXPECT_TRUE(Atom().empty());
  EXPECT_TRUE(Atom("").same(Atom()));  // the empty text holds nothing in the pool
  std::map<std::string, int> by_name{{"n12", 1}};
  EXPECT_EQ(by_name.at(a), 1);
  std::map<Atom, int, std::less<>> by_atom{{Atom("n12"), 2}};
  EXPECT_EQ(by_atom.find(s)->second, 2);
}

TEST(TagSet, EqualTagsShareOneMap) {
  membership::Tags t{{"role", "web"}, {"zone", "a"}};
  membership::TagSet x(t), y(membership::Tags{{"role", "web"}, {"zone", "a"}});
  EXPECT_TRUE(x.same(y));
  EXPECT_EQ(x, t);
  EXPECT_EQ(x.at("zone"), "a");
  EXPECT_EQ(x.find("nope"), x.end());
  membership::TagSet z(membership::Tags{{"role", "db"}});
  EXPECT_FALSE(x == z);
  EXPECT_TRUE(membership::TagSet().empty());
}

// Handles are copied and dropped on several threads at once while others
// intern the same texts: the counts stay right and the pool empties.
TEST(Atom, HandlesCrossThreads) {
  const size_t before = Atom::pooled();
  {
    std::vector<Atom> shared;
    for (int i = 0; i < 64; ++i) shared.emplace_back("shared-" + std::to_string(i));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&shared, t] {
        for (int round = 0; round < 2000; ++round) {
          std::vector<Atom> mine(shared.begin(), shared.end());
          Atom fresh("shared-" + std::to_string((round + t) % 64));
          Atom own("own-" + std::to_string(t) + "-" + std::to_string(round % 16));
          EXPECT_TRUE(fresh.same(shared[(round + t) % 64]));
        }
      });
    for (auto& th : threads) th.join();
    EXPECT_EQ(Atom::pooled(), before + 64);
  }
  EXPECT_EQ(Atom::pooled(), before);
}

}  // namespace
}  // namespace starling
