/*
 * watch.c - watch streams: the bounded line parser and event decoder
 * (kube_internal.h), and the reflector, a list then a watch of one namespace
 * resumed and relisted like client-go's (kube.h).
 *
 * The stream is one JSON object per line: {"type":"ADDED","object":{...}}.
 * The engine hands us the bytes as libcurl receives them, so a line may come
 * in pieces or several in one chunk; over HTTP/2 there is no chunked framing
 * at all. Only an unfinished line is copied, and at most max bytes of it.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/kube_internal.h"

/* ---- the parser -------------------------------------------------------- */

const char *kj_watch_type_name(kj_watch_type t)
{
    switch (t) {
    case KJ_WATCH_ADDED:
        return "ADDED";
    case KJ_WATCH_MODIFIED:
        return "MODIFIED";
    case KJ_WATCH_DELETED:
        return "DELETED";
    case KJ_WATCH_BOOKMARK:
        return "BOOKMARK";
    case KJ_WATCH_ERROR:
        return "ERROR";
    }
    return "?";
}

static int type_of(const char *s)
{
    for (int t = KJ_WATCH_ADDED; t <= KJ_WATCH_ERROR; t++)
        if (!strcmp(s, kj_watch_type_name((kj_watch_type)t)))
            return t;
    return 0;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

int kj_watch_decode_line(const char *line, size_t len, kj_kube_watch_fn fn, void *ud, kj_err *err)
{
    int rc = 0;
    kj_pod pod;
    int have_pod = 0;
    kj_kube_status st;
    char *status_text = NULL;
    const char *end = NULL;
    /* a NUL or anything after the object makes the line no JSON value */
    cJSON *j = memchr(line, '\0', len) ? NULL : cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (j && !blank(end, len - (size_t)(end - line))) {
        cJSON_Delete(j);
        j = NULL;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(j, "object");
    int t = cJSON_IsString(type) && type->valuestring ? type_of(type->valuestring) : 0;
    if (!j || !cJSON_IsObject(j)) {
        rc = kj_err_set(err, KJ_EPROTO, "watch: a line is not a JSON object");
        goto out;
    }
    if (!t || !cJSON_IsObject(obj)) {
        rc = kj_err_set(err, KJ_EPROTO, "watch: a line is not a watch event (type %.20s)",
                        cJSON_IsString(type) && type->valuestring ? type->valuestring : "missing");
        goto out;
    }
    kj_watch_event ev = {.type = (kj_watch_type)t, .resource_version = ""};
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    if (cJSON_IsString(rv) && rv->valuestring)
        ev.resource_version = rv->valuestring;
    if (t == KJ_WATCH_ERROR) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
        int http = cJSON_IsNumber(code) && code->valuedouble > 0 && code->valuedouble < 1000
                       ? (int)code->valuedouble
                       : 500;
        if (!(status_text = cJSON_PrintUnformatted(obj))) {
            rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
            goto out;
        }
        kj_kube_status_parse(http, status_text, strlen(status_text), &st);
        ev.status = &st;
    } else if (t != KJ_WATCH_BOOKMARK) {
        if ((rc = kj_pod_from_cjson(obj, &pod, err)) < 0) {
            kj_err_prefix(err, "watch %s event", kj_watch_type_name(ev.type));
            goto out;
        }
        have_pod = 1;
        ev.pod = &pod;
    }
    if (fn && fn(&ev, ud))
        rc = kj_err_set(err, KJ_ECANCELED, "watch: stopped by the caller");
out:
    if (have_pod)
        kj_pod_clear(&pod);
    free(status_text);
    cJSON_Delete(j);
    return rc;
}

void kj_watch_parser_init(kj_watch_parser *p, size_t max_line)
{
    memset(p, 0, sizeof *p);
    p->max = max_line ? max_line : KJ_WATCH_MAX_LINE;
}

static int too_long(const kj_watch_parser *p, kj_err *err)
{
    return kj_err_set(err, KJ_EPROTO, "watch: a line longer than %zu bytes", p->max);
}

static int one_line(kj_watch_parser *p, const char *s, size_t n, kj_kube_watch_fn fn, void *ud,
                    kj_err *err)
{
    if (blank(s, n))
        return 0;
    p->lines++;
    return kj_watch_decode_line(s, n, fn, ud, err);
}

int kj_watch_parser_feed(kj_watch_parser *p, const char *data, size_t len, kj_kube_watch_fn fn,
                         void *ud, kj_err *err)
{
    int rc = 0;
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t piece = nl ? (size_t)(nl - data) : len;
        if (p->len + piece > p->max)
            return too_long(p, err);
        if (!nl || p->len) {
            /* an unfinished line, or the end of one begun earlier: copy */
            if (kj_grow((void **)&p->buf, &p->cap, p->len + piece + 1, 1))
                return kj_err_set(err, KJ_ENOMEM, "out of memory");
            memcpy(p->buf + p->len, data, piece);
            p->len += piece;
            if (!nl)
                return 0;
            rc = one_line(p, p->buf, p->len, fn, ud, err);
            p->len = 0;
        } else {
            rc = one_line(p, data, piece, fn, ud, err);
        }
        if (rc)
            return rc;
        data += piece + 1;
        len -= piece + 1;
    }
    return 0;
}

