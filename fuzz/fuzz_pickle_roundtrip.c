/*
 * fuzz_pickle_roundtrip.c - decode -> encode -> decode is stable: what
 * mproc decodes from a peer's bytes, it encodes (with the protocol the
 * first byte picks) into a pickle that decodes to an equal value with the
 * same repr, and encoding that again gives the very same bytes.
 */
#include <mproc.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int proto = 2 + data[0] % 4;
    mproc_obj *a, *b;
    char err[200];
    if (mproc_pickle_loads(data + 1, size - 1, NULL, &a, err, sizeof err) < 0)
        return 0;
    void *p1, *p2;
    size_t n1, n2;
    int r = mproc_pickle_dumps(a, proto, &p1, &n1);
    if (r == -ELOOP || r == -EOVERFLOW) { /* deeper than dumps goes */
        mproc_obj_unref(a);
        return 0;
    }
    if (r < 0)
        abort();
    if (mproc_pickle_loads(p1, n1, NULL, &b, err, sizeof err) < 0)
        abort(); /* mproc cannot read what it wrote */
    char *ra = NULL, *rb = NULL;
    int ea = mproc_obj_repr(a, &ra, NULL), eb = mproc_obj_repr(b, &rb, NULL);
    if (ea != eb || (ea == 0 && strcmp(ra, rb) != 0))
        abort();
    /* NaN is unequal to itself: equality only where repr has no nan. */
    if (ea == 0 && !strstr(ra, "nan") && mproc_obj_eq(a, b) != 1)
        abort();
    if (mproc_pickle_dumps(b, proto, &p2, &n2) < 0)
        abort();
    if (n1 != n2 || memcmp(p1, p2, n1) != 0)
        abort();
    free(ra);
    free(rb);
    free(p1);
    free(p2);
    mproc_obj_unref(a);
    mproc_obj_unref(b);
    return 0;
}
