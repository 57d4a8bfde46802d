/*
 * kube.c - the client engine: requests as operations driven over libcurl's
 * multi interface, with a FIFO of operations waiting for a slot, a token
 * bucket, retries and deadlines; and the synchronous wrappers.
 *
 * An operation (struct op) lives from kj_kube_submit() until its done
 * callback returned. It is in exactly one place: the queue (never started),
 * the delayed list (waiting for a retry or its next page), or on the wire
 * (its easy handle in the multi). A list is one operation over many pages.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/kube_internal.h"
#include "reconciler/kube_ops.h"

#define MAX_BODY (64u << 20)
#define MAX_TRIES 10        /* attempts per request (per page for lists) */
#define MAX_LIST_RESTARTS 5 /* 410 Expired handled per list */
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 5000
#define TOKEN_REREAD_MS 60000 /* client-go re-reads a token file every minute */
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_LIST_TIMEOUT_MS 120000

typedef struct op {
    struct op *next;
    struct op *active_next;
    kj_kube *k;
    kj_kube_req req; /* strings point at owned copies below */
    char *s_ns, *s_name, *s_body, *s_uid, *s_rv, *s_prop, *s_lsel, *s_fsel, *s_method, *s_path;
    kj_lease lease;
    kj_kube_done_fn done;
    void *ud;
    int retry_conn;   /* safe to repeat after a connection error or 5xx */
    int64_t deadline; /* mono ms; 0 until the first attempt */
    int64_t not_before;
    int attempts, tries, pages, restarts, auth_retried, restarted;
    char *cont;
    /* per attempt */
    CURL *easy;
    struct curl_slist *hdrs;
    char *req_body;
    char *resp;
    size_t resp_len, resp_cap;
    int too_big;
    char retry_after[64];
    int has_retry_after;
    char errbuf[CURL_ERROR_SIZE];
    /* last failure */
    kj_kube_status st;
} op;

