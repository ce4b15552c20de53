"""conn_peer.py - a CPython peer for tests/test_interop.c.

Usage: python conn_peer.py ROLE ADDRESS KEY SCENARIO
  ROLE      listen | connect | fd (ADDRESS is the number of an inherited
            fd of one end of a Pipe(); KEY is not used)
  ADDRESS   listen: "tcp" (127.0.0.1, any port), "abstract", or a path;
            connect: an mproc address string ("@name", "host:port", "/path")
  KEY       hex bytes, "-" for no authkey (None), "empty" for b''
  SCENARIO  echo     send every message back until EOF, then exit 0
            bye      send b'bye' and close
            waiteof  expect EOF as the first thing read
            objects  for each object received with recv(): send its repr
                     (send_bytes) and the object back (send); after
                     b'your turn', send each of PY_OBJECTS and its repr,
                     then b'done' and wait for EOF
            handle   recv_handle an fd, send back what it reads, then
                     send_handle the read end of a pipe holding
                     b'from Python', and wait for EOF
A listener prints its address (in mproc's string form) on stdout first.
Exit codes: 0 ok, 3 AuthenticationError, 5 EOFError (peer hung up),
4 anything else (with a traceback on stderr).
Runs on CPython 3.6 and later; only the objects scenario uses send() and
recv() (pickles).
"""
import os
import sys
import traceback
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener


def parse(addr):
    if addr.startswith('@'):
        return '\0' + addr[1:]
    if ':' in addr and '/' not in addr:
        host, port = addr.rsplit(':', 1)
        return (host, int(port))
    return addr


def fmt(addr):
    if isinstance(addr, tuple):
        return '%s:%d' % addr[:2]
    if isinstance(addr, bytes):
        addr = addr.decode()
    if addr.startswith('\0'):
        return '@' + addr[1:]
    return addr


# What Python sends in the objects scenario: every type mproc models, big
# ints both ways, non-ASCII text, an exception with its args.
PY_OBJECTS = [
    {1: 1},
    [0, 1, 4, 9],
    2 ** 70,
    -2 ** 200,
    u'\xe9t\xe9 \u20ac \U0001f600',
    b'howdy',
    bytearray(b'\x00\xff'),
    (1,),
    (),
    {'a': [1, 2.5, None, True, False], 'b': (b'x', -1.5e-300), 3: {}},
    frozenset([7]),
    {u'k\xe9y'},
    ValueError('bad value', 42),
    KeyError('missing'),
    [[[[]]]],
    float('inf'),
]


def run(conn, scenario):
    if scenario == 'objects':
        while True:
            m = conn.recv()
            if m == b'your turn':
                break
            conn.send_bytes(repr(m).encode('utf-8'))
            conn.send(m)
        for o in PY_OBJECTS:
            conn.send(o)
            conn.send_bytes(repr(o).encode('utf-8'))
        conn.send(b'done')
        try:
            conn.recv_bytes()
        except EOFError:
            return 0
        return 1
    if scenario == 'echo':
        while True:
            try:
                m = conn.recv_bytes()
            except EOFError:
                return 0
            conn.send_bytes(m)
    if scenario == 'bye':
        conn.send_bytes(b'bye')
        conn.close()
        return 0
    if scenario == 'handle':
        from multiprocessing import reduction
        fd = reduction.recv_handle(conn)
        data = os.pread(fd, 100, 0)
        os.close(fd)
        conn.send_bytes(data)
        r, w = os.pipe()
        os.write(w, b'from Python')
        os.close(w)
        reduction.send_handle(conn, r, os.getpid())
        os.close(r)
        try:
            conn.recv_bytes()
        except EOFError:
            return 0
        return 1
    if scenario == 'waiteof':
        try:
            conn.recv_bytes()
        except EOFError:
            return 0
        return 1
    raise ValueError(scenario)


def main():
    role, addr, key, scenario = sys.argv[1:5]
    key = None if key == '-' else b'' if key == 'empty' else bytes.fromhex(key)
    try:
        if role == 'listen':
            if addr == 'tcp':
                where = ('127.0.0.1', 0)
            elif addr == 'abstract':
                where = '\0mproc-py-%d' % os.getpid()
            else:
                where = addr
            lst = Listener(where, authkey=key)
            sys.stdout.write(fmt(lst.address) + '\n')
            sys.stdout.flush()
            try:
                conn = lst.accept()
            finally:
                try:
                    lst.close()
                except ValueError:
                    pass  # 3.6 tries to unlink an abstract name
        elif role == 'fd':
            from multiprocessing.connection import Connection
            conn = Connection(int(addr))
        else:
            conn = Client(parse(addr), authkey=key)
        return run(conn, scenario)
    except AuthenticationError:
        return 3
    except EOFError:
        return 5
    except Exception:
        traceback.print_exc()
        return 4


if __name__ == '__main__':
    sys.exit(main())
