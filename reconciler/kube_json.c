/*
 * kube_json.c - what the client reads from and writes to the API server:
 * pods, pod lists, leases, Status objects, DeleteOptions, Retry-After, times.
 *
 * Parsers accept anything: a field of the wrong type is treated as missing,
 * except the identity of an object (name, uid, resourceVersion), without
 * which an answer is KJ_EPROTO.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "reconciler/kube_internal.h"

/* ---- times ------------------------------------------------------------- */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int64_t kj_kube_parse_time(const char *s)
{
    int Y, M, D, h, m, sec;
    if (!s || strlen(s) < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) ||
        s[7] != '-' || digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &m) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    if (Y < 1970 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    int64_t ms = 0;
    if (*p == '.') {
        int scale = 100, nd = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, nd++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
        if (nd == 0)
            return -1;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return ((int64_t)t - off) * 1000 + ms;
}

static void format_micro(int64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%.19s.%06dZ", date, (int)((ms % 1000 + 1000) % 1000) * 1000);
}

int64_t kj_kube_retry_after_ms(const char *v, int64_t now_ms)
{
    const int64_t dflt = 1000, cap = KJ_KUBE_RETRY_AFTER_MAX_MS;
    if (!v)
        return dflt;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        int64_t s = 0;
        const char *p = v;
        for (; *p >= '0' && *p <= '9'; p++)
            if (s < cap)
                s = s * 10 + (*p - '0');
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p)
            return dflt;
        return s * 1000 > cap ? cap : s * 1000;
    }
    struct tm tm = {0};
    const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end)
        return dflt;
    while (*end == ' ' || *end == '\r' || *end == '\n')
        end++;
    if (*end)
        return dflt;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return dflt;
    int64_t d = (int64_t)t * 1000 - now_ms;
    return d < 0 ? 0 : d > cap ? cap : d;
}

/* ---- Status ------------------------------------------------------------ */

int kj_kube_http_error(int http)
{
    if (http >= 200 && http < 300)
        return 0;
    switch (http) {
    case 401:
    case 403:
        return KJ_EAUTH;
    case 404:
        return KJ_ENOENT;
    case 409:
    case 422:
        return KJ_ECONFLICT;
    case 429:
    case 502:
    case 503:
    case 504:
        return KJ_EUNAVAIL;
    default:
        return KJ_EHTTP;
    }
}

/* Copies a server string into dst: printable ASCII kept, the rest '?'. */
static void copy_clean(char *dst, size_t size, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : (c == '\n' || c == '\t') ? ' ' : '?';
    }
    dst[o] = '\0';
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

int kj_kube_status_parse(int http, const char *body, size_t len, kj_kube_status *st)
{
    memset(st, 0, sizeof(*st));
    st->http = http;
    cJSON *j = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    if (j && cJSON_IsObject(j)) {
        const char *s;
        if ((s = jstr(j, "reason")))
            copy_clean(st->reason, sizeof(st->reason), s, strlen(s));
        if ((s = jstr(j, "message")))
            copy_clean(st->message, sizeof(st->message), s, strlen(s));
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
        if ((s = jstr(md, "continue")))
            copy_clean(st->continue_token, sizeof(st->continue_token), s, strlen(s));
    } else if (body && len) {
        /* Plain text (priority-and-fairness 429, proxies): a bounded snippet. */
        copy_clean(st->message, len < 200 ? len + 1 : 201, body, len);
        size_t n = strlen(st->message);
        while (n > 0 && st->message[n - 1] == ' ')
            st->message[--n] = '\0';
    }
    cJSON_Delete(j);
    return kj_kube_http_error(http);
}

/* ---- pods -------------------------------------------------------------- */

void kj_pod_clear(kj_pod *p)
{
    if (!p)
        return;
    free(p->namespace_);
    free(p->name);
    free(p->uid);
    free(p->resource_version);
    free(p->unique_tag);
    free(p->app_selector);
    free(p->spark_role);
    for (size_t i = 0; i < p->n_finalizers; i++)
        free(p->finalizers[i]);
    free(p->finalizers);
    free(p->phase);
    free(p->node_name);
    memset(p, 0, sizeof(*p));
}

