/*
 * obj/table.c - the insertion-ordered hash table dicts and sets share:
 * entries in insertion order, an index of slots into them built only past
 * SCAN_MAX items (small tables are scanned), Python's key equality
 * (mproc__obj_eq) and hashes (mproc__obj_hash).
 */
#include "obj/obj_impl.h"

#include <stdlib.h>
#include <string.h>

#define SCAN_MAX 8 /* up to this many items, no index */

static size_t slot_of(int64_t hash, size_t mask)
{
    uint64_t h = (uint64_t)hash * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32 ^ h) & mask;
}

static void fill_index(mproc__table *t)
{
    uint32_t *idx = t->idx;
    memset(idx, 0, (t->mask + 1) * sizeof *idx);
    for (size_t i = 0; i < t->n; i++) {
        size_t s = slot_of(t->e[i].hash, t->mask);
        while (idx[s])
            s = (s + 1) & t->mask;
        idx[s] = (uint32_t)(i + 1);
    }
}

static int reindex(mproc__table *t, size_t slots)
{
    uint32_t *idx = calloc(slots, sizeof *idx);
    if (!idx)
        return -ENOMEM;
    free(t->idx);
    t->idx = idx;
    t->mask = slots - 1;
    fill_index(t);
    return 0;
}

/* mproc__table_find, and where an absent key's probe ended in *empty
 * (the slot to put it in while the index is not rebuilt). */
static long find_at(const mproc__table *t, const mproc_obj *key, int64_t hash,
                    int depth, size_t *empty)
{
    if (!t->idx) {
        for (size_t i = 0; i < t->n; i++) {
            if (t->e[i].hash != hash)
                continue;
            int r =
                t->e[i].key == key ? 1 : mproc__obj_eq(t->e[i].key, key, depth);
            if (r < 0)
                return r;
            if (r)
                return (long)i;
        }
        return -1;
    }
    for (size_t s = slot_of(hash, t->mask);; s = (s + 1) & t->mask) {
        uint32_t k = t->idx[s];
        if (!k) {
            *empty = s;
            return -1;
        }
        const mproc__entry *e = &t->e[k - 1];
        if (e->hash != hash)
            continue;
        int r = e->key == key ? 1 : mproc__obj_eq(e->key, key, depth);
        if (r < 0)
            return r;
        if (r)
            return (long)(k - 1);
    }
}

long mproc__table_lookup(const mproc__table *t, const mproc_obj *key)
{
    int64_t h;
    int r = mproc__obj_hash(key, &h, 0);
    return r < 0 ? r : mproc__table_find(t, key, h, 0);
}

long mproc__table_find(const mproc__table *t, const mproc_obj *key,
                       int64_t hash, int depth)
{
    size_t empty;
    return find_at(t, key, hash, depth, &empty);
}

int mproc__table_reserve(mproc__table *t, size_t more)
{
    if (more >= UINT32_MAX - 1 - t->n)
        return -ENOMEM;
    size_t need = t->n + more;
    int r = need > t->cap ? MPROC__GROW(t->e, t->cap, need) : 0;
    if (r == 0 && (t->idx || need > SCAN_MAX) &&
        need * 3 > (t->idx ? t->mask + 1 : 0) * 2) {
        /* At most 2/3 full: growing one at a time, that doubles the
         * index each time; a batch (a pickle's SETITEMS) gets what it
         * needs, no more (a smaller index is fewer cache misses). */
        size_t slots = 16;
        while (slots * 2 < need * 3)
            slots *= 2;
        r = reindex(t, slots);
    }
    return r;
}

int mproc__table_put(mproc__table *t, mproc_obj *key, mproc_obj *value,
                     int64_t hash, int depth)
{
    size_t slot = 0;
    long at = find_at(t, key, hash, depth, &slot);
    if (at >= 0) {
        mproc_obj_unref(key);
        mproc_obj *old = t->e[at].value;
        t->e[at].value = value;
        mproc_obj_unref(old);
        return 0;
    }
    /* Room without growing (mproc__table_reserve would change nothing):
     * the probe's empty slot is where the key goes. */
    bool room = t->idx && t->n < t->cap && (t->n + 1) * 3 <= (t->mask + 1) * 2;
    int r = at != -1 ? (int)at : room ? 0 : mproc__table_reserve(t, 1);
    if (r < 0) {
        mproc_obj_unref(key);
        mproc_obj_unref(value);
        return r;
    }
    size_t i = t->n++;
    t->e[i] = (mproc__entry){key, value, hash};
    if (room) {
        t->idx[slot] = (uint32_t)(i + 1);
    } else if (t->idx) {
        size_t s = slot_of(hash, t->mask);
        while (t->idx[s])
            s = (s + 1) & t->mask;
        t->idx[s] = (uint32_t)(i + 1);
    }
    return 0;
}

bool mproc__is_table(const mproc_obj *o)
{
    return o && (mproc__type(o) == MPROC_OBJ_DICT ||
                 mproc__type(o) == MPROC_OBJ_SET ||
                 mproc__type(o) == MPROC_OBJ_FROZENSET);
}

int mproc_obj_dict_set(mproc_obj *d, mproc_obj *key, mproc_obj *value)
{
    int r = !d || mproc__type(d) != MPROC_OBJ_DICT ? -EINVAL
            : !key || !value                       ? -ENOMEM
                                                   : 0;
    int64_t h = 0;
    if (r == 0)
        r = mproc__obj_hash(key, &h, 0);
    if (r < 0) {
        mproc_obj_unref(key);
        mproc_obj_unref(value);
        return r;
    }
    return mproc__table_put(&d->u.t, key, value, h, 0);
}

int mproc__set_put(mproc__table *t, mproc_obj *item, int64_t hash)
{
    long at = mproc__table_find(t, item, hash, 0);
    if (at != -1) {
        mproc_obj_unref(item);
        return at >= 0 ? 0 : (int)at;
    }
    return mproc__table_put(t, item, NULL, hash, 0);
}

int mproc_obj_set_add(mproc_obj *s, mproc_obj *item)
{
    int r = !s || (mproc__type(s) != MPROC_OBJ_SET &&
                   mproc__type(s) != MPROC_OBJ_FROZENSET)
                ? -EINVAL
            : !item ? -ENOMEM
                    : 0;
    int64_t h = 0;
    if (r == 0)
        r = mproc__obj_hash(item, &h, 0);
    if (r < 0) {
        mproc_obj_unref(item);
        return r;
    }
    return mproc__set_put(&s->u.t, item, h);
}

int mproc_obj_dict_del(mproc_obj *d, const mproc_obj *key)
{
    if (!d || mproc__type(d) != MPROC_OBJ_DICT || !key)
        return -EINVAL;
    long at = mproc__table_lookup(&d->u.t, key);
    if (at < 0)
        return at == -1 ? -ENOENT : (int)at;
    mproc__table *t = &d->u.t;
    mproc__entry gone = t->e[at];
    memmove(&t->e[at], &t->e[at + 1], (t->n - (size_t)at - 1) * sizeof *t->e);
    t->n--;
    if (t->idx)
        fill_index(t);
    mproc_obj_unref(gone.key);
    mproc_obj_unref(gone.value);
    return 0;
}