struct kj_kube {
    kj_kube_config *cfg;
    CURLM *multi;
    op *q_head, *q_tail; /* never started, FIFO */
    op *delayed;         /* retries and next pages, unordered (few) */
    op *active;          /* on the wire, linked through active_next */
    int n_active;
    int n_pending;
    double qps;
    int burst;
    double tokens;
    int64_t tokens_at;
    int max_in_flight;
    char *token;
    int64_t token_read_at;
    int64_t token_reread_ms;
    int in_callback;
    int canceling;
    int saw_h2;
    uint64_t rng;
    kj_kube_stats stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *op_name(kj_kube_op o)
{
    switch (o) {
    case KJ_KUBE_GET_POD:
        return "get pod";
    case KJ_KUBE_PATCH_POD:
        return "patch pod";
    case KJ_KUBE_DELETE_POD:
        return "delete pod";
    case KJ_KUBE_LIST_PODS:
        return "list pods";
    case KJ_KUBE_GET_LEASE:
        return "get lease";
    case KJ_KUBE_CREATE_LEASE:
        return "create lease";
    case KJ_KUBE_UPDATE_LEASE:
        return "update lease";
    case KJ_KUBE_RAW:
        return "request";
    }
    return "request";
}

static uint64_t rnd(kj_kube *k)
{
    /* xorshift64*: jitter only, not security */
    k->rng ^= k->rng >> 12;
    k->rng ^= k->rng << 25;
    k->rng ^= k->rng >> 27;
    return k->rng * 2685821657736338717ULL;
}

/* ---- token ------------------------------------------------------------- */

/* Reads the token file again; 1 if the token changed, 0 if not, <0 on error
 * (the old token stays). */
static int reload_token(kj_kube *k)
{
    char *t = NULL;
    kj_err err = {0};
    if (!k->cfg->token_file)
        return 0;
    k->token_read_at = kj_mono_ms();
    if (kj_kube_read_token(k->cfg->token_file, &t, &err) < 0) {
        char q[600];
        kj_log(KJ_LOG_WARN, "kube: cannot read the token file again", "error=%s",
               kj_logq(q, sizeof(q), err.msg));
        return err.code;
    }
    k->stats.token_reloads++;
    int changed = !k->token || strcmp(k->token, t) != 0;
    if (k->token)
        kj_kube_free_secret(k->token, strlen(k->token));
    k->token = t;
    return changed;
}

/* ---- lifecycle --------------------------------------------------------- */

/* Credentials over plain http can be read, and replayed, by anyone on the
 * path: allowed (a local API server, a test), but never silently. */
static void warn_plain_http(const kj_kube_config *c)
{
    if (strncmp(c->server, "http://", 7))
        return;
    char q[600];
    const char *what = NULL;
    if (c->token || c->token_file)
        what = "the bearer token";
    else if (strcspn(c->server + 7, "/?#") > strcspn(c->server + 7, "@"))
        what = "the credentials in the server URL";
    if (what)
        kj_log(KJ_LOG_WARN, "kube: credentials sent over plain http",
               "server=%s what=\"%s\" hint=\"use an https:// server URL\"",
               kj_logq(q, sizeof(q), kj_kube_config_server(c)), what);
}

int kj_kube_new(const kj_kube_config *cfg, kj_kube **out, kj_err *err)
{
    int rc = 0;
    kj_kube *k = NULL;
    *out = NULL;
    if (!cfg)
        return kj_err_set(err, KJ_EINVAL, "kube: no configuration");
    pthread_once(&curl_once, curl_init_once);
    if (!(k = calloc(1, sizeof(*k))))
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    if (kj_kube_config_dup(cfg, &k->cfg) < 0 || !(k->multi = curl_multi_init())) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    curl_multi_setopt(k->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    k->rng = (uint64_t)kj_mono_ms() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)k;
    if (!k->rng)
        k->rng = 88172645463325252ULL;
    kj_kube_set_limits(k, cfg->qps, cfg->burst, cfg->max_in_flight);
    k->token_reread_ms = TOKEN_REREAD_MS;
    if (cfg->token_file) {
        if ((rc = kj_kube_read_token(cfg->token_file, &k->token, err)) < 0)
            goto out;
        k->token_read_at = kj_mono_ms();
    } else if (cfg->token) {
        /* kj_kube_config_load() checked it; a config built another way is
         * held to the same rule before the token becomes a header */
        if (!kj_kube_token_valid(cfg->token)) {
            rc = kj_err_set(err, KJ_EINVAL,
                            "kube: the token holds characters not allowed in a token");
            goto out;
        }
        if (!(k->token = strdup(cfg->token))) {
            rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
            goto out;
        }
    }
    warn_plain_http(k->cfg);
    *out = k;
    k = NULL;
out:
    if (k) {
        if (k->multi)
            curl_multi_cleanup(k->multi);
        kj_kube_config_free(k->cfg);
        free(k);
    }
    return rc;
}

void kj_kube_set_limits(kj_kube *k, double qps, int burst, int max_in_flight)
{
    k->qps = qps > 0 ? qps : 0;
    k->burst = burst > 0 ? burst : 1;
    k->tokens = k->burst;
    k->tokens_at = kj_mono_ms();
    k->max_in_flight = max_in_flight > 0 ? max_in_flight : KJ_KUBE_DEFAULT_IN_FLIGHT;
    curl_multi_setopt(k->multi, CURLMOPT_MAXCONNECTS, (long)k->max_in_flight);
}

void kj_kube_set_token_reread(kj_kube *k, int64_t ms)
{
    if (k)
        k->token_reread_ms = ms > 0 ? ms : TOKEN_REREAD_MS;
}

static void op_free(op *o)
{
    if (!o)
        return;
    free(o->s_ns);
    free(o->s_name);
    free(o->s_body);
    free(o->s_uid);
    free(o->s_rv);
    free(o->s_prop);
    free(o->s_lsel);
    free(o->s_fsel);
    free(o->s_method);
    free(o->s_path);
    free(o->cont);
    free(o->req_body);
    free(o->resp);
    if (o->hdrs)
        curl_slist_free_all(o->hdrs);
    memset(&o->lease, 0, sizeof(o->lease));
    free(o);
}

void kj_kube_free(kj_kube *k)
{
    if (!k)
        return;
    kj_kube_cancel(k);
    curl_multi_cleanup(k->multi);
    if (k->token)
        kj_kube_free_secret(k->token, strlen(k->token));
    kj_kube_config_free(k->cfg);
    free(k);
}

int kj_kube_pending(const kj_kube *k)
{
    return k ? k->n_pending : 0;
}

void kj_kube_get_stats(const kj_kube *k, kj_kube_stats *out)
{
    *out = k->stats;
}

/* ---- submit ------------------------------------------------------------ */

static int dupz(const char *s, char **dst, const char **view)
{
    *dst = NULL;
    *view = NULL;
    if (!s)
        return 0;
    if (!(*dst = strdup(s)))
        return -1;
    *view = *dst;
    return 0;
}

int kj_kube_submit(kj_kube *k, const kj_kube_req *r, kj_kube_done_fn done, void *ud)
{
    if (!k || !r)
        return KJ_EINVAL;
    if (r->op != KJ_KUBE_RAW && !kj_kube_op_info_of(r->op)) /* kube_ops.c: every op has a line */
        return KJ_EINVAL;
    if (k->canceling)
        return KJ_ECANCELED;
    int needs_name = r->op != KJ_KUBE_LIST_PODS && r->op != KJ_KUBE_RAW &&
                     r->op != KJ_KUBE_CREATE_LEASE && r->op != KJ_KUBE_UPDATE_LEASE;
    if (r->op < KJ_KUBE_GET_POD || r->op > KJ_KUBE_RAW || (needs_name && (!r->name || !*r->name)) ||
        (r->op == KJ_KUBE_PATCH_POD && !r->body) ||
        ((r->op == KJ_KUBE_CREATE_LEASE || r->op == KJ_KUBE_UPDATE_LEASE) &&
         (!r->lease || !r->lease->name[0])) ||
        (r->op == KJ_KUBE_UPDATE_LEASE && !r->lease->resource_version[0]) ||
        (r->op == KJ_KUBE_RAW && (!r->method || !r->path || r->path[0] != '/')))
        return KJ_EINVAL;
    op *o = calloc(1, sizeof(*o));
    if (!o)
        return KJ_ENOMEM;
    o->k = k;
    o->req = *r;
    o->done = done;
    o->ud = ud;
    const char *ns = r->namespace_;
    if (!ns && r->lease && r->lease->namespace_[0])
        ns = r->lease->namespace_;
    if (!ns)
        ns = kj_kube_config_namespace(k->cfg);
    int bad = dupz(ns, &o->s_ns, &o->req.namespace_);
    bad |= dupz(r->name, &o->s_name, &o->req.name);
    bad |= dupz(r->body, &o->s_body, &o->req.body);
    bad |= dupz(r->precondition_uid, &o->s_uid, &o->req.precondition_uid);
    bad |= dupz(r->precondition_rv, &o->s_rv, &o->req.precondition_rv);
    bad |= dupz(r->propagation, &o->s_prop, &o->req.propagation);
    bad |= dupz(r->label_selector, &o->s_lsel, &o->req.label_selector);
    bad |= dupz(r->field_selector, &o->s_fsel, &o->req.field_selector);
    bad |= dupz(r->method, &o->s_method, &o->req.method);
    bad |= dupz(r->path, &o->s_path, &o->req.path);
    if (r->lease) {
        o->lease = *r->lease;
        o->req.lease = &o->lease;
        if (!o->req.name) {
            bad |= dupz(o->lease.name, &o->s_name, &o->req.name);
        }
    }
    if (bad) {
        op_free(o);
        return KJ_ENOMEM;
    }
    if (!o->req.timeout_ms)
        o->req.timeout_ms =
            r->op == KJ_KUBE_LIST_PODS ? DEFAULT_LIST_TIMEOUT_MS : DEFAULT_TIMEOUT_MS;
    if (o->req.limit <= 0)
        o->req.limit = 500;
    switch (r->op) {
    case KJ_KUBE_GET_POD:
    case KJ_KUBE_LIST_PODS:
    case KJ_KUBE_GET_LEASE:
    case KJ_KUBE_CREATE_LEASE: /* a repeat answers 409 AlreadyExists */
    case KJ_KUBE_UPDATE_LEASE: /* carries resourceVersion: a repeat answers 409 */
        o->retry_conn = 1;
        break;
    case KJ_KUBE_DELETE_POD:
        o->retry_conn = r->precondition_uid || r->precondition_rv;
        break;
    case KJ_KUBE_PATCH_POD:
        o->retry_conn = kj_kube_patch_has_test(r->body);
        break;
    case KJ_KUBE_RAW:
        o->retry_conn = 0;
        break;
    }
    if (k->q_tail)
        k->q_tail->next = o;
    else
        k->q_head = o;
    k->q_tail = o;
    k->n_pending++;
    return 0;
}

/* ---- one attempt ------------------------------------------------------- */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    op *o = ud;
    size_t n = size * nmemb;
    if (o->resp_len + n + 1 > MAX_BODY) {
        o->too_big = 1;
        return 0;
    }
    if (kj_grow((void **)&o->resp, &o->resp_cap, o->resp_len + n + 1, 1))
        return 0;
    memcpy(o->resp + o->resp_len, ptr, n);
    o->resp_len += n;
    o->resp[o->resp_len] = '\0';
    return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    op *o = ud;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) - 1 && !strncasecmp(buf, name, sizeof(name) - 1)) {
        size_t vl = n - (sizeof(name) - 1);
        if (vl >= sizeof(o->retry_after))
            vl = sizeof(o->retry_after) - 1;
        memcpy(o->retry_after, buf + sizeof(name) - 1, vl);
        o->retry_after[vl] = '\0';
        o->has_retry_after = 1;
    }
    return n;
}

