/*
 * heap.c - the shared heap behind Value and Array, and the lock they carry.
 *
 * What multiprocessing.heap does for Python: many small blocks in a few
 * shared mappings, allocated and freed at any time, even after children
 * have started, so that a new Value costs no new mapping.
 *
 * An arena is a memfd of 1 MiB (a dedicated one for blocks above 256 KiB),
 * sealed against resizing, mapped MAP_SHARED. Its first units hold a header
 * with a robust process-shared mutex and a bitmap with one bit per 64-byte
 * unit (one cache line, so independent Values never share a line).
 *
 * Who allocates where: a process allocates only from arenas it created
 * itself, as Python's heap starts afresh in a forked child. Children use
 * the arenas they inherited or imported only for the blocks they were
 * given. So a child that is killed, or exits holding blocks, never leaks
 * space in its parent's arenas: its own arenas go away with the last
 * mapping. The arena's state is nevertheless guarded by a robust
 * process-shared mutex and kept crash-safe, so the format does not depend
 * on that policy: a process killed mid-update leaves at worst some bits
 * set (a leak), never a block handed out twice, and the next locker sees
 * EOWNERDEAD, marks the mutex consistent and carries on.
 *
 * Each process keeps its own list of mapped arenas, found again by the
 * memfd's inode (so a child maps an arena once however many objects in it
 * it receives), with a count of the blocks it holds there: at zero the
 * arena is unmapped and its fd closed. The memory itself goes away with
 * the last mapping anywhere.
 *
 * The lock seam at the end gives Values and Arrays a recursive, robust,
 * process-shared lock in caller storage.
 */
#include "shm/shm_impl.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define UNIT            64u
#define ARENA_MAGIC     0x6d706870u /* "mphp" */
#define ARENA_SIZE      ((size_t)1 << 20)
#define BIG_BLOCK       (ARENA_SIZE / 4)
#define ARENA_DEDICATED 0x1u
#define ARENA_MAX       ((size_t)1 << 44)

struct arena_hdr {
    uint32_t magic;
    uint32_t flags;
    uint64_t size;
    uint64_t units;
    uint64_t first; /* first allocatable unit */
    uint64_t hint;  /* next-fit start (under mu) */
    uint64_t used;  /* units in use (under mu; statistics only) */
    pthread_mutex_t mu;
    uint64_t bitmap[];
};

struct mproc__arena {
    mproc__arena *next;
    struct arena_hdr *h;
    size_t size;
    int fd;
    dev_t dev;
    ino_t ino;
    size_t refs;
    pid_t owner; /* the process that created it (and alone allocates) */
    bool dedicated;
};

static pthread_mutex_t heap_mu = PTHREAD_MUTEX_INITIALIZER;
static mproc__arena *arenas;

static void heap_prepare(void)
{
    pthread_mutex_lock(&heap_mu);
}

static void heap_parent(void)
{
    pthread_mutex_unlock(&heap_mu);
}

__attribute__((constructor)) static void heap_init(void)
{
    /* Never fork with the list half-edited; the child keeps the list: its
     * inherited objects still reference those mappings. */
    mproc__atfork_register(); /* first: see there */
    pthread_atfork(heap_prepare, heap_parent, heap_parent);
}

/* -errno of the call that just failed (never 0, whatever errno says). */
static size_t units_for(size_t n)
{
    return n == 0 ? 1 : (n + UNIT - 1) / UNIT;
}

/* First allocatable unit for an arena of size bytes. */
static uint64_t first_unit(size_t size)
{
    size_t units = size / UNIT;
    size_t hdr = sizeof(struct arena_hdr) + (units + 63) / 64 * 8;
    return (hdr + UNIT - 1) / UNIT;
}

static bool bit_get(const uint64_t *bm, uint64_t u)
{
    return (bm[u / 64] >> (u % 64)) & 1;
}

static void bits_set(uint64_t *bm, uint64_t start, uint64_t n, bool on)
{
    for (uint64_t u = start; u < start + n;) {
        uint64_t off = u % 64, take = 64 - off;
        if (take > start + n - u)
            take = start + n - u;
        uint64_t mask = take == 64 ? ~0ULL : ((1ULL << take) - 1) << off;
        if (on)
            bm[u / 64] |= mask;
        else
            bm[u / 64] &= ~mask;
        u += take;
    }
}

/* Finds k free units in [from, to); returns the first or UINT64_MAX. */
static uint64_t find_run(const uint64_t *bm, uint64_t from, uint64_t to,
                         uint64_t k)
{
    uint64_t run = 0, start = 0;
    for (uint64_t u = from; u < to;) {
        uint64_t w = bm[u / 64];
        if (u % 64 == 0 && u + 64 <= to && (w == ~0ULL || w == 0)) {
            if (w == ~0ULL) {
                run = 0;
            } else {
                if (run == 0)
                    start = u;
                run += 64;
                if (run >= k)
                    return start;
            }
            u += 64;
            continue;
        }
        if ((w >> (u % 64)) & 1) {
            run = 0;
        } else {
            if (run == 0)
                start = u;
            if (++run >= k)
                return start;
        }
        u++;
    }
    return UINT64_MAX;
}

