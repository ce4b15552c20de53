"""Writes the seed corpora of fuzz_pickle and fuzz_pickle_roundtrip
(fuzz/corpus/pickle*/): pickles CPython writes, with every protocol the
running interpreter has, of the values tests/py/pickle_peer.py makes at
random and of a few chosen ones; each file is one selector byte (the
target's first input byte) and the pickle, named by its SHA-1.
Run it with several interpreters (2.7 and 3.x) to mix their forms:
  python3.13 fuzz/make_pickle_corpus.py; python2.7 fuzz/make_pickle_corpus.py
"""
import hashlib
import os
import pickle
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(here, '..', 'tests', 'py'))
import pickle_peer  # noqa: E402

chosen = [None, True, 2 ** 70, -2 ** 200, 1.5, u'\xe9', b'howdy',
          bytearray(b'x'), (1,), [0, 1, 4], {1: 1}, set([1, 2]),
          frozenset([3]), ValueError('bad', 3), list(range(1200)),
          dict((str(i), i) for i in range(1100))]
values = chosen + pickle_peer.values(7, 30)
for name in ('pickle', 'pickle_roundtrip'):
    out = os.path.join(here, 'corpus', name)
    if not os.path.isdir(out):
        os.makedirs(out)
    for i, v in enumerate(values):
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            data = pickle.dumps(v, proto)
            if len(data) > 4096:
                continue
            data = bytearray([(i + proto) % 256]) + data
            data = bytes(data)
            path = os.path.join(out, hashlib.sha1(data).hexdigest())
            with open(path, 'wb') as f:
                f.write(data)
