/*
 * ex61_counter_race.c - the race behind ex60, and its fix: ten processes
 * each add one to a shared counter 10000 times, first without the lock
 * (RawValue, or Value used without get_lock), then with it.
 *
 *   def add(counter, n):                  def add_locked(counter, n):
 *       for _ in range(n):                    for _ in range(n):
 *           counter.value += 1                    with counter.get_lock():
 *                                                     counter.value += 1
 *
 * Without the lock two processes can read the same old value and both
 * write old + 1: one increment is lost. How many are lost varies from run
 * to run (it may even be none); with the lock the count is always exact.
 *
 * Prints, for example:
 *   Without the lock: Counter = 52817 (100000 increments, 47183 lost)
 *   With the lock: Counter = 100000
 */
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

#define NPROCS 10
#define NINCS  10000

/* args: counter, use_lock, and a pipe the parent closes to let every
 * process start at once (a child closes its copy of the write end, then
 * waits for end of file). */
static int add(const mproc_args *args)
{
    mproc_value *counter = mproc_args_value(args, 0);
    int locked = (int)mproc_args_int(args, 1);
    char c;
    close((int)mproc_args_int(args, 3));
    if (read((int)mproc_args_int(args, 2), &c, 1) < 0)
        return 1;
    for (int i = 0; i < NINCS; i++) {
        int64_t x;
        if (locked)
            mproc_value_acquire(counter, -1);
        mproc_value_get_i64(counter, &x);
        mproc_value_set_i64(counter, x + 1);
        if (locked)
            mproc_value_release(counter);
    }
    return 0;
}

static int run(int locked, int64_t *result)
{
    mproc_value *counter;
    int r = locked ? mproc_value_new(&counter, 'i')
                   : mproc_value_new_raw(&counter, 'i');
    if (r < 0)
        return r;
    int gate[2];
    if (pipe(gate) < 0) {
        mproc_value_free(counter);
        return -1;
    }
    mproc_args *args = mproc_args_of("oiii", &mproc_value_kind, counter, locked,
                                     gate[0], gate[1]);
    mproc_process *procs[NPROCS] = {0};
    r = args ? 0 : -1;
    for (int i = 0; i < NPROCS && r == 0; i++)
        if ((r = mproc_process_new(&procs[i], add, args)) == 0)
            r = mproc_process_start(procs[i]);
    close(gate[1]); /* go: every read returns 0 */
    for (int i = 0; i < NPROCS; i++)
        if (procs[i])
            mproc_process_join(procs[i], -1);
    if (r == 0)
        r = mproc_value_get_i64(counter, result);
    for (int i = 0; i < NPROCS; i++)
        mproc_process_free(procs[i]);
    mproc_args_free(args);
    close(gate[0]);
    mproc_value_free(counter);
    return r;
}

int main(void)
{
    int64_t without = 0, with = 0;
    int r = run(0, &without);
    if (r == 0)
        r = run(1, &with);
    if (r < 0) {
        fprintf(stderr, "ex61: %s\n", mproc_strerror(r));
        return 1;
    }
    printf("Without the lock: Counter = %lld (%d increments, %lld lost)\n",
           (long long)without, NPROCS * NINCS,
           (long long)(NPROCS * NINCS - without));
    printf("With the lock: Counter = %lld\n", (long long)with);
    return with == NPROCS * NINCS ? 0 : 1;
}
