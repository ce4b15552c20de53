/*
 * sync/sync.c - what every sync primitive stands on: the identity of the
 * calling thread (owner tokens that fork children do not inherit), the
 * futex calls, code references for barrier actions, and the table of
 * shared mappings this process made for sync objects, through which they
 * are passed to spawn and forkserver children (export: memfd + offset;
 * import: map the same pages again). The primitives themselves live in
 * sync_lock.c (Lock, RLock, Condition) and sync_wait.c (Semaphore, Event,
 * Barrier).
 */
#include "sync/sync_impl.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* ---- identity ---------------------------------------------------------
 *
 * A thread's token must never match a token another thread (in any
 * process) holds a lock with. Tokens are derived from a random per-process
 * id kept in a MADV_WIPEONFORK page: a fork child (whatever made it: fork,
 * clone) reads 0 there and draws a new id, so the forking thread's cached
 * token is not taken over by the child. pthread_atfork clears it as well,
 * for kernels without MADV_WIPEONFORK.
 */

static struct mproc__sync_proc g_proc_fallback;
struct mproc__sync_proc *mproc__sync_g_proc = &g_proc_fallback;
#define g_proc mproc__sync_g_proc
static uint64_t g_layout;
static uint64_t g_thread_seq;

__thread struct mproc__sync_tls mproc__sync_t_me
    __attribute__((tls_model("initial-exec")));
#define t_me mproc__sync_t_me

static pthread_mutex_t g_reg_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                  ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&v);
    }
    return v;
}

static void reg_prepare(void)
{
    pthread_mutex_lock(&g_reg_mu);
}

static void reg_parent(void)
{
    pthread_mutex_unlock(&g_reg_mu);
}

static void reg_child(void)
{
    pthread_mutex_unlock(&g_reg_mu);
    __atomic_store_n(&g_proc->id, 0, __ATOMIC_RELAXED);
    t_me.proc = 0;
}

__attribute__((constructor)) static void sync_setup(void)
{
    void *p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        if (madvise(p, (size_t)sysconf(_SC_PAGESIZE), MADV_WIPEONFORK) == 0)
            g_proc = p;
        else
            munmap(p, (size_t)sysconf(_SC_PAGESIZE));
    }
    g_layout = random64() | 1;
    mproc__atfork_register(); /* first: see there */
    pthread_atfork(reg_prepare, reg_parent, reg_child);
}

