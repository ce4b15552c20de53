"""A CPython manager client for test_manager.c.

Usage: manager_peer.py ADDRESS KEYHEX SCENARIO

ADDRESS is mproc's form: "host:port", "[v6]:port", "@abstract" or a path.
Scenarios:
  types     SyncManager.connect, then every type the server has, with
            the values and exceptions a user relies on, and proxies
            stored in objects (nested) with KEYHEX as the authkey; exit 0
            when all hold (an AssertionError exits 1 and says what
            differed)
  registered BaseManager with registered type ids (dict, list)
  blocking  Queue, JoinableQueue, Lock, RLock, Semaphore, BoundedSemaphore,
            Event, Condition, Barrier: values, timeouts, exceptions, and a
            call blocked in one thread while another thread is served
  custom    BaseManager.register('Counter'), ('Tagged'): types registered
            from C on the server (test_manager.c's), their methods, the
            exceptions they raise, method_to_typeid, exposed
  proxyconn a Connection to the C process listening at the 4th argument:
            receives a dict proxy, sets 'py' through it, sends back its
            items and a list proxy [0, 1] of its own, waits for 'got'
  wrongkey  connect with KEYHEX and expect AuthenticationError quickly
  append    appends 0..999 to the list whose ident is the 5th argument
            (shared with a C process appending at the same time)
  serve     a CPython SyncManager server on ADDRESS, with Counter and
            Tagged (as "custom" uses them) registered in Python: prints its
            address (mproc's form) and serves until killed
Runs on CPython 3.6 to 3.13.
"""
import sys
import time
from multiprocessing import AuthenticationError
from multiprocessing.managers import BaseManager, SyncManager, DictProxy
from multiprocessing.managers import ListProxy, RemoteError


def address(a):
    if a.startswith('@'):
        return '\0' + a[1:]
    if a.startswith('[') and ']:' in a:
        host, port = a[1:].rsplit(']:', 1)
        return (host, int(port))
    if ':' in a and not a.startswith('/'):
        host, port = a.rsplit(':', 1)
        return (host, int(port))
    return a


def check(got, want):
    if got != want:
        raise AssertionError('%r != %r' % (got, want))


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError('%s not raised' % exc.__name__)


