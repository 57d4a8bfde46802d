/* cmd_sessions.c - kjournal sessions: list sessions, filtered. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal sessions [OPTIONS]\n"
    "\n"
    "Lists the sessions in the journal, oldest first (by the time of their first\n"
    "event). The journal is opened read-only; kjournald may keep writing.\n"
    "\n"
    "options:\n"
    "  --state open|closed   only sessions in this state\n"
    "  --user USER           only this user's sessions\n"
    "  --instance HOST:PORT  only sessions of this Kyuubi server\n"
    "  --engine TAG|APP_ID   only sessions of this engine (kyuubi-unique-tag or Spark\n"
    "                        application id)\n"
    "  --since TIME          only sessions created at or after TIME\n"
    "  --until TIME          only sessions created before TIME\n"
    "  -n, --lines N         the last N sessions ('all': every one)\n"
    "  -r, --reverse         newest first\n";

static const char examples[] = "\nexamples:\n"
                               "  kjournal sessions --state open\n"
                               "  kjournal sessions --user alice --since yesterday -o json\n"
                               "  kjournal sessions --engine spark-1a2b3c -n 20 -r\n";

static int on_opt(kj_cli_common *c, int opt, const char *arg, void *ud)
{
    kj_session_filter *f = ud;
    switch (opt) {
    case 's':
        if (kj_session_state_parse(arg, &f->state) < 0 || f->state == KJ_SESSION_NONE)
            return kj_cli_fail(c, KJ_EXIT_USAGE, "unknown state '%s' (open, closed)", arg);
        break;
    case 'u':
        f->user = arg;
        break;
    case 'i':
        f->instance = arg;
        break;
    case 'e':
        f->engine = arg;
        break;
    case 'n':
        return kj_cli_count_opt(c, arg, &f->limit);
    case 'r':
        f->reverse = 1;
        break;
    }
    return 0;
}

int kj_cmd_sessions(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"state", required_argument, NULL, 's'},
        {"user", required_argument, NULL, 'u'},
        {"instance", required_argument, NULL, 'i'},
        {"engine", required_argument, NULL, 'e'},
        KJ_CLI_TIME_LONGOPTS,
        {"lines", required_argument, NULL, 'n'},
        {"reverse", no_argument, NULL, 'r'},
        KJ_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    static const kj_cli_spec spec = {.help = help,
                                     .examples = examples,
                                     .flags = KJ_CLI_TIMES,
                                     .shortopts = "n:r",
                                     .longopts = longopts,
                                     .opt = on_opt};
    kj_cli_common c;
    kj_session_filter f = {0};
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv, &f)) ||
        (rc = kj_cli_times(&c, &f.since_ms, &f.until_ms)))
        return rc;

    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_out *o = kj_out_new(&c);
    kj_out_begin_list(o, "sessions", "-- no sessions --", kj_session_fields, kj_session_nfields);
    kj_out_last(o, f.limit, &f.reverse);
    kj_err err = {0};
    int qrc = kj_journal_sessions(j, &f, kj_print_session, o, &err);
    kj_out_end_list(o);
    rc = kj_out_free(o);
    if (qrc < 0)
        rc = kj_cli_fail_err(&c, &err);
    kj_journal_close(j);
    return rc;
}
