/* cmd_sessions.c - kjournal sessions: list sessions, filtered. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal sessions [OPTIONS]\n"
    "\n"
    "Lists the sessions in the journal, oldest first (by the time of their first\n"
    "event). The journal is opened read-only; kjournald may keep writing.\n";

static const char examples[] = "\nexamples:\n"
                               "  kjournal sessions --state open\n"
                               "  kjournal sessions --user alice --since yesterday -o json\n"
                               "  kjournal sessions --engine spark-1a2b3c -n 20 -r\n";

static int state_opt(void *ud, const char *v, char *msg, size_t size)
{
    kj_session_state *state = ud;
    if (kj_session_state_parse(v, state) < 0 || *state == KJ_SESSION_NONE)
        return snprintf(msg, size, "expected open or closed"), -1;
    return 0;
}

int kj_cmd_sessions(int argc, char **argv)
{
    kj_session_filter f = {0};
    const kj_opt opts[] = {
        {"state", 0, KJ_OPT_CALL, NULL, "open|closed", .help = "only sessions in this state",
         .fn = state_opt, .ud = &f.state},
        {"user", 0, KJ_OPT_STRING, &f.user, "USER", .help = "only this user's sessions"},
        {"instance", 0, KJ_OPT_STRING, &f.instance, "HOST:PORT",
         .help = "only sessions of this Kyuubi server"},
        {"engine", 0, KJ_OPT_STRING, &f.engine, "TAG|APP_ID",
         .help = "only sessions of this engine (kyuubi-unique-tag or Spark\napplication id)"},
        {"lines", 'n', KJ_OPT_COUNT, &f.limit, "N",
         .help = "the last N sessions ('all': every one)"},
        {"reverse", 'r', KJ_OPT_FLAG, &f.reverse, NULL, .help = "newest first"},
        {0},
    };
    const kj_cli_spec spec = {
        .help = help, .opts = opts, .examples = examples, .flags = KJ_CLI_TIMES};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)) ||
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
