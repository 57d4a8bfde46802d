/* reconciler.c - the policy, the planner (pure) and the executor of a pass. */
#include "reconciler.h"

#include "claims.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- policy ------------------------------------------------------------- */

void kj_policy_init(kj_policy *p)
{
    memset(p, 0, sizeof *p);
    p->selector = KJ_DEFAULT_SELECTOR;
    p->finalizer = KJ_DEFAULT_FINALIZER;
    p->retain_terminated_ms = 5 * 60 * 1000;
    p->cleanup_kind = KJ_CLEANUP_ALL;
    p->engine_grace_ms = 30 * 60 * 1000;
    p->submit_grace_ms = 3 * 60 * 1000;
    p->orphan_grace_ms = 60 * 60 * 1000;
    p->concurrency = 32;
}

/* --- the planner -------------------------------------------------------- */

kj_pod_state kj_pod_state_of(const kj_pod *pod)
{
    if (pod->deletion_ms)
        return KJ_POD_TERMINATING;
    if (pod->phase && (!strcmp(pod->phase, "Succeeded") || !strcmp(pod->phase, "Failed")))
        return KJ_POD_TERMINAL;
    return KJ_POD_LIVE;
}

const char *kj_pod_state_name(kj_pod_state s)
{
    switch (s) {
    case KJ_POD_LIVE:
        return "live";
    case KJ_POD_TERMINAL:
        return "terminal";
    case KJ_POD_TERMINATING:
        return "terminating";
    }
    return "?";
}

const char *kj_step_name(kj_step_kind k)
{
    switch (k) {
    case KJ_STEP_CLOSE_SESSIONS:
        return "close_session";
    case KJ_STEP_ADD_FINALIZER:
        return "add_finalizer";
    case KJ_STEP_RELEASE_FINALIZER:
        return "release_finalizer";
    case KJ_STEP_DELETE:
        return "delete";
    case KJ_STEP_REPORT_ORPHAN:
        return "report_orphan";
    case KJ_STEP_REMOVE_CLAIM:
        return "remove_claim";
    }
    return "?";
}

static void add_step(kj_plan *out, kj_step_kind kind, const char *reason, const char *close_reason)
{
    out->steps[out->n++] = (kj_step){kind, reason, close_reason};
}

/* Deletion at due_ms: now, or later (out->due_ms) when not yet due. */
static void delete_when_due(kj_plan *out, int ours, int64_t due_ms, int64_t now_ms,
                            const char *reason)
{
    if (now_ms < due_ms) {
        out->due_ms = due_ms;
        return;
    }
    if (ours)
        add_step(out, KJ_STEP_RELEASE_FINALIZER, reason, NULL);
    add_step(out, KJ_STEP_DELETE, reason, NULL);
}

void kj_plan_pod(const kj_pod *pod, const kj_pod_sessions *s, int64_t seen_terminal_ms,
                 int64_t now_ms, const kj_policy *p, kj_plan *out)
{
    memset(out, 0, sizeof *out);
    out->state = kj_pod_state_of(pod);
    out->owner = s->open ? "open" : s->closed ? "closed" : "orphan";
    int ours = kj_pod_has_finalizer(pod, p->finalizer, NULL);

    /* Executors belong to their driver (owner references): the garbage
     * collector removes them with it. All we owe them is our finalizer back. */
    if (pod->spark_role && !strcmp(pod->spark_role, "executor")) {
        if (out->state == KJ_POD_TERMINATING && ours)
            add_step(out, KJ_STEP_RELEASE_FINALIZER, "executor pod is being deleted", NULL);
        return;
    }

    switch (out->state) {
    case KJ_POD_TERMINATING:
        if (s->open)
            add_step(out, KJ_STEP_CLOSE_SESSIONS, "engine pod is being deleted", "pod_deleted");
        if (ours)
            add_step(out, KJ_STEP_RELEASE_FINALIZER, "pod is being deleted", NULL);
        return;

    case KJ_POD_LIVE:
        if (s->open) {
            if (!ours)
                add_step(out, KJ_STEP_ADD_FINALIZER, "an open session uses this engine", NULL);
        } else if (s->closed) {
            delete_when_due(out, ours, s->last_closed_ms + p->engine_grace_ms, now_ms,
                            "all sessions closed for longer than the engine grace");
        } else if (!p->delete_running_orphans) {
            add_step(out, KJ_STEP_REPORT_ORPHAN, "running pod that no session in the journal uses",
                     NULL);
        } else {
            delete_when_due(out, ours, pod->created_ms + p->orphan_grace_ms, now_ms,
                            "running orphan older than the orphan grace");
            if (out->n == 0)
                add_step(out, KJ_STEP_REPORT_ORPHAN,
                         "running orphan, younger than the orphan grace", NULL);
        }
        return;

    case KJ_POD_TERMINAL: {
        if (s->open)
            add_step(out, KJ_STEP_CLOSE_SESSIONS, "engine pod terminated", "engine_terminated");
        int is_orphan = !s->open && !s->closed;
        int may_delete = is_orphan || p->cleanup_kind == KJ_CLEANUP_ALL ||
                         (p->cleanup_kind == KJ_CLEANUP_COMPLETED && pod->phase &&
                          !strcmp(pod->phase, "Succeeded"));
        int64_t since = pod->finished_ms ? pod->finished_ms : seen_terminal_ms;
        if (may_delete && now_ms >= since + p->retain_terminated_ms) {
            delete_when_due(out, ours, since + p->retain_terminated_ms, now_ms,
                            is_orphan ? "orphan terminated longer than the retain period"
                                      : "terminated longer than the retain period");
            return;
        }
        if (ours)
            add_step(out, KJ_STEP_RELEASE_FINALIZER,
                     is_orphan ? "terminated orphan" : "engine terminated", NULL);
        if (may_delete)
            out->due_ms = since + p->retain_terminated_ms;
        return;
    }
    }
}

