/*
 * ex70_pool_squares.c - "Master Python Multiprocessing", 1.2 Using Pool,
 * Example 2: square each of [1, 2, 3, 4, 5] with Pool().map and print the list.
 *
 *   def square(x): return x * x
 *   with Pool() as pool:
 *       results = pool.map(square, data)
 *   print("Squares:", results)
 *
 * Prints: Squares: [1, 4, 9, 16, 25]
 *
 * A task gets its input as bytes (here one int) and writes its result to
 * an mproc_out; map returns the results in input order.
 */
#include <mproc.h>
#include <stdio.h>

/* A task: one int in, one int out. */
static int square(const void *in, size_t len, mproc_out *out)
{
    int x = *(const int *)in;
    int y = x * x;
    (void)len;
    return mproc_out_write(out, &y, sizeof y);
}

int main(void)
{
    int data[] = {1, 2, 3, 4, 5};
    enum { N = sizeof data / sizeof data[0] };
    mproc_iov items[N];
    for (int i = 0; i < N; i++)
        items[i] = (mproc_iov){&data[i], sizeof data[i]};

    mproc_pool *pool;
    int rc = mproc_pool_new(&pool, NULL); /* cpu-count workers */
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", mproc_strerror(rc));
        return 1;
    }
    mproc_results *res;
    rc = mproc_pool_map(pool, square, items, N, NULL, &res);
    if (rc < 0) {
        fprintf(stderr, "map: %s\n", mproc_strerror(rc));
        mproc_pool_free(pool);
        return 1;
    }
    printf("Squares: [");
    for (size_t i = 0; i < mproc_results_count(res); i++) {
        const void *p;
        mproc_results_get(res, i, &p, NULL);
        printf("%s%d", i ? ", " : "", *(const int *)p);
    }
    printf("]\n");
    mproc_results_free(res);
    mproc_pool_free(pool); /* the `with` block's exit: terminate */
    return 0;
}
