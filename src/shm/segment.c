/*
 * shm/segment.c - SharedMemory: a POSIX shm_open segment (or a sealed
 * memfd for the anonymous variant) kept open and mapped; creation
 * registers the name with the tracker (tracker.c) unless asked not to.
 */
#include "shm/shm_impl.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- SharedMemory ------------------------------------------------------ */

/* -errno of the call that just failed (never 0, whatever errno says). */
struct mproc_shm {
    pthread_mutex_t mu;
    char name[MPROC_SHM_NAME_MAX + 1]; /* "" when anonymous */
    int fd;
    void *buf;
    size_t size;
    bool readonly;
};

int mproc__shm_check_name(const char *name, char *out)
{
    if (!name)
        return -EINVAL;
    if (name[0] == '/')
        name++;
    size_t n = strlen(name);
    if (n == 0 || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return -EINVAL;
    if (n > MPROC_SHM_NAME_MAX)
        return -ENAMETOOLONG;
    memcpy(out, name, n + 1);
    return 0;
}

static int shm_open_name(const char *name, int oflag, mode_t mode)
{
    char path[MPROC_SHM_NAME_MAX + 2];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, oflag, mode); /* O_CLOEXEC is implied */
    return fd < 0 ? mproc__neg_errno() : fd;
}

static void shm_name_unlink(const char *name)
{
    char path[MPROC_SHM_NAME_MAX + 2];
    snprintf(path, sizeof path, "/%s", name);
    shm_unlink(path);
}

static mproc_shm *shm_alloc(void)
{
    mproc_shm *s = calloc(1, sizeof *s);
    if (s) {
        pthread_mutex_init(&s->mu, NULL);
        s->fd = -1;
    }
    return s;
}

static int shm_map(mproc_shm *s, size_t size, bool readonly)
{
    int prot = PROT_READ | (readonly ? 0 : PROT_WRITE);
    void *p = mmap(NULL, size, prot, MAP_SHARED, s->fd, 0);
    if (p == MAP_FAILED)
        return mproc__neg_errno();
    s->buf = p;
    s->size = size;
    s->readonly = readonly;
    return 0;
}

static void shm_destroy(mproc_shm *s)
{
    mproc_shm_close(s);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A random name as CPython makes them: "psm_" + token_hex(5). */
static int random_name(char *out)
{
    unsigned char rnd[5];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
        return mproc__neg_errno();
    snprintf(out, MPROC_SHM_NAME_MAX + 1, "psm_%02x%02x%02x%02x%02x", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4]);
    return 0;
}

/*
 * Gives the unnamed tmpfs file fd the name s->name, atomically and only if
 * the name is free (-EEXIST otherwise), registering it with the tracker
 * first unless notrack: there is no instant at which the name exists and
 * the tracker does not know it, and a creator killed before the link
 * leaves nothing behind (the unnamed file dies with its last fd).
 */
static int link_name(mproc_shm *s, int fd, const struct stat *st, bool notrack)
{
    char from[64], to[MPROC_SHM_NAME_MAX + 16];
    snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
    snprintf(to, sizeof to, "/dev/shm/%s", s->name);
    if (!notrack) {
        int r = mproc__tracker_register(s->name, st->st_dev, st->st_ino);
        if (r < 0)
            return r;
    }
    if (linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW) == 0)
        return 0;
    int r = mproc__neg_errno();
    if (!notrack)
        mproc__tracker_unregister(s->name, st->st_dev, st->st_ino);
    return r;
}

/* Creation through an unnamed file linked into place (see link_name).
 * Returns -EOPNOTSUPP where /dev/shm cannot make unnamed files. */