const mproc__sync_self *mproc__sync_me_slow(void)
{
    uint64_t id = __atomic_load_n(&g_proc->id, __ATOMIC_ACQUIRE);
    if (id == 0) {
        uint64_t fresh = random64() | 1;
        int32_t pid = (int32_t)getpid();
        __atomic_store_n(&g_proc->pid, pid, __ATOMIC_RELAXED);
        if (__atomic_compare_exchange_n(&g_proc->id, &id, fresh, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            id = fresh;
    }
    uint64_t n = __atomic_add_fetch(&g_thread_seq, 1, __ATOMIC_RELAXED);
    t_me.self.token = mix64(id ^ mix64(n)) | 1;
    t_me.self.pid = (int32_t)getpid();
    t_me.proc = id;
    return &t_me.self;
}

uint64_t mproc__sync_layout(void)
{
    if (!g_layout)
        g_layout = random64() | 1;
    return g_layout;
}

/* ---- the table of mappings -------------------------------------------- */

struct reg {
    void *obj;  /* the state (NULL: not an object's own mapping) */
    void *base; /* mapping */
    size_t len;
    uint64_t foff; /* file offset of base */
    uint64_t dev, ino;
    unsigned refs; /* imports of obj here, plus its creation */
    int fd;
    struct reg *next;
};

static struct reg *g_regs;

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Fills r for a mapping of fd (base p, len bytes from file offset foff,
 * the object at obj) and registers it. */
static void reg_add(struct reg *r, void *obj, void *p, size_t len,
                    uint64_t foff, const struct stat *st, int fd)
{
    r->obj = obj;
    r->base = p;
    r->len = len;
    r->foff = foff;
    r->dev = st->st_dev;
    r->ino = st->st_ino;
    r->refs = 1;
    r->fd = fd;
    pthread_mutex_lock(&g_reg_mu);
    r->next = g_regs;
    g_regs = r;
    pthread_mutex_unlock(&g_reg_mu);
}

int mproc__sync_map_new(const char *name, size_t size, void **obj)
{
    size_t len = (size + page_size() - 1) & ~(page_size() - 1);
    struct reg *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int err;
    int fd = mproc__memfd_new(name, len, false);
    if (fd < 0) {
        err = fd;
        goto out_free;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        err = -errno;
        goto out_close;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        err = -errno;
        goto out_close;
    }
    reg_add(r, p, p, len, 0, &st, fd);
    *obj = p;
    return 0;

out_close:
    mproc__close(fd);
out_free:
    free(r);
    return err;
}

bool mproc__sync_map_free(void *obj, bool keep_mapped)
{
    struct reg *r = NULL;
    pthread_mutex_lock(&g_reg_mu);
    for (struct reg **pp = &g_regs; *pp; pp = &(*pp)->next) {
        if ((*pp)->obj == obj) {
            r = *pp;
            if (--r->refs == 0)
                *pp = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_reg_mu);
    if (!r)
        return false;
    if (r->refs > 0)
        return true; /* imported more than once: still in use here */
    mproc__close(r->fd);
    if (!keep_mapped)
        munmap(r->base, r->len);
    free(r);
    return true;
}

/* ---- /proc/self/maps ----------------------------------------------------- */

/* One line of /proc/self/maps. */
struct mapping {
    uintptr_t lo, hi;
    uint64_t off; /* file offset of lo */
    uint64_t dev, ino;
    bool shared;
};

/* Calls fn on each mapping until it returns true. Returns 1 when fn did,
 * 0 when none matched, or -errno. */
static int maps_each(bool (*fn)(const struct mapping *, void *), void *arg)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    while (!found && getline(&line, &cap, f) > 0) {
        unsigned long lo = 0, hi = 0, ino = 0;
        unsigned long long off = 0;
        unsigned maj = 0, mnr = 0;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s %llx %x:%x %lu", &lo, &hi, perms, &off,
                   &maj, &mnr, &ino) != 7)
            continue;
        struct mapping m = {
            lo, hi, off, makedev(maj, mnr), ino, perms[3] == 's'};
        found = fn(&m, arg);
    }
    free(line);
    fclose(f);
    return found;
}

struct place {
    uintptr_t a; /* in: address; out (locate) */
    size_t size;
    uint64_t dev, ino, off; /* out (identify); in (locate) */
};

static bool identify_cb(const struct mapping *m, void *arg)
{
    struct place *pl = arg;
    if (pl->a < m->lo || pl->a >= m->hi)
        return false;
    if (pl->a + pl->size > m->hi || !m->shared || m->ino == 0)
        pl->ino = 0;
    else {
        pl->dev = m->dev;
        pl->ino = m->ino;
        pl->off = m->off + (pl->a - m->lo);
    }
    return true;
}

static bool locate_cb(const struct mapping *m, void *arg)
{
    struct place *pl = arg;
    if (!m->shared || m->dev != pl->dev || m->ino != pl->ino ||
        pl->off < m->off || pl->off - m->off + pl->size > m->hi - m->lo)
        return false;
    pl->a = m->lo + (uintptr_t)(pl->off - m->off);
    return true;
}

/* The table's mapping holding [p, p+size). g_reg_mu held. */
static struct reg *reg_holding(const void *p, size_t size)
{
    uintptr_t a = (uintptr_t)p;
    for (struct reg *r = g_regs; r; r = r->next) {
        uintptr_t b = (uintptr_t)r->base;
        if (a >= b && a + size <= b + r->len)
            return r;
    }
    return NULL;
}

