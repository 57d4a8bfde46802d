/*
 * kube_opts.c - the kube and policy flags as option tables (kube_opts.h).
 */
#include <stdio.h>
#include <string.h>

#include "kube_opts.h"

#define KJ_STR_(x) #x
#define KJ_STR(x) KJ_STR_(x)

_Static_assert(sizeof(kj_cleanup_kind) == sizeof(int), "--cleanup-kind is a KJ_OPT_CHOICE");

void kj_kube_opts(kj_opt *t, kj_kube_flags *f)
{
    const kj_opt opts[] = {
        {"server", 0, KJ_OPT_STRING, &f->server, "URL",
         .help = "Kubernetes API server (overrides the kubeconfig)"},
        {"token-file", 0, KJ_OPT_STRING, &f->token_file, "PATH",
         .help = "bearer token file, read again periodically and after a 401"},
        {"certificate-authority", 0, KJ_OPT_STRING, &f->ca_file, "PATH",
         .help = "CA bundle to verify the server with"},
        {"client-certificate", 0, KJ_OPT_STRING, &f->client_cert, "PATH",
         .help = "client certificate (PEM)"},
        {"client-key", 0, KJ_OPT_STRING, &f->client_key, "PATH", .help = "client key (PEM)"},
        {"insecure-skip-tls-verify", 0, KJ_OPT_BOOL, &f->insecure, NULL,
         .help = "do not verify the server's certificate (unsafe)"},
        {"kubeconfig", 0, KJ_OPT_STRING, &f->kubeconfig, "PATH",
         .help = "kubeconfig file (default $KUBECONFIG, ~/.kube/config,\n"
                 "then in-cluster service account)"},
        {"context", 0, KJ_OPT_STRING, &f->context, "NAME",
         .help = "kubeconfig context (default current-context)"},
        {"qps", 0, KJ_OPT_NUMBER, &f->qps, "N",
         .help =
             "client-side request rate limit (default " KJ_STR(KJ_KUBE_DEFAULT_QPS) "; 0: none)",
         .min = 0, .max = 1000000},
        {"burst", 0, KJ_OPT_INT, &f->burst, "N",
         .help = "rate limit burst (default " KJ_STR(KJ_KUBE_DEFAULT_BURST) ")", .min = 0,
         .max = 1000000},
        {0},
    };
    _Static_assert(sizeof opts / sizeof opts[0] <= KJ_KUBE_OPTS, "KJ_KUBE_OPTS");
    memcpy(t, opts, sizeof opts);
}

static int finalizer(void *ud, const char *v, char *msg, size_t size)
{
    if (!*v || !strchr(v, '/'))
        return snprintf(msg, size, "not a qualified name like example.com/name"), -1;
    ((kj_policy *)ud)->finalizer = v;
    return 0;
}

static const char *const cleanup_kinds[] = {"ALL", "COMPLETED", "NONE", NULL};
static const char *const orphan_modes[] = {"report", "delete", NULL};

void kj_policy_opts(kj_opt *t, kj_policy *p)
{
    const kj_opt opts[] = {
        {"namespace", 0, KJ_OPT_STRINGS, p->namespaces, "NS",
         .help = "namespace of the engine pods; repeatable\n"
                 "(default: the namespace of the kube context)",
         .max = KJ_MAX_NAMESPACES, .count = &p->n_namespaces},
        {"selector", 0, KJ_OPT_STRING, &p->selector, "SEL",
         .help = "label selector of engine pods (default " KJ_DEFAULT_SELECTOR ")"},
        {"finalizer", 0, KJ_OPT_CALL, NULL, "NAME",
         .help = "our finalizer (default " KJ_DEFAULT_FINALIZER ")", .fn = finalizer, .ud = p},
        {"retain-terminated", 0, KJ_OPT_DURATION, &p->retain_terminated_ms, "DUR",
         .help = "keep terminated pods this long after they finished\n"
                 "(default 5m, like kyuubi.kubernetes.terminatedApplicationRetainPeriod)"},
        {"cleanup-kind", 0, KJ_OPT_CHOICE, &p->cleanup_kind, "KIND",
         .help = "ALL, COMPLETED or NONE: which terminated pods of closed sessions\n"
                 "to delete (default ALL); finalizers are released whatever the kind",
         .choices = cleanup_kinds},
        {"engine-grace", 0, KJ_OPT_DURATION, &p->engine_grace_ms, "DUR",
         .help = "delete a live pod once its sessions are all closed this long\n(default 30m)"},
        {"submit-grace", 0, KJ_OPT_DURATION, &p->submit_grace_ms, "DUR",
         .help = "close an open session whose pod is missing after this (default 3m)"},
        {"running-orphans", 0, KJ_OPT_CHOICE, &p->delete_running_orphans, "MODE",
         .help = "report or delete live pods no session knows (default report)",
         .choices = orphan_modes},
        {"orphan-grace", 0, KJ_OPT_DURATION, &p->orphan_grace_ms, "DUR",
         .help = "minimum age of a live orphan before it is deleted (default 1h)"},
        {"concurrency", 0, KJ_OPT_INT, &p->concurrency, "N",
         .help = "requests in flight (default 32)", .min = 1, .max = 1024},
        {0},
    };
    _Static_assert(sizeof opts / sizeof opts[0] <= KJ_POLICY_OPTS, "KJ_POLICY_OPTS");
    memcpy(t, opts, sizeof opts);
}
