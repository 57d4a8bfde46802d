/* reconcile.c - kjournald's reconciler thread (see reconcile.h). */
#include "reconcile.h"
#include "informer.h"

#include "reconciler/claims.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Past this many queued sessions a full pass is cheaper than one per session. */
#define QUEUE_MAX 256
#define RETRY_MS 10000
/* A pass for a pod whose grace or retain period ran out comes at most this often. */
#define DUE_MIN_MS 5000

/* A standby looks at the fence this often. */
#define STANDBY_POLL_MS 200
/* Other instances whose claims a sweeper follows (per server). */
#define PEERS_MAX 256

struct kjd_reconciler {
    char *journal_path;
    const kj_kube_config *cfg;
    const kj_policy *pol;
    int64_t resync_ms;
    kjd_reconciler_opts o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *queue[QUEUE_MAX];
    size_t n_queued;
    int overflow, stopping;
    atomic_int cancel;   /* set by kjd_reconciler_stop(): ends the pass in hand */
    kj_kube *kw;         /* the watch's client, while the thread waits on it (under mu) */
    int64_t next_due_ms; /* epoch ms: the first waiting step of the passes so far */
    /* per server: identities seen in other instances' claims, and the
     * claims of those found dead (for the sweeper's next pass) */
    char *peers[PEERS_MAX];
    size_t n_peers;
    char *dead[PEERS_MAX];
    size_t n_dead;
};

/* Live orphans kept running, as of the last full pass that listed every
 * namespace; -1 until there is one. A process has one reconciler thread. */
static atomic_llong running_orphans = -1;

int64_t kjd_reconciler_running_orphans(void)
{
    return atomic_load(&running_orphans);
}

/* The pass after one that saw waiting pods comes when the first is due. */
static void note_due(kjd_reconciler *r, const kj_reconcile_summary *s)
{
    if (s->next_due_ms && (!r->next_due_ms || s->next_due_ms < r->next_due_ms))
        r->next_due_ms = s->next_due_ms;
}

typedef struct engine_of {
    char tag[KJ_EVENT_FIELD_MAX + 1], app_id[KJ_EVENT_FIELD_MAX + 1];
} engine_of;

static int copy_engine(const kj_session *s, void *ud)
{
    engine_of *e = ud;
    snprintf(e->tag, sizeof e->tag, "%s", s->engine_tag ? s->engine_tag : "");
    snprintf(e->app_id, sizeof e->app_id, "%s", s->engine_id ? s->engine_id : "");
    return 0;
}

static void log_pass(const char *trigger, const char *session, int rc,
                     const kj_reconcile_summary *s, const kj_err *err)
{
    char q[600];
    if (rc == KJ_ECANCELED) {
        kj_log(KJ_LOG_INFO, "reconcile pass stopped", "trigger=%s", trigger);
        return;
    }
    if (rc && rc != KJ_EIO) {
        kj_log(KJ_LOG_ERROR, "reconcile pass failed", "trigger=%s error=%s", trigger,
               kj_logq(q, sizeof q, err->msg));
        return;
    }
    if (!s->pods_acted_on && !rc && !strcmp(trigger, "resync"))
        return;
    kj_log(rc ? KJ_LOG_WARN : KJ_LOG_INFO, "reconcile pass done",
           "trigger=%s session=%s run=%lld pods=%lld released=%lld added=%lld deleted=%lld "
           "closed=%lld orphans=%lld running_orphans=%lld waiting=%lld failed=%lld "
           "claims_removed=%lld",
           trigger, session ? session : "-", (long long)s->run_id, (long long)s->pods_seen,
           (long long)s->finalizers_released, (long long)s->finalizers_added,
           (long long)s->pods_deleted, (long long)s->sessions_closed,
           (long long)s->orphans_reported, (long long)s->orphans_running, (long long)s->waiting,
           (long long)s->actions_failed, (long long)s->claims_removed);
}

static void note_peer(const char *identity, void *ud)
{
    kjd_reconciler *r = ud;
    for (size_t i = 0; i < r->n_peers; i++)
        if (!strcmp(r->peers[i], identity))
            return;
    char *s = r->n_peers < PEERS_MAX ? strdup(identity) : NULL;
    if (s)
        r->peers[r->n_peers++] = s;
}

typedef struct lease_read {
    int done, rc;
    kj_lease l;
} lease_read;

static void lease_read_done(kj_kube *k, const kj_kube_result *res, void *ud)
{
    (void)k;
    lease_read *lr = ud;
    lr->done = 1;
    lr->rc = res->rc;
    if (res->lease)
        lr->l = *res->lease;
}

