/*
 * DELETE and what follows it, with the apiserver's rules: preconditions (uid,
 * resourceVersion), graceful deletion of a scheduled pod (deletionTimestamp
 * set, the object stays until the period ends: a kubelet's part, done by
 * ks_store_tick), only a shorter grace period on a second DELETE, finalizers
 * that hold the object until the last one is removed. A lease goes at once.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int st_has_deletion(const cJSON *obj)
{
    return ks_jstr(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "deletionTimestamp") != NULL;
}

long st_grace_of(const cJSON *obj)
{
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "deletionGracePeriodSeconds");
    return st_jlong(g, -1, 1000000000L, -1);
}

int st_finalizer_count(const cJSON *obj)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "finalizers");
    return cJSON_IsArray(f) ? cJSON_GetArraySize(f) : 0;
}

void st_remove_now(ks_store *s, ks_kind k, entry *e, cJSON *final, uint64_t body_rv, ks_result *out)
{
    out->code = 200;
    out->body = st_remove(s, k, e, final, body_rv);
    out->effect = KS_EFFECT_REMOVED;
    out->removed = 1;
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

/* the grace period asked for, from DeleteOptions in the body (*opts
 * receives them) or ?gracePeriodSeconds=; -1 for none. 0, or -1 with a 400
 * in out. */
static int requested_grace(const ks_request *r, cJSON **opts, long *grace, ks_result *out)
{
    int grace_set = 0;
    *grace = -1;
    if (r->body && r->body_len) {
        *opts = st_parse_body(r, out, "");
        if (!*opts)
            return -1;
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(*opts, "gracePeriodSeconds");
        if (cJSON_IsNumber(g))
            *grace = st_jlong(g, -1000000000L, 1000000000L, -1), grace_set = 1;
    } else if (r->grace_param) {
        if (parse_grace(r->grace_param, grace)) {
            char msg[800];
            snprintf(msg, sizeof msg, "strconv.ParseInt: parsing \"%s\": invalid syntax",
                     r->grace_param);
            st_res_bad(out, msg);
            return -1;
        }
        grace_set = 1;
    }
    /* negative grace periods count as 1 second, as in the apiserver */
    if (grace_set && *grace < 0)
        *grace = 1;
    if (*grace > 1000000000L)
        *grace = 1000000000L;
    return 0;
}

/* 409 for a precondition (the UID or the ResourceVersion) that does not
 * hold; -1 */
static int precondition_failed(const ks_request *r, const char *what, const char *want,
                               const char *have, const char *why, ks_result *out)
{
    char msg[800];
    snprintf(msg, sizeof msg,
             "Operation cannot be fulfilled on %s \"%s\": the %s in the precondition (%s) does "
             "not match the %s in record (%s). The object might have been %s",
             ks_resources[r->kind].kind_name, r->name, what, want, what, have, why);
    ks_details d = {r->name, ks_resources[r->kind].group, ks_resources[r->kind].kind_name, NULL};
    st_res_status(out, 409, "Conflict", msg, &d);
    return -1;
}

/* DeleteOptions.preconditions against the stored metadata; 0, or -1 with
 * the 409 in out */
static int check_preconditions(const ks_request *r, const cJSON *opts, cJSON *meta, ks_result *out)
{
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(opts, "preconditions");
    const char *puid = ks_jstr(pre, "uid");
    const char *prv = ks_jstr(pre, "resourceVersion");
    const char *uid = ks_jstr(meta, "uid");
    const char *rv = ks_jstr(meta, "resourceVersion");
    if (puid && strcmp(puid, uid ? uid : ""))
        return precondition_failed(r, "UID", puid, uid, "deleted and then recreated", out);
    if (prv && strcmp(prv, rv))
        return precondition_failed(r, "ResourceVersion", prv, rv, "modified", out);
    return 0;
}

/* a lease goes at once; the answer is a Status, not the object */
static void delete_lease(ks_store *s, const ks_request *r, entry *e, cJSON *cur, ks_result *out)
{
    cJSON *meta = ks_jobj(cur, "metadata");
    char *body = st_remove(s, r->kind, e, cur, 0);
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
}

/* stores cur, its deletionTimestamp set, and with a grace period schedules
 * the removal */
static void mark_deleted(ks_store *s, const ks_request *r, entry *e, cJSON *cur, long grace,
                         int64_t now, ks_result *out)
{
    const ver *v = st_put(s, r->kind, r->ns, r->name, cur);
    if (grace > 0)
        add_pending(s, r->kind, e->key, now + grace * 1000);
    st_res_obj(out, 200, r->kind, v);
    out->effect = KS_EFFECT_MARKED;
}

/* a pod whose deletion started already: only a shorter grace period may be
 * given, 0 deletes at once (kubectl --force) */
