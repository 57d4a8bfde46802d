/* cmd_verify.c - kjournal verify: integrity and invariants, exit 0 only when clean. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal verify [OPTIONS]\n"
    "\n"
    "Checks the journal: SQLite's integrity check and foreign keys, then kjournal's\n"
    "invariants (every session's state, event count and times agree with its\n"
    "events; no event without its session; the totals stats reads agree with the\n"
    "sessions and events). Prints each problem found. Exits 0 only when the journal\n"
    "is clean, 1 when problems were found.\n"
    "\n"
    "The journal is opened read-only. The integrity check reads the whole file in\n"
    "one read transaction: on a large live journal it delays WAL checkpoints (it\n"
    "never blocks kjournald) for as long as it runs; run it on a backup to avoid\n"
    "even that.\n";

_Static_assert(KJ_EXIT_FAILURE == 1, "verify's --help names its exit code");

static const char examples[] = "\nexamples:\n"
                               "  kjournal verify\n"
                               "  kjournal backup --to /tmp/j.db && kjournal verify --journal "
                               "/tmp/j.db\n";

static const kj_field fields[] = {
    {"journal", "journal", 0},
    {"clean", "clean", KJ_F_BOOL},
    {"problem_count", "problems", KJ_F_NUM},
};

static const kj_field problem_fields[] = {
    {"problem", "PROBLEM", KJ_F_STATE},
};

static int on_problem(const char *problem, void *ud)
{
    kj_out *o = ud;
    kj_val v[] = {KJ_S(problem)};
    kj_out_row(o, v);
    return 0;
}

static int print_problem(const char *problem, void *ud)
{
    const kj_cli_common *c = ud;
    printf(c->color ? "\033[31mproblem\033[0m: " : "problem: ");
    /* SQLite's integrity check lists its findings on several lines. */
    for (const char *p = problem; *p; p++) {
        putchar(*p);
        if (*p == '\n' && p[1])
            fputs("  ", stdout);
    }
    putchar('\n');
    return 0;
}

static int damaged_schema(kj_cli_common *c)
{
    static const char what[] =
        "integrity: the journal's schema cannot be read: the file is damaged";
    if (c->fmt == KJ_FMT_SHORT) {
        print_problem(what, c);
    } else {
        kj_out *o = kj_out_new(c);
        kj_out_begin_object(o, NULL);
        kj_out_value(o, &fields[0], KJ_S(c->journal));
        kj_out_begin_list(o, "problems", NULL, problem_fields, 1);
        on_problem(what, o);
        kj_out_end_list(o);
        kj_out_value(o, &fields[1], KJ_N(0));
        kj_out_value(o, &fields[2], KJ_N(1));
        kj_out_end_object(o);
        kj_out_free(o);
    }
    return kj_cli_fail(c, KJ_EXIT_FAILURE, "journal '%s': 1 problem(s) found", c->journal);
}

int kj_cmd_verify(int argc, char **argv)
{
    static const kj_cli_spec spec = {.help = help, .examples = examples};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;

    kj_journal *j = NULL;
    kj_err err = {0};
    int64_t problems = 0;
    int qrc = kj_journal_open(c.journal, KJ_JOURNAL_READONLY, &j, &err);
    /* A file whose schema pages are damaged cannot be opened: that is the
     * integrity problem to report, not a reason to send the user here. */
    if (qrc == KJ_ECORRUPT)
        return damaged_schema(&c);
    if (qrc < 0 && (rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    if (c.fmt == KJ_FMT_SHORT) {
        /* For people: one line per problem, then the verdict. */
        qrc = kj_journal_verify(j, print_problem, &c, &problems, &err);
        if (qrc == 0)
            printf("journal '%s' is clean: integrity, foreign keys and invariants hold\n",
                   c.journal);
        rc = KJ_EXIT_OK;
    } else {
        kj_out *o = kj_out_new(&c);
        kj_out_begin_object(o, NULL);
        kj_out_value(o, &fields[0], KJ_S(c.journal));
        kj_out_begin_list(o, "problems", NULL, problem_fields, 1);
        qrc = kj_journal_verify(j, on_problem, o, &problems, &err);
        kj_out_end_list(o);
        if (qrc == 0 || qrc == KJ_ECORRUPT) {
            kj_out_value(o, &fields[1], KJ_N(qrc == 0));
            kj_out_value(o, &fields[2], KJ_N(problems));
        }
        kj_out_end_object(o);
        rc = kj_out_free(o);
    }
    if (qrc == KJ_ECORRUPT)
        rc = kj_cli_fail(&c, KJ_EXIT_FAILURE, "%s", err.msg);
    else if (qrc < 0)
        rc = kj_cli_fail_err(&c, &err);
    kj_journal_close(j);
    return rc;
}
