/*
 * mproc/subprocess.h - running other programs, as Python's subprocess.
 *
 *   // subprocess.run(["ls", "-l"], capture_output=True, check=True)
 *   mproc_completed res;
 *   mproc_run_opts o = {.capture_output = true, .check = true};
 *   int r = mproc_run(&res, (const char *[]){"ls", "-l", NULL}, &o, -1);
 *   if (r == 0)
 *       fwrite(res.out, 1, res.out_len, stdout);
 *   mproc_completed_free(&res);
 *
 *   // Popen(["sort"], stdin=PIPE, stdout=PIPE).communicate(b"b\na\n")
 *   mproc_popen *p;
 *   mproc_popen_opts po = {.in = {MPROC_STDIO_PIPE},
 *                          .out = {MPROC_STDIO_PIPE}};
 *   mproc_popen_new(&p, (const char *[]){"sort", NULL}, &po, NULL);
 *   char *out;
 *   size_t n;
 *   mproc_popen_communicate(p, "b\na\n", 4, &out, &n, NULL, NULL, -1);
 *   int rc = mproc_popen_returncode(p);          // 0
 *   free(out);
 *   mproc_popen_free(p);
 *
 * A program is given as an argv array ending in NULL, never as a string to
 * split. A command line for the shell is MPROC_SHELL("ls | wc -l"), which
 * is the argv {"/bin/sh", "-c", "ls | wc -l", NULL}: the one place a shell
 * parses anything.
 *
 * Starting: a vfork-like clone (CLONE_VM | CLONE_VFORK, with CLONE_PIDFD
 * where the kernel has pidfds), so the cost does not grow with the
 * parent's memory; a plain fork where such a clone is refused (valgrind)
 * and under ThreadSanitizer.
 * What the child does before exec (dup2, chdir, setsid, exec...) reports
 * its failure back to the parent (in the memory they share; through a
 * close-on-exec pipe after a plain fork): a start call returns the
 * errno of the failing step (-ENOENT, -EACCES, -ENOTDIR...) and names the
 * step, never an "exit 127".
 *
 * Return codes follow Python: the exit status 0..255, or -N for a child
 * killed by signal N; MPROC_RETURNCODE_NONE while it runs.
 *
 * Threads: every fd mproc opens is close-on-exec, so a program another
 * thread starts at the same time never inherits this one's pipes. poll,
 * wait, returncode, the signals and sentinel may be called from any
 * thread at any time; the calls that read or write a child's pipes
 * (communicate, stream, read, readline, close_stdin) by one thread at a
 * time per object.
 * Signals: with pidfds (Linux 5.3+) every signal goes through the pidfd,
 * so a recycled pid is never signalled; without (MPROC_NO_PIDFD=1, old
 * kernels) a pid is signalled only while not yet reaped, under the
 * object's lock.
 * Fork: a fork child may free Popen objects it inherited (nothing is
 * signalled or waited for); other calls on them return -ECHILD.
 */
#ifndef MPROC_SUBPROCESS_H
#define MPROC_SUBPROCESS_H

#include "common.h"
#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_popen mproc_popen;

/* mproc_popen_returncode() of a child that has not been reaped. */
#define MPROC_RETURNCODE_NONE INT_MIN

/* The argv of a shell command line: /bin/sh -c cmd. */
#define MPROC_SHELL(cmd) ((const char *[]){"/bin/sh", "-c", (cmd), NULL})

/* What one of the child's stdin, stdout, stderr is. */
typedef enum mproc_stdio_kind {
    MPROC_STDIO_INHERIT = 0, /* the parent's own (Python: None) */
    MPROC_STDIO_PIPE,        /* a pipe to the parent (PIPE) */
    MPROC_STDIO_DEVNULL,     /* /dev/null (DEVNULL) */
    MPROC_STDIO_STDOUT,      /* stderr only: wherever stdout goes (STDOUT) */
    MPROC_STDIO_FD,          /* the caller's fd .fd (borrowed; dup'ed) */
    MPROC_STDIO_PATH         /* the file .path, opened by the parent */
} mproc_stdio_kind;

typedef struct mproc_stdio {
    mproc_stdio_kind kind;
    int fd;           /* MPROC_STDIO_FD: an open fd of the caller's */
    const char *path; /* MPROC_STDIO_PATH: stdin opens it to read, stdout
                         and stderr create or truncate it (0666 & ~umask) */
    bool append;      /* MPROC_STDIO_PATH for output: append, not truncate */
} mproc_stdio;

/*
 * How to start a program. A zero-initialized struct (or NULL) gives
 * Python's defaults: inherit stdio, cwd and environment; close every fd
 * but 0, 1, 2; SIGPIPE and SIGXFSZ back to their default action.
 * Everything is copied or used during the start call only.
 */