int mproc__sync_identify(const void *p, size_t size, uint64_t *dev,
                         uint64_t *ino, uint64_t *off)
{
    pthread_mutex_lock(&g_reg_mu);
    struct reg *r = reg_holding(p, size);
    if (r) {
        *dev = r->dev;
        *ino = r->ino;
        *off = r->foff + (uint64_t)((uintptr_t)p - (uintptr_t)r->base);
    }
    pthread_mutex_unlock(&g_reg_mu);
    if (r)
        return 0;
    struct place pl = {.a = (uintptr_t)p, .size = size};
    int found = maps_each(identify_cb, &pl);
    if (found < 0)
        return found;
    if (!found || pl.ino == 0)
        return -EINVAL;
    *dev = pl.dev;
    *ino = pl.ino;
    *off = pl.off;
    return 0;
}

void *mproc__sync_locate(uint64_t dev, uint64_t ino, uint64_t off, size_t size)
{
    if (ino == 0)
        return NULL;
    void *p = NULL;
    pthread_mutex_lock(&g_reg_mu);
    for (struct reg *r = g_regs; r && !p; r = r->next)
        if (r->dev == dev && r->ino == ino && off >= r->foff &&
            off - r->foff + size <= r->len)
            p = (unsigned char *)r->base + (off - r->foff);
    pthread_mutex_unlock(&g_reg_mu);
    if (p)
        return p;
    struct place pl = {.size = size, .dev = dev, .ino = ino, .off = off};
    return maps_each(locate_cb, &pl) == 1 ? (void *)pl.a : NULL;
}

/* An fd of this process open on the file behind the mapping holding
 * [p, p+size), and the file offset of p. Returns the fd (borrowed) or
 * -EINVAL when there is none. */
static int find_backing_fd(const void *p, size_t size, uint64_t *foff)
{
    uint64_t dev, ino, off;
    int err = mproc__sync_identify(p, size, &dev, &ino, &off);
    if (err < 0)
        return err;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -errno;
    int fd = -EINVAL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long n = strtol(de->d_name, &end, 10);
        struct stat st;
        if (*end || end == de->d_name || n == dirfd(d) ||
            fstat((int)n, &st) != 0)
            continue;
        if (st.st_ino == ino && st.st_dev == dev) {
            fd = (int)n;
            break;
        }
    }
    closedir(d);
    if (fd >= 0)
        *foff = off;
    return fd;
}

int mproc__sync_export(const void *obj, size_t size, mproc_export *ex)
{
    int fd = -1;
    uint64_t foff = 0;
    pthread_mutex_lock(&g_reg_mu);
    struct reg *r = reg_holding(obj, size);
    if (r) {
        fd = r->fd;
        foff = r->foff + (uint64_t)((uintptr_t)obj - (uintptr_t)r->base);
    }
    pthread_mutex_unlock(&g_reg_mu);
    if (fd < 0) {
        fd = find_backing_fd(obj, size, &foff);
        if (fd < 0)
            return fd;
    }
    uint32_t magic = __atomic_load_n((const uint32_t *)obj, __ATOMIC_RELAXED);
    uint32_t sz = (uint32_t)size;
    unsigned char desc[16];
    memcpy(desc, &magic, 4);
    memcpy(desc + 4, &sz, 4);
    memcpy(desc + 8, &foff, 8);
    int err = mproc_export_fd(ex, fd);
    if (err < 0)
        return err;
    return mproc_export_bytes(ex, desc, sizeof desc);
}

/* An object of the table at file offset foff of dev/ino: counted once
 * more and returned, or NULL. */
static void *reg_reuse(uint64_t dev, uint64_t ino, uint64_t foff)
{
    void *obj = NULL;
    pthread_mutex_lock(&g_reg_mu);
    for (struct reg *r = g_regs; r; r = r->next)
        if (r->obj && r->dev == dev && r->ino == ino &&
            r->foff + (uint64_t)((uintptr_t)r->obj - (uintptr_t)r->base) ==
                foff) {
            r->refs++;
            obj = r->obj;
            break;
        }
    pthread_mutex_unlock(&g_reg_mu);
    return obj;
}

