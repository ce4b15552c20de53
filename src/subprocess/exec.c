/*
 * subprocess/exec.c - starting a program. The parent does everything that
 * can be done before the child exists: validates the options, opens the
 * pipes, /dev/null and the stdio files, builds the environment and the
 * list of paths to try for the program (PATH search as execvp), all
 * close-on-exec. Then a clone with CLONE_VM | CLONE_VFORK (and
 * CLONE_PIDFD where there are pidfds) on a small stack of its own: the
 * child shares our memory and we sleep until it has exec'd or died, so the
 * cost does not grow with our size, and a pidfd names it before its pid
 * could ever be reused. Where such a clone is refused (valgrind), or
 * under ThreadSanitizer, a plain fork runs the same child code.
 *
 * The child makes raw system calls only (it runs on our memory, with no
 * lock of libc's to be trusted), with every signal blocked until just
 * before exec: handlers back to default, session or group, the
 * parent-death signal, stdio, fds marked close-on-exec but those asked
 * for, cwd, umask, the notification (opts.notify), the caller's signal
 * mask, exec. A step that fails leaves {step, errno} in the plan it
 * shares with us and exits; we read it when the clone returns (nothing
 * there: the exec worked). A forked child, which shares nothing, writes
 * the record to a close-on-exec pipe instead: end of file there when the
 * exec worked. The child's stack is kept for the next start.
 */
#include "subprocess/subprocess_impl.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

/* The steps a start can fail at, as reported (index into step_names). */
enum {
    STEP_NONE,
    STEP_OPEN_IN,
    STEP_OPEN_OUT,
    STEP_OPEN_ERR,
    STEP_DUP2,
    STEP_CHDIR,
    STEP_SETSID,
    STEP_SETPGID,
    STEP_PDEATH,
    STEP_CLOSE,
    STEP_EXEC,
};

static const char *const step_names[] = {
    "",       "open stdin", "open stdout", "open stderr", "dup2", "chdir",
    "setsid", "setpgid",    "parent died", "close fds",   "exec",
};

/* The record the child leaves when a step fails. */
typedef struct report {
    int32_t step;
    int32_t err;
} report;

/* Everything the child needs, computed by the parent. */
typedef struct plan {
    int src[3]; /* fd to put on 0, 1, 2; -1 inherit; -2 (stderr): fd 1 */
    const int *pass;
    size_t npass;
    int keep;   /* the sentinel pipe's write end, or -1 */
    int report; /* the error pipe's write end (fork); -1: in rep below */
    /* Sharing our memory (CLONE_VM), the child leaves its failure here:
     * we read it once it has exec'd or exited (CLONE_VFORK). */
    volatile report rep;
    int notify; /* notify_fd, or -1 */
    const char *cwd;
    bool set_umask;
    mode_t umask;
    bool setsid;
    bool setpgid;
    pid_t pgid;
    bool pdeath;
    pid_t ppid;
    bool reset_pipe_signals;
    unsigned long mask; /* the caller's signal mask, the kernel's 64 bits */
    char **paths;       /* where to try the program, NULL-terminated */
    char *const *argv;
    char *const *envp;
} plan;

/* The kernel's sigaction for rt_sigaction: handler first, then fields
 * that are all zero here whatever their order on this architecture. */
typedef struct ksigaction {
    void *handler;
    unsigned long rest[3];
} ksigaction;

#define NO_SAN                                                                 \
    __attribute__((no_sanitize("address", "undefined", "thread"), noinline))

NO_SAN static long sys(long nr, long a, long b, long c, long d)
{
    return syscall(nr, a, b, c, d);
}

NO_SAN static int child_errno(long r)
{
    (void)r;
    return errno;
}

/* Writes v to the notify fd with every signal blocked (as they are until
 * just before exec); a SIGPIPE the write raised is taken back. */
NO_SAN static void child_notify(const plan *pl, int32_t v)
{
    if (sys(SYS_write, pl->notify, (long)&v, sizeof v, 0) < 0) {
        unsigned long pipe_only = 1UL << (SIGPIPE - 1);
        struct timespec zero = {0, 0};
        sys(SYS_rt_sigtimedwait, (long)&pipe_only, 0, (long)&zero, 8);
    }
}

/* Exits the child after writing which step failed with which errno (and,
 * when the exec itself failed, the withdrawal of the notification). */
