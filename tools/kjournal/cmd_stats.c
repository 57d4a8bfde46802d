/* cmd_stats.c - kjournal stats: what the journal holds, from its totals. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal stats [OPTIONS]\n"
    "\n"
    "Shows the journal's figures: sessions by state, by user and by Kyuubi server,\n"
    "events per type, the oldest and newest event, the reconciler's runs and\n"
    "actions, the size of the journal and of its write-ahead log. The figures come\n"
    "from totals kept with every append, so stats is fast on any journal. The\n"
    "journal is opened read-only.\n";

static const char examples[] = "\nexamples:\n"
                               "  kjournal stats\n"
                               "  kjournal stats -o json | jq .sessions_open\n";

static const kj_field summary_fields[] = {
    {"journal", "journal", 0},
    {"schema_version", "schema version", KJ_F_NUM},
    {"file_bytes", "file size", KJ_F_BYTES},
    {"wal_bytes", "wal size", KJ_F_BYTES},
    {"sessions", "sessions", KJ_F_NUM},
    {"sessions_open", "  open", KJ_F_NUM},
    {"sessions_closed", "  closed", KJ_F_NUM},
    {"events", "events", KJ_F_NUM},
    {"events_session_open", "  session_open", KJ_F_NUM},
    {"events_session_close", "  session_close", KJ_F_NUM},
    {"oldest", "oldest event", KJ_F_TIME},
    {"newest", "newest event", KJ_F_TIME},
    {"reconcile_runs", "reconcile runs", KJ_F_NUM},
    {"reconcile_actions", "reconcile actions", KJ_F_NUM},
};

static const kj_field user_fields[] = {
    {"user", "USER", 0},
    {"open", "OPEN", KJ_F_NUM},
    {"closed", "CLOSED", KJ_F_NUM},
    {"total", "TOTAL", KJ_F_NUM},
};

static const kj_field instance_fields[] = {
    {"instance", "INSTANCE", 0},
    {"open", "OPEN", KJ_F_NUM},
    {"closed", "CLOSED", KJ_F_NUM},
    {"total", "TOTAL", KJ_F_NUM},
};

static int on_count(const char *key, int64_t open, int64_t closed, void *ud)
{
    kj_out *o = ud;
    kj_val v[] = {KJ_S(key), KJ_N(open), KJ_N(closed), KJ_N(open + closed)};
    kj_out_row(o, v);
    return kj_out_closed(o);
}

int kj_cmd_stats(int argc, char **argv)
{
    static const kj_cli_spec spec = {.help = help, .examples = examples};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;

    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_err err = {0};
    kj_journal_stats st;
    int qrc = kj_journal_stats_get(j, &st, &err);
    kj_out *o = kj_out_new(&c);
    if (!qrc) {
        kj_val v[] = {
            KJ_S(c.journal),
            KJ_N(st.schema_version),
            KJ_N(st.file_bytes),
            KJ_N(st.wal_bytes),
            KJ_N(st.sessions_open + st.sessions_closed),
            KJ_N(st.sessions_open),
            KJ_N(st.sessions_closed),
            KJ_N(st.events_open + st.events_close),
            KJ_N(st.events_open),
            KJ_N(st.events_close),
            KJ_N(st.oldest_ms),
            KJ_N(st.newest_ms),
            KJ_N(st.runs),
            KJ_N(st.actions),
        };
        kj_out_begin_object(o, NULL);
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            kj_out_value(o, &summary_fields[i], v[i]);
        kj_out_begin_list(o, "by_user", "-- no sessions --", user_fields, 4);
        qrc = kj_journal_count_by(j, "user", on_count, o, &err);
        kj_out_end_list(o);
        if (qrc >= 0) {
            kj_out_begin_list(o, "by_instance", "-- no sessions --", instance_fields, 4);
            qrc = kj_journal_count_by(j, "instance", on_count, o, &err);
            kj_out_end_list(o);
        }
        if (qrc >= 0)
            kj_out_end_object(o);
    }
    rc = kj_out_free(o);
    if (qrc < 0)
        rc = kj_cli_fail_err(&c, &err);
    kj_journal_close(j);
    return rc;
}
