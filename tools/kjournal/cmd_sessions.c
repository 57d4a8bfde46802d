/* cmd_sessions.c - kjournal sessions: list sessions, filtered. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

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

int kj_cmd_sessions(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"state", required_argument, NULL, 's'},
        {"user", required_argument, NULL, 'u'},
        {"instance", required_argument, NULL, 'i'},
        {"engine", required_argument, NULL, 'e'},
        {"since", required_argument, NULL, 'S'},
        {"until", required_argument, NULL, 'U'},
        {"lines", required_argument, NULL, 'n'},
        {"reverse", no_argument, NULL, 'r'},
        KJ_CLI_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    kj_cli_common c;
    kj_cli_common_init(&c, argv);
    kj_session_filter f = {0};
    const char *since = NULL, *until = NULL;
    int opt, rc;
    while ((opt = getopt_long(argc, argv, ":" KJ_CLI_COMMON_SHORTOPTS "n:r", longopts, NULL)) !=
           -1) {
        switch (opt) {
        case 's':
            if (kj_session_state_parse(optarg, &f.state) < 0 || f.state == KJ_SESSION_NONE)
                return kj_cli_fail(&c, KJ_EXIT_USAGE, "unknown state '%s' (open, closed)", optarg);
            break;
        case 'u':
            f.user = optarg;
            break;
        case 'i':
            f.instance = optarg;
            break;
        case 'e':
            f.engine = optarg;
            break;
        case 'S':
            since = optarg;
            break;
        case 'U':
            until = optarg;
            break;
        case 'n':
            if (kj_cli_parse_count(optarg, &f.limit))
                return kj_cli_fail(&c, KJ_EXIT_USAGE, "bad count '%s' for -n", optarg);
            break;
        case 'r':
            f.reverse = 1;
            break;
        case 'h':
            fputs(help, stdout);
            kj_cli_help_common(stdout);
            kj_cli_help_times(stdout);
            fputs(examples, stdout);
            kj_cli_help_exit_codes(stdout, 0);
            return KJ_EXIT_OK;
        default:
            if ((rc = kj_cli_common_opt(&c, opt, optarg)))
                return rc;
        }
    }
    if (optind < argc)
        return kj_cli_fail(&c, KJ_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
    kj_cli_common_done(&c);
    if (since && (rc = kj_cli_time_opt(&c, "--since", since, &f.since_ms)))
        return rc;
    if (until && (rc = kj_cli_time_opt(&c, "--until", until, &f.until_ms)))
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