int kj_watch_parser_finish(kj_watch_parser *p, kj_err *err)
{
    if (p->len && !blank(p->buf, p->len))
        return kj_err_set(err, KJ_EPROTO, "watch: the stream ended inside a line (%zu bytes)",
                          p->len);
    p->len = 0;
    return 0;
}

void kj_watch_parser_free(kj_watch_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    memset(p, 0, sizeof *p);
}

/* ---- the reflector ----------------------------------------------------- */

#define BACKOFF_BASE_MS 250
#define BACKOFF_MAX_MS 30000
/* A stream that lived this long, or brought an event, was healthy: resume at once. */
#define HEALTHY_MS 1000

struct kj_reflector {
    kj_kube *k;
    char *ns, *sel;
    int timeout_s;
    kj_reflector_opts o;
    char rv[64];      /* last version seen: the list's, then every event's */
    int listed;       /* a list has completed */
    int relist;       /* the list in hand is a relist */
    int failures;     /* in a row, for the backoff */
    int expired;      /* the stream in hand carried a 410 */
    int stream_error; /* ... or another ERROR */
    int64_t stream_started_ms;
    uint64_t stream_events;
    uint64_t rng;
    kj_reflector_stats st;
};

static uint64_t rnd(kj_reflector *r)
{
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 2685821657736338717ULL;
}

/* 0 after one failure (a dropped stream is resumed at once), then equal
 * jitter over 250 ms, 500 ms, ... up to 30 s. */
