/* cmd_actions.c - kjournal actions: the reconciler's audit, actions and runs. */
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal actions [OPTIONS]\n"
    "\n"
    "Lists what the reconciler did to engine pods (finalizers released, pods\n"
    "deleted, sessions closed), why, and what the Kubernetes API answered, oldest\n"
    "first. With --runs, lists the reconcile runs instead. Empty until the\n"
    "reconciler has run. The journal is opened read-only.\n"
    "\n"
    "Running orphans (live engine pods that no session in the journal uses, kept\n"
    "with --running-orphans report) are recorded as report_orphan when first seen\n"
    "and again only when they change (phase, reason), not at every pass. To see\n"
    "the ones running now: 'kjournal recover --dry-run' lists them (report_orphan,\n"
    "planned) and counts them; kjournald's /metrics has their number\n"
    "(kjournal_reconcile_running_orphans); each one's history is here, e.g.\n"
    "'kjournal actions -o json | grep report_orphan'.\n";

static const char examples[] =
    "\nexamples:\n"
    "  kjournal actions --runs -n 5\n"
    "  kjournal actions --run 42\n"
    "  kjournal actions --session 8e9f1c2a-41d7-4b1e-9b0e-3f1c2a41d74b\n";

/* Existence checks: a missing run or session is KJ_ENOENT. */
static int ignore_run(const kj_run *r, void *ud)
{
    (void)r;
    (void)ud;
    return 0;
}

static int ignore_session(const kj_session *s, void *ud)
{
    (void)s;
    (void)ud;
    return 0;
}

int kj_cmd_actions(int argc, char **argv)
{
    kj_action_filter f = {0};
    int runs = 0;
    const kj_opt opts[] = {
        {"run", 0, KJ_OPT_INT64, &f.run_id, "ID", .help = "only the actions of this run", .min = 1,
         .max = INT64_MAX},
        {"session", 0, KJ_OPT_STRING, &f.session_id, "ID",
         .help = "only the actions on this session's engine pods"},
        {"runs", 0, KJ_OPT_FLAG, &runs, NULL, .help = "list the runs (newest first with -r)"},
        {"lines", 'n', KJ_OPT_COUNT, &f.limit, "N", .help = "the last N ('all': every one)"},
        {"reverse", 'r', KJ_OPT_FLAG, &f.reverse, NULL, .help = "newest first"},
        {0},
    };
    const kj_cli_spec spec = {
        .help = help, .opts = opts, .examples = examples, .flags = KJ_CLI_NOTFOUND};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;
    if (runs && (f.run_id || f.session_id))
        return kj_cli_fail(&c, KJ_EXIT_USAGE,
                           "--runs lists every run; it takes no --run or --session");

    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_err err = {0};
    int qrc = 0;
    if (f.run_id) {
        qrc = kj_journal_run_get(j, f.run_id, ignore_run, NULL, &err);
        if (qrc == KJ_ENOENT)
            rc = kj_cli_fail(&c, KJ_EXIT_NOTFOUND, "no reconcile run %lld in journal '%s'",
                             (long long)f.run_id, c.journal);
    }
    if (!qrc && f.session_id) {
        qrc = kj_journal_session_get(j, f.session_id, ignore_session, NULL, &err);
        if (qrc == KJ_ENOENT)
            rc = kj_cli_fail(&c, KJ_EXIT_NOTFOUND, "no session '%s' in journal '%s'", f.session_id,
                             c.journal);
    }
    if (qrc) {
        if (qrc != KJ_ENOENT)
            rc = kj_cli_fail_err(&c, &err);
        kj_journal_close(j);
        return rc;
    }
    kj_out *o = kj_out_new(&c);
    if (runs) {
        kj_out_begin_list(o, "runs", "-- no reconcile runs --", kj_run_fields, kj_run_nfields);
        kj_out_last(o, f.limit, &f.reverse);
        qrc = kj_journal_runs(j, f.limit, f.reverse, kj_print_run, o, &err);
    } else {
        kj_out_begin_list(o, "actions", "-- no reconcile actions --", kj_action_fields,
                          kj_action_nfields);
        kj_out_last(o, f.limit, &f.reverse);
        qrc = kj_journal_actions(j, &f, kj_print_action, o, &err);
    }
    kj_out_end_list(o);
    rc = kj_out_free(o);
    if (qrc < 0)
        rc = kj_cli_fail_err(&c, &err);
    kj_journal_close(j);
    return rc;
}
