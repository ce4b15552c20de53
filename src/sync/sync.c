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

struct proc_id {
    uint64_t id;
    int32_t pid;
};

static struct proc_id g_proc_fallback;
static struct proc_id *g_proc = &g_proc_fallback;
static uint64_t g_layout;
static uint64_t g_thread_seq;

static __thread struct {
    uint64_t proc;
    mproc__sync_self self;
} t_me __attribute__((tls_model("initial-exec")));

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

static const mproc__sync_self *me_slow(void)
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

const mproc__sync_self *mproc__sync_me(void)
{
    uint64_t id = __atomic_load_n(&g_proc->id, __ATOMIC_RELAXED);
    if (__builtin_expect(id != 0 && id == t_me.proc, 1))
        return &t_me.self;
    return me_slow();
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
    int fd;
    struct reg *next;
};

static struct reg *g_regs;

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static void reg_add(struct reg *r)
{
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
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        err = -errno;
        goto out_close;
    }
    r->obj = p;
    r->base = p;
    r->len = len;
    r->fd = fd;
    reg_add(r);
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
            *pp = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_reg_mu);
    if (!r)
        return false;
    mproc__close(r->fd);
    if (!keep_mapped)
        munmap(r->base, r->len);
    free(r);
    return true;
}

/* Finds the mapping holding [p, p+size) in /proc/self/maps and an fd of
 * this process open on the same file. Returns the fd (borrowed) and the
 * file offset of p, or -EINVAL when there is none. */
static int find_backing_fd(const void *p, size_t size, uint64_t *foff)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    unsigned long lo = 0, hi = 0, ino = 0;
    unsigned long long off = 0;
    unsigned maj = 0, mnr = 0;
    char perms[8];
    uintptr_t a = (uintptr_t)p;
    while (getline(&line, &cap, f) > 0) {
        if (sscanf(line, "%lx-%lx %7s %llx %x:%x %lu", &lo, &hi, perms, &off,
                   &maj, &mnr, &ino) != 7)
            continue;
        if (a >= lo && a < hi) {
            found = a + size <= hi && perms[3] == 's' && ino != 0;
            break;
        }
    }
    free(line);
    fclose(f);
    if (!found)
        return -EINVAL;

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
        if (st.st_ino == ino && major(st.st_dev) == maj &&
            minor(st.st_dev) == mnr) {
            fd = (int)n;
            break;
        }
    }
    closedir(d);
    if (fd >= 0)
        *foff = off + (a - lo);
    return fd;
}

int mproc__sync_export(const void *obj, size_t size, mproc_export *ex)
{
    int fd = -1;
    uint64_t foff = 0;
    pthread_mutex_lock(&g_reg_mu);
    for (struct reg *r = g_regs; r; r = r->next) {
        uintptr_t b = (uintptr_t)r->base, a = (uintptr_t)obj;
        if (a >= b && a + size <= b + r->len) {
            fd = r->fd;
            foff = r->foff + (a - b);
            break;
        }
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
    void *obj = (unsigned char *)p + delta;
    if (__atomic_load_n((uint32_t *)obj, __ATOMIC_ACQUIRE) != magic) {
        err = MPROC_ETYPE; /* destroyed meanwhile, or not that object */
        munmap(p, len);
        goto out_free;
    }
    r->obj = obj;
    r->base = p;
    r->len = len;
    r->foff = pg;
    r->fd = fd;
    reg_add(r);
    *out = obj;
    return 0;

out_free:
    free(r);
out_close:
    mproc__close(fd);
    return err;
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
SYNC_KIND(cond, MPROC__SYNC_COND, sizeof(mproc_cond))
SYNC_KIND(event, MPROC__SYNC_EVENT, sizeof(mproc_event))
SYNC_KIND(barrier, MPROC__SYNC_BARRIER, sizeof(mproc_barrier))
