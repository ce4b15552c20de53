/*
 * mproc/process.h - processes, as multiprocessing.Process.
 *
 *   mproc_process *p;
 *   mproc_args *a = mproc_args_of("s", "bob");
 *   mproc_process_new(&p, f, a);      // f: int f(const mproc_args *)
 *   mproc_args_free(a);               // p keeps its own copy
 *   mproc_process_start(p);
 *   mproc_process_join(p, -1);
 *   int code = mproc_process_exitcode(p);
 *   mproc_process_free(p);
 *
 * Start methods: fork (the default on Linux), spawn (a fresh exec of
 * /proc/self/exe in which main() does not run: the library takes over
 * where main() would be called and runs the target), and forkserver (a
 * single-threaded server, spawned on first use, forks children on
 * request). A program behaves the same under all three; see
 * docs/process.md, which also says when to call mproc_main().
 *
 * Exit codes follow Python: the target's return value (0..255 as the
 * kernel keeps it); -N when killed by signal N; MPROC_EXITCODE_NONE while
 * the process has not finished (or was not started).
 *
 * Threads: every function may be called from any thread; one process
 * object may be used from several threads at once.
 * Fork: a fork child starts with an empty list of children; process
 * objects it inherited refer to its siblings: calls that would wait for or
 * signal them return -ECHILD. Freeing them in the child is safe and
 * touches nothing.
 */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include "args.h"
#include "common.h"
#include <limits.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_process mproc_process;

/* A target returns the process's exit code (Python: sys.exit(code)). */
typedef int (*mproc_target)(const mproc_args *args);

/* mproc_process_exitcode() of a process that has not finished. */
#define MPROC_EXITCODE_NONE INT_MIN

typedef enum mproc_start_method {
    MPROC_START_DEFAULT = 0, /* the current default (set_start_method) */
    MPROC_START_FORK = 1,
    MPROC_START_SPAWN = 2,
    MPROC_START_FORKSERVER = 3
} mproc_start_method;

/*
 * The explicit guard for spawn and forkserver children, as Python's
 * `if __name__ == "__main__":`. Call it first thing in main():
 *
 *   int main(int argc, char **argv) { mproc_main(argc, argv); ... }
 *
 * In an ordinary run it returns 0 at once (and notes that this program
 * guards its main, so its spawned children boot here). In a spawned child
 * (or a helper process of mproc's) it runs the child and exits with its
 * exit code: it never returns.
 *
 * Without it, a program linked with -lmproc (shared) needs no guard: the
 * child takes over where main() would be called. Call it when that cannot
 * work: in a statically linked program (-static), or when libmproc is
 * loaded by another library rather than linked into the program; there,
 * without the guard, the child would boot from libmproc's constructor,
 * before constructors that run after it. Thread safe; async-signal-unsafe.
 */
MPROC_API int mproc_main(int argc, char **argv);

/*
 * Creates a process object that will run target(args). args may be NULL;
 * it is copied (objects inside stay borrowed until start returns).
 * The default name is "Process-N" (N counts this process's children) or,
 * in a child, "Process-1:N" and so on, as Python names them. The daemon
 * flag is inherited from the current process (as in Python).
 * Returns 0 and stores the object in *out, or -EINVAL (NULL out/target),
 * -ENOMEM.
 */
MPROC_API int mproc_process_new(mproc_process **out, mproc_target target,
                                const mproc_args *args);

/*
 * Drops the caller's reference. A started child that has not been reaped
 * is not killed: the library keeps its record until it is reaped (by
 * mproc_active_children or at exit), as Python keeps Process objects.
 * NULL ok. Never blocks.
 */
MPROC_API void mproc_process_free(mproc_process *p);

/* Setters, valid only before start (MPROC_ESTARTED after). name is copied
 * (at most 127 bytes kept); method MPROC_START_DEFAULT follows the global
 * default at start time. Return 0, -EINVAL, MPROC_ESTARTED. */
MPROC_API int mproc_process_set_name(mproc_process *p, const char *name);
MPROC_API int mproc_process_set_daemon(mproc_process *p, int daemon);
MPROC_API int mproc_process_set_start_method(mproc_process *p,
                                             mproc_start_method method);

