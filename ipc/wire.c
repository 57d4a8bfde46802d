/*
 * wire.c - the v1 wire format (schema/PROTOCOL.md): decode a request frame
 * into normalized events, encode the reply.
 *
 * Whole-frame checks (size, UTF-8, NUL bytes, strict JSON grammar, nesting
 * depth) run before cJSON sees the bytes: cJSON accepts invalid UTF-8, raw
 * control characters and sloppy numbers, recurses on nesting, and silently
 * cuts strings at "\u0000". After them, cJSON's tree is the one reading of
 * the request: a key that appears twice (escaped or not) is refused, because
 * cJSON and a reader of the stored payload could pick different ones.
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "ipc_internal.h"

/* An item and the storage for what the decoder derives (Kyuubi form). */
typedef struct wire_slot {
    kj_wire_item it;
    char id_buf[KJ_EVENT_ID_MAX + 1];
    char *payload_owned;
    int payload_reduced; /* payload_owned is all that may be kept (server info) */
} wire_slot;

struct kj_wire_request {
    cJSON *root;
    char *raw; /* the frame, NUL-terminated: the payload of a single event */
    const char *request_id;
    size_t n;
    wire_slot *slots;
};

static int werr_set(kj_wire_error *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int werr_set(kj_wire_error *e, const char *code, const char *fmt, ...)
{
    if (e) {
        e->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
    }
    return KJ_EPROTO;
}

static int reject(kj_wire_item *it, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reject(kj_wire_item *it, const char *code, const char *fmt, ...)
{
    it->res.status = KJ_APPEND_REJECTED;
    it->res.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->res.message, sizeof it->res.message, fmt, ap);
    va_end(ap);
    return KJ_EINVAL;
}

/* UTF-8 well-formedness (no overlongs, no surrogates) and no NUL byte, over
 * the whole frame first: an encoding error is named as such wherever it is. */
static int check_utf8(const unsigned char *s, size_t n, kj_wire_error *e)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == 0)
            return werr_set(e, "bad_json", "request contains a NUL byte at offset %zu", i);
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            goto bad;
        }
        if (i + len > n)
            goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            goto bad;
        i += len;
    }
    return 0;
bad:
    return werr_set(e, "invalid_utf8", "request is not valid UTF-8 (offset %zu)", i);
}

/*
 * A strict RFC 8259 validator. cJSON is lenient where a reader of the stored
 * payload may not be: it takes raw control characters inside strings, any
 * byte up to 0x20 as white space, "+1" and "01" as numbers. Accepting only
 * what every JSON parser reads alike keeps the payload meaning what the
 * decoder saw. Recursion is bounded by max_depth, checked before descending.
 */
typedef struct scan {
    const unsigned char *s;
    size_t n, i;
    int depth, max_depth;
    kj_wire_error *e;
} scan;

static int scan_bad(scan *c, const char *what)
{
    if (c->i < c->n && c->s[c->i] < 0x20)
        return werr_set(c->e, "bad_json",
                        "request has a raw control character 0x%02x at offset %zu, outside any "
                        "string",
                        c->s[c->i], c->i);
    return werr_set(c->e, "bad_json", "request is not valid JSON: %s at offset %zu", what, c->i);
}

