/*
 * kube-sim's HTTP side, on libmicrohttpd (one thread per connection, so a
 * slow watch or an injected latency holds only its own connection).
 *
 * A request goes: collect the body (3 MiB limit, as the apiserver) -> route ->
 * /_sim/ endpoints (never faulted, no token needed) -> authentication (bearer
 * token or TLS client certificate, 401 otherwise) -> fault injection (scripted
 * Nth-request faults, drops, random 429/500/503, latency) -> the store ->
 * stats -> the answer (or, for a drop-after fault, no answer at all).
 */
#include "sim.h"

#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY (3 * 1024 * 1024)
#define MAX_SIM_BODY (512 * 1024 * 1024)
#define KS_MAX_AGENTS 64 /* User-Agents counted apart; the rest as "other" */

enum { V_GET, V_LIST, V_WATCH, V_CREATE, V_UPDATE, V_PATCH, V_DELETE, V_OTHER, V_COUNT };
static const char *const verb_names[V_COUNT] = {"get",    "list",  "watch",  "create",
                                                "update", "patch", "delete", "other"};
enum { P_PODS, P_PODS_STATUS, P_LEASES, P_DISCOVERY, P_NAMESPACES, P_OTHER, P_COUNT };
static const char *const kind_names[P_COUNT] = {"pods",      "pods/status", "leases",
                                                "discovery", "namespaces",  "other"};

typedef struct {
    long requests, mutations, reaped;
    long by_verb[V_COUNT];
    long by_kind[P_COUNT];
    long by_code[600];
    long combo[V_COUNT][P_COUNT][600];
    long del_removed, del_marked, del_noop, del_not_found, del_rejected;
    long fault_codes[600];
    long dropped, dropped_after, failnth_fired, delayed;
    long watch_dropped, watch_ended_early, bookmarks;
    /* mutations by User-Agent and resource kind: who did what */
    struct {
        char ua[160];
        long by_kind[P_COUNT];
    } ua[KS_MAX_AGENTS];
    int n_ua;
} stats;

struct ks_server {
    struct MHD_Daemon *d;
    ks_store *store;
    ks_config cfg;
    pthread_mutex_t mu; /* faults, fail-nth, stats */
    stats st;
    atomic_int stopping;
    pthread_t reaper;
    int reaper_started;
};

typedef struct {
    ks_buf body;
    int too_large;
} conn_ctx;

/* ---- responses ---- */

static enum MHD_Result reply(struct MHD_Connection *c, int code, char *body, const char *ctype,
                             int retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype ? ctype : "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return rc;
}

static char *status_simple(int code, const char *reason, const char *msg)
{
    return ks_status_json(code, reason, msg, NULL);
}

/* ---- fail-nth ---- */

int ks_failnth_parse(const char *spec, ks_failnth *out, char **err)
{
    char verb[16];
    char code[16];
    long n;
    memset(out, 0, sizeof *out);
    if (sscanf(spec, "%15[^:]:%ld:%15s", verb, &n, code) != 3 || n < 1) {
        *err = ks_xstrdup("want VERB:N:CODE, e.g. delete:3:500, patch:1:drop or "
                          "delete:1:drop-after");
        return -1;
    }
    int ok = !strcmp(verb, "any");
    for (int i = 0; i < V_COUNT; i++)
        ok |= !strcmp(verb, verb_names[i]);
    if (!ok) {
        *err =
            ks_xstrdup("verb must be one of get, list, watch, create, update, patch, delete, any");
        return -1;
    }
    if (!strcmp(code, "drop")) {
        out->code = 0;
    } else if (!strcmp(code, "drop-after")) {
        out->code = 0;
        out->after = 1;
    } else {
        char *end;
        long c = strtol(code, &end, 10);
        if (*end || c < 400 || c > 599) {
            *err = ks_xstrdup("code must be 400-599, drop or drop-after");
            return -1;
        }
        out->code = (int)c;
    }
    snprintf(out->verb, sizeof out->verb, "%s", verb);
    out->n = n;
    return 0;
}

/* ---- /_sim ---- */

/* applies a /_sim/faults body; all or nothing */
static int set_faults(ks_server *srv, const char *body, size_t n, char **err)
{
    ks_faults f;
    ks_failnth fn[KS_MAX_FAILNTH];
    int nfn, ttl = -1;
    pthread_mutex_lock(&srv->mu);
    f = srv->cfg.faults;
    nfn = srv->cfg.n_failnth;
    memcpy(fn, srv->cfg.failnth, sizeof fn);
    pthread_mutex_unlock(&srv->mu);
    if (ks_faults_apply_json(body, n, &f, fn, &nfn, &ttl, err))
        return -1;
    pthread_mutex_lock(&srv->mu);
    srv->cfg.faults = f;
    srv->cfg.n_failnth = nfn;
    memcpy(srv->cfg.failnth, fn, sizeof fn);
    pthread_mutex_unlock(&srv->mu);
    if (ttl >= 0)
        ks_store_set_continue_ttl(srv->store, ttl);
    return 0;
}