/* Getters. name: valid as long as p; never NULL for a valid p. */
MPROC_API const char *mproc_process_name(const mproc_process *p);
MPROC_API int mproc_process_daemon(const mproc_process *p);

/*
 * Starts the process. Blocks until the child exists; under spawn also
 * until it has re-attached its arguments and found its target (an
 * import_fn's error is returned here); under forkserver the server checks
 * the target and object kinds before forking (an import that still fails
 * in the child ends it with exit code 255). Returns 0 or
 * MPROC_ESTARTED (started twice), MPROC_ECLOSED, MPROC_EDAEMON (a daemonic
 * process may not have children), MPROC_ERESOLVE (target or an object kind
 * cannot be found across exec), MPROC_EBOOTSTRAP, MPROC_EFORKSERVER, an
 * export_fn's error, or -errno from fork/posix_spawn (-EAGAIN, -ENOMEM,
 * -EMFILE...). On failure nothing is left behind and start may be retried.
 * stdio is flushed first (all methods) so buffered output is neither
 * duplicated nor overtaken by the child's.
 */
MPROC_API int mproc_process_start(mproc_process *p);

/*
 * Waits for the process to finish (timeout in seconds, < 0 forever) and
 * reaps it. Returns 0 when it has finished, -ETIMEDOUT, MPROC_ENOTSTARTED,
 * MPROC_ECLOSED, -EDEADLK when a process joins itself. Idempotent.
 */
MPROC_API int mproc_process_join(mproc_process *p, double timeout);

/* 1 if started and not finished, else 0 (also before start, and for a
 * sibling's object in a fork child). Reaps a finished child. MPROC_ECLOSED
 * after close. */
MPROC_API int mproc_process_is_alive(mproc_process *p);

/* pid (0 before start). Still reported after the child was reaped. */
MPROC_API pid_t mproc_process_pid(const mproc_process *p);

/* Exit code (see above); reaps a finished child without blocking. */
MPROC_API int mproc_process_exitcode(mproc_process *p);

/*
 * Send SIGTERM / SIGKILL / any signal. Race-free: a pidfd is used, so a
 * recycled pid is never signalled. Without pidfds (valgrind, kernels
 * before 5.3: docs/process.md) the pid of a child not yet reaped, which
 * is still its own, or under forkserver a request to the fork server,
 * its parent. Returns 0, MPROC_ENOTSTARTED, MPROC_EREAPED (already
 * finished and reaped), MPROC_ECLOSED, -errno. Signalling a process that
 * has exited but is not yet reaped succeeds. Blocks for a round trip to
 * the fork server in that one case.
 */
MPROC_API int mproc_process_terminate(mproc_process *p);
MPROC_API int mproc_process_kill(mproc_process *p);
MPROC_API int mproc_process_signal(mproc_process *p, int sig);

/*
 * A file descriptor that becomes readable when the process ends: a pidfd,
 * under every start method; without pidfds the read end of a pipe whose
 * write end only the process holds, which reads end of file (POLLHUP)
 * when it ends, or when it execs or closes fds it did not open (join and
 * is_alive still tell the truth then). Owned by p; valid until close/free.
 * Use with poll/epoll or mproc_wait, then join or exitcode to reap.
 * Returns MPROC_ENOTSTARTED or MPROC_ECLOSED when there is none.
 *
 * On mproc_parent_process(): readable once the parent has ended; owned by
 * the library. A fork child opens it when first asked, and gets -ESRCH if
 * its parent had ended by then.
 */
MPROC_API int mproc_process_sentinel(const mproc_process *p);

/*
 * Releases the object's resources (pidfd, connection). The exit code and
 * pid stay readable; other calls return MPROC_ECLOSED. Returns 0,
 * MPROC_ERUNNING if the process has not been reaped. Idempotent.
 */
MPROC_API int mproc_process_close(mproc_process *p);

/*
 * The calling process as a process object (name, pid, daemon); owned by
 * the library, valid for the life of the process. "MainProcess" in the
 * main process. Only the getters apply to it.
 */
MPROC_API mproc_process *mproc_current_process(void);

/*
 * The parent as a process object (name, pid; is_alive and sentinel work
 * through a pidfd, or without pidfds a pipe only the parent can write),
 * or NULL in the main process. Owned by the library.
 */