int kj_plan_missing_engine(int64_t since_ms, int64_t now_ms, const kj_policy *p)
{
    return now_ms >= since_ms + p->submit_grace_ms;
}

/* --- the executor ------------------------------------------------------- */

/*
 * A set of strings (tags, application ids and uids seen in the listing), kept
 * as 64-bit fingerprints: 8 bytes a string whatever its length, so a pass
 * over 100,000 pods holds a few MB here. Two strings sharing a fingerprint
 * (odds around 1e-9 at 200,000 strings) make the set answer "seen" for one it
 * never saw, which errs on the side of doing nothing: a pod skipped until the
 * next pass, an open session not closed as engine_missing this time.
 */
typedef struct strset {
    uint64_t *slot; /* 0: empty */
    size_t cap, n;
} strset;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    /* splitmix64's finalizer: every bit of h reaches the low bits used as the index */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h ? h : 1;
}

/* Adds s; returns 1 if it was new, 0 if present, KJ_ENOMEM. */
static int strset_add(strset *set, const char *s)
{
    if (!s || !*s)
        return 0;
    if (set->n * 2 >= set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 1024;
        uint64_t *slot = calloc(cap, sizeof *slot);
        if (!slot)
            return KJ_ENOMEM;
        for (size_t i = 0; i < set->cap; i++)
            if (set->slot[i]) {
                size_t h = set->slot[i] & (cap - 1);
                while (slot[h])
                    h = (h + 1) & (cap - 1);
                slot[h] = set->slot[i];
            }
        free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    uint64_t f = hash_str(s);
    size_t h = f & (set->cap - 1);
    for (; set->slot[h]; h = (h + 1) & (set->cap - 1))
        if (set->slot[h] == f)
            return 0;
    set->slot[h] = f;
    set->n++;
    return 1;
}

static int strset_has(const strset *set, const char *s)
{
    if (!s || !*s || !set->cap)
        return 0;
    uint64_t f = hash_str(s);
    for (size_t h = f & (set->cap - 1); set->slot[h]; h = (h + 1) & (set->cap - 1))
        if (set->slot[h] == f)
            return 1;
    return 0;
}

static void strset_free(strset *set)
{
    free(set->slot);
}

typedef struct pass {
    kj_journal *j;
    kj_kube *k;
    const kj_policy *p;
    const kj_reconcile_opts *o;
    kj_reconcile_summary *sum;
    strset seen_engines, seen_uids;
    kj_action *pending; /* action records not yet written */
    size_t n_pending, cap_pending;
    int lists_failed;
    int fatal;
    int stopping; /* the pass is being cancelled: start nothing new */
    int fenced;   /* the lease was lost: nothing more may change the cluster */
    kj_err fatal_err, list_err;
    int64_t next_progress_ms;
    int64_t flushed_ms; /* when action records were last written */
    /* Pod requests handed to the kube client and not done yet, at most
     * max_submitted; pods with a request to make wait in the backlog
     * meanwhile (see job_advance). */
    int submitted, max_submitted;
    struct job *backlog_head, *backlog_tail;
} pass;

/* One pod being worked on: a copy of it as last seen, and how far it went. */
typedef struct job {
    pass *ps;
    kj_pod *pod;
    kj_step step; /* in flight */
    int steps, rereads;
    struct job *next; /* in the backlog */
} job;

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void fail_pass(pass *ps, const kj_err *err)
{
    if (!ps->fatal) {
        ps->fatal = 1;
        ps->fatal_err = *err;
    }
}

static int flush_actions(pass *ps)
{
    if (!ps->n_pending || ps->o->dry_run)
        return 0;
    kj_err err = {0};
    int rc = kj_journal_action_record_batch(ps->j, ps->pending, ps->n_pending, &err);
    ps->flushed_ms = kj_mono_ms();
    for (size_t i = 0; i < ps->n_pending; i++) {
        kj_action *a = &ps->pending[i];
        free((char *)a->namespace_);
        free((char *)a->pod);
        free((char *)a->uid);
        free((char *)a->engine_tag);
        free((char *)a->engine_id);
        free((char *)a->message);
    }
    ps->n_pending = 0;
    if (rc)
        fail_pass(ps, &err);
    return rc;
}

/* Reports an action and queues its record; result is "ok", "gone", "conflict", "canceled",
 * "failed", "reported" or "planned". */
static void record(pass *ps, const kj_pod *pod, const char *action, const char *reason,
                   const char *result, int http, const char *message)
{
    kj_action a = {
        .run_id = ps->sum->run_id,
        .time_ms = kj_now_ms(),
        .namespace_ = pod->namespace_,
        .pod = pod->name,
        .uid = pod->uid,
        .engine_tag = pod->unique_tag,
        .engine_id = pod->app_selector,
        .action = action,
        .reason = reason,
        .result = result,
        .http_code = http,
        .message = message,
    };
    if (ps->o->on_action)
        ps->o->on_action(&a, ps->o->ud);
    if (ps->o->dry_run)
        return;
    if (kj_grow((void **)&ps->pending, &ps->cap_pending, ps->n_pending + 1, sizeof *ps->pending))
        return;
    /* action, reason and result are static strings; the rest is copied. */
    a.namespace_ = dup_or_null(a.namespace_);
    a.pod = dup_or_null(a.pod);
    a.uid = dup_or_null(a.uid);
    a.engine_tag = dup_or_null(a.engine_tag);
    a.engine_id = dup_or_null(a.engine_id);
    a.message = dup_or_null(a.message);
    ps->pending[ps->n_pending++] = a;
    /* One transaction for many records, yet a crash loses at most a second's. */
    if (ps->n_pending >= 512 || kj_mono_ms() - ps->flushed_ms >= 1000)
        flush_actions(ps);
}

static void job_free(job *jb)
{
    if (!jb)
        return;
    kj_pod_free(jb->pod);
    free(jb);
}

typedef struct close_batch {
    char **ids;
    size_t n, cap;
} close_batch;

static int collect_open(const kj_session *s, void *ud)
{
    close_batch *b = ud;
    if (s->state != KJ_SESSION_OPEN)
        return 0;
    if (kj_grow((void **)&b->ids, &b->cap, b->n + 1, sizeof *b->ids))
        return KJ_ENOMEM;
    if (!(b->ids[b->n] = strdup(s->session_id)))
        return KJ_ENOMEM;
    b->n++;
    return 0;
}

/* Appends a close event to each session; the event id is derived from the
 * session, so two passes closing the same session store it once. */
static int close_sessions(pass *ps, char **ids, size_t n, const char *reason, kj_err *err)
{
    kj_event *evs = calloc(n ? n : 1, sizeof *evs);
    kj_append_result *res = calloc(n ? n : 1, sizeof *res);
    char(*eids)[KJ_EVENT_ID_MAX + 1] = calloc(n ? n : 1, sizeof *eids);
    int rc = 0;
    if (!evs || !res || !eids) {
        rc = kj_err_set(err, KJ_ENOMEM, "reconciler: out of memory");
        goto out;
    }
    int64_t now = kj_now_ms();
    for (size_t i = 0; i < n; i++) {
        snprintf(eids[i], sizeof eids[i], "kjournal-reconciler:%.96s:close", ids[i]);
        evs[i] = (kj_event){.event_id = eids[i],
                            .type = KJ_EVENT_SESSION_CLOSE,
                            .session_id = ids[i],
                            .time_ms = now,
                            .reason = reason};
    }
    if ((rc = kj_journal_append(ps->j, evs, n, res, err)))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (res[i].status == KJ_APPEND_STORED)
            ps->sum->sessions_closed++;
out:
    free(evs);
    free(res);
    free(eids);
    return rc;
}

static void job_done(kj_kube *k, const kj_kube_result *res, void *ud);

/* JSON Patch for a step, or NULL for DELETE. */
static char *patch_for(const kj_pod *pod, const kj_step *st, const char *finalizer)
{
    cJSON *ops = cJSON_CreateArray(), *op;
    char path[64];
    if (st->kind == KJ_STEP_RELEASE_FINALIZER || st->kind == KJ_STEP_REMOVE_CLAIM) {
        /* The uid test keeps the patch on the pod we planned for: a pod
         * deleted and created again with the same name carries our
         * finalizer at the same index, and the finalizer test alone would
         * pass on it (it may be the engine of an open session). */
        if (pod->uid) {
            op = cJSON_CreateObject();
            cJSON_AddStringToObject(op, "op", "test");
            cJSON_AddStringToObject(op, "path", "/metadata/uid");
            cJSON_AddStringToObject(op, "value", pod->uid);
            cJSON_AddItemToArray(ops, op);
        }
        size_t i = 0;
        kj_pod_has_finalizer(pod, finalizer, &i);
        snprintf(path, sizeof path, "/metadata/finalizers/%zu", i);
        op = cJSON_CreateObject();
        cJSON_AddStringToObject(op, "op", "test");
        cJSON_AddStringToObject(op, "path", path);
        cJSON_AddStringToObject(op, "value", finalizer);
        cJSON_AddItemToArray(ops, op);
        op = cJSON_CreateObject();
        cJSON_AddStringToObject(op, "op", "remove");
        cJSON_AddStringToObject(op, "path", path);
        cJSON_AddItemToArray(ops, op);
    } else {
        /* Adding: the test on resourceVersion makes a concurrent change a 422. */
        op = cJSON_CreateObject();
        cJSON_AddStringToObject(op, "op", "test");
        cJSON_AddStringToObject(op, "path", "/metadata/resourceVersion");
        cJSON_AddStringToObject(op, "value", pod->resource_version ? pod->resource_version : "");
        cJSON_AddItemToArray(ops, op);
        op = cJSON_CreateObject();
        cJSON_AddStringToObject(op, "op", "add");
        if (pod->n_finalizers) {
            cJSON_AddStringToObject(op, "path", "/metadata/finalizers/-");
            cJSON_AddStringToObject(op, "value", finalizer);
        } else {
            cJSON_AddStringToObject(op, "path", "/metadata/finalizers");
            cJSON *arr = cJSON_AddArrayToObject(op, "value");
            cJSON_AddItemToArray(arr, cJSON_CreateString(finalizer));
        }
        cJSON_AddItemToArray(ops, op);
    }
    char *s = cJSON_PrintUnformatted(ops);
    cJSON_Delete(ops);
    return s;
}

/* A pod waits for a grace or retain period: the pass after it is due. */
static void note_due(kj_reconcile_summary *sum, int64_t due_ms)
{
    sum->waiting++;
    if (!sum->next_due_ms || due_ms < sum->next_due_ms)
        sum->next_due_ms = due_ms;
}

/* The fence a mutation sent now must respect; 0 when none may be sent (the
 * pass then stops), -1 without an election. */
static int64_t mutation_fence(pass *ps)
{
    if (!ps->o->fence)
        return -1;
    int64_t fence = atomic_load(ps->o->fence);
    if (fence && kj_mono_ms() < fence)
        return fence;
    if (!ps->fenced)
        kj_log(KJ_LOG_WARN, "reconcile pass stopped: the lease was lost", "run=%lld",
               (long long)ps->sum->run_id);
    ps->fenced = 1;
    ps->stopping = 1;
    return 0;
}

static void job_submit(job *jb, const kj_step *st)
{
    pass *ps = jb->ps;
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    char *body = NULL;
    r.namespace_ = jb->pod->namespace_;
    r.name = jb->pod->name;
    jb->step = *st;
    if (st->kind != 0) {
        int64_t fence = mutation_fence(ps);
        if (fence == 0) {
            job_free(jb);
            return;
        }
        r.not_after_ms = fence > 0 ? fence : 0;
    }
    if (st->kind == KJ_STEP_DELETE) {
        r.op = KJ_KUBE_DELETE_POD;
        r.precondition_uid = jb->pod->uid;
        /* Per server: a claim added since we read the pod makes it a 409. */
        if (ps->p->per_server)
            r.precondition_rv = jb->pod->resource_version;
        r.propagation = "Background";
    } else if (st->kind == 0) {
        r.op = KJ_KUBE_GET_POD; /* a re-read after a conflict */
    } else if (st->kind == KJ_STEP_REMOVE_CLAIM) {
        r.op = KJ_KUBE_PATCH_POD;
        const char *dead = kj_claims_first_dead(jb->pod, ps->o->dead_claims, ps->o->n_dead_claims);
        r.body = body = patch_for(jb->pod, st, dead ? dead : "");
    } else {
        r.op = KJ_KUBE_PATCH_POD;
        r.body = body = patch_for(jb->pod, st, ps->p->finalizer);
    }
    kj_err err = {0};
    if (kj_kube_submit(ps->k, &r, job_done, jb) < 0) {
        kj_err_set(&err, KJ_ENOMEM, "reconciler: cannot queue a request");
        fail_pass(ps, &err);
        job_free(jb);
    } else {
        ps->submitted++;
    }
    free(body);
}

static void backlog_push(pass *ps, job *jb)
{
    jb->next = NULL;
    if (ps->backlog_tail)
        ps->backlog_tail->next = jb;
    else
        ps->backlog_head = jb;
    ps->backlog_tail = jb;
}

static void job_advance(job *jb);

/* Takes pods from the backlog while there is room for their requests. */
static void backlog_drain(pass *ps)
{
    while (!ps->fatal && !ps->stopping && ps->backlog_head && ps->submitted < ps->max_submitted) {
        job *jb = ps->backlog_head;
        ps->backlog_head = jb->next;
        if (!ps->backlog_head)
            ps->backlog_tail = NULL;
        job_advance(jb);
    }
}

static void backlog_free(pass *ps)
{
    while (ps->backlog_head) {
        job *jb = ps->backlog_head;
        ps->backlog_head = jb->next;
        job_free(jb);
    }
    ps->backlog_tail = NULL;
}

/*
 * A live pod that no session uses, kept running: recorded when first seen and
 * again only when something about it changes (its phase, why it is kept), so
 * that the audit does not grow by one row per orphan at every pass. The
 * orphans running now are counted either way (sum->orphans_running).
 */
static int report_orphan(pass *ps, const kj_pod *pod, const kj_step *st, int first_step)
{
    char msg[96];
    kj_err err = {0};
    snprintf(msg, sizeof msg, "phase %.64s", pod->phase ? pod->phase : "unknown");
    kj_action a = {.namespace_ = pod->namespace_,
                   .pod = pod->name,
                   .uid = pod->uid,
                   .engine_tag = pod->unique_tag,
                   .engine_id = pod->app_selector,
                   .action = kj_step_name(st->kind),
                   .reason = st->reason,
                   .result = "reported",
                   .message = msg};
    int same = kj_journal_action_repeats_last(ps->j, &a, &err);
    if (same < 0) {
        fail_pass(ps, &err);
        return same;
    }
    ps->sum->orphans_running++;
    if (same)
        return 0;
    if (first_step)
        ps->sum->pods_acted_on++;
    record(ps, pod, a.action, a.reason, a.result, 0, msg);
    ps->sum->orphans_reported++;
    return 0;
}

/* Plans the pod again from the journal as it is now and takes the next step. */
static void job_advance(job *jb)
{
    pass *ps = jb->ps;
    kj_pod *pod = jb->pod;
    kj_err err = {0};
    while (!ps->fatal) {
        if (++jb->steps > 10) {
            record(ps, pod, "plan", "the pod kept changing", "failed", 0, "gave up after 10 steps");
            ps->sum->actions_failed++;
            break;
        }
        kj_pod_sessions s;
        if (kj_journal_count_sessions_of_pod(ps->j, pod->unique_tag, pod->app_selector, &s.open,
                                             &s.closed, &s.last_closed_ms, &err)) {
            fail_pass(ps, &err);
            break;
        }
        int64_t now = kj_now_ms(), seen_terminal = now;
        if (kj_pod_state_of(pod) == KJ_POD_TERMINAL && !pod->finished_ms && !ps->o->dry_run &&
            kj_journal_pod_terminal_since(ps->j, pod->uid, now, &seen_terminal, &err)) {
            fail_pass(ps, &err);
            break;
        }
        kj_plan plan;
        if (ps->p->per_server) {
            kj_claims c = {.sweeper = ps->o->sweeper};
            kj_claims_count(pod, ps->p->finalizer, ps->o->dead_claims, ps->o->n_dead_claims, &c);
            if (jb->steps == 1 && ps->o->on_claim)
                for (size_t i = 0; i < pod->n_finalizers; i++) {
                    const char *id = kj_claim_identity(pod->finalizers[i]);
                    if (id && strcmp(pod->finalizers[i], ps->p->finalizer))
                        ps->o->on_claim(id, ps->o->ud);
                }
            kj_plan_pod_claims(pod, &s, seen_terminal, now, ps->p, &c, &plan);
        } else {
            kj_plan_pod(pod, &s, seen_terminal, now, ps->p, &plan);
        }
        if (!ps->o->dry_run && plan.n && plan.steps[0].kind == KJ_STEP_REPORT_ORPHAN) {
            if (report_orphan(ps, pod, &plan.steps[0], jb->steps == 1) == 0 && plan.due_ms)
                note_due(ps->sum, plan.due_ms);
            break;
        }
        if (jb->steps == 1 && plan.n)
            ps->sum->pods_acted_on++;
        if (plan.n == 0) {
            if (plan.due_ms)
                note_due(ps->sum, plan.due_ms);
            break;
        }
        if (ps->o->dry_run) {
            for (size_t i = 0; i < plan.n; i++) {
                record(ps, pod, kj_step_name(plan.steps[i].kind), plan.steps[i].reason, "planned",
                       0, NULL);
                ps->sum->planned++;
                if (plan.steps[i].kind == KJ_STEP_REPORT_ORPHAN)
                    ps->sum->orphans_running++;
            }
            break;
        }
        const kj_step *st = &plan.steps[0];
        if (st->kind == KJ_STEP_CLOSE_SESSIONS) {
            close_batch b = {0};
            int64_t before = ps->sum->sessions_closed;
            int rc = kj_journal_sessions_of_pod(ps->j, pod->unique_tag, pod->app_selector,
                                                collect_open, &b, &err);
            if (!rc)
                rc = close_sessions(ps, b.ids, b.n, st->close_reason, &err);
            for (size_t i = 0; i < b.n; i++)
                free(b.ids[i]);
            free(b.ids);
            if (rc) {
                fail_pass(ps, &err);
                break;
            }
            char msg[64];
            snprintf(msg, sizeof msg, "%lld session(s) closed (%s)",
                     (long long)(ps->sum->sessions_closed - before), st->close_reason);
            record(ps, pod, kj_step_name(st->kind), st->reason, "ok", 0, msg);
            ps->sum->actions_ok++;
            continue;
        }
        /* The list runs ahead of the mutations. Rather than queue a request
         * per pod in the kube client (memory in proportion to the cluster,
         * and a journal check made long before the request goes out), a pod
         * waits in the backlog and is planned again when its turn comes, so
         * the check is fresh when the request is sent. */
        if (ps->submitted >= ps->max_submitted || ps->stopping) {
            backlog_push(ps, jb);
            return;
        }
        job_submit(jb, st);
        return;
    }
    job_free(jb);
}

static void job_result(job *jb, const kj_kube_result *res);

static void job_done(kj_kube *k, const kj_kube_result *res, void *ud)
{
    (void)k;
    job *jb = ud;
    pass *ps = jb->ps;
    ps->submitted--;
    job_result(jb, res);
    backlog_drain(ps);
}

static void job_result(job *jb, const kj_kube_result *res)
{
    pass *ps = jb->ps;
    kj_reconcile_summary *sum = ps->sum;
    int http = res->status.http;
    if (jb->step.kind == 0) { /* re-read after a conflict */
        if (res->rc == 0 && res->pod) {
            kj_pod *fresh;
            if (!kj_pod_dup(res->pod, &fresh)) {
                kj_pod_free(jb->pod);
                jb->pod = fresh;
                job_advance(jb);
                return;
            }
        } else if (res->rc == KJ_ENOENT) {
            sum->already_gone++;
        } else {
            record(ps, jb->pod, "get", "re-read after a conflict", "failed", http, res->err.msg);
            sum->actions_failed++;
        }
        job_free(jb);
        return;
    }

    const char *action = kj_step_name(jb->step.kind), *reason = jb->step.reason;
    if (res->rc == 0) {
        if (!http)
            http = 200;
        record(ps, jb->pod, action, reason, "ok", http, NULL);
        sum->actions_ok++;
        if (jb->step.kind == KJ_STEP_ADD_FINALIZER)
            sum->finalizers_added++;
        else if (jb->step.kind == KJ_STEP_RELEASE_FINALIZER)
            sum->finalizers_released++;
        else if (jb->step.kind == KJ_STEP_REMOVE_CLAIM)
            sum->claims_removed++;
        else
            sum->pods_deleted++;
        kj_pod *fresh;
        if (res->pod && !kj_pod_dup(res->pod, &fresh)) {
            kj_pod_free(jb->pod);
            jb->pod = fresh;
        }
        /* After a delete the pod is gone or terminating; only our finalizer
         * (if it is still there) keeps it, which the next plan releases. */
        if (jb->step.kind != KJ_STEP_DELETE ||
            kj_pod_has_finalizer(jb->pod, ps->p->finalizer, NULL)) {
            if (jb->step.kind == KJ_STEP_DELETE && !jb->pod->deletion_ms)
                jb->pod->deletion_ms = kj_now_ms();
            job_advance(jb);
            return;
        }
    } else if (res->rc == KJ_ECANCELED) {
        /* The pass was stopped: the request may or may not have been
         * applied; the next pass looks again. */
        record(ps, jb->pod, action, reason, "canceled", http, NULL);
    } else if (res->rc == KJ_ENOENT) {
        /* Someone (another pass, a person) was first: done, not an error. */
        record(ps, jb->pod, action, reason, "gone", http, NULL);
        sum->already_gone++;
    } else if (res->rc == KJ_ECONFLICT && jb->rereads < 5 && !ps->stopping) {
        record(ps, jb->pod, action, reason, "conflict", http, res->status.message);
        sum->conflicts++;
        jb->rereads++;
        kj_step reread = {0};
        job_submit(jb, &reread);
        return;
    } else {
        record(ps, jb->pod, action, reason, "failed", http, res->err.msg);
        sum->actions_failed++;
        kj_log(KJ_LOG_WARN, "reconcile action failed", "pod=%s/%s action=%s http=%d",
               jb->pod->namespace_ ? jb->pod->namespace_ : "?", jb->pod->name, action, http);
    }
    job_free(jb);
}

static void progress(pass *ps)
{
    if (!ps->o->progress)
        return;
    int64_t now = kj_mono_ms();
    if (now < ps->next_progress_ms)
        return;
    ps->next_progress_ms = now + 2000;
    kj_log(KJ_LOG_INFO, "reconcile progress",
           "pods_seen=%lld released=%lld deleted=%lld failed=%lld in_flight=%d",
           (long long)ps->sum->pods_seen, (long long)ps->sum->finalizers_released,
           (long long)ps->sum->pods_deleted, (long long)ps->sum->actions_failed,
           kj_kube_pending(ps->k));
}

static int on_page(const kj_pod *pods, size_t n, int restarted, void *ud)
{
    pass *ps = ud;
    (void)restarted; /* pods seen again are skipped by uid */
    for (size_t i = 0; i < n && !ps->fatal; i++) {
        const kj_pod *pod = &pods[i];
        if (ps->o->only_tag || ps->o->only_app_id) {
            int match =
                (ps->o->only_tag && pod->unique_tag && !strcmp(ps->o->only_tag, pod->unique_tag)) ||
                (ps->o->only_app_id && pod->app_selector &&
                 !strcmp(ps->o->only_app_id, pod->app_selector));
            if (!match)
                continue;
        }
        int fresh = strset_add(&ps->seen_uids, pod->uid ? pod->uid : pod->name);
        if (fresh <= 0)
            continue;
        ps->sum->pods_seen++;
        if (strset_add(&ps->seen_engines, pod->unique_tag) < 0 ||
            strset_add(&ps->seen_engines, pod->app_selector) < 0) {
            kj_err err;
            kj_err_set(&err, KJ_ENOMEM, "reconciler: out of memory");
            fail_pass(ps, &err);
            break;
        }
        job *jb = calloc(1, sizeof *jb);
        if (!jb || kj_pod_dup(pod, &jb->pod)) {
            free(jb);
            kj_err err;
            kj_err_set(&err, KJ_ENOMEM, "reconciler: out of memory");
            fail_pass(ps, &err);
            break;
        }
        jb->ps = ps;
        job_advance(jb);
    }
    progress(ps);
    return ps->fatal ? 1 : 0;
}

static void list_done(kj_kube *k, const kj_kube_result *res, void *ud)
{
    (void)k;
    pass *ps = ud;
    if (res->rc) {
        ps->lists_failed++;
        ps->list_err = res->err;
        kj_log(KJ_LOG_ERROR, "listing pods failed", "error=\"%s\"", res->err.msg);
    }
}

/* Open sessions whose engine pod was not in a complete listing. */
typedef struct missing_ctx {
    pass *ps;
    close_batch b;
    int64_t now;
} missing_ctx;

/* A session is in scope when its engine namespace is one this pass listed
 * (sessions that name no namespace are assumed to be). */
static int in_scope(const pass *ps, const char *ns)
{
    if (!ns)
        return 1;
    if (!ps->p->n_namespaces)
        return ps->o->default_namespace && !strcmp(ns, ps->o->default_namespace);
    for (size_t i = 0; i < ps->p->n_namespaces; i++)
        if (!strcmp(ps->p->namespaces[i], ns))
            return 1;
    return 0;
}

/* Since when a session's engine pod has been missing. Without any engine
 * known yet, only since the journal last heard of it: after an outage
 * Kyuubi's retried "created" can arrive well before its "opened". */
static int64_t missing_since(const kj_session *s)
{
    int engine_known = (s->engine_tag && *s->engine_tag) || (s->engine_id && *s->engine_id);
    return engine_known || s->created_ms > s->recorded_ms ? s->created_ms : s->recorded_ms;
}

static int find_missing(const kj_session *s, void *ud)
{
    missing_ctx *m = ud;
    if (!in_scope(m->ps, s->engine_namespace) || strset_has(&m->ps->seen_engines, s->engine_tag) ||
        strset_has(&m->ps->seen_engines, s->engine_id) ||
        !kj_plan_missing_engine(missing_since(s), m->now, m->ps->p))
        return 0;
    return collect_open(s, &m->b);
}

static int close_missing_engines(pass *ps, kj_err *err)
{
    missing_ctx m = {.ps = ps, .now = kj_now_ms()};
    kj_session_filter f = {.state = KJ_SESSION_OPEN};
    int rc = kj_journal_sessions(ps->j, &f, find_missing, &m, err);
    const char *reason = "no engine pod after the submit grace";
    for (size_t i = 0; !rc && i < m.b.n; i++) {
        kj_pod none = {.name = "-"};
        char msg[KJ_EVENT_FIELD_MAX + 16];
        snprintf(msg, sizeof msg, "session %s", m.b.ids[i]);
        record(ps, &none, "close_session", reason, ps->o->dry_run ? "planned" : "ok", 0, msg);
        if (ps->o->dry_run)
            ps->sum->planned++;
        else
            ps->sum->actions_ok++;
    }
    if (!rc && m.b.n && !ps->o->dry_run)
        rc = close_sessions(ps, m.b.ids, m.b.n, "engine_missing", err);
    for (size_t i = 0; i < m.b.n; i++)
        free(m.b.ids[i]);
    free(m.b.ids);
    return rc;
}

int kj_reconcile(kj_journal *j, kj_kube *k, const kj_policy *p, const kj_reconcile_opts *o,
                 kj_reconcile_summary *sum, kj_err *err)
{
    pass ps = {.j = j, .k = k, .p = p, .o = o, .sum = sum, .flushed_ms = kj_mono_ms()};
    /* Enough queued behind the requests in flight that the client never
     * waits for the next one; few enough that memory does not grow with
     * the number of pods. */
    ps.max_submitted = 4 * (p->concurrency > 0 ? p->concurrency : 1) + 16;
    memset(sum, 0, sizeof *sum);
    int rc = 0;
    if (!o->dry_run && (rc = kj_journal_run_begin_as(j, o->trigger ? o->trigger : "manual", 0,
                                                     o->identity, &sum->run_id, err)))
        return rc;

    char selector[1024];
    const char *sel = p->selector;
    if (o->only_tag || o->only_app_id) {
        snprintf(selector, sizeof selector, "%s,%s=%s", p->selector,
                 o->only_tag ? "kyuubi-unique-tag" : "spark-app-selector",
                 o->only_tag ? o->only_tag : o->only_app_id);
        sel = selector;
    }
    size_t n_ns = o->pods ? 0 : p->n_namespaces ? p->n_namespaces : 1;
    if (o->pods)
        on_page(o->pods, o->n_pods, 0, &ps);
    for (size_t i = 0; i < n_ns; i++) {
        kj_kube_req r = KJ_KUBE_REQ_INIT;
        r.op = KJ_KUBE_LIST_PODS;
        r.namespace_ = p->n_namespaces ? p->namespaces[i] : NULL;
        r.label_selector = sel;
        r.limit = 500;
        r.on_page = on_page;
        r.timeout_ms = o->deadline_ms ? o->deadline_ms : 600000;
        if ((rc = kj_kube_submit(k, &r, list_done, &ps)) < 0) {
            kj_err_set(err, rc, "reconciler: cannot queue the pod list");
            goto out;
        }
    }
    /* Run in slices, so that a stop request or the deadline is seen soon. */
    int64_t deadline = kj_mono_ms() + (o->deadline_ms ? o->deadline_ms : 600000);
    while ((rc = kj_kube_run(k, 250)) == KJ_ETIMEDOUT) {
        int cancelled = o->cancel && atomic_load(o->cancel);
        if (!cancelled && kj_mono_ms() < deadline)
            continue;
        ps.stopping = 1;
        kj_kube_cancel(k);
        rc = cancelled ? kj_err_set(err, KJ_ECANCELED, "reconciler: the pass was stopped")
                       : kj_err_set(err, KJ_ETIMEDOUT,
                                    "reconciler: the pass did not finish within its deadline");
        goto out;
    }
    sum->list_complete = !ps.lists_failed && !ps.fatal;
    if (ps.fenced) {
        rc = kj_err_set(err, KJ_ECANCELED, "reconciler: the lease was lost");
        goto out;
    }
    if (ps.fatal) {
        rc = kj_err_set(err, ps.fatal_err.code, "%s", ps.fatal_err.msg);
        goto out;
    }
    if (ps.lists_failed) {
        rc = kj_err_set(err, ps.list_err.code ? ps.list_err.code : KJ_EUNAVAIL, "%s",
                        ps.list_err.msg);
        goto out;
    }
    if (!o->only_tag && !o->only_app_id && !o->pods)
        rc = close_missing_engines(&ps, err);
    if (!rc && sum->actions_failed)
        rc = kj_err_set(err, KJ_EIO, "reconciler: %lld action(s) failed",
                        (long long)sum->actions_failed);
out:
    flush_actions(&ps);
    if (!o->dry_run && sum->run_id) {
        const char *status = rc == 0 ? "converged" : sum->actions_failed ? "failed" : "incomplete";
        kj_journal_run_end(j, sum->run_id, status, sum->pods_seen, sum->actions_ok,
                           sum->actions_failed, NULL);
    }
    if (!rc && ps.fatal)
        rc = kj_err_set(err, ps.fatal_err.code, "%s", ps.fatal_err.msg);
    strset_free(&ps.seen_engines);
    strset_free(&ps.seen_uids);
    backlog_free(&ps);
    free(ps.pending);
    return rc;
}