static char *stats_json(ks_server *srv)
{
    cJSON *o = cJSON_CreateObject();
    char k[96];
    pthread_mutex_lock(&srv->mu);
    stats *s = &srv->st;
    cJSON_AddNumberToObject(o, "requests", (double)s->requests);
    cJSON_AddNumberToObject(o, "mutations", (double)s->mutations);
    cJSON *bv = cJSON_AddObjectToObject(o, "by_verb");
    for (int i = 0; i < V_COUNT; i++)
        if (s->by_verb[i])
            cJSON_AddNumberToObject(bv, verb_names[i], (double)s->by_verb[i]);
    cJSON *bk = cJSON_AddObjectToObject(o, "by_kind");
    for (int i = 0; i < P_COUNT; i++)
        if (s->by_kind[i])
            cJSON_AddNumberToObject(bk, kind_names[i], (double)s->by_kind[i]);
    cJSON *bc = cJSON_AddObjectToObject(o, "by_code");
    for (int i = 0; i < 600; i++)
        if (s->by_code[i]) {
            snprintf(k, sizeof k, "%d", i);
            cJSON_AddNumberToObject(bc, k, (double)s->by_code[i]);
        }
    cJSON *combo = cJSON_AddObjectToObject(o, "by_verb_kind_code");
    for (int v = 0; v < V_COUNT; v++)
        for (int p = 0; p < P_COUNT; p++)
            for (int c = 0; c < 600; c++)
                if (s->combo[v][p][c]) {
                    snprintf(k, sizeof k, "%s %s %d", verb_names[v], kind_names[p], c);
                    cJSON_AddNumberToObject(combo, k, (double)s->combo[v][p][c]);
                }
    cJSON *bua = cJSON_AddObjectToObject(o, "by_user_agent");
    for (int i = 0; i < s->n_ua; i++) {
        cJSON *u = cJSON_AddObjectToObject(bua, s->ua[i].ua);
        for (int p = 0; p < P_COUNT; p++)
            if (s->ua[i].by_kind[p])
                cJSON_AddNumberToObject(u, kind_names[p], (double)s->ua[i].by_kind[p]);
    }
    cJSON *d = cJSON_AddObjectToObject(o, "deletes");
    cJSON_AddNumberToObject(d, "removed", (double)s->del_removed);
    cJSON_AddNumberToObject(d, "marked", (double)s->del_marked);
    cJSON_AddNumberToObject(d, "noop", (double)s->del_noop);
    cJSON_AddNumberToObject(d, "not_found", (double)s->del_not_found);
    cJSON_AddNumberToObject(d, "rejected", (double)s->del_rejected);
    cJSON_AddNumberToObject(o, "reaped", (double)s->reaped);
    cJSON *f = cJSON_AddObjectToObject(o, "faults");
    cJSON *fe = cJSON_AddObjectToObject(f, "errors");
    for (int i = 0; i < 600; i++)
        if (s->fault_codes[i]) {
            snprintf(k, sizeof k, "%d", i);
            cJSON_AddNumberToObject(fe, k, (double)s->fault_codes[i]);
        }
    cJSON_AddNumberToObject(f, "dropped", (double)s->dropped);
    cJSON_AddNumberToObject(f, "dropped_after", (double)s->dropped_after);
    cJSON_AddNumberToObject(f, "watch_dropped", (double)s->watch_dropped);
    cJSON_AddNumberToObject(f, "watch_ended_early", (double)s->watch_ended_early);
    cJSON_AddNumberToObject(f, "watch_bookmarks", (double)s->bookmarks);
    cJSON_AddNumberToObject(f, "fail_nth", (double)s->failnth_fired);
    cJSON_AddNumberToObject(f, "delayed", (double)s->delayed);
    pthread_mutex_unlock(&srv->mu);
    snprintf(k, sizeof k, "%llu", (unsigned long long)ks_store_rv(srv->store));
    cJSON_AddStringToObject(o, "resource_version", k);
    cJSON *objs = cJSON_AddObjectToObject(o, "objects");
    cJSON_AddNumberToObject(objs, "pods", (double)ks_store_count(srv->store, KS_POD));
    cJSON_AddNumberToObject(objs, "leases", (double)ks_store_count(srv->store, KS_LEASE));
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

static enum MHD_Result handle_sim(ks_server *srv, struct MHD_Connection *c, const char *what,
                                  const char *method, conn_ctx *cc)
{
    char *err = NULL;
    const char *body = cc->body.buf ? cc->body.buf : "";
    if (!strcmp(what, "faults")) {
        if (!strcmp(method, "POST") || !strcmp(method, "PUT")) {
            if (set_faults(srv, body, cc->body.len, &err)) {
                char *st = status_simple(400, "BadRequest", err);
                free(err);
                return reply(c, 400, st, NULL, 0);
            }
            ks_log("info", "faults set", NULL);
        } else if (!strcmp(method, "DELETE")) {
            pthread_mutex_lock(&srv->mu);
            ks_faults_clear(&srv->cfg.faults);
            srv->cfg.n_failnth = 0;
            pthread_mutex_unlock(&srv->mu);
        }
        pthread_mutex_lock(&srv->mu);
        cJSON *fj = ks_faults_json(&srv->cfg.faults, srv->cfg.failnth, srv->cfg.n_failnth,
                                   ks_store_continue_ttl(srv->store));
        pthread_mutex_unlock(&srv->mu);
        char *out = cJSON_PrintUnformatted(fj);
        cJSON_Delete(fj);
        return reply(c, 200, out, NULL, 0);
    }
    if (!strcmp(what, "stats")) {
        if (!strcmp(method, "DELETE") || !strcmp(method, "POST")) {
            pthread_mutex_lock(&srv->mu);
            memset(&srv->st, 0, sizeof srv->st);
            pthread_mutex_unlock(&srv->mu);
        }
        return reply(c, 200, stats_json(srv), NULL, 0);
    }
    if (!strcmp(what, "state"))
        return reply(c, 200, ks_store_dump(srv->store), NULL, 0);
    if (!strcmp(what, "reset") && !strcmp(method, "POST")) {
        ks_store_reset(srv->store);
        pthread_mutex_lock(&srv->mu);
        memset(&srv->st, 0, sizeof srv->st);
        pthread_mutex_unlock(&srv->mu);
        return reply(c, 200, ks_xstrdup("{\"ok\":true}"), NULL, 0);
    }
    if (!strcmp(what, "seed") && !strcmp(method, "POST")) {
        int n = ks_store_seed(srv->store, body, cc->body.len, &err);
        if (n < 0) {
            char *st = status_simple(400, "BadRequest", err);
            free(err);
            return reply(c, 400, st, NULL, 0);
        }
        char out[64];
        snprintf(out, sizeof out, "{\"ok\":true,\"loaded\":%d}", n);
        return reply(c, 200, ks_xstrdup(out), NULL, 0);
    }
    return reply(c, 404, status_simple(404, "NotFound", "no such /_sim endpoint"), NULL, 0);
}

/* ---- discovery ---- */

static const char *discovery(const char *path)
{
    if (!strcmp(path, "/version") || !strcmp(path, "/version/"))
        return "{\"major\":\"1\",\"minor\":\"20\",\"gitVersion\":\"v1.20.2\",\"gitCommit\":"
               "\"kube-sim\",\"gitTreeState\":\"clean\",\"buildDate\":\"2021-01-13T13:20:00Z\","
               "\"goVersion\":\"go1.15.5\",\"compiler\":\"gc\",\"platform\":\"linux/amd64\"}";
    if (!strcmp(path, "/api") || !strcmp(path, "/api/"))
        return "{\"kind\":\"APIVersions\",\"versions\":[\"v1\"],\"serverAddressByClientCIDRs\":[{"
               "\"clientCIDR\":\"0.0.0.0/0\",\"serverAddress\":\"127.0.0.1:6443\"}]}";
    if (!strcmp(path, "/apis") || !strcmp(path, "/apis/"))
        return "{\"kind\":\"APIGroupList\",\"apiVersion\":\"v1\",\"groups\":[{\"name\":"
               "\"coordination.k8s.io\",\"versions\":[{\"groupVersion\":\"coordination.k8s.io/"
               "v1\",\"version\":\"v1\"}],\"preferredVersion\":{\"groupVersion\":"
               "\"coordination.k8s.io/v1\",\"version\":\"v1\"}}]}";
    if (!strcmp(path, "/apis/coordination.k8s.io") || !strcmp(path, "/apis/coordination.k8s.io/"))
        return "{\"kind\":\"APIGroup\",\"apiVersion\":\"v1\",\"name\":\"coordination.k8s.io\","
               "\"versions\":[{\"groupVersion\":\"coordination.k8s.io/v1\",\"version\":\"v1\"}],"
               "\"preferredVersion\":{\"groupVersion\":\"coordination.k8s.io/v1\",\"version\":"
               "\"v1\"}}";
    /* enough OpenAPI v3 for kubectl to see that the server validates fields
     * itself (fieldValidation on PATCH), so it skips client-side validation */
    if (!strcmp(path, "/openapi/v3"))
        return "{\"paths\":{\"api/v1\":{\"serverRelativeURL\":\"/openapi/v3/api/v1?hash=K\"},"
               "\"apis/coordination.k8s.io/v1\":{\"serverRelativeURL\":"
               "\"/openapi/v3/apis/coordination.k8s.io/v1?hash=K\"}}}";
    if (!strcmp(path, "/openapi/v3/api/v1"))
        return "{\"openapi\":\"3.0.0\",\"info\":{\"title\":\"Kubernetes\",\"version\":"
               "\"v1.20.2\"},\"paths\":{\"/api/v1/namespaces/{namespace}/pods/{name}\":{\"patch\":"
               "{\"x-kubernetes-group-version-kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":"
               "\"Pod\"},\"parameters\":[{\"name\":\"fieldValidation\",\"in\":\"query\","
               "\"schema\":{\"type\":\"string\"}}],\"responses\":{}}}},\"components\":{}}";
    if (!strcmp(path, "/openapi/v3/apis/coordination.k8s.io/v1"))
        return "{\"openapi\":\"3.0.0\",\"info\":{\"title\":\"Kubernetes\",\"version\":"
               "\"v1.20.2\"},\"paths\":{\"/apis/coordination.k8s.io/v1/namespaces/{namespace}/"
               "leases/{name}\":{\"patch\":{\"x-kubernetes-group-version-kind\":{\"group\":"
               "\"coordination.k8s.io\",\"version\":\"v1\",\"kind\":\"Lease\"},\"parameters\":"
               "[{\"name\":\"fieldValidation\",\"in\":\"query\",\"schema\":{\"type\":"
               "\"string\"}}],\"responses\":{}}}},\"components\":{}}";
    if (!strcmp(path, "/api/v1") || !strcmp(path, "/api/v1/"))
        return "{\"kind\":\"APIResourceList\",\"groupVersion\":\"v1\",\"resources\":["
               "{\"name\":\"namespaces\",\"singularName\":\"namespace\",\"namespaced\":false,"
               "\"kind\":\"Namespace\",\"verbs\":[\"get\"],\"shortNames\":[\"ns\"]},"
               "{\"name\":\"pods\",\"singularName\":\"pod\",\"namespaced\":true,\"kind\":\"Pod\","
               "\"verbs\":[\"create\",\"delete\",\"get\",\"list\",\"patch\",\"update\",\"watch\"],"
               "\"shortNames\":[\"po\"],\"categories\":[\"all\"]},"
               "{\"name\":\"pods/status\",\"singularName\":\"\",\"namespaced\":true,\"kind\":"
               "\"Pod\",\"verbs\":[\"get\",\"patch\",\"update\"]}]}";
    if (!strcmp(path, "/apis/coordination.k8s.io/v1") ||
        !strcmp(path, "/apis/coordination.k8s.io/v1/"))
        return "{\"kind\":\"APIResourceList\",\"apiVersion\":\"v1\",\"groupVersion\":"
               "\"coordination.k8s.io/v1\",\"resources\":[{\"name\":\"leases\",\"singularName\":"
               "\"lease\",\"namespaced\":true,\"kind\":\"Lease\",\"verbs\":[\"create\",\"delete\","
               "\"get\",\"list\",\"patch\",\"update\",\"watch\"]}]}";
    return NULL;
}

/* ---- routing ---- */

typedef struct {
    int pkind; /* P_* */
    ks_kind kind;
    char ns[256];
    char name[256];
    int has_ns, has_name, status;
    int ok; /* a resource path */
} route;

static int split(const char *url, char seg[][256], int max)
{
    int n = 0;
    const char *p = url;
    while (*p == '/')
        p++;
    while (*p && n < max) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len >= 256)
            return -1;
        memcpy(seg[n], p, len);
        seg[n][len] = '\0';
        n++;
        if (!e)
            break;
        p = e + 1;
        if (!*p)
            break;
    }
    if (*p && n == max && strchr(p, '/'))
        return -1;
    return n;
}

