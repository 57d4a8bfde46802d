/* informer.c - kjournald's watch on the engine pods (see informer.h). */
#include "informer.h"

#include <stdlib.h>
#include <string.h>

/* Reaction latency buckets, seconds: from the event's arrival to the end of
 * the pass that acted on it. */
static const double lat_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define LAT_N (sizeof lat_bounds / sizeof *lat_bounds)

/* What /metrics shows, published by the reconciler thread. */
static struct {
    atomic_int started;
    atomic_ullong lists, relists, watches, restarts, expired, errors;
    atomic_ullong events[KJ_WATCH_TYPES];
    atomic_ullong lat[LAT_N + 1];
    atomic_ullong lat_sum_us;
    atomic_ullong reactions, passes;
} g;

typedef struct change {
    kj_pod *pod;
    int64_t recv_ms; /* mono: when the first unhandled change of this pod arrived */
} change;

struct kjd_informer {
    kj_reflector *refl[KJ_MAX_NAMESPACES];
    size_t n_refl;
    const kj_policy *pol;
    change *v;
    size_t n, cap;
    int oom; /* a change could not be kept: the next resync covers it */
};

/* Keeps the newest version of the pod (by uid) for the next react. */
static void keep(kjd_informer *inf, const kj_pod *pod, int deleted)
{
    if (!pod->uid)
        return;
    kj_pod *copy = NULL;
    if (kj_pod_dup(pod, &copy)) {
        inf->oom = 1;
        return;
    }
    if (deleted) {
        /* gone from the API: whatever it says, it holds nothing any more */
        if (!copy->deletion_ms)
            copy->deletion_ms = kj_now_ms();
        for (size_t i = 0; i < copy->n_finalizers; i++)
            free(copy->finalizers[i]);
        copy->n_finalizers = 0;
    }
    for (size_t i = inf->n; i-- > 0;)
        if (!strcmp(inf->v[i].pod->uid, copy->uid)) {
            kj_pod_free(inf->v[i].pod);
            inf->v[i].pod = copy;
            return;
        }
    if (kj_grow((void **)&inf->v, &inf->cap, inf->n + 1, sizeof *inf->v)) {
        kj_pod_free(copy);
        inf->oom = 1;
        return;
    }
    inf->v[inf->n++] = (change){copy, kj_mono_ms()};
}

static void on_list(const kj_pod *pods, size_t n, int relist, void *ud)
{
    /* The first list too: what changed between the start-up pass and the
     * watch shows only here. Pods with nothing to do cost a journal lookup. */
    (void)relist;
    kjd_informer *inf = ud;
    for (size_t i = 0; i < n; i++)
        keep(inf, &pods[i], 0);
}

static void on_event(const kj_watch_event *ev, void *ud)
{
    kjd_informer *inf = ud;
    if (ev->pod)
        keep(inf, ev->pod, ev->type == KJ_WATCH_DELETED);
}

int kjd_informer_start(kj_kube *kw, const kj_policy *pol, const char *default_ns,
                       int watch_timeout_s, kjd_informer **out, kj_err *err)
{
    *out = NULL;
    kjd_informer *inf = calloc(1, sizeof *inf);
    if (!inf)
        return kj_err_set(err, KJ_ENOMEM, "informer: out of memory");
    inf->pol = pol;
    size_t n_ns = pol->n_namespaces ? pol->n_namespaces : 1;
    for (size_t i = 0; i < n_ns; i++) {
        kj_reflector_opts o = {.namespace_ = pol->n_namespaces ? pol->namespaces[i] : default_ns,
                               .label_selector = pol->selector,
                               .watch_timeout_s = watch_timeout_s,
                               .on_list = on_list,
                               .on_event = on_event,
                               .ud = inf};
        int rc = kj_reflector_start(kw, &o, &inf->refl[inf->n_refl], err);
        if (rc < 0) {
            kjd_informer_free(inf);
            return rc;
        }
        inf->n_refl++;
    }
    atomic_store(&g.started, 1);
    *out = inf;
    return 0;
}

size_t kjd_informer_pending(const kjd_informer *inf)
{
    return inf ? inf->n : 0;
}

