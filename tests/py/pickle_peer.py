"""The Python side of test_obj's property test, for Python 2.7 and 3.6+.

  pickle_peer.py gen SEED N PROTO      N random values from SEED, each
      written to stdout as: u32 length, pickle.dumps(value, PROTO),
      u32 length, repr(value) in UTF-8 (lengths little-endian; an empty
      repr for values holding an array or a Token, which mproc prints as
      their class and args).
  pickle_peer.py check SEED N PROTO FILE   reads FILE (u32 length, pickle,
      as mproc wrote them back), unpickles each and compares it with the
      same N values made again from SEED: equal, and of the same types.
      Exit 0 when all are, else 1 with the first difference on stdout.
  pickle_peer.py shared PROTO   (3.6+) the values of test_obj's
      shared_cpython case, whose parts are shared or which contain
      themselves through a tuple, each written as: u32 length,
      pickle.dumps(value, PROTO) as pickletools.optimize() leaves it
      (only the PUTs that a GET uses, numbered in order) without its
      FRAME opcodes: what mproc writes for the same value.
"""
import math
import pickle
import random
import struct
import warnings
import sys

PY2 = sys.version_info[0] == 2
warnings.simplefilter("ignore")  # Python 2 comparing str and unicode
if PY2:
    text_type, chr_, int_types = unicode, unichr, (int, long)  # noqa: F821
else:
    text_type, chr_, int_types = str, chr, (int,)
    import array
    import multiprocessing.managers

EXCEPTIONS = [ValueError, KeyError, RuntimeError, TypeError, Exception,
              ZeroDivisionError, IndexError]


def rand_int(r):
    k = r.randrange(7)
    if k == 0:
        return r.randrange(-5, 300)
    if k == 1:
        return r.randrange(-2 ** 31, 2 ** 31)
    if k == 2:
        return r.choice([2 ** 31, -2 ** 31 - 1, 2 ** 63 - 1, -2 ** 63, 2 ** 63,
                         -2 ** 63 - 1, 2 ** 64, 255, 256, 65535, 65536, -1, 0,
                         2 ** 70, -2 ** 200, 2 ** 2039, -2 ** 2039])
    if k == 3:
        return r.randrange(-2 ** 64, 2 ** 64)
    if k == 4:
        n = r.randrange(1, 2100)
        return r.randrange(-2 ** n, 2 ** n)
    return r.randrange(-70000, 70000)


def rand_float(r):
    k = r.randrange(5)
    if k == 0:
        x = r.choice([0.0, -0.0, float('inf'), float('-inf'), 1e16, 1e-5,
                      5e-324, 1.7976931348623157e308, 0.1, 1e15, 1e-4,
                      2.0 ** 70, -2.0 ** 64, 1.0, 2.5])
    elif k == 1:
        x = struct.unpack('<d', struct.pack('<Q', r.getrandbits(64)))[0]
    elif k == 2:
        x = r.uniform(-1e6, 1e6)
    elif k == 3:
        x = float(r.randrange(-10 ** 6, 10 ** 6)) / r.choice([1, 10, 100, 7])
    else:
        x = r.random() * 10 ** r.randrange(-30, 30)
    return 1.5 if x != x else x  # no NaN: it equals nothing


def rand_text(r):
    n = r.randrange(0, 12) if r.random() < 0.95 else r.randrange(200, 400)
    out = []
    for _ in range(n):
        k = r.randrange(10)
        if k < 5:
            c = r.randrange(0x20, 0x7f)
        elif k == 5:
            c = r.randrange(0, 0x20) or 0x7f
        elif k == 6:
            c = r.randrange(0x80, 0x800)
        elif k == 7:
            c = r.randrange(0x800, 0x10000)
        elif k == 8:
            c = r.randrange(0x10000, 0x110000)
        else:
            c = r.choice([0x27, 0x22, 0x5c, 0xd800, 0xdfff, 0xa0, 0xad,
                          0x2028, 0xfeff, 0x10ffff, 0x0a, 0x0d])
        if PY2 and 0xd800 <= c <= 0xdfff:
            c = 0xe000  # Python 2's UTF-8 joins surrogate pairs
        out.append(chr_(c))
    return u''.join(out)


def rand_bytes(r):
    k = r.random()
    n = r.randrange(0, 20) if k < 0.9 else (
        r.randrange(250, 600) if k < 0.995 else 70000)
    return bytes(bytearray(r.getrandbits(8) for _ in range(n)))


def rand_key(r, depth):
    k = r.randrange(10)
    if k == 0:
        return None
    if k == 1:
        return r.random() < 0.5
    if k == 2:
        return rand_int(r)
    if k == 3:
        return rand_float(r)
    if k in (4, 5):
        return rand_text(r)
    if k == 6:
        return rand_bytes(r)
    if k == 7 and depth < 3:
        return tuple(rand_key(r, depth + 1) for _ in range(r.randrange(5)))
    if k == 8 and depth < 3:
        return frozenset(rand_key(r, depth + 1) for _ in range(r.randrange(5)))
    return rand_text(r)


