/*
 * The object store of kube-sim, and the apiserver rules that live with it.
 *
 * Layout: per kind, an array of entries sorted by "namespace/name" (the order
 * etcd lists keys in). Each entry holds a chain of immutable versions, newest
 * first; a version is visible at resourceVersion R when rv_from <= R < rv_to
 * (rv_to 0: still current). A deleted object keeps its last version with rv_to
 * set. That is enough MVCC for continue tokens: every page of a list is read at
 * the first page's resourceVersion, like etcd.
 *
 * Old versions are kept only while a continue token could need them: a token
 * is live for --continue-ttl seconds after it was last handed out; versions
 * superseded before the oldest live token's resourceVersion are freed at once
 * (with no live token, at the write that supersedes them). A token that is no
 * longer live gets 410 Expired, with a fresh "rv":-1 token like the apiserver.
 *
 * Each version keeps its JSON serialized (as a list item: no kind/apiVersion)
 * plus the labels and selectable fields unpacked, so a list of 100,000 pods with
 * a selector is a scan of small structs and a copy of ready-made strings.
 *
 * Locking: one rwlock for the store (lists and gets share it; writes take it
 * exclusively); the token table and the watch event ring have their own
 * mutexes, always taken after the store lock.
 */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ks_resource ks_resources[KS_NKINDS] = {
    {KS_POD, "pods", "", "Pod", "v1", "pods"},
    {KS_LEASE, "leases", "coordination.k8s.io", "Lease", "coordination.k8s.io/v1",
     "leases.coordination.k8s.io"},
};

enum {
    F_NAME,
    F_NAMESPACE,
    F_NODENAME,
    F_RESTARTPOLICY,
    F_SCHEDULERNAME,
    F_SERVICEACCOUNT,
    F_PHASE,
    F_PODIP,
    F_NOMINATED,
    F_COUNT
};

static const char *const pod_fields[] = {
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
    NULL,
};
static const char *const lease_fields[] = {"metadata.name", "metadata.namespace", NULL};

#define MAX_HISTORY 300000
#define EVENT_RING 8192

typedef struct ver {
    struct ver *older;
    uint64_t rv_from, rv_to;
    char *item;
    size_t item_len;
    ks_labels labels;
    char *fv[F_COUNT];
} ver;

typedef struct {
    char *key; /* namespace/name */
    size_t ns_len;
    ver *head;
} entry;

typedef struct {
    entry **v;
    size_t n, cap;
} kindex;

typedef struct {
    uint64_t rv;
    int64_t ms;
} live_token;

typedef struct {
    ks_kind kind;
    char *key;
    int64_t deadline_ms;
} pending;

typedef struct {
    uint64_t rv;
    ks_kind kind;
    char *ns;
    char *line;              /* {"type":...,"object":...}\n */
    size_t obj_off, obj_len; /* the object inside line */
    const char *type;
    ks_labels labels;
    char *fv[F_COUNT];
} event;

struct ks_store {
    pthread_rwlock_t lock;
    uint64_t rv;
    kindex idx[KS_NKINDS];
    size_t history;

    pthread_mutex_t tok_mu;
    live_token *toks;
    size_t ntoks, captoks;
    int ttl_s;
    uint64_t floor;
    uint64_t last_w; /* watermark of the last full compaction */

    pending *pend;
    size_t npend, cappend;

    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cond;
    event ring[EVENT_RING];
    uint64_t ev_head; /* number of events ever appended */
    int stopping;
};

/* ---- versions ---- */

static void labels_pack(const cJSON *labels, ks_labels *out)
{
    ks_buf b = {0};
    int n = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, labels)
    {
        if (!cJSON_IsString(l))
            continue;
        ks_buf_add(&b, l->string, strlen(l->string) + 1);
        ks_buf_add(&b, l->valuestring, strlen(l->valuestring) + 1);
        n++;
    }
    out->n = n;
    out->packed = n ? ks_buf_take(&b) : NULL;
    ks_buf_free(&b);
}

static const char *path_str(const cJSON *o, const char *a, const char *b)
{
    return ks_jstr(cJSON_GetObjectItemCaseSensitive(o, a), b);
}

/* a JSON number as a long, clamped (a cast of an out-of-range double is UB) */
static long jlong(const cJSON *v, long lo, long hi, long dflt)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != v->valuedouble)
        return dflt;
    if (v->valuedouble < (double)lo)
        return lo;
    if (v->valuedouble > (double)hi)
        return hi;
    return (long)v->valuedouble;
}

static void fields_extract(const cJSON *obj, char **fv)
{
    static const char *paths[F_COUNT][2] = {
        {"metadata", "name"},      {"metadata", "namespace"}, {"spec", "nodeName"},
        {"spec", "restartPolicy"}, {"spec", "schedulerName"}, {"spec", "serviceAccountName"},
        {"status", "phase"},       {"status", "podIP"},       {"status", "nominatedNodeName"},
    };
    for (int i = 0; i < F_COUNT; i++) {
        const char *v = path_str(obj, paths[i][0], paths[i][1]);
        fv[i] = v ? ks_xstrdup(v) : NULL;
    }
}

static void ver_free(ver *v)
{
    if (!v)
        return;
    free(v->item);
    free((char *)v->labels.packed);
    for (int i = 0; i < F_COUNT; i++)
        free(v->fv[i]);
    free(v);
}

static const char *const top_order[] = {"kind", "apiVersion", "metadata", "spec", "status", NULL};
static const char *const meta_order[] = {"name",
                                         "generateName",
                                         "namespace",
                                         "selfLink",
                                         "uid",
                                         "resourceVersion",
                                         "generation",
                                         "creationTimestamp",
                                         "deletionTimestamp",
                                         "deletionGracePeriodSeconds",
                                         "labels",
                                         "annotations",
                                         "ownerReferences",
                                         "finalizers",
                                         "managedFields",
                                         NULL};

static void set_rv(cJSON *obj, uint64_t rv)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, rv);
    ks_jset_str(ks_jobj(obj, "metadata"), "resourceVersion", b);
}

/* the apiserver's field order, and no empty lists or maps in metadata (Go
 * omits them: omitempty), so an emptied finalizer list reads as absent */
static void normalize(cJSON *obj)
{
    static const char *const omit_empty[] = {"finalizers", "labels", "annotations",
                                             "ownerReferences", NULL};
    cJSON *meta = ks_jobj(obj, "metadata");
    for (int i = 0; omit_empty[i]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, omit_empty[i]);
        if (v && ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child))
            cJSON_DeleteItemFromObjectCaseSensitive(meta, omit_empty[i]);
        else if (cJSON_IsNull(v))
            cJSON_DeleteItemFromObjectCaseSensitive(meta, omit_empty[i]);
    }
    ks_reorder(obj, top_order);
    ks_reorder(meta, meta_order);
}

/* obj at rv, normalized; v's labels and fields from it, v->item left alone */
static void ver_prepare(ver *v, cJSON *obj, uint64_t rv)
{
    set_rv(obj, rv);
    normalize(obj);
    v->rv_from = rv;
    labels_pack(cJSON_GetObjectItemCaseSensitive(ks_jobj(obj, "metadata"), "labels"), &v->labels);
    fields_extract(obj, v->fv);
}

/* obj: item form (no kind/apiVersion); not consumed */
static ver *ver_new(cJSON *obj, uint64_t rv)
{
    ver *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    ver_prepare(v, obj, rv);
    size_t n;
    const char *item = ks_print_scratch(obj, &n);
    v->item = ks_xstrndup(item, n);
    v->item_len = n;
    return v;
}

static int visible(const ver *v, uint64_t at)
{
    return v->rv_from <= at && (v->rv_to == 0 || v->rv_to > at);
}

static const ver *ver_at(const entry *e, uint64_t at)
{
    for (const ver *v = e->head; v; v = v->older)
        if (visible(v, at))
            return v;
    return NULL;
}

static const ver *current(const entry *e)
{
    return (e && e->head && e->head->rv_to == 0) ? e->head : NULL;
}

static cJSON *ver_obj(const ver *v)
{
    cJSON *o = cJSON_ParseWithLength(v->item, v->item_len);
    if (!o)
        abort();
    return o;
}

/* pre + {"kind":K,"apiVersion":V, + the item's members + post, in one
 * allocation of its exact size (no doubling: objects are a few KB, and a
 * request allocates several); *obj_off and *obj_len locate the object */
static char *wrap_item(ks_kind k, const char *pre, const char *item, size_t len, const char *post,
                       size_t *obj_off, size_t *obj_len)
{
    char head[160];
    size_t plen = strlen(pre), tlen = strlen(post);
    int h = snprintf(head, sizeof head, "{\"kind\":\"%s\",\"apiVersion\":\"%s\",",
                     ks_resources[k].kind_name, ks_resources[k].api_version);
    size_t hlen = (size_t)h;
    char *out = ks_xmalloc(plen + hlen + len - 1 + tlen + 1);
    char *p = out;
    memcpy(p, pre, plen);
    p += plen;
    memcpy(p, head, hlen);
    p += hlen;
    memcpy(p, item + 1, len - 1);
    p += len - 1;
    memcpy(p, post, tlen + 1);
    if (obj_off)
        *obj_off = plen;
    if (obj_len)
        *obj_len = hlen + len - 1;
    return out;
}

/* the object as a single resource: kind and apiVersion first */
static char *full_json(ks_kind k, const char *item, size_t len)
{
    return wrap_item(k, "", item, len, "", NULL, NULL);
}

