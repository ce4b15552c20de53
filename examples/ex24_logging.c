/*
 * ex24_logging.c - "Master Python Multiprocessing", the two logging examples:
 * Logging and Monitoring, Example 4 (five workers log "<name> is executing."
 * through get_logger) and Error Handling, Example 3 (log_to_stderr, level INFO,
 * a worker logs "Worker Function" and prints "Doing some work").
 * mproc_log_to_stderr(MPROC_LOG_INFO) is log_to_stderr() +
 * logger.setLevel(logging.INFO); children inherit it.
 *
 * Prints (stderr lines prefixed [LEVEL/process name]; the library adds its
 * own INFO lines at exit, as multiprocessing's logger does):
 *   [INFO/Process-1] Process-1 is executing.
 *   ... (Process-2 to Process-5, in any order)
 *   [INFO/Process-6] Worker Function
 *   Doing some work
 */
#include <mproc.h>
#include <stdio.h>

static int executing(const mproc_args *args)
{
    (void)args;
    mproc_info("%s is executing.", mproc_process_name(mproc_current_process()));
    return 0;
}

static int worker(const mproc_args *args)
{
    (void)args;
    mproc_info("Worker Function");
    printf("Doing some work\n");
    return 0;
}

int main(void)
{
    mproc_log_to_stderr(MPROC_LOG_INFO);

    /* Example 4: for _ in range(5): Process(target=worker).start() */
    mproc_process *procs[5] = {0};
    int r = 0;
    for (int i = 0; i < 5 && r == 0; i++) {
        r = mproc_process_new(&procs[i], executing, NULL);
        if (r == 0)
            r = mproc_process_start(procs[i]);
    }
    for (int i = 0; i < 5; i++) {
        if (r == 0)
            r = mproc_process_join(procs[i], -1);
        mproc_process_free(procs[i]);
    }

    /* Example 3 */
    mproc_process *p = NULL;
    if (r == 0)
        r = mproc_process_new(&p, worker, NULL);
    if (r == 0 && (r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    mproc_process_free(p);
    if (r < 0) {
        fprintf(stderr, "logging: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
