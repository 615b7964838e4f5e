// One request/reply with the local starlingd as a command sees it: build the
// request, send it, and either hand the reply on or print why not and return
// the exit code for it.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "schema/api.capnp.h"

namespace starling::cli {

// The exit codes of `starling`; scripts depend on them, so their values never
// change. `starling --help` lists them (ExitCodesText) and so does the man page.
//
// The request did what was asked (also `--help` and `--version`).
constexpr int kExitOk = 0;
// starlingd refused or failed the request (its message on stderr), a member
// did not do its part of a `keys` command, or the command failed on this side
// (a file it cannot read, Graphviz unable to draw the SVG).
constexpr int kExitDaemonError = 1;
// starlingd could not be reached, did not answer in time, or answered
// garbage or a reply of the wrong kind.
constexpr int kExitUnreachable = 2;
// `rollout status --watch` saw the rollout settle as failed or reverted.
constexpr int kExitRolloutFailed = 3;
// `rollout status --watch` saw the rollout end incomplete: it ran through,
// but some nodes (down or failed) are not on the revision.
constexpr int kExitRolloutIncomplete = 4;
// The command line itself is wrong: an unknown command or flag, a missing or
// invalid argument. Nothing was asked of the daemon. (64 is sysexits.h's
// EX_USAGE; CLI11's own codes, 105 and up, never leave the CLI.)
constexpr int kExitUsage = 64;

// The table above as `starling --help` ends with it.
const char* ExitCodesText();

// The global options, read by every command that talks to the daemon.
struct Globals {
  std::string socket = "/var/lib/starling/starlingd.sock";
  std::string socket_owner;  // empty: root or the caller
  double timeout_seconds = 30;
};

using RequestBuilder = std::function<void(api::Request::Builder)>;
// Prints a reply and returns the exit code.
using ReplyHandler = std::function<int(api::Reply::Reader)>;
using JsonHandler = std::function<int(const nlohmann::json&)>;

// Prints "starling: MESSAGE" on stderr and returns `code`, so that a failure
// path is a single return.
int Complain(int code, const std::string& message);

// For a reply that parsed but is not what the request asks for.
int Unexpected();

// Builds a request, exchanges it and hands a non-error reply to `use`.
// `pass_fd`: an open file sent with the request (see api_client.h).
int Call(const Globals& globals, const RequestBuilder& build, const ReplyHandler& use, int pass_fd = -1);

// A streamed reply: `use` for every frame until the daemon hangs up or `use`
// returns non-zero.
int StreamCall(const Globals& globals, const RequestBuilder& build, const ReplyHandler& use);

// Desired-state commands share one shape: the daemon answers JSON text,
// which `print` shows as a table or as it is.
int StateCall(const Globals& globals, const RequestBuilder& build, const JsonHandler& print, int pass_fd = -1);

}  // namespace starling::cli
