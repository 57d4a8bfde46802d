/* event.c - validation of normalized events and the session state machine. */
#include "event.h"

#include <stdio.h>
#include <string.h>

#include "kj.h"

const char *kj_event_type_name(kj_event_type type)
{
    switch (type) {
    case KJ_EVENT_SESSION_OPEN:
        return "session_open";
    case KJ_EVENT_SESSION_CLOSE:
        return "session_close";
    case KJ_EVENT_SERVER_START:
        return "server_start";
    case KJ_EVENT_SERVER_STOP:
        return "server_stop";
    }
    return NULL;
}

int kj_event_is_server(kj_event_type type)
{
    return type == KJ_EVENT_SERVER_START || type == KJ_EVENT_SERVER_STOP;
}

int kj_event_type_parse(const char *name, kj_event_type *out)
{
    if (name && !strcmp(name, "session_open"))
        *out = KJ_EVENT_SESSION_OPEN;
    else if (name && !strcmp(name, "session_close"))
        *out = KJ_EVENT_SESSION_CLOSE;
    else if (name && !strcmp(name, "server_start"))
        *out = KJ_EVENT_SERVER_START;
    else if (name && !strcmp(name, "server_stop"))
        *out = KJ_EVENT_SERVER_STOP;
    else
        return KJ_EINVAL;
    return 0;
}

const char *kj_session_state_name(kj_session_state state)
{
    switch (state) {
    case KJ_SESSION_OPEN:
        return "open";
    case KJ_SESSION_CLOSED:
        return "closed";
    case KJ_SESSION_NONE:
        break;
    }
    return "none";
}

int kj_session_state_parse(const char *name, kj_session_state *out)
{
    if (name && !strcmp(name, "open"))
        *out = KJ_SESSION_OPEN;
    else if (name && !strcmp(name, "closed"))
        *out = KJ_SESSION_CLOSED;
    else
        return KJ_EINVAL;
    return 0;
}

/* Control characters have no place in ids, names or namespaces. */
static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int check_field(const char *name, const char *value, int required, size_t max,
                       const char **code, char *msg, size_t msg_size)
{
    if (!value || !*value) {
        if (!required)
            return 0;
        *code = "missing_field";
        snprintf(msg, msg_size, "field '%s' is required", name);
        return KJ_EINVAL;
    }
    size_t len = strlen(value);
    if (len > max) {
        *code = "field_too_long";
        snprintf(msg, msg_size, "field '%s' is %zu bytes long, the limit is %zu", name, len, max);
        return KJ_EINVAL;
    }
    if (has_control(value)) {
        *code = "bad_value";
        snprintf(msg, msg_size, "field '%s' contains control characters", name);
        return KJ_EINVAL;
    }
    return 0;
}

int kj_event_validate(const kj_event *ev, const char **code, char *msg, size_t msg_size)
{
    const size_t max = KJ_EVENT_FIELD_MAX;
    int server = kj_event_is_server(ev->type);
    if (!kj_event_type_name(ev->type)) {
        *code = "bad_type";
        snprintf(msg, msg_size,
                 "field 'type' must be session_open, session_close, server_start or server_stop");
        return KJ_EINVAL;
    }
    if (check_field("event_id", ev->event_id, 1, KJ_EVENT_ID_MAX, code, msg, msg_size) ||
        check_field("session_id", ev->session_id, !server, max, code, msg, msg_size) ||
        check_field("instance", ev->instance, server, max, code, msg, msg_size) ||
        check_field("user", ev->user, 0, max, code, msg, msg_size) ||
        check_field("engine.id", ev->engine_id, 0, max, code, msg, msg_size) ||
        check_field("engine.tag", ev->engine_tag, 0, max, code, msg, msg_size) ||
        check_field("engine.namespace", ev->engine_namespace, 0, max, code, msg, msg_size) ||
        check_field("reason", ev->reason, 0, max, code, msg, msg_size))
        return KJ_EINVAL;
    /* A server event names no session: what it carries is the server's. */
    const char *extra = !server                             ? NULL
                        : ev->session_id && *ev->session_id ? "session_id"
                        : ev->user && *ev->user             ? "user"
                        : (ev->engine_id && *ev->engine_id) ||
                                (ev->engine_tag && *ev->engine_tag) ||
                                (ev->engine_namespace && *ev->engine_namespace)
                            ? "engine"
                        : ev->reason && *ev->reason             ? "reason"
                        : ev->session_type && *ev->session_type ? "session_type"
                                                                : NULL;
    if (extra) {
        *code = "unexpected_field";
        snprintf(msg, msg_size, "field '%s' has no place in a %s event", extra,
                 kj_event_type_name(ev->type));
        return KJ_EINVAL;
    }
    if (ev->session_type && *ev->session_type && strcmp(ev->session_type, "interactive") &&
        strcmp(ev->session_type, "batch")) {
        *code = "bad_value";
        snprintf(msg, msg_size, "field 'session_type' must be interactive or batch");
        return KJ_EINVAL;
    }
    if (ev->time_ms < KJ_EVENT_TIME_MIN || ev->time_ms >= KJ_EVENT_TIME_MAX) {
        *code = "bad_time";
        snprintf(msg, msg_size, "field 'time_ms' is %lld, outside years 2000..2099",
                 (long long)ev->time_ms);
        return KJ_EINVAL;
    }
    if (ev->payload && strlen(ev->payload) > KJ_EVENT_PAYLOAD_MAX) {
        *code = "field_too_long";
        snprintf(msg, msg_size, "field 'payload' is longer than %d bytes", KJ_EVENT_PAYLOAD_MAX);
        return KJ_EINVAL;
    }
    return 0;
}

kj_session_state kj_session_next(kj_session_state from, kj_event_type ev_type,
                                 const char **reject_code)
{
    if (ev_type == KJ_EVENT_SESSION_OPEN) {
        if (from == KJ_SESSION_CLOSED) {
            *reject_code = "session_closed";
            return KJ_SESSION_NONE;
        }
        return KJ_SESSION_OPEN;
    }
    if (ev_type == KJ_EVENT_SESSION_CLOSE)
        return KJ_SESSION_CLOSED;
    *reject_code = "bad_type";
    return KJ_SESSION_NONE;
}
