/*
 * The files the journal creates and the errors around them: the journal, its
 * -wal and -shm and its backups are 0600 (0640 with GROUP_READABLE) whatever
 * the umask; a backup to a directory that does not exist says so; a full
 * disk is KJ_ENOSPC ("disk is full"), never a bare i/o error.
 *
 * The full disk is a SQLite VFS registered as the default in front of the
 * real one: once told, it answers every write with SQLITE_FULL, as SQLite's
 * unix VFS does on ENOSPC. No privilege, no real disk to fill.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "testutil.h"

/* --- a VFS whose disk can fill up ------------------------------------------- */

static sqlite3_vfs *real_vfs;
static int disk_full;

typedef struct full_file {
    sqlite3_file base;
    sqlite3_file *real; /* right after this struct */
} full_file;

#define REAL(f) (((full_file *)(f))->real)

static int ff_close(sqlite3_file *f)
{
    int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
    return rc;
}
static int ff_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int ff_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
    return disk_full ? SQLITE_FULL : REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int ff_sync(sqlite3_file *f, int flags)
{
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int ff_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int ff_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int ff_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int ff_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int ff_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int ff_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int ff_device(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int ff_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}
static int ff_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}
static void ff_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int ff_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int ff_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int ff_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static const sqlite3_io_methods ff_methods = {
    3,           ff_close,       ff_read,      ff_write,   ff_truncate, ff_sync,   ff_size,
    ff_lock,     ff_unlock,      ff_reserved,  ff_control, ff_sector,   ff_device, ff_shm_map,
    ff_shm_lock, ff_shm_barrier, ff_shm_unmap, ff_fetch,   ff_unfetch,
};

static int ff_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                   int *out_flags)
{
    (void)vfs;
    full_file *ff = (full_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
    /* Closed through our methods even when the real open failed half-way. */
    ff->base.pMethods = ff->real->pMethods ? &ff_methods : NULL;
    return rc;
}

static sqlite3_vfs full_vfs;

static int register_full_vfs(void **state)
{
    (void)state;
    real_vfs = sqlite3_vfs_find(NULL);
    full_vfs = *real_vfs;
    full_vfs.zName = "kj-test-full";
    full_vfs.szOsFile = (int)sizeof(full_file) + real_vfs->szOsFile;
    full_vfs.xOpen = ff_open;
    full_vfs.pNext = NULL;
    return sqlite3_vfs_register(&full_vfs, 1) == SQLITE_OK ? 0 : -1;
}

/* --- helpers ----------------------------------------------------------------- */

static mode_t mode_of(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("%s does not exist", path);
    return sb.st_mode & 07777;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void append_some(kj_journal *j, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char id[64], sid[64];
        snprintf(id, sizeof id, "%s-e%d", prefix, i);
        snprintf(sid, sizeof sid, "%s-s%d", prefix, i);
        kj_event e = ev_open(id, sid, T0 + i);
        kj_append_result res;
        kj_err err = {0};
        if (kj_journal_append(j, &e, 1, &res, &err))
            fail_msg("append: %s", err.msg);
        assert_int_equal(res.status, KJ_APPEND_STORED);
    }
}

/* --- tests ------------------------------------------------------------------- */

/* Issue 10 item 11: a journal and its backups are private to their owner
 * (0600) or its group (0640), whatever the umask. */
static void check_modes(mode_t umask_value, unsigned flags, mode_t want)
{
    char *dir = test_dir(), *path = path_in(dir, "j.db"), *copy = path_in(dir, "copy.db");
    char wal[600], shm[600];
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    mode_t old = umask(umask_value);
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, flags, &j, &err), 0);
    append_some(j, "m", 3);
    if (mode_of(path) != want || mode_of(wal) != want || mode_of(shm) != want)
        fail_msg("umask %03o flags %u: journal %03o, -wal %03o, -shm %03o; want %03o",
                 (unsigned)umask_value, flags, (unsigned)mode_of(path), (unsigned)mode_of(wal),
                 (unsigned)mode_of(shm), (unsigned)want);
    assert_int_equal(kj_journal_backup(j, copy, &err), 0);
    if (mode_of(copy) != want)
        fail_msg("umask %03o: backup %03o, want %03o", (unsigned)umask_value,
                 (unsigned)mode_of(copy), (unsigned)want);
    kj_journal_close(j);

    /* A read-only handle makes its backups the same way. */
    unlink(copy);
    assert_int_equal(kj_journal_open(path, flags | KJ_JOURNAL_READONLY, &j, &err), 0);
    assert_int_equal(kj_journal_backup(j, copy, &err), 0);
    assert_int_equal(mode_of(copy), want);
    kj_journal_close(j);
    umask(old);
    free(path);
    free(copy);
    rm_tree(dir);
}