void kjd_informer_publish(const kjd_informer *inf)
{
    if (!inf)
        return;
    kj_reflector_stats sum;
    memset(&sum, 0, sizeof sum);
    for (size_t i = 0; i < inf->n_refl; i++) {
        kj_reflector_stats s;
        kj_reflector_get_stats(inf->refl[i], &s);
        sum.lists += s.lists;
        sum.relists += s.relists;
        sum.watches += s.watches;
        sum.restarts += s.restarts;
        sum.expired += s.expired;
        sum.errors += s.errors;
        for (int t = 0; t < KJ_WATCH_TYPES; t++)
            sum.events[t] += s.events[t];
    }
    atomic_store(&g.lists, sum.lists);
    atomic_store(&g.relists, sum.relists);
    atomic_store(&g.watches, sum.watches);
    atomic_store(&g.restarts, sum.restarts);
    atomic_store(&g.expired, sum.expired);
    atomic_store(&g.errors, sum.errors);
    for (int t = 0; t < KJ_WATCH_TYPES; t++)
        atomic_store(&g.events[t], sum.events[t]);
}

static void observe(int64_t ms)
{
    double s = (double)ms / 1000.0;
    size_t b = 0;
    while (b < LAT_N && s > lat_bounds[b])
        b++;
    atomic_fetch_add(&g.lat[b], 1);
    atomic_fetch_add(&g.lat_sum_us, (unsigned long long)(ms < 0 ? 0 : ms) * 1000ULL);
}

/* 1 when the planner has a step for the pod now (a live orphan's report is
 * the resync's); *due the time a waiting step becomes due. Per server, the
 * claims decide, which only the pass reads: every change goes to it. */
static int has_step(kj_journal *j, const kj_policy *pol, const kj_pod *pod, int64_t *due,
                    kj_err *err)
{
    if (pol->per_server)
        return 1;
    kj_pod_sessions s;
    int rc = kj_journal_count_sessions_of_pod(j, pod->unique_tag, pod->app_selector, &s.open,
                                              &s.closed, &s.last_closed_ms, err);
    if (rc)
        return rc < 0 ? rc : KJ_EIO;
    int64_t now = kj_now_ms();
    kj_plan plan;
    /* terminal since: now at the latest; the executor looks it up */
    kj_plan_pod(pod, &s, now, now, pol, &plan);
    *due = plan.due_ms;
    for (size_t i = 0; i < plan.n; i++)
        if (plan.steps[i].kind != KJ_STEP_REPORT_ORPHAN)
            return 1;
    return 0;
}

