/* lease.c - kjournald's leader-election thread (see lease.h). */
#include "lease.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct kjd_lease {
    kj_elector e[KJD_LEASE_MAX];
    size_t n;
    kj_kube *k;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    atomic_llong fence;     /* the first election's */
    atomic_llong fence_all; /* the earliest of all, 0 unless all are held */
};

/* What /readyz and /metrics show: one election per process. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_role = -1, g_second = -1;
static char g_reason[800];
static long long g_acquired, g_lost;

int kjd_lease_role(char *reason, size_t size)
{
    pthread_mutex_lock(&g_mu);
    int role = g_role;
    if (reason && size)
        snprintf(reason, size, "%s", g_reason);
    pthread_mutex_unlock(&g_mu);
    return role;
}

int kjd_lease_second_role(void)
{
    pthread_mutex_lock(&g_mu);
    int role = g_second;
    pthread_mutex_unlock(&g_mu);
    return role;
}

void kjd_lease_counts(long long *acquired, long long *lost)
{
    pthread_mutex_lock(&g_mu);
    *acquired = g_acquired;
    *lost = g_lost;
    pthread_mutex_unlock(&g_mu);
}

static void describe(const kj_elector *e, char *out, size_t size)
{
    const char *ns = e->cfg.namespace_ ? e->cfg.namespace_ : "";
    if (e->leader)
        snprintf(out, size, "holder of lease %s/%s", ns, e->cfg.name);
    else if (e->have_observed && e->observed.holder[0])
        snprintf(out, size, "standby: lease %s/%s held by %s", ns, e->cfg.name, e->observed.holder);
    else
        snprintf(out, size, "standby: lease %s/%s not acquired (yet)", ns, e->cfg.name);
}

/* Logs a change of role of election i and publishes the state. */
static void publish(kjd_lease *l, size_t i, int was_leader)
{
    const kj_elector *e = &l->e[i];
    const char *ns = e->cfg.namespace_ ? e->cfg.namespace_ : "";
    char q[300], a[390], b[390];
    describe(&l->e[0], a, sizeof a);
    if (l->n > 1)
        describe(&l->e[1], b, sizeof b);
    pthread_mutex_lock(&g_mu);
    g_role = l->e[0].leader;
    g_second = l->n > 1 ? l->e[1].leader : -1;
    g_acquired = l->e[0].acquisitions;
    g_lost = l->e[0].losses;
    snprintf(g_reason, sizeof g_reason, "%s%s%s", a, l->n > 1 ? "; " : "", l->n > 1 ? b : "");
    pthread_mutex_unlock(&g_mu);
    if (e->leader && !was_leader)
        kj_log(KJ_LOG_INFO, "lease acquired: holder", "lease=%s/%s identity=%s", ns, e->cfg.name,
               kj_logq(q, sizeof q, e->cfg.identity));
    else if (!e->leader && was_leader)
        kj_log(KJ_LOG_WARN, "lease lost: standby, no longer changing the cluster",
               "lease=%s/%s identity=%s holder=%s", ns, e->cfg.name,
               kj_logq(q, sizeof q, e->cfg.identity),
               e->observed.holder[0] ? e->observed.holder : "-");
}

typedef struct call {
    int done, rc;
    kj_lease lease;
    int has_lease;
    char msg[sizeof(((kj_err *)0)->msg)];
} call;

static void call_done(kj_kube *k, const kj_kube_result *res, void *ud)
{
    (void)k;
    call *c = ud;
    c->done = 1;
    c->rc = res->rc;
    if (res->lease) {
        c->lease = *res->lease;
        c->has_lease = 1;
    }
    snprintf(c->msg, sizeof c->msg, "%s", res->err.msg);
}

/* One lease request run to its end; its rc. */
static int lease_call(kjd_lease *l, kj_elector *e, kj_kube_op op, const kj_lease *body,
                      int64_t timeout_ms, call *c)
{
    memset(c, 0, sizeof *c);
    kj_kube_req r = KJ_KUBE_REQ_INIT;
    r.op = op;
    r.namespace_ = e->cfg.namespace_;
    r.name = e->cfg.name;
    r.lease = body;
    r.timeout_ms = timeout_ms;
    if (kj_kube_submit(l->k, &r, call_done, c) < 0)
        return c->rc = KJ_ENOMEM;
    kj_kube_run(l->k, timeout_ms + 1000);
    if (!c->done) {
        kj_kube_cancel(l->k);
        c->rc = KJ_ETIMEDOUT;
    }
    if (c->rc && c->rc != KJ_ENOENT && c->rc != KJ_ECONFLICT) {
        char q[sizeof c->msg + 100];
        kj_log(KJ_LOG_WARN, "lease request failed", "lease=%s error=%s", e->cfg.name,
               kj_logq(q, sizeof q, c->msg));
    }
    return c->rc;
}