void kj_pod_free(kj_pod *p)
{
    if (!p)
        return;
    kj_pod_clear(p);
    free(p);
}

/* *dst = a copy of src (NULL stays NULL); 1 when out of memory. */
static int dup_field(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst;
}

int kj_pod_dup(const kj_pod *src, kj_pod **out)
{
    *out = NULL;
    kj_pod *p = calloc(1, sizeof *p);
    if (!p)
        return KJ_ENOMEM;
    *p = *src; /* the numbers; every pointer is replaced below */
    int oom = dup_field(&p->namespace_, src->namespace_) | dup_field(&p->name, src->name) |
              dup_field(&p->uid, src->uid) |
              dup_field(&p->resource_version, src->resource_version) |
              dup_field(&p->unique_tag, src->unique_tag) |
              dup_field(&p->app_selector, src->app_selector) |
              dup_field(&p->spark_role, src->spark_role) | dup_field(&p->phase, src->phase) |
              dup_field(&p->node_name, src->node_name);
    p->finalizers = NULL;
    p->n_finalizers = 0;
    if (src->n_finalizers) {
        p->finalizers = calloc(src->n_finalizers, sizeof *p->finalizers);
        oom |= !p->finalizers;
        for (size_t i = 0; !oom && i < src->n_finalizers; i++)
            oom |= dup_field(&p->finalizers[p->n_finalizers++], src->finalizers[i]);
    }
    if (oom) {
        kj_pod_free(p);
        return KJ_ENOMEM;
    }
    *out = p;
    return 0;
}

int kj_pod_has_finalizer(const kj_pod *p, const char *name, size_t *index)
{
    for (size_t i = 0; p && name && i < p->n_finalizers; i++)
        if (!strcmp(p->finalizers[i], name)) {
            if (index)
                *index = i;
            return 1;
        }
    return 0;
}

/* strdup of o[key] when it is a string; 0, or KJ_ENOMEM. */
static int take(const cJSON *o, const char *key, char **dst)
{
    const char *s = jstr(o, key);
    *dst = NULL;
    if (!s)
        return 0;
    *dst = strdup(s);
    return *dst ? 0 : KJ_ENOMEM;
}

static int64_t jtime(const cJSON *o, const char *key)
{
    int64_t t = kj_kube_parse_time(jstr(o, key));
    return t < 0 ? 0 : t;
}

static int pod_from_json(const cJSON *j, kj_pod *p, kj_err *err)
{
    memset(p, 0, sizeof(*p));
    p->deletion_grace_s = -1;
    if (!cJSON_IsObject(j))
        return kj_err_set(err, KJ_EPROTO, "pod: not a JSON object");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(j, "spec");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    const char *kind = jstr(j, "kind");
    if (kind && strcmp(kind, "Pod"))
        return kj_err_set(err, KJ_EPROTO, "pod: the answer is a %.40s, not a Pod", kind);
    if (!cJSON_IsObject(md) || !jstr(md, "name") || !jstr(md, "uid"))
        return kj_err_set(err, KJ_EPROTO, "pod: metadata.name or metadata.uid missing");
    int rc = 0;
    rc |= take(md, "namespace", &p->namespace_);
    rc |= take(md, "name", &p->name);
    rc |= take(md, "uid", &p->uid);
    rc |= take(md, "resourceVersion", &p->resource_version);
    rc |= take(labels, "kyuubi-unique-tag", &p->unique_tag);
    rc |= take(labels, "spark-app-selector", &p->app_selector);
    rc |= take(labels, "spark-role", &p->spark_role);
    rc |= take(status, "phase", &p->phase);
    rc |= take(spec, "nodeName", &p->node_name);
    if (rc)
        goto oom;
    p->created_ms = jtime(md, "creationTimestamp");
    p->deletion_ms = jtime(md, "deletionTimestamp");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(md, "deletionGracePeriodSeconds");
    if (cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble < 1e12)
        p->deletion_grace_s = (int64_t)g->valuedouble;
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
    if (cJSON_IsArray(fin)) {
        int n = cJSON_GetArraySize(fin);
        if (n > 0 && !(p->finalizers = calloc((size_t)n, sizeof(char *))))
            goto oom;
        const cJSON *f;
        cJSON_ArrayForEach(f, fin)
        {
            if (!cJSON_IsString(f) || !f->valuestring)
                continue;
            if (!(p->finalizers[p->n_finalizers] = strdup(f->valuestring)))
                goto oom;
            p->n_finalizers++;
        }
    }
    /* Latest finishedAt over containers (and init containers): when the
     * engine stopped, for the retain period. */
    const char *lists[] = {"containerStatuses", "initContainerStatuses"};
    for (size_t l = 0; l < 2; l++) {
        const cJSON *cs = cJSON_GetObjectItemCaseSensitive(status, lists[l]), *c;
        if (!cJSON_IsArray(cs))
            continue;
        cJSON_ArrayForEach(c, cs)
        {
            const cJSON *state = cJSON_GetObjectItemCaseSensitive(c, "state");
            const cJSON *term = cJSON_GetObjectItemCaseSensitive(state, "terminated");
            int64_t t = jtime(term, "finishedAt");
            if (t > p->finished_ms)
                p->finished_ms = t;
        }
    }
    return 0;
oom:
    kj_pod_clear(p);
    return kj_err_set(err, KJ_ENOMEM, "out of memory");
}

