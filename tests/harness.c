/*
 * harness.c - runs each test case in its own forked child, in a new process
 * group, under a timeout, and proves nothing leaked: no child, no fd, no
 * /dev/shm entry. See harness.h.
 */
#include "harness.h"

#include <dirent.h>
#include <glob.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

const mproc_start_method mproc_test_methods[3] = {
    MPROC_START_FORK, MPROC_START_SPAWN, MPROC_START_FORKSERVER};

static const char *current_test = "?";
int mproc_test_main_ran;

mproc_process *mproc_test_start(mproc_target fn, const mproc_args *args,
                                mproc_start_method m)
{
    mproc_process *p = NULL;
    CHECK_OK(mproc_process_new(&p, fn, args));
    CHECK_OK(mproc_process_set_start_method(p, m));
    CHECK_OK(mproc_process_start(p));
    return p;
}

#ifdef MPROC_COVERAGE
void __gcov_dump(void); /* libgcov's; see mproc__exit in src/os/os.c */
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPROC_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define MPROC_TEST_ASAN 1
#endif
#ifdef MPROC_TEST_ASAN
int __lsan_do_recoverable_leak_check(void);
#endif

int mproc_test_leak_check(void)
{
#ifdef MPROC_TEST_ASAN
    return __lsan_do_recoverable_leak_check();
#else
    return 0;
#endif
}

void mproc_test_exit(int code)
{
#ifdef MPROC_COVERAGE
    __gcov_dump();
#endif
    _exit(code);
}

void mproc_test_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAIL %s (pid %d) %s:%d: %s\n", current_test, (int)getpid(),
            file, line, msg);
    fflush(NULL);
    mproc_test_exit(1);
}

void mproc_test_skip(const char *why)
{
    fprintf(stderr, "SKIP %s: %s\n", current_test, why);
    fflush(NULL);
    mproc_test_exit(77);
}

double mproc_test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int mproc_test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

bool mproc_test_under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

#if defined(__SANITIZE_THREAD__)
#define HARNESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HARNESS_TSAN 1
#endif
#endif

bool mproc_test_under_tsan(void)
{
#ifdef HARNESS_TSAN
    return true;
#else
    return false;
#endif
}

double mproc_test_time_scale(void)
{
    return mproc_test_under_valgrind() ? 10 : mproc_test_under_tsan() ? 3 : 1;
}

bool mproc_test_no_pidfd(void)
{
    static int known; /* 1 with pidfds, 2 without (asked once: valgrind
                       * warns at each call it does not know) */
    const char *e = getenv("MPROC_NO_PIDFD");
    if (e && e[0] && strcmp(e, "0") != 0)
        return true;
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (!k) { /* two threads asking at once both probe: same answer */
        int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        k = fd < 0 && (errno == ENOSYS || errno == EPERM) ? 2 : 1;
        if (fd >= 0)
            close(fd);
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k == 2;
}

const char *mproc_test_python(const char *version)
{
    static char path[8][512];
    static int used;
    const char *dir = getenv("MPROC_PYTHON_DIR");
    const char *home = getenv("HOME");
    char pat[512];
    if (dir && *dir)
        snprintf(pat, sizeof pat, "%s/%s.*/bin/python", dir, version);
    else
        snprintf(pat, sizeof pat, "%s/.pyenv/versions/%s.*/bin/python",
                 home ? home : "/root", version);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc == 0)
        return NULL;
    char *slot = path[used++ % 8];
    snprintf(slot, sizeof path[0], "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
    return access(slot, X_OK) == 0 ? slot : NULL;
}

/* fd numbers open now, as a bitmap of the first 4096. */
static void fd_snapshot(unsigned char *bits)
{
    memset(bits, 0, 512);
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == self || fd >= 4096)
            continue;
        bits[fd / 8] |= (unsigned char)(1u << (fd % 8));
    }
    closedir(d);
}

