// Telling systemd how the daemon is doing, for a unit of Type=notify
// (sd_notify(3)): READY=1 once it serves its API and has joined (or has
// nobody to join), STOPPING=1 when it leaves, STATUS= lines for
// `systemctl status`. Started any other way (no NOTIFY_SOCKET in the
// environment) nothing is sent and nothing changes.
#pragma once

#include <string>

namespace starling::node {

void NotifyReady(const std::string& status);
void NotifyStopping(const std::string& status);
void NotifyStatus(const std::string& status);

// True when stderr is the journal's stream (systemd's JOURNAL_STREAM names
// its device and inode), so log lines need no time stamp of their own.
bool StderrIsTheJournal();

}  // namespace starling::node
