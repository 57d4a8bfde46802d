#!/usr/bin/env bash
# demo.sh - kjournal's demo: kube-sim and kjournald on loopback, a Kyuubi-like
# workload (two servers writing their JSON event logs as Kyuubi does, each
# followed by `kjournal ship`), kjournald killed with SIGKILL mid-flight, the cluster changing
# while it is down, a restart and its recovery pass, then a before/after
# summary. It checks the end state, so it doubles as an end-to-end test.
#
#   tools/demo/demo.sh [BUILD_DIR]     (default: build; ./quickstart.sh demo runs it)
#
# Environment: KJ_DEMO_KEEP=1 keeps the work directory; NO_COLOR disables colour.
# Exit: 0 the end state is the one the story expects, 1 it is not (each
# difference is named), 2 the programs or tools are missing.
set -u

BUILD=${1:-build}
KUBE_SIM=$BUILD/tools/kube-sim/kube-sim
KJOURNALD=$BUILD/tools/kjournald/kjournald
KJOURNAL=$BUILD/tools/kjournal/kjournal
for p in "$KUBE_SIM" "$KJOURNALD" "$KJOURNAL"; do
    if [ ! -x "$p" ]; then
        echo "demo: $p not found: build first (./quickstart.sh demo, or cmake --build $BUILD)" >&2
        exit 2
    fi
done
for t in curl python3; do
    command -v "$t" >/dev/null || { echo "demo: '$t' is needed (./quickstart.sh deps)" >&2; exit 2; }
done
if [ -z "${EPOCHREALTIME:-}" ]; then
    echo "demo: bash 5 or newer is needed" >&2
    exit 2
fi
# Debian's python3 starts fast; a version manager's shim can take a second per call
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# --- the story's settings -----------------------------------------------------
NS=kyuubi
FIN=kyuubi.apache.org/pod-cleanup
SERVER_A=10.0.0.1:10009   # the Kyuubi server whose sessions the story follows
SERVER_B=10.0.0.2:10009   # a busy second Kyuubi server: its stream is cut by the crash
BURST_SESSIONS=4000       # server B's sessions (an open and a close each)
SUBMIT_GRACE_S=5
# Defaults everywhere (retain-terminated 5m, cleanup-kind ALL, running-orphans
# report, resync 5m) except two durations, so the story fits in seconds.
POLICY=(--namespace "$NS" --engine-grace 0s --submit-grace "${SUBMIT_GRACE_S}s")

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    B=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GRN=$'\e[32m' OFF=$'\e[0m'
    COLOR=1
else
    B='' DIM='' RED='' GRN='' OFF=''
    COLOR=0
fi

# Forks are slow on a busy machine: the helpers below set variables instead.
# tick: NOW = epoch milliseconds; iso MS: ISO = RFC 3339 (UTC) of MS
tick() {
    NOW=${EPOCHREALTIME//[!0-9]/}
    NOW=${NOW:0:13}
}
iso() { printf -v ISO '%(%Y-%m-%dT%H:%M:%SZ)T' $(($1 / 1000)); }
export TZ=UTC # kube-sim's timestamps, the CLI's and ours all read alike
tick
T0=$NOW

W=$(mktemp -d "${TMPDIR:-/tmp}/kjournal-demo.XXXXXX") || exit 2
JOURNAL=$W/journal.db
PIDS=()
FAILED=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ "$FAILED" = 0 ] && [ -z "${KJ_DEMO_KEEP:-}" ]; then
        rm -rf "$W"
    else
        echo "demo: work directory kept: $W (logs: kjournald.log, kube-sim.log, ship-*.log)" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stamp() {
    tick
    local e=$((NOW - T0))
    printf '%s[%2d.%ds]%s' "$DIM" $((e / 1000)) $((e % 1000 / 100)) "$OFF"
}
say() { printf '  %s %s\n' "$(stamp)" "$*"; }
head1() { printf '\n%s%s%s\n' "$B" "$*" "$OFF"; }
die() {
    FAILED=1
    printf '%sdemo: %s%s\n' "$RED" "$*" "$OFF" >&2
    if [ -f "$W/kjournald.log" ]; then
        echo "--- last lines of kjournald.log:" >&2
        tail -n 15 "$W/kjournald.log" >&2
    fi
    exit 1
}
remove_pid() {
    local p out=()
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || out+=("$p"); done
    PIDS=("${out[@]}")
}

