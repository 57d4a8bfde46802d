/*
 * bench_journal - appends session events to a kjournal journal and, in the
 * same run on the same disk, inserts the same rows into a plain SQLite table
 * (one prepared INSERT, UNIQUE event_id, same columns, WAL, synchronous=FULL).
 * Prints events/s for both at each batch size, the ratio, and the pages
 * (4 KiB) each side wrote per event (WAL frames and checkpoints) and the CPU
 * (user + system, µs) each spent per event.
 *
 * usage: bench_journal [--dir DIR] [--events N] [--rounds R] [--batch 1|64|1024]
 *                      [--workload kyuubi|connection]
 */
#include <getopt.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "journal/journal.h"

#define PAYLOAD_BYTES 300
#define PAGE_BYTES 4096.0

/* Bytes this process has handed to write(2)/pwrite(2) so far (/proc/self/io
 * wchar): WAL frames, checkpoints into the database file, everything SQLite
 * writes. Divided by the page size and the events, it is the pages written
 * per event, the quantity a commit's cost follows. -1 when unknown. */
static long long written_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    long long v = -1;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %lld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

typedef struct result {
    double rate;  /* events/s */
    double pages; /* pages written per event */
    double cpu;   /* CPU (user + system) per event, microseconds */
} result;

/* CPU this process used so far, in microseconds: on a shared machine the
 * wall-clock rate follows the run queue, the CPU per event does not. */
static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double pages_per_event(long long before, size_t n)
{
    long long after = written_bytes();
    return before < 0 || after < 0 ? -1 : (double)(after - before) / PAGE_BYTES / (double)n;
}

typedef struct workload {
    size_t n;
    kj_event *ev;
    char (*ids)[64];
    char (*sessions)[64];
    char (*apps)[64];
    char (*tags)[64];
    char payload[PAYLOAD_BYTES + 1];
} workload;

/*
 * Two workloads of n events, with random-looking ids as UUIDs are:
 *
 *   connection  each session its own engine (share level CONNECTION): open
 *               with the engine, close; every index sees new random keys.
 *   kyuubi      what Kyuubi posts at share level USER: created (no engine
 *               yet), opened (engine id and tag), closed; ten sessions of a
 *               user share one engine, whose tag is the first one's id.
 */
static int workload_make(workload *w, size_t n, const char *tag, int kyuubi)
{
    w->n = n;
    w->ev = calloc(n, sizeof *w->ev);
    w->ids = calloc(n, sizeof *w->ids);
    w->sessions = calloc(n, sizeof *w->sessions);
    w->apps = calloc(n, sizeof *w->apps);
    w->tags = calloc(n, sizeof *w->tags);
    if (!w->ev || !w->ids || !w->sessions || !w->apps || !w->tags)
        return -1;
    memset(w->payload, 'x', PAYLOAD_BYTES);
    w->payload[PAYLOAD_BYTES] = '\0';
    const size_t per = kyuubi ? 3 : 2;
    static const char *const phases[] = {"created", "opened", "closed"};
    for (size_t i = 0; i < n; i++) {
        size_t s = i / per, phase = i % per;
        size_t engine = kyuubi ? s / 10 : s;
        unsigned long long h = (s + 1) * 0x9E3779B97F4A7C15ULL;
        unsigned long long eh = (engine * (kyuubi ? 10 : 1) + 1) * 0x9E3779B97F4A7C15ULL;
        int closing = phase == per - 1, has_engine = !kyuubi || phase >= 1;
        snprintf(w->sessions[i], sizeof w->sessions[i], "%s-%016llx", tag, h);
        snprintf(w->ids[i], sizeof w->ids[i], "%s-%016llx-%s", tag, h,
                 kyuubi    ? phases[phase]
                 : closing ? "close"
                           : "open");
        snprintf(w->tags[i], sizeof w->tags[i], "%s-%016llx", tag, eh);
        snprintf(w->apps[i], sizeof w->apps[i], "spark-%016llx", eh * 31);
        w->ev[i] = (kj_event){
            .event_id = w->ids[i],
            .type = closing ? KJ_EVENT_SESSION_CLOSE : KJ_EVENT_SESSION_OPEN,
            .session_id = w->sessions[i],
            .instance = "10.244.1.23:10009",
            .user = s % 7 ? "alice" : "bob",
            .engine_id = has_engine ? w->apps[i] : NULL,
            .engine_tag = has_engine ? w->tags[i] : NULL,
            .engine_namespace = "kyuubi",
            .time_ms = 1764391200000LL + (int64_t)i,
            .reason = closing ? "client" : NULL,
            .payload = w->payload,
        };
    }
    return 0;
}

