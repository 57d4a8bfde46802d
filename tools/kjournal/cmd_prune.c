/* cmd_prune.c - kjournal prune: retention, the one journal command that writes. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal prune [OPTIONS] --older-than DURATION\n"
    "\n"
    "Deletes the sessions closed more than DURATION ago, with their events, and\n"
    "says what it removed. Open sessions are never pruned. This is the only\n"
    "journal command that writes: it opens the journal read-write (never creating\n"
    "it) and deletes in short transactions, so kjournald keeps appending. The\n"
    "file does not shrink; its free pages are reused (a backup is compacted).\n";

static const char examples[] = "\nexamples:\n"
                               "  kjournal prune --older-than 30d\n"
                               "  kjournal prune --older-than 1w -o json\n";

static const kj_field fields[] = {
    {"journal", "journal", 0},
    {"closed_before", "closed before", KJ_F_TIME},
    {"sessions_removed", "sessions removed", KJ_F_NUM},
    {"events_removed", "events removed", KJ_F_NUM},
};

int kj_cmd_prune(int argc, char **argv)
{
    int64_t age = 0;
    const kj_opt opts[] = {
        {"older-than", 0, KJ_OPT_DURATION, &age, "DURATION",
         .help = "30d, 12h, 1w, 1d12h, 90m (units ms, s/sec, m/min, h, d, w)", .min = 1},
        {0},
    };
    const kj_cli_spec spec = {.help = help, .opts = opts, .examples = examples};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;
    if (!age)
        return kj_cli_fail(&c, KJ_EXIT_USAGE, "how old? give --older-than DURATION");

    /* A read-only open first: it refuses what is not a journal of this
     * version (an empty file, say) where a read-write open would make one. */
    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_journal_close(j);
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_NOCREATE, &j)))
        return rc;
    kj_err err = {0};
    int64_t cutoff = kj_now_ms() - age, sessions = 0, events = 0;
    int qrc = kj_journal_prune(j, cutoff, &sessions, &events, &err);
    kj_journal_close(j);
    if (qrc < 0) {
        rc = kj_cli_fail_err(&c, &err);
        if (sessions)
            fprintf(stderr,
                    "kjournal prune: %lld sessions (%lld events) were removed before "
                    "the failure\n",
                    (long long)sessions, (long long)events);
        return rc;
    }
    kj_out *o = kj_out_new(&c);
    kj_out_begin_object(o, NULL);
    kj_out_value(o, &fields[0], KJ_S(c.journal));
    kj_out_value(o, &fields[1], KJ_N(cutoff));
    kj_out_value(o, &fields[2], KJ_N(sessions));
    kj_out_value(o, &fields[3], KJ_N(events));
    kj_out_end_object(o);
    return kj_out_free(o);
}