/* client-go's tryAcquireOrRenew: read, then create, take over or renew. */
static void round_once(kjd_lease *l, kj_elector *e)
{
    int64_t t0 = kj_mono_ms(), timeout = e->cfg.renew_deadline_ms;
    int64_t fence = kj_elect_fence(e, t0);
    call c;
    kj_lease want;
    /* A candidate's requests may take a renew deadline (a slow API server
     * delays its takeover, nothing else); a holder's until its fence: a
     * renewal that ends then still counts from t0. */
    if (fence)
        timeout = fence - t0 > e->cfg.retry_ms ? fence - t0 : e->cfg.retry_ms;
    if (kj_elect_fast_renew(e, t0, kj_now_ms(), &want)) {
        int rc = lease_call(l, e, KJ_KUBE_UPDATE_LEASE, &want, timeout, &c);
        kj_elect_after_write(e, rc, c.has_lease ? &c.lease : NULL, t0);
        if (rc == 0)
            return;
        t0 = kj_mono_ms(); /* the slow path, from its own start */
        timeout = e->cfg.renew_deadline_ms;
    }
    int rc = lease_call(l, e, KJ_KUBE_GET_LEASE, NULL, timeout, &c);
    kj_elect_step step = kj_elect_after_get(e, rc, c.has_lease ? &c.lease : NULL, t0, kj_mono_ms(),
                                            kj_now_ms(), &want);
    if (step == KJ_ELECT_WAIT)
        return;
    rc = lease_call(l, e, step == KJ_ELECT_CREATE ? KJ_KUBE_CREATE_LEASE : KJ_KUBE_UPDATE_LEASE,
                    &want, timeout, &c);
    kj_elect_after_write(e, rc, c.has_lease ? &c.lease : NULL, t0);
}

/* Publishes the fences as of now. */
static void update_fences(kjd_lease *l)
{
    int64_t now = kj_mono_ms(), all = -1;
    for (size_t i = 0; i < l->n; i++) {
        int was = l->e[i].leader;
        int64_t f = kj_elect_fence(&l->e[i], now);
        if (i == 0)
            atomic_store(&l->fence, f);
        if (all < 0 || f < all)
            all = f;
        if (was && !l->e[i].leader)
            publish(l, i, 1);
    }
    atomic_store(&l->fence_all, all < 0 ? 0 : all);
}

static void wait_until(kjd_lease *l, int64_t until_mono)
{
    pthread_mutex_lock(&l->mu);
    while (!l->stopping) {
        int64_t wait = until_mono - kj_mono_ms();
        if (wait <= 0)
            break;
        struct timespec ts = kj_deadline_in(wait);
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    pthread_mutex_unlock(&l->mu);
}

static int stopping(kjd_lease *l)
{
    pthread_mutex_lock(&l->mu);
    int s = l->stopping;
    pthread_mutex_unlock(&l->mu);
    return s;
}

static void *run(void *arg)
{
    kjd_lease *l = arg;
    while (!stopping(l)) {
        int64_t t0 = kj_mono_ms(), next = t0 + l->e[0].cfg.retry_ms;
        for (size_t i = 0; i < l->n && !stopping(l); i++) {
            int was = l->e[i].leader;
            round_once(l, &l->e[i]);
            update_fences(l);
            publish(l, i, was);
        }
        /* The next round a retry period after this one began; a holder
         * also wakes when a fence passes, to say so. */
        for (size_t i = 0; i < l->n; i++) {
            int64_t f = kj_elect_fence(&l->e[i], kj_mono_ms());
            if (f && f < next)
                next = f;
        }
        wait_until(l, next);
        update_fences(l);
    }
    atomic_store(&l->fence, 0);
    atomic_store(&l->fence_all, 0);
    for (size_t i = l->n; i-- > 0;) {
        kj_elector *e = &l->e[i];
        kj_lease rel;
        int was = e->leader;
        if (kj_elect_fence(e, kj_mono_ms()) && kj_elect_release(e, kj_now_ms(), &rel)) {
            call c;
            if (lease_call(l, e, KJ_KUBE_UPDATE_LEASE, &rel, 2000, &c) == 0)
                kj_log(KJ_LOG_INFO, "lease released", "lease=%s", e->cfg.name);
        }
        publish(l, i, was);
    }
    return NULL;
}

int kjd_lease_start(const kj_kube_config *cfg, const kj_elect_cfg *ec, size_t n,
                    const char *user_agent, kjd_lease **out, kj_err *err)
{
    if (n < 1 || n > KJD_LEASE_MAX)
        return kj_err_set(err, KJ_EINVAL, "lease: %zu elections", n);
    kjd_lease *l = calloc(1, sizeof *l);
    if (!l)
        return kj_err_set(err, KJ_ENOMEM, "lease: out of memory");
    l->n = n;
    for (size_t i = 0; i < n; i++)
        kj_elect_init(&l->e[i], &ec[i]);
    if (kj_kube_new(cfg, &l->k, err) < 0 || kj_kube_set_user_agent(l->k, user_agent) < 0) {
        kj_kube_free(l->k);
        free(l);
        return err->code ? err->code : kj_err_set(err, KJ_ENOMEM, "lease: out of memory");
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    publish(l, 0, 0);
    if (pthread_create(&l->thread, NULL, run, l)) {
        kj_kube_free(l->k);
        free(l);
        return kj_err_set(err, KJ_ENOMEM, "lease: cannot start its thread");
    }
    *out = l;
    return 0;
}

const atomic_llong *kjd_lease_fence(const kjd_lease *l)
{
    return &l->fence;
}

const atomic_llong *kjd_lease_fence_all(const kjd_lease *l)
{
    return &l->fence_all;
}

void kjd_lease_stop(kjd_lease *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stopping = 1;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    kj_kube_free(l->k);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

int kjd_lease_default_identity(char *out, size_t size, kj_err *err)
{
    char host[256] = "";
    unsigned char rnd[8];
    if (gethostname(host, sizeof host - 1) < 0 || !*host)
        snprintf(host, sizeof host, "kjournald");
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, rnd, sizeof rnd) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof rnd)
        return kj_err_set(err, KJ_EIO, "--identity: cannot read /dev/urandom for a default");
    int w = snprintf(out, size, "%.200s_", host);
    for (size_t i = 0; i < sizeof rnd && w > 0 && (size_t)w + 2 < size; i++)
        w += snprintf(out + w, size - (size_t)w, "%02x", rnd[i]);
    return 0;
}