static void workload_free(workload *w)
{
    free(w->ev);
    free(w->ids);
    free(w->sessions);
    free(w->apps);
    free(w->tags);
}

/* --keep-wal DIR: a copy of the journal and its WAL as the last commit left
 * them, for tools/bench/wal_pages.py (which b-tree each WAL frame wrote). */
static const char *keep_wal_dir;

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t n;
    while (out && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            break;
    if (!in || !out || ferror(in) || fclose(out))
        fprintf(stderr, "bench_journal: cannot copy %s to %s\n", from, to);
    if (in)
        fclose(in);
}

static void keep_wal(const char *path, size_t batch)
{
    char from[4200], to[4200];
    snprintf(to, sizeof to, "%s/journal-b%zu.db", keep_wal_dir, batch);
    copy_file(path, to);
    snprintf(from, sizeof from, "%s-wal", path);
    snprintf(to, sizeof to, "%s/journal-b%zu.db-wal", keep_wal_dir, batch);
    copy_file(from, to);
}

static result run_journal(const char *path, const workload *w, size_t batch)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    if (kj_journal_open(path, 0, &j, &err)) {
        fprintf(stderr, "bench_journal: %s\n", err.msg);
        exit(1);
    }
    kj_append_result *res = calloc(batch, sizeof *res);
    long long w0 = written_bytes();
    double c0 = cpu_us();
    int64_t t0 = kj_mono_ms();
    for (size_t i = 0; i < w->n; i += batch) {
        size_t n = w->n - i < batch ? w->n - i : batch;
        if (kj_journal_append(j, w->ev + i, n, res, &err)) {
            fprintf(stderr, "bench_journal: %s\n", err.msg);
            exit(1);
        }
        for (size_t k = 0; k < n; k++)
            if (res[k].status != KJ_APPEND_STORED) {
                fprintf(stderr, "bench_journal: event not stored: %s\n", res[k].message);
                exit(1);
            }
    }
    int64_t ms = kj_mono_ms() - t0;
    result r = {(double)w->n * 1000.0 / (double)(ms ? ms : 1), pages_per_event(w0, w->n),
                (cpu_us() - c0) / (double)w->n};
    if (keep_wal_dir)
        keep_wal(path, batch);
    free(res);
    kj_journal_close(j);
    return r;
}