NO_SAN __attribute__((noreturn)) static void child_fail(const plan *pl,
                                                        int step, int err)
{
    if (step == STEP_EXEC && pl->notify >= 0) {
        unsigned long all = ~0UL;
        sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8);
        child_notify(pl, -(int32_t)sys(SYS_getpid, 0, 0, 0, 0));
    }
    if (pl->report >= 0) {
        report rep = {step, err};
        sys(SYS_write, pl->report, (long)&rep, sizeof rep, 0);
    } else {
        plan *shared = (plan *)pl;
        shared->rep.err = err;
        shared->rep.step = step;
    }
    for (;;) /* the whole process, should a fork child have threads */
        sys(SYS_exit_group, 127, 0, 0, 0);
}

NO_SAN static bool passed(const plan *pl, int fd)
{
    for (size_t i = 0; i < pl->npass; i++)
        if (pl->pass[i] == fd)
            return true;
    return fd == pl->keep || fd == pl->report;
}

/* The child, from clone (CLONE_VM) or fork: never returns. */
NO_SAN static int child_main(void *arg)
{
    const plan *pl = arg;
    /* No handler of the parent's may run here (our memory is its): every
     * handled signal back to default; ignored SIGPIPE and SIGXFSZ too
     * unless asked to keep them. Then the caller's mask. */
    for (long sig = 1; sig < 65; sig++) {
        ksigaction old = {0}, dfl = {0};
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sys(SYS_rt_sigaction, sig, 0, (long)&old, 8) < 0)
            continue;
        bool ign = old.handler == (void *)SIG_IGN;
        if (old.handler == (void *)SIG_DFL ||
            (ign &&
             !(pl->reset_pipe_signals && (sig == SIGPIPE || sig == SIGXFSZ))))
            continue;
        sys(SYS_rt_sigaction, sig, (long)&dfl, 0, 8);
    }
    /* Every signal stays blocked (as start_child set it) until just
     * before exec: the caller's mask is restored there. */

    if (pl->setsid && sys(SYS_setsid, 0, 0, 0, 0) < 0)
        child_fail(pl, STEP_SETSID, child_errno(-1));
    if (pl->setpgid && sys(SYS_setpgid, 0, pl->pgid, 0, 0) < 0)
        child_fail(pl, STEP_SETPGID, child_errno(-1));
    if (pl->pdeath) {
        sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
        if (sys(SYS_getppid, 0, 0, 0, 0) != pl->ppid)
            child_fail(pl, STEP_PDEATH, ESRCH);
    }

    /* stdio: a source among 0..2 that is not its own target could be
     * overwritten by an earlier dup2: move it up first. */
    int src[3] = {pl->src[0], pl->src[1], pl->src[2]};
    for (int i = 0; i < 3; i++) {
        if (src[i] >= 0 && src[i] < 3 && src[i] != i) {
            long r = sys(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 3, 0);
            if (r < 0)
                child_fail(pl, STEP_DUP2, child_errno(r));
            src[i] = (int)r;
        }
    }
    for (int i = 0; i < 3; i++) {
        int s = src[i] == -2 ? 1 : src[i];
        if (s < 0)
            continue;
        long r = s == i ? sys(SYS_fcntl, i, F_SETFD, 0, 0)
                        : sys(SYS_dup2, s, i, 0, 0);
        if (r < 0)
            child_fail(pl, STEP_DUP2, child_errno(r));
    }

    /* Every fd above 2 close-on-exec but the ones passed. */
    if (sys(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC, 0) < 0) {
        struct rlimit rl;
        long maxfd = 65536;
        if (sys(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, (long)&rl) == 0 &&
            rl.rlim_cur < 65536)
            maxfd = (long)rl.rlim_cur;
        for (int fd = 3; fd < maxfd; fd++)
            if (!passed(pl, fd))
                sys(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC, 0);
    }
    if (pl->report >= 0)
        sys(SYS_fcntl, pl->report, F_SETFD, FD_CLOEXEC, 0);
    for (size_t i = 0; i < pl->npass; i++)
        if (sys(SYS_fcntl, pl->pass[i], F_SETFD, 0, 0) < 0)
            child_fail(pl, STEP_CLOSE, child_errno(-1));
    if (pl->keep >= 0)
        sys(SYS_fcntl, pl->keep, F_SETFD, 0, 0);

    if (pl->cwd && sys(SYS_chdir, (long)pl->cwd, 0, 0, 0) < 0)
        child_fail(pl, STEP_CHDIR, child_errno(-1));
    if (pl->set_umask)
        sys(SYS_umask, pl->umask, 0, 0, 0);

    /* Last before exec: the watcher hears of us (and of our group), so
     * whatever the program starts is within its reach. */
    if (pl->notify >= 0)
        child_notify(pl, (int32_t)sys(SYS_getpid, 0, 0, 0, 0));
    sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&pl->mask, 0, 8);

    /* As execvp: the first error other than "not there" wins. */
    int saved = 0, last = ENOENT;
    for (char **p = pl->paths; *p; p++) {
        sys(SYS_execve, (long)*p, (long)pl->argv, (long)pl->envp, 0);
        last = child_errno(-1);
        if (last != ENOENT && last != ENOTDIR && saved == 0)
            saved = last;
    }
    child_fail(pl, STEP_EXEC, saved ? saved : last);
}