static void parse_route(const char *url, route *r)
{
    char seg[10][256];
    memset(r, 0, sizeof *r);
    r->pkind = P_OTHER;
    int n = split(url, seg, 10);
    if (n < 0)
        return;
    int base;
    if (n >= 3 && !strcmp(seg[0], "api") && !strcmp(seg[1], "v1")) {
        base = 2;
        r->kind = KS_POD;
    } else if (n >= 4 && !strcmp(seg[0], "apis") && !strcmp(seg[1], "coordination.k8s.io") &&
               !strcmp(seg[2], "v1")) {
        base = 3;
        r->kind = KS_LEASE;
    } else {
        return;
    }
    int i = base;
    if (!strcmp(seg[i], "namespaces") && n > i + 1) {
        snprintf(r->ns, sizeof r->ns, "%s", seg[i + 1]);
        r->has_ns = 1;
        i += 2;
        if (i == n && r->kind == KS_POD) {
            r->pkind = P_NAMESPACES;
            r->ok = 1;
            return;
        }
    }
    if (i >= n)
        return;
    const char *res = seg[i];
    if ((r->kind == KS_POD && strcmp(res, "pods")) ||
        (r->kind == KS_LEASE && strcmp(res, "leases")))
        return;
    r->pkind = r->kind == KS_POD ? P_PODS : P_LEASES;
    i++;
    if (i < n) {
        snprintf(r->name, sizeof r->name, "%s", seg[i]);
        r->has_name = 1;
        i++;
    }
    if (i < n) {
        if (r->kind != KS_POD || strcmp(seg[i], "status") || i + 1 != n)
            return;
        r->status = 1;
        r->pkind = P_PODS_STATUS;
        i++;
    }
    if (i != n || (r->has_name && !r->has_ns))
        return;
    r->ok = 1;
}

