/*
 * core/resolve.c - code and data addresses that survive exec.
 *
 * A spawn or forkserver child is a fresh exec of the same program, so a
 * function pointer from the parent means nothing there: ASLR moves every
 * object file. We describe an address as (object file, its identity, offset
 * from the object's load base) with dl_iterate_phdr and find it again in the
 * child, loading the object with dlopen when the parent had dlopen'ed it.
 * The main program is the object with the empty name; shared objects are
 * checked by device and inode so that a replaced file is refused.
 */
#include "core/core.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct find {
    unsigned long long adds, subs; /* out: the loader's load/unload counts */
    uintptr_t addr;      /* in: address to place (0 = match by name) */
    const char *name;    /* in: object name to find (when addr == 0) */
    bool main_only;      /* in: find the main program */
    bool found;          /* out */
    uintptr_t base;      /* out: dlpi_addr */
    char objname[4096];  /* out */
    bool in_segment;     /* out: for name lookups, addr+off inside PT_LOAD */
    uintptr_t check_off; /* in: offset to validate for name lookups */
};

static bool in_load(struct dl_phdr_info *info, uintptr_t a)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (a >= lo && a < lo + ph->p_memsz)
            return true;
    }
    return false;
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find *f = data;
    const char *nm = info->dlpi_name ? info->dlpi_name : "";
    if (size >=
        offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
        f->adds = info->dlpi_adds;
        f->subs = info->dlpi_subs;
    }
    if (f->addr) {
        if (!in_load(info, f->addr))
            return 0;
    } else if (f->main_only) {
        if (nm[0] != 0)
            return 0;
    } else if (strcmp(nm, f->name) != 0) {
        return 0;
    }
    f->found = true;
    f->base = info->dlpi_addr;
    snprintf(f->objname, sizeof f->objname, "%s", nm);
    f->in_segment = in_load(info, info->dlpi_addr + f->check_off);
    return 1;
}

/*
 * (device, inode) of each object file, cached: a start would otherwise
 * stat every object it names. The cache is dropped whenever the loader's
 * load/unload counters move, and inherited by fork children (the fork
 * server fills it once, so its children never stat).
 */
#define ID_CACHE 64
static struct {
    unsigned long long adds, subs;
    size_t n;
    struct {
        char *name;
        uint64_t dev, ino;
    } e[ID_CACHE];
} ids;

static int stat_id(const char *name, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    if (stat(name[0] ? name : "/proc/self/exe", &st) < 0)
        return -errno;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

static int file_id(const struct find *f, const char *name, uint64_t *dev,
                   uint64_t *ino)
{
    int r = 0;
    mproc__lock();
    if (ids.adds != f->adds || ids.subs != f->subs) {
        for (size_t i = 0; i < ids.n; i++)
            free(ids.e[i].name);
        ids.n = 0;
        ids.adds = f->adds;
        ids.subs = f->subs;
    }
    for (size_t i = 0; i < ids.n; i++)
        if (strcmp(ids.e[i].name, name) == 0) {
            *dev = ids.e[i].dev;
            *ino = ids.e[i].ino;
            goto out_unlock;
        }
    r = stat_id(name, dev, ino);
    if (r == 0 && ids.n < ID_CACHE) {
        char *copy = strdup(name);
        if (copy) {
            ids.e[ids.n].name = copy;
            ids.e[ids.n].dev = *dev;
            ids.e[ids.n].ino = *ino;
            ids.n++;
        }
    }
out_unlock:
    mproc__unlock();
    return r;
}

/* The loaded objects, listed in one pass so that their identities can be
 * looked up afterwards, outside the loader's lock. */
#define MAX_OBJS 256
struct objs {
    size_t n;
    unsigned long long adds, subs;
    uintptr_t off; /* in: offset that must fall in a PT_LOAD segment */
    struct {
        const char *name; /* the loader's string, stable while loaded */
        uintptr_t base;
        bool has_off;
    } o[MAX_OBJS];
};

static int list_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct objs *l = data;
    const char *nm = info->dlpi_name ? info->dlpi_name : "";
    l->adds = info->dlpi_adds;
    l->subs = info->dlpi_subs;
    if (l->n == MAX_OBJS || (nm[0] != 0 && nm[0] != '/'))
        return 0; /* the vdso and other unnamed pseudo-objects */
    l->o[l->n].name = nm;
    l->o[l->n].base = info->dlpi_addr;
    l->o[l->n].has_off = in_load(info, info->dlpi_addr + l->off);
    l->n++;
    return 0;
}

