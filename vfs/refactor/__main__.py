"""`python -m vfs.refactor`: the rename benchmark (see `vfs.refactor.bench`)."""
from .bench import benchmark

for n in (30, 100):
    print(n, benchmark(n))