int kj_pod_from_cjson(const void *json, kj_pod *p, kj_err *err)
{
    return pod_from_json(json, p, err);
}

int kj_pod_parse(const char *json, size_t len, kj_pod **out, kj_err *err)
{
    *out = NULL;
    cJSON *j = json ? cJSON_ParseWithLength(json, len) : NULL;
    if (!j)
        return kj_err_set(err, KJ_EPROTO, "pod: the answer is not JSON");
    kj_pod *p = calloc(1, sizeof(*p));
    int rc = p ? pod_from_json(j, p, err) : kj_err_set(err, KJ_ENOMEM, "out of memory");
    cJSON_Delete(j);
    if (rc < 0) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int kj_kube_parse_pod_list(const char *json, size_t len, kj_pod **pods, size_t *n, char **cont,
                           kj_err *err)
{
    return kj_kube_parse_pod_list_rv(json, len, pods, n, cont, NULL, 0, err);
}

int kj_kube_parse_pod_list_rv(const char *json, size_t len, kj_pod **pods, size_t *n, char **cont,
                              char *rv, size_t rv_size, kj_err *err)
{
    int rc = 0;
    kj_pod *arr = NULL;
    size_t cnt = 0;
    *pods = NULL;
    *n = 0;
    *cont = NULL;
    cJSON *j = json ? cJSON_ParseWithLength(json, len) : NULL;
    if (!j || !cJSON_IsObject(j)) {
        rc = kj_err_set(err, KJ_EPROTO, "pod list: the answer is not a JSON object");
        goto out;
    }
    const char *kind = jstr(j, "kind");
    if (kind && strcmp(kind, "PodList")) {
        rc = kj_err_set(err, KJ_EPROTO, "pod list: the answer is a %.40s, not a PodList", kind);
        goto out;
    }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items"), *it;
    if (!cJSON_IsArray(items) && !cJSON_IsNull(items)) {
        rc = kj_err_set(err, KJ_EPROTO, "pod list: 'items' is not an array");
        goto out;
    }
    int total = cJSON_GetArraySize(items);
    if (total > 0 && !(arr = calloc((size_t)total, sizeof(*arr)))) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(it, items)
    {
        if ((rc = pod_from_json(it, &arr[cnt], err)) < 0) {
            kj_err_prefix(err, "pod list item %zu", cnt);
            goto out;
        }
        cnt++;
    }
    const char *c = jstr(cJSON_GetObjectItemCaseSensitive(j, "metadata"), "continue");
    if (rv && rv_size) {
        const char *v = jstr(cJSON_GetObjectItemCaseSensitive(j, "metadata"), "resourceVersion");
        snprintf(rv, rv_size, "%s", v ? v : "");
    }
    if (c && *c && !(*cont = strdup(c))) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    *pods = arr;
    *n = cnt;
    arr = NULL;
out:
    if (arr) {
        for (size_t i = 0; i < cnt; i++)
            kj_pod_clear(&arr[i]);
        free(arr);
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- leases ------------------------------------------------------------ */

static void copy_field(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

int kj_lease_parse(const char *json, size_t len, kj_lease *l, kj_err *err)
{
    int rc = 0;
    memset(l, 0, sizeof(*l));
    cJSON *j = json ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(j, "spec");
    const char *kind = jstr(j, "kind");
    if (!cJSON_IsObject(j) || (kind && strcmp(kind, "Lease")) || !jstr(md, "name") ||
        !jstr(md, "resourceVersion")) {
        rc = kj_err_set(err, KJ_EPROTO,
                        "lease: the answer is not a Lease with name and resourceVersion");
        goto out;
    }
    copy_field(l->namespace_, sizeof(l->namespace_), jstr(md, "namespace"));
    copy_field(l->name, sizeof(l->name), jstr(md, "name"));
    copy_field(l->uid, sizeof(l->uid), jstr(md, "uid"));
    copy_field(l->resource_version, sizeof(l->resource_version), jstr(md, "resourceVersion"));
    copy_field(l->holder, sizeof(l->holder), jstr(spec, "holderIdentity"));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, "leaseDurationSeconds");
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9)
        l->duration_s = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(spec, "leaseTransitions");
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9)
        l->transitions = (int)v->valuedouble;
    l->acquire_ms = jtime(spec, "acquireTime");
    l->renew_ms = jtime(spec, "renewTime");
out:
    cJSON_Delete(j);
    return rc;
}

char *kj_kube_lease_body(const kj_lease *l, const char *ns, int with_rv)
{
    char t[40];
    char *s = NULL;
    cJSON *j = cJSON_CreateObject(), *md, *spec;
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "apiVersion", "coordination.k8s.io/v1");
    cJSON_AddStringToObject(j, "kind", "Lease");
    md = cJSON_AddObjectToObject(j, "metadata");
    spec = cJSON_AddObjectToObject(j, "spec");
    if (!md || !spec)
        goto out;
    cJSON_AddStringToObject(md, "name", l->name);
    cJSON_AddStringToObject(md, "namespace", ns);
    if (with_rv)
        cJSON_AddStringToObject(md, "resourceVersion", l->resource_version);
    if (l->holder[0])
        cJSON_AddStringToObject(spec, "holderIdentity", l->holder);
    if (l->duration_s > 0)
        cJSON_AddNumberToObject(spec, "leaseDurationSeconds", l->duration_s);
    if (l->acquire_ms > 0) {
        format_micro(l->acquire_ms, t, sizeof(t));
        cJSON_AddStringToObject(spec, "acquireTime", t);
    }
    if (l->renew_ms > 0) {
        format_micro(l->renew_ms, t, sizeof(t));
        cJSON_AddStringToObject(spec, "renewTime", t);
    }
    cJSON_AddNumberToObject(spec, "leaseTransitions", l->transitions);
    s = cJSON_PrintUnformatted(j);
out:
    cJSON_Delete(j);
    return s;
}