/* Appends "key=escaped(val)" to a query string. */
static void add_query(CURL *e, char *q, size_t size, const char *key, const char *val)
{
    if (!val)
        return;
    char *esc = curl_easy_escape(e, val, 0);
    size_t len = strlen(q);
    snprintf(q + len, size - len, "%s%s=%s", len ? "&" : "?", key, esc ? esc : "");
    curl_free(esc);
}

static int build_url(op *o, CURL *e, char **url)
{
    kj_kube_config *c = o->k->cfg;
    const kj_kube_req *r = &o->req;
    char *ns = curl_easy_escape(e, r->namespace_, 0);
    char *name = r->name ? curl_easy_escape(e, r->name, 0) : NULL;
    size_t qsize = 4096 + (o->cont ? strlen(o->cont) * 3 : 0) +
                   (r->label_selector ? strlen(r->label_selector) * 3 : 0) +
                   (r->field_selector ? strlen(r->field_selector) * 3 : 0);
    char *q = calloc(1, qsize);
    size_t usize = strlen(c->server) + qsize + (r->path ? strlen(r->path) : 0) + 1024 +
                   (name ? strlen(name) : 0) + (ns ? strlen(ns) : 0);
    char *u = malloc(usize);
    int rc = 0;
    if (!ns || (r->name && !name) || !q || !u) {
        rc = KJ_ENOMEM;
        goto out;
    }
    switch (r->op) {
    case KJ_KUBE_GET_POD:
    case KJ_KUBE_PATCH_POD:
    case KJ_KUBE_DELETE_POD:
        snprintf(u, usize, "%s/api/v1/namespaces/%s/pods/%s", c->server, ns, name);
        break;
    case KJ_KUBE_LIST_PODS: {
        char lim[32];
        snprintf(lim, sizeof(lim), "%d", r->limit);
        add_query(e, q, qsize, "limit", lim);
        add_query(e, q, qsize, "labelSelector", r->label_selector);
        add_query(e, q, qsize, "fieldSelector", r->field_selector);
        add_query(e, q, qsize, "continue", o->cont);
        snprintf(u, usize, "%s/api/v1/namespaces/%s/pods%s", c->server, ns, q);
        break;
    }
    case KJ_KUBE_GET_LEASE:
    case KJ_KUBE_UPDATE_LEASE:
        snprintf(u, usize, "%s/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", c->server, ns,
                 name);
        break;
    case KJ_KUBE_CREATE_LEASE:
        snprintf(u, usize, "%s/apis/coordination.k8s.io/v1/namespaces/%s/leases", c->server, ns);
        break;
    case KJ_KUBE_RAW:
        snprintf(u, usize, "%s%s", c->server, r->path);
        break;
    }
out:
    curl_free(ns);
    curl_free(name);
    free(q);
    if (rc)
        free(u);
    else
        *url = u;
    return rc;
}

/* The method, Content-Type header and body (in o->req_body) of o's request.
 * 0 or KJ_ENOMEM. */
