/*
 * ex60_value_counter.c - "Master Python Multiprocessing", "Using Value for a
 * Shared Counter": ten processes add one to a shared counter.
 *
 *   def increment(shared_counter):
 *       with shared_counter.get_lock():
 *           shared_counter.value += 1
 *   counter = Value('i', 0)
 *   procs = [Process(target=increment, args=(counter,)) for _ in range(10)]
 *   for p in procs: p.start()
 *   for p in procs: p.join()
 *   print(f"Counter = {counter.value}")
 *
 * `value += 1` is a read and then a write; the lock makes the pair one
 * step, so no increment is lost (ex61 shows what happens without it).
 *
 * Prints:
 *   Counter = 10
 */
#include <mproc.h>
#include <stdio.h>

static int increment(const mproc_args *args)
{
    mproc_value *shared_counter = mproc_args_value(args, 0);
    int64_t x;
    if (mproc_value_acquire(shared_counter, -1) < 0)
        return 1;
    int r = mproc_value_get_i64(shared_counter, &x);
    if (r == 0)
        r = mproc_value_set_i64(shared_counter, x + 1);
    mproc_value_release(shared_counter);
    return r < 0;
}

int main(void)
{
    mproc_value *counter;
    int r = mproc_value_new(&counter, 'i'); /* Value('i', 0) */
    if (r < 0) {
        fprintf(stderr, "ex60: %s\n", mproc_strerror(r));
        return 1;
    }
    mproc_args *args = mproc_args_new();
    mproc_process *procs[10] = {0};
    if (!args || (r = mproc_args_add_value(args, counter)) < 0)
        goto fail;
    for (int i = 0; i < 10; i++)
        if ((r = mproc_process_new(&procs[i], increment, args)) < 0)
            goto fail;
    for (int i = 0; i < 10; i++)
        if ((r = mproc_process_start(procs[i])) < 0)
            goto fail;
    for (int i = 0; i < 10; i++)
        if ((r = mproc_process_join(procs[i], -1)) < 0)
            goto fail;
    char text[32];
    mproc_value_format(counter, text, sizeof text);
    printf("Counter = %s\n", text);
    r = 0;
fail:
    if (r < 0)
        fprintf(stderr, "ex60: %s\n", mproc_strerror(r));
    for (int i = 0; i < 10; i++)
        mproc_process_free(procs[i]);
    mproc_args_free(args);
    mproc_value_free(counter);
    return r < 0;
}
