/* reconcile.c - kjournald's reconciler thread (see reconcile.h). */
#include "reconcile.h"

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

struct kjd_reconciler {
    char *journal_path;
    const kj_kube_config *cfg;
    const kj_policy *pol;
    int64_t resync_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *queue[QUEUE_MAX];
    size_t n_queued;
    int overflow, stopping;
    atomic_int cancel;   /* set by kjd_reconciler_stop(): ends the pass in hand */
    int64_t next_due_ms; /* epoch ms: the first waiting step of the passes so far */
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
           "closed=%lld orphans=%lld running_orphans=%lld waiting=%lld failed=%lld",
           trigger, session ? session : "-", (long long)s->run_id, (long long)s->pods_seen,
           (long long)s->finalizers_released, (long long)s->finalizers_added,
           (long long)s->pods_deleted, (long long)s->sessions_closed,
           (long long)s->orphans_reported, (long long)s->orphans_running, (long long)s->waiting,
           (long long)s->actions_failed);
}

static int full_pass(kjd_reconciler *r, kj_journal *j, kj_kube *k, const char *trigger)
{
    kj_reconcile_opts o = {.trigger = trigger,
                           .default_namespace = kj_kube_config_namespace(r->cfg),
                           .progress = 1,
                           .cancel = &r->cancel};
    kj_reconcile_summary s;
    kj_err err = {0};
    r->next_due_ms = 0; /* a full pass sees every waiting pod again */
    int rc = kj_reconcile(j, k, r->pol, &o, &s, &err);
    log_pass(trigger, NULL, rc, &s, &err);
    note_due(r, &s);
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
    kj_reconcile_opts o = {.trigger = "session",
                           .cancel = &r->cancel,
                           .default_namespace = kj_kube_config_namespace(r->cfg),
                           .only_tag = *e.tag ? e.tag : NULL,
                           .only_app_id = *e.app_id ? e.app_id : NULL};
    kj_reconcile_summary s;
    int rc = kj_reconcile(j, k, r->pol, &o, &s, &err);
    log_pass("session", session, rc, &s, &err);
    note_due(r, &s);
}

static void *run(void *arg)
{
    kjd_reconciler *r = arg;
    kj_journal *j = NULL;
    kj_kube *k = NULL;
    kj_err err = {0};
    char q[600];
    if (kj_journal_open(r->journal_path, KJ_JOURNAL_NOCREATE, &j, &err) ||
        kj_kube_new(r->cfg, &k, &err)) {
        kj_log(KJ_LOG_ERROR, "reconciler cannot start", "error=%s", kj_logq(q, sizeof q, err.msg));
        goto out;
    }
    kj_log(KJ_LOG_INFO, "recovery pass starting", "server=%s source=%s",
           kj_kube_config_server(r->cfg), kj_logq(q, sizeof q, kj_kube_config_source(r->cfg)));
    int64_t next_full = kj_mono_ms() + (full_pass(r, j, k, "recovery") ? RETRY_MS : r->resync_ms);
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (r->next_due_ms) {
            int64_t due = kj_mono_ms() + r->next_due_ms - kj_now_ms();
            int64_t earliest = kj_mono_ms() + DUE_MIN_MS;
            due = due < earliest ? earliest : due;
            if (due < next_full)
                next_full = due;
        }
        if (!r->n_queued && !r->overflow) {
            int64_t wait = next_full - kj_mono_ms();
            if (wait > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += wait / 1000;
                ts.tv_nsec += (wait % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&r->cv, &r->mu, &ts);
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
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
out:
    kj_kube_free(k);
    kj_journal_close(j);
    return NULL;
}

int kjd_reconciler_start(const char *journal_path, const kj_kube_config *cfg, const kj_policy *pol,
                         int64_t resync_ms, kjd_reconciler **out, kj_err *err)
{
    kjd_reconciler *r = calloc(1, sizeof *r);
    if (!r || !(r->journal_path = strdup(journal_path))) {
        free(r);
        return kj_err_set(err, KJ_ENOMEM, "reconciler: out of memory");
    }
    r->cfg = cfg;
    r->pol = pol;
    r->resync_ms = resync_ms;
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
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    for (size_t i = 0; i < r->n_queued; i++)
        free(r->queue[i]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->journal_path);
    free(r);
}