/* ---- request bodies ---------------------------------------------------- */

char *kj_kube_delete_body(const char *uid, const char *rv, int64_t grace_s, const char *prop)
{
    char *s = NULL;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "kind", "DeleteOptions");
    cJSON_AddStringToObject(j, "apiVersion", "v1");
    if (uid || rv) {
        cJSON *pre = cJSON_AddObjectToObject(j, "preconditions");
        if (!pre)
            goto out;
        if (uid)
            cJSON_AddStringToObject(pre, "uid", uid);
        if (rv)
            cJSON_AddStringToObject(pre, "resourceVersion", rv);
    }
    if (grace_s >= 0)
        cJSON_AddNumberToObject(j, "gracePeriodSeconds", (double)grace_s);
    if (prop)
        cJSON_AddStringToObject(j, "propagationPolicy", prop);
    s = cJSON_PrintUnformatted(j);
out:
    cJSON_Delete(j);
    return s;
}

int kj_kube_patch_has_test(const char *patch)
{
    int found = 0;
    cJSON *j = patch ? cJSON_Parse(patch) : NULL, *op;
    if (cJSON_IsArray(j)) {
        cJSON_ArrayForEach(op, j)
        {
            const char *o = jstr(op, "op");
            if (o && !strcmp(o, "test"))
                found = 1;
        }
    }
    cJSON_Delete(j);
    return found;
}