static void scan_ws(scan *c)
{
    while (c->i < c->n &&
           (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r'))
        c->i++;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char h = p[k];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
            v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            v |= (unsigned)(h - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static int scan_string(scan *c)
{
    const unsigned char *s = c->s;
    c->i++; /* the opening quote */
    while (c->i < c->n) {
        unsigned char ch = s[c->i];
        if (ch == '"') {
            c->i++;
            return 0;
        }
        if (ch < 0x20)
            return werr_set(c->e, "bad_json",
                            "request has a raw control character 0x%02x in a string at offset %zu "
                            "(JSON needs it escaped)",
                            ch, c->i);
        if (ch != '\\') {
            c->i++; /* UTF-8 was checked before */
            continue;
        }
        if (c->i + 1 >= c->n)
            break;
        unsigned char x = s[c->i + 1];
        if (x == '"' || x == '\\' || x == '/' || x == 'b' || x == 'f' || x == 'n' || x == 'r' ||
            x == 't') {
            c->i += 2;
            continue;
        }
        unsigned u, lo;
        if (x != 'u' || c->i + 6 > c->n || hex4(s + c->i + 2, &u) < 0)
            return scan_bad(c, "a bad escape in a string");
        if (u == 0)
            return werr_set(c->e, "bad_value", "request contains a \\u0000 escape at offset %zu",
                            c->i);
        if (u >= 0xDC00 && u <= 0xDFFF)
            return scan_bad(c, "an unpaired surrogate escape");
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (c->i + 12 > c->n || s[c->i + 6] != '\\' || s[c->i + 7] != 'u' ||
                hex4(s + c->i + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                return scan_bad(c, "an unpaired surrogate escape");
            c->i += 12;
            continue;
        }
        c->i += 6;
    }
    return scan_bad(c, "an unterminated string");
}

static int scan_digits(scan *c)
{
    size_t start = c->i;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9')
        c->i++;
    return c->i > start ? 0 : scan_bad(c, "a malformed number");
}

static int scan_number(scan *c)
{
    if (c->s[c->i] == '-')
        c->i++;
    if (c->i < c->n && c->s[c->i] == '0')
        c->i++;
    else if (scan_digits(c) < 0)
        return KJ_EPROTO;
    if (c->i < c->n && c->s[c->i] == '.') {
        c->i++;
        if (scan_digits(c) < 0)
            return KJ_EPROTO;
    }
    if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
        c->i++;
        if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-'))
            c->i++;
        if (scan_digits(c) < 0)
            return KJ_EPROTO;
    }
    return 0;
}

static int scan_value(scan *c);

static int scan_container(scan *c)
{
    int obj = c->s[c->i] == '{';
    unsigned char close = obj ? '}' : ']';
    if (++c->depth > c->max_depth)
        return werr_set(c->e, "too_deep", "request nests deeper than %d levels", c->max_depth);
    c->i++;
    scan_ws(c);
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        c->depth--;
        return 0;
    }
    for (;;) {
        if (obj) {
            scan_ws(c);
            if (c->i >= c->n || c->s[c->i] != '"')
                return scan_bad(c, "expected a key");
            if (scan_string(c) < 0)
                return KJ_EPROTO;
            scan_ws(c);
            if (c->i >= c->n || c->s[c->i] != ':')
                return scan_bad(c, "expected ':'");
            c->i++;
        }
        if (scan_value(c) < 0)
            return KJ_EPROTO;
        scan_ws(c);
        if (c->i < c->n && c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->i < c->n && c->s[c->i] == close) {
            c->i++;
            c->depth--;
            return 0;
        }
        return scan_bad(c, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int scan_value(scan *c)
{
    scan_ws(c);
    if (c->i >= c->n)
        return scan_bad(c, "unexpected end");
    unsigned char ch = c->s[c->i];
    if (ch == '{' || ch == '[')
        return scan_container(c);
    if (ch == '"')
        return scan_string(c);
    if (ch == '-' || (ch >= '0' && ch <= '9'))
        return scan_number(c);
    static const char *const lit[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t len = strlen(lit[k]);
        if (c->n - c->i >= len && !memcmp(c->s + c->i, lit[k], len)) {
            c->i += len;
            return 0;
        }
    }
    return scan_bad(c, "unexpected character");
}

/* The whole-frame checks, before cJSON sees the bytes. */
static int prescan(const unsigned char *s, size_t n, int max_depth, kj_wire_error *e)
{
    int rc = check_utf8(s, n, e);
    if (rc < 0)
        return rc;
    scan c = {s, n, 0, 0, max_depth, e};
    if (scan_value(&c) < 0)
        return KJ_EPROTO;
    scan_ws(&c);
    if (c.i < n)
        return c.s[c.i] < 0x20 ? scan_bad(&c, "")
                               : werr_set(e, "bad_json",
                                          "trailing data after the JSON value at offset %zu", c.i);
    return 0;
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "null";
}

/* An optional or required string field; JSON null and "" count as absent. */
static int str_field(kj_wire_item *it, const cJSON *o, const char *key, const char *name,
                     int required, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !*v->valuestring)) {
        if (required)
            return reject(it, "missing_field", "field '%s' is required", name);
        return 0;
    }
    if (!cJSON_IsString(v))
        return reject(it, "wrong_type", "field '%s' must be a string, got %s", name,
                      json_type_name(v));
    *out = v->valuestring;
    return 0;
}

/* An integral epoch-ms time; *present = 0 when absent or null. */
static int time_field(kj_wire_item *it, const cJSON *o, const char *key, int64_t *out, int *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *present = 0;
    *out = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v))
        return reject(it, "wrong_type", "field '%s' must be an integer (epoch ms), got %s", key,
                      json_type_name(v));
    double d = v->valuedouble;
    if (!(d > -9.2e18 && d < 9.2e18) || (double)(int64_t)d != d)
        return reject(it, "bad_time", "field '%s' must be an integer number of epoch ms", key);
    *out = (int64_t)d;
    *present = 1;
    return 0;
}

static int check_time_range(kj_wire_item *it, const char *name, int64_t t)
{
    if (t < KJ_EVENT_TIME_MIN || t >= KJ_EVENT_TIME_MAX)
        return reject(it, "bad_time", "field '%s' is %lld, outside years 2000..2099", name,
                      (long long)t);
    return 0;
}

static const char *const native_keys[] = {"event_id",     "type",   "session_id", "instance",
                                          "user",         "engine", "time_ms",    "reason",
                                          "session_type", "v",      "request_id", NULL};
static const char *const engine_keys[] = {"id", "tag", "namespace", NULL};

/* Unknown keys are errors in the native form: a typo must not silently drop
 * a field (repeated keys are refused for every form, in decode_item). */
static int check_keys(kj_wire_item *it, const cJSON *o, const char *const *allowed, int n_allowed,
                      const char *where)
{
    for (const cJSON *c = o->child; c; c = c->next) {
        int ok = 0;
        for (int k = 0; k < n_allowed && allowed[k]; k++)
            if (!strcmp(c->string, allowed[k]))
                ok = 1;
        if (!ok)
            return reject(it, "unknown_field", "unknown field '%s%.64s'", where, c->string);
    }
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key of object o that appears twice (as cJSON decoded it: "a" and "\u0061"
 * are the same key), or NULL. Sorts when o is large, so that a frame full of
 * keys costs n log n, not n squared. *oom is set when it could not tell. */
static const char *repeated_key(const cJSON *o, int *oom)
{
    size_t k = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        k++;
    if (k < 2)
        return NULL;
    if (k <= 16) {
        for (const cJSON *c = o->child; c; c = c->next)
            for (const cJSON *d = c->next; d; d = d->next)
                if (!strcmp(c->string, d->string))
                    return c->string;
        return NULL;
    }
    const char **keys = malloc(k * sizeof *keys);
    if (!keys) {
        *oom = 1;
        return NULL;
    }
    size_t i = 0;
    for (const cJSON *c = o->child; c; c = c->next)
        keys[i++] = c->string;
    qsort(keys, k, sizeof *keys, key_cmp);
    const char *dup = NULL;
    for (i = 1; i < k && !dup; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            dup = keys[i];
    free(keys);
    return dup;
}

/* The first repeated key in any object at or below v; *top says whether it
 * is one of v's own keys. Depth is bounded by the prescan. */
static const char *repeated_key_below(const cJSON *v, int *top, int *oom)
{
    if (cJSON_IsObject(v)) {
        const char *d = repeated_key(v, oom);
        if (d || *oom) {
            *top = 1;
            return d;
        }
    }
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c))
            continue;
        int inner = 0;
        const char *d = repeated_key_below(c, &inner, oom);
        if (d || *oom) {
            *top = 0;
            return d;
        }
    }
    return NULL;
}

static int decode_native(kj_wire_item *it, const cJSON *o, int top)
{
    kj_event *ev = &it->ev;
    const char *type = NULL;
    int present;
    const cJSON *eid = cJSON_GetObjectItemCaseSensitive(o, "event_id");
    if (cJSON_IsString(eid) && *eid->valuestring)
        it->event_id = eid->valuestring;
    if (check_keys(it, o, native_keys, top ? 11 : 9, "") ||
        str_field(it, o, "event_id", "event_id", 1, &ev->event_id) ||
        str_field(it, o, "type", "type", 1, &type))
        return KJ_EINVAL;
    if (kj_event_type_parse(type, &ev->type) < 0)
        return reject(it, "unknown_event_type",
                      "field 'type' is '%.64s', expected session_open, session_close, "
                      "server_start or server_stop",
                      type);
    /* A server event names its server, and no session. */
    int server = kj_event_is_server(ev->type);
    if (str_field(it, o, "session_id", "session_id", !server, &ev->session_id) ||
        str_field(it, o, "instance", "instance", server, &ev->instance) ||
        str_field(it, o, "user", "user", 0, &ev->user) ||
        str_field(it, o, "reason", "reason", 0, &ev->reason) ||
        str_field(it, o, "session_type", "session_type", 0, &ev->session_type) ||
        time_field(it, o, "time_ms", &ev->time_ms, &present))
        return KJ_EINVAL;
    if (!present)
        return reject(it, "missing_field", "field 'time_ms' is required");
    if (check_time_range(it, "time_ms", ev->time_ms))
        return KJ_EINVAL;
    const cJSON *eng = cJSON_GetObjectItemCaseSensitive(o, "engine");
    if (eng && !cJSON_IsNull(eng)) {
        if (!cJSON_IsObject(eng))
            return reject(it, "wrong_type", "field 'engine' must be an object, got %s",
                          json_type_name(eng));
        if (check_keys(it, eng, engine_keys, 3, "engine.") ||
            str_field(it, eng, "id", "engine.id", 0, &ev->engine_id) ||
            str_field(it, eng, "tag", "engine.tag", 0, &ev->engine_tag) ||
            str_field(it, eng, "namespace", "engine.namespace", 0, &ev->engine_namespace))
            return KJ_EINVAL;
    }
    return 0;
}

#define KJ_UUID_LEN 36

static int is_uuid(const char *s)
{
    for (int i = 0; i < KJ_UUID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23
                ? c != '-'
                : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return s[KJ_UUID_LEN] == 0;
}

/*
 * The engine ref id (the pod's kyuubi-unique-tag) in engineName, or NULL.
 * engineName is the engine's spark.app.name: Kyuubi's default
 * kyuubi_<SHARELEVEL>_<ENGINETYPE>_<user>[_<host>][_<subdomain>]_<engineRefId>
 * unless the user set spark.app.name ("nightly_etl_job"), which names no
 * pod. Only a name of that shape ending in a UUID yields a tag; any other
 * leaves the session to its engineId (spark-app-selector).
 */
static const char *default_engine_ref(const char *name)
{
    static const char *const levels[] = {"CONNECTION_", "USER_", "GROUP_", "SERVER_LOCAL_",
                                         "SERVER_"};
    static const char prefix[] = "kyuubi_";
    if (strncmp(name, prefix, sizeof prefix - 1))
        return NULL;
    const char *p = name + sizeof prefix - 1, *rest = NULL;
    for (size_t k = 0; k < sizeof levels / sizeof levels[0] && !rest; k++)
        if (!strncmp(p, levels[k], strlen(levels[k])))
            rest = p + strlen(levels[k]);
    const char *last = strrchr(name, '_');
    /* <ENGINETYPE>_<user> at least (an engine type may hold '_' itself). */
    if (!rest || last <= rest || !memchr(rest, '_', (size_t)(last - rest)) || rest[0] == '_' ||
        !is_uuid(last + 1))
        return NULL;
    return last + 1;
}

/* Kyuubi's fields of a server-info line that may be kept: serverConf and
 * serverEnv hold every setting and environment variable, secrets included. */
static const char *const server_info_keys[] = {"serverName", "serverIP", "startTime",
                                               "eventTime",  "state",    "eventType"};

/* The server-info line reduced to server_info_keys, as the payload. */
static int reduce_server_info(wire_slot *sl, const cJSON *o)
{
    cJSON *r = cJSON_CreateObject();
    for (size_t k = 0; r && k < sizeof server_info_keys / sizeof server_info_keys[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, server_info_keys[k]);
        if (!v || !(cJSON_IsString(v) || cJSON_IsNumber(v)))
            continue;
        cJSON *copy = cJSON_Duplicate(v, 0);
        if (!copy || !cJSON_AddItemToObject(r, server_info_keys[k], copy)) {
            cJSON_Delete(copy);
            cJSON_Delete(r);
            r = NULL;
        }
    }
    sl->payload_owned = r ? cJSON_PrintUnformatted(r) : NULL;
    sl->payload_reduced = 1;
    cJSON_Delete(r);
    return sl->payload_owned ? 0 : reject(&sl->it, "internal", "out of memory");
}

/*
 * Kyuubi's kyuubi_server_info: STARTED is a server_start at startTime, STOPPED
 * a server_stop at eventTime, both of the server serverIP. The event id is
 * the server's life (serverIP, startTime) and the state, so reposts dedupe.
 * Nothing of serverConf or serverEnv is read, kept or quoted.
 */
static int decode_kyuubi_server(wire_slot *sl, const cJSON *o)
{
    kj_wire_item *it = &sl->it;
    kj_event *ev = &it->ev;
    const char *state = NULL;
    int64_t start, evtime;
    int p_start, p_evtime;
    if (str_field(it, o, "serverIP", "serverIP", 1, &ev->instance) ||
        str_field(it, o, "state", "state", 1, &state) ||
        time_field(it, o, "startTime", &start, &p_start) ||
        time_field(it, o, "eventTime", &evtime, &p_evtime))
        return KJ_EINVAL;
    if (!p_start)
        return reject(it, "missing_field", "field 'startTime' is required");
    if (check_time_range(it, "startTime", start))
        return KJ_EINVAL;
    const char *what;
    if (!strcmp(state, "STARTED")) {
        ev->type = KJ_EVENT_SERVER_START;
        ev->time_ms = start;
        what = "started";
    } else if (!strcmp(state, "STOPPED")) {
        if (!p_evtime)
            return reject(it, "missing_field", "field 'eventTime' is required when STOPPED");
        if (check_time_range(it, "eventTime", evtime))
            return KJ_EINVAL;
        ev->type = KJ_EVENT_SERVER_STOP;
        ev->time_ms = evtime;
        what = "stopped";
    } else {
        return reject(it, "bad_value", "field 'state' is '%.32s', expected STARTED or STOPPED",
                      state);
    }
    int len = snprintf(sl->id_buf, sizeof sl->id_buf, "kyuubi-server:%s:%lld:%s", ev->instance,
                       (long long)start, what);
    if (len < 0 || (size_t)len >= sizeof sl->id_buf)
        return reject(it, "field_too_long", "field 'serverIP' is too long for an event id");
    ev->event_id = it->event_id = sl->id_buf;
    return reduce_server_info(sl, o);
}

/*
 * Kyuubi's KyuubiSessionEvent. The phase, not eventTime (repeated unchanged on
 * every post of a session), names the event, so reposts of a phase dedupe.
 * Unknown fields are Kyuubi's business and are kept in the payload only.
 */
static int decode_kyuubi(wire_slot *sl, const cJSON *o)
{
    kj_wire_item *it = &sl->it;
    kj_event *ev = &it->ev;
    const char *et = NULL, *engine_name = NULL, *stype = NULL;
    int64_t start, opened, end, evtime;
    int p_start, p_opened, p_end, p_evtime;
    if (str_field(it, o, "eventType", "eventType", 1, &et))
        return KJ_EINVAL;
    if (!strcmp(et, "kyuubi_server_info"))
        return decode_kyuubi_server(sl, o);
    if (strcmp(et, "kyuubi_session"))
        return reject(it, "unknown_event_type",
                      "field 'eventType' is '%.64s', only kyuubi_session and kyuubi_server_info "
                      "are accepted",
                      et);
    if (str_field(it, o, "sessionType", "sessionType", 0, &stype))
        return KJ_EINVAL;
    /* Another type (a newer Kyuubi's) is not known: such a session is never
     * closed by a restart. */
    ev->session_type = !stype                          ? NULL
                       : !strcmp(stype, "INTERACTIVE") ? "interactive"
                       : !strcmp(stype, "BATCH")       ? "batch"
                                                       : NULL;
    if (str_field(it, o, "sessionId", "sessionId", 1, &ev->session_id) ||
        str_field(it, o, "user", "user", 0, &ev->user) ||
        str_field(it, o, "serverIP", "serverIP", 0, &ev->instance) ||
        str_field(it, o, "engineId", "engineId", 0, &ev->engine_id) ||
        str_field(it, o, "engineName", "engineName", 0, &engine_name) ||
        time_field(it, o, "startTime", &start, &p_start) ||
        time_field(it, o, "openedTime", &opened, &p_opened) ||
        time_field(it, o, "endTime", &end, &p_end) ||
        time_field(it, o, "eventTime", &evtime, &p_evtime))
        return KJ_EINVAL;
    const cJSON *exc = cJSON_GetObjectItemCaseSensitive(o, "exception");
    int failed = exc && !cJSON_IsNull(exc);
    const char *phase, *tname;
    int64_t t;
    int tp;
    if (p_end && end > 0) {
        phase = "closed", tname = "endTime", t = end, tp = 1;
        ev->type = KJ_EVENT_SESSION_CLOSE;
        ev->reason = failed ? "exception" : "client";
    } else if (failed) {
        phase = "failed", tname = "eventTime", t = evtime, tp = p_evtime;
        ev->type = KJ_EVENT_SESSION_OPEN;
    } else if (p_opened && opened > 0) {
        phase = "opened", tname = "openedTime", t = opened, tp = 1;
        ev->type = KJ_EVENT_SESSION_OPEN;
    } else {
        phase = "created", tname = "startTime", t = start, tp = p_start;
        ev->type = KJ_EVENT_SESSION_OPEN;
    }
    if (!tp)
        return reject(it, "missing_field", "field '%s' is required for the %s phase", tname, phase);
    if (check_time_range(it, tname, t))
        return KJ_EINVAL;
    ev->time_ms = t;
    int len = snprintf(sl->id_buf, sizeof sl->id_buf, "kyuubi:%s:%s", ev->session_id, phase);
    if (len < 0 || (size_t)len >= sizeof sl->id_buf)
        return reject(it, "field_too_long", "field 'sessionId' is too long for an event id");
    ev->event_id = it->event_id = sl->id_buf;
    /* A batch's pod carries its batch id, which is its session id; another
     * session's engine is named by engineName, when Kyuubi named it. */
    if (ev->session_type && !strcmp(ev->session_type, "batch"))
        ev->engine_tag = ev->session_id;
    else if (engine_name)
        ev->engine_tag = default_engine_ref(engine_name);
    return 0;
}

static void decode_item(wire_slot *sl, const cJSON *o, int top, const char *payload)
{
    memset(sl, 0, sizeof *sl);
    kj_wire_item *it = &sl->it;
    if (!cJSON_IsObject(o)) {
        reject(it, "not_object", "an event must be a JSON object, got %s", json_type_name(o));
        return;
    }
    int top_key = 0, oom = 0;
    const char *dup = repeated_key_below(o, &top_key, &oom);
    if (oom) {
        reject(it, "internal", "out of memory");
        return;
    }
    if (dup) {
        if (top_key)
            reject(it, "duplicate_field", "field '%.64s' appears twice", dup);
        else
            reject(it, "duplicate_field", "key '%.64s' appears twice in an object of the event",
                   dup);
        return;
    }
    int kyuubi = cJSON_GetObjectItemCaseSensitive(o, "eventType") != NULL;
    it->form = kyuubi ? KJ_WIRE_KYUUBI : KJ_WIRE_NATIVE;
    if ((kyuubi ? decode_kyuubi(sl, o) : decode_native(it, o, top)) < 0)
        return;
    if (sl->payload_reduced)
        payload = sl->payload_owned;
    else if (!payload)
        payload = sl->payload_owned = cJSON_PrintUnformatted(o);
    /* An oversized raw event (a Kyuubi stack trace) is stored without its
     * payload rather than rejected: losing a close is worse. */
    it->ev.payload = payload && strlen(payload) <= KJ_EVENT_PAYLOAD_MAX ? payload : NULL;
    const char *code = NULL;
    if (kj_event_validate(&it->ev, &code, it->res.message, sizeof it->res.message) < 0) {
        it->res.status = KJ_APPEND_REJECTED;
        it->res.code = code;
    }
}

/* Skips one JSON value from s[i] (already known to be valid JSON); returns
 * the index of the ',' ']' or '}' that ends it at depth 0, or n. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    int depth = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i;
            depth--;
        } else if (c == ',' && depth == 0) {
            return i;
        }
        i++;
    }
    return n;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && strchr(" \t\r\n", s[i]))
        i++;
    return i;
}

static size_t skip_string(const char *s, size_t n, size_t i)
{
    for (i++; i < n && s[i] != '"'; i++)
        if (s[i] == '\\')
            i++;
    return i + 1;
}

/*
 * Cuts the raw text of each element of the top-level array that is member
 * number `member` of the request object (NUL-terminating each in place:
 * cJSON has copied what it needs), so a batched event's payload is the bytes
 * as received. Which member holds the events is cJSON's decision, passed in
 * as its position: this walk never reads a key, so it cannot take another
 * member for "events". The frame passed the strict prescan. Returns how many
 * elements were found; the caller falls back to re-serialising when that is
 * not n.
 */
static size_t split_events(char *raw, size_t n, size_t member, char **elem, size_t max)
{
    size_t i = skip_ws(raw, n, 0), found = 0;
    if (i >= n || raw[i] != '{')
        return 0;
    i++;
    for (size_t m = 0; i < n; m++) {
        i = skip_ws(raw, n, i);
        if (i >= n || raw[i] != '"')
            return 0;
        i = skip_ws(raw, n, skip_string(raw, n, i));
        if (i >= n || raw[i] != ':')
            return 0;
        i = skip_ws(raw, n, i + 1);
        if (m != member) {
            i = skip_value(raw, n, i);
        } else {
            if (i >= n || raw[i] != '[')
                return 0;
            i++;
            while (i < n && found < max) {
                i = skip_ws(raw, n, i);
                size_t start = i, end = skip_value(raw, n, i);
                if (end >= n)
                    return 0;
                size_t e = end;
                while (e > start && strchr(" \t\r\n", raw[e - 1]))
                    e--;
                char term = raw[end];
                raw[e] = 0;
                elem[found++] = raw + start;
                i = end + 1;
                if (term == ']')
                    break;
            }
            return found;
        }
        if (i >= n || raw[i] == '}')
            return 0;
        i++; /* ',' */
    }
    return 0;
}

/* The frame as a JSON object: its request_id and protocol version. */
static int decode_envelope(kj_wire_request *r, size_t len, kj_wire_error *werr)
{
    const char *end = NULL;
    r->root = cJSON_ParseWithLengthOpts(r->raw, len, &end, 0);
    if (!r->root)
        return werr_set(werr, "bad_json", "request is not valid JSON (near offset %zu)",
                        end ? (size_t)(end - r->raw) : (size_t)0);
    for (const char *p = end; p && p < r->raw + len; p++)
        if (!strchr(" \t\r\n", *p))
            return werr_set(werr, "bad_json", "trailing data after the JSON value at offset %zu",
                            (size_t)(p - r->raw));
    if (!cJSON_IsObject(r->root))
        return werr_set(werr, "bad_request", "request must be a JSON object, got %s",
                        json_type_name(r->root));
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(r->root, "request_id");
    if (rid && !cJSON_IsNull(rid)) {
        if (!cJSON_IsString(rid) || strlen(rid->valuestring) > KJ_EVENT_ID_MAX)
            return werr_set(werr, "bad_request",
                            "field 'request_id' must be a string of at most %d bytes",
                            KJ_EVENT_ID_MAX);
        r->request_id = rid->valuestring;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, "v");
    if (v && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return werr_set(werr, "unsupported_version",
                        "field 'v' must be 1, the only protocol version");
    return 0;
}

/* A request with "events": each element decoded on its own, its raw text
 * (when the frame can be split) kept as its payload. */
static int decode_batch(kj_wire_request *r, size_t len, const cJSON *events, size_t max_events,
                        kj_wire_error *werr)
{
    size_t member = 0, at = 0;
    for (const cJSON *c = r->root->child; c; c = c->next, at++) {
        if (strcmp(c->string, "events") && strcmp(c->string, "request_id") &&
            strcmp(c->string, "v"))
            return werr_set(werr, "bad_request", "unknown field '%.64s' in a batch request",
                            c->string);
        if (c == events)
            member = at;
    }
    int oom = 0;
    const char *dup = repeated_key(r->root, &oom);
    if (dup || oom)
        return oom ? werr_set(werr, "internal", "out of memory")
                   : werr_set(werr, "bad_request", "field '%s' appears twice in the request", dup);
    if (!cJSON_IsArray(events))
        return werr_set(werr, "bad_request", "field 'events' must be an array, got %s",
                        json_type_name(events));
    size_t n = (size_t)cJSON_GetArraySize(events);
    if (n == 0)
        return werr_set(werr, "empty_batch", "field 'events' is empty");
    if (n > max_events)
        return werr_set(werr, "too_many_events", "request holds %zu events, the limit is %zu", n,
                        max_events);
    if (!(r->slots = malloc(n * sizeof *r->slots)))
        return werr_set(werr, "internal", "out of memory");
    char **elem = malloc(n * sizeof *elem);
    int raw_ok = elem && split_events(r->raw, len, member, elem, n) == n;
    r->n = 0;
    for (const cJSON *c = events->child; c; c = c->next, r->n++)
        decode_item(&r->slots[r->n], c, 0, raw_ok ? elem[r->n] : NULL);
    free(elem);
    return 0;
}

int kj_wire_decode(const void *data, size_t len, const kj_wire_limits *lim, kj_wire_request **out,
                   kj_wire_error *werr)
{
    size_t max_message = lim && lim->max_message ? lim->max_message : KJ_IPC_MAX_MESSAGE;
    size_t max_events = lim && lim->max_events ? lim->max_events : KJ_IPC_MAX_EVENTS;
    int max_depth = lim && lim->max_depth ? lim->max_depth : KJ_IPC_MAX_DEPTH;
    *out = NULL;
    if (len == 0)
        return werr_set(werr, "empty_request", "request frame is empty");
    if (len > max_message)
        return werr_set(werr, "too_large", "request is %zu bytes, the limit is %zu", len,
                        max_message);
    int rc = prescan(data, len, max_depth, werr);
    if (rc < 0)
        return rc;
    kj_wire_request *r = calloc(1, sizeof *r);
    if (!r || !(r->raw = malloc(len + 1))) {
        free(r);
        return werr_set(werr, "internal", "out of memory");
    }
    memcpy(r->raw, data, len);
    r->raw[len] = 0;
    if ((rc = decode_envelope(r, len, werr)) < 0)
        goto out;
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(r->root, "events");
    if (events) {
        rc = decode_batch(r, len, events, max_events, werr);
    } else if (!(r->slots = malloc(sizeof *r->slots))) {
        rc = werr_set(werr, "internal", "out of memory");
    } else {
        /* A single event: the frame is its payload. */
        r->n = 1;
        decode_item(&r->slots[0], r->root, 1, r->raw);
    }
out:
    if (rc < 0) {
        kj_wire_request_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void kj_wire_request_free(kj_wire_request *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->slots && i < r->n; i++)
        cJSON_free(r->slots[i].payload_owned);
    free(r->slots);
    cJSON_Delete(r->root);
    free(r->raw);
    free(r);
}

size_t kj_wire_count(const kj_wire_request *r)
{
    return r->n;
}

kj_wire_item *kj_wire_item_at(kj_wire_request *r, size_t i)
{
    return i < r->n ? &r->slots[i].it : NULL;
}

const char *kj_wire_request_id(const kj_wire_request *r)
{
    return r->request_id;
}

/* --- reply encoding ------------------------------------------------------------ */

int kj_buf_grow(kj_buf *b, size_t more)
{
    if (b->oom)
        return -1;
    if (kj_grow((void **)&b->s, &b->cap, b->len + more + 1, 1)) {
        b->oom = 1;
        return -1;
    }
    return 0;
}

void kj_buf_add(kj_buf *b, const char *s, size_t n)
{
    if (kj_buf_grow(b, n) < 0)
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void kj_buf_str(kj_buf *b, const char *s)
{
    kj_buf_add(b, s, strlen(s));
}

/* A JSON string literal; input is valid UTF-8 (checked on the way in). */
void kj_buf_json(kj_buf *b, const char *s)
{
    kj_buf_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            kj_buf_add(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            kj_buf_str(b, e);
        } else if (c < 0x80) {
            kj_buf_add(b, p, 1);
        } else {
            /* A message may quote a field cut in the middle of a character. */
            size_t len = (c & 0xE0) == 0xC0   ? 2
                         : (c & 0xF0) == 0xE0 ? 3
                         : (c & 0xF8) == 0xF0 ? 4
                                              : 0;
            size_t k = 1;
            while (len && k < len && ((unsigned char)p[k] & 0xC0) == 0x80)
                k++;
            if (len && k == len) {
                kj_buf_add(b, p, len);
                p += len - 1;
            } else {
                kj_buf_str(b, "\\ufffd");
                p += k - 1;
            }
        }
    }
    kj_buf_add(b, "\"", 1);
}

char *kj_wire_reply(const kj_wire_request *r)
{
    kj_buf b = {0};
    kj_buf_str(&b, "{\"ok\":true,");
    if (r->request_id) {
        kj_buf_str(&b, "\"request_id\":");
        kj_buf_json(&b, r->request_id);
        kj_buf_str(&b, ",");
    }
    kj_buf_str(&b, "\"results\":[");
    for (size_t i = 0; i < r->n; i++) {
        const kj_wire_item *it = &r->slots[i].it;
        kj_buf_str(&b, i ? ",{" : "{");
        if (it->event_id) {
            kj_buf_str(&b, "\"event_id\":");
            kj_buf_json(&b, it->event_id);
            kj_buf_str(&b, ",");
        }
        const char *st = kj_append_status_name(it->res.status);
        kj_buf_str(&b, "\"status\":");
        kj_buf_json(&b, st ? st : "rejected");
        if (it->res.status == KJ_APPEND_REJECTED || !st) {
            kj_buf_str(&b, ",\"error\":{\"code\":");
            kj_buf_json(&b, it->res.code ? it->res.code : "internal");
            kj_buf_str(&b, ",\"message\":");
            kj_buf_json(&b, st ? it->res.message : "no answer from the journal");
            kj_buf_str(&b, "}");
        }
        kj_buf_str(&b, "}");
    }
    kj_buf_str(&b, "]}");
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

char *kj_wire_error_reply(const kj_wire_error *e, const char *request_id, int retry)
{
    kj_buf b = {0};
    kj_buf_str(&b, "{\"ok\":false,");
    if (request_id) {
        kj_buf_str(&b, "\"request_id\":");
        kj_buf_json(&b, request_id);
        kj_buf_str(&b, ",");
    }
    if (retry)
        kj_buf_str(&b, "\"retry\":true,");
    kj_buf_str(&b, "\"error\":{\"code\":");
    kj_buf_json(&b, e->code ? e->code : "internal");
    kj_buf_str(&b, ",\"message\":");
    kj_buf_json(&b, e->message);
    kj_buf_str(&b, "}}");
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
