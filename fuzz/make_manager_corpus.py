"""Seeds for fuzz_manager: runs of requests as CPython clients pickle them.

Usage: python3 make_manager_corpus.py OUTDIR
Each seed is chunks of [flags u8][length u16 big-endian][pickle]; flags
bit 0: a method channel, bit 1: a new connection. Objects are named
'1', '2', ... in creation order while fuzzing.
"""
import hashlib
import os
import pickle
import struct
import sys


def chunk(req, channel, new, proto):
    b = pickle.dumps(req, protocol=proto)
    return struct.pack('>BH', (1 if channel else 0) | (2 if new else 0),
                       len(b)) + b


def seed(reqs, proto):
    out = b''
    for i, (channel, req) in enumerate(reqs):
        out += chunk(req, channel, i == 0 or not channel, proto)
    return out


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    runs = [
        [(0, (None, 'create', ('dict',), {})),
         (1, ('1', '__setitem__', ('a', 1), {})),
         (1, ('1', '__getitem__', ('b',), {})),
         (1, ('1', '__iter__', (), {})),
         (1, ('2', '__next__', (), {})),
         (1, ('1', 'update', ({'x': [1, 2.5]},), {'y': b'z'})),
         (1, ('1', '__repr__', (), {})),
         (0, (None, 'decref', ('1',), {}))],
        [(0, (None, 'create', ('list', [3, 1, 2]), {})),
         (1, ('1', 'sort', (), {'reverse': True})),
         (1, ('1', 'insert', (-1, 'q'), {})),
         (1, ('1', '__mul__', (3,), {})),
         (1, ('1', 'remove', (7,), {})),
         (1, ('1', '#GETVALUE', (), {})),
         (0, (None, 'number_of_objects', (), {})),
         (0, (None, 'debug_info', (), {}))],
        [(0, (None, 'create', ('Namespace',), {'a': 1})),
         (1, ('1', '__setattr__', ('b', 2), {})),
         (1, ('1', '__getattribute__', ('c',), {})),
         (0, (None, 'create', ('Value', 'i', 3), {})),
         (1, ('2', 'set', (4,), {})),
         (0, (None, 'create', ('Array', 'd', [0.5, 1.0]), {})),
         (1, ('3', '__setitem__', (1, 2 ** 70), {})),
         (1, ('3', '#GETVALUE', (), {})),
         (0, (None, 'shutdown', (), {}))],
        [(0, (None, 'create', ('Queue', 2), {})),
         (1, ('1', 'put', ('a',), {})),
         (1, ('1', 'get', (True, 0.0), {})),
         (1, ('1', 'get', (), {'timeout': 0.001})),
         (0, (None, 'create', ('Lock',), {})),
         (1, ('2', 'acquire', (), {})),
         (1, ('2', 'acquire', (True, 0.001), {})),
         (1, ('2', 'release', (), {})),
         (0, (None, 'create', ('Event',), {})),
         (1, ('3', 'wait', (0.001,), {})),
         (1, ('3', 'set', (), {})),
         (0, (None, 'create', ('BoundedSemaphore', 1), {})),
         (1, ('4', 'release', (), {})),
         (0, (None, 'create', ('JoinableQueue',), {})),
         (1, ('5', 'task_done', (), {}))],
    ]
    for r in runs:
        for proto in (2, 3, 4):
            data = seed(r, proto)
            name = hashlib.sha1(data).hexdigest()
            with open(os.path.join(d, name), 'wb') as f:
                f.write(data)


if __name__ == '__main__':
    main()
