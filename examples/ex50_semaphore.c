/*
 * ex50_semaphore.c - "Master Python Multiprocessing", 3.2 Semaphores,
 * Example 2: "Using Semaphore for Resource Control". Semaphore(3) lets at most
 * three of ten processes use the resource at once; each holds it for a moment
 * (the tutorial's "Simulate the actual usage" line was lost; 0.2 s here).
 *
 *   sem = Semaphore(3)
 *   def limited_resource(id):
 *       with sem:
 *           print(f"{id} is using the limited resource")
 *           time.sleep(...)
 *
 * The semaphore is passed to each process as an argument, so the example
 * runs the same under fork, spawn and forkserver.
 *
 * Prints (order varies, in waves of at most three):
 *   0 is using the limited resource
 *   1 is using the limited resource
 *   ...
 *   9 is using the limited resource
 */
#include <mproc.h>
#include <stdio.h>
#include <time.h>

#define NPROCS 10

static int limited_resource(const mproc_args *args)
{
    mproc_sem *sem = mproc_args_sem(args, 0);
    int id = (int)mproc_args_int(args, 1);
    int r = mproc_sem_acquire(sem, -1); /* with sem: */
    if (r < 0)
        return 1;
    printf("%d is using the limited resource\n", id);
    fflush(stdout);
    struct timespec usage = {0, 200 * 1000 * 1000};
    nanosleep(&usage, NULL);
    return mproc_sem_release(sem) < 0;
}

int main(void)
{
    mproc_sem *sem;
    int r = mproc_sem_new(&sem, 3);
    if (r < 0) {
        fprintf(stderr, "Semaphore: %s\n", mproc_strerror(r));
        return 1;
    }
    mproc_process *procs[NPROCS] = {0};
    for (int i = 0; i < NPROCS && r == 0; i++) {
        mproc_args *a = mproc_args_new();
        if (!a || mproc_args_add_sem(a, sem) < 0 ||
            mproc_args_add_int(a, i) < 0)
            r = -1;
        if (r == 0)
            r = mproc_process_new(&procs[i], limited_resource, a);
        mproc_args_free(a);
    }
    for (int i = 0; i < NPROCS && r == 0; i++)
        r = mproc_process_start(procs[i]);
    int bad = r < 0;
    for (int i = 0; i < NPROCS; i++) {
        if (procs[i] && mproc_process_pid(procs[i]) > 0) {
            mproc_process_join(procs[i], -1);
            bad |= mproc_process_exitcode(procs[i]) != 0;
        }
        mproc_process_free(procs[i]);
    }
    mproc_sem_free(sem);
    if (bad) {
        fprintf(stderr, "limited_resource failed\n");
        return 1;
    }
    return 0;
}
