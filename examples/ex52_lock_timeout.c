/*
 * ex52_lock_timeout.c - "Master Python Multiprocessing", Best Practices,
 * 1. Avoiding Deadlocks, Example 1: "Using Timeout to Avoid Deadlocks". Two
 * workers need the same lock; worker_1 takes it and gets stuck in its critical
 * section. worker_2 acquires with a timeout instead of waiting forever, and
 * when that times out the program reports the likely deadlock and stops
 * worker_1.
 *
 *   lock = Lock()
 *   def worker_1():
 *       with lock:  # Critical section of code
 *           ...     # (never finishes here)
 *   def worker_2():
 *       if not lock.acquire(timeout=...):
 *           raise TimeoutError
 *   ...
 *   except TimeoutError:
 *       print("Potential deadlock detected, terminating program")
 *
 * (The tutorial's text lost the lines between; they are rendered as the
 * text says.) worker_2's failed acquire is reported to the parent as its exit
 * code.
 *
 * Prints:
 *   Potential deadlock detected, terminating program
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

#define EXIT_TIMEOUT 2

/* args: lock, event "I hold the lock". */
static int worker_1(const mproc_args *args)
{
    mproc_lock *lock = mproc_args_lock(args, 0);
    if (mproc_lock_acquire(lock, -1) < 0)
        return 1;
    mproc_event_set(mproc_args_event(args, 1));
    for (;;)
        pause(); /* stuck in the critical section */
    return 0;
}

static int worker_2(const mproc_args *args)
{
    mproc_lock *lock = mproc_args_lock(args, 0);
    int r = mproc_lock_acquire(lock, 0.5);
    if (r == -ETIMEDOUT)
        return EXIT_TIMEOUT; /* raise TimeoutError */
    if (r < 0)
        return 1;
    mproc_lock_release(lock);
    return 0;
}

static mproc_process *start(mproc_target fn, mproc_args *a)
{
    mproc_process *p;
    if (mproc_process_new(&p, fn, a) < 0)
        return NULL;
    if (mproc_process_start(p) < 0) {
        mproc_process_free(p);
        return NULL;
    }
    return p;
}

int main(void)
{
    mproc_lock *lock = NULL;
    mproc_event *holding = NULL;
    mproc_args *a = mproc_args_new();
    int ok = a && mproc_lock_new(&lock) == 0 &&
             mproc_event_new(&holding) == 0 &&
             mproc_args_add_lock(a, lock) == 0 &&
             mproc_args_add_event(a, holding) == 0;
    mproc_process *p1 = ok ? start(worker_1, a) : NULL;
    mproc_process *p2 = NULL;
    int status = 1;
    if (p1 && mproc_event_wait(holding, 10) == 0 && (p2 = start(worker_2, a))) {
        mproc_process_join(p2, -1);
        int code = mproc_process_exitcode(p2);
        if (code == EXIT_TIMEOUT) {
            printf("Potential deadlock detected, terminating program\n");
            status = 0;
        } else {
            fprintf(stderr, "worker_2 exited with %d\n", code);
        }
    } else {
        fprintf(stderr, "could not start the workers\n");
    }
    if (p1) {
        mproc_process_terminate(p1);
        mproc_process_join(p1, -1);
    }
    mproc_process_free(p1);
    mproc_process_free(p2);
    mproc_args_free(a);
    mproc_event_free(holding);
    mproc_lock_free(lock);
    return status;
}
