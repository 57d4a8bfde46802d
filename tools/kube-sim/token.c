/*
 * Continue tokens, and the compaction they hold back.
 *
 * Old versions are kept only while a continue token could need them: a token
 * is live for --continue-ttl seconds after it was last handed out; versions
 * superseded before the oldest live token's resourceVersion are freed at once
 * (with no live token, at the write that supersedes them). A token that is no
 * longer live gets 410 Expired, with a fresh "rv":-1 token like the apiserver.
 * More than MAX_HISTORY superseded versions compact everything, as etcd would.
 */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compaction ---- */

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
            st_ver_free(v);
            continue;
        }
        pp = &v->older;
    }
    return e->head == NULL;
}

static void remove_at(kindex *ix, size_t i)
{
    st_entry_free(ix->v[i]);
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
                st_entry_free(ix->v[i]);
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

void st_after_write(ks_store *s, ks_kind k, entry *e)
{
    uint64_t w = watermark(s);
    if (w == UINT64_MAX && s->history > MAX_HISTORY)
        compact_all(s, w);
    if (prune_entry(s, e, w)) {
        kindex *ix = &s->idx[k];
        size_t i = st_lower_bound(ix, e->key);
        remove_at(ix, i);
    }
    if (w == UINT64_MAX)
        s->floor = s->rv;
    else if (w > s->floor)
        s->floor = w;
}

void st_compact_expired(ks_store *s)
{
    if (s->history > 0) {
        uint64_t w = watermark(s);
        if (w != s->last_w)
            compact_all(s, w);
        s->last_w = w;
    }
}

/* ---- tokens ---- */

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

void st_register_token(ks_store *s, uint64_t rv)
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

int st_token_live(ks_store *s, uint64_t rv)
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

char *st_encode_token(int64_t rv, const char *start)
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

int st_decode_token(const char *tok, int64_t *rv, char **start, char **err)
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

void st_res_token_expired(ks_result *out, const char *start)
{
    char *fresh = st_encode_token(-1, start);
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
}