/* Locks an arena's shared mutex; a dead holder left at worst a leak. */
static int arena_lock(struct arena_hdr *h)
{
    int r = mproc__robust_lock(&h->mu, MPROC__UNTIL, NULL);
    return r == 1 ? 0 : r;
}

/* Takes k units from h; returns the first unit or UINT64_MAX. */
static uint64_t arena_take(struct arena_hdr *h, uint64_t k)
{
    if (arena_lock(h) < 0)
        return UINT64_MAX;
    uint64_t u = UINT64_MAX;
    if (!(h->flags & ARENA_DEDICATED) && h->units - h->used >= k) {
        uint64_t hint = h->hint;
        if (hint < h->first || hint >= h->units)
            hint = h->first;
        u = find_run(h->bitmap, hint, h->units, k);
        if (u == UINT64_MAX)
            u = find_run(h->bitmap, h->first,
                         hint + k < h->units ? hint + k : h->units, k);
        if (u != UINT64_MAX) {
            bits_set(h->bitmap, u, k, true);
            h->used += k;
            h->hint = u + k;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return u;
}

/* Creates and maps an arena of size bytes (a dedicated one is for a
 * single block, which the caller takes). *out is NULL on failure. */
static int arena_new(size_t size, bool dedicated, mproc__arena **out)
{
    *out = NULL;
    mproc__arena *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    int r;
    int fd = mproc__memfd_new("mproc-heap", size, true);
    if (fd < 0) {
        r = fd;
        goto out_free;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        r = mproc__neg_errno();
        goto out_close;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        r = mproc__neg_errno();
        goto out_close;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        r = mproc__neg_errno();
        goto out_close;
    }
    struct arena_hdr *h = p;
    h->size = size;
    h->units = size / UNIT;
    h->first = first_unit(size);
    h->hint = h->first;
    h->flags = dedicated ? ARENA_DEDICATED : 0;
    bits_set(h->bitmap, 0, h->first, true);
    r = mproc__robust_init(&h->mu, false);
    if (r < 0) {
        munmap(p, size);
        goto out_close;
    }
    /* Published last: an importer checks the magic. */
    __atomic_store_n(&h->magic, ARENA_MAGIC, __ATOMIC_RELEASE);
    a->h = h;
    a->size = size;
    a->fd = fd;
    a->dev = st.st_dev;
    a->ino = st.st_ino;
    a->dedicated = dedicated;
    a->owner = getpid();
    *out = a;
    return 0;
out_close:
    close(fd);
out_free:
    free(a);
    return r;
}

static void arena_unmap(mproc__arena *a)
{
    munmap(a->h, a->size);
    close(a->fd);
    free(a);
}

/* Drops one reference; at zero unmaps. Called with heap_mu held. */
static void arena_unref_locked(mproc__arena *a)
{
    if (--a->refs > 0)
        return;
    for (mproc__arena **pp = &arenas; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    arena_unmap(a);
}

int mproc__heap_alloc(size_t n, mproc__block *b)
{
    if (!b)
        return -EINVAL;
    if (n > ARENA_MAX)
        return -ENOMEM;
    uint64_t k = units_for(n);
    int r = 0;
    pthread_mutex_lock(&heap_mu);
    mproc__arena *a = NULL;
    uint64_t u = UINT64_MAX;
    if (n <= BIG_BLOCK) {
        pid_t me = getpid();
        for (a = arenas; a; a = a->next) {
            if (a->dedicated || a->owner != me)
                continue;
            u = arena_take(a->h, k);
            if (u != UINT64_MAX)
                break;
        }
        if (!a) {
            r = arena_new(ARENA_SIZE, false, &a);
            if (r == 0 && a) {
                u = arena_take(a->h, k);
                a->next = arenas;
                arenas = a;
            }
        }
    } else {
        size_t size = (n + 4095) / 4096 * 4096 + 4096;
        while (first_unit(size) * UNIT + n > size)
            size += 4096;
        r = arena_new(size, true, &a);
        if (r == 0 && a) {
            u = a->h->first;
            bits_set(a->h->bitmap, u, k, true);
            a->h->used = k;
            a->next = arenas;
            arenas = a;
        }
    }
    if (r == 0 && (!a || u == UINT64_MAX))
        r = -ENOMEM; /* a fresh arena always fits: only if its lock broke */
    if (r == 0) {
        a->refs++;
        b->arena = a;
        b->off = (size_t)u * UNIT;
        b->len = n;
        b->p = (unsigned char *)a->h + b->off;
        memset(b->p, 0, (size_t)k * UNIT);
    } else if (a && a->refs == 0 && a == arenas) {
        arenas = a->next;
        arena_unmap(a);
    }
    pthread_mutex_unlock(&heap_mu);
    return r;
}

void mproc__heap_release(mproc__block *b)
{
    if (!b || !b->arena)
        return;
    pthread_mutex_lock(&heap_mu);
    arena_unref_locked(b->arena);
    pthread_mutex_unlock(&heap_mu);
    b->arena = NULL;
    b->p = NULL;
}

void mproc__heap_free(mproc__block *b)
{
    if (!b || !b->arena)
        return;
    struct arena_hdr *h = b->arena->h;
    uint64_t u = b->off / UNIT, k = units_for(b->len);
    if (arena_lock(h) == 0) {
        bits_set(h->bitmap, u, k, false);
        h->used -= k;
        if (u < h->hint)
            h->hint = u;
        pthread_mutex_unlock(&h->mu);
    }
    mproc__heap_release(b);
}

int mproc__heap_export(const mproc__block *b, mproc_export *ex)
{
    if (!b || !b->arena)
        return -EINVAL;
    uint64_t v[2] = {b->off, b->len};
    int r = mproc_export_fd(ex, b->arena->fd);
    return r < 0 ? r : mproc_export_bytes(ex, v, sizeof v);
}

/* Checks that fd holds a well-formed arena and maps it. */
static int arena_map(int fd, const struct stat *st, mproc__arena **out)
{
    size_t size = (size_t)st->st_size;
    if (st->st_size < 4096 || size % 4096 || size > ARENA_MAX)
        return MPROC_EPROTO;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        return MPROC_EPROTO; /* could shrink under us: SIGBUS */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return mproc__neg_errno();
    struct arena_hdr *h = p;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != ARENA_MAGIC ||
        h->size != size || h->units != size / UNIT ||
        h->first != first_unit(size)) {
        munmap(p, size);
        return MPROC_EPROTO;
    }
    mproc__arena *a = calloc(1, sizeof *a);
    if (!a) {
        munmap(p, size);
        return -ENOMEM;
    }
    a->h = h;
    a->size = size;
    a->fd = fd;
    a->dev = st->st_dev;
    a->ino = st->st_ino;
    a->dedicated = (h->flags & ARENA_DEDICATED) != 0;
    *out = a;
    return 0;
}

int mproc__heap_import(mproc_import *im, mproc__block *b)
{
    int fd = mproc_import_fd(im);
    if (fd < 0)
        return fd;
    uint64_t v[2] = {0, 0};
    int r = mproc_import_bytes(im, v, sizeof v);
    struct stat st;
    if (r == 0)
        r = fstat(fd, &st) < 0 ? mproc__neg_errno() : 0;
    else if (r > 0)
        r = MPROC_EPROTO;
    if (r < 0) {
        close(fd);
        return r;
    }
    pthread_mutex_lock(&heap_mu);
    mproc__arena *a;
    for (a = arenas; a; a = a->next)
        if (a->dev == st.st_dev && a->ino == st.st_ino)
            break;
    if (a) {
        close(fd); /* already mapped here: one mapping per arena */
    } else {
        a = NULL;
        r = arena_map(fd, &st, &a);
        if (r < 0 || !a) {
            close(fd);
            r = r < 0 ? r : -EIO;
            goto out;
        }
        a->next = arenas;
        arenas = a;
    }
    uint64_t off = v[0], len = v[1];
    if (off % UNIT || off / UNIT < a->h->first || len > a->size ||
        off + (uint64_t)units_for(len) * UNIT > a->size ||
        !bit_get(a->h->bitmap, off / UNIT)) {
        r = MPROC_EPROTO;
        if (a->refs == 0) { /* mapped just now: undo */
            a->refs = 1;
            arena_unref_locked(a);
        }
        goto out;
    }
    a->refs++;
    b->arena = a;
    b->off = off;
    b->len = len;
    b->p = (unsigned char *)a->h + off;
out:
    pthread_mutex_unlock(&heap_mu);
    return r;
}

/* ---- the lock seam ------------------------------------------------------
 * The RLock of the sync module (mproc/sync.h) in caller storage: robust
 * (a holder's death gives the next acquirer EOWNERDEAD), recursive, and
 * fast under contention.
 */
_Static_assert(sizeof(mproc_rlock) <= MPROC__VLOCK_SIZE,
               "lock storage too small");

int mproc__vlock_init(void *storage)
{
    return mproc_rlock_init((mproc_rlock *)storage);
}

int mproc__vlock_acquire(void *storage, double timeout)
{
    mproc_rlock *l = storage;
    int r = mproc_rlock_acquire(l, timeout);
    if (r == -EOWNERDEAD)
        mproc_rlock_consistent(l); /* a Value has no invariant to repair */
    return r;
}

int mproc__vlock_release(void *storage)
{
    return mproc_rlock_release((mproc_rlock *)storage);
}
