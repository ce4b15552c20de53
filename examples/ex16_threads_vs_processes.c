/*
 * ex16_threads_vs_processes.c - "Master Python Multiprocessing", Example:
 * Threading vs Multiprocessing for CPU-bound task. Ten threads, then ten
 * processes, each counting to 10**7; the time each approach took.
 *
 * Prints (times vary):
 *   Threading took 0.0712
 *   Multiprocessing took 0.0745
 *
 * In Python the threads take ~9x longer: the GIL lets one run at a time.
 * C has no GIL, so here both use every core and take about the same time;
 * processes pay a little more to start. Python's 10**7 is kept.
 */
#include <mproc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define TASKS 10

static void *cpu_bound_task(void *unused)
{
    (void)unused;
    volatile long result = 0; /* volatile: the loop is the work */
    for (long i = 0; i < 10000000L; i++)
        result += 1;
    return NULL;
}

static int cpu_bound_target(const mproc_args *args)
{
    (void)args;
    cpu_bound_task(NULL);
    return 0;
}

int main(void)
{
    /* Using threading */
    double start_time = mproc_monotonic();
    pthread_t threads[TASKS];
    for (int i = 0; i < TASKS; i++) {
        int e = pthread_create(&threads[i], NULL, cpu_bound_task, NULL);
        if (e != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    for (int i = 0; i < TASKS; i++)
        pthread_join(threads[i], NULL);
    printf("Threading took %.4f\n", mproc_monotonic() - start_time);

    /* Using multiprocessing */
    start_time = mproc_monotonic();
    mproc_process *processes[TASKS] = {0};
    int r = 0;
    for (int i = 0; i < TASKS && r == 0; i++) {
        r = mproc_process_new(&processes[i], cpu_bound_target, NULL);
        if (r == 0)
            r = mproc_process_start(processes[i]);
    }
    for (int i = 0; i < TASKS; i++) {
        if (r == 0)
            r = mproc_process_join(processes[i], -1);
        mproc_process_free(processes[i]);
    }
    if (r < 0) {
        fprintf(stderr, "multiprocessing: %s\n", mproc_strerror(r));
        return 1;
    }
    printf("Multiprocessing took %.4f\n", mproc_monotonic() - start_time);
    return 0;
}
