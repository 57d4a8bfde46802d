/*
 * The reads: get, and list with label and field selectors and pages
 * (limit/continue). Every page of a list is read at the first page's
 * resourceVersion (token.c keeps what it needs).
 */
#include "store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ks_store_get(ks_store *s, const ks_request *r, ks_result *out)
{
    pthread_rwlock_rdlock(&s->lock);
    const ver *v = st_current(st_find(s, r->kind, r->ns, r->name));
    if (v && r->table && !r->status_sub) {
        ks_buf b = {0};
        st_table_add(&b, r->kind, v->item, v->item_len, v->rv_from);
        out->code = 200;
        out->body = ks_buf_take(&b);
    } else if (v)
        st_res_obj(out, 200, r->kind, v);
    else
        st_res_not_found(out, r->kind, r->name);
    pthread_rwlock_unlock(&s->lock);
}

/* a list's parameters */
typedef struct {
    ks_labelsel *ls;
    ks_fieldsel *fs;
    long limit;       /* 0: no limit */
    int64_t trv;      /* the continue token's resourceVersion (-1: read at the newest) */
    char *start;      /* the continue token's last key, NULL without a token */
    int no_sel;       /* no selector: the page says how many items remain */
    char prefix[600]; /* "namespace/", or "" for all namespaces */
} list_query;

/* the versions of one page, then the body is built in one allocation */
typedef struct {
    const ver **v;
    long n;
    size_t cap, items_len;
    const entry *last;
    int more;
    long remaining;
} list_page;

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

/* 0, or -1 with a 400 in out */
static int parse_query(const ks_request *r, list_query *q, ks_result *out)
{
    char *err = NULL;
    int rc = -1;
    if (ks_labelsel_parse(r->label_selector, &q->ls, &err) ||
        ks_fieldsel_parse(r->field_selector, r->kind == KS_POD ? st_pod_fields : st_lease_fields,
                          &q->fs, &err)) {
        st_res_bad(out, err);
        goto out;
    }
    if (parse_limit(r->limit, &q->limit)) {
        char msg[300];
        snprintf(msg, sizeof msg, "strconv.ParseInt: parsing \"%s\": invalid syntax", r->limit);
        st_res_bad(out, msg);
        goto out;
    }
    if (r->cont && *r->cont) {
        if (st_decode_token(r->cont, &q->trv, &q->start, &err)) {
            char msg[700];
            snprintf(msg, sizeof msg, "invalid continue token: %s", err);
            st_res_bad(out, msg);
            goto out;
        }
    }
    q->no_sel = (!r->label_selector || !*r->label_selector) && ks_fieldsel_empty(q->fs);
    snprintf(q->prefix, sizeof q->prefix, "%s%s", r->ns ? r->ns : "", r->ns ? "/" : "");
    rc = 0;
out:
    free(err);
    return rc;
}

/* the objects visible at at from index position i on, in q's namespace;
 * exact unless old versions or tombstones are kept for live continue tokens
 * and there are many */
static long remaining_from(const ks_store *s, const kindex *ix, size_t i, const list_query *q,
                           uint64_t at)
{
    size_t plen = strlen(q->prefix);
    size_t end = ix->n;
    if (plen) {
        char hi[600];
        snprintf(hi, sizeof hi, "%.*s0", (int)(plen - 1), q->prefix);
        end = st_lower_bound(ix, hi);
    }
    long remaining = (long)(end - i);
    if ((s->history > 0 || at != s->rv) && end - i <= 5000) {
        remaining = 0;
        for (size_t j = i; j < end; j++)
            remaining += st_ver_at(ix->v[j], at) != NULL;
    }
    return remaining;
}