static int build_body(op *o, const char **method, const char **ctype)
{
    *method = "GET";
    *ctype = NULL;
    free(o->req_body);
    o->req_body = NULL;
    switch (o->req.op) {
    case KJ_KUBE_PATCH_POD:
        *method = "PATCH";
        *ctype = "Content-Type: application/json-patch+json";
        o->req_body = strdup(o->req.body);
        break;
    case KJ_KUBE_DELETE_POD:
        *method = "DELETE";
        *ctype = "Content-Type: application/json";
        o->req_body = kj_kube_delete_body(o->req.precondition_uid, o->req.precondition_rv,
                                          o->req.grace_period_s, o->req.propagation);
        break;
    case KJ_KUBE_CREATE_LEASE:
    case KJ_KUBE_UPDATE_LEASE:
        *method = o->req.op == KJ_KUBE_CREATE_LEASE ? "POST" : "PUT";
        *ctype = "Content-Type: application/json";
        o->req_body =
            kj_kube_lease_body(&o->lease, o->req.namespace_, o->req.op == KJ_KUBE_UPDATE_LEASE);
        break;
    case KJ_KUBE_RAW:
        *method = o->req.method;
        if (o->req.body) {
            *ctype = o->req.body[0] == '['       ? "Content-Type: application/json-patch+json"
                     : !strcmp(*method, "PATCH") ? "Content-Type: application/merge-patch+json"
                                                 : "Content-Type: application/json";
            o->req_body = strdup(o->req.body);
        }
        break;
    default:
        break;
    }
    return *ctype && !o->req_body ? KJ_ENOMEM : 0;
}

/* o->hdrs for this attempt; the token goes in a buffer wiped after use.
 * 0 or KJ_ENOMEM. */
static int build_headers(kj_kube *k, op *o, const char *ctype)
{
    if (o->hdrs)
        curl_slist_free_all(o->hdrs);
    o->hdrs = NULL;
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    h = h ? curl_slist_append(h, "Expect:") : NULL;
    if (h && ctype)
        h = curl_slist_append(h, ctype);
    if (h && k->token) {
        size_t n = strlen(k->token) + 32;
        char *a = malloc(n);
        if (a) {
            snprintf(a, n, "Authorization: Bearer %s", k->token);
            struct curl_slist *h2 = curl_slist_append(h, a);
            kj_kube_free_secret(a, n);
            if (!h2)
                curl_slist_free_all(h);
            h = h2;
        } else {
            curl_slist_free_all(h);
            h = NULL;
        }
    }
    if (!h)
        return KJ_ENOMEM;
    o->hdrs = h;
    return 0;
}

/* Server verification and client credentials: files by name, inline data as
 * blobs libcurl reads in place (never written to a temporary file). */
static void set_tls(CURL *e, const kj_kube_config *c)
{
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
    if (c->ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    } else if (c->ca_data) {
        struct curl_blob b = {c->ca_data, c->ca_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
    }
    if (c->cert_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
    } else if (c->cert_data) {
        struct curl_blob b = {c->cert_data, c->cert_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
    }
    if (c->cert_file || c->cert_data)
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    if (c->key_file) {
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    } else if (c->key_data) {
        struct curl_blob b = {c->key_data, c->key_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
    }
    if (c->key_file || c->key_data)
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
}

static void set_options(kj_kube *k, op *o, CURL *e, const char *url, const char *method,
                        int64_t now)
{
    int64_t left = o->deadline - now;
    if (left < 1)
        left = 1;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, o);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kjournal/0.1");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, o);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, o);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, o->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(left < 10000 ? left : 10000));
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Wait for a stream on an existing connection only once the server has
     * shown it multiplexes (HTTP/2): over HTTP/1.1 PIPEWAIT serializes. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, k->saw_h2 ? 1L : 0L);
    /* libcurl sends a request again by itself, whatever its method, when a
     * reused connection closes before any byte of the answer: right for a
     * keep-alive connection the server had already dropped, wrong when the
     * server applied the request and only the answer was lost (a bare patch
     * applied twice). It never does so on a connection it has just opened,
     * so a call that is not safe to repeat gets one of its own. */
    if (!o->retry_conn)
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    set_tls(e, k->cfg);
    if (strcmp(method, "GET"))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (o->req_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->req_body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(o->req_body));
    }
}

/* Starts the next attempt of o; on failure o is not on the wire and the
 * error is in o->st / the return code. */
static int start_attempt(kj_kube *k, op *o, int64_t now, kj_err *err)
{
    int rc = 0;
    char *url = NULL;
    const char *method, *ctype;
    CURL *e = curl_easy_init();
    if (!e)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    if ((rc = build_url(o, e, &url)) < 0) {
        kj_err_set(err, rc, "out of memory");
        goto out;
    }
    if (build_body(o, &method, &ctype) < 0) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    if (k->cfg->token_file && now - k->token_read_at >= k->token_reread_ms)
        reload_token(k);
    if (build_headers(k, o, ctype) < 0) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    o->resp_len = 0;
    o->too_big = 0;
    o->has_retry_after = 0;
    o->retry_after[0] = '\0';
    o->errbuf[0] = '\0';
    if (o->resp)
        o->resp[0] = '\0';
    set_options(k, o, e, url, method, now);
    if (curl_multi_add_handle(k->multi, e) != CURLM_OK) {
        rc = kj_err_set(err, KJ_ENOMEM, "cannot start a request");
        goto out;
    }
    o->easy = e;
    e = NULL;
    o->active_next = k->active;
    k->active = o;
    o->attempts++;
    o->tries++;
    k->n_active++;
    k->stats.requests++;
    if (k->n_active > k->stats.max_in_flight_seen)
        k->stats.max_in_flight_seen = k->n_active;
out:
    if (e)
        curl_easy_cleanup(e);
    free(url);
    return rc;
}

static void unlink_active(kj_kube *k, op *o)
{
    for (op **pp = &k->active; *pp; pp = &(*pp)->active_next)
        if (*pp == o) {
            *pp = o->active_next;
            break;
        }
    o->active_next = NULL;
}