static void prepend_str(cJSON *o, const char *key, const char *val)
{
    cJSON *it = cJSON_CreateString(val);
    if (!it)
        abort();
    cJSON_AddItemToObject(o, key, it);
    cJSON_DetachItemViaPointer(o, it);
    cJSON_InsertItemInArray(o, 0, it);
}

/* the tree full_json() would parse to, without printing and parsing it */
static cJSON *full_obj(ks_kind k, const ver *v)
{
    cJSON *o = ver_obj(v);
    prepend_str(o, "apiVersion", ks_resources[k].api_version);
    prepend_str(o, "kind", ks_resources[k].kind_name);
    return o;
}

/* ---- index ---- */

static size_t lower_bound(const kindex *ix, const char *key)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(ix->v[mid]->key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static entry *find(ks_store *s, ks_kind k, const char *ns, const char *name)
{
    char key[1024];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    kindex *ix = &s->idx[k];
    size_t i = lower_bound(ix, key);
    return (i < ix->n && !strcmp(ix->v[i]->key, key)) ? ix->v[i] : NULL;
}

static entry *find_or_add(ks_store *s, ks_kind k, const char *ns, const char *name)
{
    char key[1024];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    kindex *ix = &s->idx[k];
    size_t i = lower_bound(ix, key);
    if (i < ix->n && !strcmp(ix->v[i]->key, key))
        return ix->v[i];
    if (ix->n == ix->cap) {
        ix->cap = ix->cap ? ix->cap * 2 : 1024;
        ix->v = ks_xrealloc(ix->v, sizeof(entry *) * ix->cap);
    }
    memmove(ix->v + i + 1, ix->v + i, sizeof(entry *) * (ix->n - i));
    entry *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->key = ks_xstrdup(key);
    e->ns_len = strlen(ns);
    ix->v[i] = e;
    ix->n++;
    return e;
}

static void entry_free(entry *e)
{
    ver *v = e->head;
    while (v) {
        ver *o = v->older;
        ver_free(v);
        v = o;
    }
    free(e->key);
    free(e);
}

/* ---- continue tokens and compaction ---- */

/* lowest resourceVersion a live token may still read at; caller holds tok_mu */
static uint64_t watermark_locked(ks_store *s, int64_t now)
{
    uint64_t w = UINT64_MAX;
    size_t j = 0;
    for (size_t i = 0; i < s->ntoks; i++) {
        if (now - s->toks[i].ms > (int64_t)s->ttl_s * 1000)
            continue;
        s->toks[j++] = s->toks[i];
        if (s->toks[i].rv < w)
            w = s->toks[i].rv;
    }
    s->ntoks = j;
    return w;
}

/* frees what no reader can see any more; returns 1 if the entry itself went */
static int prune_entry(ks_store *s, entry *e, uint64_t w)
{
    ver **pp = &e->head;
    while (*pp) {
        ver *v = *pp;
        if (v->rv_to != 0 && v->rv_to <= w) {
            *pp = v->older;
            v->older = NULL;
            s->history -= (s->history > 0);
            ver_free(v);
            continue;
        }
        pp = &v->older;
    }
    return e->head == NULL;
}

static void remove_at(kindex *ix, size_t i)
{
    entry_free(ix->v[i]);
    memmove(ix->v + i, ix->v + i + 1, sizeof(entry *) * (ix->n - i - 1));
    ix->n--;
}

static void compact_all(ks_store *s, uint64_t w)
{
    for (int k = 0; k < KS_NKINDS; k++) {
        kindex *ix = &s->idx[k];
        size_t j = 0;
        for (size_t i = 0; i < ix->n; i++) {
            if (prune_entry(s, ix->v[i], w))
                entry_free(ix->v[i]);
            else
                ix->v[j++] = ix->v[i];
        }
        ix->n = j;
    }
    if (w != UINT64_MAX && w > s->floor)
        s->floor = w;
    if (w == UINT64_MAX)
        s->floor = s->rv;
}

static uint64_t watermark(ks_store *s)
{
    pthread_mutex_lock(&s->tok_mu);
    uint64_t w = watermark_locked(s, ks_now_ms());
    if (s->history > MAX_HISTORY) {
        /* too much history kept for old tokens: compact, as etcd would */
        s->ntoks = 0;
        w = UINT64_MAX;
    }
    pthread_mutex_unlock(&s->tok_mu);
    return w;
}

/* after a write to e: free versions nobody needs; e may be freed */
static void after_write(ks_store *s, ks_kind k, entry *e)
{
    uint64_t w = watermark(s);
    if (w == UINT64_MAX && s->history > MAX_HISTORY)
        compact_all(s, w);
    if (prune_entry(s, e, w)) {
        kindex *ix = &s->idx[k];
        size_t i = lower_bound(ix, e->key);
        remove_at(ix, i);
    }
    if (w == UINT64_MAX)
        s->floor = s->rv;
    else if (w > s->floor)
        s->floor = w;
}

static void register_token(ks_store *s, uint64_t rv)
{
    pthread_mutex_lock(&s->tok_mu);
    int64_t now = ks_now_ms();
    size_t i;
    for (i = 0; i < s->ntoks; i++)
        if (s->toks[i].rv == rv)
            break;
    if (i == s->ntoks) {
        if (s->ntoks == s->captoks) {
            s->captoks = s->captoks ? s->captoks * 2 : 16;
            s->toks = ks_xrealloc(s->toks, sizeof(live_token) * s->captoks);
        }
        s->toks[s->ntoks++].rv = rv;
    }
    s->toks[i].ms = now;
    pthread_mutex_unlock(&s->tok_mu);
}

static int token_live(ks_store *s, uint64_t rv)
{
    int live = 0;
    pthread_mutex_lock(&s->tok_mu);
    int64_t now = ks_now_ms();
    for (size_t i = 0; i < s->ntoks; i++)
        if (s->toks[i].rv == rv && now - s->toks[i].ms <= (int64_t)s->ttl_s * 1000)
            live = 1;
    pthread_mutex_unlock(&s->tok_mu);
    return live && rv >= s->floor;
}

static char *encode_token(int64_t rv, const char *start)
{
    ks_buf b = {0};
    ks_buf_addf(&b, "{\"v\":\"meta.k8s.io/v1\",\"rv\":%" PRId64 ",\"start\":\"", rv);
    for (const char *p = start; *p; p++) {
        if (*p == '"' || *p == '\\')
            ks_buf_add(&b, "\\", 1);
        ks_buf_add(&b, p, 1);
    }
    ks_buf_adds(&b, "\\u0000\"}");
    char *t = ks_b64url_encode(b.buf, b.len);
    ks_buf_free(&b);
    return t;
}

/* 0 ok; else *err is the message after "invalid continue token: " */
static int decode_token(const char *tok, int64_t *rv, char **start, char **err)
{
    size_t n = 0, bad = 0;
    char msg[512];
    char *raw = ks_b64url_decode(tok, &n, &bad);
    cJSON *j = NULL;
    int rc = -1;
    if (!raw) {
        snprintf(msg, sizeof msg,
                 "continue key is not valid: illegal base64 data at input byte %zu", bad);
        goto fail;
    }
    char *gerr = ks_go_json_error(raw, n);
    if (gerr) {
        snprintf(msg, sizeof msg, "continue key is not valid: %s", gerr);
        free(gerr);
        goto fail;
    }
    j = cJSON_ParseWithLength(raw, n);
    const char *v = ks_jstr(j, "v");
    const cJSON *jrv = cJSON_GetObjectItemCaseSensitive(j, "rv");
    const char *st = ks_jstr(j, "start");
    if (!cJSON_IsObject(j) || !v || strcmp(v, "meta.k8s.io/v1")) {
        snprintf(msg, sizeof msg,
                 "continue key is not valid: server does not recognize this encoded version \"%s\"",
                 v ? v : "");
        goto fail;
    }
    if (!cJSON_IsNumber(jrv) || jrv->valuedouble == 0 || jrv->valuedouble > 9e15 ||
        jrv->valuedouble < -1) {
        snprintf(msg, sizeof msg,
                 "continue key is not valid: incorrect encoded start "
                 "resourceVersion (version meta.k8s.io/v1)");
        goto fail;
    }
    if (!st || !*st) {
        snprintf(msg, sizeof msg,
                 "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)");
        goto fail;
    }
    *rv = (int64_t)jrv->valuedouble;
    *start = ks_xstrdup(st);
    rc = 0;
    goto out;
fail:
    *err = ks_xstrdup(msg);
out:
    cJSON_Delete(j);
    free(raw);
    return rc;
}

/* ---- watch events ---- */

/* appends an event to the ring; v's labels and fields are copied, or taken
 * over when steal is set (v is a throwaway then) */
static void emit(ks_store *s, ks_kind k, const entry *e, const char *type, const char *item,
                 size_t len, ver *v, int steal)
{
    char pre[64];
    size_t obj_off, obj_len;
    snprintf(pre, sizeof pre, "{\"type\":\"%s\",\"object\":", type);
    char *line = wrap_item(k, pre, item, len, "}\n", &obj_off, &obj_len);
    ks_labels labels = v->labels;
    char *fv[F_COUNT];
    if (steal) {
        memcpy(fv, v->fv, sizeof fv);
        memset(v->fv, 0, sizeof v->fv);
        v->labels.packed = NULL;
        v->labels.n = 0;
    } else {
        if (labels.n) {
            const char *p = labels.packed;
            for (int i = 0; i < labels.n * 2; i++)
                p += strlen(p) + 1;
            labels.packed = ks_xstrndup(labels.packed, (size_t)(p - labels.packed));
        }
        for (int i = 0; i < F_COUNT; i++)
            fv[i] = v->fv[i] ? ks_xstrdup(v->fv[i]) : NULL;
    }
    if (!labels.n) {
        free((char *)labels.packed);
        labels.packed = NULL;
    }
    char *ns = ks_xstrndup(e->key, e->ns_len);
    pthread_mutex_lock(&s->ev_mu);
    event *ev = &s->ring[s->ev_head % EVENT_RING];
    char *old_ns = ev->ns, *old_line = ev->line, *old_labels = (char *)ev->labels.packed;
    char *old_fv[F_COUNT];
    memcpy(old_fv, ev->fv, sizeof old_fv);
    ev->rv = s->rv;
    ev->kind = k;
    ev->ns = ns;
    ev->line = line;
    ev->obj_off = obj_off;
    ev->obj_len = obj_len;
    ev->type = type;
    ev->labels = labels;
    memcpy(ev->fv, fv, sizeof fv);
    s->ev_head++;
    pthread_cond_broadcast(&s->ev_cond);
    pthread_mutex_unlock(&s->ev_mu);
    free(old_ns);
    free(old_line);
    free(old_labels);
    for (int i = 0; i < F_COUNT; i++)
        free(old_fv[i]);
}

/* ---- writes (store lock held exclusively) ---- */

/* stores obj (item form) as the new current version; returns it */
static const ver *put(ks_store *s, ks_kind k, const char *ns, const char *name, cJSON *obj,
                      int *created)
{
    entry *e = find_or_add(s, k, ns, name);
    int was_live = current(e) != NULL;
    ver *v = ver_new(obj, ++s->rv);
    if (e->head && e->head->rv_to == 0) {
        e->head->rv_to = v->rv_from;
        s->history++;
    }
    v->older = e->head;
    e->head = v;
    if (created)
        *created = !was_live;
    emit(s, k, e, was_live ? "MODIFIED" : "ADDED", v->item, v->item_len, v, 0);
    after_write(s, k, e);
    return v;
}

/* removes e's current version; returns the final object (full JSON) */
static char *remove_obj(ks_store *s, ks_kind k, entry *e, cJSON *final, uint64_t body_rv)
{
    /* the last version only feeds the DELETED event: printed in the scratch
     * buffer, its labels and fields handed to the event */
    ver last = {0};
    ver_prepare(&last, final, ++s->rv);
    size_t len;
    const char *item = ks_print_scratch(final, &len);
    emit(s, k, e, "DELETED", item, len, &last, 1);
    char *body;
    if (body_rv) {
        /* an update that empties the finalizers deletes instead of writing:
         * the answer carries the last stored resourceVersion */
        set_rv(final, body_rv);
        item = ks_print_scratch(final, &len);
    }
    body = full_json(k, item, len);
    e->head->rv_to = s->rv;
    s->history++;
    after_write(s, k, e);
    return body;
}

/* ---- results ---- */

static void res_status(ks_result *out, int code, const char *reason, const char *msg,
                       const ks_details *d)
{
    out->code = code;
    out->body = ks_status_json(code, reason, msg, d);
}

static void res_not_found(ks_result *out, ks_kind k, const char *name)
{
    char msg[600];
    snprintf(msg, sizeof msg, "%s \"%s\" not found", ks_resources[k].qualified, name);
    ks_details d = {name, ks_resources[k].group, ks_resources[k].plural, NULL};
    res_status(out, 404, "NotFound", msg, &d);
}

static void res_conflict(ks_result *out, ks_kind k, const char *name)
{
    char msg[800];
    snprintf(msg, sizeof msg,
             "Operation cannot be fulfilled on %s \"%s\": the object has been modified; please "
             "apply your changes to the latest version and try again",
             ks_resources[k].qualified, name);
    ks_details d = {name, ks_resources[k].group, ks_resources[k].plural, NULL};
    res_status(out, 409, "Conflict", msg, &d);
}

static void res_bad(ks_result *out, const char *msg)
{
    res_status(out, 400, "BadRequest", msg, NULL);
}

/* 422 Invalid with one cause per field (the apiserver's field.ErrorList) */
static void res_invalid(ks_result *out, ks_kind k, const char *name, const char *field,
                        const char *reason, const char *detail, int repeat)
{
    ks_buf msg = {0};
    ks_buf_addf(&msg, "%s \"%s\" is invalid: %s: %s",
                k == KS_POD ? "Pod" : "Lease.coordination.k8s.io", name, field, detail);
    cJSON *causes = cJSON_CreateArray();
    for (int i = 0; i < repeat; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "reason", reason);
        cJSON_AddStringToObject(c, "message", detail);
        cJSON_AddStringToObject(c, "field", field);
        cJSON_AddItemToArray(causes, c);
    }
    ks_details d = {name, ks_resources[k].group, ks_resources[k].kind_name, causes};
    if (k == KS_LEASE)
        d.kind = "Lease";
    res_status(out, 422, "Invalid", msg.buf, &d);
    ks_buf_free(&msg);
    cJSON_Delete(causes);
}

