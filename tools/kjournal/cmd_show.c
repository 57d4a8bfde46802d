/* cmd_show.c - kjournal show: one session, its events and the reconcile
 * actions on its engine's pods. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal show [OPTIONS] SESSION_ID\n"
    "\n"
    "Shows a session: its state, user, Kyuubi server and engine, then its events\n"
    "and the reconcile actions that touched its engine's pods. The journal is\n"
    "opened read-only. With -o csv the three parts are tables separated by an\n"
    "empty line; with -o json they are one object with \"events\" and \"actions\".\n";

static const char examples[] =
    "\nexamples:\n"
    "  kjournal show 8e9f1c2a-41d7-4b1e-9b0e-3f1c2a41d74b\n"
    "  kjournal show --utc -o json-pretty 8e9f1c2a-41d7-4b1e-9b0e-3f1c2a41d74b\n";

/* The session as an object: lowercase titles read better as "title  value". */
static const kj_field session_fields[] = {
    {"session_id", "session", 0},
    {"state", "state", KJ_F_STATE},
    {"type", "type", 0},
    {"user", "user", 0},
    {"instance", "instance", 0},
    {"engine_tag", "engine tag", 0},
    {"engine_id", "engine id", 0},
    {"engine_namespace", "namespace", 0},
    {"created", "created", KJ_F_TIME},
    {"updated", "updated", KJ_F_TIME},
    {"closed", "closed", KJ_F_TIME},
    {"close_reason", "close reason", 0},
    {"events_count", "events", KJ_F_NUM},
};

typedef struct ctx {
    kj_out *o;
    int started;
} ctx;

static int on_session(const kj_session *s, void *ud)
{
    ctx *x = ud;
    kj_out_begin_object(x->o, NULL);
    x->started = 1;
    /* One value per line, as the fields above. */
    // clang-format off
    kj_val v[] = {
        KJ_S(s->session_id),
        KJ_S(kj_session_state_name(s->state)),
        KJ_S(s->session_type),
        KJ_S(s->user),
        KJ_S(s->instance),
        KJ_S(s->engine_tag),
        KJ_S(s->engine_id),
        KJ_S(s->engine_namespace),
        KJ_N(s->created_ms),
        KJ_N(s->updated_ms),
        KJ_N(s->closed_ms),
        KJ_S(s->close_reason),
        KJ_N(s->event_count),
    };
    // clang-format on
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        kj_out_value(x->o, &session_fields[i], v[i]);
    return 0;
}

int kj_cmd_show(int argc, char **argv)
{
    const kj_cli_spec spec = {
        .help = help, .examples = examples, .flags = KJ_CLI_NOTFOUND | KJ_CLI_OPERAND};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;
    if (!c.operand)
        return kj_cli_fail(&c, KJ_EXIT_USAGE, "which session? give a SESSION_ID");
    const char *id = c.operand;

    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_err err = {0};
    ctx x = {.o = kj_out_new(&c)};
    /* Each part is its own query: no read transaction outlives a page. */
    int qrc = kj_journal_session_get(j, id, on_session, &x, &err);
    if (qrc == 0) {
        kj_event_filter ef = {.session_id = id};
        kj_out_begin_list(x.o, "events", "-- no events --", kj_event_fields, kj_event_nfields);
        qrc = kj_journal_events(j, &ef, kj_print_event, x.o, &err);
        kj_out_end_list(x.o);
    }
    if (qrc == 0) {
        kj_action_filter af = {.session_id = id};
        kj_out_begin_list(x.o, "actions", "-- no reconcile actions --", kj_action_fields,
                          kj_action_nfields);
        qrc = kj_journal_actions(j, &af, kj_print_action, x.o, &err);
        kj_out_end_list(x.o);
    }
    if (x.started && qrc >= 0)
        kj_out_end_object(x.o);
    rc = kj_out_free(x.o);
    if (qrc < 0)
        rc = kj_cli_fail_err(&c, &err);
    kj_journal_close(j);
    return rc;
}