typedef struct mproc_popen_opts {
    mproc_stdio in, out, err; /* stdin, stdout, stderr */
    /* The program to run; NULL: argv[0]. argv[0] is passed as given
     * either way (Python: executable=). Without a '/', it is searched in
     * the PATH of the child's environment (as execvp; /bin:/usr/bin when
     * there is none). */
    const char *executable;
    const char *cwd; /* chdir there first; NULL: the parent's */
    /* NULL-terminated "NAME=value" strings. env replaces the environment
     * (NULL: this process's environ); env_extend is applied on top: a
     * "NAME=value" sets NAME, a bare "NAME" removes it. */
    const char *const *env;
    const char *const *env_extend;
    /* fds the child keeps under the same numbers (Python: pass_fds);
     * every other fd above 2 is closed in the child. Borrowed. */
    const int *pass_fds;
    size_t npass_fds;
    bool set_umask; /* umask(umask) in the child */
    mode_t umask;
    bool start_new_session; /* setsid() in the child */
    bool set_pgid;          /* setpgid(0, pgid) in the child: pgid 0 makes */
    pid_t pgid;             /* it the leader of a new group */
    /* SIGKILL the child when the thread that started it exits (so: the
     * parent process, for a program's main thread), race-free as daemon
     * processes: PR_SET_PDEATHSIG, then a check that the parent is still
     * the one that started it. */
    bool kill_on_parent_death;
    /* Tell notify_fd (a pipe's write end, borrowed) that the child is
     * about to exec: once its session, group and parent-death steps are
     * done and just before exec, the child writes its pid there as one
     * int32_t in host byte order (an atomic pipe write); should the exec
     * then fail, it writes the pid negated. So a watcher (a guardian that
     * kills groups) learns of the process, and with set_pgid/pgid 0 of its
     * group, before the program runs any code: nothing the program starts
     * can escape it. A failed write (no reader) is ignored and raises no
     * SIGPIPE. The fd is closed in the program unless in pass_fds. */
    bool notify;
    int notify_fd;
    /* Leave ignored SIGPIPE/SIGXFSZ ignored in the child (Python:
     * restore_signals=False). Handlers are always reset to default. */
    bool keep_signals;
} mproc_popen_opts;

/*
 * Starts argv (argv[0] the program unless opts->executable; ends in NULL)
 * as Python's Popen(argv, ...) and stores the handle in *out. The
 * signal mask of the calling thread is the child's.
 *
 * Returns 0, or when nothing was started (no child left behind, no fd):
 *   -EINVAL        argv NULL or empty, bad options (STDOUT for stdin or
 *                  stdout, a negative fd, a PATH kind without a path);
 *   -EBADF         a MPROC_STDIO_FD, pass_fds or notify_fd fd that is
 *                  not open;
 *   -ENOENT, -EACCES, -ENOTDIR, -ENOEXEC, -ELOOP, -E2BIG, ...  the
 *                  errno of the failing step: opening a stdio file in the
 *                  parent, or in the child before exec (chdir, setsid,
 *                  setpgid, dup2, exec itself);
 *   -ESRCH         kill_on_parent_death and the parent died meanwhile;
 *   -EMFILE, -ENFILE, -ENOMEM, -EAGAIN (RLIMIT_NPROC).
 * *step (when step is not NULL) names the failing step, a static string:
 * "open stdin", "open stdout", "open stderr", "dup2", "chdir", "setsid",
 * "setpgid", "parent died", "close fds", "exec" ("" on success or a
 * failure before any step).
 * Never blocks beyond the exec. Thread safe.
 */
MPROC_API int mproc_popen_new(mproc_popen **out, const char *const *argv,
                              const mproc_popen_opts *opts, const char **step);

/*
 * Frees p: closes the parent's ends of its pipes. A child still running
 * is left to run (Python's Popen.__del__): it is reaped by a later
 * mproc_popen_new of this process, or becomes init's at exit. NULL: no-op.
 */
MPROC_API void mproc_popen_free(mproc_popen *p);

/* The child's pid (valid until free). 0 for NULL. */
MPROC_API pid_t mproc_popen_pid(const mproc_popen *p);

/* The parent's end of the stdin/stdout/stderr pipe, or -1 when that
 * stream is not a pipe or was closed. Owned by p: do not close it (for
 * stdin, mproc_popen_close_stdin). Reading it yourself is fine as long as
 * communicate/stream/read/readline are not used on it. */
MPROC_API int mproc_popen_stdin(const mproc_popen *p);
MPROC_API int mproc_popen_stdout(const mproc_popen *p);
MPROC_API int mproc_popen_stderr(const mproc_popen *p);

/* Closes the stdin pipe: the child reads end of file. Returns 0, or
 * -EBADF when stdin is not a pipe or already closed. */