def types(addr, key):
    m = SyncManager(address=addr, authkey=key)
    m.connect()
    d = m.dict()
    d[1] = 1
    check(str(d), '{1: 1}')
    big = 2 ** 200 + 7
    d['\u00e9t\u00e9 \U0001f600'] = b'\x00\xffbytes'
    d[big] = [1, 2.5, None, (True, -big)]
    check(len(d), 3)
    check(d[big], [1, 2.5, None, (True, -big)])
    check(d['\u00e9t\u00e9 \U0001f600'], b'\x00\xffbytes')
    check(big in d, True)
    check(d.get('missing', 'dflt'), 'dflt')
    check(d.setdefault('s', 5), 5)
    check(d.pop('s'), 5)
    check(list(d.keys()), [1, '\u00e9t\u00e9 \U0001f600', big])
    check([k for k in d], [1, '\u00e9t\u00e9 \U0001f600', big])
    e = raises(KeyError, lambda: d['nope'])
    check(e.args, ('nope',))
    e = raises(TypeError, d.__setitem__, [1], 2)
    check(str(e), "unhashable type: 'list'")
    d.update({'x': 1}, y=2)
    check(d.copy(), {1: 1, '\u00e9t\u00e9 \U0001f600': b'\x00\xffbytes',
                     big: [1, 2.5, None, (True, -big)], 'x': 1, 'y': 2})
    check(d.popitem(), ('y', 2))
    d.clear()
    check(len(d), 0)
    e = raises(KeyError, d.popitem)

    l = m.list(list(range(10)))
    l.reverse()
    check(str(l), '[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]')
    l.append('z')
    check(l[-1], 'z')
    l.remove('z')
    l.sort()
    check(l._getvalue(), list(range(10)))
    l.insert(0, -1)
    check(l.pop(0), -1)
    check(l.index(3), 3)
    check(l.count(3), 1)
    l.extend([1, 1])
    check(l.count(1), 3)
    l += [7]
    check(len(l), 13)
    del l[12]
    l[0] = 'zero'
    check(l[0], 'zero')
    e = raises(IndexError, lambda: l[100])
    check(str(e), 'list index out of range')
    e = raises(ValueError, l.remove, 'absent')
    e = raises(TypeError, l.sort)  # 'zero' against ints

    # range and slices, as Python's lists take them
    r = m.list(range(10))
    check(r._getvalue(), list(range(10)))
    r.extend(range(10, 4, -3))
    check(r[10:], [10, 7])
    check(r[0:2], [0, 1])
    check(r[::-4], [7, 7, 3])
    check(r[-3:100], [9, 10, 7])
    check(r[5:2], [])
    del r[10:]
    del r[::2]
    check(r[:], [1, 3, 5, 7, 9])
    r[1:3] = range(3)
    check(r[:], [1, 0, 1, 2, 7, 9])
    r[::2] = ['a', 'b', 'c']
    check(r[:], ['a', 0, 'b', 2, 'c', 9])
    e = raises(ValueError, r.__setitem__, slice(None, None, 2), [1])
    check(str(e), 'attempt to assign sequence of size 1 to extended slice '
                  'of size 3')
    e = raises(ValueError, lambda: r[::0])
    raises(RemoteError, m.list, range(2 ** 70, 2 ** 70 + 2))  # as CPython

    ns = m.Namespace(a=1)
    ns.b = 'x'
    check(ns.a, 1)
    check(ns.b, 'x')
    check(str(ns), "Namespace(a=1, b='x')")
    raises(AttributeError, lambda: ns.c)
    del ns.a
    raises(AttributeError, lambda: ns.a)

    v = m.Value('i', 3)
    v.value += 4
    check(v.value, 7)
    check(str(v), "Value('i', 7)")

    a = m.Array('i', list(range(10)))
    for i in range(len(a)):
        a[i] = a[i] * a[i]
    check(str(a._getvalue()), 'array(\'i\', [0, 1, 4, 9, 16, 25, 36, 49, '
                              '64, 81])')
    raises(IndexError, lambda: a[10])
    check(str(a[:3]), "array('i', [0, 1, 4])")
    check(list(a[::-3]), [81, 36, 9, 0])
    check(list(m.Array('i', range(3))[:]), [0, 1, 2])
    raises(OverflowError, a.__setitem__, 0, 2 ** 40)
    fa = m.Array('d', [0.5, 1.5])
    check(list(fa._getvalue()), [0.5, 1.5])
    nested(m)
    print('ok')


def nested(m):
    """Proxies stored in objects, with the manager's own key (CPython's
    server fails here: its proxies come back without the key)."""
    before = m._number_of_objects()
    outer = m.list()
    inner = m.dict({'a': 1})
    outer.append(inner)
    got = outer[0]
    check(got['a'], 1)
    got['b'] = 2
    check(inner.copy(), {'a': 1, 'b': 2})
    del got, inner    # no client holds the dict now: stored, it stays
    check(m._number_of_objects(), before + 2)
    check(outer[0]['b'], 2)
    outer.pop()
    check(len(outer), 0)
    check(m._number_of_objects(), before + 1)
    lst = m.list([m.dict(x=1)])
    check(lst[0]['x'], 1)
    ns = m.Namespace()
    ns.d = m.dict(y=2)
    check(ns.d['y'], 2)
    del lst, ns
    check(m._number_of_objects(), before + 1)
    del outer
    check(m._number_of_objects(), before)


def registered(addr, key):
    class M(BaseManager):
        pass
    M.register('dict', proxytype=DictProxy)
    M.register('list', proxytype=ListProxy)
    m = M(address=addr, authkey=key)
    m.connect()
    d = m.dict({'a': 1})
    l = m.list([1, 2])
    d['b'] = 2
    l.append(3)
    check(d.copy(), {'a': 1, 'b': 2})
    check(l._getvalue(), [1, 2, 3])
    print('ok')


def custom_manager():
    class M(BaseManager):
        pass
    M.register('Counter')
    M.register('Tagged')
    M.register('dict', proxytype=DictProxy)
    return M


