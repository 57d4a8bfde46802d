/* kjournal recover - one reconciliation pass, or its plan with --dry-run. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "tools/common/kube_opts.h"

static const char help[] =
    "usage: kjournal recover [--journal PATH] [KUBE FLAGS] [POLICY FLAGS] [--dry-run]\n"
    "                        [-o short|json] [--timeout DUR] [--quiet]\n\n"
    "Reconciles the journal against the live engine pods, once: releases our\n"
    "finalizer and deletes orphaned and terminated engine pods, closes sessions\n"
    "whose engine is gone, and records every action in the journal (see\n"
    "'kjournal actions'). Safe to run twice: the second pass changes nothing. A\n"
    "pass holds the journal's writer lock: while kjournald (which reconciles on\n"
    "its own) or another pass holds it, recover is refused (exit 9). A pass\n"
    "killed before it ended is marked 'interrupted' by the next start of either.\n"
    "--dry-run prints the plan and changes nothing, not even the journal; it\n"
    "takes no lock and runs beside kjournald.\n";

static const char examples[] =
    "\nexamples:\n"
    "  kjournal recover --dry-run --namespace kyuubi\n"
    "  kjournal recover --kubeconfig ~/.kube/config --context prod --namespace kyuubi\n"
    "  kjournal recover --retain-terminated 1h --cleanup-kind COMPLETED -o json\n";

static const char exits[] =
    "\nexit codes: 0 converged; 1 some actions failed (each is named); 2 usage or\n"
    "configuration error; 3-6 the journal cannot be opened (see 'kjournal --help');\n"
    "8 the Kubernetes API cannot be reached; 9 the journal is in use by another\n"
    "writer (kjournald, another recover).\n";

/* The reconciler cannot be stopped mid-pass: a closed stdout only ends the
 * printing. */
static void print_action(const kj_action *a, void *out)
{
    kj_print_action(a, out);
}

/* Loads the Kubernetes configuration; 0, or an exit code after saying why. */
static int load_config(const kj_cli_common *c, const kj_kube_flags *fl, kj_kube_config **cfg)
{
    kj_err err = {0};
    int rc = kj_kube_config_load(fl, cfg, &err);
    if (rc == KJ_ENOENT)
        return kj_cli_fail(c, KJ_EXIT_USAGE,
                           "no Kubernetes configuration: give --server or --kubeconfig, set "
                           "$KUBECONFIG, or run inside a cluster");
    if (rc < 0)
        return kj_cli_fail(c, KJ_EXIT_USAGE, "%s", err.msg);
    return 0;
}

/* With the writer lock held, a run still "running" died with its process:
 * marks it interrupted. 0, or an exit code after saying why. */
static int mark_interrupted(const kj_cli_common *c, kj_journal *j)
{
    kj_err err = {0};
    int64_t interrupted = 0;
    if (kj_journal_runs_interrupt(j, &interrupted, &err) < 0)
        return kj_cli_fail_err(c, &err);
    if (interrupted) /* not progress: news of a pass that was killed */
        fprintf(stderr, "kjournal recover: %lld run(s) of a stopped process marked interrupted\n",
                (long long)interrupted);
    return 0;
}

static void print_summary(const kj_reconcile_summary *s, int dry_run)
{
    fprintf(stderr,
            "kjournal recover: %s%lld pods seen, %lld acted on: %lld finalizers released, "
            "%lld added, %lld pods deleted, %lld sessions closed, %lld running orphans "
            "(%lld reported now: new or changed), "
            "%lld already gone, %lld conflicts re-read, %lld waiting for a grace or retain "
            "period, %lld failed\n",
            dry_run ? "(dry run) " : "", (long long)s->pods_seen, (long long)s->pods_acted_on,
            (long long)s->finalizers_released, (long long)s->finalizers_added,
            (long long)s->pods_deleted, (long long)s->sessions_closed,
            (long long)s->orphans_running, (long long)s->orphans_reported,
            (long long)s->already_gone, (long long)s->conflicts, (long long)s->waiting,
            (long long)s->actions_failed);
}