/* ---- completion -------------------------------------------------------- */

static void finish(kj_kube *k, op *o, int rc, const kj_err *err)
{
    kj_kube_result res;
    kj_pod *pod = NULL;
    kj_lease lease;
    memset(&res, 0, sizeof(res));
    res.rc = rc;
    res.attempts = o->attempts;
    res.pages = o->pages;
    res.status = o->st;
    if (err && rc < 0)
        res.err = *err;
    res.err.code = rc;
    if (rc == 0 && o->req.op != KJ_KUBE_LIST_PODS && o->resp) {
        res.body = o->resp;
        res.body_len = o->resp_len;
    }
    if (rc == 0 && o->resp_len) {
        kj_err perr = {0};
        int prc = 0;
        switch (o->req.op) {
        case KJ_KUBE_GET_POD:
        case KJ_KUBE_PATCH_POD:
            prc = kj_pod_parse(o->resp, o->resp_len, &pod, &perr);
            break;
        case KJ_KUBE_DELETE_POD:
            /* Pods answer with the pod; tolerate a success Status too. */
            if (!strstr(o->resp, "\"kind\":\"Status\""))
                prc = kj_pod_parse(o->resp, o->resp_len, &pod, &perr);
            break;
        case KJ_KUBE_GET_LEASE:
        case KJ_KUBE_CREATE_LEASE:
        case KJ_KUBE_UPDATE_LEASE:
            prc = kj_lease_parse(o->resp, o->resp_len, &lease, &perr);
            if (prc == 0)
                res.lease = &lease;
            break;
        default:
            break;
        }
        if (prc < 0) {
            res.rc = prc;
            res.err = perr;
            kj_err_prefix(&res.err, "%s %s/%s", op_name(o->req.op), o->req.namespace_,
                          o->req.name ? o->req.name : "");
        }
        res.pod = pod;
    } else if (rc == 0 && o->req.op != KJ_KUBE_LIST_PODS && o->req.op != KJ_KUBE_RAW) {
        res.rc = kj_err_set(&res.err, KJ_EPROTO, "%s %s/%s: empty answer", op_name(o->req.op),
                            o->req.namespace_, o->req.name ? o->req.name : "");
    }
    k->stats.completed++;
    if (res.rc < 0)
        k->stats.failed++;
    k->n_pending--;
    if (o->done) {
        k->in_callback++;
        o->done(k, &res, o->ud);
        k->in_callback--;
    }
    kj_pod_free(pod);
    op_free(o);
}

/* Puts o on the delayed list to start again at not_before. */
static void delay(kj_kube *k, op *o, int64_t not_before)
{
    o->not_before = not_before;
    o->next = k->delayed;
    k->delayed = o;
}

/* Schedules a retry after wait_ms, or finishes o when the tries or the
 * deadline do not allow one. last describes the failure. */
static void retry_or_fail(kj_kube *k, op *o, int64_t now, int64_t wait_ms, int last_rc,
                          const char *last)
{
    kj_err err = {0};
    if (o->tries >= MAX_TRIES) {
        kj_err_set(&err, last_rc, "%s %s/%s: %s (gave up after %d attempts)", op_name(o->req.op),
                   o->req.namespace_, o->req.name ? o->req.name : "", last, o->tries);
        finish(k, o, last_rc, &err);
        return;
    }
    if (now + wait_ms >= o->deadline) {
        kj_err_set(&err, KJ_ETIMEDOUT,
                   "%s %s/%s: no time left for another attempt within the deadline of %lld ms "
                   "(%d attempts); last: %s",
                   op_name(o->req.op), o->req.namespace_, o->req.name ? o->req.name : "",
                   (long long)o->req.timeout_ms, o->attempts, last);
        finish(k, o, KJ_ETIMEDOUT, &err);
        return;
    }
    k->stats.retries++;
    char q[300];
    kj_log(KJ_LOG_DEBUG, "kube: retrying", "op=\"%s\" name=%s wait_ms=%lld attempt=%d last=%s",
           op_name(o->req.op), o->req.name ? o->req.name : "-", (long long)wait_ms, o->attempts,
           kj_logq(q, sizeof(q), last));
    delay(k, o, now + wait_ms);
}