MPROC_API mproc_process *mproc_parent_process(void);

/* Renames the current process (the name children and logs see). */
MPROC_API int mproc_set_current_name(const char *name);

/*
 * Reaps finished children and returns the number still alive. When out is
 * not NULL, stores up to max new references to them (release each with
 * mproc_process_free). Returns the count (which may exceed max) or -errno.
 */
MPROC_API int mproc_active_children(mproc_process **out, size_t max);

/*
 * This process's authentication key (random 32 bytes in the main process,
 * inherited by children). Copies up to cap bytes into buf and returns the
 * key's length. set_authkey copies the key (1..256 bytes) for this process
 * and children started afterwards: 0, -EINVAL.
 */
MPROC_API int mproc_authkey(void *buf, size_t cap);
MPROC_API int mproc_set_authkey(const void *key, size_t len);

/*
 * Default start method for processes (and pools, managers) created with
 * MPROC_START_DEFAULT: Python's set_start_method / get_context. Returns 0
 * or -EINVAL. Thread safe. get returns the current default.
 */
MPROC_API int mproc_set_start_method(mproc_start_method method);
MPROC_API mproc_start_method mproc_get_start_method(void);

/*
 * Python's set_executable: the program spawn children run instead of this
 * one (/proc/self/exe). It must be a program in which the child can boot:
 * this very program under another name (a hard link, a symlink), or one
 * linked with libmproc.so (or static with libmproc.a) in which the target
 * and the kinds of the objects passed resolve, i.e. they live in shared
 * libraries both programs load (a function of this program's executable is
 * found only in the same executable file). A child whose program cannot
 * boot fails mproc_process_start with MPROC_ERESOLVE (target or kind not
 * found) or MPROC_EBOOTSTRAP (it exited without booting: not an mproc
 * program); a program that ignores MPROC_SPAWN and never exits keeps start
 * waiting. Such a program boots where libmproc takes over unguarded (see
 * docs/process.md): its mproc_main() is not waited for. Only the spawn
 * method uses it; fork children, the fork server (and so its children) and
 * the shared memory tracker are this program. Spawn children themselves
 * start with the default. path is resolved now (relative to the current
 * directory, symlinks followed) and copied; NULL returns to the default.
 * Returns 0, -EINVAL (""), -ENOENT, -EACCES (not an executable regular
 * file), -ENAMETOOLONG, -ENOMEM. Thread safe; affects starts that follow.
 */
MPROC_API int mproc_set_executable(const char *path);

/*
 * Python's set_forkserver_preload: shared libraries (names as dlopen takes
 * them: "libfoo.so.1" searched as the loader searches, or a path) that the
 * fork server dlopens (RTLD_NOW | RTLD_GLOBAL) once when it starts, so
 * that each of its children starts with them loaded and their
 * constructors run instead of loading them itself (a target that lives in
 * such a library, or code the target dlopens). A library that fails to
 * load is skipped with a DEBUG log line (when logging is on), as CPython
 * skips a module that fails to import; one that crashes while loading
 * takes the server down (starts then fail with MPROC_EFORKSERVER). The
 * names are copied; n = 0 clears the list. Takes effect when the fork
 * server next starts (the first forkserver start, or after
 * mproc_shutdown()); a running server keeps what it loaded. Returns 0,
 * -EINVAL (NULL names with n > 0, a NULL or empty name, one of PATH_MAX
 * bytes or more), -ENOMEM. Thread safe.
 */
MPROC_API int mproc_set_forkserver_preload(const char *const *names, size_t n);

/* "fork", "spawn", "forkserver" (NULL for others) and back (-EINVAL). */
MPROC_API const char *mproc_start_method_name(mproc_start_method method);
MPROC_API int mproc_start_method_parse(const char *name,
                                       mproc_start_method *out);

/*
 * The library's exit work, as Python's atexit handler: terminates daemonic
 * children, joins the others, stops the fork server. Registered with
 * atexit() in the main process; call it yourself before _exit or to check
 * for leaks. Safe to call more than once. Returns 0.
 */
MPROC_API int mproc_shutdown(void);

#ifdef __cplusplus
}
#endif

#endif