static void res_obj(ks_result *out, int code, ks_kind k, const ver *v)
{
    out->code = code;
    out->body = full_json(k, v->item, v->item_len);
}

/* ---- public: lifecycle ---- */

ks_store *ks_store_new(void)
{
    ks_store *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->lock, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&s->tok_mu, NULL);
    pthread_mutex_init(&s->ev_mu, NULL);
    pthread_cond_init(&s->ev_cond, NULL);
    s->ttl_s = 300;
    s->rv = 1;
    return s;
}

static void clear(ks_store *s)
{
    for (int k = 0; k < KS_NKINDS; k++) {
        for (size_t i = 0; i < s->idx[k].n; i++)
            entry_free(s->idx[k].v[i]);
        s->idx[k].n = 0;
    }
    for (size_t i = 0; i < s->npend; i++)
        free(s->pend[i].key);
    s->npend = 0;
    s->history = 0;
    pthread_mutex_lock(&s->tok_mu);
    s->ntoks = 0;
    pthread_mutex_unlock(&s->tok_mu);
    s->floor = s->rv;
}

void ks_store_reset(ks_store *s)
{
    pthread_rwlock_wrlock(&s->lock);
    clear(s);
    s->rv++;
    s->floor = s->rv;
    pthread_rwlock_unlock(&s->lock);
}

void ks_store_free(ks_store *s)
{
    if (!s)
        return;
    clear(s);
    for (int k = 0; k < KS_NKINDS; k++)
        free(s->idx[k].v);
    for (int i = 0; i < EVENT_RING; i++) {
        free(s->ring[i].ns);
        free(s->ring[i].line);
        free((char *)s->ring[i].labels.packed);
        for (int f = 0; f < F_COUNT; f++)
            free(s->ring[i].fv[f]);
    }
    free(s->toks);
    free(s->pend);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->tok_mu);
    pthread_mutex_destroy(&s->ev_mu);
    pthread_cond_destroy(&s->ev_cond);
    free(s);
}

void ks_store_set_continue_ttl(ks_store *s, int seconds)
{
    pthread_mutex_lock(&s->tok_mu);
    s->ttl_s = seconds < 0 ? 0 : seconds;
    pthread_mutex_unlock(&s->tok_mu);
}

int ks_store_continue_ttl(ks_store *s)
{
    pthread_mutex_lock(&s->tok_mu);
    int t = s->ttl_s;
    pthread_mutex_unlock(&s->tok_mu);
    return t;
}

uint64_t ks_store_rv(ks_store *s)
{
    pthread_rwlock_rdlock(&s->lock);
    uint64_t rv = s->rv;
    pthread_rwlock_unlock(&s->lock);
    return rv;
}

size_t ks_store_count(ks_store *s, ks_kind k)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->idx[k].n; i++)
        n += current(s->idx[k].v[i]) != NULL;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

/* ---- object preparation ---- */

static int valid_dns_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '.')
            return 0;
        if ((i == 0 || i == n - 1 || s[i - 1] == '.' || s[i + 1] == '.') && !alnum)
            return 0;
    }
    return 1;
}

static void pod_defaults(cJSON *obj)
{
    cJSON *spec = ks_jobj(obj, "spec");
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "containers"))
    {
        if (!cJSON_IsObject(c))
            continue;
        if (!cJSON_GetObjectItemCaseSensitive(c, "resources"))
            cJSON_AddObjectToObject(c, "resources");
        if (!ks_jstr(c, "terminationMessagePath"))
            cJSON_AddStringToObject(c, "terminationMessagePath", "/dev/termination-log");
        if (!ks_jstr(c, "terminationMessagePolicy"))
            cJSON_AddStringToObject(c, "terminationMessagePolicy", "File");
        if (!ks_jstr(c, "imagePullPolicy")) {
            const char *img = ks_jstr(c, "image");
            const char *colon = img ? strrchr(img, ':') : NULL;
            int latest = !colon || strchr(colon, '/') || !strcmp(colon, ":latest");
            cJSON_AddStringToObject(c, "imagePullPolicy", latest ? "Always" : "IfNotPresent");
        }
    }
    if (!ks_jstr(spec, "restartPolicy"))
        cJSON_AddStringToObject(spec, "restartPolicy", "Always");
    if (!cJSON_GetObjectItemCaseSensitive(spec, "terminationGracePeriodSeconds"))
        cJSON_AddNumberToObject(spec, "terminationGracePeriodSeconds", 30);
    if (!ks_jstr(spec, "dnsPolicy"))
        cJSON_AddStringToObject(spec, "dnsPolicy", "ClusterFirst");
    if (!cJSON_GetObjectItemCaseSensitive(spec, "securityContext"))
        cJSON_AddObjectToObject(spec, "securityContext");
    if (!ks_jstr(spec, "schedulerName"))
        cJSON_AddStringToObject(spec, "schedulerName", "default-scheduler");
    if (!cJSON_GetObjectItemCaseSensitive(spec, "priority"))
        cJSON_AddNumberToObject(spec, "priority", 0);
    if (!cJSON_GetObjectItemCaseSensitive(spec, "enableServiceLinks"))
        cJSON_AddBoolToObject(spec, "enableServiceLinks", 1);
    if (!ks_jstr(spec, "preemptionPolicy"))
        cJSON_AddStringToObject(spec, "preemptionPolicy", "PreemptLowerPriority");
}