static int truthy(const char *v)
{
    return v && (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "True"));
}

/* ---- watch ---- */

typedef struct {
    ks_server *srv;
    ks_watch *w;
    ks_buf buf;
    size_t off;
    int64_t deadline_ms;
    int64_t next_roll_ms;     /* the next watch_drop_rate draw */
    int64_t next_bookmark_ms; /* a bookmark every BOOKMARK_EVERY_MS */
    int early;                /* the deadline is watch_end_after's */
    int closing;              /* the final bookmark is out: end */
    int fd;
} watch_ctx;

/* like the apiserver's watch cache: a bookmark about once a minute, and one
 * just before the server ends the watch */
#define BOOKMARK_EVERY_MS 60000

/* 1 when the watch_drop_rate draw (once a second of stream) says: cut it */
static int watch_cut(watch_ctx *wc, int64_t now)
{
    if (now < wc->next_roll_ms)
        return 0;
    wc->next_roll_ms = now + 1000;
    ks_server *srv = wc->srv;
    pthread_mutex_lock(&srv->mu);
    double rate = srv->cfg.faults.watch_drop_rate;
    double roll = (double)(ks_rand() % 1000000) / 10000.0;
    int cut = rate > 0 && roll < rate;
    if (cut)
        srv->st.watch_dropped++;
    pthread_mutex_unlock(&srv->mu);
    return cut;
}

static void count_watch(ks_server *srv, long *counter)
{
    pthread_mutex_lock(&srv->mu);
    (*counter)++;
    pthread_mutex_unlock(&srv->mu);
}

