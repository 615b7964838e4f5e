// HookRunner with real child processes: names, environment, stdin, output
// tail, exit status, signals and timeouts.
#include "hook_runner.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "starling/text.h"
#include "trust.h"

namespace starling::node {
namespace {

HookRequest Req(std::string name, std::map<std::string, std::string> env = {}, std::string input = "",
                Duration timeout = std::chrono::seconds(10)) {
  return HookRequest{std::move(name), std::move(env), std::move(input), timeout};
}

class HookRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/starling-hooks-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Hook(const std::string& name, const std::string& script, mode_t mode = 0755) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << script << "\n";
    chmod(path.c_str(), mode);
  }

  std::string dir_;
};

TEST_F(HookRunnerTest, PassesEnvironmentAndInputAndCapturesOutput) {
  Hook("install", "echo \"pkg=$STARLING_PACKAGE version=$STARLING_VERSION\"; read line; echo \"got $line\" >&2; "
                  "echo \"home=${HOME:-unset} pwd=$(pwd)\"");
  HookRunner runner(dir_);
  auto r = runner.Run(Req("install", {{"STARLING_PACKAGE", "web"}, {"STARLING_VERSION", "1.2.3"}}, "hello\n"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->ok()) << r->Describe() << r->output;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_NE(r->output.find("pkg=web version=1.2.3"), std::string::npos) << r->output;
  EXPECT_NE(r->output.find("got hello"), std::string::npos) << r->output;
  // Nothing leaks from the daemon's environment; the hook runs in its dir.
  EXPECT_NE(r->output.find("home=unset pwd=" + dir_), std::string::npos) << r->output;
}

TEST_F(HookRunnerTest, ReportsExitStatusAndSignal) {
  Hook("fails", "echo failing; exit 3");
  Hook("dies", "kill -9 $$");
  HookRunner runner(dir_);
  auto f = runner.Run({"fails", {}, "", std::chrono::seconds(5)});
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->ok());
  EXPECT_EQ(f->exit_code, 3);
  EXPECT_EQ(f->Describe(), "exit 3");
  auto d = runner.Run({"dies", {}, "", std::chrono::seconds(5)});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->signal, 9);
  EXPECT_NE(d->Describe().find("killed by signal 9"), std::string::npos);
}

TEST_F(HookRunnerTest, TimeoutKillsTheWholeGroup) {
  // The hook and a child of its own both block until killed: only the
  // timeout, killing the whole group, ends the run.
  Hook("hangs", "tail -f /dev/null >/dev/null & echo started; exec tail -f /dev/null");
  HookRunner runner(dir_, 4096, std::chrono::milliseconds(200));
  auto r = runner.Run({"hangs", {}, "", std::chrono::milliseconds(300)});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->ok());
  EXPECT_NE(r->output.find("started"), std::string::npos);
  EXPECT_LT(r->took, std::chrono::seconds(5));
  EXPECT_NE(r->Describe().find("timed out"), std::string::npos);
}

// poll() failing (as it may for want of memory) must not cost the timeout:
// the run still ends at its deadline with the hook's group killed, instead
// of waiting in waitpid for a hook that never ends.
int FailingPoll(pollfd*, nfds_t, int) {
  errno = ENOMEM;
  return -1;
}

