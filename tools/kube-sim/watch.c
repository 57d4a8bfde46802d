/*
 * The watch event ring and watch streams.
 *
 * Every write appends its event (the whole {"type":...,"object":...} line,
 * plus the labels and fields a watch's selectors read) to a ring of
 * EVENT_RING events; a watch is an index into it. A watch that falls a whole
 * ring behind, or asks to start before the oldest event kept, gets 410
 * Expired, like the apiserver's watch cache.
 */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the ring ---- */

void st_emit(ks_store *s, ks_kind k, const entry *e, const char *type, const char *item, size_t len,
             ver *v, int steal)
{
    char pre[64];
    size_t obj_off, obj_len;
    snprintf(pre, sizeof pre, "{\"type\":\"%s\",\"object\":", type);
    char *line = st_wrap_item(k, pre, item, len, "}\n", &obj_off, &obj_len);
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

void st_ring_free(ks_store *s)
{
    for (int i = 0; i < EVENT_RING; i++) {
        free(s->ring[i].ns);
        free(s->ring[i].line);
        free((char *)s->ring[i].labels.packed);
        for (int f = 0; f < F_COUNT; f++)
            free(s->ring[i].fv[f]);
    }
}

/* ---- watch streams ---- */

struct ks_watch {
    ks_store *s;
    ks_kind kind;
    char *ns;
    ks_labelsel *ls;
    ks_fieldsel *fs;
    uint64_t next; /* index in the event ring of the next event to send */
    ks_buf initial;
    int ended;
    int table;     /* events carry a one-row Table (kubectl get -w) */
    int bookmarks; /* allowWatchBookmarks */
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
    st_fctx fc = {&te, &tmp};
    return ks_labelsel_match(w->ls, &ev->labels) && ks_fieldsel_match(w->fs, st_field_get, &fc);
}

/* no resourceVersion (or "0"): synthetic ADDED events for the current state,
 * then everything after; both locks held */
static void start_at_now(ks_watch *w, ks_store *s)
{
    const kindex *ix = &s->idx[w->kind];
    for (size_t i = 0; i < ix->n; i++) {
        const entry *e = ix->v[i];
        const ver *v = st_current(e);
        if (!v || (w->ns && (strlen(w->ns) != e->ns_len || strncmp(e->key, w->ns, e->ns_len))))
            continue;
        st_fctx fc = {e, v};
        if (!ks_labelsel_match(w->ls, &v->labels) || !ks_fieldsel_match(w->fs, st_field_get, &fc))
            continue;
        if (w->table) {
            ks_buf_adds(&w->initial, "{\"type\":\"ADDED\",\"object\":");
            st_table_add(&w->initial, w->kind, v->item, v->item_len, v->rv_from);
            ks_buf_adds(&w->initial, "}\n");
            continue;
        }
        ks_buf_addf(&w->initial,
                    "{\"type\":\"ADDED\",\"object\":{\"kind\":\"%s\",\"apiVersion\":\"%s\",",
                    ks_resources[w->kind].kind_name, ks_resources[w->kind].api_version);
        ks_buf_add(&w->initial, v->item + 1, v->item_len - 1);
        ks_buf_adds(&w->initial, "}\n");
    }
    w->next = s->ev_head;
}

/* the events after resourceVersion rvp, or 410 Expired when the ring no
 * longer holds them all; both locks held */
static void start_after(ks_watch *w, ks_store *s, const char *rvp)
{
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
    w->bookmarks = r->bookmarks;
    if (ks_labelsel_parse(r->label_selector, &w->ls, &err) ||
        ks_fieldsel_parse(r->field_selector, r->kind == KS_POD ? st_pod_fields : st_lease_fields,
                          &w->fs, &err)) {
        st_res_bad(res, err);
        free(err);
        ks_watch_close(w);
        return -1;
    }
    const char *rvp = r->resource_version;
    pthread_rwlock_rdlock(&s->lock);
    pthread_mutex_lock(&s->ev_mu);
    if (!rvp || !*rvp || !strcmp(rvp, "0"))
        start_at_now(w, s);
    else
        start_after(w, s, rvp);
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
            st_table_add(b, ev->kind, ev->line + ev->obj_off, ev->obj_len, ev->rv);
            ks_buf_adds(b, "}\n");
        }
    }
    pthread_mutex_unlock(&s->ev_mu);
    return rc;
}

int ks_watch_bookmark(ks_watch *w, ks_buf *b)
{
    ks_store *s = w->s;
    if (!w->bookmarks || w->table || w->ended)
        return 0;
    pthread_mutex_lock(&s->ev_mu);
    /* only a watch that has sent everything up to the newest event may say
     * it got there; the version is that event's */
    int caught_up = w->next == s->ev_head;
    uint64_t rv = s->ev_head ? s->ring[(s->ev_head - 1) % EVENT_RING].rv : 0;
    pthread_mutex_unlock(&s->ev_mu);
    if (!caught_up || !rv)
        return 0;
    if (w->kind == KS_POD)
        ks_buf_addf(b,
                    "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
                    "\"metadata\":{\"resourceVersion\":\"%" PRIu64 "\",\"creationTimestamp\":null},"
                    "\"spec\":{\"containers\":null},\"status\":{}}}\n",
                    rv);
    else
        ks_buf_addf(b,
                    "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"%s\",\"apiVersion\":\"%s\","
                    "\"metadata\":{\"resourceVersion\":\"%" PRIu64 "\",\"creationTimestamp\":null},"
                    "\"spec\":{}}}\n",
                    ks_resources[w->kind].kind_name, ks_resources[w->kind].api_version, rv);
    return 1;
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