/*
 * The sweeper's view of the peers: a peer is dead when its Lease
 * kjournald-<identity> is gone, or has been expired (renewTime + duration,
 * by this host's clock: the grace, minutes, dwarfs any skew) for longer than
 * the instance grace. A peer whose Lease cannot be read is not dead.
 */
static int64_t find_dead(kjd_reconciler *r, kj_kube *k)
{
    int64_t next = 0; /* when the first live peer would become dead */
    for (size_t i = 0; i < r->n_dead; i++)
        free(r->dead[i]);
    r->n_dead = 0;
    char name[300];
    lease_read *lr = calloc(r->n_peers ? r->n_peers : 1, sizeof *lr);
    if (!lr)
        return 0; /* nobody found dead this time */
    for (size_t i = 0; i < r->n_peers; i++) {
        kj_kube_req q = KJ_KUBE_REQ_INIT;
        snprintf(name, sizeof name, KJ_INSTANCE_LEASE_PREFIX "%s", r->peers[i]);
        q.op = KJ_KUBE_GET_LEASE;
        q.namespace_ = r->o.lease_namespace;
        q.name = name;
        q.timeout_ms = 10000;
        if (kj_kube_submit(k, &q, lease_read_done, &lr[i]) < 0)
            lr[i].rc = KJ_ENOMEM, lr[i].done = 1;
    }
    kj_kube_run(k, 15000);
    kj_kube_cancel(k);
    int64_t now = kj_now_ms();
    for (size_t i = 0; i < r->n_peers; i++) {
        int64_t renewed = lr[i].l.renew_ms ? lr[i].l.renew_ms : lr[i].l.acquire_ms;
        int dead = lr[i].rc == KJ_ENOENT ||
                   (lr[i].rc == 0 &&
                    renewed + (int64_t)lr[i].l.duration_s * 1000 + r->o.instance_grace_ms < now);
        char claim[300];
        kj_err err = {0};
        if (!dead && lr[i].rc == 0) {
            int64_t due =
                renewed + (int64_t)lr[i].l.duration_s * 1000 + r->o.instance_grace_ms + 1000;
            if (!next || due < next)
                next = due;
        }
        if (!dead || kj_claim_name(r->peers[i], claim, sizeof claim, &err))
            continue;
        if ((r->dead[r->n_dead] = strdup(claim))) {
            r->n_dead++;
            kj_log(KJ_LOG_INFO, "instance dead: its claims go", "instance=%s lease=%s", r->peers[i],
                   lr[i].rc == KJ_ENOENT ? "gone" : "expired");
        }
    }
    free(lr);
    /* The pass that follows collects the peers again: one whose claims are
     * all gone is not read any more. */
    for (size_t i = 0; i < r->n_peers; i++)
        free(r->peers[i]);
    r->n_peers = 0;
    return next;
}

static int sweeping(const kjd_reconciler *r)
{
    if (!r->o.sweeper_fence)
        return 0;
    int64_t f = atomic_load(r->o.sweeper_fence);
    return f && kj_mono_ms() < f;
}

/* What every pass of this instance shares: who runs it, its fence, and the
 * per-server settings (a sweeper's own fence covers both of its Leases). */
static kj_reconcile_opts pass_opts(kjd_reconciler *r, const char *trigger, int sweeper)
{
    return (kj_reconcile_opts){.trigger = trigger,
                               .default_namespace = kj_kube_config_namespace(r->cfg),
                               .cancel = &r->cancel,
                               .identity = r->o.identity,
                               .fence = sweeper ? r->o.sweeper_fence : r->o.fence,
                               .sweeper = sweeper,
                               .dead_claims = (const char *const *)r->dead,
                               .n_dead_claims = sweeper ? r->n_dead : 0,
                               .on_claim = note_peer,
                               .ud = r};
}

static int full_pass(kjd_reconciler *r, kj_journal *j, kj_kube *k, const char *trigger)
{
    int sweeper = sweeping(r);
    int64_t peer_due = sweeper ? find_dead(r, k) : 0;
    kj_reconcile_opts o = pass_opts(r, trigger, sweeper);
    o.progress = 1;
    kj_reconcile_summary s;
    kj_err err = {0};
    r->next_due_ms = 0; /* a full pass sees every waiting pod again */
    int rc = kj_reconcile(j, k, r->pol, &o, &s, &err);
    log_pass(trigger, NULL, rc, &s, &err);
    note_due(r, &s);
    if (peer_due && (!r->next_due_ms || peer_due < r->next_due_ms))
        r->next_due_ms = peer_due; /* a peer's claims go as soon as it may be dead */
    if (s.list_complete && (rc == 0 || rc == KJ_EIO))
        atomic_store(&running_orphans, s.orphans_running);
    return rc;
}