static int64_t backoff(kj_reflector *r)
{
    if (r->failures <= 1)
        return 0;
    int64_t d = BACKOFF_BASE_MS;
    for (int i = 2; i < r->failures && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    return d / 2 + (int64_t)(rnd(r) % (uint64_t)(d / 2 + 1));
}

static void submit_list(kj_reflector *r, int64_t delay_ms);
static void submit_watch(kj_reflector *r, int64_t delay_ms);

static int list_page(const kj_pod *pods, size_t n, int restarted, void *ud)
{
    (void)restarted; /* pods seen again are planned again: harmless */
    kj_reflector *r = ud;
    if (r->o.on_list)
        r->o.on_list(pods, n, r->relist, r->o.ud);
    return 0;
}

static void list_done(kj_kube *k, const kj_kube_result *res, void *ud)
{
    (void)k;
    kj_reflector *r = ud;
    if (res->rc == KJ_ECANCELED)
        return;
    if (res->rc < 0) {
        char q[600];
        r->st.errors++;
        r->failures++;
        kj_log(KJ_LOG_WARN, "watch: listing pods failed", "namespace=%s error=%s", r->ns,
               kj_logq(q, sizeof q, res->err.msg));
        r->relist = 1;
        r->st.relists++;
        submit_list(r, backoff(r) + BACKOFF_BASE_MS);
        return;
    }
    r->st.lists++;
    r->failures = 0;
    r->listed = 1;
    snprintf(r->rv, sizeof r->rv, "%s", res->resource_version ? res->resource_version : "");
    submit_watch(r, 0);
}

static void submit_list(kj_reflector *r, int64_t delay_ms)
{
    kj_kube_req q = KJ_KUBE_REQ_INIT;
    q.op = KJ_KUBE_LIST_PODS;
    q.namespace_ = r->ns;
    q.label_selector = r->sel;
    q.limit = 500;
    q.on_page = list_page;
    q.delay_ms = delay_ms;
    r->listed = 0;
    int rc = kj_kube_submit(r->k, &q, list_done, r);
    if (rc < 0 && rc != KJ_ECANCELED)
        kj_log(KJ_LOG_ERROR, "watch: cannot queue a list", "namespace=%s error=%s", r->ns,
               kj_strerror(rc));
}

static int on_event(const kj_watch_event *ev, void *ud)
{
    kj_reflector *r = ud;
    r->st.events[ev->type]++;
    r->stream_events++;
    if (ev->type == KJ_WATCH_ERROR) {
        if (ev->status && ev->status->http == 410)
            r->expired = 1;
        else
            r->stream_error = 1;
        char q[600];
        kj_log(r->expired ? KJ_LOG_INFO : KJ_LOG_WARN, "watch: error event",
               "namespace=%s code=%d message=%s", r->ns, ev->status ? ev->status->http : 0,
               kj_logq(q, sizeof q, ev->status ? ev->status->message : ""));
        return 1;
    }
    if (ev->resource_version[0])
        snprintf(r->rv, sizeof r->rv, "%s", ev->resource_version);
    if (r->o.on_event)
        r->o.on_event(ev, r->o.ud);
    return 0;
}

static void watch_done(kj_kube *k, const kj_kube_result *res, void *ud)
{
    (void)k;
    kj_reflector *r = ud;
    int expired = r->expired || (res->status.http == 410);
    int ours = r->expired || r->stream_error;
    r->expired = r->stream_error = 0;
    if (res->rc == KJ_ECANCELED && !ours)
        return; /* the client is being stopped */
    int healthy = r->stream_events > 0 || kj_mono_ms() - r->stream_started_ms >= HEALTHY_MS;
    if (expired) {
        /* The version we hold is older than the server keeps: list again. */
        r->st.expired++;
        r->st.relists++;
        r->relist = 1;
        r->rv[0] = '\0';
        submit_list(r, 0);
        return;
    }
    r->st.restarts++;
    if (res->rc < 0) {
        r->st.errors++;
        char q[600];
        kj_log(KJ_LOG_DEBUG, "watch: stream broke", "namespace=%s error=%s", r->ns,
               kj_logq(q, sizeof q, res->err.msg));
    }
    r->failures = healthy ? 1 : r->failures + 1;
    if (res->rc == 0 && healthy)
        r->failures = 0;
    submit_watch(r, backoff(r));
}

static void submit_watch(kj_reflector *r, int64_t delay_ms)
{
    kj_kube_req q = KJ_KUBE_REQ_INIT;
    q.op = KJ_KUBE_WATCH_PODS;
    q.namespace_ = r->ns;
    q.label_selector = r->sel;
    q.resource_version = r->rv[0] ? r->rv : NULL;
    q.timeout_s = r->timeout_s + (int)(rnd(r) % (uint64_t)r->timeout_s);
    q.on_event = on_event;
    q.delay_ms = delay_ms;
    r->stream_started_ms = kj_mono_ms() + delay_ms;
    r->stream_events = 0;
    int rc = kj_kube_submit(r->k, &q, watch_done, r);
    if (rc == 0)
        r->st.watches++;
    else if (rc != KJ_ECANCELED)
        kj_log(KJ_LOG_ERROR, "watch: cannot queue a watch", "namespace=%s error=%s", r->ns,
               kj_strerror(rc));
}

int kj_reflector_start(kj_kube *k, const kj_reflector_opts *o, kj_reflector **out, kj_err *err)
{
    *out = NULL;
    kj_reflector *r = calloc(1, sizeof *r);
    if (!r)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    r->k = k;
    r->o = *o;
    r->ns = o->namespace_ ? strdup(o->namespace_) : NULL;
    r->sel = o->label_selector ? strdup(o->label_selector) : NULL;
    if ((o->namespace_ && !r->ns) || (o->label_selector && !r->sel)) {
        kj_reflector_free(r);
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    }
    r->o.namespace_ = r->ns;
    r->o.label_selector = r->sel;
    r->timeout_s = o->watch_timeout_s > 0 ? o->watch_timeout_s : 300;
    r->rng = (uint64_t)kj_mono_ms() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)r;
    if (!r->rng)
        r->rng = 88172645463325252ULL;
    submit_list(r, 0);
    *out = r;
    return 0;
}

void kj_reflector_get_stats(const kj_reflector *r, kj_reflector_stats *out)
{
    *out = r->st;
}

int kj_reflector_synced(const kj_reflector *r)
{
    return r && r->listed;
}

void kj_reflector_free(kj_reflector *r)
{
    if (!r)
        return;
    free(r->ns);
    free(r->sel);
    free(r);
}
