/*
 * ship_state.c - kjournal ship's state file: per event-log file, its
 * identity and how far kjournald has acknowledged it. JSON, rewritten whole
 * and atomically after acknowledgements:
 *
 *   {"version":1,"files":[{"path":"kyuubi_session/day=20261201/server-k0.json",
 *     "dev":"2049","ino":"131","fp":"9ae16a3b2f90404f","fp_len":256,
 *     "offset":52311,"line":120}]}
 *
 * dev, ino and fp are strings because JSON numbers lose bits above 2^53. The
 * file is read as hostile: every field is checked, and a path is only ever a
 * key to match against what a directory scan finds (never opened as given).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ship.h"

uint64_t kj_ship_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int valid_name(const char *s, size_t n)
{
    if (!n || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '/')
            return 0;
    return 1;
}

int kj_ship_rel_kind(const char *rel)
{
    static const char *const kinds[] = {"kyuubi_session/", "kyuubi_server_info/"};
    for (int k = 0; k < 2; k++) {
        size_t kl = strlen(kinds[k]);
        if (strncmp(rel, kinds[k], kl))
            continue;
        const char *day = rel + kl, *slash = strchr(day, '/');
        if (!slash || strncmp(day, "day=", 4) || !valid_name(day, (size_t)(slash - day)))
            return -1;
        const char *name = slash + 1;
        size_t nl = strlen(name);
        if (nl < 6 || nl > 1024 || strcmp(name + nl - 5, ".json") || !valid_name(name, nl))
            return -1;
        return k;
    }
    return -1;
}

kj_ship_file *kj_ship_state_find(kj_ship_state *st, const char *rel)
{
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->f[i].rel, rel))
            return &st->f[i];
    return NULL;
}

kj_ship_file *kj_ship_state_add(kj_ship_state *st, const char *rel)
{
    int kind = kj_ship_rel_kind(rel);
    char *copy = strdup(rel);
    if (kind < 0 || !copy || kj_grow((void **)&st->f, &st->cap, st->n + 1, sizeof *st->f)) {
        free(copy);
        return NULL;
    }
    kj_ship_file *f = &st->f[st->n++];
    memset(f, 0, sizeof *f);
    f->rel = copy;
    f->kind = (kj_ship_kind)kind;
    return f;
}

void kj_ship_state_free(kj_ship_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->f[i].rel);
    free(st->f);
    memset(st, 0, sizeof *st);
}

/* A decimal (base 10) or hex (base 16) string of a uint64. */
static int u64_field(const cJSON *o, const char *key, int base, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        return -1;
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (!n || n > (base == 16 ? 16u : 20u) ||
        strspn(s, base == 16 ? "0123456789abcdef" : "0123456789") != n)
        return -1;
    errno = 0;
    unsigned long long x = strtoull(s, NULL, base);
    if (errno)
        return -1;
    *out = x;
    return 0;
}

/* A whole number in [0, max]. */
static int num_field(const cJSON *o, const char *key, double max, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > max ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int load_entry(kj_ship_state *st, const cJSON *e, size_t i, kj_err *err)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "path");
    if (!cJSON_IsObject(e) || !cJSON_IsString(p))
        return kj_err_set(err, KJ_ECORRUPT, "entry %zu has no \"path\" string", i);
    if (kj_ship_rel_kind(p->valuestring) < 0)
        return kj_err_set(err, KJ_ECORRUPT,
                          "entry %zu: the path is not an event-log file under the root "
                          "(kyuubi_session/day=D/NAME.json or kyuubi_server_info/...)",
                          i);
    if (kj_ship_state_find(st, p->valuestring))
        return kj_err_set(err, KJ_ECORRUPT, "entry %zu: the path is listed twice", i);
    uint64_t dev, ino, fp;
    int64_t fp_len, offset, line;
    const double max = 9007199254740992.0; /* 2^53 */
    if (u64_field(e, "dev", 10, &dev) || u64_field(e, "ino", 10, &ino) ||
        u64_field(e, "fp", 16, &fp) || num_field(e, "fp_len", KJ_SHIP_FP_MAX, &fp_len) ||
        num_field(e, "offset", max, &offset) || num_field(e, "line", max, &line))
        return kj_err_set(err, KJ_ECORRUPT,
                          "entry %zu: dev, ino (decimal strings), fp (hex string), fp_len "
                          "(0..%d), offset and line (whole numbers >= 0) are required",
                          i, KJ_SHIP_FP_MAX);
    if (line > offset || fp_len > offset + KJ_SHIP_FP_MAX)
        return kj_err_set(err, KJ_ECORRUPT, "entry %zu: more lines than bytes", i);
    kj_ship_file *f = kj_ship_state_add(st, p->valuestring);
    if (!f)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    f->dev = dev, f->ino = ino, f->fp = fp, f->fp_len = (uint32_t)fp_len;
    f->offset = offset, f->line = line;
    return 0;
}

