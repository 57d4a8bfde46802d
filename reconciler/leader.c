/* leader.c - client-go's leader election as a state machine (see leader.h). */
#include "leader.h"

#include <stdio.h>
#include <string.h>

int kj_elect_cfg_check(const kj_elect_cfg *c, kj_err *err)
{
    if (!c->name || !*c->name || strlen(c->name) >= sizeof(((kj_lease *)0)->name))
        return kj_err_set(err, KJ_EINVAL, "--leader-elect-resource-name: empty or too long");
    if (!c->identity || !*c->identity || strlen(c->identity) >= sizeof(((kj_lease *)0)->holder))
        return kj_err_set(err, KJ_EINVAL, "--identity: empty or longer than 253 characters");
    if (c->lease_ms < 1000 || c->lease_ms % 1000)
        return kj_err_set(err, KJ_EINVAL,
                          "--leader-elect-lease-duration: whole seconds, at least 1s (a Lease "
                          "counts in seconds)");
    if (c->lease_ms <= c->renew_deadline_ms)
        return kj_err_set(err, KJ_EINVAL,
                          "--leader-elect-lease-duration must be greater than "
                          "--leader-elect-renew-deadline");
    if ((double)c->renew_deadline_ms <= KJ_ELECT_JITTER * (double)c->retry_ms)
        return kj_err_set(err, KJ_EINVAL,
                          "--leader-elect-renew-deadline must be greater than 1.2 x "
                          "--leader-elect-retry-period");
    if (c->retry_ms < 1)
        return kj_err_set(err, KJ_EINVAL, "--leader-elect-retry-period must be positive");
    return 0;
}

void kj_elect_init(kj_elector *e, const kj_elect_cfg *cfg)
{
    memset(e, 0, sizeof *e);
    e->cfg = *cfg;
}

static void lose(kj_elector *e)
{
    if (e->leader)
        e->losses++;
    e->leader = 0;
}

static void observe(kj_elector *e, const kj_lease *l, int64_t now_mono)
{
    if (!e->have_observed || strcmp(e->observed.resource_version, l->resource_version) ||
        strcmp(e->observed.uid, l->uid)) {
        e->observed = *l;
        e->observed_mono = now_mono;
        e->have_observed = 1;
    }
}

static void fill(const kj_elector *e, kj_lease *out, int64_t now_wall)
{
    memset(out, 0, sizeof *out);
    snprintf(out->namespace_, sizeof out->namespace_, "%s",
             e->cfg.namespace_ ? e->cfg.namespace_ : "");
    snprintf(out->name, sizeof out->name, "%s", e->cfg.name);
    snprintf(out->holder, sizeof out->holder, "%s", e->cfg.identity);
    out->duration_s = (int)(e->cfg.lease_ms / 1000);
    out->acquire_ms = now_wall;
    out->renew_ms = now_wall;
}

kj_elect_step kj_elect_after_get(kj_elector *e, int rc, const kj_lease *got, int64_t now_mono,
                                 int64_t answered_mono, int64_t now_wall, kj_lease *out)
{
    if (rc == KJ_ENOENT) {
        fill(e, out, now_wall);
        return KJ_ELECT_CREATE;
    }
    if (rc)
        return KJ_ELECT_WAIT; /* the fence decides how long a holder goes on */
    /* Seen when the answer came, not when the GET was first sent: the
     * record may have been written while the GET was on its way or being
     * retried (kube.c repeats a GET after a 5xx, a 429 or a dropped
     * connection, for up to a second or more). client-go takes observedTime
     * after the read too. */
    observe(e, got, answered_mono > now_mono ? answered_mono : now_mono);
    int mine = !strcmp(got->holder, e->cfg.identity);
    if (!mine)
        lose(e); /* someone took it while we could not renew */
    int64_t duration_ms = got->duration_s > 0 ? (int64_t)got->duration_s * 1000 : e->cfg.lease_ms;
    if (!mine && got->holder[0] && e->observed_mono + duration_ms > now_mono)
        return KJ_ELECT_WAIT;
    fill(e, out, now_wall);
    snprintf(out->resource_version, sizeof out->resource_version, "%s", got->resource_version);
    if (mine) {
        out->acquire_ms = got->acquire_ms ? got->acquire_ms : now_wall;
        out->transitions = got->transitions;
    } else {
        out->transitions = got->transitions + 1;
    }
    return KJ_ELECT_UPDATE;
}

int kj_elect_fast_renew(kj_elector *e, int64_t now_mono, int64_t now_wall, kj_lease *out)
{
    if (!kj_elect_fence(e, now_mono) || !e->have_observed ||
        strcmp(e->observed.holder, e->cfg.identity))
        return 0;
    fill(e, out, now_wall);
    snprintf(out->resource_version, sizeof out->resource_version, "%s",
             e->observed.resource_version);
    out->acquire_ms = e->observed.acquire_ms ? e->observed.acquire_ms : now_wall;
    out->transitions = e->observed.transitions;
    return 1;
}

void kj_elect_after_write(kj_elector *e, int rc, const kj_lease *answer, int64_t round_mono)
{
    if (rc || !answer || strcmp(answer->holder, e->cfg.identity))
        return; /* a 409: another wrote first; the next round reads it */
    e->observed = *answer;
    e->observed_mono = round_mono;
    e->have_observed = 1;
    e->renewed_mono = round_mono;
    if (!e->leader)
        e->acquisitions++;
    e->leader = 1;
}

int64_t kj_elect_fence(kj_elector *e, int64_t now_mono)
{
    if (!e->leader)
        return 0;
    int64_t fence = e->renewed_mono + e->cfg.renew_deadline_ms;
    if (now_mono >= fence) {
        lose(e);
        return 0;
    }
    return fence;
}

int kj_elect_release(kj_elector *e, int64_t now_wall, kj_lease *out)
{
    if (!e->leader || !e->have_observed)
        return 0;
    lose(e);
    *out = e->observed;
    out->holder[0] = 0;
    out->duration_s = 1;
    out->renew_ms = now_wall;
    return 1;
}