static int create_linked(mproc_shm *s, const char *name, size_t size,
                         bool notrack)
{
    int fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EISDIR || errno == EINVAL || errno == ENOENT
                   ? -EOPNOTSUPP
                   : mproc__neg_errno();
    struct stat st;
    int r = mproc__fd_reserve(fd, size, true);
    if (r == 0 && fstat(fd, &st) < 0)
        r = mproc__neg_errno();
    for (int tries = 0; r == 0 && tries < 100; tries++) {
        if (!name && (r = random_name(s->name)) < 0)
            break;
        r = link_name(s, fd, &st, notrack);
        if (r != -EEXIST || name)
            break;
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    s->fd = fd;
    return 0;
}

/* Creation where unnamed files are not available: O_EXCL create, then
 * size and register (a creator killed in between leaks the name). */
static int create_named(mproc_shm *s, const char *name, size_t size,
                        bool notrack)
{
    int r = -EEXIST;
    for (int tries = 0; tries < 100 && r == -EEXIST; tries++) {
        if (!name && (r = random_name(s->name)) < 0)
            return r;
        r = shm_open_name(s->name, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (name)
            break;
    }
    if (r < 0)
        return r;
    s->fd = r;
    struct stat st;
    r = mproc__fd_reserve(s->fd, size, true);
    if (r == 0 && fstat(s->fd, &st) < 0)
        r = mproc__neg_errno();
    if (r == 0 && !notrack)
        r = mproc__tracker_register(s->name, st.st_dev, st.st_ino);
    if (r < 0)
        shm_name_unlink(s->name);
    return r;
}

int mproc_shm_create(mproc_shm **out, const char *name, size_t size, int flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0 || size > (size_t)INT64_MAX || (flags & ~MPROC_SHM_NOTRACK))
        return -EINVAL;
    bool notrack = flags & MPROC_SHM_NOTRACK;
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    int r = name ? mproc__shm_check_name(name, s->name) : 0;
    if (r == 0)
        r = create_linked(s, name, size, notrack);
    if (r == -EOPNOTSUPP)
        r = create_named(s, name, size, notrack);
    if (r < 0)
        goto out_free;
    r = shm_map(s, size, false);
    if (r < 0) {
        if (!notrack)
            mproc__tracker_unregister(s->name, 0, 0);
        shm_name_unlink(s->name);
        goto out_free;
    }
    *out = s;
    return 0;
out_free:
    shm_destroy(s);
    return r;
}

int mproc_shm_attach(mproc_shm **out, const char *name, int flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (flags & ~(MPROC_SHM_READONLY | MPROC_SHM_TRACK))
        return -EINVAL;
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    bool ro = flags & MPROC_SHM_READONLY;
    int r = mproc__shm_check_name(name, s->name);
    if (r == 0)
        r = shm_open_name(s->name, ro ? O_RDONLY : O_RDWR, 0);
    if (r < 0)
        goto out_free;
    s->fd = r;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        r = mproc__neg_errno();
        goto out_free;
    }
    if (st.st_size <= 0) {
        r = -EINVAL; /* Python: cannot mmap an empty file */
        goto out_free;
    }
    if ((flags & MPROC_SHM_TRACK) &&
        (r = mproc__tracker_register(s->name, st.st_dev, st.st_ino)) < 0)
        goto out_free;
    r = shm_map(s, (size_t)st.st_size, ro);
    if (r < 0)
        goto out_free;
    *out = s;
    return 0;
out_free:
    shm_destroy(s);
    return r;
}

int mproc_shm_new_anonymous(mproc_shm **out, size_t size)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0 || size > (size_t)INT64_MAX)
        return -EINVAL;
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    int r;
    s->fd = mproc__memfd_new("mproc-shm", size, true);
    if (s->fd < 0) {
        r = s->fd;
        goto out_free;
    }
    if (fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) <
        0) {
        r = mproc__neg_errno();
        goto out_free;
    }
    r = shm_map(s, size, false);
    if (r < 0)
        goto out_free;
    *out = s;
    return 0;
out_free:
    shm_destroy(s);
    return r;
}

const char *mproc_shm_name(const mproc_shm *s)
{
    return s && s->name[0] ? s->name : NULL;
}

size_t mproc_shm_size(const mproc_shm *s)
{
    return s ? s->size : 0;
}