static void strip_kind(cJSON *obj)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "kind");
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "apiVersion");
}

static cJSON *parse_body(const ks_request *r, ks_result *out, const char *prefix)
{
    char *gerr = ks_go_json_error(r->body ? r->body : "", r->body_len);
    if (gerr) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s%s", prefix, gerr);
        res_bad(out, msg);
        free(gerr);
        return NULL;
    }
    cJSON *o = cJSON_ParseWithLength(r->body, r->body_len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        char msg[600];
        snprintf(msg, sizeof msg, "%sjson: cannot unmarshal into Go value of type struct", prefix);
        res_bad(out, msg);
        return NULL;
    }
    return o;
}

/* fills server-owned metadata of a new object; 0 or an error already in out */
static int prepare_new(ks_store *s, ks_kind k, const char *ns, cJSON *obj, int reset_status,
                       ks_result *out)
{
    (void)s;
    strip_kind(obj);
    cJSON *meta = ks_jobj(obj, "metadata");
    const char *ons = ks_jstr(meta, "namespace");
    if (ons && *ons && strcmp(ons, ns)) {
        res_bad(out, "the namespace of the provided object does not match the namespace sent on "
                     "the request");
        return -1;
    }
    const char *orv = ks_jstr(meta, "resourceVersion");
    if (reset_status && orv && *orv) {
        res_bad(out, "resourceVersion should not be set on objects to be created");
        return -1;
    }
    ks_jset_str(meta, "namespace", ns);
    const char *name = ks_jstr(meta, "name");
    const char *gen = ks_jstr(meta, "generateName");
    if ((!name || !*name) && gen && *gen) {
        static const char alpha[] = "bcdfghjklmnpqrstvwxz2456789";
        char nm[300];
        int n = snprintf(nm, sizeof nm, "%s", gen);
        for (int i = 0; i < 5 && n + i < (int)sizeof nm - 1; i++)
            nm[n + i] = alpha[ks_rand() % (sizeof alpha - 1)], nm[n + i + 1] = '\0';
        ks_jset_str(meta, "name", nm);
        name = ks_jstr(meta, "name");
    }
    if (!name || !*name) {
        res_invalid(out, k, "", "metadata.name", "FieldValueRequired",
                    "Required value: name or generateName is required", 1);
        return -1;
    }
    if (!valid_dns_subdomain(name)) {
        char detail[700];
        snprintf(detail, sizeof detail,
                 "Invalid value: \"%s\": a lowercase RFC 1123 subdomain must consist of lower "
                 "case alphanumeric characters, '-' or '.', and must start and end with an "
                 "alphanumeric character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                 name);
        res_invalid(out, k, name, "metadata.name", "FieldValueInvalid", detail, 1);
        return -1;
    }
    if (k == KS_POD) {
        cJSON *ctrs = cJSON_GetObjectItemCaseSensitive(ks_jobj(obj, "spec"), "containers");
        if (!cJSON_IsArray(ctrs) || cJSON_GetArraySize(ctrs) == 0) {
            res_invalid(out, k, name, "spec.containers", "FieldValueRequired", "Required value", 1);
            return -1;
        }
    }
    char uid[37], ts[40];
    if (!ks_jstr(meta, "uid") || reset_status) {
        ks_uuid(uid);
        ks_jset_str(meta, "uid", uid);
    }
    if (!ks_jstr(meta, "creationTimestamp") || reset_status) {
        ks_fmt_time(ks_now_ms(), ts, sizeof ts);
        ks_jset_str(meta, "creationTimestamp", ts);
    }
    if (reset_status) {
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "deletionTimestamp");
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "deletionGracePeriodSeconds");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "selfLink");
    if (k == KS_POD) {
        pod_defaults(obj);
        if (reset_status || !cJSON_GetObjectItemCaseSensitive(obj, "status")) {
            cJSON *st = cJSON_CreateObject();
            cJSON_AddStringToObject(st, "phase", "Pending");
            cJSON_AddStringToObject(st, "qosClass", "BestEffort");
            ks_jset(obj, "status", st);
        }
    }
    return 0;
}

static void add_pending(ks_store *s, ks_kind k, const char *key, int64_t deadline)
{
    if (s->npend == s->cappend) {
        s->cappend = s->cappend ? s->cappend * 2 : 64;
        s->pend = ks_xrealloc(s->pend, sizeof(pending) * s->cappend);
    }
    s->pend[s->npend].kind = k;
    s->pend[s->npend].key = ks_xstrdup(key);
    s->pend[s->npend].deadline_ms = deadline;
    s->npend++;
}

/* ---- server-side printing (meta.k8s.io/v1 Table, what kubectl get asks for) ---- */

static const char pod_columns[] =
    "[{\"name\":\"Name\",\"type\":\"string\",\"format\":\"name\",\"description\":\"Name must be "
    "unique within a namespace.\",\"priority\":0},"
    "{\"name\":\"Ready\",\"type\":\"string\",\"format\":\"\",\"description\":\"The aggregate "
    "readiness state of this pod for accepting traffic.\",\"priority\":0},"
    "{\"name\":\"Status\",\"type\":\"string\",\"format\":\"\",\"description\":\"The aggregate "
    "status of the containers in this pod.\",\"priority\":0},"
    "{\"name\":\"Restarts\",\"type\":\"integer\",\"format\":\"\",\"description\":\"The number of "
    "times the containers in this pod have been restarted.\",\"priority\":0},"
    "{\"name\":\"Age\",\"type\":\"string\",\"format\":\"\",\"description\":\"CreationTimestamp is "
    "a timestamp representing the server time when this object was created.\",\"priority\":0},"
    "{\"name\":\"IP\",\"type\":\"string\",\"format\":\"\",\"description\":\"IP address allocated "
    "to the pod.\",\"priority\":1},"
    "{\"name\":\"Node\",\"type\":\"string\",\"format\":\"\",\"description\":\"Name of the node "
    "the pod is scheduled on.\",\"priority\":1}]";
static const char lease_columns[] =
    "[{\"name\":\"Name\",\"type\":\"string\",\"format\":\"name\",\"description\":\"Name must be "
    "unique within a namespace.\",\"priority\":0},"
    "{\"name\":\"Holder\",\"type\":\"string\",\"format\":\"\",\"description\":\"The holder of "
    "the lease.\",\"priority\":0},"
    "{\"name\":\"Age\",\"type\":\"string\",\"format\":\"\",\"description\":\"CreationTimestamp is "
    "a timestamp representing the server time when this object was created.\",\"priority\":0}]";

/* k8s.io/apimachinery/pkg/util/duration.HumanDuration */
static void human_age(int64_t ms, char *out, size_t n)
{
    long long s = ms / 1000;
    if (s < 0)
        s = 0;
    long long m = s / 60, h = s / 3600, d = h / 24, y = d / 365;
    if (s < 120)
        snprintf(out, n, "%llds", s);
    else if (m < 10)
        snprintf(out, n, "%lldm%llds", m, s % 60);
    else if (m < 180)
        snprintf(out, n, "%lldm", m);
    else if (h < 8)
        snprintf(out, n, "%lldh%lldm", h, m % 60);
    else if (h < 48)
        snprintf(out, n, "%lldh", h);
    else if (h < 24 * 8)
        snprintf(out, n, "%lldd%lldh", d, h % 24);
    else if (d < 365 * 2)
        snprintf(out, n, "%lldd", d);
    else if (d < 365 * 8)
        snprintf(out, n, "%lldy%lldd", y, d % 365);
    else
        snprintf(out, n, "%lldy", y);
}