def custom(addr, key):
    m = custom_manager()(address=addr, authkey=key)
    m.connect()
    c = m.Counter(5)
    check(c.increment(), 6)
    check(c.increment(10), 16)
    check(c.get(), 16)
    check(str(c), 'Counter(16)')
    e = raises(ValueError, c.fail, 'bad \u00e9')
    check(str(e), 'bad \u00e9')
    e = raises(RuntimeError, c.boom)
    check('EIO' in str(e), True)
    child = c.child()            # method_to_typeid: a Counter proxy
    check(child.get(), 16)
    child.increment()
    check((child.get(), c.get()), (17, 16))
    d = c.as_dict()              # method_to_typeid: a dict proxy
    check(d.copy(), {'value': 16})
    check(type(d).__name__, 'DictProxy')
    raises(RemoteError, c._callmethod, '_hidden')   # not exposed
    check(m.Counter(start=3).get(), 3)
    e = raises(RemoteError, m.Counter, -1)
    check('ValueError' in str(e), True)
    t = m.Tagged()
    check(t.get(), 'tag')
    raises(RemoteError, t._callmethod, 'secret')    # not in its exposed
    del c, child, d, t
    print('ok')


class Counter(object):
    def __init__(self, start=0):
        if start < 0:
            raise ValueError('start must be >= 0')
        self.value = start

    def increment(self, n=1):
        self.value += n
        return self.value

    def get(self):
        return self.value

    def fail(self, msg):
        raise ValueError(msg)

    def boom(self, raise_int=False):
        if raise_int:
            raise 1
        raise RuntimeError('EIO: Input/output error')

    def child(self):
        return self.value

    def as_dict(self):
        return {'value': self.value}

    def _hidden(self):
        return 0

    def __repr__(self):
        return 'Counter(%d)' % self.value


class Tagged(object):
    def get(self):
        return 'tag'

    def secret(self):
        return 'secret'


def blocking(addr, key):
    import queue
    import threading
    m = SyncManager(address=addr, authkey=key)
    m.connect()
    q = m.Queue()
    q.put('\u00e9')
    check(q.qsize(), 1)
    check(q.get(), '\u00e9')
    t0 = time.time()
    raises(queue.Empty, q.get, True, 0.2)
    check(time.time() - t0 >= 0.19, True)
    raises(queue.Empty, q.get_nowait)
    got = []
    th = threading.Thread(target=lambda: got.append(q.get()))
    th.start()
    time.sleep(0.2)   # the thread's get waits on the server meanwhile
    check(q.empty(), True)
    q.put(2 ** 80)
    th.join(10)
    check(got, [2 ** 80])
    q1 = m.Queue(1)
    q1.put(1)
    check(q1.full(), True)
    raises(queue.Full, q1.put, 2, True, 0.1)
    raises(queue.Full, q1.put_nowait, 2)
    jq = m.JoinableQueue()
    jq.put(1)
    jq.get()
    jq.task_done()
    jq.join()
    raises(ValueError, jq.task_done)

    lock = m.Lock()
    check(lock.acquire(), True)
    check(lock.acquire(timeout=0.1), False)
    check(lock.acquire(False), False)
    lock.release()
    raises(RuntimeError, lock.release)
    with lock:
        pass
    rl = m.RLock()
    rl.acquire()
    rl.acquire()
    rl.release()
    rl.release()
    raises(RuntimeError, rl.release)
    sem = m.Semaphore(2)
    sem.acquire()
    sem.acquire()
    check(sem.acquire(False), False)
    sem.release()
    bs = m.BoundedSemaphore(1)
    raises(ValueError, bs.release)
    ev = m.Event()
    check(ev.is_set(), False)
    check(ev.wait(0.1), False)
    threading.Timer(0.2, ev.set).start()
    check(ev.wait(10), True)
    check(ev.is_set(), True)
    condition(m)
    barrier(m)
    print('ok')


def until(fn):
    """Waits (bounded) until fn() is true."""
    t0 = time.time()
    while not fn():
        if time.time() - t0 > 20:
            raise AssertionError('never came true')
        time.sleep(0.01)


