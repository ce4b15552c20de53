/*
 * entry_prog.c - a program that starts one child under each start method
 * and checks its exit code; built three ways by tests/CMakeLists.txt:
 *   entry_static_guarded  -static, main() begins with mproc_main()
 *   entry_static_plain    -static, no guard (libmproc's constructor boots)
 *   entry_dynamic_guarded linked with libmproc.so, with mproc_main()
 * A guarded child must boot where main() would run, after every
 * constructor: the target's exit code carries a value a constructor of
 * this program set. Exits 0 on success, 1 on any failure.
 */
#include <mproc.h>

#include <stdio.h>
#include <string.h>

static int g_ctor_ran;

__attribute__((constructor(65535))) static void late_constructor(void)
{
    g_ctor_ran = 1;
}

static int target(const mproc_args *a)
{
    /* In the child: 10 + method, plus 100 when the constructor had run. */
    return (int)mproc_args_int(a, 0) + (g_ctor_ran ? 100 : 0);
}

int main(int argc, char **argv)
{
#ifdef ENTRY_GUARDED
    if (mproc_main(argc, argv) != 0)
        return 1;
#endif
    (void)argc;
    (void)argv;
    int fails = 0;
    for (int m = MPROC_START_FORK; m <= MPROC_START_FORKSERVER; m++) {
        mproc_process *p = NULL;
        mproc_args *a = mproc_args_of("i", 10 + m);
        int r = mproc_process_new(&p, target, a);
        if (r == 0)
            r = mproc_process_set_start_method(p, (mproc_start_method)m);
        if (r == 0)
            r = mproc_process_start(p);
        if (r == 0)
            r = mproc_process_join(p, 20);
        int code = r == 0 ? mproc_process_exitcode(p) : r;
        int want = 10 + m;
#ifdef ENTRY_GUARDED
        want += 100; /* the child booted after every constructor */
#else
        if (m != MPROC_START_FORK && code == want + 100)
            want += 100; /* the constructor may or may not have run first */
#endif
        if (m == MPROC_START_FORK && code == 10 + m + 100)
            want = code; /* fork: the parent's state, constructor included */
        printf("%-10s exit code %d (want %d)\n",
               mproc_start_method_name((mproc_start_method)m), code, want);
        fails += code != want;
        mproc_process_free(p);
        mproc_args_free(a);
    }
    mproc_shutdown();
    return fails ? 1 : 0;
}
