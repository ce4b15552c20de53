/*
 * ex72_long_time_task.c - the os.fork tutorial: Pool(4) and five apply_async
 * tasks of random length; close(), join().
 *
 * Prints (pids, order and times vary):
 *   Parent process 669.
 *   Waiting for all subprocesses done...
 *   Run task 0 (671)...
 *   Run task 1 (672)...
 *   Run task 2 (673)...
 *   Run task 3 (674)...
 *   Task 2 runs 0.14 seconds.
 *   Run task 4 (673)...
 *   Task 1 runs 0.27 seconds.
 *   Task 3 runs 0.86 seconds.
 *   Task 0 runs 1.41 seconds.
 *   Task 4 runs 0.91 seconds.
 *   All subprocesses done.
 *
 * Tasks 0-3 start at once; task 4 waits for a free worker (the pool has 4)
 * and runs in the worker that finished first. The tutorial sleeps up to
 * 3 s per task; this one up to 1.5 s, to keep the tour quick.
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int long_time_task(const void *in, size_t len, mproc_out *out)
{
    int name = *(const int *)in;
    (void)len;
    (void)out;
    printf("Run task %d (%d)...\n", name, (int)getpid());
    fflush(stdout);
    double start = mproc_monotonic();
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL) ^
                    (unsigned)name * 2654435761u;
    double secs = (double)rand_r(&seed) / RAND_MAX * 1.5;
    struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    printf("Task %d runs %0.2f seconds.\n", name, mproc_monotonic() - start);
    fflush(stdout);
    return 0;
}

int main(void)
{
    printf("Parent process %d.\n", (int)getpid());
    mproc_pool *p;
    int rc = mproc_pool_new(&p, &(mproc_pool_opts){.processes = 4});
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", mproc_strerror(rc));
        return 1;
    }
    for (int i = 0; i < 5; i++) /* no future kept: nothing to get() */
        mproc_pool_apply_async(p, long_time_task, &i, sizeof i, NULL, NULL);
    printf("Waiting for all subprocesses done...\n");
    fflush(stdout);
    mproc_pool_close(p);
    mproc_pool_join(p, -1);
    printf("All subprocesses done.\n");
    mproc_pool_free(p);
    return 0;
}