static void table_row(ks_buf *b, ks_kind k, const char *json, size_t len, int64_t now)
{
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o)
        abort();
    cJSON *meta = ks_jobj(o, "metadata");
    cJSON *cells = cJSON_CreateArray();
    char age[32];
    human_age(now - ks_parse_time(ks_jstr(meta, "creationTimestamp")), age, sizeof age);
    cJSON_AddItemToArray(cells, cJSON_CreateString(ks_jstr(meta, "name")));
    if (k == KS_POD) {
        cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
        int total = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(o, "spec"), "containers"));
        int ready = 0, restarts = 0;
        cJSON *cs;
        cJSON_ArrayForEach(cs, cJSON_GetObjectItemCaseSensitive(st, "containerStatuses"))
        {
            ready += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cs, "ready"));
            cJSON *rc = cJSON_GetObjectItemCaseSensitive(cs, "restartCount");
            restarts += (int)jlong(rc, 0, 1000000, 0);
        }
        char rd[32];
        snprintf(rd, sizeof rd, "%d/%d", ready, total);
        const char *status = ks_jstr(st, "reason") ? ks_jstr(st, "reason") : ks_jstr(st, "phase");
        if (ks_jstr(meta, "deletionTimestamp"))
            status = "Terminating";
        cJSON_AddItemToArray(cells, cJSON_CreateString(rd));
        cJSON_AddItemToArray(cells, cJSON_CreateString(status ? status : ""));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(restarts));
        cJSON_AddItemToArray(cells, cJSON_CreateString(age));
        const char *ip = ks_jstr(st, "podIP");
        const char *node = path_str(o, "spec", "nodeName");
        cJSON_AddItemToArray(cells, cJSON_CreateString(ip ? ip : "<none>"));
        cJSON_AddItemToArray(cells, cJSON_CreateString(node ? node : "<none>"));
    } else {
        const char *holder = path_str(o, "spec", "holderIdentity");
        cJSON_AddItemToArray(cells, cJSON_CreateString(holder ? holder : ""));
        cJSON_AddItemToArray(cells, cJSON_CreateString(age));
    }
    cJSON *row = cJSON_CreateObject();
    cJSON_AddItemToObject(row, "cells", cells);
    cJSON *obj = cJSON_AddObjectToObject(row, "object");
    cJSON_AddStringToObject(obj, "kind", "PartialObjectMetadata");
    cJSON_AddStringToObject(obj, "apiVersion", "meta.k8s.io/v1");
    cJSON_AddItemToObject(obj, "metadata", cJSON_DetachItemFromObjectCaseSensitive(o, "metadata"));
    char *s = cJSON_PrintUnformatted(row);
    ks_buf_adds(b, s);
    free(s);
    cJSON_Delete(row);
    cJSON_Delete(o);
}

static void table_add(ks_buf *b, ks_kind k, const char *json, size_t len, uint64_t rv)
{
    ks_buf_addf(b,
                "{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{"
                "\"resourceVersion\":\"%" PRIu64 "\"},\"columnDefinitions\":%s,\"rows\":[",
                rv, k == KS_POD ? pod_columns : lease_columns);
    table_row(b, k, json, len, ks_now_ms());
    ks_buf_adds(b, "]}");
}

static char *table_one(ks_kind k, const ver *v)
{
    ks_buf b = {0};
    table_add(&b, k, v->item, v->item_len, v->rv_from);
    return ks_buf_take(&b);
}

/* ---- public: reads ---- */

void ks_store_get(ks_store *s, const ks_request *r, ks_result *out)
{
    pthread_rwlock_rdlock(&s->lock);
    const ver *v = current(find(s, r->kind, r->ns, r->name));
    if (v && r->table && !r->status_sub) {
        out->code = 200;
        out->body = table_one(r->kind, v);
    } else if (v)
        res_obj(out, 200, r->kind, v);
    else
        res_not_found(out, r->kind, r->name);
    pthread_rwlock_unlock(&s->lock);
}

typedef struct {
    const entry *e;
    const ver *v;
} fctx;

static const char *field_get(const void *p, const char *field)
{
    const fctx *c = p;
    for (int i = 0; pod_fields[i]; i++) {
        if (strcmp(pod_fields[i], field))
            continue;
        if (i == F_NAME)
            return c->e->key + c->e->ns_len + 1;
        if (i == F_NAMESPACE)
            return c->v->fv[F_NAMESPACE];
        return c->v->fv[i];
    }
    return NULL;
}

static int parse_limit(const char *s, long *out)
{
    if (!s || !*s) {
        *out = 0;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < 0)
        return -1;
    *out = v;
    return 0;
}

void ks_store_list(ks_store *s, const ks_request *r, ks_result *out)
{
    ks_labelsel *ls = NULL;
    ks_fieldsel *fs = NULL;
    char *err = NULL, *start = NULL, *tok = NULL;
    int64_t trv = 0;
    long limit = 0;
    int locked = 0;
    ks_buf b = {0};

    if (ks_labelsel_parse(r->label_selector, &ls, &err) ||
        ks_fieldsel_parse(r->field_selector, r->kind == KS_POD ? pod_fields : lease_fields, &fs,
                          &err)) {
        res_bad(out, err);
        goto out;
    }
    if (parse_limit(r->limit, &limit)) {
        char msg[300];
        snprintf(msg, sizeof msg, "strconv.ParseInt: parsing \"%s\": invalid syntax", r->limit);
        res_bad(out, msg);
        goto out;
    }
    if (r->cont && *r->cont) {
        if (decode_token(r->cont, &trv, &start, &err)) {
            char msg[700];
            snprintf(msg, sizeof msg, "invalid continue token: %s", err);
            res_bad(out, msg);
            goto out;
        }
    }
    pthread_rwlock_rdlock(&s->lock);
    locked = 1;
    uint64_t at = s->rv;
    if (start && trv != -1) {
        if (trv < 0 || (uint64_t)trv > s->rv || !token_live(s, (uint64_t)trv)) {
            char *fresh = encode_token(-1, start);
            cJSON *st = cJSON_CreateObject();
            cJSON_AddStringToObject(st, "kind", "Status");
            cJSON_AddStringToObject(st, "apiVersion", "v1");
            cJSON_AddStringToObject(cJSON_AddObjectToObject(st, "metadata"), "continue", fresh);
            cJSON_AddStringToObject(st, "status", "Failure");
            cJSON_AddStringToObject(
                st, "message",
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter, or use the continue "
                "token in this response to retrieve the remainder of the results. Continuing with "
                "the provided token results in an inconsistent list - objects that were created, "
                "modified, or deleted between the time the first chunk was returned and now may "
                "show up in the list.");
            cJSON_AddStringToObject(st, "reason", "Expired");
            cJSON_AddNumberToObject(st, "code", 410);
            out->code = 410;
            out->body = cJSON_PrintUnformatted(st);
            cJSON_Delete(st);
            free(fresh);
            goto out;
        }
        at = (uint64_t)trv;
    }
    const kindex *ix = &s->idx[r->kind];
    char prefix[600], from[1400];
    snprintf(prefix, sizeof prefix, "%s%s", r->ns ? r->ns : "", r->ns ? "/" : "");
    snprintf(from, sizeof from, "%s%s", prefix, start ? start : "");
    size_t i = lower_bound(ix, from);
    if (start && i < ix->n && !strcmp(ix->v[i]->key, from))
        i++;
    size_t plen = strlen(prefix);
    if (r->table)
        ks_buf_addf(&b,
                    "{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{"
                    "\"resourceVersion\":\"%" PRIu64 "\"",
                    at);
    else
        ks_buf_addf(&b,
                    "{\"kind\":\"%sList\",\"apiVersion\":\"%s\",\"metadata\":{"
                    "\"resourceVersion\":\"%" PRIu64 "\"",
                    ks_resources[r->kind].kind_name, ks_resources[r->kind].api_version, at);
    int64_t now = ks_now_ms();
    /* the page's versions first, then the body in one allocation */
    const ver **page = NULL;
    size_t page_cap = 0, items_len = 0;
    long count = 0;
    const entry *last = NULL;
    int more = 0;
    long remaining = 0;
    int no_sel = (!r->label_selector || !*r->label_selector) && ks_fieldsel_empty(fs);
    for (; i < ix->n; i++) {
        const entry *e = ix->v[i];
        if (plen && strncmp(e->key, prefix, plen))
            break;
        const ver *v = ver_at(e, at);
        if (!v)
            continue;
        fctx fc = {e, v};
        if (!ks_labelsel_match(ls, &v->labels) || !ks_fieldsel_match(fs, field_get, &fc))
            continue;
        if (limit > 0 && count >= limit) {
            more = 1;
            if (no_sel) {
                /* entries left in the range; exact unless old versions or
                 * tombstones are kept for live continue tokens */
                size_t end = ix->n;
                if (plen) {
                    char hi[600];
                    snprintf(hi, sizeof hi, "%.*s0", (int)(plen - 1), prefix);
                    end = lower_bound(ix, hi);
                }
                remaining = (long)(end - i);
                if ((s->history > 0 || at != s->rv) && end - i <= 5000) {
                    remaining = 0;
                    for (size_t j = i; j < end; j++)
                        remaining += ver_at(ix->v[j], at) != NULL;
                }
            }
            break;
        }
        if ((size_t)count == page_cap) {
            page_cap = page_cap ? page_cap * 2 : 256;
            page = ks_xrealloc(page, sizeof *page * page_cap);
        }
        page[count++] = v;
        items_len += v->item_len + 1;
        last = e;
    }
    if (more && last) {
        tok = encode_token((int64_t)at, last->key + plen);
        ks_buf_addf(&b, ",\"continue\":\"%s\"", tok);
        if (no_sel)
            ks_buf_addf(&b, ",\"remainingItemCount\":%ld", remaining);
        register_token(s, at);
    }
    if (r->table)
        ks_buf_addf(&b, "},\"columnDefinitions\":%s,\"rows\":",
                    r->kind == KS_POD ? pod_columns : lease_columns);
    else
        ks_buf_adds(&b, "},\"items\":");
    if (!r->table)
        ks_buf_reserve(&b, items_len + 3);
    for (long j = 0; j < count; j++) {
        ks_buf_add(&b, j ? "," : "[", 1);
        if (r->table)
            table_row(&b, r->kind, page[j]->item, page[j]->item_len, now);
        else
            ks_buf_add(&b, page[j]->item, page[j]->item_len);
    }
    ks_buf_adds(&b, count ? "]}" : "[]}");
    free(page);
    out->code = 200;
    out->body = ks_buf_take(&b);
out:
    if (locked)
        pthread_rwlock_unlock(&s->lock);
    ks_buf_free(&b);
    ks_labelsel_free(ls);
    ks_fieldsel_free(fs);
    free(err);
    free(start);
    free(tok);
}