static ssize_t watch_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    watch_ctx *wc = cls;
    for (;;) {
        if (wc->off < wc->buf.len) {
            size_t n = wc->buf.len - wc->off;
            if (n > max)
                n = max;
            memcpy(out, wc->buf.buf + wc->off, n);
            wc->off += n;
            if (wc->off == wc->buf.len) {
                wc->off = 0;
                wc->buf.len = 0;
            }
            return (ssize_t)n;
        }
        int64_t now = ks_now_ms();
        if (atomic_load(&wc->srv->stopping) || wc->closing)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (now >= wc->deadline_ms) {
            wc->closing = 1;
            if (wc->early)
                count_watch(wc->srv, &wc->srv->st.watch_ended_early);
            if (ks_watch_bookmark(wc->w, &wc->buf))
                count_watch(wc->srv, &wc->srv->st.bookmarks);
            continue;
        }
        if (watch_cut(wc, now))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (now >= wc->next_bookmark_ms) {
            wc->next_bookmark_ms = now + BOOKMARK_EVERY_MS;
            if (ks_watch_bookmark(wc->w, &wc->buf)) {
                count_watch(wc->srv, &wc->srv->st.bookmarks);
                continue;
            }
        }
        if (wc->fd >= 0) {
            /* the client went away: end instead of waiting for an event */
            struct pollfd pf = {.fd = wc->fd, .events = POLLRDHUP};
            if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR)))
                return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        int64_t wait = wc->deadline_ms - now;
        if (ks_watch_next(wc->w, &wc->buf, wait > 200 ? 200 : (int)wait) < 0 && wc->buf.len == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
    }
}

static void watch_free(void *cls)
{
    watch_ctx *wc = cls;
    ks_watch_close(wc->w);
    ks_buf_free(&wc->buf);
    free(wc);
}

/* ---- the handler ---- */

static const char *arg(struct MHD_Connection *c, const char *k)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
}

static void count(ks_server *srv, int verb, int pkind, int code, const ks_result *res)
{
    pthread_mutex_lock(&srv->mu);
    stats *s = &srv->st;
    if (code < 0 || code >= 600)
        code = 0;
    s->requests++;
    s->by_verb[verb]++;
    s->by_kind[pkind]++;
    s->by_code[code]++;
    s->combo[verb][pkind][code]++;
    if (res && res->effect != KS_EFFECT_NONE)
        s->mutations++;
    if (verb == V_DELETE) {
        if (code == 404)
            s->del_not_found++;
        else if (code >= 400)
            s->del_rejected++;
        else if (res && res->effect == KS_EFFECT_REMOVED)
            s->del_removed++;
        else if (res && res->effect == KS_EFFECT_MARKED)
            s->del_marked++;
        else
            s->del_noop++;
    }
    pthread_mutex_unlock(&srv->mu);
}

/* F_DROP_AFTER: the request is done (a write is applied), then the
 * connection closes without the answer, as when a network or a proxy fails
 * between the apiserver's commit and the client */
typedef enum { F_NONE, F_DROP, F_DROP_AFTER, F_ERROR } fault_kind;

/* decides the fault for this request (under the lock); sleeps outside it */
static fault_kind pick_fault(ks_server *srv, int verb, int *code, int *retry_after)
{
    fault_kind fk = F_NONE;
    int sleep_ms = 0;
    pthread_mutex_lock(&srv->mu);
    ks_config *cfg = &srv->cfg;
    for (int i = 0; i < cfg->n_failnth; i++) {
        ks_failnth *r = &cfg->failnth[i];
        if (r->fired || (strcmp(r->verb, "any") && strcmp(r->verb, verb_names[verb])))
            continue;
        if (++r->seen == r->n) {
            r->fired = 1;
            srv->st.failnth_fired++;
            if (fk == F_NONE) {
                fk = r->code ? F_ERROR : r->after ? F_DROP_AFTER : F_DROP;
                *code = r->code;
            }
        }
    }
    double roll = (double)(ks_rand() % 1000000) / 10000.0;
    if (fk == F_NONE && cfg->faults.drop_rate > 0 && roll < cfg->faults.drop_rate)
        fk = F_DROP;
    roll = (double)(ks_rand() % 1000000) / 10000.0;
    if (fk == F_NONE && cfg->faults.drop_after_rate > 0 && roll < cfg->faults.drop_after_rate)
        fk = F_DROP_AFTER;
    roll = (double)(ks_rand() % 1000000) / 10000.0;
    if (fk == F_NONE && cfg->faults.error_rate > 0 && roll < cfg->faults.error_rate) {
        fk = F_ERROR;
        int n = cfg->faults.n_error_codes;
        *code = n ? cfg->faults.error_codes[ks_rand() % (uint64_t)n] : 503;
    }
    *retry_after = cfg->faults.retry_after;
    if (fk == F_DROP)
        srv->st.dropped++;
    if (fk == F_DROP_AFTER)
        srv->st.dropped_after++;
    if (fk == F_ERROR)
        srv->st.fault_codes[*code]++;
    if (cfg->faults.latency_ms > 0 || cfg->faults.jitter_ms > 0) {
        sleep_ms = cfg->faults.latency_ms;
        if (cfg->faults.jitter_ms > 0)
            sleep_ms += (int)(ks_rand() % (uint64_t)(cfg->faults.jitter_ms + 1));
        srv->st.delayed++;
    }
    pthread_mutex_unlock(&srv->mu);
    if (sleep_ms > 0)
        usleep((useconds_t)sleep_ms * 1000);
    return fk;
}

static enum MHD_Result fault_reply(struct MHD_Connection *c, int code, int retry_after)
{
    if (code == 429)
        return reply(c, 429, ks_xstrdup("Too many requests, please try again later.\n"),
                     "text/plain; charset=utf-8", retry_after > 0 ? retry_after : 1);
    if (code == 503)
        return reply(c, 503,
                     status_simple(503, "ServiceUnavailable",
                                   "the server is currently unable to handle the request"),
                     NULL, retry_after > 0 ? retry_after : 1);
    if (code == 500)
        return reply(c, 500,
                     status_simple(500, "InternalError",
                                   "Internal error occurred: kube-sim: injected fault"),
                     NULL, 0);
    if (code == 504)
        return reply(c, 504,
                     status_simple(504, "Timeout",
                                   "Timeout: request did not complete within the allotted timeout"),
                     NULL, 0);
    if (code == 409)
        return reply(c, 409, status_simple(409, "Conflict", "kube-sim: injected conflict"), NULL,
                     0);
    char msg[64];
    snprintf(msg, sizeof msg, "kube-sim: injected fault %d", code);
    return reply(c, code, status_simple(code, "InternalError", msg), NULL, 0);
}

