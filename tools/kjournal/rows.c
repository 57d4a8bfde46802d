/*
 * rows.c - how sessions, events, reconcile actions and runs print: their
 * fields (JSON keys, short titles) and their values, in one order.
 */
#include "cli.h"

/* The short format's ENGINE: the tag when there is one, else the app id. */
static const char *engine_of(const char *tag, const char *id)
{
    return tag && *tag ? tag : id;
}

const kj_field kj_session_fields[] = {
    {"created", "CREATED", KJ_F_TIME},
    {"session_id", "SESSION", 0},
    {"state", "STATE", KJ_F_STATE},
    {"type", "TYPE", 0},
    {"user", "USER", 0},
    {"instance", "INSTANCE", 0},
    {"engine", "ENGINE", KJ_F_SHORT},
    {"engine_tag", "ENGINE TAG", KJ_F_NOSHORT},
    {"engine_id", "ENGINE ID", KJ_F_NOSHORT},
    {"engine_namespace", "NAMESPACE", KJ_F_NOSHORT},
    {"updated", "UPDATED", KJ_F_TIME | KJ_F_NOSHORT},
    {"events", "EVENTS", KJ_F_NUM},
    {"closed", "CLOSED", KJ_F_TIME},
    {"close_reason", "REASON", 0},
};
const size_t kj_session_nfields = sizeof kj_session_fields / sizeof kj_session_fields[0];

void kj_session_vals(const kj_session *s, kj_val *v)
{
    v[0] = KJ_N(s->created_ms);
    v[1] = KJ_S(s->session_id);
    v[2] = KJ_S(kj_session_state_name(s->state));
    v[3] = KJ_S(s->session_type);
    v[4] = KJ_S(s->user);
    v[5] = KJ_S(s->instance);
    v[6] = KJ_S(engine_of(s->engine_tag, s->engine_id));
    v[7] = KJ_S(s->engine_tag);
    v[8] = KJ_S(s->engine_id);
    v[9] = KJ_S(s->engine_namespace);
    v[10] = KJ_N(s->updated_ms);
    v[11] = KJ_N(s->event_count);
    v[12] = KJ_N(s->closed_ms);
    v[13] = KJ_S(s->close_reason);
}

const kj_field kj_event_fields[] = {
    {"time", "TIME", KJ_F_TIME},
    {"type", "TYPE", KJ_F_STATE},
    {"session_id", "SESSION", 0},
    {"user", "USER", 0},
    {"instance", "INSTANCE", 0},
    {"engine", "ENGINE", KJ_F_SHORT},
    {"engine_tag", "ENGINE TAG", KJ_F_NOSHORT},
    {"engine_id", "ENGINE ID", KJ_F_NOSHORT},
    {"engine_namespace", "NAMESPACE", KJ_F_NOSHORT},
    {"reason", "REASON", 0},
    {"seq", "SEQ", KJ_F_NUM | KJ_F_NOSHORT},
    {"event_id", "EVENT ID", KJ_F_NOSHORT},
    {"recorded", "RECORDED", KJ_F_TIME | KJ_F_NOSHORT},
    {"payload", "PAYLOAD", KJ_F_NOSHORT},
};
const size_t kj_event_nfields = sizeof kj_event_fields / sizeof kj_event_fields[0];

void kj_event_vals(const kj_event_row *r, kj_val *v)
{
    const kj_event *e = &r->event;
    v[0] = KJ_N(e->time_ms);
    v[1] = KJ_S(kj_event_type_name(e->type));
    v[2] = KJ_S(e->session_id);
    v[3] = KJ_S(e->user);
    v[4] = KJ_S(e->instance);
    v[5] = KJ_S(engine_of(e->engine_tag, e->engine_id));
    v[6] = KJ_S(e->engine_tag);
    v[7] = KJ_S(e->engine_id);
    v[8] = KJ_S(e->engine_namespace);
    v[9] = KJ_S(e->reason);
    v[10] = KJ_N(r->seq);
    v[11] = KJ_S(e->event_id);
    v[12] = KJ_N(r->recorded_ms);
    v[13] = KJ_S(e->payload);
}

const kj_field kj_action_fields[] = {
    {"time", "TIME", KJ_F_TIME},
    {"run", "RUN", KJ_F_NUM},
    {"action", "ACTION", 0},
    {"result", "RESULT", KJ_F_STATE},
    {"http_code", "HTTP", KJ_F_NUM},
    {"namespace", "NAMESPACE", 0},
    {"pod", "POD", 0},
    {"uid", "UID", KJ_F_NOSHORT},
    {"engine_tag", "ENGINE TAG", KJ_F_NOSHORT},
    {"engine_id", "ENGINE ID", KJ_F_NOSHORT},
    {"reason", "REASON", 0},
    {"message", "MESSAGE", 0},
    {"id", "ID", KJ_F_NUM | KJ_F_NOSHORT},
};
const size_t kj_action_nfields = sizeof kj_action_fields / sizeof kj_action_fields[0];

void kj_action_vals(const kj_action *a, kj_val *v)
{
    v[0] = KJ_N(a->time_ms);
    v[1] = KJ_N(a->run_id);
    v[2] = KJ_S(a->action);
    v[3] = KJ_S(a->result);
    v[4] = KJ_N(a->http_code);
    v[5] = KJ_S(a->namespace_);
    v[6] = KJ_S(a->pod);
    v[7] = KJ_S(a->uid);
    v[8] = KJ_S(a->engine_tag);
    v[9] = KJ_S(a->engine_id);
    v[10] = KJ_S(a->reason);
    v[11] = KJ_S(a->message);
    v[12] = KJ_N(a->id);
}

const kj_field kj_run_fields[] = {
    {"id", "RUN", KJ_F_NUM},
    {"started", "STARTED", KJ_F_TIME},
    {"finished", "FINISHED", KJ_F_TIME},
    {"trigger", "TRIGGER", 0},
    {"dry_run", "DRY RUN", KJ_F_BOOL},
    {"status", "STATUS", KJ_F_STATE},
    {"pods_seen", "PODS", KJ_F_NUM},
    {"actions_ok", "OK", KJ_F_NUM},
    {"actions_failed", "FAILED", KJ_F_NUM},
};
const size_t kj_run_nfields = sizeof kj_run_fields / sizeof kj_run_fields[0];

void kj_run_vals(const kj_run *r, kj_val *v)
{
    v[0] = KJ_N(r->id);
    v[1] = KJ_N(r->started_ms);
    v[2] = KJ_N(r->finished_ms);
    v[3] = KJ_S(r->trigger);
    v[4] = KJ_N(r->dry_run);
    v[5] = KJ_S(r->status);
    v[6] = KJ_N(r->pods_seen);
    v[7] = KJ_N(r->actions_ok);
    v[8] = KJ_N(r->actions_failed);
}

int kj_print_session(const kj_session *s, void *out)
{
    kj_val v[KJ_VALS_MAX];
    kj_session_vals(s, v);
    kj_out_row(out, v);
    return kj_out_closed(out);
}

int kj_print_event(const kj_event_row *r, void *out)
{
    kj_val v[KJ_VALS_MAX];
    kj_event_vals(r, v);
    kj_out_row(out, v);
    return kj_out_closed(out);
}

int kj_print_action(const kj_action *a, void *out)
{
    kj_val v[KJ_VALS_MAX];
    kj_action_vals(a, v);
    kj_out_row(out, v);
    return kj_out_closed(out);
}

int kj_print_run(const kj_run *r, void *out)
{
    kj_val v[KJ_VALS_MAX];
    kj_run_vals(r, v);
    kj_out_row(out, v);
    return kj_out_closed(out);
}