/* ---- the parent's side -------------------------------------------------- */

static bool fd_open(int fd)
{
    return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

/* Checks the options that need no syscall. */
static int check_opts(const char *const *argv, const mproc_popen_opts *o)
{
    if (!argv || !argv[0])
        return -EINVAL;
    const mproc_stdio *s[3] = {&o->in, &o->out, &o->err};
    for (int i = 0; i < 3; i++) {
        switch (s[i]->kind) {
        case MPROC_STDIO_INHERIT:
        case MPROC_STDIO_PIPE:
        case MPROC_STDIO_DEVNULL:
            break;
        case MPROC_STDIO_STDOUT:
            if (i != 2)
                return -EINVAL;
            break;
        case MPROC_STDIO_FD:
            if (s[i]->fd < 0)
                return -EINVAL;
            break;
        case MPROC_STDIO_PATH:
            if (!s[i]->path || !*s[i]->path)
                return -EINVAL;
            break;
        default:
            return -EINVAL;
        }
    }
    if (o->npass_fds > 0 && !o->pass_fds)
        return -EINVAL;
    for (size_t i = 0; i < o->npass_fds; i++)
        if (o->pass_fds[i] < 0)
            return -EINVAL;
    if (o->notify && o->notify_fd < 0)
        return -EINVAL;
    if (o->set_pgid && o->pgid < 0)
        return -EINVAL;
    return 0;
}

/* The environment: env or environ, with env_extend applied. Pointers
 * only; the strings stay the caller's. */
static char **build_env(const mproc_popen_opts *o)
{
    const char *const *base = o->env ? o->env : (const char *const *)environ;
    size_t n = 0, m = 0;
    for (const char *const *e = base; e && *e; e++)
        n++;
    for (const char *const *e = o->env_extend; e && *e; e++)
        m++;
    const char **env = malloc((n + m + 1) * sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        env[k++] = base[i];
    for (size_t j = 0; j < m; j++) {
        const char *x = o->env_extend[j];
        const char *eq = strchr(x, '=');
        size_t nl = eq ? (size_t)(eq - x) : strlen(x);
        /* Drop every entry of that name, then add this one. */
        size_t w = 0;
        for (size_t i = 0; i < k; i++)
            if (!(strncmp(env[i], x, nl) == 0 && env[i][nl] == '='))
                env[w++] = env[i];
        k = w;
        if (eq)
            env[k++] = x;
    }
    env[k] = NULL;
    return (char **)env;
}

/* The paths to try for prog: itself when it has a '/', else each
 * directory of PATH (from the child's environment) joined with it. One
 * malloc'd block, NULL-terminated array first. */
static char **exec_paths(const char *prog, char *const *envp)
{
    if (!*prog)
        return NULL;
    const char *path = NULL;
    if (!strchr(prog, '/')) {
        for (char *const *e = envp; *e; e++)
            if (strncmp(*e, "PATH=", 5) == 0)
                path = *e + 5;
        if (!path)
            path = "/bin:/usr/bin";
    }
    size_t ndir = 1, plen = strlen(prog);
    if (path)
        for (const char *c = path; *c; c++)
            ndir += *c == ':';
    size_t size = (ndir + 1) * sizeof(char *) +
                  (path ? strlen(path) + ndir * (plen + 3) : plen + 1);
    char **a = malloc(size);
    if (!a)
        return NULL;
    char *s = (char *)(a + ndir + 1);
    if (!path) {
        memcpy(s, prog, plen + 1);
        a[0] = s;
        a[1] = NULL;
        return a;
    }
    size_t k = 0;
    for (const char *c = path;;) {
        const char *end = strchrnul(c, ':');
        size_t dl = (size_t)(end - c);
        a[k++] = s;
        if (dl == 0) { /* an empty entry is the current directory */
            memcpy(s, prog, plen + 1);
        } else {
            memcpy(s, c, dl);
            s[dl] = '/';
            memcpy(s + dl + 1, prog, plen + 1);
        }
        s += strlen(s) + 1;
        if (!*end)
            break;
        c = end + 1;
    }
    a[k] = NULL;
    return a;
}

/* Opens what stdio slot i needs in the parent: *child gets the fd for the
 * child (-1 inherit, -2 stdout's), *mine our pipe end (or -1), *own the
 * fd to close after the start (or -1). */
static int open_stdio(int i, const mproc_stdio *s, int *devnull, int *child,
                      int *mine, int *own)
{
    *child = -1;
    *mine = -1;
    *own = -1;
    switch (s->kind) {
    case MPROC_STDIO_INHERIT:
        return 0;
    case MPROC_STDIO_STDOUT:
        *child = -2;
        return 0;
    case MPROC_STDIO_FD:
        if (!fd_open(s->fd))
            return -EBADF;
        *child = s->fd;
        return 0;
    case MPROC_STDIO_DEVNULL:
        if (*devnull < 0) {
            *devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (*devnull < 0)
                return -errno;
        }
        *child = *devnull;
        return 0;
    case MPROC_STDIO_PIPE: {
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
            return -errno;
        *mine = i == 0 ? pfd[1] : pfd[0];
        /* 1 MiB (the unprivileged maximum) instead of 64 KiB: a sixteenth
         * of the wake-ups for bulk data. Best effort. */
        fcntl(pfd[0], F_SETPIPE_SZ, 1 << 20);
        *child = *own = i == 0 ? pfd[0] : pfd[1];
        return 0;
    }
    case MPROC_STDIO_PATH: {
        int fl = i == 0 ? O_RDONLY
                        : O_WRONLY | O_CREAT | (s->append ? O_APPEND : O_TRUNC);
        int fd = open(s->path, fl | O_CLOEXEC, 0666);
        if (fd < 0)
            return -errno;
        *child = *own = fd;
        return 0;
    }
    }
    return -EINVAL;
}

enum { STACK_SIZE = 64 * 1024 };

/* ThreadSanitizer's runtime, when this build has one: it takes every
 * clone() for a fork and marks the process as forked-while-threaded,
 * in the memory a CLONE_VM child shares with us, after which it kills
 * the process at its next pthread_create. Under it, fork. */
extern void __tsan_init(void) __attribute__((weak));

/* The child's stack: one kept for the next start (taken by one start at
 * a time; a concurrent one maps its own), so a start costs no mapping nor
 * fresh page faults. The child is done with it when the clone returns. */
static _Atomic(void *) spare_stack;

static void *stack_take(void)
{
    void *s = atomic_exchange(&spare_stack, NULL);
    if (s)
        return s;
    s = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    return s == MAP_FAILED ? NULL : s;
}

static void stack_give(void *s)
{
    void *none = NULL;
    if (!atomic_compare_exchange_strong(&spare_stack, &none, s))
        munmap(s, STACK_SIZE);
}

/* Runs the child: clone(CLONE_VM | CLONE_VFORK) on its own stack, the
 * failure of a step coming back in pl->rep; or fork where that is
 * refused, with a pipe for it (*rep_r its read end, pl->report the write
 * end). Returns the pid (and *pidfd when asked) or -errno. */
static pid_t start_child(plan *pl, bool want_pidfd, int *pidfd, int *rep_r)
{
    static _Atomic bool no_vfork;
    *pidfd = -1;
    *rep_r = -1;
    if (__tsan_init)
        atomic_store(&no_vfork, true);
    /* Every signal blocked while the child shares our memory (the raw
     * call reaches glibc's internal ones too); the child sets its own. */
    unsigned long all = ~0UL, old = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, 8);
    pl->mask = old;
    pid_t pid = -1;
    int err = 0;
    if (!atomic_load(&no_vfork)) {
        void *stack = stack_take();
        if (!stack) {
            err = ENOMEM;
        } else {
            int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
            int fdv = -1;
            if (want_pidfd)
                flags |= CLONE_PIDFD;
            pl->report = -1;
            pid =
                clone(child_main, (char *)stack + STACK_SIZE, flags, pl, &fdv);
            err = pid < 0 ? errno : 0;
            stack_give(stack);
            if (pid > 0)
                *pidfd = want_pidfd ? fdv : -1;
            else if (err == EINVAL || err == ENOSYS || err == EPERM)
                atomic_store(&no_vfork, true); /* valgrind: fork instead */
        }
    }
    int rp[2] = {-1, -1};
    if (pid < 0 && atomic_load(&no_vfork)) {
        if (pipe2(rp, O_CLOEXEC) < 0) {
            err = errno;
        } else {
            pl->report = rp[1];
            pid = fork();
            err = pid < 0 ? errno : 0;
            if (pid == 0)
                child_main(pl);
            mproc__close(rp[1]);
            pl->report = -1;
            if (pid > 0) {
                *rep_r = rp[0];
            } else {
                mproc__close(rp[0]);
            }
            if (pid > 0 && want_pidfd) {
                int fd = mproc__pidfd_open(pid); /* ours until reaped */
                *pidfd = fd >= 0 ? fd : -1;
            }
        }
    }
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, 8);
    return pid < 0 ? -err : pid;
}