/* Counts the request and sends its answer, or, when lose is set (a
 * drop-after fault), closes the connection without one: what was done stays
 * done and is counted as such, under code 0. */
/* A mutation, counted under the request's User-Agent (truncated; past
 * KS_MAX_AGENTS distinct ones, under "other"). */
static void count_agent(ks_server *srv, struct MHD_Connection *c, int pkind)
{
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    char key[160];
    snprintf(key, sizeof key, "%s", ua && *ua ? ua : "-");
    pthread_mutex_lock(&srv->mu);
    stats *s = &srv->st;
    int i = 0;
    while (i < s->n_ua && strcmp(s->ua[i].ua, key))
        i++;
    if (i == s->n_ua) {
        if (s->n_ua == KS_MAX_AGENTS)
            i = KS_MAX_AGENTS - 1, snprintf(key, sizeof key, "other");
        else
            s->n_ua++;
        snprintf(s->ua[i].ua, sizeof s->ua[i].ua, "%s", key);
    }
    s->ua[i].by_kind[pkind]++;
    pthread_mutex_unlock(&srv->mu);
}

static enum MHD_Result answer(ks_server *srv, struct MHD_Connection *c, int lose, int verb,
                              int pkind, int code, const ks_result *res, char *body,
                              const char *ctype)
{
    count(srv, verb, pkind, lose ? 0 : code, res);
    if (res && res->effect != KS_EFFECT_NONE)
        count_agent(srv, c, pkind);
    if (lose) {
        free(body);
        return MHD_NO;
    }
    return reply(c, code, body, ctype, 0);
}

/* A connection's client certificate, checked once: the TLS session does not
 * change while the connection lives (no renegotiation). */
typedef struct {
    int verdict; /* 0: not checked yet, 1: signed by --client-ca, -1: not */
} conn_tls;

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)c;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(conn_tls));
        if (!*socket_context)
            abort();
    } else {
        free(*socket_context);
        *socket_context = NULL;
    }
}

/* 1 when the connection presented a certificate that chains to --client-ca
 * (signature, validity period, key usage: gnutls_certificate_verify_peers2) */
static int client_cert_ok(ks_server *srv, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_tls *ct = ci ? ci->socket_context : NULL;
    if (ct && ct->verdict)
        return ct->verdict > 0;
    const union MHD_ConnectionInfo *ti =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t tls = ti ? (gnutls_session_t)ti->tls_session : NULL;
    unsigned status = 0;
    int grc = tls ? gnutls_certificate_verify_peers2(tls, &status) : GNUTLS_E_INVALID_SESSION;
    int ok = grc == 0 && status == 0;
    if (!ok && srv->cfg.verbose) {
        gnutls_datum_t why = {0};
        if (grc == 0 &&
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0) {
            char *r = (char *)why.data;
            size_t n = strlen(r);
            while (n && r[n - 1] == ' ')
                r[--n] = '\0';
            ks_log("info", "client certificate refused", "reason=\"%s\"", r);
            gnutls_free(why.data);
        } else {
            ks_log("info", "client certificate refused", "reason=\"%s\"", gnutls_strerror(grc));
        }
    }
    if (ct)
        ct->verdict = ok ? 1 : -1;
    return ok;
}

/* the apiserver's 3 MiB limit; /_sim/seed may load more */
static void collect_body(conn_ctx *cc, const char *url, const char *data, size_t n)
{
    if (cc->too_large)
        return;
    size_t limit = strncmp(url, "/_sim/", 6) ? MAX_BODY : MAX_SIM_BODY;
    if (cc->body.len + n > limit) {
        cc->too_large = 1;
        ks_buf_free(&cc->body);
    } else {
        ks_buf_add(&cc->body, data, n);
    }
}

/* the V_* of a request to a resource path (or a namespace); V_OTHER else */
static int verb_of(struct MHD_Connection *c, const char *method, const route *rt, int is_get)
{
    if (rt->ok && rt->pkind != P_NAMESPACES) {
        if (is_get)
            return rt->has_name ? V_GET : (truthy(arg(c, "watch")) ? V_WATCH : V_LIST);
        if (!strcmp(method, "POST"))
            return V_CREATE;
        if (!strcmp(method, "PUT"))
            return V_UPDATE;
        if (!strcmp(method, "PATCH"))
            return V_PATCH;
        if (!strcmp(method, "DELETE"))
            return V_DELETE;
    } else if (rt->ok && is_get) {
        return V_GET;
    }
    return V_OTHER;
}

/* like the apiserver's union of authenticators: either one admits */
static int authorized(ks_server *srv, struct MHD_Connection *c)
{
    if (!srv->cfg.token && !srv->cfg.client_ca)
        return 1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    int ok =
        srv->cfg.token && auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, srv->cfg.token);
    if (!ok && srv->cfg.client_ca)
        ok = client_cert_ok(srv, c);
    return ok;
}

/* a path that is no resource: 404 as the apiserver gives it (a Status under
 * /api/ and /apis/, Go's plain text elsewhere) */