/* ---- public: writes ---- */

void ks_store_create(ks_store *s, const ks_request *r, ks_result *out)
{
    cJSON *obj = parse_body(r, out, "");
    if (!obj)
        return;
    pthread_rwlock_wrlock(&s->lock);
    if (prepare_new(s, r->kind, r->ns, obj, 1, out))
        goto out;
    const char *name = ks_jstr(ks_jobj(obj, "metadata"), "name");
    if (current(find(s, r->kind, r->ns, name))) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s \"%s\" already exists", ks_resources[r->kind].qualified,
                 name);
        ks_details d = {name, ks_resources[r->kind].group, ks_resources[r->kind].plural, NULL};
        res_status(out, 409, "AlreadyExists", msg, &d);
        goto out;
    }
    if (r->dry_run) {
        set_rv(obj, s->rv);
        char *item = cJSON_PrintUnformatted(obj);
        out->code = 201;
        out->body = full_json(r->kind, item, strlen(item));
        free(item);
        goto out;
    }
    char *nm = ks_xstrdup(name);
    const ver *v = put(s, r->kind, r->ns, nm, obj, NULL);
    free(nm);
    res_obj(out, 201, r->kind, v);
    out->effect = KS_EFFECT_MUTATED;
out:
    pthread_rwlock_unlock(&s->lock);
    cJSON_Delete(obj);
}

static int has_deletion(const cJSON *obj)
{
    return ks_jstr(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "deletionTimestamp") != NULL;
}

static long grace_of(const cJSON *obj)
{
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "deletionGracePeriodSeconds");
    return jlong(g, -1, 1000000000L, -1);
}

static int finalizer_count(const cJSON *obj)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "finalizers");
    return cJSON_IsArray(f) ? cJSON_GetArraySize(f) : 0;
}

/* the shared tail of PUT and PATCH: e is current; next is the object the
 * client wants (item or full form); consumed */
static void apply_update(ks_store *s, const ks_request *r, entry *e, cJSON *next, int conditional,
                         ks_result *out)
{
    const ver *curv = current(e);
    cJSON *cur = ver_obj(curv);
    cJSON *res = NULL;
    const char *name = e->key + e->ns_len + 1;
    strip_kind(next);
    cJSON *nmeta = ks_jobj(next, "metadata");
    const char *nrv = ks_jstr(nmeta, "resourceVersion");
    const char *crv = ks_jstr(ks_jobj(cur, "metadata"), "resourceVersion");
    if (nrv && *nrv && strcmp(nrv, crv)) {
        res_conflict(out, r->kind, name);
        goto out;
    }
    if ((!nrv || !*nrv) && conditional && r->kind == KS_LEASE) {
        res_invalid(out, r->kind, name, "metadata.resourceVersion", "FieldValueInvalid",
                    "Invalid value: 0x0: must be specified for an update", 1);
        goto out;
    }
    const char *nname = ks_jstr(nmeta, "name");
    if (nname && strcmp(nname, name)) {
        char msg[700];
        snprintf(msg, sizeof msg,
                 "the name of the object (%s) does not match the name on the URL (%s)", nname,
                 name);
        res_bad(out, msg);
        goto out;
    }
    const char *nns = ks_jstr(nmeta, "namespace");
    if (nns && *nns && strncmp(nns, e->key, e->ns_len)) {
        res_bad(out, "the namespace of the provided object does not match the namespace sent on "
                     "the request");
        goto out;
    }
    if (r->status_sub) {
        res = cJSON_Duplicate(cur, 1);
        cJSON *st = cJSON_GetObjectItemCaseSensitive(next, "status");
        if (st)
            ks_jset(res, "status", cJSON_DetachItemViaPointer(next, st));
    } else {
        /* next is consumed: it becomes the result (nmeta, nrv, nname and
         * nns point into it and are not used past this point) */
        res = next;
        next = NULL;
        cJSON *rmeta = ks_jobj(res, "metadata");
        cJSON *cmeta = ks_jobj(cur, "metadata");
        static const char *const owned[] = {"name",
                                            "namespace",
                                            "uid",
                                            "creationTimestamp",
                                            "deletionTimestamp",
                                            "deletionGracePeriodSeconds",
                                            NULL};
        for (int i = 0; owned[i]; i++) {
            cJSON *cv = cJSON_GetObjectItemCaseSensitive(cmeta, owned[i]);
            cJSON_DeleteItemFromObjectCaseSensitive(rmeta, owned[i]);
            if (cv)
                cJSON_AddItemToObject(rmeta, owned[i], cJSON_Duplicate(cv, 1));
        }
        if (r->kind == KS_POD) {
            cJSON *cst = cJSON_GetObjectItemCaseSensitive(cur, "status");
            cJSON_DeleteItemFromObjectCaseSensitive(res, "status");
            if (cst)
                cJSON_AddItemToObject(res, "status", cJSON_Duplicate(cst, 1));
        }
    }
    ks_jset_str(ks_jobj(res, "metadata"), "resourceVersion", crv);
    if (has_deletion(cur)) {
        /* no new finalizers once deletion started */
        cJSON *nf = cJSON_GetObjectItemCaseSensitive(ks_jobj(res, "metadata"), "finalizers");
        cJSON *of = cJSON_GetObjectItemCaseSensitive(ks_jobj(cur, "metadata"), "finalizers");
        ks_buf added = {0};
        cJSON *f;
        int nadded = 0;
        cJSON_ArrayForEach(f, nf)
        {
            int found = 0;
            cJSON *o;
            cJSON_ArrayForEach(o, of) found |= cJSON_Compare(o, f, 1);
            if (!found && cJSON_IsString(f)) {
                ks_buf_addf(&added, "%s\"%s\"", nadded ? ", " : "", f->valuestring);
                nadded++;
            }
        }
        if (nadded) {
            char detail[1200];
            snprintf(detail, sizeof detail,
                     "Forbidden: no new finalizers can be added if the object is being deleted, "
                     "found new finalizers []string{%s}",
                     added.buf);
            ks_buf_free(&added);
            res_invalid(out, r->kind, name, "metadata.finalizers", "FieldValueForbidden", detail,
                        2);
            goto out;
        }
        ks_buf_free(&added);
    }
    normalize(res);
    if (cJSON_Compare(res, cur, 1)) {
        /* a no-op update writes nothing and keeps the resourceVersion */
        res_obj(out, 200, r->kind, curv);
        goto out;
    }
    if (r->dry_run) {
        char *item = cJSON_PrintUnformatted(res);
        out->code = 200;
        out->body = full_json(r->kind, item, strlen(item));
        free(item);
        goto out;
    }
    if (r->kind == KS_POD && has_deletion(res) && grace_of(res) == 0 && finalizer_count(res) == 0) {
        out->code = 200;
        out->body = remove_obj(s, r->kind, e, res, strtoull(crv, NULL, 10));
        out->effect = KS_EFFECT_REMOVED;
        out->removed = 1;
        goto out;
    }
    char *ns = ks_xstrndup(e->key, e->ns_len);
    char *nm = ks_xstrdup(name);
    const ver *v = put(s, r->kind, ns, nm, res, NULL);
    free(ns);
    free(nm);
    res_obj(out, 200, r->kind, v);
    out->effect = KS_EFFECT_MUTATED;
out:
    cJSON_Delete(cur);
    cJSON_Delete(res);
    cJSON_Delete(next);
}

void ks_store_update(ks_store *s, const ks_request *r, ks_result *out)
{
    cJSON *obj = parse_body(r, out, "");
    if (!obj)
        return;
    pthread_rwlock_wrlock(&s->lock);
    entry *e = find(s, r->kind, r->ns, r->name);
    if (!current(e)) {
        res_not_found(out, r->kind, r->name);
        cJSON_Delete(obj);
    } else {
        apply_update(s, r, e, obj, 1, out);
    }
    pthread_rwlock_unlock(&s->lock);
}

void ks_store_patch(ks_store *s, const ks_request *r, ks_result *out)
{
    char ct[128] = "";
    char *err = NULL;
    snprintf(ct, sizeof ct, "%s", r->content_type ? r->content_type : "");
    char *semi = strchr(ct, ';');
    if (semi)
        *semi = '\0';
    for (char *p = ct + strlen(ct); p > ct && (p[-1] == ' ' || p[-1] == '\t'); p--)
        p[-1] = '\0';
    int type = !strcmp(ct, "application/json-patch+json")              ? 1
               : !strcmp(ct, "application/merge-patch+json")           ? 2
               : !strcmp(ct, "application/strategic-merge-patch+json") ? 3
                                                                       : 0;
    if (!type) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "the body of the request was in an unknown format - accepted media types "
                 "include: application/json-patch+json, application/merge-patch+json, "
                 "application/apply-patch+yaml, application/strategic-merge-patch+json");
        res_status(out, 415, "UnsupportedMediaType", msg, NULL);
        return;
    }
    pthread_rwlock_wrlock(&s->lock);
    entry *e = find(s, r->kind, r->ns, r->name);
    const ver *cv = current(e);
    if (!cv) {
        res_not_found(out, r->kind, r->name);
        goto out;
    }
    cJSON *doc = full_obj(r->kind, cv);
    const char *body = r->body ? r->body : "";
    int rc = type == 1   ? ks_json_patch(&doc, body, r->body_len, &err)
             : type == 2 ? ks_merge_patch(&doc, body, r->body_len, &err)
                         : ks_strategic_patch(&doc, body, r->body_len, &err);
    if (rc == KS_PATCH_BAD) {
        res_bad(out, err);
        cJSON_Delete(doc);
        goto out;
    }
    if (rc == KS_PATCH_FAILED) {
        ks_details d = {0};
        res_status(out, 422, "Invalid",
                   "the server rejected our request due to an error in our request", &d);
        cJSON_Delete(doc);
        goto out;
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        res_bad(out, "json: cannot unmarshal into Go value of type struct");
        goto out;
    }
    apply_update(s, r, e, doc, 0, out);