static void delete_again(ks_store *s, const ks_request *r, entry *e, const ver *cv, cJSON *cur,
                         long grace, int64_t now, ks_result *out)
{
    cJSON *meta = ks_jobj(cur, "metadata");
    int nfin = st_finalizer_count(cur);
    long cg = st_grace_of(cur);
    if (cg > 0 && grace >= 0 && grace < cg) {
        int64_t dts = ks_parse_time(ks_jstr(meta, "deletionTimestamp"));
        if (grace == 0 && nfin == 0) {
            cJSON_SetNumberValue(
                cJSON_GetObjectItemCaseSensitive(meta, "deletionGracePeriodSeconds"), 0);
            st_remove_now(s, r->kind, e, cur, 0, out);
            return;
        }
        char ts[40];
        ks_fmt_time(dts - cg * 1000 + grace * 1000, ts, sizeof ts);
        ks_jset_str(meta, "deletionTimestamp", ts);
        ks_jset(meta, "deletionGracePeriodSeconds", cJSON_CreateNumber((double)grace));
        mark_deleted(s, r, e, cur, grace, now, out);
        return;
    }
    if (cg <= 0 && nfin == 0) {
        st_remove_now(s, r->kind, e, cur, 0, out);
        return;
    }
    /* graceful deletion already pending, or waiting for finalizers */
    st_res_obj(out, 200, r->kind, cv);
}

/* a pod's first DELETE: the grace period asked for, else the pod's own; none
 * for a pod that never ran or has finished */
static void delete_first(ks_store *s, const ks_request *r, entry *e, cJSON *cur, long grace,
                         int64_t now, ks_result *out)
{
    cJSON *meta = ks_jobj(cur, "metadata");
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(cur, "spec");
    if (grace < 0) {
        const cJSON *tg = cJSON_GetObjectItemCaseSensitive(spec, "terminationGracePeriodSeconds");
        grace = st_jlong(tg, -1000000000L, 1000000000L, 0);
    }
    const char *node = ks_jstr(spec, "nodeName");
    const char *phase = st_path_str(cur, "status", "phase");
    if (!node || !*node || (phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"))))
        grace = 0;
    if (grace < 0)
        grace = 1;
    char ts[40];
    ks_fmt_time(now + grace * 1000, ts, sizeof ts);
    ks_jset_str(meta, "deletionTimestamp", ts);
    ks_jset(meta, "deletionGracePeriodSeconds", cJSON_CreateNumber((double)grace));
    if (grace == 0 && st_finalizer_count(cur) == 0) {
        /* as the apiserver does it: the deletionTimestamp is written
         * (watchers see MODIFIED), then the pod goes (DELETED) */
        st_put(s, r->kind, r->ns, r->name, cur);
        st_remove_now(s, r->kind, e, cur, 0, out);
        return;
    }
    mark_deleted(s, r, e, cur, grace, now, out);
}

void ks_store_delete(ks_store *s, const ks_request *r, ks_result *out)
{
    cJSON *opts = NULL, *cur = NULL;
    long grace;
    int locked = 0;
    if (requested_grace(r, &opts, &grace, out))
        goto out;
    pthread_rwlock_wrlock(&s->lock);
    locked = 1;
    entry *e = st_find(s, r->kind, r->ns, r->name);
    const ver *cv = st_current(e);
    if (!cv) {
        st_res_not_found(out, r->kind, r->name);
        goto out;
    }
    cur = st_ver_obj(cv);
    if (check_preconditions(r, opts, ks_jobj(cur, "metadata"), out))
        goto out;
    if (r->dry_run)
        st_res_obj(out, 200, r->kind, cv);
    else if (r->kind == KS_LEASE)
        delete_lease(s, r, e, cur, out);
    else if (st_has_deletion(cur))
        delete_again(s, r, e, cv, cur, grace, ks_now_ms(), out);
    else
        delete_first(s, r, e, cur, grace, ks_now_ms(), out);
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
        size_t at = st_lower_bound(ix, p->key);
        entry *e = (at < ix->n && !strcmp(ix->v[at]->key, p->key)) ? ix->v[at] : NULL;
        const ver *cv = st_current(e);
        if (cv) {
            cJSON *cur = st_ver_obj(cv);
            long g = st_grace_of(cur);
            int64_t dts = ks_parse_time(ks_jstr(ks_jobj(cur, "metadata"), "deletionTimestamp"));
            if (g > 0 && dts <= now) {
                /* the kubelet has stopped the containers: it deletes with grace 0 */
                char *ns = ks_xstrndup(e->key, e->ns_len);
                char *nm = ks_xstrdup(e->key + e->ns_len + 1);
                cJSON *meta = ks_jobj(cur, "metadata");
                cJSON_SetNumberValue(
                    cJSON_GetObjectItemCaseSensitive(meta, "deletionGracePeriodSeconds"), 0);
                if (st_finalizer_count(cur) == 0) {
                    free(st_remove(s, p->kind, e, cur, 0));
                    removed++;
                } else {
                    st_put(s, p->kind, ns, nm, cur);
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
    st_compact_expired(s);
    pthread_rwlock_unlock(&s->lock);
    return removed;
}