static void must(int rc, sqlite3 *db, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bench_journal: plain sqlite: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static result run_plain(const char *path, const workload *w, size_t batch)
{
    sqlite3 *db = NULL;
    must(sqlite3_open(path, &db), db, "open");
    must(sqlite3_exec(db,
                      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                      "PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 4000;"
                      "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY,"
                      " event_id TEXT NOT NULL UNIQUE, session_id TEXT NOT NULL,"
                      " type INTEGER NOT NULL, time_ms INTEGER NOT NULL,"
                      " recorded_ms INTEGER NOT NULL, instance TEXT, user TEXT,"
                      " engine_id TEXT, engine_tag TEXT, engine_namespace TEXT, reason TEXT,"
                      " payload TEXT)",
                      NULL, NULL, NULL),
         db, "schema");
    sqlite3_stmt *st = NULL;
    must(sqlite3_prepare_v2(db,
                            "INSERT INTO events (event_id, session_id, type, time_ms,"
                            " recorded_ms, instance, user, engine_id, engine_tag,"
                            " engine_namespace, reason, payload)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            -1, &st, NULL),
         db, "prepare");
    long long w0 = written_bytes();
    double c0 = cpu_us();
    int64_t t0 = kj_mono_ms();
    for (size_t i = 0; i < w->n; i += batch) {
        size_t n = w->n - i < batch ? w->n - i : batch;
        must(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), db, "begin");
        for (size_t k = i; k < i + n; k++) {
            const kj_event *e = &w->ev[k];
            const char *text[] = {e->event_id, e->session_id};
            sqlite3_bind_text(st, 1, text[0], -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, text[1], -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 3, e->type);
            sqlite3_bind_int64(st, 4, e->time_ms);
            sqlite3_bind_int64(st, 5, kj_now_ms());
            sqlite3_bind_text(st, 6, e->instance, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 7, e->user, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 8, e->engine_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 9, e->engine_tag, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 10, e->engine_namespace, -1, SQLITE_STATIC);
            if (e->reason)
                sqlite3_bind_text(st, 11, e->reason, -1, SQLITE_STATIC);
            else
                sqlite3_bind_null(st, 11);
            sqlite3_bind_text(st, 12, e->payload, -1, SQLITE_STATIC);
            must(sqlite3_step(st), db, "insert");
            sqlite3_reset(st);
        }
        must(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), db, "commit");
    }
    int64_t ms = kj_mono_ms() - t0;
    result r = {(double)w->n * 1000.0 / (double)(ms ? ms : 1), pages_per_event(w0, w->n),
                (cpu_us() - c0) / (double)w->n};
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

static void remove_db(const char *path)
{
    char p[4200];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_journal [--dir DIR] [--events N] [--rounds R] [--batch 1|64|1024]\n"
                 "                     [--workload kyuubi|connection] [--keep-wal DIR]\n"
                 "Appends N events (default 200000; batch 1 uses N/50) to a kjournal journal\n"
                 "and to a plain SQLite table in DIR (default: the current directory), at\n"
                 "batch sizes 1, 64 and 1024, alternating the two R times (default 3), and\n"
                 "prints the best events/s of each, the ratio, and the 4 KiB pages each wrote\n"
                 "per event (the best round's, from /proc/self/io). Workloads: kyuubi (default:\n"
                 "created/opened/closed per session, ten sessions per engine) or connection\n"
                 "(open/close, one engine per session: the worst case for the indexes).\n"
                 "--keep-wal DIR copies each journal and its WAL into DIR before closing it\n"
                 "(journal-bBATCH.db): tools/bench/wal_pages.py counts the pages per b-tree.\n");
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    size_t events = 200000;
    int rounds = 3;
    size_t only_batch = 0;
    int kyuubi = 1;
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},      {"events", required_argument, NULL, 'n'},
        {"rounds", required_argument, NULL, 'r'},   {"batch", required_argument, NULL, 'b'},
        {"workload", required_argument, NULL, 'w'}, {"keep-wal", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "d:n:r:b:w:k:h", opts, NULL)) != -1;) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            events = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'b':
            only_batch = strtoul(optarg, NULL, 10);
            break;
        case 'w':
            if (strcmp(optarg, "kyuubi") && strcmp(optarg, "connection")) {
                fprintf(stderr, "bench_journal: --workload is kyuubi or connection\n");
                return 2;
            }
            kyuubi = !strcmp(optarg, "kyuubi");
            break;
        case 'k':
            keep_wal_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (events < 1000 || rounds < 1) {
        fprintf(stderr, "bench_journal: --events must be at least 1000 and --rounds at least 1\n");
        return 2;
    }
    /* The heap as kjournald tunes it (ipc/server.c), for both sides: else
     * glibc gives the heap's top back and takes it again at every commit.
     * KJ_BENCH_GLIBC_HEAP=default keeps glibc's defaults (as before). */
    const char *heap = getenv("KJ_BENCH_GLIBC_HEAP");
    if (!heap || strcmp(heap, "default")) {
        mallopt(M_TRIM_THRESHOLD, 32 << 20);
        mallopt(M_TOP_PAD, 1 << 20);
    }
    char jpath[4096], ppath[4096];
    snprintf(jpath, sizeof jpath, "%s/bench-journal.db", dir);
    snprintf(ppath, sizeof ppath, "%s/bench-plain.db", dir);
    const size_t batches[] = {1, 64, 1024};
    printf("workload: %s\n", kyuubi ? "kyuubi" : "connection");
    printf("%-6s %10s %14s %14s %7s %13s %13s %11s %11s\n", "batch", "events", "journal ev/s",
           "sqlite ev/s", "ratio", "journal pg/ev", "sqlite pg/ev", "journal µs", "sqlite µs");
    for (size_t b = 0; b < 3; b++) {
        if (only_batch && batches[b] != only_batch)
            continue;
        size_t n = batches[b] == 1 ? events / 50 : events;
        result best_j = {0}, best_p = {0};
        for (int r = 0; r < rounds; r++) {
            /* Fresh ids per round, so every round inserts into empty files. */
            char tag[32];
            snprintf(tag, sizeof tag, "b%zu-r%d", batches[b], r);
            workload w;
            if (workload_make(&w, n, tag, kyuubi)) {
                fprintf(stderr, "bench_journal: out of memory\n");
                return 1;
            }
            remove_db(jpath);
            remove_db(ppath);
            result jr = run_journal(jpath, &w, batches[b]);
            result pr = run_plain(ppath, &w, batches[b]);
            best_j = jr.rate > best_j.rate ? jr : best_j;
            best_p = pr.rate > best_p.rate ? pr : best_p;
            workload_free(&w);
        }
        printf("%-6zu %10zu %14.0f %14.0f %6.0f%% %13.2f %13.2f %11.1f %11.1f\n", batches[b], n,
               best_j.rate, best_p.rate, 100.0 * best_j.rate / best_p.rate, best_j.pages,
               best_p.pages, best_j.cpu, best_p.cpu);
        fflush(stdout);
    }
    remove_db(jpath);
    remove_db(ppath);
    return 0;
}
