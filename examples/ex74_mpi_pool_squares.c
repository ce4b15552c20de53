/*
 * ex74_mpi_pool_squares.c - ex70 ("Master Python Multiprocessing", 1.2
 * Using Pool, Example 2) on Open MPI: the same program, with the pool's
 * creation options naming the MPI backend. `make run` starts it as
 * `mpirun -n 3 ./ex74_mpi_pool_squares` (built only where MPI is found).
 *
 *   def square(x): return x * x
 *   with MPIPool() as pool:               # mpi4py.util.pool, say
 *       results = pool.map(square, data)
 *   print("Squares:", results)
 *
 * Prints (rank 0 only; the other ranks serve inside mproc_pool_new and
 * exit when the pool is freed):
 *   Squares: [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]
 *   ranks that ran a task: 3 of 3
 */
#include <mproc.h>
#include <mproc/mpi.h>
#include <stdio.h>
#include <stdlib.h>

/* A task: one int in; its square and the MPI rank it ran on out. */
static int square(const void *in, size_t len, mproc_out *out)
{
    int x = *(const int *)in;
    const char *rank = getenv("OMPI_COMM_WORLD_RANK"); /* set by mpirun */
    int y[2] = {x * x, rank ? atoi(rank) : 0};
    (void)len;
    return mproc_out_write(out, y, sizeof y);
}

int main(void)
{
    int data[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    enum { N = sizeof data / sizeof data[0] };
    mproc_iov items[N];
    for (int i = 0; i < N; i++)
        items[i] = (mproc_iov){&data[i], sizeof data[i]};

    /* The one change from ex70: where the tasks run. */
    mproc_pool_opts opts = {.processes = 1,
                            .backend = mproc_pool_backend_mpi()};
    mproc_pool *pool;
    int rc = mproc_pool_new(&pool, &opts); /* other ranks never return */
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", mproc_strerror(rc));
        return 1;
    }
    mproc_results *res;
    mproc_call_opts one = {.chunksize = 1}; /* spread 10 tiny tasks out */
    rc = mproc_pool_map(pool, square, items, N, &one, &res);
    if (rc < 0) {
        fprintf(stderr, "map: %s\n", mproc_strerror(rc));
        mproc_pool_free(pool);
        return 1;
    }
    int ran[64] = {0}, nranks = 0;
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    printf("Squares: [");
    for (size_t i = 0; i < mproc_results_count(res); i++) {
        const int *p;
        mproc_results_get(res, i, (const void **)&p, NULL);
        printf("%s%d", i ? ", " : "", p[0]);
        if (p[1] >= 0 && p[1] < 64 && !ran[p[1]]++)
            nranks++;
    }
    printf("]\nranks that ran a task: %d of %s\n", nranks, size ? size : "1");
    mproc_results_free(res);
    mproc_pool_free(pool); /* the serving ranks exit now */
    return 0;
}