#define MAX_SHM 4096
static int shm_snapshot(char names[][64], int max)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(names[n++], 64, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

static char shm_before[MAX_SHM][64], shm_after[MAX_SHM][64];

static void run_case(const mproc_test *t)
{
    unsigned char before[512], after[512];
    current_test = t->name;
    int nshm = shm_snapshot(shm_before, MAX_SHM);
    fd_snapshot(before);
    t->fn();
    mproc_shutdown();
    fflush(NULL);
    /* No child left, zombies included. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        si.si_pid != 0)
        mproc_test_fail(__FILE__, __LINE__, "child %d left behind",
                        (int)si.si_pid);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
        mproc_test_fail(__FILE__, __LINE__, "a running child left behind");
    fd_snapshot(after);
    for (int fd = 0; fd < 4096; fd++) {
        bool b = before[fd / 8] & (1u << (fd % 8));
        bool a = after[fd / 8] & (1u << (fd % 8));
        if (a && !b) {
            char link[256] = "?", path[64];
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ssize_t k = readlink(path, link, sizeof link - 1);
            if (k > 0)
                link[k] = 0;
            mproc_test_fail(__FILE__, __LINE__, "fd %d leaked (%s)", fd, link);
        }
    }
    int nafter = shm_snapshot(shm_after, MAX_SHM);
    for (int i = 0; i < nafter; i++) {
        bool seen = false;
        for (int j = 0; j < nshm && !seen; j++)
            seen = strcmp(shm_after[i], shm_before[j]) == 0;
        if (!seen)
            mproc_test_fail(__FILE__, __LINE__, "/dev/shm/%s left behind",
                            shm_after[i]);
    }
}

static int run_one(const mproc_test *t)
{
    double timeout =
        (t->timeout > 0 ? t->timeout : 30) * mproc_test_time_scale();
    double t0 = mproc_test_now();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        run_case(t);
        fflush(NULL);
        /* The case's process ends with _exit (no atexit, as a child of the
         * library's would): LeakSanitizer is asked here, so a case that
         * leaks fails. */
        if (mproc_test_leak_check())
            mproc_test_fail(__FILE__, __LINE__, "memory leaked (above)");
        mproc_test_exit(0);
    }
    setpgid(pid, pid);
    int status = 0;
    bool timed_out = false;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (mproc_test_now() - t0 > timeout) {
            timed_out = true;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(2000);
    }
    /* Anything still in the case's process group escaped its owner. */
    bool stray = kill(-pid, 0) == 0;
    if (stray) {
        usleep(200000); /* allow processes in their last instructions */
        stray = kill(-pid, 0) == 0;
        kill(-pid, SIGKILL);
    }
    double dt = mproc_test_now() - t0;
    if (timed_out) {
        printf("FAIL %s (timeout after %.1fs)\n", t->name, timeout);
        return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("SKIP %s\n", t->name);
        return 77;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status))
            printf("FAIL %s (killed by signal %d)\n", t->name,
                   WTERMSIG(status));
        else
            printf("FAIL %s (exit %d)\n", t->name, WEXITSTATUS(status));
        return 1;
    }
    if (stray) {
        printf("FAIL %s (processes left in its group)\n", t->name);
        return 1;
    }
    printf("ok   %s (%.2fs)\n", t->name, dt);
    return 0;
}

int mproc_test_main(int argc, char **argv, const mproc_test *tests, size_t n)
{
    mproc_test_main_ran = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "-l") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1]))
            continue;
        int r = run_one(&tests[i]);
        if (r == 0)
            passed++;
        else if (r == 77)
            skipped++;
        else
            failed++;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed)
        return 1;
    /* Nothing ran but skips: the whole program counts as skipped (77, as
     * automake and ctest's SKIP_RETURN_CODE take it). */
    return passed == 0 && skipped > 0 ? 77 : 0;
}

const char *mproc_test_py_script(const char *name)
{
    static char path[1024];
    const char *f = __FILE__;
    const char *slash = strrchr(f, '/');
    int dir = slash ? (int)(slash - f) : 1;
    snprintf(path, sizeof path, "%.*s/py/%s", dir, slash ? f : ".", name);
    if (access(path, R_OK) != 0)
        mproc_test_fail(__FILE__, __LINE__, "cannot find %s", path);
    return path;
}