static void session_pass(kjd_reconciler *r, kj_journal *j, kj_kube *k, const char *session)
{
    engine_of e;
    memset(&e, 0, sizeof e);
    kj_err err = {0};
    if (kj_journal_session_get(j, session, copy_engine, &e, &err) || (!*e.tag && !*e.app_id))
        return; /* no engine known yet: the resync or a later event covers it */
    kj_reconcile_opts o = pass_opts(r, "event", 0);
    o.only_tag = *e.tag ? e.tag : NULL;
    o.only_app_id = *e.app_id ? e.app_id : NULL;
    kj_reconcile_summary s;
    int rc = kj_reconcile(j, k, r->pol, &o, &s, &err);
    log_pass("event", session, rc, &s, &err);
    note_due(r, &s);
}

/* Waits (mu held, released meanwhile) for wait ms at most: on the watch's
 * client when it has a stream or a list to drive, which also gathers the
 * pods that changed; else on the condition variable. Either wakes at once
 * for kjd_reconciler_notify() and _stop(). */
static void wait_for_work(kjd_reconciler *r, kj_kube *kw, int64_t wait)
{
    if (wait > 60000)
        wait = 60000;
    if (kw && kj_kube_pending(kw) > 0) {
        r->kw = kw;
        pthread_mutex_unlock(&r->mu);
        kj_kube_poll(kw, (int)wait);
        pthread_mutex_lock(&r->mu);
        r->kw = NULL;
        return;
    }
    struct timespec ts = kj_deadline_in(wait);
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

/* The pods the watch saw change, acted on (trigger "watch"). */
static void watch_pass(kjd_reconciler *r, kjd_informer *inf, kj_journal *j, kj_kube *k)
{
    int64_t due = 0;
    if (!inf)
        return;
    kj_reconcile_opts base = pass_opts(r, "watch", sweeping(r));
    kjd_informer_react(inf, j, k, &base, &due);
    if (due && (!r->next_due_ms || due < r->next_due_ms))
        r->next_due_ms = due;
}

static kjd_informer *start_informer(kjd_reconciler *r, kj_kube **kw)
{
    kj_err err = {0};
    char q[600];
    kjd_informer *inf = NULL;
    if (kj_kube_new(r->cfg, kw, &err) || kj_kube_set_user_agent(*kw, r->o.user_agent) ||
        kjd_informer_start(*kw, r->pol, kj_kube_config_namespace(r->cfg), 0, &inf, &err)) {
        kj_log(KJ_LOG_ERROR, "watch cannot start; the resync remains", "error=%s",
               kj_logq(q, sizeof q, err.msg));
        kj_kube_free(*kw);
        *kw = NULL;
    }
    return inf;
}

static int holding(const kjd_reconciler *r)
{
    if (!r->o.fence)
        return 1;
    int64_t fence = atomic_load(r->o.fence);
    return fence && kj_mono_ms() < fence;
}

static void drop_queue(kjd_reconciler *r)
{
    for (size_t i = 0; i < r->n_queued; i++)
        free(r->queue[i]);
    r->n_queued = 0;
    r->overflow = 0;
}

/* Under r->mu: waits until this process holds the lease; 0 if told to stop
 * first. What is queued meanwhile is dropped: a full pass follows. */
static int standby_wait(kjd_reconciler *r)
{
    int logged = 0;
    while (!r->stopping && !holding(r)) {
        if (!logged++)
            kj_log(KJ_LOG_INFO, "reconciler standby: waiting for the lease", NULL);
        drop_queue(r);
        struct timespec ts = kj_deadline_in(STANDBY_POLL_MS);
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    drop_queue(r);
    return !r->stopping;
}

static void *run(void *arg)
{
    kjd_reconciler *r = arg;
    kj_journal *j = NULL;
    kj_kube *k = NULL, *kw = NULL;
    kjd_informer *inf = NULL;
    kj_err err = {0};
    char q[600];
    if (kj_journal_open(r->journal_path, KJ_JOURNAL_NOCREATE, &j, &err) ||
        kj_kube_new(r->cfg, &k, &err) || kj_kube_set_user_agent(k, r->o.user_agent)) {
        kj_log(KJ_LOG_ERROR, "reconciler cannot start", "error=%s", kj_logq(q, sizeof q, err.msg));
        goto out;
    }
    pthread_mutex_lock(&r->mu);
    if (!standby_wait(r)) {
        pthread_mutex_unlock(&r->mu);
        goto out;
    }
    pthread_mutex_unlock(&r->mu);
    kj_log(KJ_LOG_INFO, "recovery pass starting", "server=%s source=%s",
           kj_kube_config_server(r->cfg), kj_logq(q, sizeof q, kj_kube_config_source(r->cfg)));
    int64_t next_full = kj_mono_ms() + (full_pass(r, j, k, "startup") ? RETRY_MS : r->resync_ms);
    if (!atomic_load(&r->cancel))
        inf = start_informer(r, &kw);
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (!holding(r)) {
            /* Lost the lease: wait as a standby; the new term begins with
             * a full pass, which covers whatever was told meanwhile. */
            if (!standby_wait(r))
                break;
            pthread_mutex_unlock(&r->mu);
            next_full = kj_mono_ms() + (full_pass(r, j, k, "takeover") ? RETRY_MS : r->resync_ms);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        if (r->next_due_ms) {
            int64_t due = kj_mono_ms() + r->next_due_ms - kj_now_ms();
            int64_t earliest = kj_mono_ms() + DUE_MIN_MS;
            due = due < earliest ? earliest : due;
            if (due < next_full)
                next_full = due;
        }
        if (!r->n_queued && !r->overflow && !kjd_informer_pending(inf)) {
            int64_t wait = next_full - kj_mono_ms();
            if (wait > 0) {
                wait_for_work(r, kw, wait);
                kjd_informer_publish(inf);
                continue;
            }
        }
        /* Take the whole queue, then work without the lock. */
        char *batch[QUEUE_MAX];
        size_t n = r->n_queued;
        int full = r->overflow || kj_mono_ms() >= next_full;
        memcpy(batch, r->queue, n * sizeof *batch);
        r->n_queued = 0;
        r->overflow = 0;
        pthread_mutex_unlock(&r->mu);
        if (full)
            next_full = kj_mono_ms() + (full_pass(r, j, k, "resync") ? RETRY_MS : r->resync_ms);
        for (size_t i = 0; i < n; i++) {
            if (!full)
                session_pass(r, j, k, batch[i]);
            free(batch[i]);
        }
        watch_pass(r, inf, j, k);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
out:
    kj_kube_free(kw); /* before the informer: its callbacks run with KJ_ECANCELED */
    kjd_informer_free(inf);
    kj_kube_free(k);
    kj_journal_close(j);
    return NULL;
}

int kjd_reconciler_start(const char *journal_path, const kjd_reconciler_opts *o,
                         kjd_reconciler **out, kj_err *err)
{
    kjd_reconciler *r = calloc(1, sizeof *r);
    if (!r || !(r->journal_path = strdup(journal_path))) {
        free(r);
        return kj_err_set(err, KJ_ENOMEM, "reconciler: out of memory");
    }
    r->o = *o;
    r->cfg = o->cfg;
    r->pol = o->pol;
    r->resync_ms = o->resync_ms;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, run, r)) {
        free(r->journal_path);
        free(r);
        return kj_err_set(err, KJ_ENOMEM, "reconciler: cannot start its thread");
    }
    *out = r;
    return 0;
}

void kjd_reconciler_notify(kjd_reconciler *r, const char *session_id)
{
    if (!r || !session_id)
        return;
    pthread_mutex_lock(&r->mu);
    int known = 0;
    for (size_t i = 0; i < r->n_queued && !known; i++)
        known = !strcmp(r->queue[i], session_id);
    if (!known) {
        char *s = r->n_queued < QUEUE_MAX ? strdup(session_id) : NULL;
        if (s)
            r->queue[r->n_queued++] = s;
        else
            r->overflow = 1;
    }
    pthread_cond_signal(&r->cv);
    kj_kube_wakeup(r->kw);
    pthread_mutex_unlock(&r->mu);
}

void kjd_reconciler_notify_all(kjd_reconciler *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->overflow = 1; /* a full pass */
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void kjd_reconciler_stop(kjd_reconciler *r)
{
    if (!r)
        return;
    atomic_store(&r->cancel, 1);
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_cond_signal(&r->cv);
    kj_kube_wakeup(r->kw);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    for (size_t i = 0; i < r->n_queued; i++)
        free(r->queue[i]);
    for (size_t i = 0; i < r->n_peers; i++)
        free(r->peers[i]);
    for (size_t i = 0; i < r->n_dead; i++)
        free(r->dead[i]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->journal_path);
    free(r);
}
