/*
 * core/self.c - who this process is: its name, identity and authkey
 * (mproc__me), the default start method, the library lock that process
 * bookkeeping takes (and that a fork child gets fresh), and the shutdown
 * hooks that modules above the process layer register for
 * mproc_shutdown().
 */
#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

mproc__self mproc__me;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int g_default_method = MPROC_START_FORK;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

void mproc__lock(void)
{
    pthread_mutex_lock(&g_lock);
}

void mproc__unlock(void)
{
    pthread_mutex_unlock(&g_lock);
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void)
{
    /* The forking thread took it in prepare: no other thread of the
     * parent holds it, and this one lets it go (as ThreadSanitizer, which
     * does not take a re-initialization for a release, can follow). */
    pthread_mutex_unlock(&g_lock);
    mproc__me.pid = getpid();
}

static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

static void fork_hooks(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void mproc__atfork_register(void)
{
    pthread_once(&g_fork_once, fork_hooks);
}

static void self_init_once(void)
{
    if (mproc__me.name[0] == 0)
        snprintf(mproc__me.name, sizeof mproc__me.name, "MainProcess");
    if (mproc__me.authkey_len == 0) {
        if (mproc__random(mproc__me.authkey, 32) == 0)
            mproc__me.authkey_len = 32;
    }
    mproc__me.pid = getpid();
    mproc__atfork_register();
}

void mproc__self_init(void)
{
    pthread_once(&g_once, self_init_once);
}

int mproc_set_current_name(const char *name)
{
    if (!name || !name[0])
        return -EINVAL;
    mproc__self_init();
    snprintf(mproc__me.name, sizeof mproc__me.name, "%s", name);
    return 0;
}

/* ---- authkey and start methods ---------------------------------------- */

int mproc_authkey(void *buf, size_t cap)
{
    mproc__self_init();
    if (!buf && cap)
        return -EINVAL;
    size_t n = mproc__me.authkey_len < cap ? mproc__me.authkey_len : cap;
    if (n)
        memcpy(buf, mproc__me.authkey, n);
    return (int)mproc__me.authkey_len;
}

int mproc_set_authkey(const void *key, size_t len)
{
    if (!key || len == 0 || len > MPROC__AUTHKEY_MAX)
        return -EINVAL;
    mproc__self_init();
    memcpy(mproc__me.authkey, key, len);
    mproc__me.authkey_len = len;
    return 0;
}

int mproc_set_start_method(mproc_start_method m)
{
    if (m < MPROC_START_FORK || m > MPROC_START_FORKSERVER)
        return -EINVAL;
    atomic_store(&g_default_method, (int)m);
    return 0;
}

mproc_start_method mproc_get_start_method(void)
{
    return (mproc_start_method)atomic_load(&g_default_method);
}

const char *mproc_start_method_name(mproc_start_method m)
{
    switch (m) {
    case MPROC_START_FORK:
        return "fork";
    case MPROC_START_SPAWN:
        return "spawn";
    case MPROC_START_FORKSERVER:
        return "forkserver";
    default:
        return NULL;
    }
}

int mproc_start_method_parse(const char *name, mproc_start_method *out)
{
    if (!name || !out)
        return -EINVAL;
    for (int m = MPROC_START_FORK; m <= MPROC_START_FORKSERVER; m++)
        if (strcmp(name, mproc_start_method_name((mproc_start_method)m)) == 0) {
            *out = (mproc_start_method)m;
            return 0;
        }
    return -EINVAL;
}

/* ---- shutdown hooks ----------------------------------------------------- */

static void (*g_hooks[8])(void);
static size_t g_nhooks;

int mproc__at_shutdown(void (*fn)(void))
{
    int r = 0;
    mproc__lock();
    bool have = false;
    for (size_t i = 0; i < g_nhooks; i++)
        have |= g_hooks[i] == fn;
    if (!have) {
        if (g_nhooks < MPROC__ARRAY_LEN(g_hooks))
            g_hooks[g_nhooks++] = fn;
        else
            r = -ENOSPC;
    }
    mproc__unlock();
    return r;
}

void mproc__run_shutdown_hooks(void)
{
    void (*v[MPROC__ARRAY_LEN(g_hooks)])(void);
    mproc__lock();
    size_t n = g_nhooks;
    memcpy(v, g_hooks, n * sizeof v[0]);
    mproc__unlock();
    while (n > 0)
        v[--n]();
}
