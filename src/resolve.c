/*
 * resolve.c - code and data addresses that survive exec.
 *
 * A spawn or forkserver child is a fresh exec of the same program, so a
 * function pointer from the parent means nothing there: ASLR moves every
 * object file. We describe an address as (object file, its identity, offset
 * from the object's load base) with dl_iterate_phdr and find it again in the
 * child, loading the object with dlopen when the parent had dlopen'ed it.
 * The main program is the object with the empty name; shared objects are
 * checked by device and inode so that a replaced file is refused.
 */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct find {
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

static int file_id(const char *path, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
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
    const char *path = f.objname[0] ? f.objname : "/proc/self/exe";
    if (file_id(path, &dev, &ino) < 0)
        return MPROC_ERESOLVE;
    mproc__buf_str(b, f.objname);
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
         * is kept for the life of the process on purpose. */
        void *h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
        if (!h)
            return MPROC_ERESOLVE;
        dl_iterate_phdr(find_cb, &f);
    }
    if (!f.found || !f.in_segment)
        return MPROC_ERESOLVE;
    uint64_t d2 = 0, i2 = 0;
    const char *path = name[0] ? name : "/proc/self/exe";
    if (file_id(path, &d2, &i2) < 0 || d2 != dev || i2 != ino)
        return MPROC_ERESOLVE;
    *addr = (void *)(f.base + (uintptr_t)off);
    return 0;
}
