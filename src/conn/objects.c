/*
 * conn/objects.c - Python objects over a connection, as CPython's
 * Connection.send(obj) and recv() carry them: one framed message holding
 * the object's pickle (mproc_obj and the codec of src/obj). A C program
 * and a Python program at the two ends of a Pipe, a Listener/Client pair
 * or a socket exchange dicts, lists, ints of any size, strings and
 * exceptions; nothing in a received pickle runs code.
 */
#include "conn/conn_impl.h"

#include <stdlib.h>

int mproc_conn_set_pickle_protocol(mproc_conn *c, int protocol)
{
    if (!c)
        return -EINVAL;
    if (protocol == -1)
        protocol = MPROC_PICKLE_HIGHEST_PROTOCOL;
    if (protocol < 2 || protocol > MPROC_PICKLE_HIGHEST_PROTOCOL)
        return -EINVAL;
    __atomic_store_n(&c->pickle_protocol, protocol, __ATOMIC_RELAXED);
    return 0;
}

int mproc_conn_pickle_protocol(const mproc_conn *c)
{
    if (!c)
        return -EINVAL;
    int p = __atomic_load_n(&c->pickle_protocol, __ATOMIC_RELAXED);
    return p ? p : MPROC_PICKLE_DEFAULT_PROTOCOL;
}

int mproc_conn_send_obj(mproc_conn *c, const mproc_obj *o)
{
    if (!c || !o)
        return -EINVAL;
    void *buf;
    size_t n;
    int r = mproc_pickle_dumps(o, mproc_conn_pickle_protocol(c), &buf, &n);
    if (r < 0)
        return r;
    r = mproc_conn_send_bytes(c, buf, n);
    free(buf);
    return r;
}

int mproc_conn_recv_obj(mproc_conn *c, mproc_obj **out, double timeout,
                        char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = 0;
    if (!c || !out)
        return -EINVAL;
    *out = NULL;
    void *buf;
    size_t n;
    int r = mproc_conn_recv_bytes(c, &buf, &n, 0, timeout);
    if (r < 0)
        return r;
    r = mproc_pickle_loads(buf, n, NULL, out, err, errcap);
    free(buf);
    return r;
}
