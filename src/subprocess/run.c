/*
 * subprocess/run.c - subprocess.run and its shortcuts call, check_call and
 * check_output: start, feed, capture or stream, wait, all within one
 * deadline. A run that fails after the start (a timeout, a sink's error)
 * kills the child, or its whole process group when asked, and reaps it
 * without waiting for pipes that a grandchild may hold open for ever
 * (CPython gh-75628).
 */
#include "subprocess/subprocess_impl.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

void mproc_completed_free(mproc_completed *c)
{
    if (!c)
        return;
    free(c->out);
    free(c->err);
    memset(c, 0, sizeof *c);
    c->returncode = MPROC_RETURNCODE_NONE;
    c->step = "";
}

/* Kills what a failed run leaves and reaps the child. */
static void kill_and_reap(mproc_popen *p, bool group)
{
    if (group)
        mproc_popen_kill_group(p, SIGKILL);
    mproc_popen_kill(p);
    mproc__deadline never = mproc__deadline_from(-1);
    mproc__sp_reap(p, &never);
}

int mproc_run(mproc_completed *res, const char *const *argv,
              const mproc_run_opts *opts, double timeout)
{
    static const mproc_run_opts defaults;
    if (!res)
        return -EINVAL;
    memset(res, 0, sizeof *res);
    res->returncode = MPROC_RETURNCODE_NONE;
    res->step = "";
    if (!opts)
        opts = &defaults;
    mproc_popen_opts po = opts->popen;
    if (opts->input && opts->popen.in.kind != MPROC_STDIO_INHERIT)
        return -EINVAL; /* as Python: input and stdin are exclusive */
    if (opts->input)
        po.in = (mproc_stdio){MPROC_STDIO_PIPE, -1, NULL, false};
    mproc__sp_dest dest[2] = {{MPROC__SP_DROP, NULL}, {MPROC__SP_DROP, NULL}};
    const mproc_sink *sinks[2] = {opts->out_sink, opts->err_sink};
    mproc_stdio *slot[2] = {&po.out, &po.err};
    for (int i = 0; i < 2; i++) {
        bool merged = i == 1 && po.err.kind == MPROC_STDIO_STDOUT;
        if (sinks[i] && !merged) {
            *slot[i] = (mproc_stdio){MPROC_STDIO_PIPE, -1, NULL, false};
            dest[i] = (mproc__sp_dest){MPROC__SP_SINK, sinks[i]};
        } else if (opts->capture_output && !merged) {
            *slot[i] = (mproc_stdio){MPROC_STDIO_PIPE, -1, NULL, false};
            dest[i].mode = MPROC__SP_CAPTURE;
        } else if (slot[i]->kind == MPROC_STDIO_PIPE) {
            dest[i].mode = MPROC__SP_CAPTURE;
        }
    }
    bool group = opts->kill_group;
    if (group && !po.start_new_session && !po.set_pgid) {
        po.set_pgid = true;
        po.pgid = 0;
    }
    mproc_popen *p;
    int r = mproc_popen_new(&p, argv, &po, &res->step);
    if (r < 0)
        return r;
    res->pid = p->pid;
    group = group && p->group_leader;
    mproc__deadline d = mproc__deadline_from(timeout);
    r = mproc__sp_finish(p, opts->input, opts->input_len, dest, &d);
    if (r < 0)
        kill_and_reap(p, group);
    res->returncode = p->returncode;
    int t = 0;
    if (dest[0].mode == MPROC__SP_CAPTURE)
        t = mproc__sp_take(p, 0, true, &res->out, &res->out_len);
    if (t == 0 && dest[1].mode == MPROC__SP_CAPTURE)
        t = mproc__sp_take(p, 1, true, &res->err, &res->err_len);
    mproc_popen_free(p);
    if (r >= 0 && t < 0)
        r = t;
    if (r >= 0)
        r = opts->check && res->returncode != 0 ? MPROC_ECALLEDPROCESS : 0;
    return r;
}

/* call and check_call: run without pipes, the return code out. */
static int call(const char *const *argv, const mproc_popen_opts *opts,
                double timeout, int *returncode)
{
    mproc_run_opts o;
    memset(&o, 0, sizeof o);
    if (opts)
        o.popen = *opts;
    mproc_completed res;
    int r = mproc_run(&res, argv, &o, timeout);
    if (r >= 0 && returncode)
        *returncode = res.returncode;
    mproc_completed_free(&res);
    return r;
}

int mproc_call(const char *const *argv, const mproc_popen_opts *opts,
               double timeout, int *returncode)
{
    if (!returncode)
        return -EINVAL;
    return call(argv, opts, timeout, returncode);
}

int mproc_check_call(const char *const *argv, const mproc_popen_opts *opts,
                     double timeout, int *returncode)
{
    int rc = 0;
    int r = call(argv, opts, timeout, &rc);
    if (returncode)
        *returncode = rc;
    if (r == 0 && rc != 0)
        r = MPROC_ECALLEDPROCESS;
    return r;
}

int mproc_check_output(const char *const *argv, const mproc_popen_opts *opts,
                       double timeout, char **out, size_t *len)
{
    if (!out || !len)
        return -EINVAL;
    *out = NULL;
    *len = 0;
    mproc_run_opts o;
    memset(&o, 0, sizeof o);
    if (opts)
        o.popen = *opts;
    o.popen.out = (mproc_stdio){MPROC_STDIO_PIPE, -1, NULL, false};
    o.check = true;
    mproc_completed res;
    int r = mproc_run(&res, argv, &o, timeout);
    if (r == 0 || r == MPROC_ECALLEDPROCESS) {
        *out = res.out;
        *len = res.out_len;
        res.out = NULL;
    }
    mproc_completed_free(&res);
    return r;
}