# wait_for SECONDS WHAT COMMAND...: poll every 0.1 s until COMMAND succeeds
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    die "timed out after ${secs}s waiting for $what"
}

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- Kubernetes: what Kyuubi, Spark, the kubelet and people do to pods --------
kube() { # METHOD PATH [BODY [CONTENT-TYPE]]: the body in $W/kube.out, fails on HTTP >= 300
    local code
    curl -sS -o "$W/kube.out" -w '%{http_code}' -X "$1" -H "Content-Type: ${4:-application/json}" \
        ${3:+--data "$3"} "$SIM$2" >"$W/kube.code" || return 1
    read -r code <"$W/kube.code"
    [ "$code" -lt 300 ]
}
PODS=/api/v1/namespaces/$NS/pods
# app_id TAG: APP = a Spark application id, the same for the same tag
app_id() {
    local s=$1 h=2166136261 i c k x
    APP=spark-
    for ((i = 0; i < ${#s}; i++)); do
        printf -v c '%d' "'${s:i:1}"
        h=$((((h ^ c) * 16777619) & 0xffffffff))
    done
    for k in 1 2 3 4; do
        h=$(((h * 2654435761 + k) & 0xffffffff))
        printf -v x '%08x' "$h"
        APP+=$x
    done
}

# start_engine TAG: spark-submit creates the driver pod, the kubelet runs it
start_engine() {
    local tag=$1 name=kyuubi-$1-driver
    app_id "$tag"
    tick
    iso "$NOW"
    kube POST "$PODS" '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"'"$name"'","labels":{"kyuubi-unique-tag":"'"$tag"'","spark-app-selector":"'"$APP"'","spark-role":"driver"}},"spec":{"nodeName":"node-1","restartPolicy":"Never","terminationGracePeriodSeconds":2,"containers":[{"name":"spark-kubernetes-driver","image":"apache/spark:3.5.3","args":["driver"]}]}}' ||
        die "cannot create pod $name: $(cat "$W/kube.out")"
    kube PATCH "$PODS/$name/status" '{"status":{"phase":"Running","containerStatuses":[{"name":"spark-kubernetes-driver","ready":true,"restartCount":0,"image":"apache/spark:3.5.3","imageID":"","state":{"running":{"startedAt":"'"$ISO"'"}}}]}}' \
        application/merge-patch+json >/dev/null || die "cannot start pod $name: $(cat "$W/kube.out")"
}
# engine_ends NAME PHASE FINISHED_MS: the driver container exits
engine_ends() {
    local code=1 reason=Error
    [ "$2" = Succeeded ] && code=0 reason=Completed
    iso "$3"
    kube PATCH "$PODS/$1/status" '{"status":{"phase":"'"$2"'","containerStatuses":[{"name":"spark-kubernetes-driver","ready":false,"restartCount":0,"image":"apache/spark:3.5.3","imageID":"","state":{"terminated":{"exitCode":'$code',"reason":"'$reason'","finishedAt":"'"$ISO"'"}}}]}}' \
        application/merge-patch+json >/dev/null || die "cannot end pod $1: $(cat "$W/kube.out")"
}
pod_has_finalizer() { kube GET "$PODS/$1" 2>/dev/null && grep -q "\"$FIN\"" "$W/kube.out"; }
pod_gone() { ! kube GET "$PODS/$1" 2>/dev/null && grep -q '"NotFound"' "$W/kube.out"; }
snapshot() { kube GET "$PODS" && mv "$W/kube.out" "$1" || die "cannot list pods"; }

# --- Kyuubi: its KyuubiSessionEvent posts, as its JSON event logger writes them --
declare -A START LEVEL SUSER ENGINE
# kyuubi_event SESSION created|opened|closed: one line
kyuubi_event() {
    local s=$1 phase=$2 user=${SUSER[$1]} tag=${ENGINE[$1]:-} t opened=-1 end=-1
    local eid='' ename='' eurl='' rsid='' ops=0
    tick
    t=$NOW
    if [ "$phase" != created ] && [ -n "$tag" ]; then
        app_id "$tag"
        eid=$APP rsid=$s opened=$((START[$s] + 1500))
        ename=kyuubi_${LEVEL[$1]}_SPARK_SQL_${user}_default_$tag
        [ "${LEVEL[$1]}" = CONNECTION ] && ename=kyuubi_CONNECTION_SPARK_SQL_${user}_$tag
        eurl=http://${eid:6:16}-driver-svc.$NS.svc:4040
    fi
    [ "$phase" = opened ] && opened=$t
    [ "$phase" = closed ] && end=$t ops=3
    printf '{"sessionId":"%s","clientVersion":9,"sessionType":"INTERACTIVE","sessionName":"","user":"%s","clientIP":"10.244.3.15","serverIP":"%s","conf":{"kyuubi.session.real.user":"%s","kyuubi.engine.share.level":"%s","kyuubi.server.ipAddress":"%s"},"eventTime":%s,"startTime":%s,"remoteSessionId":"%s","engineId":"%s","engineName":"%s","engineUrl":"%s","openedTime":%s,"endTime":%s,"totalOperations":%s,"exception":null,"eventType":"kyuubi_session"}\n' \
        "$s" "$user" "$SERVER_A" "$user" "${LEVEL[$1]}" "${SERVER_A%:*}" $((START[$s] + 10)) "${START[$s]}" \
        "$rsid" "$eid" "$ename" "$eurl" "$opened" "$end" "$ops"
}
EVENTS_SENT=0
# kyuubi_log ROOT HOST < LINES: Kyuubi's JSON event logger appends each line
# (println + flush) to ROOT/kyuubi_session/day=<the session's start day>/server-HOST.json
kyuubi_log() {
    local line day made=
    while IFS= read -r line; do
        [[ $line =~ \"startTime\":([0-9]+) ]] || die "no startTime in a Kyuubi line"
        printf -v day '%(%Y%m%d)T' $((BASH_REMATCH[1] / 1000))
        [ "$made" = "$day" ] || mkdir -p "$1/kyuubi_session/day=$day" || die "cannot write $1"
        made=$day
        printf '%s\n' "$line" >>"$1/kyuubi_session/day=$day/server-$2.json"
    done
}
# publish FILE: Kyuubi server A logs these posts; its shipper delivers them
publish() {
    local n=0 _l
    while read -r _l; do n=$((n + 1)); done <"$1"
    kyuubi_log "$ROOT_A" kyuubi-a <"$1"
    EVENTS_SENT=$((EVENTS_SENT + n))
    wait_for 20 "server A's shipper to deliver its posts" journal_has $EVENTS_SENT
}
journal_has() { [ "$(journal_events)" -ge "$1" ]; }
# ship_start NAME ROOT: kjournal ship follows a Kyuubi server's event log
ship_start() {
    "$KJOURNAL" ship --endpoint "$EP" --state "$W/ship-$1.state" --batch 100 --timeout 1000 \
        --retries 60 --rescan 1s --progress 1h "$2" 2>>"$W/ship-$1.log" &
    PIDS+=("$!")
    eval "SHIP_$1=\$!"
}
# session SESSION USER LEVEL [TAG]: a session of USER on engine TAG (share level LEVEL)
session() {
    tick
    SUSER[$1]=$2 LEVEL[$1]=$3 ENGINE[$1]=${4:-} START[$1]=$NOW
}
# posts FILE PHASE SESSION...: Kyuubi's posts of PHASE for these sessions, into FILE
posts() {
    local f=$1 phase=$2 s
    shift 2
    for s in "$@"; do kyuubi_event "$s" "$phase"; done >"$f"
}

kjournald_start() {
    "$KJOURNALD" --journal "$JOURNAL" --listen "$EP" --metrics "$METRICS" --server "$SIM" \
        "${POLICY[@]}" 2>>"$W/kjournald.log" &
    KJD=$!
    PIDS+=("$KJD")
    wait_for 20 "kjournald to serve" kjournald_serving
}
kjournald_serving() {
    kill -0 "$KJD" 2>/dev/null || die "kjournald exited at start"
    tail -n "+$((LOG_LINES + 1))" "$W/kjournald.log" | grep -q "msg=serving"
}
log_lines() { wc -l <"$W/kjournald.log"; }
# events this kjournald process has stored (its Prometheus counter)
stored_now() { curl -s "http://$METRICS/metrics" | sed -n 's/^kjournal_ingest_events_total{result="stored"} //p'; }
journal_events() { "$KJOURNAL" stats --journal "$JOURNAL" -o json 2>/dev/null | $PY -c 'import json,sys; print(json.load(sys.stdin)["events"])'; }

# --- the summary helper (tables and checks over the API's and the journal's JSON)
cat >"$W/summary.py" <<'PY'
import json, sys

FIN = "kyuubi.apache.org/pod-cleanup"
color = sys.argv[2] == "1"
def c(code, s):
    return "\033[%sm%s\033[0m" % (code, s) if color else s

def pods(path):
    out = {}
    for p in json.load(open(path)).get("items", []):
        m = p["metadata"]
        out[m["name"]] = {
            "phase": p.get("status", {}).get("phase", "?"),
            "fins": m.get("finalizers") or [],
            "terminating": "deletionTimestamp" in m,
        }
    return out

def state_of(p):
    if p is None:
        return "gone"
    s = p["phase"] + (" fin" if FIN in p["fins"] else " nofin")
    return s + (" terminating" if p["terminating"] else "")

def expected(path):
    rows = []
    for line in open(path):
        if line.strip():
            rows.append(line.rstrip("\n").split("\t"))
    return rows

def pod_row(name, p, note=""):
    if p is None:
        return "    %-24s %-10s %-30s %-11s %s" % (name, "(gone)", "", "", note)
    return "    %-24s %-10s %-30s %-11s %s" % (
        name, p["phase"], ",".join(p["fins"]) or "-", "yes" if p["terminating"] else "-", note)

def header():
    return "    %-24s %-10s %-30s %-11s %s" % ("POD", "PHASE", "FINALIZERS", "TERMINATING", "")

mode = sys.argv[1]
if mode == "before":                      # before PODS.json NOTES.tsv
    ps = pods(sys.argv[3])
    notes = dict(expected(sys.argv[4]))
    print(c("2", header() + "WHILE KJOURNALD WAS DOWN"))
    for n in sorted(ps):
        print(pod_row(n, ps[n], notes.get(n, "")))
elif mode in ("after", "check-pods"):     # after|check-pods PODS.json EXPECT.tsv
    ps = pods(sys.argv[3])
    bad = []
    if mode == "after":
        print(c("2", header() + "WHY"))
    names = set()
    for name, want, why in expected(sys.argv[4]):
        names.add(name)
        got = state_of(ps.get(name))
        ok = got == want
        if not ok:
            bad.append("pod %s: expected %s, got %s" % (name, want, got))
        if mode == "after":
            mark = c("32", "ok") if ok else c("31", "✗ expected " + want)
            print(pod_row(name, ps.get(name), mark + "  " + why))
    for name in sorted(set(ps) - names):
        bad.append("pod %s: not in the story (%s)" % (name, state_of(ps[name])))
    for b in bad:
        print("    " + c("31", b))
    sys.exit(1 if bad else 0)
elif mode == "check-sessions":            # check-sessions SESSIONS.jsonl EXPECT.tsv
    got = {}
    for line in open(sys.argv[3]):
        if line.strip():
            s = json.loads(line)
            got[s["session_id"]] = s["state"] + (" " + s["close_reason"] if s["close_reason"] else "")
    bad = []
    for sid, want in expected(sys.argv[4]):
        if got.get(sid) != want:
            bad.append("session %s: expected %s, got %s" % (sid, want, got.get(sid, "nothing")))
    for sid in sorted(set(got) - {r[0] for r in expected(sys.argv[4])}):
        bad.append("session %s: not in the story (%s)" % (sid, got[sid]))
    for b in bad:
        print("    " + c("31", b))
    sys.exit(1 if bad else 0)
elif mode == "runs-since":                # runs-since RUNS.jsonl ACTIONS.jsonl ID
    # prints: the number of actions from run ID on, then the runs that acted
    first = int(sys.argv[5])
    acts = [json.loads(l) for l in open(sys.argv[4]) if l.strip()]
    acts = [a for a in acts if a["run"] >= first]
    runs = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
    why = {"recovery": "the recovery pass at start-up", "session": "an event's pods",
           "resync": "a full pass: the queue overflowed with server B's sessions"}
    acted = sorted({a["run"] for a in acts})
    trig = {r["id"]: r["trigger"] for r in runs}
    print(len(acts), "; ".join(" %d %s" % (r, why.get(trig.get(r), trig.get(r))) for r in acted))
elif mode == "stats":                     # stats STATS.json EVENTS INSTANCE SESSIONS
    s = json.load(open(sys.argv[3]))
    bad = []
    if s["events"] != int(sys.argv[4]):
        bad.append("the journal holds %d events, %s were published" % (s["events"], sys.argv[4]))
    inst = {i["instance"]: i for i in s["by_instance"]}.get(sys.argv[5], {})
    if inst.get("total") != int(sys.argv[6]) or inst.get("closed") != int(sys.argv[6]):
        bad.append("server %s: expected %s closed sessions, journal has %s" % (sys.argv[5], sys.argv[6], inst))
    for b in bad:
        print("    " + c("31", b))
    sys.exit(1 if bad else 0)
PY
summary() { $PY "$W/summary.py" "$1" "$COLOR" "${@:2}"; }

# ==============================================================================
printf '%skjournal demo%s: a durable session journal and pod reconciler for Kyuubi on Kubernetes\n' "$B" "$OFF"
printf '  kube-sim (a local Kubernetes API) and kjournald on loopback; work dir %s\n' "$W"
printf '  policy: the defaults (retain-terminated 5m, cleanup-kind ALL, running-orphans report)\n'
printf '  except %s--engine-grace 0s%s (default 30m) and %s--submit-grace %ss%s (default 3m), to fit in seconds\n' \
    "$B" "$OFF" "$B" "$SUBMIT_GRACE_S" "$OFF"

"$KUBE_SIM" --listen 127.0.0.1:0 --port-file "$W/sim.port" 2>"$W/kube-sim.log" &
PIDS+=("$!")
wait_for 10 "kube-sim to listen" test -s "$W/sim.port"
SIM=http://127.0.0.1:$(cat "$W/sim.port")
EP=tcp://127.0.0.1:$(free_port)
METRICS=127.0.0.1:$(free_port)
: >"$W/kjournald.log"
LOG_LINES=0

head1 "1. kjournald runs; Kyuubi server $SERVER_A opens and closes sessions"
kjournald_start
say "kube-sim at $SIM, kjournald at $EP (journal $JOURNAL)"
ROOT_A=$W/kyuubi-a/events ROOT_B=$W/kyuubi-b/events
mkdir -p "$ROOT_A" "$ROOT_B"
ship_start A "$ROOT_A"
ship_start B "$ROOT_B"
say "each Kyuubi server writes its JSON event log; a 'kjournal ship' follows each"

session alice-1 alice USER alice-1
session alice-2 alice USER alice-1
session alice-3 alice USER alice-1
session bob-1 bob CONNECTION bob-1
session carol-1 carol USER carol-1
session carol-2 carol USER carol-1
for u in erin frank heidi ivan; do session $u-1 $u CONNECTION $u-1; done
session dave-1 dave CONNECTION
OPEN=(alice-1 alice-2 alice-3 bob-1 carol-1 carol-2 erin-1 frank-1 heidi-1 ivan-1)
posts "$W/ev" created "${OPEN[@]}" dave-1
publish "$W/ev"
tick
DAVE_T=$NOW
for e in alice-1 bob-1 carol-1 erin-1 frank-1 heidi-1 ivan-1; do start_engine $e; done
posts "$W/ev" opened "${OPEN[@]}"
publish "$W/ev"
for e in alice-1 bob-1 carol-1 erin-1 frank-1 heidi-1 ivan-1; do
    wait_for 10 "the finalizer on kyuubi-$e-driver" pod_has_finalizer kyuubi-$e-driver
done
say "alice: 3 sessions on one shared (USER) engine; carol: 2 on another"
say "bob, erin, frank, heidi, ivan: a CONNECTION engine each"
say "                                    -> kjournald adds our finalizer to the 7 engine pods"
say "dave: a session whose engine never starts (spark-submit fails before creating a pod)"

posts "$W/ev" closed alice-1 bob-1 carol-1 carol-2
publish "$W/ev"
wait_for 10 "kjournald to delete kyuubi-bob-1-driver" pod_gone kyuubi-bob-1-driver
wait_for 10 "kjournald to delete kyuubi-carol-1-driver" pod_gone kyuubi-carol-1-driver
pod_has_finalizer kyuubi-alice-1-driver || die "kyuubi-alice-1-driver lost its finalizer while alice-2 and alice-3 are open"
say "alice-1, bob-1, carol-1 and carol-2 close"
say "                                    -> bob's and carol's engine pods: released and deleted at once"
say "                                    -> alice's engine stays (alice-2 and alice-3 still use it)"

# --- 2. the crash --------------------------------------------------------------
head1 "2. kjournald is killed (SIGKILL) while Kyuubi server $SERVER_B streams events"
tick
$PY - "$NOW" "$BURST_SESSIONS" "$SERVER_B" >"$W/burst.jsonl" <<'PY'
import json, sys
t, n, inst = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(n):
    ev = {"sessionId": "etl-%04d" % i, "clientVersion": 9, "sessionType": "INTERACTIVE",
          "sessionName": "", "user": "etl", "clientIP": "10.244.3.16", "serverIP": inst,
          "conf": {}, "eventTime": t + i + 10, "startTime": t + i, "remoteSessionId": "",
          "engineId": "", "engineName": "", "engineUrl": "", "openedTime": -1, "endTime": -1,
          "totalOperations": 0, "exception": None, "eventType": "kyuubi_session"}
    print(json.dumps(ev, separators=(",", ":")))
    ev["endTime"] = t + i + 700
    print(json.dumps(ev, separators=(",", ":")))
PY
BURST_EVENTS=$((BURST_SESSIONS * 2))
BASE_EVENTS=$(journal_events)
BASE_STORED=$(stored_now)
# server B logs its sessions (its shipper resends in order: a close never
# overtakes its open)
kyuubi_log "$ROOT_B" kyuubi-b <"$W/burst.jsonl"
burst_started() { [ "$(stored_now)" -ge $((BASE_STORED + 500)) ]; }
wait_for 30 "server B's first events" burst_started
disown "$KJD" # no "Killed" line from the shell
kill -KILL "$KJD"
wait_for 10 "kjournald to die" eval '! kill -0 "$KJD" 2>/dev/null'
remove_pid "$KJD"
AT_KILL=$(($(journal_events) - BASE_EVENTS))
if [ "$AT_KILL" -lt "$BURST_EVENTS" ]; then
    say "SIGKILL with $AT_KILL of server B's $BURST_EVENTS events on disk; its shipper keeps retrying"
else
    say "SIGKILL (server B's shipper had already delivered all: $AT_KILL events on disk)"
fi

say "while kjournald is down:"
tick
engine_ends kyuubi-erin-1-driver Failed $((NOW - 10 * 60 * 1000))
say "  erin's engine fails (finished 10 min ago: as if the outage were longer than the 5m retain period)"
engine_ends kyuubi-frank-1-driver Failed $((NOW - 60 * 1000))
say "  frank's engine fails (finished 1 min ago); Kyuubi's close posts for erin and frank are lost"
kube DELETE "$PODS/kyuubi-heidi-1-driver" '{"gracePeriodSeconds":1}' >/dev/null || die "cannot delete heidi's pod"
say "  someone runs 'kubectl delete pod kyuubi-heidi-1-driver --now': it stays Terminating (our finalizer)"
posts "$W/late1.jsonl" closed alice-2 ivan-1
kyuubi_log "$ROOT_A" kyuubi-a <"$W/late1.jsonl"
say "  alice-2 and ivan-1 close: Kyuubi logs it, server A's shipper retries"
start_engine olivia-1
tick
engine_ends kyuubi-olivia-1-driver Succeeded $((NOW - 60 * 60 * 1000))
start_engine oscar-1
say "  orphans appear (their sessions never reached the journal): kyuubi-olivia-1-driver"
say "  (Succeeded an hour ago) and kyuubi-oscar-1-driver (Running)"
# dave's engine must be overdue (the submit grace) by the time kjournald is back
while tick && [ $((NOW - DAVE_T)) -lt $(((SUBMIT_GRACE_S + 1) * 1000)) ]; do sleep 0.2; done
session judy-1 judy CONNECTION judy-1
kyuubi_event judy-1 created >"$W/late2.jsonl"
start_engine judy-1
kyuubi_event judy-1 opened >>"$W/late2.jsonl"
kyuubi_log "$ROOT_A" kyuubi-a <"$W/late2.jsonl"
say "  judy opens a session: her engine pod starts without our finalizer, her lines wait"
say "  dave's session has waited longer than the submit grace for an engine"
snapshot "$W/before.json"
printf '\n  %sPods before the restart%s\n' "$B" "$OFF"
cat >"$W/notes-before.tsv" <<EOF
kyuubi-alice-1-driver	alice-2's close waits in server A's shipper
kyuubi-erin-1-driver	failed 10 min ago; Kyuubi's close post lost
kyuubi-frank-1-driver	failed 1 min ago; Kyuubi's close post lost
kyuubi-heidi-1-driver	deleted by someone; held by our finalizer
kyuubi-ivan-1-driver	ivan-1's close waits in server A's shipper
kyuubi-judy-1-driver	new; judy-1's lines wait in server A's shipper
kyuubi-olivia-1-driver	orphan (no session in the journal), finished an hour ago
kyuubi-oscar-1-driver	orphan (no session in the journal), running
EOF
summary before "$W/before.json" "$W/notes-before.tsv"

# --- 3. restart and recovery -----------------------------------------------------
head1 "3. kjournald restarts: the recovery pass, and the shippers' retries"
LAST_RUN=$("$KJOURNAL" actions --journal "$JOURNAL" --runs -o json | $PY -c 'import json,sys; print(max([json.loads(l)["id"] for l in sys.stdin if l.strip()] or [0]))')
LOG_LINES=$(log_lines)
kjournald_start
say "kjournald is back (same journal, same endpoint)"
EVENTS_SENT=$((EVENTS_SENT + 4 + BURST_EVENTS))

cat >"$W/expect-pods.tsv" <<EOF
kyuubi-alice-1-driver	Running fin	alice-3 is still open on this shared engine
kyuubi-bob-1-driver	gone	bob-1 closed: deleted by the live reaction
kyuubi-carol-1-driver	gone	its last session closed: deleted by the live reaction
kyuubi-erin-1-driver	gone	failed beyond the retain period: erin-1 closed, pod deleted
kyuubi-frank-1-driver	Failed nofin	failed 1 min ago: finalizer released, kept for the retain period
kyuubi-heidi-1-driver	gone	deleted by someone: finalizer released, heidi-1 closed
kyuubi-ivan-1-driver	gone	ivan-1's close, delivered late, deleted it
kyuubi-judy-1-driver	Running fin	judy-1's open, delivered late: finalizer added
kyuubi-olivia-1-driver	gone	terminal orphan past the retain period: deleted
kyuubi-oscar-1-driver	Running nofin	running orphan: reported, not deleted (the default)
EOF
cat >"$W/expect-sessions.tsv" <<EOF
alice-1	closed client
alice-2	closed client
alice-3	open
bob-1	closed client
carol-1	closed client
carol-2	closed client
dave-1	closed engine_missing
erin-1	closed engine_terminated
frank-1	closed engine_terminated
heidi-1	closed pod_deleted
ivan-1	closed client
judy-1	open
EOF
converged() {
    # every line delivered (the reconciler's 4 closes are events too)
    journal_has $((EVENTS_SENT + 4)) || return 1
    snapshot "$W/after.json"
    "$KJOURNAL" sessions --journal "$JOURNAL" --instance "$SERVER_A" -o json >"$W/sessions.jsonl" 2>/dev/null &&
        summary check-pods "$W/after.json" "$W/expect-pods.tsv" >/dev/null &&
        summary check-sessions "$W/sessions.jsonl" "$W/expect-sessions.tsv" >/dev/null
}
CONVERGED=0
tick
DEADLINE=$((NOW + 60000))
while tick && [ "$NOW" -lt "$DEADLINE" ]; do
    converged && { CONVERGED=1; break; }
    sleep 0.2
done
# SIGTERM: each shipper finishes its requests in flight, saves its state and
# logs its totals
for p in "$SHIP_A" "$SHIP_B"; do
    kill -TERM "$p"
    wait "$p"
    rc=$?
    remove_pid "$p"
    [ "$rc" = 0 ] || { FAILED=1; echo "${RED}demo: a shipper exited $rc on SIGTERM (see ship-*.log)${OFF}"; }
done
for l in "$W/ship-A.log" "$W/ship-B.log"; do
    grep 'msg=progress' "$l" | tail -n 1 | grep -q 'rejected=0 skipped=0' ||
        { FAILED=1; echo "${RED}demo: a shipper rejected or skipped lines (see $l)${OFF}"; }
done
B_TOTALS=$(grep 'msg=progress' "$W/ship-B.log" | tail -n 1)
STORED_AFTER=$(printf '%s' "$B_TOTALS" | sed -n 's/.* stored=\([0-9]*\).*/\1/p')
DUPS=$(printf '%s' "$B_TOTALS" | sed -n 's/.* duplicate=\([0-9]*\).*/\1/p')
if [ "$CONVERGED" = 1 ]; then
    say "the cluster and the journal agree; the shippers have delivered every line"
else
    FAILED=1
    say "${RED}no convergence within 60 s${OFF}"
fi
RECOVERY_RUN=$("$KJOURNAL" actions --journal "$JOURNAL" --runs -o json | $PY -c '
import json,sys
runs=[json.loads(l) for l in sys.stdin if l.strip()]
print(min([r["id"] for r in runs if r["id"] > '"$LAST_RUN"' and r["trigger"] == "recovery"] or [0]))')

printf '\n  %sPods after the recovery%s\n' "$B" "$OFF"
snapshot "$W/after.json"
summary after "$W/after.json" "$W/expect-pods.tsv" || FAILED=1

printf '\n  %sSessions of Kyuubi server %s%s  (kjournal sessions --instance %s)\n' "$B" "$SERVER_A" "$OFF" "$SERVER_A"
"$KJOURNAL" sessions --journal "$JOURNAL" --instance "$SERVER_A" --no-color | sed 's/^/    /'
"$KJOURNAL" sessions --journal "$JOURNAL" --instance "$SERVER_A" -o json >"$W/sessions.jsonl"
summary check-sessions "$W/sessions.jsonl" "$W/expect-sessions.tsv" || FAILED=1

"$KJOURNAL" actions --journal "$JOURNAL" --runs -o json >"$W/runs.jsonl"
"$KJOURNAL" actions --journal "$JOURNAL" -n all -o json >"$W/actions.jsonl"
RUNS=$(summary runs-since "$W/runs.jsonl" "$W/actions.jsonl" "$RECOVERY_RUN")
N_ACTIONS=${RUNS%% *}
printf '\n  %sWhat kjournald did after the restart%s  (kjournal actions -n %s)\n' "$B" "$OFF" "$N_ACTIONS"
printf '    runs:%s\n' "${RUNS#* }"
if [ "$RECOVERY_RUN" = 0 ]; then
    FAILED=1
    echo "    ${RED}no recovery run after the restart in the journal${OFF}"
else
    "$KJOURNAL" actions --journal "$JOURNAL" -n "$N_ACTIONS" --no-color | sed 's/^/    /'
fi

printf '\n  %sExactly once%s\n' "$B" "$OFF"
printf '    server %s logged %d events: %d were on disk when kjournald died; its shipper got %s\n' "$SERVER_B" "$BURST_EVENTS" "$AT_KILL" "${DUPS:-?}"
printf '    "duplicate" answers (on disk, the ack lost in the crash); %s answers were "stored"\n' "${STORED_AFTER:-?}"
"$KJOURNAL" stats --journal "$JOURNAL" -o json >"$W/stats.json"
# the reconciler's closes (dave, erin, frank, heidi) are events too
if summary stats "$W/stats.json" $((EVENTS_SENT + 4)) "$SERVER_B" "$BURST_SESSIONS"; then
    printf '    the journal holds %d events: the %d published, each once, and the reconciler'"'"'s 4 closes\n' \
        $((EVENTS_SENT + 4)) "$EVENTS_SENT"
else
    FAILED=1
fi

# kjournald stops (it holds the journal's writer lock), then a second pass
# right away changes nothing: kube-sim counts the mutations.
kill -TERM "$KJD"
wait "$KJD"
rc=$?
remove_pid "$KJD"
[ "$rc" = 0 ] || { FAILED=1; echo "    ${RED}kjournald exited $rc on SIGTERM${OFF}"; }
kube POST /_sim/stats 
"$KJOURNAL" recover --journal "$JOURNAL" --server "$SIM" "${POLICY[@]}" --quiet >"$W/recover2.out" 2>"$W/recover2.err"
rc=$?
kube GET /_sim/stats
MUT=$($PY -c 'import json,sys; print(json.load(sys.stdin)["mutations"])' <"$W/kube.out")
if [ "$rc" = 0 ] && [ "$MUT" = 0 ]; then
    printf '    a second pass (kjournal recover) once kjournald stopped: 0 mutations in the cluster\n'
else
    FAILED=1
    printf '    %sa second pass (kjournal recover): exit %s, %s mutations%s\n' "$RED" "$rc" "$MUT" "$OFF"
    sed 's/^/      /' "$W/recover2.err"
fi
if "$KJOURNAL" verify --journal "$JOURNAL" --no-color >"$W/verify.out" 2>&1; then
    printf '    kjournal verify: %s\n' "$(sed "s|$W/||" "$W/verify.out")"
else
    FAILED=1
    printf '    %skjournal verify failed:%s\n' "$RED" "$OFF"
    sed 's/^/      /' "$W/verify.out"
fi

tick
E=$((NOW - T0))
if [ "$FAILED" = 0 ]; then
    printf '\n%s%sOK%s: the end state is the one the story expects (%d.%ds)\n' "$B" "$GRN" "$OFF" $((E / 1000)) $((E % 1000 / 100))
    exit 0
fi
printf '\n%s%sFAILED%s: the end state differs from the story (see above)\n' "$B" "$RED" "$OFF" >&2
exit 1
