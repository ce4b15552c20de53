/*
 * ex71_pool_cube.c - Sunny Solanki's "Multiprocessing in Python", In [11]:
 * Pool(processes=5) with map, imap_unordered, apply_async + get(timeout=1), the
 * PIDs of 8 async tasks, and a task that does not finish in time.
 *
 * Prints (pids, the address and the unordered order vary):
 *   [1, 8, 27, 64]
 *   <mproc_imap object at 0x55d0c2a4f2b0>
 *   [8, 125, 1, 64, 27]
 *   1000
 *   [5398, 5396, 5394, 5398, 5396, 5394, 5398, 5397]
 *   Timed out. Not able toget result in time.
 *
 * The tutorial's display_title lost its body in extraction; as the
 * surrounding text says, it takes longer than the 1 s get() waits (2 s
 * here). Leaving the `with` block terminates the pool, so its output never
 * appears, as in Python.
 */
#include <mproc.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cube(const void *in, size_t len, mproc_out *out)
{
    long x = *(const long *)in, y = x * x * x;
    (void)len;
    return mproc_out_write(out, &y, sizeof y);
}

static int getpid_task(const void *in, size_t len, mproc_out *out)
{
    long pid = (long)getpid();
    (void)in;
    (void)len;
    return mproc_out_write(out, &pid, sizeof pid);
}

static int display_title(const void *in, size_t len, mproc_out *out)
{
    struct timespec two = {2, 0};
    nanosleep(&two, NULL);
    printf("%.*s\n", (int)len, (const char *)in);
    (void)out;
    return 0;
}

/* items[i] = {&v[i], sizeof(long)} with v = lo..hi-1 */
static size_t range(long lo, long hi, long *v, mproc_iov *items)
{
    size_t n = 0;
    for (long x = lo; x < hi; x++, n++) {
        v[n] = x;
        items[n] = (mproc_iov){&v[n], sizeof v[n]};
    }
    return n;
}

static void print_longs(const long *v, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++)
        printf("%s%ld", i ? ", " : "", v[i]);
    printf("]\n");
}

int main(void)
{
    mproc_pool *pool;
    int rc = mproc_pool_new(&pool, &(mproc_pool_opts){.processes = 5});
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", mproc_strerror(rc));
        return 1;
    }
    long v[8], out[8];
    mproc_iov items[8];

    /* print(pool.map(cube, range(1, 5))) */
    size_t n = range(1, 5, v, items);
    mproc_results *res;
    rc = mproc_pool_map(pool, cube, items, n, NULL, &res);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const void *p;
        mproc_results_get(res, i, &p, NULL);
        out[i] = *(const long *)p;
    }
    mproc_results_free(res);
    print_longs(out, n);

    /* print(pool.imap_unordered(cube, range(1, 6))): the iterator itself */
    n = range(1, 6, v, items);
    mproc_imap *it;
    rc = mproc_pool_imap_unordered(pool, cube, items, n, NULL, &it);
    if (rc < 0)
        goto fail;
    printf("<mproc_imap object at %p>\n", (void *)it);
    mproc_imap_free(it);

    /* print(list(pool.imap_unordered(cube, range(1, 6)))) */
    rc = mproc_pool_imap_unordered(pool, cube, items, n, NULL, &it);
    if (rc < 0)
        goto fail;
    size_t got = 0;
    const void *p;
    while ((rc = mproc_imap_next(it, -1, &p, NULL, NULL)) == 1)
        out[got++] = *(const long *)p;
    mproc_imap_free(it);
    if (rc < 0)
        goto fail;
    print_longs(out, got);

    /* res = pool.apply_async(cube, (10,)); print(res.get(timeout=1)) */
    long ten = 10;
    mproc_future *f;
    rc = mproc_pool_apply_async(pool, cube, &ten, sizeof ten, NULL, &f);
    if (rc < 0)
        goto fail;
    rc = mproc_future_get(f, 1, &p, NULL);
    if (rc < 0)
        goto fail;
    printf("%ld\n", *(const long *)p);
    mproc_future_free(f);

    /* results = [pool.apply_async(os.getpid, ()) for i in range(8)] */
    mproc_future *fs[8];
    for (int i = 0; i < 8; i++)
        if ((rc = mproc_pool_apply_async(pool, getpid_task, NULL, 0, NULL,
                                         &fs[i])) < 0)
            goto fail;
    for (int i = 0; i < 8; i++) {
        rc = mproc_future_get(fs[i], 1, &p, NULL);
        out[i] = rc == 0 ? *(const long *)p : -1;
        mproc_future_free(fs[i]);
    }
    print_longs(out, 8);

    /* a task that takes longer than get() waits */
    const char *title = "Title Testing";
    rc = mproc_pool_apply_async(pool, display_title, title, strlen(title), NULL,
                                &f);
    if (rc < 0)
        goto fail;
    if (mproc_future_get(f, 1, NULL, NULL) == -ETIMEDOUT)
        printf("Timed out. Not able toget result in time.\n");
    mproc_future_free(f);
    mproc_pool_free(pool); /* the `with` block's exit: terminate */
    return 0;
fail:
    fprintf(stderr, "pool: %s\n", mproc_strerror(rc));
    mproc_pool_free(pool);
    return 1;
}
