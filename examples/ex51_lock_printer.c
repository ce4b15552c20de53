/*
 * ex51_lock_printer.c - "Master Python Multiprocessing", 3.1 Locks, Example 1:
 * "Using Lock to Synchronize Processes". Three printer processes share one
 * Lock, so only one of them prints at a time.
 *
 *   def printer(item, lock):
 *       lock.acquire()
 *       try:
 *           print(f"Printing {item}")
 *       finally:
 *           lock.release()
 *
 *   lock = Lock()
 *   for item in ['apple', 'banana', 'cherry']:
 *       Process(target=printer, args=(item, lock)).start()
 *
 * Prints (the order of the lines may vary):
 *   Printing apple
 *   Printing banana
 *   Printing cherry
 */
#include <mproc.h>

#include <errno.h>
#include <stdio.h>

static int printer(const mproc_args *args)
{
    const char *item = mproc_args_str(args, 0);
    mproc_lock *lock = mproc_args_lock(args, 1);
    int r = mproc_lock_acquire(lock, -1);
    if (r < 0) /* -EOWNERDEAD would mean: acquired, a printer died */
        return 1;
    printf("Printing %s\n", item);
    fflush(stdout);
    mproc_lock_release(lock);
    return 0;
}

int main(void)
{
    const char *items[] = {"apple", "banana", "cherry"};
    mproc_process *procs[3] = {0};
    mproc_lock *lock = NULL;
    int r = mproc_lock_new(&lock);
    for (int i = 0; i < 3 && r == 0; i++) {
        mproc_args *a = mproc_args_new();
        r = -1;
        if (a && mproc_args_add_str(a, items[i]) == 0 &&
            mproc_args_add_lock(a, lock) == 0 &&
            (r = mproc_process_new(&procs[i], printer, a)) == 0)
            r = mproc_process_start(procs[i]);
        mproc_args_free(a);
    }
    int bad = r < 0;
    for (int i = 0; i < 3; i++) {
        if (procs[i] && mproc_process_pid(procs[i]) > 0) {
            mproc_process_join(procs[i], -1);
            bad |= mproc_process_exitcode(procs[i]) != 0;
        }
        mproc_process_free(procs[i]);
    }
    mproc_lock_free(lock);
    if (bad) {
        fprintf(stderr, "printer failed: %s\n", r < 0 ? mproc_strerror(r) : "");
        return 1;
    }
    return 0;
}