MPROC_API int mproc_popen_close_stdin(mproc_popen *p);

/*
 * An fd readable once the child has ended, for mproc_wait beside
 * connections, queues and process sentinels: a pidfd, or without pidfds
 * the read end of a pipe whose write end only the child holds (then the
 * child has that one fd more, and a grandchild that keeps it keeps the
 * sentinel unready: confirm with mproc_popen_poll). Owned by p.
 * Returns the fd or -EINVAL.
 */
MPROC_API int mproc_popen_sentinel(const mproc_popen *p);

/*
 * Popen.poll(): reaps the child if it has ended. Returns 1 and stores the
 * return code in *returncode (when not NULL) once it has ended, 0 while it
 * runs, or -EINVAL, -ECHILD (a fork child's inherited object). A child
 * that someone else reaped (SIGCHLD ignored, a stray waitpid(-1)) reads
 * as return code 0, as in Python.
 */
MPROC_API int mproc_popen_poll(mproc_popen *p, int *returncode);

/*
 * Popen.wait(timeout): waits for the child to end and reaps it. Returns 0
 * (stores the return code when returncode is not NULL), -ETIMEDOUT (the
 * child runs on), -EINVAL, -ECHILD. EINTR is retried against one deadline.
 */
MPROC_API int mproc_popen_wait(mproc_popen *p, double timeout, int *returncode);

/* Popen.returncode: the return code once reaped (by poll, wait or
 * communicate), else MPROC_RETURNCODE_NONE. */
MPROC_API int mproc_popen_returncode(const mproc_popen *p);

/*
 * Popen.send_signal / terminate (SIGTERM) / kill (SIGKILL). Returns 0,
 * MPROC_EREAPED (the child was already reaped: nothing sent; as Python,
 * treat as done), -EINVAL (bad signal), -ECHILD, -EPERM.
 */
MPROC_API int mproc_popen_send_signal(mproc_popen *p, int sig);
MPROC_API int mproc_popen_terminate(mproc_popen *p);
MPROC_API int mproc_popen_kill(mproc_popen *p);

/*
 * Sends sig to the child's whole process group (killpg), for a child
 * started with start_new_session or set_pgid with pgid 0, which leads a
 * group of its own: its children (a shell's commands) get it too, even
 * after the child itself ended. Returns 0, -EINVAL (the child leads no
 * group of its own, or a bad signal), -ESRCH (nothing left in the group),
 * -EPERM, -ECHILD.
 */
MPROC_API int mproc_popen_kill_group(mproc_popen *p, int sig);

/*
 * Popen.communicate(input, timeout): writes input (len bytes; NULL or 0:
 * none) to stdin and closes it, reads stdout and stderr to end of file at
 * the same time (no deadlock whatever the sizes), then waits for the
 * child. On 0, *out / *err (each when not NULL) get malloc'd,
 * NUL-terminated copies of everything the child wrote there (the caller
 * frees them; NULL when that stream is not a pipe) and their lengths.
 * A pipe whose out pointer is NULL is drained and its data dropped.
 *
 * On -ETIMEDOUT nothing is lost: what was read so far stays in p, and
 * a later call goes on where this one stopped, with the same input again
 * (mproc resumes after the bytes it already wrote; pass the same pointer
 * and length). The child is not killed. A child that exits without
 * reading its stdin is no error: no SIGPIPE is raised (the rest of the
 * input is dropped, as Python).
 *
 * Returns 0, -ETIMEDOUT, -EINVAL (input given but stdin is not a pipe),
 * -ENOMEM (what was read is kept), -ECHILD, -EIO. Not concurrently with
 * another reading call on p.
 */
MPROC_API int mproc_popen_communicate(mproc_popen *p, const void *input,
                                      size_t len, char **out, size_t *out_len,
                                      char **err, size_t *err_len,
                                      double timeout);

/*
 * Where streamed output goes, for output too big to hold: fn(ctx, data,
 * n) is called with each chunk as it arrives, or with each line (its
 * '\n' included; a last line without one at end of file) when lines is
 * set; a negative return stops the stream with that code. With fn NULL
 * the bytes are written to fd (blocking writes; a negative fd drops
 * them).
 */
typedef int (*mproc_sink_fn)(void *ctx, const void *data, size_t n);
typedef struct mproc_sink {
    mproc_sink_fn fn;
    void *ctx;
    int fd;
    bool lines;
} mproc_sink;

/*
 * As communicate, with stdout and stderr going to the sinks instead of
 * memory (NULL sink: dropped); nothing is held but a line in progress.
 * Returns 0 once both reached end of file and the child was reaped,
 * -ETIMEDOUT (resumable as communicate), a sink's negative code (the
 * child runs on; a later call resumes), or the errors of communicate.
 */
