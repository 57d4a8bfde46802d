/* claims.c - per-instance claims on engine pods (see claims.h). */
#include "claims.h"

#include <stdio.h>
#include <string.h>

int kj_claim_name(const char *identity, char *out, size_t size, kj_err *err)
{
    size_t n = identity ? strlen(identity) : 0;
    if (n == 0 || n > KJ_CLAIM_IDENTITY_MAX)
        return kj_err_set(err, KJ_EINVAL,
                          "--identity: 1 to %d characters in the per-server topology (it names "
                          "a finalizer and a Lease)",
                          KJ_CLAIM_IDENTITY_MAX);
    for (size_t i = 0; i < n; i++) {
        char ch = identity[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && i > 0 && i + 1 < n))
            return kj_err_set(err, KJ_EINVAL,
                              "--identity '%s': a DNS label in the per-server topology "
                              "(lowercase letters, digits and '-', starting and ending with a "
                              "letter or digit)",
                              identity);
    }
    if ((size_t)snprintf(out, size, KJ_CLAIM_PREFIX "%s", identity) >= size)
        return kj_err_set(err, KJ_EINVAL, "--identity: too long");
    return 0;
}

const char *kj_claim_identity(const char *name)
{
    size_t n = sizeof KJ_CLAIM_PREFIX - 1;
    if (!name || strncmp(name, KJ_CLAIM_PREFIX, n) || !name[n])
        return NULL;
    return name + n;
}

static int is_dead(const char *name, const char *const *dead, size_t n_dead)
{
    for (size_t i = 0; i < n_dead; i++)
        if (!strcmp(dead[i], name))
            return 1;
    return 0;
}

void kj_claims_count(const kj_pod *pod, const char *mine, const char *const *dead, size_t n_dead,
                     kj_claims *out)
{
    out->others = out->dead = 0;
    for (size_t i = 0; i < pod->n_finalizers; i++) {
        const char *f = pod->finalizers[i];
        if (!kj_claim_identity(f) || (mine && !strcmp(f, mine)))
            continue;
        if (is_dead(f, dead, n_dead))
            out->dead++;
        else
            out->others++;
    }
}

const char *kj_claims_first_dead(const kj_pod *pod, const char *const *dead, size_t n_dead)
{
    for (size_t i = 0; i < pod->n_finalizers; i++)
        if (kj_claim_identity(pod->finalizers[i]) && is_dead(pod->finalizers[i], dead, n_dead))
            return pod->finalizers[i];
    return NULL;
}

static void drop_steps(kj_plan *out, kj_step_kind kind)
{
    size_t w = 0;
    for (size_t i = 0; i < out->n; i++)
        if (out->steps[i].kind != kind)
            out->steps[w++] = out->steps[i];
    out->n = w;
}

static int has_step(const kj_plan *out, kj_step_kind kind)
{
    for (size_t i = 0; i < out->n; i++)
        if (out->steps[i].kind == kind)
            return 1;
    return 0;
}

void kj_plan_pod_claims(const kj_pod *pod, const kj_pod_sessions *s, int64_t seen_terminal_ms,
                        int64_t now_ms, const kj_policy *p, const kj_claims *c, kj_plan *out)
{
    kj_plan_pod(pod, s, seen_terminal_ms, now_ms, p, out);
    if (c->sweeper && c->dead && out->state != KJ_POD_TERMINATING) {
        out->n = 0;
        out->due_ms = 0;
        out->steps[out->n++] = (kj_step){
            KJ_STEP_REMOVE_CLAIM,
            "claim of an instance whose Lease expired longer than the instance grace", NULL};
        return;
    }
    int claimed = c->others + c->dead > 0;
    int orphan = !s->open && !s->closed;
    if (!claimed && (!orphan || c->sweeper))
        return; /* nobody else's business: planned as one instance alone */
    /* Someone else's pod, or an orphan left to the sweeper: never deleted
     * here, never reported here. */
    drop_steps(out, KJ_STEP_DELETE);
    drop_steps(out, KJ_STEP_REPORT_ORPHAN);
    out->due_ms = 0;
    if (claimed)
        out->owner = "claimed";
    int executor = pod->spark_role && !strcmp(pod->spark_role, "executor");
    if (!s->open && !executor && kj_pod_has_finalizer(pod, p->finalizer, NULL) &&
        !has_step(out, KJ_STEP_RELEASE_FINALIZER) && out->n < 4)
        out->steps[out->n++] =
            (kj_step){KJ_STEP_RELEASE_FINALIZER,
                      claimed ? "no open session here; other instances claim this engine pod"
                              : "no session of this instance uses this engine pod",
                      NULL};
}
