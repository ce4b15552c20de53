/*
 * ex28_os_fork.c - the os.fork tutorial (os.fork, Process, Pool, subprocess,
 * Queue), the os.fork example: fork() returns twice, 0 in the child and the
 * child's PID in the parent. Plain fork(), no mproc: what the library's fork
 * start method does underneath.
 *
 * Prints (PIDs vary; the last two lines in either order):
 *   Process (876) start...
 *   I (876) just created a child process (877).
 *   I am child process (877) and my parent is 876.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    printf("Process (%d) start...\n", (int)getpid());
    /* Flush first, or the child inherits the buffered line and prints it
     * again (Python's print flushes to a terminal; C's stdio to a pipe
     * does not). */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        printf("I am child process (%d) and my parent is %d.\n", (int)getpid(),
               (int)getppid());
        return 0;
    }
    printf("I (%d) just created a child process (%d).\n", (int)getpid(),
           (int)pid);
    /* Not in the tutorial: reap the child, so no zombie remains. */
    int status;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 1;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
