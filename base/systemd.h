// The few systemd protocols the agent speaks, without libsystemd: readiness,
// status and watchdog notifications (sd_notify(3)'s datagram protocol) and
// whether stderr goes to the journal. Outside systemd every call is a no-op,
// so a plain foreground run behaves the same.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgesync::systemd {

// Sends `state` ("READY=1", "STATUS=...", "WATCHDOG=1", several joined by
// '\n') to $NOTIFY_SOCKET. False when there is no such socket or sending
// failed; callers need not care (systemd will notice a missing READY or
// WATCHDOG by itself).
bool Notify(std::string_view state);

// The interval systemd expects watchdog pings within ($WATCHDOG_USEC, for
// this process when $WATCHDOG_PID is set); 0 when the watchdog is off.
int64_t WatchdogMicros();

// True when stderr is the journal's stream ($JOURNAL_STREAM names stderr's
// device and inode): journald adds timestamps and reads "<N>" priorities.
bool StderrIsJournal();

}  // namespace edgesync::systemd