static int64_t backoff_ms(kj_kube *k, op *o)
{
    int64_t d = BACKOFF_BASE_MS;
    for (int i = 1; i < o->tries && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    /* equal jitter: half fixed, half random, so retries of many requests spread */
    return d / 2 + (int64_t)(rnd(k) % (uint64_t)(d / 2 + 1));
}

static int curl_is_tls_refusal(CURLcode cc)
{
    return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
           cc == CURLE_SSL_CERTPROBLEM || cc == CURLE_SSL_ISSUER_ERROR ||
           cc == CURLE_SSL_PINNEDPUBKEYNOTMATCH || cc == CURLE_SSL_CRL_BADFILE;
}

/* A list page arrived: deliver it, then go on with the next page or finish. */
static void list_page(kj_kube *k, op *o, int64_t now)
{
    kj_pod *pods = NULL;
    size_t n = 0;
    char *cont = NULL;
    kj_err err = {0};
    int rc = kj_kube_parse_pod_list(o->resp, o->resp_len, &pods, &n, &cont, &err);
    /* Only one page of JSON is held at a time. */
    free(o->resp);
    o->resp = NULL;
    o->resp_len = o->resp_cap = 0;
    if (rc < 0) {
        kj_err_prefix(&err, "list pods %s", o->req.namespace_);
        finish(k, o, rc, &err);
        return;
    }
    o->pages++;
    int stop = 0;
    if (o->req.on_page) {
        k->in_callback++;
        stop = o->req.on_page(pods, n, o->restarted, o->ud);
        k->in_callback--;
    }
    o->restarted = 0;
    for (size_t i = 0; i < n; i++)
        kj_pod_clear(&pods[i]);
    free(pods);
    free(o->cont);
    o->cont = cont;
    if (stop) {
        kj_err_set(&err, KJ_ECANCELED, "list pods %s: stopped by the caller", o->req.namespace_);
        finish(k, o, KJ_ECANCELED, &err);
    } else if (!cont) {
        finish(k, o, 0, NULL);
    } else {
        o->tries = 0;
        delay(k, o, now);
    }
}

/* Takes o's finished transfer off the wire, counting its connections and
 * noting whether the server speaks HTTP/2. Returns the HTTP status (0: none). */
static long take_off_wire(kj_kube *k, op *o)
{
    long http = 0;
    curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &http);
    long ver = 0, conns = 0;
    if (curl_easy_getinfo(o->easy, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK && conns > 0)
        k->stats.connects += (uint64_t)conns;
    if (curl_easy_getinfo(o->easy, CURLINFO_HTTP_VERSION, &ver) == CURLE_OK)
        k->saw_h2 = ver == CURL_HTTP_VERSION_2_0 || ver == CURL_HTTP_VERSION_3;
    unlink_active(k, o);
    curl_multi_remove_handle(k->multi, o->easy);
    curl_easy_cleanup(o->easy);
    o->easy = NULL;
    k->n_active--;
    return http;
}

/* No HTTP answer: a transport error (connection, TLS, timeout, body too big). */
static void transport_failed(kj_kube *k, op *o, CURLcode cc, int64_t now)
{
    char what[700];
    kj_err err = {0};
    const char *ns = o->req.namespace_, *nm = o->req.name ? o->req.name : "";
    memset(&o->st, 0, sizeof(o->st));
    /* errbuf names host and cause, never headers or bodies */
    snprintf(what, sizeof(what), "%s", o->errbuf[0] ? o->errbuf : curl_easy_strerror(cc));
    if (o->too_big) {
        kj_err_set(&err, KJ_EPROTO, "%s %s/%s: answer larger than %u bytes", op_name(o->req.op), ns,
                   nm, MAX_BODY);
        finish(k, o, KJ_EPROTO, &err);
    } else if (curl_is_tls_refusal(cc)) {
        kj_err_set(&err, KJ_EAUTH, "%s %s/%s: TLS: %s", op_name(o->req.op), ns, nm, what);
        finish(k, o, KJ_EAUTH, &err);
    } else if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ||
               cc == CURLE_OUT_OF_MEMORY || cc == CURLE_WRITE_ERROR) {
        kj_err_set(&err,
                   cc == CURLE_OUT_OF_MEMORY || cc == CURLE_WRITE_ERROR ? KJ_ENOMEM : KJ_EINVAL,
                   "%s %s/%s: %s", op_name(o->req.op), ns, nm, what);
        finish(k, o, err.code, &err);
    } else if (cc == CURLE_OPERATION_TIMEDOUT && now >= o->deadline - 5) {
        kj_err_set(&err, KJ_ETIMEDOUT, "%s %s/%s: deadline of %lld ms passed: %s",
                   op_name(o->req.op), ns, nm, (long long)o->req.timeout_ms, what);
        finish(k, o, KJ_ETIMEDOUT, &err);
    } else if (o->retry_conn) {
        retry_or_fail(k, o, now, backoff_ms(k, o), KJ_EUNAVAIL, what);
    } else {
        kj_err_set(&err, KJ_EUNAVAIL,
                   "%s %s/%s: %s (not retried: the request may have been applied)",
                   op_name(o->req.op), ns, nm, what);
        finish(k, o, KJ_EUNAVAIL, &err);
    }
}

/* 410 Expired in the middle of a list: go on with the fresh continue token
 * the server handed out, or start over. */
static void list_expired(kj_kube *k, op *o, int64_t now)
{
    o->restarts++;
    free(o->cont);
    o->cont = NULL;
    if (o->st.continue_token[0])
        o->cont = strdup(o->st.continue_token);
    if (!o->cont)
        o->restarted = 1; /* start over; the caller sees restarted=1 */
    char q[64];
    kj_log(KJ_LOG_INFO, "kube: continue token expired", "namespace=%s action=%s",
           kj_logq(q, sizeof(q), o->req.namespace_), o->cont ? "continue" : "restart");
    o->tries = 0;
    delay(k, o, now);
}

/* An HTTP answer outside 2xx: retry, re-authenticate, restart a list, or fail. */
static void http_failed(kj_kube *k, op *o, long http, int64_t now)
{
    char what[700];
    kj_err err = {0};
    int rc = kj_kube_status_parse((int)http, o->resp, o->resp_len, &o->st);
    snprintf(what, sizeof(what), "%ld %s%s%s", http, o->st.reason, o->st.reason[0] ? ": " : "",
             o->st.message[0] ? o->st.message : "(no message)");

    if (http == 401 && !o->auth_retried && k->cfg->token_file && reload_token(k) == 1) {
        /* rejected before execution: repeat once with the new token */
        o->auth_retried = 1;
        o->tries--;
        delay(k, o, now);
        return;
    }
    if (http == 429 || (http == 503 && o->has_retry_after)) {
        /* Retry-After: 0 (or a date in the past) must not turn into a spin:
         * below the base backoff, back off as for a 5xx instead. */
        int64_t wait = kj_kube_retry_after_ms(o->retry_after, kj_now_ms());
        if (wait < BACKOFF_BASE_MS / 2)
            wait = backoff_ms(k, o);
        retry_or_fail(k, o, now, wait, rc, what);
        return;
    }
    if (http == 410 && o->req.op == KJ_KUBE_LIST_PODS && !strcmp(o->st.reason, "Expired") &&
        o->restarts < MAX_LIST_RESTARTS) {
        list_expired(k, o, now);
        return;
    }
    if (http >= 500 && o->retry_conn) {
        retry_or_fail(k, o, now, backoff_ms(k, o), rc, what);
        return;
    }
    if (rc == 0) /* 1xx/3xx: not something the API answers */
        rc = KJ_EPROTO;
    kj_err_set(&err, rc, "%s %s/%s: %s", op_name(o->req.op), o->req.namespace_,
               o->req.name ? o->req.name : "", what);
    finish(k, o, rc, &err);
}