static enum MHD_Result not_found(ks_server *srv, struct MHD_Connection *c, const char *url,
                                 int lose, int verb)
{
    if (!strncmp(url, "/api/", 5) || !strncmp(url, "/apis/", 6))
        return answer(srv, c, lose, verb, P_OTHER, 404, NULL,
                      ks_status_json(404, "NotFound",
                                     "the server could not find the requested resource",
                                     &(ks_details){0}),
                      NULL);
    return answer(srv, c, lose, verb, P_OTHER, 404, NULL, ks_xstrdup("404 page not found\n"),
                  "text/plain; charset=utf-8");
}

static enum MHD_Result not_allowed(ks_server *srv, struct MHD_Connection *c, int lose, int verb,
                                   int pkind)
{
    return answer(srv, c, lose, verb, pkind, 405, NULL,
                  status_simple(405, "MethodNotAllowed",
                                "the server does not allow this method on the requested resource"),
                  NULL);
}

/* every namespace exists */
static enum MHD_Result namespace_reply(ks_server *srv, struct MHD_Connection *c, const route *rt,
                                       int lose, int verb, int is_get)
{
    if (!is_get)
        return not_allowed(srv, c, lose, verb, rt->pkind);
    char body[700];
    snprintf(body, sizeof body,
             "{\"kind\":\"Namespace\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"%s\"},"
             "\"spec\":{\"finalizers\":[\"kubernetes\"]},\"status\":{\"phase\":\"Active\"}}",
             rt->ns);
    return answer(srv, c, lose, verb, rt->pkind, 200, NULL, ks_xstrdup(body), NULL);
}

/* the store's request from the route, the query and the headers */
static void make_request(struct MHD_Connection *c, const route *rt, const conn_ctx *cc,
                         ks_request *req)
{
    const char *dry = arg(c, "dryRun");
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    *req = (ks_request){
        .kind = rt->kind,
        .ns = rt->has_ns ? rt->ns : NULL,
        .name = rt->has_name ? rt->name : NULL,
        .status_sub = rt->status,
        .body = cc->body.buf,
        .body_len = cc->body.len,
        .content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"),
        .label_selector = arg(c, "labelSelector"),
        .field_selector = arg(c, "fieldSelector"),
        .limit = arg(c, "limit"),
        .cont = arg(c, "continue"),
        .grace_param = arg(c, "gracePeriodSeconds"),
        .resource_version = arg(c, "resourceVersion"),
        .bookmarks = truthy(arg(c, "allowWatchBookmarks")),
        .dry_run = dry && !strcmp(dry, "All"),
        .table = accept && strstr(accept, "as=Table") != NULL,
    };
}

/* queues the watch stream w (taken); a lost answer closes the connection */
static enum MHD_Result start_watch(ks_server *srv, struct MHD_Connection *c, ks_watch *w, int lose,
                                   int pkind)
{
    if (lose) {
        ks_watch_close(w);
        count(srv, V_WATCH, pkind, 0, NULL);
        return MHD_NO;
    }
    watch_ctx *wc = calloc(1, sizeof *wc);
    if (!wc)
        abort();
    wc->srv = srv;
    wc->w = w;
    const char *ts = arg(c, "timeoutSeconds");
    long t = ts ? strtol(ts, NULL, 10) : 1800;
    if (t <= 0 || t > 86400)
        t = 1800;
    wc->deadline_ms = ks_now_ms() + t * 1000;
    pthread_mutex_lock(&srv->mu);
    int end_after = srv->cfg.faults.watch_end_after;
    pthread_mutex_unlock(&srv->mu);
    if (end_after > 0 && end_after < t) {
        wc->deadline_ms = ks_now_ms() + end_after * 1000;
        wc->early = 1;
    }
    wc->next_roll_ms = ks_now_ms() + 1000;
    wc->next_bookmark_ms = ks_now_ms() + BOOKMARK_EVERY_MS;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    wc->fd = ci ? ci->connect_fd : -1;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024,
                                                               watch_reader, wc, watch_free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    enum MHD_Result rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    count(srv, V_WATCH, pkind, 200, NULL);
    return rc;
}

