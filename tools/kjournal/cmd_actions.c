/* cmd_actions.c - kjournal actions: the reconciler's audit, actions and runs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

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
    "'kjournal actions -o json | grep report_orphan'.\n"
    "\n"
    "options:\n"
    "  --run ID        only the actions of this run\n"
    "  --session ID    only the actions on this session's engine pods\n"
    "  --runs          list the runs (newest first with -r)\n"
    "  -n, --lines N   the last N ('all': every one)\n"
    "  -r, --reverse   newest first\n";

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

typedef struct opts {
    kj_action_filter f;
    int runs;
} opts;

static int on_opt(kj_cli_common *c, int opt, const char *arg, void *ud)
{
    opts *o = ud;
    switch (opt) {
    case 'R': {
        char *end = NULL;
        errno = 0;
        o->f.run_id = strtoll(arg, &end, 10);
        if (errno || *end || end == arg || o->f.run_id <= 0)
            return kj_cli_fail(c, KJ_EXIT_USAGE, "bad run id '%s'", arg);
        break;
    }
    case 's':
        o->f.session_id = arg;
        break;
    case 'L':
        o->runs = 1;
        break;
    case 'n':
        return kj_cli_count_opt(c, arg, &o->f.limit);
    case 'r':
        o->f.reverse = 1;
        break;
    }
    return 0;
}

int kj_cmd_actions(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"run", required_argument, NULL, 'R'},
        {"session", required_argument, NULL, 's'},
        {"runs", no_argument, NULL, 'L'},
        {"lines", required_argument, NULL, 'n'},
        {"reverse", no_argument, NULL, 'r'},
        KJ_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    static const kj_cli_spec spec = {.help = help,
                                     .examples = examples,
                                     .flags = KJ_CLI_NOTFOUND,
                                     .shortopts = "n:r",
                                     .longopts = longopts,
                                     .opt = on_opt};
    kj_cli_common c;
    opts op = {0};
    kj_action_filter *f = &op.f;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv, &op)))
        return rc;
    if (op.runs && (f->run_id || f->session_id))
        return kj_cli_fail(&c, KJ_EXIT_USAGE,
                           "--runs lists every run; it takes no --run or --session");

    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_err err = {0};
    int qrc = 0;
    if (f->run_id) {
        qrc = kj_journal_run_get(j, f->run_id, ignore_run, NULL, &err);
        if (qrc == KJ_ENOENT)
            rc = kj_cli_fail(&c, KJ_EXIT_NOTFOUND, "no reconcile run %lld in journal '%s'",
                             (long long)f->run_id, c.journal);
    }
    if (!qrc && f->session_id) {
        qrc = kj_journal_session_get(j, f->session_id, ignore_session, NULL, &err);
        if (qrc == KJ_ENOENT)
            rc = kj_cli_fail(&c, KJ_EXIT_NOTFOUND, "no session '%s' in journal '%s'", f->session_id,
                             c.journal);
    }
    if (qrc) {
        if (qrc != KJ_ENOENT)
            rc = kj_cli_fail_err(&c, &err);
        kj_journal_close(j);
        return rc;
    }
    kj_out *o = kj_out_new(&c);
    if (op.runs) {
        kj_out_begin_list(o, "runs", "-- no reconcile runs --", kj_run_fields, kj_run_nfields);
        kj_out_last(o, f->limit, &f->reverse);
        qrc = kj_journal_runs_list(j, f->limit, f->reverse, kj_print_run, o, &err);
    } else {
        kj_out_begin_list(o, "actions", "-- no reconcile actions --", kj_action_fields,
                          kj_action_nfields);
        kj_out_last(o, f->limit, &f->reverse);
        qrc = kj_journal_actions(j, f, kj_print_action, o, &err);
    }
    kj_out_end_list(o);
    rc = kj_out_free(o);
    if (qrc < 0)
        rc = kj_cli_fail_err(&c, &err);
    kj_journal_close(j);
    return rc;
}