def condition(m):
    import threading
    c = m.Condition()
    check(c.acquire(), True)
    check(c.wait(0.05), False)   # timed out, and holds the lock again
    c.release()
    raises(RuntimeError, c.release)
    raises(RuntimeError, c.wait, 1)
    raises(RuntimeError, c.notify)
    items = m.list()
    got = []

    def consumer():
        with c:    # the lock is held again when wait_for returns
            got.append(c.wait_for(lambda: len(items) > 0, 20))
            got.append(items.pop())
    ths = [threading.Thread(target=consumer) for _ in range(2)]
    for th in ths:
        th.start()
    for k in range(2):
        with c:
            items.append(k)
            c.notify()
        until(lambda: len(got) == 2 * (k + 1) or len(items) == 0)
    with c:
        c.notify_all()
    for th in ths:
        th.join(20)
    check(sorted(got, key=repr), [0, 1, True, True])


def barrier(m):
    import threading
    b = m.Barrier(3)
    check((b.parties, b.n_waiting, b.broken), (3, 0, False))
    out = []

    def party():
        try:
            out.append(b.wait(20))
        except threading.BrokenBarrierError:
            out.append('broken')
    ths = [threading.Thread(target=party) for _ in range(2)]
    for th in ths:
        th.start()
    until(lambda: b.n_waiting == 2)
    me = b.wait()
    for th in ths:
        th.join(20)
    check(sorted(out + [me]), [0, 1, 2])
    check(b.n_waiting, 0)
    # a wait that times out breaks the barrier, for everyone after too
    raises(threading.BrokenBarrierError, b.wait, 0.05)
    check(b.broken, True)
    raises(threading.BrokenBarrierError, b.wait)
    b.reset()
    check(b.broken, False)
    # abort: a waiting party gets BrokenBarrierError
    del out[:]
    th = threading.Thread(target=party)
    th.start()
    until(lambda: b.n_waiting == 1)
    b.abort()
    th.join(20)
    check(out, ['broken'])
    raises(AttributeError, lambda: b._callmethod('__getattribute__', ('x',)))


def append(addr, key):
    from multiprocessing.managers import Token
    m = SyncManager(address=addr, authkey=key)
    m.connect()
    tok = Token('list', addr, sys.argv[4])
    l = ListProxy(tok, 'pickle', manager=m, authkey=key, incref=False)
    for i in range(1000):
        l.append(i)
    print('ok')


def proxyconn(addr, key):
    # a Connection to the C process at the 5th argument: receives a dict
    # proxy, uses it, answers what it saw, sends a list proxy of its own
    import multiprocessing
    from multiprocessing.connection import Client
    multiprocessing.current_process().authkey = key
    c = Client(address(sys.argv[4]), authkey=key)
    d = c.recv()
    check(type(d).__name__, 'DictProxy')
    d['py'] = len(d)
    c.send(sorted(d.items()))
    m = SyncManager(address=addr, authkey=key)
    m.connect()
    l = m.list([0, 1])
    c.send(l)
    check(c.recv(), 'got')
    c.close()
    print('ok')


def wrongkey(addr, key):
    m = SyncManager(address=addr, authkey=key)
    t0 = time.time()
    raises(AuthenticationError, m.connect)
    check(time.time() - t0 < 5, True)
    print('ok')


def serve_manager(m):
    server = m.get_server()
    a = server.address
    print('%s:%d' % a if isinstance(a, tuple) else a)
    sys.stdout.flush()
    server.serve_forever()


def serve(addr, key):
    class M(SyncManager):
        pass
    M.register('Counter', Counter,
               method_to_typeid={'child': 'Counter', 'as_dict': 'dict'})
    M.register('Tagged', Tagged, exposed=('get',))
    serve_manager(M(address=addr, authkey=key))


def main():
    addr = address(sys.argv[1])
    key = bytes(bytearray.fromhex(sys.argv[2]))
    {'types': types, 'registered': registered,
     'wrongkey': wrongkey, 'serve': serve, 'blocking': blocking,
     'append': append, 'custom': custom, 'proxyconn': proxyconn}[sys.argv[3]](addr, key)
    sys.stdout.flush()


if __name__ == '__main__':
    main()