int mproc__sp_start(mproc_popen *p, const char *const *argv,
                    const mproc_popen_opts *o, const char **step)
{
    static const mproc_popen_opts defaults;
    if (!o)
        o = &defaults;
    *step = step_names[STEP_NONE];
    int r = check_opts(argv, o);
    if (r < 0)
        return r;
    for (size_t i = 0; i < o->npass_fds; i++)
        if (!fd_open(o->pass_fds[i]))
            return -EBADF;
    if (o->notify && !fd_open(o->notify_fd))
        return -EBADF;

    plan pl;
    memset(&pl, 0, sizeof pl);
    int devnull = -1, own[3] = {-1, -1, -1}, sent[2] = {-1, -1};
    int rep_r = -1;
    char **envp = NULL, **paths = NULL;
    const mproc_stdio *s[3] = {&o->in, &o->out, &o->err};
    for (int i = 0; i < 3; i++)
        p->fd[i] = -1;
    for (int i = 0; i < 3; i++) {
        r = open_stdio(i, s[i], &devnull, &pl.src[i], &p->fd[i], &own[i]);
        if (r < 0) {
            if (s[i]->kind == MPROC_STDIO_PATH)
                *step = step_names[STEP_OPEN_IN + i];
            goto out;
        }
    }
    envp = build_env(o);
    paths =
        envp ? exec_paths(o->executable ? o->executable : argv[0], envp) : NULL;
    if (!envp || !paths) {
        r = envp && !*(o->executable ? o->executable : argv[0]) ? -ENOENT
                                                                : -ENOMEM;
        if (r == -ENOENT)
            *step = step_names[STEP_EXEC];
        goto out;
    }
    bool want_pidfd = mproc__have_pidfd();
    if (!want_pidfd && pipe2(sent, O_CLOEXEC) < 0) {
        r = -errno;
        goto out;
    }
    pl.pass = o->pass_fds;
    pl.npass = o->npass_fds;
    pl.keep = sent[1];
    pl.notify = o->notify ? o->notify_fd : -1;
    pl.cwd = o->cwd;
    pl.set_umask = o->set_umask;
    pl.umask = o->umask;
    pl.setsid = o->start_new_session;
    pl.setpgid = o->set_pgid;
    pl.pgid = o->pgid;
    pl.pdeath = o->kill_on_parent_death;
    pl.ppid = getpid();
    pl.reset_pipe_signals = !o->keep_signals;
    pl.paths = paths;
    pl.argv = (char *const *)argv;
    pl.envp = envp;

    int pidfd = -1;
    pid_t pid = start_child(&pl, want_pidfd, &pidfd, &rep_r);
    if (pid < 0) {
        r = pid;
        goto out;
    }
    report got = {pl.rep.step, pl.rep.err};
    if (rep_r >= 0) { /* forked: end of file when the exec worked */
        ssize_t n;
        do
            n = read(rep_r, &got, sizeof got);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof got)
            got.step = STEP_NONE;
    }
    if (got.step != STEP_NONE) {
        /* A step failed: the child has exited (or is about to). */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        mproc__close(pidfd);
        int st = got.step > 0 && got.step < (int)MPROC__ARRAY_LEN(step_names)
                     ? got.step
                     : STEP_EXEC;
        *step = step_names[st];
        r = got.err > 0 ? -got.err : -EIO;
        goto out;
    }
    p->pid = pid;
    p->pidfd = pidfd;
    for (int i = 0; i < 3; i++)
        p->piped[i] = p->fd[i] >= 0;
    p->sentinel = pidfd >= 0 ? pidfd : sent[0];
    if (pidfd >= 0)
        mproc__close(sent[0]);
    sent[0] = -1;
    p->group_leader = o->start_new_session || (o->set_pgid && o->pgid == 0);
    r = 0;
out:
    if (r < 0)
        for (int i = 0; i < 3; i++) {
            mproc__close(p->fd[i]);
            p->fd[i] = -1;
        }
    for (int i = 0; i < 3; i++)
        mproc__close(own[i]);
    mproc__close(devnull);
    mproc__close(sent[0]);
    mproc__close(sent[1]);
    mproc__close(rep_r);
    free(envp);
    free(paths);
    return r;
}
