/*
 * ref_server - reference servers to read kjournald's figures against, on the
 * same machine and disk; bench_ingest --endpoint E measures them:
 *
 *   echo       replies at once and stores nothing: the floor that the client,
 *              libzmq and tcp loopback set on this machine.
 *   prototype  issue 15's "throwaway prototype": one thread; takes every
 *              request queued, appends them in one transaction (events with a
 *              UNIQUE event_id, plus a sessions upsert), commits with WAL and
 *              synchronous=FULL, then replies. SQLite checkpoints the WAL
 *              itself (wal_autocheckpoint), unless --no-checkpoint. It takes
 *              kjournald's batches too ({"events":[...]}) and answers with
 *              per-event results (stored or duplicate), so that bench_ingest's
 *              publishers can measure its throughput (--endpoint).
 *
 * What it measures is what the disk and the machine allow for a journal much
 * simpler than kjournal's; tools/bench/latency_floor.sh runs it beside
 * kjournald. Not a product: no wire validation, no error replies.
 *
 * usage: ref_server echo ENDPOINT
 *        ref_server prototype ENDPOINT DB [--no-checkpoint]
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_BATCH 1024 /* requests in one commit */
#define MAX_FRAMES 4   /* routing id, request id, empty delimiter, event */

static const char ok_reply[] = "{\"status\":\"ok\"}";

typedef struct request {
    zmq_msg_t f[MAX_FRAMES];
    int n;       /* frames received; the last is the body */
    char *reply; /* NULL: ok_reply */
} request;

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* One multipart message, without waiting for the first frame; 0 when none. */
static int take(void *s, request *r)
{
    int more = 1;
    r->n = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, r->n ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return r->n;
        }
        more = zmq_msg_more(&m);
        if (r->n < MAX_FRAMES)
            r->f[r->n++] = m;
        else
            zmq_msg_close(&m); /* a body in more frames than we keep: dropped */
    }
    return r->n;
}

/* The request's envelope back, then the reply; the body is closed. */
static void reply(void *s, request *r)
{
    for (int i = 0; i < r->n - 1; i++)
        zmq_msg_send(&r->f[i], s, ZMQ_SNDMORE);
    zmq_msg_close(&r->f[r->n - 1]);
    if (r->reply)
        zmq_send(s, r->reply, strlen(r->reply), 0);
    else
        zmq_send(s, ok_reply, sizeof ok_reply - 1, 0);
    free(r->reply);
    r->reply = NULL;
}

typedef struct store {
    sqlite3 *db;
    sqlite3_stmt *event, *session;
} store;

static int store_open(store *st, const char *path, int checkpoints)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
             "PRAGMA wal_autocheckpoint = %d;"
             "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY,"
             " event_id TEXT UNIQUE, session TEXT, type TEXT, time_ms INTEGER, payload TEXT);"
             "CREATE TABLE IF NOT EXISTS sessions (session_id TEXT PRIMARY KEY,"
             " state INTEGER, opened_ms INTEGER, closed_ms INTEGER)",
             checkpoints ? 1000 : 0);
    if (sqlite3_open(path, &st->db) != SQLITE_OK ||
        sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "INSERT OR IGNORE INTO events (event_id, session, type, time_ms,"
                           " payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &st->event, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "INSERT INTO sessions (session_id, state, opened_ms) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT (session_id) DO UPDATE SET state = ?2, closed_ms = ?3",
                           -1, &st->session, NULL) != SQLITE_OK) {
        fprintf(stderr, "ref_server: cannot open '%s': %s\n", path, sqlite3_errmsg(st->db));
        return -1;
    }
    return 0;
}

static void store_close(store *st)
{
    sqlite3_finalize(st->event);
    sqlite3_finalize(st->session);
    sqlite3_close(st->db);
}

