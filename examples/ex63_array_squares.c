/*
 * ex63_array_squares.c - "Master Python Multiprocessing", "Using Array for
 * Shared Data": five processes each square one element of a shared Array.
 *
 *   def square(i, numbers):
 *       numbers[i] = numbers[i] ** 2
 *   numbers = Array('i', range(5))
 *   procs = [Process(target=square, args=(i, numbers)) for i in range(5)]
 *   for p in procs: p.start()
 *   for p in procs: p.join()
 *   print(f"Squared numbers are: {numbers[:]}")
 *
 * Prints:
 *   Squared numbers are: [0, 1, 4, 9, 16]
 */
#include <mproc.h>
#include <stdio.h>

static int square(const mproc_args *args)
{
    size_t i = (size_t)mproc_args_int(args, 0);
    mproc_array *numbers = mproc_args_array(args, 1);
    int64_t x;
    if (mproc_array_get_i64(numbers, i, &x) < 0)
        return 1;
    return mproc_array_set_i64(numbers, i, x * x) < 0;
}

int main(void)
{
    int32_t range5[5] = {0, 1, 2, 3, 4};
    mproc_array *numbers;
    int r = mproc_array_new(&numbers, 'i', 5, range5);
    if (r < 0) {
        fprintf(stderr, "ex63: %s\n", mproc_strerror(r));
        return 1;
    }
    mproc_process *procs[5] = {0};
    for (int i = 0; i < 5 && r == 0; i++) {
        mproc_args *args = mproc_args_of("io", i, &mproc_array_kind, numbers);
        r = args ? mproc_process_new(&procs[i], square, args) : -1;
        mproc_args_free(args); /* the process keeps its own copy */
    }
    for (int i = 0; i < 5 && r == 0; i++)
        r = mproc_process_start(procs[i]);
    for (int i = 0; i < 5; i++)
        if (procs[i])
            mproc_process_join(procs[i], -1);
    if (r == 0) {
        char text[128];
        mproc_array_format(numbers, 0, 5, text, sizeof text);
        printf("Squared numbers are: %s\n", text);
    } else {
        fprintf(stderr, "ex63: %s\n", mproc_strerror(r));
    }
    for (int i = 0; i < 5; i++)
        mproc_process_free(procs[i]);
    mproc_array_free(numbers);
    return r < 0;
}
