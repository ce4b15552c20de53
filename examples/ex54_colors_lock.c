/*
 * ex54_colors_lock.c - Sunny Solanki's "Multiprocessing in Python", "Process
 * Synchronization", In [8]: the same three processes as ex53, now sharing a
 * Lock: each prints all its lines while holding it, so a color's lines stay
 * together. The tutorial's text kept only the error branch of test_func:
 *
 *   def test_func(lock, shared_value):
 *       try:
 *           lock.acquire()
 *           for _ in range(3):
 *               time.sleep(...)
 *               print(shared_value)
 *       except:
 *           print('Error occured while acquiring lock')
 *       finally:
 *           lock.release()
 *
 *   lock = multiprocessing.Lock()
 *   for i in ['Red', 'Green', 'Blue']:
 *       Process(target=test_func, args=(lock, i)).start()
 *
 * In C the error branch is a failed acquire (for example
 * -ENOTRECOVERABLE); -EOWNERDEAD still hands over the lock.
 *
 * Prints three blocks of three lines (the order of the colors varies):
 *   Red
 *   Red
 *   Red
 *   Green
 *   Green
 *   Green
 *   Blue
 *   Blue
 *   Blue
 */
#include <mproc.h>

#include <errno.h>
#include <stdio.h>
#include <time.h>

static int test_func(const mproc_args *args)
{
    mproc_lock *lock = mproc_args_lock(args, 0);
    const char *shared_value = mproc_args_str(args, 1);
    int r = mproc_lock_acquire(lock, -1);
    if (r == -EOWNERDEAD) /* a previous holder died: state is ours */
        r = mproc_lock_consistent(lock);
    if (r < 0) {
        printf("Error occured while acquiring lock\n");
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
        printf("%s\n", shared_value);
        fflush(stdout);
    }
    mproc_lock_release(lock);
    return 0;
}

int main(void)
{
    const char *colors[] = {"Red", "Green", "Blue"};
    mproc_process *procs[3] = {0};
    mproc_lock *lock = NULL;
    int r = mproc_lock_new(&lock);
    for (int i = 0; i < 3 && r == 0; i++) {
        mproc_args *a = mproc_args_new();
        r = -1;
        if (a && mproc_args_add_lock(a, lock) == 0 &&
            mproc_args_add_str(a, colors[i]) == 0 &&
            (r = mproc_process_new(&procs[i], test_func, a)) == 0)
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
        fprintf(stderr, "test_func failed\n");
        return 1;
    }
    return 0;
}