static void complete(kj_kube *k, op *o, CURLcode cc)
{
    int64_t now = kj_mono_ms();
    long http = take_off_wire(k, o);
    if (cc != CURLE_OK) {
        transport_failed(k, o, cc, now);
    } else if (http >= 200 && http < 300) {
        memset(&o->st, 0, sizeof(o->st));
        if (o->req.op == KJ_KUBE_LIST_PODS)
            list_page(k, o, now);
        else
            finish(k, o, 0, NULL);
    } else {
        http_failed(k, o, http, now);
    }
}

/* ---- the loop ---------------------------------------------------------- */

static void refill(kj_kube *k, int64_t now)
{
    if (k->qps <= 0)
        return;
    double add = (double)(now - k->tokens_at) * k->qps / 1000.0;
    k->tokens_at = now;
    k->tokens += add;
    if (k->tokens > k->burst)
        k->tokens = k->burst;
}

/* ms until a token is available (0 if one is). */
static int64_t token_wait(kj_kube *k)
{
    if (k->qps <= 0 || k->tokens >= 1.0)
        return 0;
    int64_t w = (int64_t)((1.0 - k->tokens) * 1000.0 / k->qps) + 1;
    return w < 1 ? 1 : w;
}

static int take_token(kj_kube *k, int64_t now)
{
    if (k->qps <= 0)
        return 1;
    refill(k, now);
    if (k->tokens < 1.0)
        return 0;
    k->tokens -= 1.0;
    return 1;
}

static void launch(kj_kube *k, op *o, int64_t now)
{
    kj_err err = {0};
    if (!o->deadline)
        o->deadline = now + o->req.timeout_ms;
    if (now >= o->deadline) {
        kj_err_set(&err, KJ_ETIMEDOUT, "%s %s/%s: deadline of %lld ms passed before an attempt",
                   op_name(o->req.op), o->req.namespace_, o->req.name ? o->req.name : "",
                   (long long)o->req.timeout_ms);
        finish(k, o, KJ_ETIMEDOUT, &err);
        return;
    }
    if (start_attempt(k, o, now, &err) < 0)
        finish(k, o, err.code, &err);
}

/* Starts what may start: due retries first, then the queue, within the
 * in-flight bound and the token bucket. */
static void dispatch(kj_kube *k)
{
    int64_t now = kj_mono_ms();
    for (;;) {
        if (k->n_active >= k->max_in_flight)
            return;
        op **pp = &k->delayed, *o = NULL;
        for (; *pp; pp = &(*pp)->next)
            if ((*pp)->not_before <= now)
                break;
        if (*pp) {
            o = *pp;
        } else if (!k->q_head) {
            return;
        }
        if (!take_token(k, now))
            return;
        if (o) {
            *pp = o->next;
        } else {
            o = k->q_head;
            k->q_head = o->next;
            if (!k->q_head)
                k->q_tail = NULL;
        }
        o->next = NULL;
        launch(k, o, now);
    }
}

/* How long the loop may sleep before something is due. */
static int64_t next_due(kj_kube *k, int64_t max)
{
    int64_t now = kj_mono_ms(), w = max;
    if (k->n_active < k->max_in_flight) {
        for (op *o = k->delayed; o; o = o->next) {
            int64_t d = o->not_before - now;
            int64_t t = token_wait(k);
            if (d < t)
                d = t;
            if (d < w)
                w = d < 0 ? 0 : d;
        }
        if (k->q_head) {
            int64_t t = token_wait(k);
            if (t < w)
                w = t;
        }
    }
    return w;
}

int kj_kube_poll(kj_kube *k, int timeout_ms)
{
    if (!k)
        return 0;
    dispatch(k);
    int64_t wait = next_due(k, timeout_ms < 0 ? 1000 : timeout_ms);
    if (k->n_pending > 0) {
        int numfds = 0;
        curl_multi_poll(k->multi, NULL, 0, (int)wait, &numfds);
    }
    int running = 0;
    curl_multi_perform(k->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(k->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        op *o = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&o);
        if (o)
            complete(k, o, m->data.result);
    }
    dispatch(k);
    return k->n_pending;
}

int kj_kube_run(kj_kube *k, int64_t timeout_ms)
{
    int64_t end = timeout_ms < 0 ? -1 : kj_mono_ms() + timeout_ms;
    while (k && k->n_pending > 0) {
        int64_t now = kj_mono_ms();
        if (end >= 0 && now >= end)
            return KJ_ETIMEDOUT;
        int64_t w = end < 0 ? 1000 : end - now;
        kj_kube_poll(k, (int)(w > 1000 ? 1000 : w));
    }
    return 0;
}