MPROC_API int mproc_popen_stream(mproc_popen *p, const void *input, size_t len,
                                 const mproc_sink *out, const mproc_sink *err,
                                 double timeout);

/*
 * Reads stdout as it arrives. read: up to cap bytes into buf; returns the
 * count (> 0), 0 at end of file, -ETIMEDOUT, -EBADF (stdout is not a
 * pipe). readline: the next line, '\n' included (the last may lack it),
 * into *line (owned by p, NUL-terminated, valid until the next reading
 * call) and *len; returns 1, 0 at end of file, -ETIMEDOUT (a partial line
 * stays buffered), -ENOMEM, -EBADF. The two may be mixed: read returns
 * what readline buffered first.
 */
MPROC_API ssize_t mproc_popen_read(mproc_popen *p, void *buf, size_t cap,
                                   double timeout);
MPROC_API int mproc_popen_readline(mproc_popen *p, char **line, size_t *len,
                                   double timeout);

/* ---- run and the shortcuts ---------------------------------------------*/

/* What subprocess.run returns (CompletedProcess), and what a failed run
 * leaves for the caller to look at. */
typedef struct mproc_completed {
    pid_t pid;      /* 0 when nothing was started */
    int returncode; /* MPROC_RETURNCODE_NONE when not reaped */
    char *out;      /* captured stdout, NUL-terminated (malloc'd), or NULL */
    size_t out_len;
    char *err; /* captured stderr, the same */
    size_t err_len;
    const char *step; /* the failing start step (mproc_popen_new), or "" */
} mproc_completed;

/* Frees out and err and zeroes *c. NULL: no-op. */
MPROC_API void mproc_completed_free(mproc_completed *c);

typedef struct mproc_run_opts {
    mproc_popen_opts popen; /* how to start it */
    /* Bytes for stdin (which becomes a pipe), as Python's input=. */
    const void *input;
    size_t input_len;
    bool capture_output; /* stdout and stderr to pipes, kept in the result */
    /* A non-zero return code makes run return MPROC_ECALLEDPROCESS, with
     * the code and the captured output in the result. */
    bool check;
    /* On timeout (or another failure after the start), SIGKILL the
     * child's whole process group, not just the child; the child is put
     * in a group of its own (set_pgid, pgid 0) unless the options already
     * give it a session or group. The fix of CPython gh-75628: a
     * grandchild holding the pipe is killed too. */
    bool kill_group;
    /* Stream stdout / stderr (then pipes) here instead of capturing it;
     * takes precedence over capture_output for that stream. */
    const mproc_sink *out_sink;
    const mproc_sink *err_sink;
} mproc_run_opts;

/*
 * subprocess.run(argv, ...): starts argv, feeds input, captures or streams
 * its output and waits for it, all within timeout (seconds, negative: no
 * limit). *res is always filled (free it with mproc_completed_free, even
 * on failure).
 *
 * Returns 0 (the return code is in res->returncode, whatever it is,
 * unless check), or:
 *   MPROC_ECALLEDPROCESS  check, and the return code is not 0 (in res,
 *                         with what was captured);
 *   -ETIMEDOUT            the timeout passed: the child (or with
 *                         kill_group its whole group) was SIGKILLed and
 *                         reaped; res has what was read before, and the
 *                         return code (-9). run never waits for pipes
 *                         that a surviving grandchild holds open;
 *   a sink's negative code (the child is killed and reaped too);
 *   the errors of mproc_popen_new (res->step names the step).
 * Thread safe.
 */
MPROC_API int mproc_run(mproc_completed *res, const char *const *argv,
                        const mproc_run_opts *opts, double timeout);

/*
 * subprocess.call / check_call: run argv (opts NULL: defaults) and wait.
 * call returns 0 and stores the return code in *returncode (not NULL);
 * check_call returns 0 only for return code 0, else MPROC_ECALLEDPROCESS
 * (*returncode, when not NULL, tells which). On timeout both kill and
 * reap the child and return -ETIMEDOUT. Start errors as mproc_popen_new.
 */
MPROC_API int mproc_call(const char *const *argv, const mproc_popen_opts *opts,
                         double timeout, int *returncode);
MPROC_API int mproc_check_call(const char *const *argv,
                               const mproc_popen_opts *opts, double timeout,
                               int *returncode);

/*
 * subprocess.check_output: runs argv with stdout captured and returns 0
 * with *out (malloc'd, NUL-terminated, the caller frees) and *len, or
 * MPROC_ECALLEDPROCESS (non-zero return code; *out still holds the
 * output), -ETIMEDOUT (*out NULL), start errors. opts->out is ignored.
 */
MPROC_API int mproc_check_output(const char *const *argv,
                                 const mproc_popen_opts *opts, double timeout,
                                 char **out, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
