/*
 * manager/table.c - the server's table of objects: a hash of the objects
 * by their address (the ident a Token carries, in lowercase hex), grown
 * by doubling; making, finding, taking out and freeing objects.
 */
#include "manager/server_impl.h"

#include <stdlib.h>

static size_t bucket_of(const mgr_server *s, uintptr_t id)
{
    return (size_t)((id >> 4) * 0x9e3779b97f4a7c15u) & (s->nbuckets - 1);
}

static int table_grow(mgr_server *s)
{
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 256;
    mgr_obj **b = calloc(nb, sizeof(void *));
    if (!b)
        return -ENOMEM;
    mgr_obj **old = s->buckets;
    size_t on = s->nbuckets;
    s->buckets = b;
    s->nbuckets = nb;
    for (size_t i = 0; i < on; i++)
        for (mgr_obj *o = old[i], *next; o; o = next) {
            next = o->next;
            size_t k = bucket_of(s, (uintptr_t)o);
            o->next = b[k];
            b[k] = o;
        }
    free(old);
    return 0;
}

mgr_obj *mproc__mgr_new_obj(mgr_server *s, const mgr_type *t)
{
    if (s->nobjs >= s->nbuckets && table_grow(s) < 0)
        return NULL;
    mgr_obj *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->type = t;
    o->refs = 1;
    o->fuzz_id = s->fuzz_ids ? s->fuzz_ids++ : 0;
    size_t k = bucket_of(s, (uintptr_t)o);
    o->next = s->buckets[k];
    s->buckets[k] = o;
    s->nobjs++;
    mproc__mgr_hold_add(s, o, mproc__mgr_client_pid(s, s->caller), 1);
    return o;
}

mgr_obj *mproc__mgr_lookup(mgr_server *s, const mproc_obj *ident)
{
    size_t n;
    const char *str = mproc_obj_str_value(ident, &n);
    if (!str || n == 0 || n > 16 || s->nbuckets == 0)
        return NULL;
    uintptr_t id = 0;
    for (size_t i = 0; i < n; i++) {
        char c = str[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return NULL;
        id = id << 4 | (uintptr_t)d;
    }
    if (s->fuzz_ids) { /* names are small numbers: look at everything */
        for (size_t b = 0; b < s->nbuckets; b++)
            for (mgr_obj *o = s->buckets[b]; o; o = o->next)
                if (o->fuzz_id == id)
                    return o;
        return NULL;
    }
    for (mgr_obj *o = s->buckets[bucket_of(s, id)]; o; o = o->next)
        if ((uintptr_t)o == id)
            return o;
    return NULL;
}

void mproc__mgr_table_remove(mgr_server *s, mgr_obj *o)
{
    mgr_obj **p = &s->buckets[bucket_of(s, (uintptr_t)o)];
    while (*p != o)
        p = &(*p)->next;
    *p = o->next;
    s->nobjs--;
}

/* o's process holds given back, its registered type's object freed, o
 * freed (o already out of the table). */
void mproc__mgr_free_obj(mgr_server *s, mgr_obj *o)
{
    while (o->nholds)
        mproc__mgr_hold_add(s, o, o->holds[0].pid, -o->holds[0].n);
    mproc__mgr_regs_destroy(o);
    mproc__mgr_obj_clear(o);
    free(o);
}