/* The exit code of a pass that returned prc (with err's message). */
static int pass_exit(const kj_cli_common *c, int prc, const kj_reconcile_summary *s,
                     const kj_err *err)
{
    if (prc == 0)
        return KJ_EXIT_OK;
    if (prc == KJ_EIO && s->actions_failed)
        return kj_cli_fail(c, KJ_EXIT_FAILURE, "%s", err->msg);
    if (prc == KJ_EUNAVAIL || prc == KJ_ETIMEDOUT || prc == KJ_EAUTH)
        return kj_cli_fail(c, KJ_EXIT_UNAVAILABLE, "%s", err->msg);
    return kj_cli_fail(c, KJ_EXIT_FAILURE, "%s", err->msg);
}

int kj_cmd_recover(int argc, char **argv)
{
    kj_kube_flags fl;
    kj_kube_flags_init(&fl);
    kj_policy pol;
    kj_policy_init(&pol);
    int dry_run = 0, quiet = 0, rc;
    int64_t timeout_ms = 600000;
    kj_err err = {0};
    kj_opt kube_opts[KJ_KUBE_OPTS], policy_opts[KJ_POLICY_OPTS];
    kj_kube_opts(kube_opts, &fl);
    kj_policy_opts(policy_opts, &pol);
    const kj_opt opts[] = {
        {"dry-run", 0, KJ_OPT_FLAG, &dry_run, NULL, .help = "print the plan, mutate nothing"},
        {"timeout", 0, KJ_OPT_DURATION, &timeout_ms, "DUR",
         .help = "deadline for the whole pass (default 10m)", .min = 1},
        {"quiet", 0, KJ_OPT_FLAG, &quiet, NULL, .help = "no progress lines on stderr"},
        KJ_OPTS_SECTION("Kubernetes (like kubectl; flags win over the kubeconfig, which wins over\n"
                        "in-cluster configuration):"),
        KJ_OPTS_INCLUDE(kube_opts),
        KJ_OPTS_SECTION("policy:"),
        KJ_OPTS_INCLUDE(policy_opts),
        {0},
    };
    const kj_cli_spec spec = {.help = help,
                              .opts = opts,
                              .examples = examples,
                              .exits = exits,
                              .flags = KJ_CLI_FORMATS | KJ_CLI_CHECKS};
    kj_cli_common c;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;
    fl.max_in_flight = pol.concurrency;

    kj_kube_config *cfg = NULL;
    if ((rc = load_config(&c, &fl, &cfg)))
        return rc;
    if (c.check_config) {
        char what[600];
        snprintf(what, sizeof what, "server %s (%s); the journal was not opened",
                 kj_kube_config_server(cfg), kj_kube_config_source(cfg));
        kj_kube_config_free(cfg);
        kj_opts_config_ok("kjournal recover", what);
    }
    kj_journal *j = NULL;
    kj_kube *k = NULL;
    kj_out *out = NULL;
    if ((rc = kj_cli_open(&c, dry_run ? KJ_JOURNAL_READONLY : KJ_JOURNAL_NOCREATE | KJ_JOURNAL_LOCK,
                          &j)))
        goto out;
    if (!dry_run && (rc = mark_interrupted(&c, j)))
        goto out;
    if (kj_kube_new(cfg, &k, &err) < 0) {
        rc = kj_cli_fail(&c, KJ_EXIT_USAGE, "%s", err.msg);
        goto out;
    }
    out = kj_out_new(&c);
    kj_out_begin_list(out, NULL, dry_run ? "-- nothing to do --" : "-- no actions --",
                      kj_action_fields, kj_action_nfields);
    kj_reconcile_opts o = {
        .trigger = "manual",
        .dry_run = dry_run,
        .default_namespace = kj_kube_config_namespace(cfg),
        .on_action = print_action,
        .ud = out,
        .progress = !quiet,
        .deadline_ms = timeout_ms,
    };
    kj_reconcile_summary s;
    if (!quiet)
        kj_log(KJ_LOG_INFO, "recovery pass starting", "server=%s source=\"%s\" dry_run=%d",
               kj_kube_config_server(cfg), kj_kube_config_source(cfg), dry_run);
    int prc = kj_reconcile(j, k, &pol, &o, &s, &err);
    kj_out_end_list(out);
    print_summary(&s, dry_run);
    rc = pass_exit(&c, prc, &s, &err);
out:
    if (out) {
        int orc = kj_out_free(out);
        if (!rc)
            rc = orc;
    }
    kj_kube_free(k);
    kj_journal_close(j);
    kj_kube_config_free(cfg);
    return rc;
}