/* a verb on pods or leases: the store does it */
static enum MHD_Result handle_resource(ks_server *srv, struct MHD_Connection *c, const char *url,
                                       const char *method, const route *rt, const conn_ctx *cc,
                                       int lose, int verb, int pkind)
{
    ks_request req;
    make_request(c, rt, cc, &req);
    ks_result res = {0};
    int allowed = 1;
    switch (verb) {
    case V_GET:
        ks_store_get(srv->store, &req, &res);
        break;
    case V_LIST:
        if (rt->status)
            allowed = 0;
        else
            ks_store_list(srv->store, &req, &res);
        break;
    case V_WATCH: {
        ks_watch *w = NULL;
        if (ks_watch_open(srv->store, &req, &w, &res) == 0)
            return start_watch(srv, c, w, lose, pkind);
        break;
    }
    case V_CREATE:
        if (rt->has_name || !rt->has_ns)
            allowed = 0;
        else
            ks_store_create(srv->store, &req, &res);
        break;
    case V_UPDATE:
        if (!rt->has_name)
            allowed = 0;
        else
            ks_store_update(srv->store, &req, &res);
        break;
    case V_PATCH:
        if (!rt->has_name)
            allowed = 0;
        else
            ks_store_patch(srv->store, &req, &res);
        break;
    case V_DELETE:
        if (!rt->has_name || rt->status)
            allowed = 0;
        else
            ks_store_delete(srv->store, &req, &res);
        break;
    default:
        allowed = 0;
    }
    if (!allowed)
        return not_allowed(srv, c, lose, verb, pkind);
    if (srv->cfg.verbose)
        ks_log("info", lose ? "answer lost" : "response", "method=%s path=\"%s\" code=%d", method,
               url, res.code);
    return answer(srv, c, lose, verb, pkind, res.code, &res, res.body, NULL);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    (void)version;
    ks_server *srv = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc)
            return MHD_NO;
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_data_size) {
        collect_body(cc, url, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (srv->cfg.verbose)
        ks_log("info", "request", "method=%s path=\"%s\"", method, url);

    if (!strncmp(url, "/_sim/", 6))
        return handle_sim(srv, c, url + 6, method, cc);

    route rt;
    parse_route(url, &rt);
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int verb = verb_of(c, method, &rt, is_get);
    const char *disc = is_get ? discovery(url) : NULL;
    int pkind = disc ? P_DISCOVERY : rt.pkind;

    if (!authorized(srv, c)) {
        count(srv, verb, pkind, 401, NULL);
        return reply(c, 401, status_simple(401, "Unauthorized", "Unauthorized"), NULL, 0);
    }

    int fcode = 0, retry_after = 0;
    fault_kind fk = pick_fault(srv, verb, &fcode, &retry_after);
    if (fk == F_DROP) {
        count(srv, verb, pkind, 0, NULL);
        return MHD_NO;
    }
    if (fk == F_ERROR) {
        count(srv, verb, pkind, fcode, NULL);
        return fault_reply(c, fcode, retry_after);
    }
    int lose = fk == F_DROP_AFTER;

    if (cc->too_large)
        return answer(srv, c, lose, verb, pkind, 413, NULL,
                      status_simple(413, "RequestEntityTooLarge",
                                    "Request entity too large: limit is 3145728"),
                      NULL);
    if (disc)
        return answer(srv, c, lose, verb, pkind, 200, NULL, ks_xstrdup(disc), NULL);
    if (!strcmp(url, "/healthz") || !strcmp(url, "/livez") || !strcmp(url, "/readyz"))
        return answer(srv, c, lose, verb, P_OTHER, 200, NULL, ks_xstrdup("ok"),
                      "text/plain; charset=utf-8");
    if (!rt.ok)
        return not_found(srv, c, url, lose, verb);
    if (rt.pkind == P_NAMESPACES)
        return namespace_reply(srv, c, &rt, lose, verb, is_get);
    return handle_resource(srv, c, url, method, &rt, cc, lose, verb, pkind);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    conn_ctx *cc = *con_cls;
    if (cc) {
        ks_buf_free(&cc->body);
        free(cc);
        *con_cls = NULL;
    }
}

static void *reaper_main(void *arg)
{
    ks_server *srv = arg;
    while (!atomic_load(&srv->stopping)) {
        usleep(100 * 1000);
        int n = ks_store_tick(srv->store);
        if (n) {
            pthread_mutex_lock(&srv->mu);
            srv->st.reaped += n;
            pthread_mutex_unlock(&srv->mu);
        }
    }
    return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '"'))
        msg[--n] = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '"')
            *p = '\'';
    ks_log("debug", "libmicrohttpd", "detail=\"%s\"", msg);
}

ks_server *ks_server_start(const ks_config *cfg, ks_store *store, char **err)
{
    ks_server *srv = calloc(1, sizeof *srv);
    struct addrinfo hints = {0}, *ai = NULL;
    char port[16], msg[300];
    if (!srv)
        abort();
    srv->cfg = *cfg;
    srv->store = store;
    pthread_mutex_init(&srv->mu, NULL);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host, port, &hints, &ai);
    if (gai) {
        snprintf(msg, sizeof msg, "cannot resolve '%s': %s", cfg->host, gai_strerror(gai));
        *err = ks_xstrdup(msg);
        goto fail;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (cfg->tls_cert)
        flags |= MHD_USE_TLS;
    if (cfg->verbose)
        flags |= MHD_USE_ERROR_LOG;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, 4096, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, 300, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 256 * 1024, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
        {cfg->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cfg->tls_cert},
        {cfg->tls_key ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, (void *)cfg->tls_key},
        /* a trust list makes libmicrohttpd ask for (not require) a client
         * certificate; client_cert_ok() judges it once per connection. The
         * first MHD_OPTION_END ends the list: cert -> key -> trust. */
        {cfg->client_ca ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, (void *)cfg->client_ca},
        {cfg->client_ca ? MHD_OPTION_NOTIFY_CONNECTION : MHD_OPTION_END, (intptr_t)on_connection,
         NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handler, srv,
                              MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->d) {
        snprintf(msg, sizeof msg,
                 "cannot listen on %s:%d (port in use, bad address or bad TLS key/cert)", cfg->host,
                 cfg->port);
        *err = ks_xstrdup(msg);
        goto fail;
    }
    if (pthread_create(&srv->reaper, NULL, reaper_main, srv) == 0)
        srv->reaper_started = 1;
    return srv;
fail:
    pthread_mutex_destroy(&srv->mu);
    free(srv);
    return NULL;
}

int ks_server_port(ks_server *srv)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

void ks_server_stop(ks_server *srv)
{
    if (!srv)
        return;
    atomic_store(&srv->stopping, 1);
    ks_store_wake_watchers(srv->store);
    if (srv->reaper_started)
        pthread_join(srv->reaper, NULL);
    MHD_stop_daemon(srv->d);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
