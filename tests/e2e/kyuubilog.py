"""A Kyuubi server's JSON event log, written the way Kyuubi writes it.

Facts from Kyuubi's source (shared/DESIGN.md, "Kyuubi's event log, and the
shipper that reads it"; shared/fixtures/kyuubi/README.md), each one kept here:

- path <root>/<type>/day=<yyyyMMdd>/server-<host>.json, the day from the
  event's startTime (the session's, or the server's) in the JVM's time zone
  (UTC here), not from when the line is written: a session that started
  yesterday writes its close into yesterday's file, which grows again;
- one compact JSON object per line, println + flush, no fsync: a reader can
  see a partial last line (post(..., split=N) leaves one until .finish());
- a server process opens a day file with truncation the first time it writes
  to it: a restarted server (start() after crash() or stop()) truncates every
  day file it writes to again, same path, same inode;
- a session is posted at each stage with the same eventTime (created, opened,
  failed, closed), told apart by openedTime, exception and endTime;
- kyuubi_server_info lines carry serverConf and serverEnv unredacted (the
  fake secrets s3cr3t-... are what the tests look for everywhere).

It also remembers what each session should end as in the journal (phases and
state), for the tests' assertions.
"""
import json
import os
import time

SECRETS = ("s3cr3t-LDAP-pw", "s3cr3t-db-pw", "s3cr3t-aws-key")


def day_of(ms):
    return time.strftime("%Y%m%d", time.gmtime(ms / 1000.0))


class KyuubiLog:
    def __init__(self, root, host="kyuubi-0", server_ip="10.244.1.23:10009"):
        self.root = root
        self.host = host
        self.server_ip = server_ip
        self.files = {}  # path -> file object opened (with truncation) by this process
        self.sessions = {}  # sid -> the session's last posted fields
        self.expect = {}  # sid -> {"phases": set, "closed": bool, "type": str}
        self.start_time = None

    # --- the server process ------------------------------------------------

    def start(self, t_ms):
        """A new server process: its first write to any day file truncates it."""
        self._close_files()
        self.start_time = t_ms
        self._server_info("STARTED", t_ms)

    def stop(self, t_ms):
        self._server_info("STOPPED", t_ms)
        self._close_files()

    def crash(self):
        """kill -9: no STOPPED line; what was flushed stays."""
        self._close_files()

    def _close_files(self):
        for f in self.files.values():
            f.close()
        self.files = {}

    def path(self, kind, start_ms):
        return os.path.join(self.root, kind, "day=" + day_of(start_ms),
                            "server-%s.json" % self.host)

    def _file(self, path):
        f = self.files.get(path)
        if f is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            f = open(path, "wb")  # truncates, like Kyuubi's first write
            self.files[path] = f
        return f

    def println(self, path, data, split=None):
        """Writes data and a newline, then flushes. With split, only the first
        split bytes are written now; the returned function writes the rest."""
        f = self._file(path)
        line = data + b"\n"
        if split is None:
            f.write(line)
            f.flush()
            return lambda: None
        f.write(line[:split])
        f.flush()

        def finish():
            f.write(line[split:])
            f.flush()
        return finish

    def _server_info(self, state, t_ms):
        ev = {
            "serverName": "KyuubiServer", "startTime": self.start_time, "eventTime": t_ms,
            "state": state, "serverIP": self.server_ip,
            "serverConf": {"kyuubi.frontend.bind.port": "10009",
                           "kyuubi.authentication.ldap.bindpw": SECRETS[0],
                           "kyuubi.metadata.store.jdbc.password": SECRETS[1],
                           "kyuubi.backend.server.event.loggers": "JSON"},
            "serverEnv": {"HOSTNAME": self.host, "AWS_SECRET_ACCESS_KEY": SECRETS[2]},
            "BUILD_USER": "builder", "VERSION_INFO": {"KYUUBI_VERSION": "1.10.2"},
            "eventType": "kyuubi_server_info",
        }
        self.println(self.path("kyuubi_server_info", self.start_time), _dump(ev))

    # --- sessions ------------------------------------------------------------

    def open_session(self, sid, user, start_ms, session_type="INTERACTIVE", split=None):
        s = {
            "sessionId": sid, "clientVersion": 9, "sessionType": session_type,
            "sessionName": "", "user": user, "clientIP": "10.244.3.15",
            "serverIP": self.server_ip,
            "conf": {"kyuubi.session.real.user": user, "use:database": "default"},
            "eventTime": start_ms + 24, "startTime": start_ms, "remoteSessionId": "",
            "engineId": "", "engineName": "", "engineUrl": "", "openedTime": -1,
            "endTime": -1, "totalOperations": 0, "exception": None,
            "eventType": "kyuubi_session",
        }
        self.sessions[sid] = s
        self.expect[sid] = {"phases": {"created"}, "closed": False, "type": session_type}
        return self._post(s, split)

    def engine_opened(self, sid, t_ms, engine_id, split=None):
        s = self.sessions[sid]
        s.update(openedTime=t_ms, engineId=engine_id, remoteSessionId=sid,
                 engineName="kyuubi_USER_SPARK_SQL_%s_default_%s" % (s["user"], sid))
        self.expect[sid]["phases"].add("opened")
        return self._post(s, split)

    def failed(self, sid, message, trace_bytes=0, split=None):
        s = self.sessions[sid]
        trace = [{"declaringClass": "org.apache.kyuubi.Frame%d" % i, "methodName": "run",
                  "fileName": "Frame.scala", "lineNumber": i}
                 for i in range(max(1, trace_bytes // 100))]
        s["exception"] = {"message": message, "localizedMessage": message, "cause": None,
                          "stackTrace": trace, "suppressed": []}
        self.expect[sid]["phases"].add("failed")
        return self._post(s, split)

    def close_session(self, sid, t_ms, split=None):
        s = self.sessions[sid]
        s["endTime"] = t_ms
        self.expect[sid]["phases"].add("closed")
        self.expect[sid]["closed"] = True
        return self._post(s, split)

    def _post(self, s, split):
        return self.println(self.path("kyuubi_session", s["startTime"]), _dump(s), split)

    def raw(self, day_ms, data):
        """A line of the session file of day_ms that is not what Kyuubi writes."""
        self.println(self.path("kyuubi_session", day_ms), data)

    def event_ids(self):
        return {"kyuubi:%s:%s" % (sid, p) for sid, e in self.expect.items() for p in e["phases"]}


def _dump(obj):
    return json.dumps(obj, separators=(",", ":")).encode()