int mproc__sync_import(mproc_import *im, uint32_t magic, size_t size,
                       void **out)
{
    int fd = mproc_import_fd(im);
    if (fd < 0)
        return fd;
    unsigned char desc[16];
    uint32_t m, sz;
    uint64_t foff;
    int err = mproc_import_bytes(im, desc, sizeof desc);
    if (err < 0)
        goto out_close;
    memcpy(&m, desc, 4);
    memcpy(&sz, desc + 4, 4);
    memcpy(&foff, desc + 8, 8);
    err = MPROC_ETYPE;
    if (m != magic || sz != size)
        goto out_close;
    struct stat st;
    err = MPROC_EPROTO;
    if (fstat(fd, &st) != 0 || foff > (uint64_t)st.st_size ||
        size > (uint64_t)st.st_size - foff)
        goto out_close;
    void *obj = reg_reuse(st.st_dev, st.st_ino, foff);
    if (obj) {
        if (__atomic_load_n((uint32_t *)obj, __ATOMIC_ACQUIRE) != magic) {
            mproc__sync_map_free(obj, false);
            err = MPROC_ETYPE;
            goto out_close;
        }
        mproc__close(fd); /* mapped here already */
        *out = obj;
        return 0;
    }
    uint64_t pg = foff & ~(uint64_t)(page_size() - 1);
    size_t delta = (size_t)(foff - pg);
    size_t len = (delta + size + page_size() - 1) & ~(page_size() - 1);
    struct reg *r = calloc(1, sizeof *r);
    err = -ENOMEM;
    if (!r)
        goto out_close;
    void *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)pg);
    if (p == MAP_FAILED) {
        err = -errno;
        goto out_free;
    }
    obj = (unsigned char *)p + delta;
    if (__atomic_load_n((uint32_t *)obj, __ATOMIC_ACQUIRE) != magic) {
        err = MPROC_ETYPE; /* destroyed meanwhile, or not that object */
        munmap(p, len);
        goto out_free;
    }
    reg_add(r, obj, p, len, pg, &st, fd);
    *out = obj;
    return 0;

out_free:
    free(r);
out_close:
    mproc__close(fd);
    return err;
}

/* ---- links ----------------------------------------------------------------
 */

struct link {
    const void *cond;
    void *lock;
    bool owned;
    uint64_t dev, ino, off; /* the lock's identity when linked */
    struct link *next;
};

static struct link *g_links;

int mproc__sync_link_add(const void *cond, void *lock, bool owned, uint64_t dev,
                         uint64_t ino, uint64_t off)
{
    struct link *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->cond = cond;
    l->lock = lock;
    l->owned = owned;
    l->dev = dev;
    l->ino = ino;
    l->off = off;
    pthread_mutex_lock(&g_reg_mu);
    l->next = g_links;
    g_links = l;
    pthread_mutex_unlock(&g_reg_mu);
    return 0;
}

void *mproc__sync_link_find(const void *cond, uint64_t dev, uint64_t ino,
                            uint64_t off)
{
    void *lock = NULL;
    pthread_mutex_lock(&g_reg_mu);
    for (struct link *l = g_links; l; l = l->next)
        if (l->cond == cond && l->dev == dev && l->ino == ino &&
            l->off == off) {
            lock = l->lock;
            break;
        }
    pthread_mutex_unlock(&g_reg_mu);
    return lock;
}

void *mproc__sync_link_drop(const void *cond, bool owned)
{
    void *lock = NULL;
    pthread_mutex_lock(&g_reg_mu);
    for (struct link **pp = &g_links; *pp;) {
        struct link *l = *pp;
        if (l->cond != cond || l->owned != owned) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        lock = l->lock;
        free(l);
        if (owned)
            break; /* one import undone */
    }
    pthread_mutex_unlock(&g_reg_mu);
    return owned ? lock : NULL;
}

/* ---- kinds ------------------------------------------------------------ */