void kj_kube_cancel(kj_kube *k)
{
    if (!k)
        return;
    kj_err err = {0};
    k->canceling = 1;
    for (;;) {
        op *o = k->q_head;
        if (o) {
            k->q_head = o->next;
            if (!k->q_head)
                k->q_tail = NULL;
        } else if ((o = k->delayed)) {
            k->delayed = o->next;
        } else {
            break;
        }
        kj_err_set(&err, KJ_ECANCELED, "%s %s/%s: canceled", op_name(o->req.op), o->req.namespace_,
                   o->req.name ? o->req.name : "");
        finish(k, o, KJ_ECANCELED, &err);
    }
    /* on the wire: take them off */
    while (k->active) {
        op *o = k->active;
        unlink_active(k, o);
        curl_multi_remove_handle(k->multi, o->easy);
        curl_easy_cleanup(o->easy);
        o->easy = NULL;
        k->n_active--;
        kj_err_set(&err, KJ_ECANCELED, "%s %s/%s: canceled", op_name(o->req.op), o->req.namespace_,
                   o->req.name ? o->req.name : "");
        finish(k, o, KJ_ECANCELED, &err);
    }
    k->canceling = 0;
}

/* ---- synchronous wrappers ---------------------------------------------- */

typedef struct sync_ctx {
    int done;
    int rc;
    kj_kube_status st;
    kj_err err;
    kj_pod **pod_out;
    kj_lease *lease_out;
    kj_kube_page_fn page;
    void *page_ud;
} sync_ctx;

static void sync_done(kj_kube *k, const kj_kube_result *r, void *ud)
{
    (void)k;
    sync_ctx *s = ud;
    s->done = 1;
    s->rc = r->rc;
    s->st = r->status;
    s->err = r->err;
    if (r->rc == 0 && s->pod_out && r->pod) {
        kj_err e = {0};
        int rc = kj_pod_parse(r->body, r->body_len, s->pod_out, &e);
        if (rc < 0) {
            s->rc = rc;
            s->err = e;
        }
    }
    if (r->rc == 0 && s->lease_out && r->lease)
        *s->lease_out = *r->lease;
}

static int sync_page(const kj_pod *pods, size_t n, int restarted, void *ud)
{
    sync_ctx *s = ud;
    return s->page ? s->page(pods, n, restarted, s->page_ud) : 0;
}

static int run_sync(kj_kube *k, kj_kube_req *r, sync_ctx *s, kj_kube_status *st, kj_err *err)
{
    if (!k)
        return kj_err_set(err, KJ_EINVAL, "kube: no client");
    if (k->in_callback)
        return kj_err_set(err, KJ_EINVAL,
                          "kube: a synchronous call from inside a callback; submit instead");
    if (r->op == KJ_KUBE_LIST_PODS) {
        r->on_page = sync_page;
    }
    int rc = kj_kube_submit(k, r, sync_done, s);
    if (rc < 0)
        return kj_err_set(err, rc, "%s: invalid request", op_name(r->op));
    while (!s->done)
        kj_kube_poll(k, 1000);
    if (st)
        *st = s->st;
    if (s->rc < 0 && err)
        *err = s->err;
    return s->rc;
}

int kj_kube_get_pod(kj_kube *k, const char *ns, const char *name, kj_pod **out, kj_kube_status *st,
                    kj_err *err)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    sync_ctx s = {0};
    if (out)
        *out = NULL;
    r.op = KJ_KUBE_GET_POD;
    r.namespace_ = ns;
    r.name = name;
    s.pod_out = out;
    return run_sync(k, &r, &s, st, err);
}

int kj_kube_patch_pod(kj_kube *k, const char *ns, const char *name, const char *json_patch,
                      kj_pod **out, kj_kube_status *st, kj_err *err)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    sync_ctx s = {0};
    if (out)
        *out = NULL;
    r.op = KJ_KUBE_PATCH_POD;
    r.namespace_ = ns;
    r.name = name;
    r.body = json_patch;
    s.pod_out = out;
    return run_sync(k, &r, &s, st, err);
}

int kj_kube_delete_pod(kj_kube *k, const char *ns, const char *name, const kj_kube_delete_opts *d,
                       kj_pod **out, kj_kube_status *st, kj_err *err)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    sync_ctx s = {0};
    if (out)
        *out = NULL;
    r.op = KJ_KUBE_DELETE_POD;
    r.namespace_ = ns;
    r.name = name;
    if (d) {
        r.precondition_uid = d->uid;
        r.precondition_rv = d->resource_version;
        r.grace_period_s = d->grace_period_s;
        r.propagation = d->propagation;
    }
    s.pod_out = out;
    return run_sync(k, &r, &s, st, err);
}

int kj_kube_list_pods(kj_kube *k, const char *ns, const char *label_selector,
                      const char *field_selector, int limit, kj_kube_page_fn on_page, void *ud,
                      kj_kube_status *st, kj_err *err)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    sync_ctx s = {0};
    r.op = KJ_KUBE_LIST_PODS;
    r.namespace_ = ns;
    r.label_selector = label_selector;
    r.field_selector = field_selector;
    r.limit = limit;
    s.page = on_page;
    s.page_ud = ud;
    return run_sync(k, &r, &s, st, err);
}

int kj_kube_get_lease(kj_kube *k, const char *ns, const char *name, kj_lease *out,
                      kj_kube_status *st, kj_err *err)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    sync_ctx s = {0};
    r.op = KJ_KUBE_GET_LEASE;
    r.namespace_ = ns;
    r.name = name;
    s.lease_out = out;
    return run_sync(k, &r, &s, st, err);
}

int kj_kube_create_lease(kj_kube *k, const kj_lease *in, kj_lease *out, kj_kube_status *st,
                         kj_err *err)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    sync_ctx s = {0};
    r.op = KJ_KUBE_CREATE_LEASE;
    r.lease = in;
    s.lease_out = out;
    return run_sync(k, &r, &s, st, err);
}

int kj_kube_update_lease(kj_kube *k, const kj_lease *in, kj_lease *out, kj_kube_status *st,
                         kj_err *err)
{
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    sync_ctx s = {0};
    r.op = KJ_KUBE_UPDATE_LEASE;
    r.lease = in;
    s.lease_out = out;
    return run_sync(k, &r, &s, st, err);
}