int kj_ship_state_load(const char *path, kj_ship_state *st, kj_err *err)
{
    memset(st, 0, sizeof *st);
    int rc = 0;
    char *buf = NULL;
    cJSON *root = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return kj_err_set(err, KJ_EIO, "cannot open '%s': %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = kj_err_set(err, KJ_ECORRUPT, "'%s' is not a regular file", path);
        goto out;
    }
    if (sb.st_size > (off_t)KJ_SHIP_STATE_MAX) {
        rc = kj_err_set(err, KJ_ECORRUPT, "'%s' is larger than %u MiB: not a state file", path,
                        KJ_SHIP_STATE_MAX >> 20);
        goto out;
    }
    size_t n = 0, cap = (size_t)sb.st_size + 1;
    if (!(buf = malloc(cap))) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    ssize_t r;
    while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = kj_err_set(err, KJ_EIO, "cannot read '%s': %s", path, strerror(errno));
            goto out;
        }
        n += (size_t)r;
    }
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        rc = kj_err_set(err, KJ_ECORRUPT, "'%s' holds a NUL byte: not a state file", path);
        goto out;
    }
    root = cJSON_ParseWithLength(buf, n);
    if (!root || !cJSON_IsObject(root)) {
        rc =
            kj_err_set(err, KJ_ECORRUPT, "'%s' is not a JSON object (truncated or damaged?)", path);
        goto out;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(v) || v->valuedouble != 1) {
        rc = kj_err_set(err, KJ_ECORRUPT, "'%s': \"version\" is not 1", path);
        goto out;
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!cJSON_IsArray(files)) {
        rc = kj_err_set(err, KJ_ECORRUPT, "'%s': \"files\" is not an array", path);
        goto out;
    }
    size_t i = 0;
    for (const cJSON *e = files->child; e; e = e->next, i++)
        if ((rc = load_entry(st, e, i, err)) < 0) {
            kj_err_prefix(err, "'%s': ", path);
            goto out;
        }
out:
    if (rc < 0)
        kj_ship_state_free(st);
    cJSON_Delete(root);
    free(buf);
    close(fd);
    return rc;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        s += w, n -= (size_t)w;
    }
    return 0;
}

int kj_ship_state_save(const char *path, const kj_ship_state *st, int drop_unseen, kj_err *err)
{
    int rc = 0, fd = -1;
    char *text = NULL;
    char tmp[4096], dir[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return kj_err_set(err, KJ_EINVAL, "state path too long");
    cJSON *root = cJSON_CreateObject(), *files = cJSON_CreateArray();
    if (!root || !files) {
        cJSON_Delete(files);
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddItemToObject(root, "files", files);
    for (size_t i = 0; i < st->n; i++) {
        const kj_ship_file *f = &st->f[i];
        if (drop_unseen && !f->seen)
            continue;
        char dev[24], ino[24], fp[24];
        snprintf(dev, sizeof dev, "%" PRIu64, f->dev);
        snprintf(ino, sizeof ino, "%" PRIu64, f->ino);
        snprintf(fp, sizeof fp, "%016" PRIx64, f->fp);
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddStringToObject(e, "path", f->rel) ||
            !cJSON_AddStringToObject(e, "dev", dev) || !cJSON_AddStringToObject(e, "ino", ino) ||
            !cJSON_AddStringToObject(e, "fp", fp) ||
            !cJSON_AddNumberToObject(e, "fp_len", f->fp_len) ||
            !cJSON_AddNumberToObject(e, "offset", (double)f->offset) ||
            !cJSON_AddNumberToObject(e, "line", (double)f->line)) {
            cJSON_Delete(e);
            rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
            goto out;
        }
        cJSON_AddItemToArray(files, e);
    }
    if (!(text = cJSON_PrintUnformatted(root))) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, text, strlen(text)) || write_all(fd, "\n", 1) || fsync(fd) < 0) {
        rc = kj_err_set(err, KJ_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = kj_err_set(err, KJ_EIO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto out;
    }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash == dir ? (void)(dir[1] = 0) : (void)(*slash = 0);
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(text);
    cJSON_Delete(root);
    return rc;
}