static const char *str(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The event and its session's upsert; its result, or NULL for what is not
 * an event (skipped). The payload stored is the event's own text. */
static const char *store_event(store *st, const cJSON *e, const char *text, size_t len)
{
    const char *id = str(e, "event_id"), *sid = str(e, "session_id"), *type = str(e, "type");
    const char *status = NULL;
    if (id && sid && type) {
        sqlite3_int64 t =
            (sqlite3_int64)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "time_ms"));
        sqlite3_bind_text(st->event, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st->event, 2, sid, -1, SQLITE_STATIC);
        sqlite3_bind_text(st->event, 3, type, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st->event, 4, t);
        sqlite3_bind_text(st->event, 5, text, (int)len, SQLITE_STATIC);
        sqlite3_step(st->event);
        sqlite3_reset(st->event);
        status = sqlite3_changes(st->db) ? "stored" : "duplicate";
        sqlite3_bind_text(st->session, 1, sid, -1, SQLITE_STATIC);
        sqlite3_bind_int(st->session, 2, strcmp(type, "session_close") == 0 ? 2 : 1);
        sqlite3_bind_int64(st->session, 3, t);
        sqlite3_step(st->session);
        sqlite3_reset(st->session);
    }
    return status;
}

static void add_result(cJSON *results, const cJSON *e, const char *status)
{
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "event_id", str(e, "event_id") ? str(e, "event_id") : "");
    cJSON_AddStringToObject(res, "status", status ? status : "rejected");
    cJSON_AddItemToArray(results, res);
}

/* A request: one event, or a batch {"events":[...]}; r->reply gets the
 * results in kjournald's form, event ids and statuses only. */
static void store_request(store *st, request *r)
{
    zmq_msg_t *body = &r->f[r->n - 1];
    cJSON *q = cJSON_ParseWithLength(zmq_msg_data(body), zmq_msg_size(body));
    cJSON *events = cJSON_GetObjectItemCaseSensitive(q, "events");
    cJSON *out = cJSON_CreateObject(), *results = cJSON_CreateArray();
    cJSON_AddBoolToObject(out, "ok", 1);
    if (str(q, "request_id"))
        cJSON_AddStringToObject(out, "request_id", str(q, "request_id"));
    cJSON_AddItemToObject(out, "results", results);
    if (cJSON_IsArray(events)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, events)
        {
            char *text = cJSON_PrintUnformatted(e);
            add_result(results, e, text ? store_event(st, e, text, strlen(text)) : NULL);
            free(text);
        }
    } else if (q) {
        add_result(results, q, store_event(st, q, zmq_msg_data(body), zmq_msg_size(body)));
    }
    r->reply = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    cJSON_Delete(q);
}

int main(int argc, char **argv)
{
    int echo = argc == 3 && strcmp(argv[1], "echo") == 0;
    int proto = (argc == 4 || (argc == 5 && strcmp(argv[4], "--no-checkpoint") == 0)) &&
                strcmp(argv[1], "prototype") == 0;
    if (!echo && !proto) {
        fprintf(stderr, "usage: ref_server echo ENDPOINT\n"
                        "       ref_server prototype ENDPOINT DB [--no-checkpoint]\n");
        return 2;
    }
    store st = {0};
    if (proto && store_open(&st, argv[3], argc == 4) < 0)
        return 1;
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_ROUTER);
    int hwm = 0, linger = 0;
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s, argv[2]) != 0) {
        fprintf(stderr, "ref_server: cannot listen on '%s': %s\n", argv[2], zmq_strerror(errno));
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    static request batch[MAX_BATCH];
    while (!stopping) {
        zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 200) <= 0)
            continue;
        int n = 0;
        while (n < MAX_BATCH && take(s, &batch[n]) > 0)
            n++;
        if (proto) {
            sqlite3_exec(st.db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
            for (int i = 0; i < n; i++)
                store_request(&st, &batch[i]);
            if (sqlite3_exec(st.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
                fprintf(stderr, "ref_server: commit failed: %s\n", sqlite3_errmsg(st.db));
                return 1;
            }
        }
        for (int i = 0; i < n; i++)
            reply(s, &batch[i]);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    if (proto)
        store_close(&st);
    return 0;
}
