/*
 * fuzz_pickle.c - the pickle decoder (obj/pickle_load.c) on a peer's
 * bytes. The first byte picks the limits: the defaults, or small ones
 * (depth 20, memo 64, 64 KiB) so that the limit paths are reached too.
 * Nothing may crash, leak, hang or read out of bounds; a failure is
 * MPROC_EPICKLE with a message, or -ENOMEM. What decodes must print
 * (or refuse a text past 64 MiB), compare equal to itself and pickle
 * again (in time linear in its distinct objects, shared parts or not).
 */
#include <mproc.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    mproc_pickle_limits small = {
        .max_depth = 20, .max_memo = 64, .max_bytes = 64 << 10};
    const mproc_pickle_limits *lim = data[0] & 1 ? &small : NULL;
    mproc_obj *o;
    char err[200];
    int r = mproc_pickle_loads(data + 1, size - 1, lim, &o, err, sizeof err);
    if (r < 0) {
        if ((r != MPROC_EPICKLE && r != -ENOMEM) || err[0] == 0)
            abort();
        return 0;
    }
    char *s;
    if (mproc_obj_repr(o, &s, NULL) == 0)
        free(s);
    if (mproc_obj_eq(o, o) != 1)
        abort();
    void *b;
    size_t n;
    if (mproc_pickle_dumps(o, 2 + data[0] % 4, &b, &n) == 0)
        free(b);
    mproc_obj_unref(o);
    return 0;
}
