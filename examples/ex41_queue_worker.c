/*
 * ex41_queue_worker.c - "Master Python Multiprocessing", 2.1 Using Queue: the
 * worker puts a message into the queue; the main process gets it after the
 * worker ends.
 *
 *   def worker(q):
 *       q.put("Hello from the worker process")
 *   my_queue = Queue()
 *   p = Process(target=worker, args=(my_queue,)); p.start(); p.join()
 *   message = my_queue.get()
 *   print(f"Main process received message: {message}")
 *
 * Prints:
 *   Main process received message: Hello from the worker process
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int worker(const mproc_args *args)
{
    const char *msg = "Hello from the worker process";
    return mproc_queue_put(mproc_args_queue(args, 0), msg, strlen(msg), -1) < 0;
}

int main(void)
{
    mproc_queue *my_queue;
    int r = mproc_queue_new(&my_queue, 0);
    if (r < 0) {
        fprintf(stderr, "queue: %s\n", mproc_strerror(r));
        return 1;
    }
    mproc_args *a = mproc_args_new();
    mproc_process *p = NULL;
    char *message = NULL;
    size_t n;
    if (!a || (r = mproc_args_add_queue(a, my_queue)) < 0 ||
        (r = mproc_process_new(&p, worker, a)) < 0 ||
        (r = mproc_process_start(p)) < 0 ||
        (r = mproc_process_join(p, -1)) < 0 ||
        /* The message outlives its sender: it is in the queue, not in a
         * pipe the worker had to flush before it could exit. */
        (r = mproc_queue_get_alloc(my_queue, (void **)&message, &n, -1)) < 0) {
        fprintf(stderr, "ex41: %s\n", a ? mproc_strerror(r) : "out of memory");
        r = 1;
    } else {
        printf("Main process received message: %.*s\n", (int)n, message);
        r = mproc_process_exitcode(p);
    }
    free(message);
    mproc_process_free(p);
    mproc_args_free(a);
    mproc_queue_free(my_queue);
    return r;
}