def rand_value(r, depth=0):
    k = r.randrange(16 if depth < 4 else 8)
    if k < 6:
        return rand_key(r, depth)
    if k == 6:
        return bytearray(rand_bytes(r))
    if k == 7:
        return rand_text(r)
    n = r.randrange(6)
    if depth == 0 and r.random() < 0.05:
        n = r.randrange(1000, 2600)  # past the batches of 1000
        if k in (8, 10, 11):
            depth = 4  # of scalars

    if k == 8:
        return [rand_value(r, depth + 1) for _ in range(n)]
    if k == 9:
        return tuple(rand_value(r, depth + 1) for _ in range(n % 40))
    if k == 10:
        return dict((rand_key(r, depth + 1), rand_value(r, depth + 1))
                    for _ in range(n))
    if k == 11:
        return set(rand_key(r, depth + 1) for _ in range(n))
    if k == 12:
        return frozenset(rand_key(r, depth + 1) for _ in range(n % 40))
    if k == 13:
        cls = r.choice(EXCEPTIONS)
        return cls(*[rand_value(r, depth + 1) for _ in range(r.randrange(3))])
    if k == 14 and not PY2:
        if r.random() < 0.5:
            return array.array('i', [r.randrange(-1000, 1000)
                                     for _ in range(r.randrange(5))])
        return multiprocessing.managers.Token(
            rand_text(r), (u'127.0.0.1', r.randrange(65536)), u'7f%x' % n)
    return [rand_value(r, depth + 1) for _ in range(n % 8)]


def opaque(v):
    """Whether v holds a value whose repr mproc does not make exactly."""
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(opaque(x) for x in v)
    if isinstance(v, dict):
        return any(opaque(x) for x in v.items())
    if isinstance(v, BaseException):
        return opaque(v.args)
    return not PY2 and isinstance(v, (array.array,
                                      multiprocessing.managers.Token))


def values(seed, n):
    r = random.Random(seed)
    return [rand_value(r) for _ in range(n)]


def same(a, b):
    """Equal and of the same types, all the way down."""
    if PY2 and isinstance(a, int_types) and not isinstance(a, bool):
        return (isinstance(b, int_types) and not isinstance(b, bool)
                and a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for ka, va in a.items():
            kb = [k for k in b if k == ka]
            if len(kb) != 1 or not same(ka, kb[0]) or not same(va, b[kb[0]]):
                return False
        return True
    if isinstance(a, (set, frozenset)):
        if a != b:
            return False
        return all(any(same(x, y) for y in b if y == x) for x in a)
    if isinstance(a, BaseException):
        return same(a.args, b.args)
    if not PY2 and isinstance(a, array.array):
        return a.typecode == b.typecode and a.tolist() == b.tolist()
    if not PY2 and isinstance(a, multiprocessing.managers.Token):
        return same(a.__getstate__(), b.__getstate__())
    return a == b


def shared_values(proto):
    """test_obj.c's shared_values() builds the same, in the same order."""
    t = (1, 2)
    for _ in range(40):
        t = (t, t)
    vals = [t]
    x = 'ab'
    vals.append((x, x, [x], {x: x}))
    lst = [1]
    vals.append([lst, lst, (lst,), {'k': lst}])
    lst = []
    t = (lst, 7)
    lst.append(t)
    vals.append(t)
    lst = []
    t = (1, 2, lst, 3)
    lst.append(t)
    vals.append(t)
    lst = []
    lst.append((lst,))
    vals.append(lst)
    d = {}
    t = (d, d)
    d['t'] = t
    vals.append(t)
    if proto >= 4:
        fs, s = frozenset([1]), set([2])
        vals.append((fs, fs, s, s))
    return vals


def shared(proto):
    import pickletools
    out = getattr(sys.stdout, 'buffer', sys.stdout)
    for v in shared_values(proto):
        p = pickletools.optimize(pickle.dumps(v, proto))
        ops = list(pickletools.genops(p))
        q = b''
        for i, (op, _, pos) in enumerate(ops):
            end = ops[i + 1][2] if i + 1 < len(ops) else pos + 1
            if op.name != 'FRAME':
                q += p[pos:end]
        out.write(struct.pack('<I', len(q)) + q)
    return 0


def main():
    if sys.argv[1] == 'shared':
        return shared(int(sys.argv[2]))
    mode, seed, n, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4])
    vals = values(seed, n)
    out = getattr(sys.stdout, 'buffer', sys.stdout)
    if mode == 'gen':
        for v in vals:
            p = pickle.dumps(v, proto)
            rp = '' if opaque(v) else repr(v)
            if not PY2:
                rp = rp.encode('utf-8', 'surrogatepass')
            out.write(struct.pack('<I', len(p)) + p)
            out.write(struct.pack('<I', len(rp)) + rp)
        return 0
    with open(sys.argv[5], 'rb') as f:
        data = f.read()
    at = i = 0
    while at < len(data):
        (k,) = struct.unpack('<I', data[at:at + 4])
        got = pickle.loads(data[at + 4:at + 4 + k])
        at += 4 + k
        if i >= n or not same(vals[i], got):
            print('value %d differs:\n sent %r\n got  %r' % (
                i, vals[i] if i < n else None, got))
            return 1
        i += 1
    if i != n:
        print('%d values back, %d sent' % (i, n))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