TEST_F(HookRunnerTest, APollErrorStillEndsTheRunAtItsTimeout) {
  Hook("hangs", "echo started; exec tail -f /dev/null");
  HookRunner runner(dir_, 4096, std::chrono::milliseconds(200));
  runner.SetPollForTesting(&FailingPoll);
  auto r = runner.Run({"hangs", {}, "input for stdin", std::chrono::milliseconds(300)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->timed_out) << r->Describe();
  EXPECT_EQ(r->signal, SIGTERM) << r->Describe();
  EXPECT_NE(r->output.find("poll failed"), std::string::npos) << r->output;
}

TEST_F(HookRunnerTest, APollErrorStillReportsAHookThatExits) {
  Hook("quick", "exit 4");
  HookRunner runner(dir_);
  runner.SetPollForTesting(&FailingPoll);
  auto r = runner.Run({"quick", {}, "", std::chrono::seconds(10)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->exit_code, 4) << r->Describe();
}

TEST_F(HookRunnerTest, KeepsOnlyTheTailOfLongOutput) {
  Hook("chatty", "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done");
  HookRunner runner(dir_, 100);
  auto r = runner.Run({"chatty", {}, "", std::chrono::seconds(10)});
  ASSERT_TRUE(r.ok());
  EXPECT_LE(r->output.size(), 103u);
  EXPECT_EQ(r->output.rfind("...", 0), 0u) << "says it was cut: " << r->output;
  EXPECT_NE(r->output.find("line-1999"), std::string::npos) << r->output;
}

// 300 euro signs cut at a byte count that falls inside one, a byte that is
// no UTF-8, and terminal escapes: the output kept is valid UTF-8 that shows
// as it reads (such output once made `rollout status` answer "internal
// error").
TEST_F(HookRunnerTest, OutputIsCutOnCharactersAndMadePrintable) {
  Hook("euro", "i=0; while [ $i -lt 300 ]; do printf '\342\202\254'; i=$((i+1)); done; "
               "printf '\033[2J\377\r\n\302\233'; exit 1");
  HookRunner runner(dir_, 101);
  auto r = runner.Run({"euro", {}, "", std::chrono::seconds(10)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_TRUE(text::IsUtf8(r->output)) << r->output;
  EXPECT_EQ(text::Printable(r->output), r->output) << "already printable";
  EXPECT_EQ(r->output.rfind("...\xE2\x82\xAC", 0), 0u) << r->output;
  EXPECT_NE(r->output.find("\\x1b[2J\xEF\xBF\xBD\\x0d\n\\u{9b}"), std::string::npos) << r->output;
}

TEST_F(HookRunnerTest, BackgroundServiceDoesNotHoldTheHook) {
  // A service the hook leaves running (bounded, so that the test leaves nothing behind).
  Hook("start", "sleep 5 >/dev/null 2>&1 & echo up");
  HookRunner runner(dir_);
  auto r = runner.Run({"start", {}, "", std::chrono::seconds(3)});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << r->Describe();
  EXPECT_LT(r->took, std::chrono::seconds(2));
}

TEST_F(HookRunnerTest, RefusesBadNamesAndMissingOrNonExecutableHooks) {
  Hook("plain", "exit 0", 0644);
  HookRunner runner(dir_);
  for (const std::string bad : {"", ".", "..", "../etc/passwd", "a/b", "rm -rf /", "x;y"}) {
    auto r = runner.Run(Req(bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << bad;
  }
  auto missing = runner.Run(Req("nosuch"));
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_NE(missing.status().message().find("nosuch"), std::string::npos);
  auto plain = runner.Run(Req("plain"));
  EXPECT_EQ(plain.status().code(), Status::Code::kNotFound);
  EXPECT_NE(plain.status().message().find("not executable"), std::string::npos);
  auto env = runner.Run(Req("plain", {{"BAD-KEY", "x"}}));
  EXPECT_FALSE(env.ok());
  HookRunner none("");
  EXPECT_NE(none.Run(Req("x")).status().message().find("--hooks-dir"), std::string::npos);
}

// The daemon runs as root: a hook, or a hooks dir, that another user owns or
// can write would run that user's code as root; a symlink would run what is
// outside the dir the operator named.
TEST_F(HookRunnerTest, RefusesHooksOthersCanWriteAndSymlinksOutOfTheDir) {
  chmod(dir_.c_str(), 0755);
  Hook("good", "echo ran");
  Hook("open", "exit 0", 0777);
  HookRunner runner(dir_);
  ASSERT_TRUE(runner.Run(Req("good")).ok());
  auto open = runner.Run(Req("open"));
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(open.status().message().find(dir_ + "/open is writable by every user (mode 0777)"), std::string::npos)
      << open.status().message();
  EXPECT_NE(open.status().message().find("chmod go-w"), std::string::npos);

  ASSERT_EQ(chmod(dir_.c_str(), 0775), 0);
  auto group = runner.Run(Req("good"));
  ASSERT_FALSE(group.ok());
  EXPECT_NE(group.status().message().find("hooks dir " + dir_ + " is writable by its group"), std::string::npos)
      << group.status().message();
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);

  if (geteuid() == 0) {
    ASSERT_EQ(chown((dir_ + "/good").c_str(), 65534, 65534), 0);
    auto foreign = runner.Run(Req("good"));
    ASSERT_FALSE(foreign.ok());
    EXPECT_NE(foreign.status().message().find("is owned by uid 65534"), std::string::npos)
        << foreign.status().message();
    ASSERT_EQ(chown((dir_ + "/good").c_str(), 0, 0), 0);
  }

  // A link inside the dir runs; one out of it only when the operator allows.
  ASSERT_EQ(symlink((dir_ + "/good").c_str(), (dir_ + "/alias").c_str()), 0);
  auto alias = runner.Run(Req("alias"));
  ASSERT_TRUE(alias.ok()) << alias.status().message();
  EXPECT_NE(alias->output.find("ran"), std::string::npos);
  char outside_tmpl[] = "/tmp/starling-outside-XXXXXX";
  ASSERT_NE(mkdtemp(outside_tmpl), nullptr);
  const std::string outside = outside_tmpl;
  std::ofstream(outside + "/tool") << "#!/bin/sh\necho outside\n";
  chmod((outside + "/tool").c_str(), 0755);
  ASSERT_EQ(symlink((outside + "/tool").c_str(), (dir_ + "/out").c_str()), 0);
  auto out = runner.Run(Req("out"));
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("outside the hooks dir"), std::string::npos) << out.status().message();
  EXPECT_NE(out.status().message().find("--hooks-follow-symlinks"), std::string::npos);
  runner.FollowSymlinksOut(true);
  auto followed = runner.Run(Req("out"));
  ASSERT_TRUE(followed.ok()) << followed.status().message();
  EXPECT_NE(followed->output.find("outside"), std::string::npos);
  // Followed or not, the target is checked as a hook.
  chmod((outside + "/tool").c_str(), 0757);
  EXPECT_FALSE(runner.Run(Req("out")).ok());
  std::filesystem::remove_all(outside);
}

// The daemon's own files are owner-only; a hook gets the umask the daemon
// was started with, for the files of the services it runs.
TEST_F(HookRunnerTest, HooksGetTheStartingUmaskNotTheDaemonsOwnerOnlyOne) {
  MakeFilesOwnerOnly();
  const mode_t starting = StartingUmask();
  EXPECT_EQ(umask(077), 077u);
  Hook("mask", "umask");
  HookRunner runner(dir_);
  auto r = runner.Run(Req("mask"));
  umask(starting);
  ASSERT_TRUE(r.ok()) << r.status().message();
  char want[8];
  std::snprintf(want, sizeof want, "%04o", static_cast<unsigned>(starting));
  EXPECT_NE(r->output.find(want), std::string::npos) << r->output << " want " << want;
}

}  // namespace
}  // namespace starling::node