void *mproc_shm_buf(const mproc_shm *s)
{
    return s ? s->buf : NULL;
}

int mproc_shm_fd(const mproc_shm *s)
{
    if (!s)
        return -EINVAL;
    return s->fd >= 0 ? s->fd : -EBADF;
}

int mproc_shm_close(mproc_shm *s)
{
    if (!s)
        return -EINVAL;
    pthread_mutex_lock(&s->mu);
    if (s->buf)
        munmap(s->buf, s->size);
    s->buf = NULL;
    mproc__close(s->fd);
    s->fd = -1;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int mproc_shm_unlink_name(const char *name)
{
    char n[MPROC_SHM_NAME_MAX + 1];
    int r = mproc__shm_check_name(name, n);
    if (r < 0)
        return r;
    char path[MPROC_SHM_NAME_MAX + 2];
    snprintf(path, sizeof path, "/%s", n);
    if (shm_unlink(path) < 0)
        return mproc__neg_errno();
    mproc__tracker_unregister(n, 0, 0);
    return 0;
}

int mproc_shm_unlink(mproc_shm *s)
{
    if (!s || !s->name[0])
        return -EINVAL;
    return mproc_shm_unlink_name(s->name);
}

void mproc_shm_free(mproc_shm *s)
{
    if (s)
        shm_destroy(s);
}

pid_t mproc_shm_tracker_pid(void)
{
    return mproc__tracker_pid();
}

/* SharedMemory as a shareable object: the fd, then size, read-only flag
 * and name ("" for anonymous). The child maps the very same segment even
 * if its name has been unlinked meanwhile. */

static int shm_export(const void *obj, mproc_export *ex)
{
    const mproc_shm *s = obj;
    if (s->fd < 0 || !s->buf)
        return MPROC_ECLOSED;
    uint64_t v[2] = {s->size, s->readonly};
    int r = mproc_export_fd(ex, s->fd);
    if (r == 0)
        r = mproc_export_bytes(ex, v, sizeof v);
    if (r == 0)
        r = mproc_export_bytes(ex, s->name, sizeof s->name);
    return r;
}

static int shm_import(mproc_import *im, void **out)
{
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    int r = mproc_import_fd(im);
    if (r < 0)
        goto out_free;
    s->fd = r;
    uint64_t v[2];
    r = mproc_import_bytes(im, v, sizeof v);
    if (r == 0)
        r = mproc_import_bytes(im, s->name, sizeof s->name);
    struct stat st;
    if (r == 0 && fstat(s->fd, &st) < 0)
        r = mproc__neg_errno();
    s->name[MPROC_SHM_NAME_MAX] = '\0';
    if (r == 0 && (v[0] == 0 || v[1] > 1 || st.st_size < 0 ||
                   v[0] > (uint64_t)st.st_size))
        r = MPROC_EPROTO;
    if (r == 0)
        r = shm_map(s, (size_t)v[0], v[1] != 0);
    if (r < 0)
        goto out_free;
    *out = s;
    return 0;
out_free:
    shm_destroy(s);
    return r;
}

static void shm_kind_free(void *obj)
{
    mproc_shm_free(obj);
}

const mproc_kind mproc_shm_kind = {"mproc.SharedMemory", shm_export, shm_import,
                                   shm_kind_free};

int mproc_args_add_value(mproc_args *a, mproc_value *v)
{
    return v ? mproc_args_add_object(a, &mproc_value_kind, v) : -EINVAL;
}

int mproc_args_add_array(mproc_args *a, mproc_array *arr)
{
    return arr ? mproc_args_add_object(a, &mproc_array_kind, arr) : -EINVAL;
}

int mproc_args_add_shm(mproc_args *a, mproc_shm *s)
{
    return s ? mproc_args_add_object(a, &mproc_shm_kind, s) : -EINVAL;
}

mproc_value *mproc_args_value(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_value_kind);
}

mproc_array *mproc_args_array(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_array_kind);
}

mproc_shm *mproc_args_shm(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_shm_kind);
}