static void test_file_modes(void **state)
{
    (void)state;
    check_modes(022, 0, 0600);
    check_modes(0, 0, 0600);
    check_modes(077, 0, 0600);
    check_modes(022, KJ_JOURNAL_GROUP_READABLE, 0640);
    check_modes(0, KJ_JOURNAL_GROUP_READABLE, 0640);
}

/* A journal that exists keeps the mode its owner gave it. */
static void test_existing_mode_kept(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_journal_close(j);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    append_some(j, "k", 1);
    kj_journal_close(j);
    assert_int_equal(mode_of(path), 0644);
    free(path);
    rm_tree(dir);
}

/* Issue 10 item 17: a backup into a directory that does not exist says so,
 * and creates nothing. */
static void test_backup_destination(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db"), *missing = path_in(dir, "no/x.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    int rc = kj_journal_backup(j, missing, &err);
    assert_true(rc < 0);
    assert_int_not_equal(rc, KJ_ECORRUPT);
    if (!strstr(err.msg, "does not exist") || !strstr(err.msg, "/no'"))
        fail_msg("message: %s", err.msg);
    assert_false(exists(missing));
    assert_int_equal(kj_journal_backup(j, dir, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "already exists"));
    kj_journal_close(j);
    free(path);
    free(missing);
    rm_tree(dir);
}

/* Issue 10 item 17: a full disk is KJ_ENOSPC, "disk is full", both for a
 * commit (kjournald answers with kj_strerror of it) and for a backup, which
 * leaves no partial copy. Nothing of the failed commit is stored. */
static void test_disk_full(void **state)
{
    (void)state;
    assert_string_equal(kj_strerror(KJ_ENOSPC), "disk is full");
    char *dir = test_dir(), *path = path_in(dir, "j.db"), *copy = path_in(dir, "copy.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    append_some(j, "before", 2);

    disk_full = 1;
    kj_event e = ev_open("full-e", "full-s", T0);
    kj_append_result res;
    int rc = kj_journal_append(j, &e, 1, &res, &err);
    int rc_backup = kj_journal_backup(j, copy, &err);
    char backup_msg[512];
    snprintf(backup_msg, sizeof backup_msg, "%s", err.msg);
    disk_full = 0;
    assert_int_equal(rc, KJ_ENOSPC);
    assert_int_equal(rc_backup, KJ_ENOSPC);
    if (!strstr(backup_msg, "disk is full"))
        fail_msg("backup message: %s", backup_msg);
    assert_false(exists(copy));

    rc = kj_journal_append(j, &e, 1, &res, &err);
    if (rc)
        fail_msg("append after the disk has room again: %s", err.msg);
    assert_int_equal(res.status, KJ_APPEND_STORED);
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    assert_int_equal(st.events_open, 3);
    assert_int_equal(kj_journal_verify(j, NULL, NULL, NULL, &err), 0);
    kj_journal_close(j);
    free(path);
    free(copy);
    rm_tree(dir);
}

/* The message of a failed commit on a full disk names it. */
static void test_disk_full_message(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "j.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    disk_full = 1;
    kj_event e = ev_open("e", "s", T0);
    kj_append_result res;
    int rc = kj_journal_append(j, &e, 1, &res, &err);
    disk_full = 0;
    assert_int_equal(rc, KJ_ENOSPC);
    assert_int_equal(err.code, KJ_ENOSPC);
    if (!strstr(err.msg, "disk is full"))
        fail_msg("message: %s", err.msg);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_modes),         cmocka_unit_test(test_existing_mode_kept),
        cmocka_unit_test(test_backup_destination), cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_disk_full_message),
    };
    return cmocka_run_group_tests(tests, register_full_vfs, NULL);
}