#define SYNC_KIND(type, MAGIC, SIZE)                                           \
    static int type##_export(const void *obj, mproc_export *ex)                \
    {                                                                          \
        if (!obj || __atomic_load_n((const uint32_t *)obj,                     \
                                    __ATOMIC_RELAXED) != (MAGIC))              \
            return -EINVAL;                                                    \
        return mproc__sync_export(obj, (SIZE), ex);                            \
    }                                                                          \
    static int type##_import(mproc_import *im, void **out)                     \
    {                                                                          \
        return mproc__sync_import(im, (MAGIC), (SIZE), out);                   \
    }                                                                          \
    SYNC_KIND_REST(type)

#define SYNC_KIND_REST(type)                                                   \
    static void type##_kfree(void *obj)                                        \
    {                                                                          \
        mproc_##type##_free(obj);                                              \
    }                                                                          \
    const mproc_kind mproc_##type##_kind = {"mproc." #type, type##_export,     \
                                            type##_import, type##_kfree};      \
    int mproc_args_add_##type(mproc_args *a, mproc_##type *o)                  \
    {                                                                          \
        if (!o)                                                                \
            return -EINVAL;                                                    \
        return mproc_args_add_object(a, &mproc_##type##_kind, o);              \
    }                                                                          \
    mproc_##type *mproc_args_##type(const mproc_args *a, size_t i)             \
    {                                                                          \
        return mproc_args_object(a, i, &mproc_##type##_kind);                  \
    }

SYNC_KIND(lock, MPROC__SYNC_LOCK, sizeof(mproc_lock))
SYNC_KIND(rlock, MPROC__SYNC_RLOCK, sizeof(mproc_rlock))
SYNC_KIND(sem, MPROC__SYNC_SEM, sizeof(mproc_sem))

/* A Condition on a caller's lock travels with that lock: the condition,
 * the lock's magic (0 for a condition with its own), then the lock. The
 * importer links the two (mproc__sync_link_add) and frees the lock with
 * the condition. */
static int cond_export(const void *obj, mproc_export *ex)
{
    const mproc__cond_state *s = obj;
    if (!s || __atomic_load_n(&s->magic, __ATOMIC_RELAXED) != MPROC__SYNC_COND)
        return -EINVAL;
    int err = mproc__sync_export(obj, sizeof(mproc_cond), ex);
    uint32_t ext = s->ext;
    if (err == 0)
        err = mproc_export_bytes(ex, &ext, sizeof ext);
    if (err < 0 || !ext)
        return err;
    const void *lock = mproc__cond_ext_lock(obj);
    if (!lock)
        return -EINVAL;
    return mproc__sync_export(lock, MPROC_LOCK_SIZE, ex);
}

static int cond_import(mproc_import *im, void **out)
{
    void *obj = NULL;
    int err =
        mproc__sync_import(im, MPROC__SYNC_COND, sizeof(mproc_cond), &obj);
    if (err < 0 || !obj)
        return err < 0 ? err : -EIO;
    uint32_t ext = 0;
    err = mproc_import_bytes(im, &ext, sizeof ext);
    mproc__cond_state *s = obj;
    if (err == 0 && ext != s->ext)
        err = MPROC_EPROTO;
    void *lock = NULL;
    if (err == 0 && ext)
        err = mproc__sync_import(im, ext, MPROC_LOCK_SIZE, &lock);
    if (err == 0 && ext)
        err = mproc__sync_link_add(obj, lock, true, s->lock_dev, s->lock_ino,
                                   s->lock_off);
    if (err < 0) {
        if (lock)
            mproc__sync_map_free(lock, false);
        mproc__sync_map_free(obj, false);
        return err;
    }
    *out = obj;
    return 0;
}

SYNC_KIND_REST(cond)
SYNC_KIND(event, MPROC__SYNC_EVENT, sizeof(mproc_event))
SYNC_KIND(barrier, MPROC__SYNC_BARRIER, sizeof(mproc_barrier))