void mproc__ref_warm(void)
{
    struct objs l = {0};
    dl_iterate_phdr(list_cb, &l);
    struct find f = {.adds = l.adds, .subs = l.subs};
    for (size_t i = 0; i < l.n; i++) {
        uint64_t dev, ino;
        (void)file_id(&f, l.o[i].name, &dev, &ino);
    }
}

int mproc__coderef_make(const void *addr, mproc__coderef *ref)
{
    struct find f = {.addr = (uintptr_t)addr};
    if (!addr || !ref)
        return MPROC_ERESOLVE;
    dl_iterate_phdr(find_cb, &f);
    if (!f.found || file_id(&f, f.objname, &ref->dev, &ref->ino) < 0)
        return MPROC_ERESOLVE;
    ref->off = (uint64_t)((uintptr_t)addr - f.base);
    return 0;
}

int mproc__coderef_find(const mproc__coderef *ref, void **addr)
{
    struct objs l = {.off = (uintptr_t)ref->off};
    dl_iterate_phdr(list_cb, &l);
    struct find f = {.adds = l.adds, .subs = l.subs};
    for (size_t i = 0; i < l.n; i++) {
        uint64_t dev, ino;
        if (!l.o[i].has_off || file_id(&f, l.o[i].name, &dev, &ino) < 0 ||
            dev != ref->dev || ino != ref->ino)
            continue;
        *addr = (void *)(l.o[i].base + (uintptr_t)ref->off);
        return 0;
    }
    return MPROC_ERESOLVE;
}

int mproc__ref_write(mproc__buf *b, const void *addr)
{
    struct find f = {.addr = (uintptr_t)addr};
    if (!addr)
        return MPROC_ERESOLVE;
    dl_iterate_phdr(find_cb, &f);
    if (!f.found)
        return MPROC_ERESOLVE;
    uint64_t dev = 0, ino = 0;
    if (file_id(&f, f.objname, &dev, &ino) < 0)
        return MPROC_ERESOLVE;
    /* A library dlopen'ed by a relative path is named absolutely: the
     * reading side loads only absolute paths. */
    char abs[PATH_MAX];
    const char *name = f.objname;
    if (name[0] && name[0] != '/' && realpath(name, abs))
        name = abs;
    mproc__buf_str(b, name);
    mproc__buf_u64(b, dev);
    mproc__buf_u64(b, ino);
    mproc__buf_u64(b, (uint64_t)((uintptr_t)addr - f.base));
    return b->oom ? -ENOMEM : 0;
}

int mproc__ref_read(mproc__reader *r, void **addr)
{
    char name[4096];
    if (!mproc__rd_str(r, name, sizeof name))
        return MPROC_EPROTO;
    uint64_t dev = mproc__rd_u64(r), ino = mproc__rd_u64(r);
    uint64_t off = mproc__rd_u64(r);
    if (r->bad)
        return MPROC_EPROTO;
    struct find f = {
        .name = name, .main_only = name[0] == 0, .check_off = (uintptr_t)off};
    dl_iterate_phdr(find_cb, &f);
    if (!f.found && name[0]) {
        /* Loaded by the parent at run time: load it here too. The handle
         * is kept for the life of the process on purpose. Only the very
         * file named (an absolute path, the same device and inode): a
         * description from a peer never makes us load anything else. */
        uint64_t d0 = 0, i0 = 0;
        if (name[0] != '/' || stat_id(name, &d0, &i0) < 0 || d0 != dev ||
            i0 != ino)
            return MPROC_ERESOLVE;
        void *h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
        if (!h)
            return MPROC_ERESOLVE;
        dl_iterate_phdr(find_cb, &f);
    }
    if (!f.found || !f.in_segment)
        return MPROC_ERESOLVE;
    uint64_t d2 = 0, i2 = 0;
    if (file_id(&f, name, &d2, &i2) < 0 || d2 != dev || i2 != ino)
        return MPROC_ERESOLVE;
    *addr = (void *)(f.base + (uintptr_t)off);
    return 0;
}
