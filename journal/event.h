/*
 * event.h - the normalized session event and the session state machine.
 *
 * A kj_event is what the journal stores (../shared/DESIGN.md, "Events"). Its
 * strings are borrowed: whoever fills an event keeps them alive for as long as
 * it is used; the journal copies what it keeps. Optional strings are NULL when
 * absent (an empty string is treated as absent too).
 *
 * Session state machine (open -> closed):
 *
 *   state \ event | session_open                 | session_close
 *   --------------+------------------------------+---------------------------
 *   none          | create, open                 | create, closed
 *   open          | stay open, learn new fields  | close
 *   closed        | reject "session_closed"      | stored, stays closed
 *
 * One exception: a session closed "server_restarted" takes the opens of its
 * life before that restart (time_ms earlier than its close) as stored, stays
 * closed: the lines of one Kyuubi server reach the journal in any order.
 *
 * Server events (type server_start / server_stop) belong to no session:
 * session_id is NULL, instance is required, and for a start time_ms is the
 * server's startTime. A start of instance I at T closes every open session of
 * I whose session_type is "interactive" and which was created before T, with
 * reason "server_restarted" (Kyuubi recovers batch sessions; a session of
 * unknown type stays open), and so does an interactive session of I created
 * before T whose events arrive after the start. A stop closes nothing: a
 * crashed server writes none, so the next start is what tells.
 *
 * A retried event (same event_id) is a duplicate before any of this applies.
 * The journal also rejects, whatever the state, an event more than
 * KJ_EVENT_CLOCK_SKEW_MS ahead of its clock ("time_in_future") and a close
 * earlier than its session's first event ("close_before_open"): time_ms
 * decides when grace periods end.
 */
#ifndef KJ_EVENT_H
#define KJ_EVENT_H

#include <stddef.h>
#include <stdint.h>

/* Limits every producer of events checks (the wire decoder, the journal). */
#define KJ_EVENT_ID_MAX 128    /* bytes in event_id */
#define KJ_EVENT_FIELD_MAX 256 /* bytes in any other string field */
#define KJ_EVENT_PAYLOAD_MAX 65536
/* time_ms must lie in [2000-01-01, 2100-01-01). */
#define KJ_EVENT_TIME_MIN 946684800000LL
#define KJ_EVENT_TIME_MAX 4102444800000LL
/* How far ahead of the journal's clock time_ms may be (clocks of different
 * hosts disagree a little); the journal rejects a later one (time_in_future). */
#define KJ_EVENT_CLOCK_SKEW_MS (5LL * 60 * 1000)

typedef enum {
    KJ_EVENT_SESSION_OPEN = 1,
    KJ_EVENT_SESSION_CLOSE = 2,
    KJ_EVENT_SERVER_START = 3,
    KJ_EVENT_SERVER_STOP = 4,
} kj_event_type;

/* The reason of the closes a server start makes. */
#define KJ_REASON_SERVER_RESTARTED "server_restarted"

typedef struct kj_event {
    const char *event_id;   /* required: idempotency key, unique in the journal */
    kj_event_type type;     /* required */
    const char *session_id; /* required: Kyuubi session id */
    const char *instance;   /* Kyuubi server that owns the session (host:port) */
    const char *user;
    const char *engine_id;        /* Spark application id: pod label spark-app-selector */
    const char *engine_tag;       /* engine ref id: pod label kyuubi-unique-tag */
    const char *engine_namespace; /* namespace of the engine pods */
    int64_t time_ms;              /* required: when it happened, epoch ms */
    const char *reason;           /* on close: client, idle_timeout, engine_terminated, ... */
    const char *payload;          /* the event as received (JSON), kept for inspection */
    const char *session_type;     /* "interactive", "batch", or NULL: not known */
} kj_event;

typedef enum {
    KJ_SESSION_NONE = 0, /* no such session yet */
    KJ_SESSION_OPEN = 1,
    KJ_SESSION_CLOSED = 2,
} kj_session_state;

/* "session_open" / "session_close" / "server_start" / "server_stop"; NULL
 * for an unknown type. */
const char *kj_event_type_name(kj_event_type type);
/* Parses the names above; returns 0 or KJ_EINVAL. */
int kj_event_type_parse(const char *name, kj_event_type *out);
/* "open" / "closed" / "none". */
const char *kj_session_state_name(kj_session_state state);
int kj_session_state_parse(const char *name, kj_session_state *out);
/* Whether type is server_start or server_stop (an event of no session). */
int kj_event_is_server(kj_event_type type);

/*
 * Checks the fields of ev against the limits above. On failure returns
 * KJ_EINVAL and sets *code to a static machine-readable code
 * ("missing_field", "field_too_long", "bad_type", "bad_time") and msg to a
 * message that names the field.
 */
int kj_event_validate(const kj_event *ev, const char **code, char *msg, size_t msg_size);

/*
 * The state machine: the state a session moves to when ev_type arrives in
 * state `from`. Returns KJ_SESSION_NONE and sets *reject_code (a static
 * string) when the event must be rejected.
 */
kj_session_state kj_session_next(kj_session_state from, kj_event_type ev_type,
                                 const char **reject_code);

#endif
