#!/usr/bin/env python3
"""Seed example: a module that exists only in memory, imported, changed and hot-reloaded.

No FUSE, no files: `ModuleRegistry` is a Session over an empty in-memory base
with an import hook (`vfs.importer`) and a hot reloader (`vfs.hotreload`).
The old `math` reference sees the new code after the reload.

Run it from the repository root: `python scripts/examples/in_memory_modules.py`.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from vfs.importer import ModuleRegistry  # noqa: E402


def main() -> None:
    registry = ModuleRegistry()  # an in-memory Session (an empty base) + the import hook installed
    print("1. create math_utils in memory")
    registry.create_module("math_utils", "def add(a, b):\n    return a + b\n")
    math = registry.import_module("math_utils")
    print(f"2. imported {math.__name__} from {math.__file__}")
    print("3. math.add(5, 10) =", math.add(5, 10))  # 15
    registry.update_module("math_utils", 'def add(a, b):\n    print(f"Adding {a} + {b}")\n    return a + b\n'
                                         '\n\ndef subtract(a, b):\n    return a - b\n')
    print("4. updated math_utils in memory")
    report = registry.reload_module("math_utils")  # hot reload patches in place
    print(f"5. reloaded: {report.summary()}")
    print("6. math.add(5, 10) =", math.add(5, 10))  # prints "Adding 5 + 10" then 15: the OLD reference
    print("7. math.subtract(10, 5) =", math.subtract(10, 5))  # 5
    registry.close()


if __name__ == "__main__":
    main()