int kjd_informer_react(kjd_informer *inf, kj_journal *j, kj_kube *k, const kj_reconcile_opts *base,
                       int64_t *next_due_ms)
{
    int rc = 0;
    kj_err err = {0};
    char q[600];
    *next_due_ms = 0;
    kjd_informer_publish(inf);
    if (!inf->n)
        return 0;
    change *batch = inf->v;
    size_t n = inf->n;
    inf->v = NULL;
    inf->n = inf->cap = 0;
    kj_pod *act = calloc(n, sizeof *act);
    int64_t *recv = calloc(n, sizeof *recv);
    size_t n_act = 0;
    if (!act || !recv) {
        rc = kj_err_set(&err, KJ_ENOMEM, "informer: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t due = 0;
        int step = has_step(j, inf->pol, batch[i].pod, &due, &err);
        if (step < 0) {
            rc = step;
            goto out;
        }
        if (due && (!*next_due_ms || due < *next_due_ms))
            *next_due_ms = due;
        if (step) {
            act[n_act] = *batch[i].pod; /* shallow: the batch keeps ownership */
            recv[n_act++] = batch[i].recv_ms;
        }
    }
    if (n_act) {
        kj_reconcile_opts o = *base;
        o.trigger = "watch";
        o.pods = act;
        o.n_pods = n_act;
        kj_reconcile_summary sum;
        rc = kj_reconcile(j, k, inf->pol, &o, &sum, &err);
        int64_t now = kj_mono_ms();
        for (size_t i = 0; i < n_act; i++)
            observe(now - recv[i]);
        atomic_fetch_add(&g.reactions, n_act);
        atomic_fetch_add(&g.passes, 1);
        if (sum.next_due_ms && (!*next_due_ms || sum.next_due_ms < *next_due_ms))
            *next_due_ms = sum.next_due_ms;
        if (rc != KJ_ECANCELED)
            kj_log(rc ? KJ_LOG_WARN : KJ_LOG_INFO, "reconcile pass done",
                   "trigger=watch run=%lld pods=%zu released=%lld added=%lld deleted=%lld "
                   "closed=%lld failed=%lld",
                   (long long)sum.run_id, n_act, (long long)sum.finalizers_released,
                   (long long)sum.finalizers_added, (long long)sum.pods_deleted,
                   (long long)sum.sessions_closed, (long long)sum.actions_failed);
    }
out:
    if (rc < 0 && rc != KJ_ECANCELED && rc != KJ_EIO)
        kj_log(KJ_LOG_ERROR, "watch: acting on changed pods failed", "error=%s",
               kj_logq(q, sizeof q, err.msg));
    for (size_t i = 0; i < n; i++)
        kj_pod_free(batch[i].pod);
    free(batch);
    free(act);
    free(recv);
    if (inf->oom) {
        inf->oom = 0;
        kj_log(KJ_LOG_WARN, "watch: changes dropped (out of memory)", "next=resync");
    }
    return rc;
}

void kjd_informer_free(kjd_informer *inf)
{
    if (!inf)
        return;
    for (size_t i = 0; i < inf->n_refl; i++)
        kj_reflector_free(inf->refl[i]);
    for (size_t i = 0; i < inf->n; i++)
        kj_pod_free(inf->v[i].pod);
    free(inf->v);
    free(inf);
}

void kjd_informer_render(FILE *f)
{
    if (!atomic_load(&g.started))
        return;
    fprintf(f,
            "# HELP kjournal_watch_lists_total Pod lists of the watch: the first and every"
            " relist.\n"
            "# TYPE kjournal_watch_lists_total counter\n"
            "kjournal_watch_lists_total %llu\n"
            "# HELP kjournal_watch_relists_total Lists again after a 410 Expired or a failed"
            " list.\n"
            "# TYPE kjournal_watch_relists_total counter\n"
            "kjournal_watch_relists_total %llu\n"
            "# HELP kjournal_watch_restarts_total Watches resumed from the last version after"
            " the server ended the stream or it broke.\n"
            "# TYPE kjournal_watch_restarts_total counter\n"
            "kjournal_watch_restarts_total %llu\n"
            "# HELP kjournal_watch_expired_total 410 Expired answers (HTTP or in the stream).\n"
            "# TYPE kjournal_watch_expired_total counter\n"
            "kjournal_watch_expired_total %llu\n"
            "# HELP kjournal_watch_errors_total Failed lists and broken streams.\n"
            "# TYPE kjournal_watch_errors_total counter\n"
            "kjournal_watch_errors_total %llu\n",
            (unsigned long long)atomic_load(&g.lists), (unsigned long long)atomic_load(&g.relists),
            (unsigned long long)atomic_load(&g.restarts),
            (unsigned long long)atomic_load(&g.expired),
            (unsigned long long)atomic_load(&g.errors));
    fputs("# HELP kjournal_watch_events_total Watch events received, by type.\n"
          "# TYPE kjournal_watch_events_total counter\n",
          f);
    for (int t = KJ_WATCH_ADDED; t <= KJ_WATCH_ERROR; t++)
        fprintf(f, "kjournal_watch_events_total{type=\"%s\"} %llu\n",
                kj_watch_type_name((kj_watch_type)t),
                (unsigned long long)atomic_load(&g.events[t]));
    fprintf(f,
            "# HELP kjournal_watch_reactions_total Changed pods acted on (a step taken).\n"
            "# TYPE kjournal_watch_reactions_total counter\n"
            "kjournal_watch_reactions_total %llu\n"
            "# HELP kjournal_watch_reaction_seconds From a pod's change arriving to the end of"
            " the pass that acted on it.\n"
            "# TYPE kjournal_watch_reaction_seconds histogram\n",
            (unsigned long long)atomic_load(&g.reactions));
    unsigned long long cum = 0;
    for (size_t b = 0; b <= LAT_N; b++) {
        cum += atomic_load(&g.lat[b]);
        if (b < LAT_N)
            fprintf(f, "kjournal_watch_reaction_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[b],
                    cum);
        else
            fprintf(f, "kjournal_watch_reaction_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    fprintf(f,
            "kjournal_watch_reaction_seconds_sum %.6f\n"
            "kjournal_watch_reaction_seconds_count %llu\n",
            (double)atomic_load(&g.lat_sum_us) / 1e6, cum);
}