/* the page's versions at at, after the token's start key */
static void collect_page(const ks_store *s, const ks_request *r, const list_query *q, uint64_t at,
                         list_page *pg)
{
    const kindex *ix = &s->idx[r->kind];
    char from[1400];
    snprintf(from, sizeof from, "%s%s", q->prefix, q->start ? q->start : "");
    size_t i = st_lower_bound(ix, from);
    if (q->start && i < ix->n && !strcmp(ix->v[i]->key, from))
        i++;
    size_t plen = strlen(q->prefix);
    for (; i < ix->n; i++) {
        const entry *e = ix->v[i];
        if (plen && strncmp(e->key, q->prefix, plen))
            break;
        const ver *v = st_ver_at(e, at);
        if (!v)
            continue;
        st_fctx fc = {e, v};
        if (!ks_labelsel_match(q->ls, &v->labels) || !ks_fieldsel_match(q->fs, st_field_get, &fc))
            continue;
        if (q->limit > 0 && pg->n >= q->limit) {
            pg->more = 1;
            if (q->no_sel)
                pg->remaining = remaining_from(s, ix, i, q, at);
            break;
        }
        if ((size_t)pg->n == pg->cap) {
            pg->cap = pg->cap ? pg->cap * 2 : 256;
            pg->v = ks_xrealloc(pg->v, sizeof *pg->v * pg->cap);
        }
        pg->v[pg->n++] = v;
        pg->items_len += v->item_len + 1;
        pg->last = e;
    }
}

/* the body up to the list metadata's resourceVersion, left open */
static void list_head(ks_buf *b, const ks_request *r, uint64_t at)
{
    if (r->table)
        ks_buf_addf(b,
                    "{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{"
                    "\"resourceVersion\":\"%" PRIu64 "\"",
                    at);
    else
        ks_buf_addf(b,
                    "{\"kind\":\"%sList\",\"apiVersion\":\"%s\",\"metadata\":{"
                    "\"resourceVersion\":\"%" PRIu64 "\"",
                    ks_resources[r->kind].kind_name, ks_resources[r->kind].api_version, at);
}

/* closes the metadata and adds the items (or the Table's rows) */
static void list_items(ks_buf *b, const ks_request *r, const list_page *pg, int64_t now)
{
    if (r->table)
        ks_buf_addf(b, "},\"columnDefinitions\":%s,\"rows\":", st_table_columns(r->kind));
    else
        ks_buf_adds(b, "},\"items\":");
    if (!r->table)
        ks_buf_reserve(b, pg->items_len + 3);
    for (long j = 0; j < pg->n; j++) {
        ks_buf_add(b, j ? "," : "[", 1);
        if (r->table)
            st_table_row(b, r->kind, pg->v[j]->item, pg->v[j]->item_len, now);
        else
            ks_buf_add(b, pg->v[j]->item, pg->v[j]->item_len);
    }
    ks_buf_adds(b, pg->n ? "]}" : "[]}");
}

void ks_store_list(ks_store *s, const ks_request *r, ks_result *out)
{
    list_query q = {0};
    list_page pg = {0};
    char *tok = NULL;
    int locked = 0;
    ks_buf b = {0};

    if (parse_query(r, &q, out))
        goto out;
    pthread_rwlock_rdlock(&s->lock);
    locked = 1;
    uint64_t at = s->rv;
    if (q.start && q.trv != -1) {
        if (q.trv < 0 || (uint64_t)q.trv > s->rv || !st_token_live(s, (uint64_t)q.trv)) {
            st_res_token_expired(out, q.start);
            goto out;
        }
        at = (uint64_t)q.trv;
    }
    list_head(&b, r, at);
    int64_t now = ks_now_ms();
    collect_page(s, r, &q, at, &pg);
    if (pg.more && pg.last) {
        tok = st_encode_token((int64_t)at, pg.last->key + strlen(q.prefix));
        ks_buf_addf(&b, ",\"continue\":\"%s\"", tok);
        if (q.no_sel)
            ks_buf_addf(&b, ",\"remainingItemCount\":%ld", pg.remaining);
        st_register_token(s, at);
    }
    list_items(&b, r, &pg, now);
    out->code = 200;
    out->body = ks_buf_take(&b);
out:
    if (locked)
        pthread_rwlock_unlock(&s->lock);
    free(pg.v);
    ks_buf_free(&b);
    ks_labelsel_free(q.ls);
    ks_fieldsel_free(q.fs);
    free(q.start);
    free(tok);
}