out:
    pthread_rwlock_unlock(&s->lock);
    free(err);
}

static int parse_grace(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

void ks_store_delete(ks_store *s, const ks_request *r, ks_result *out)
{
    cJSON *opts = NULL, *cur = NULL;
    long grace = -1;
    int grace_set = 0, locked = 0;
    char msg[800];
    if (r->body && r->body_len) {
        opts = parse_body(r, out, "");
        if (!opts)
            goto out;
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(opts, "gracePeriodSeconds");
        if (cJSON_IsNumber(g))
            grace = jlong(g, -1000000000L, 1000000000L, -1), grace_set = 1;
    } else if (r->grace_param) {
        if (parse_grace(r->grace_param, &grace)) {
            snprintf(msg, sizeof msg, "strconv.ParseInt: parsing \"%s\": invalid syntax",
                     r->grace_param);
            res_bad(out, msg);
            goto out;
        }
        grace_set = 1;
    }
    /* negative grace periods count as 1 second, as in the apiserver */
    if (grace_set && grace < 0)
        grace = 1;
    if (grace > 1000000000L)
        grace = 1000000000L;
    pthread_rwlock_wrlock(&s->lock);
    locked = 1;
    entry *e = find(s, r->kind, r->ns, r->name);
    const ver *cv = current(e);
    if (!cv) {
        res_not_found(out, r->kind, r->name);
        goto out;
    }
    cur = ver_obj(cv);
    cJSON *meta = ks_jobj(cur, "metadata");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(opts, "preconditions");
    const char *puid = ks_jstr(pre, "uid");
    const char *prv = ks_jstr(pre, "resourceVersion");
    ks_details d = {r->name, ks_resources[r->kind].group, ks_resources[r->kind].kind_name, NULL};
    if (puid && strcmp(puid, ks_jstr(meta, "uid") ? ks_jstr(meta, "uid") : "")) {
        snprintf(msg, sizeof msg,
                 "Operation cannot be fulfilled on %s \"%s\": the UID in the precondition (%s) "
                 "does not match the UID in record (%s). The object might have been deleted and "
                 "then recreated",
                 ks_resources[r->kind].kind_name, r->name, puid, ks_jstr(meta, "uid"));
        res_status(out, 409, "Conflict", msg, &d);
        goto out;
    }
    if (prv && strcmp(prv, ks_jstr(meta, "resourceVersion"))) {
        snprintf(msg, sizeof msg,
                 "Operation cannot be fulfilled on %s \"%s\": the ResourceVersion in the "
                 "precondition (%s) does not match the ResourceVersion in record (%s). The object "
                 "might have been modified",
                 ks_resources[r->kind].kind_name, r->name, prv, ks_jstr(meta, "resourceVersion"));
        res_status(out, 409, "Conflict", msg, &d);
        goto out;
    }
    if (r->dry_run) {
        res_obj(out, 200, r->kind, cv);
        goto out;
    }
    if (r->kind == KS_LEASE) {
        char *body = remove_obj(s, r->kind, e, cur, 0);
        free(body);
        cJSON *st = cJSON_CreateObject();
        cJSON_AddStringToObject(st, "kind", "Status");
        cJSON_AddStringToObject(st, "apiVersion", "v1");
        cJSON_AddObjectToObject(st, "metadata");
        cJSON_AddStringToObject(st, "status", "Success");
        cJSON *det = cJSON_AddObjectToObject(st, "details");
        cJSON_AddStringToObject(det, "name", r->name);
        cJSON_AddStringToObject(det, "group", "coordination.k8s.io");
        cJSON_AddStringToObject(det, "kind", "leases");
        cJSON_AddStringToObject(det, "uid", ks_jstr(meta, "uid"));
        out->code = 200;
        out->body = cJSON_PrintUnformatted(st);
        cJSON_Delete(st);
        out->effect = KS_EFFECT_REMOVED;
        out->removed = 1;
        goto out;
    }
    int nfin = finalizer_count(cur);
    int64_t now = ks_now_ms();
    char ts[40];
    if (has_deletion(cur)) {
        long cg = grace_of(cur);
        if (cg > 0 && grace >= 0 && grace < cg) {
            /* only a shorter grace period may be given; 0 deletes at once (kubectl --force) */
            int64_t dts = ks_parse_time(ks_jstr(meta, "deletionTimestamp"));
            if (grace == 0 && nfin == 0) {
                cJSON_SetNumberValue(
                    cJSON_GetObjectItemCaseSensitive(meta, "deletionGracePeriodSeconds"), 0);
                out->code = 200;
                out->body = remove_obj(s, r->kind, e, cur, 0);
                out->effect = KS_EFFECT_REMOVED;
                out->removed = 1;
                goto out;
            }
            ks_fmt_time(dts - cg * 1000 + grace * 1000, ts, sizeof ts);
            ks_jset_str(meta, "deletionTimestamp", ts);
            ks_jset(meta, "deletionGracePeriodSeconds", cJSON_CreateNumber((double)grace));
            const ver *v = put(s, r->kind, r->ns, r->name, cur, NULL);
            if (grace > 0)
                add_pending(s, r->kind, e->key, now + grace * 1000);
            res_obj(out, 200, r->kind, v);
            out->effect = KS_EFFECT_MARKED;
            goto out;
        }
        if (cg <= 0 && nfin == 0) {
            out->code = 200;
            out->body = remove_obj(s, r->kind, e, cur, 0);
            out->effect = KS_EFFECT_REMOVED;
            out->removed = 1;
            goto out;
        }
        /* graceful deletion already pending, or waiting for finalizers */
        res_obj(out, 200, r->kind, cv);
        goto out;
    }
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(cur, "spec");
    if (grace < 0) {
        const cJSON *tg = cJSON_GetObjectItemCaseSensitive(spec, "terminationGracePeriodSeconds");
        grace = jlong(tg, -1000000000L, 1000000000L, 0);
    }
    const char *node = ks_jstr(spec, "nodeName");
    const char *phase = path_str(cur, "status", "phase");
    if (!node || !*node || (phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"))))
        grace = 0;
    if (grace < 0)
        grace = 1;
    ks_fmt_time(now + grace * 1000, ts, sizeof ts);
    ks_jset_str(meta, "deletionTimestamp", ts);
    ks_jset(meta, "deletionGracePeriodSeconds", cJSON_CreateNumber((double)grace));
    if (grace == 0 && nfin == 0) {
        out->code = 200;
        out->body = remove_obj(s, r->kind, e, cur, 0);
        out->effect = KS_EFFECT_REMOVED;
        out->removed = 1;
        goto out;
    }
    const ver *v = put(s, r->kind, r->ns, r->name, cur, NULL);
    if (grace > 0)
        add_pending(s, r->kind, e->key, now + grace * 1000);
    res_obj(out, 200, r->kind, v);
    out->effect = KS_EFFECT_MARKED;
out:
    if (locked)
        pthread_rwlock_unlock(&s->lock);
    cJSON_Delete(opts);
    cJSON_Delete(cur);
}

int ks_store_tick(ks_store *s)
{
    int removed = 0;
    int64_t now = ks_now_ms();
    pthread_rwlock_rdlock(&s->lock);
    int idle = s->npend == 0 && s->history == 0;
    pthread_rwlock_unlock(&s->lock);
    if (idle)
        return 0;
    pthread_rwlock_wrlock(&s->lock);
    size_t j = 0;
    for (size_t i = 0; i < s->npend; i++) {
        pending *p = &s->pend[i];
        if (p->deadline_ms > now) {
            s->pend[j++] = *p;
            continue;
        }
        kindex *ix = &s->idx[p->kind];
        size_t at = lower_bound(ix, p->key);
        entry *e = (at < ix->n && !strcmp(ix->v[at]->key, p->key)) ? ix->v[at] : NULL;
        const ver *cv = current(e);
        if (cv) {
            cJSON *cur = ver_obj(cv);
            long g = grace_of(cur);
            int64_t dts = ks_parse_time(ks_jstr(ks_jobj(cur, "metadata"), "deletionTimestamp"));
            if (g > 0 && dts <= now) {
                /* the kubelet has stopped the containers: it deletes with grace 0 */
                char *ns = ks_xstrndup(e->key, e->ns_len);
                char *nm = ks_xstrdup(e->key + e->ns_len + 1);
                cJSON *meta = ks_jobj(cur, "metadata");
                cJSON_SetNumberValue(
                    cJSON_GetObjectItemCaseSensitive(meta, "deletionGracePeriodSeconds"), 0);
                if (finalizer_count(cur) == 0) {
                    free(remove_obj(s, p->kind, e, cur, 0));
                    removed++;
                } else {
                    put(s, p->kind, ns, nm, cur, NULL);
                }
                free(ns);
                free(nm);
            } else if (g > 0) {
                cJSON_Delete(cur);
                p->deadline_ms = dts;
                s->pend[j++] = *p;
                continue;
            }
            cJSON_Delete(cur);
        }
        free(p->key);
    }
    s->npend = j;
    /* tokens that expired may let history go */
    if (s->history > 0) {
        uint64_t w = watermark(s);
        if (w != s->last_w)
            compact_all(s, w);
        s->last_w = w;
    }
    pthread_rwlock_unlock(&s->lock);
    return removed;
}

/* ---- seed and dump ---- */

int ks_store_seed(ks_store *s, const char *json, size_t n, char **err)
{
    int count = 0;
    char *gerr = ks_go_json_error(json, n);
    if (gerr) {
        *err = gerr;
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(json, n);
    cJSON *items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
    if (!cJSON_IsArray(items)) {
        *err = ks_xstrdup("seed: want a PodList or a JSON array of pods");
        cJSON_Delete(root);
        return -1;
    }
    pthread_rwlock_wrlock(&s->lock);
    cJSON *it;
    while ((it = items->child) != NULL) {
        ks_result res = {0};
        cJSON *obj = cJSON_DetachItemViaPointer(items, it);
        const char *kind = ks_jstr(obj, "kind");
        ks_kind k = (kind && !strcmp(kind, "Lease")) ? KS_LEASE : KS_POD;
        const char *ns = ks_jstr(ks_jobj(obj, "metadata"), "namespace");
        char *nsd = ks_xstrdup(ns && *ns ? ns : "default");
        if (prepare_new(s, k, nsd, obj, 0, &res)) {
            char msg[800];
            snprintf(msg, sizeof msg, "seed: item %d: %s", count, res.body);
            *err = ks_xstrdup(msg);
            free(res.body);
            free(nsd);
            cJSON_Delete(obj);
            count = -1;
            break;
        }
        char *nm = ks_xstrdup(ks_jstr(ks_jobj(obj, "metadata"), "name"));
        put(s, k, nsd, nm, obj, NULL);
        free(nm);
        free(nsd);
        cJSON_Delete(obj);
        count++;
    }
    pthread_rwlock_unlock(&s->lock);
    cJSON_Delete(root);
    /* the parsed seed is garbage now, and main() turned automatic trimming
     * off: give it back once */
    malloc_trim(0);
    return count;
}

char *ks_store_dump(ks_store *s)
{
    ks_buf b = {0};
    pthread_rwlock_rdlock(&s->lock);
    ks_buf_addf(&b, "{\"resourceVersion\":\"%" PRIu64 "\"", s->rv);
    for (int k = 0; k < KS_NKINDS; k++) {
        ks_buf_addf(&b, ",\"%s\":[", ks_resources[k].plural);
        int first = 1;
        for (size_t i = 0; i < s->idx[k].n; i++) {
            const ver *v = current(s->idx[k].v[i]);
            if (!v)
                continue;
            if (!first)
                ks_buf_adds(&b, ",");
            char *f = full_json((ks_kind)k, v->item, v->item_len);
            ks_buf_adds(&b, f);
            free(f);
            first = 0;
        }
        ks_buf_adds(&b, "]");
    }
    pthread_rwlock_unlock(&s->lock);
    ks_buf_adds(&b, "}");
    return ks_buf_take(&b);
}

/* ---- watch ---- */

struct ks_watch {
    ks_store *s;
    ks_kind kind;
    char *ns;
    ks_labelsel *ls;
    ks_fieldsel *fs;
    uint64_t next; /* index in the event ring of the next event to send */
    ks_buf initial;
    int ended;
    int table; /* events carry a one-row Table (kubectl get -w) */
};

static int event_matches(const ks_watch *w, const event *ev)
{
    if (ev->kind != w->kind || (w->ns && strcmp(ev->ns, w->ns)))
        return 0;
    ver tmp;
    memset(&tmp, 0, sizeof tmp);
    memcpy(tmp.fv, ev->fv, sizeof tmp.fv);
    entry te = {0};
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ev->ns, ev->fv[F_NAME] ? ev->fv[F_NAME] : "");
    te.key = key;
    te.ns_len = strlen(ev->ns);
    fctx fc = {&te, &tmp};
    return ks_labelsel_match(w->ls, &ev->labels) && ks_fieldsel_match(w->fs, field_get, &fc);
}

int ks_watch_open(ks_store *s, const ks_request *r, ks_watch **out, ks_result *res)
{
    char *err = NULL;
    ks_watch *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->s = s;
    w->kind = r->kind;
    w->ns = r->ns ? ks_xstrdup(r->ns) : NULL;
    w->table = r->table;
    if (ks_labelsel_parse(r->label_selector, &w->ls, &err) ||
        ks_fieldsel_parse(r->field_selector, r->kind == KS_POD ? pod_fields : lease_fields, &w->fs,
                          &err)) {
        res_bad(res, err);
        free(err);
        ks_watch_close(w);
        return -1;
    }
    const char *rvp = r->resource_version;
    pthread_rwlock_rdlock(&s->lock);
    pthread_mutex_lock(&s->ev_mu);
    if (!rvp || !*rvp || !strcmp(rvp, "0")) {
        /* synthetic ADDED events for the current state, then everything after */
        const kindex *ix = &s->idx[r->kind];
        for (size_t i = 0; i < ix->n; i++) {
            const entry *e = ix->v[i];
            const ver *v = current(e);
            if (!v || (w->ns && (strlen(w->ns) != e->ns_len || strncmp(e->key, w->ns, e->ns_len))))
                continue;
            fctx fc = {e, v};
            if (!ks_labelsel_match(w->ls, &v->labels) || !ks_fieldsel_match(w->fs, field_get, &fc))
                continue;
            if (w->table) {
                ks_buf_adds(&w->initial, "{\"type\":\"ADDED\",\"object\":");
                table_add(&w->initial, r->kind, v->item, v->item_len, v->rv_from);
                ks_buf_adds(&w->initial, "}\n");
                continue;
            }
            ks_buf_addf(&w->initial,
                        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"%s\",\"apiVersion\":\"%s\",",
                        ks_resources[r->kind].kind_name, ks_resources[r->kind].api_version);
            ks_buf_add(&w->initial, v->item + 1, v->item_len - 1);
            ks_buf_adds(&w->initial, "}\n");
        }
        w->next = s->ev_head;
    } else {
        char *end;
        uint64_t from = strtoull(rvp, &end, 10);
        uint64_t oldest = s->ev_head > EVENT_RING ? s->ev_head - EVENT_RING : 0;
        uint64_t i = s->ev_head;
        while (i > oldest && s->ring[(i - 1) % EVENT_RING].rv > from)
            i--;
        if (*end || (i == oldest && oldest > 0 && s->ring[oldest % EVENT_RING].rv > from + 1)) {
            char msg[200];
            snprintf(msg, sizeof msg, "too old resource version: %s (%" PRIu64 ")", rvp,
                     oldest ? s->ring[oldest % EVENT_RING].rv - 1 : s->rv);
            char *st = ks_status_json(410, "Expired", msg, NULL);
            ks_buf_addf(&w->initial, "{\"type\":\"ERROR\",\"object\":%s}\n", st);
            free(st);
            w->ended = 1;
        }
        w->next = i;
    }
    pthread_mutex_unlock(&s->ev_mu);
    pthread_rwlock_unlock(&s->lock);
    *out = w;
    return 0;
}

int ks_watch_next(ks_watch *w, ks_buf *b, int wait_ms)
{
    ks_store *s = w->s;
    if (w->initial.len) {
        ks_buf_add(b, w->initial.buf, w->initial.len);
        ks_buf_free(&w->initial);
        return 0;
    }
    if (w->ended)
        return -1;
    pthread_mutex_lock(&s->ev_mu);
    if (w->next == s->ev_head && !s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->ev_cond, &s->ev_mu, &ts);
    }
    int rc = 0;
    if (s->stopping)
        rc = -1;
    if (s->ev_head - w->next > EVENT_RING) {
        char *st = ks_status_json(410, "Expired", "too old resource version", NULL);
        ks_buf_addf(b, "{\"type\":\"ERROR\",\"object\":%s}\n", st);
        free(st);
        w->ended = 1;
    } else {
        for (; w->next < s->ev_head; w->next++) {
            const event *ev = &s->ring[w->next % EVENT_RING];
            if (!event_matches(w, ev))
                continue;
            if (!w->table) {
                ks_buf_adds(b, ev->line);
                continue;
            }
            ks_buf_addf(b, "{\"type\":\"%s\",\"object\":", ev->type);
            table_add(b, ev->kind, ev->line + ev->obj_off, ev->obj_len, ev->rv);
            ks_buf_adds(b, "}\n");
        }
    }
    pthread_mutex_unlock(&s->ev_mu);
    return rc;
}

void ks_watch_close(ks_watch *w)
{
    if (!w)
        return;
    free(w->ns);
    ks_labelsel_free(w->ls);
    ks_fieldsel_free(w->fs);
    ks_buf_free(&w->initial);
    free(w);
}

void ks_store_wake_watchers(ks_store *s)
{
    pthread_mutex_lock(&s->ev_mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->ev_cond);
    pthread_mutex_unlock(&s->ev_mu);
}
