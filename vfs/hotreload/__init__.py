"""Hot module replacement: patch live modules in place when their source changes.

A `Reloader` serves the modules of one workspace: those whose `__file__` lies
under a directory (a vfs mount, or any directory), or those loaded from a
`Session` by `vfs.importer`.  `reload(module)` runs the new source and then
patches the module *in place*:

- a changed function keeps its identity and gets the new `__code__`,
  `__defaults__`, `__kwdefaults__`, `__doc__`, `__annotations__` and
  `__dict__`, so every reference held elsewhere (`from m import f`, callbacks,
  registries) runs the new code.  Decorators built with closures
  (`functools.wraps`) and `functools.lru_cache` are followed to the function
  they wrap (the cache is cleared);
- a changed class keeps its identity: methods (plain, static, class,
  properties, nested classes) are patched, added and removed on it, so
  existing instances and bound methods see the new behaviour;
- module state is kept: a module-level (or class-level) value that is not a
  function or class keeps its old value even when the new source assigns
  another (listed in `ReloadReport.kept`); dunder values (`__all__`,
  `__doc__`, `__version__`) take the new value; new names appear; functions
  and classes no longer defined are removed; imports are rebound.

What cannot be patched is reported in `ReloadReport.skipped`, never ignored:
a function running on a stack (an activation on the reloader's caller's
stack, or one that stays on another thread's stack for `wait_running`: a
loop, a blocking call) keeps its old code — calls that merely come and go
are patched; a class whose `__slots__` or metaclass changed is left as it
was; a function whose closure cells changed (e.g. a method that starts using `super()`) cannot take
the new code in place, so the new function is bound in its place (module or
class attribute) and references held elsewhere keep the old code; a name that
changed kind (a function that became a value) is rebound; C extensions are
not touched.  A module's import-time side effects (registering into another
module, say) run again.  A reload whose source does not compile or whose module code
raises changes nothing and reports `error` (the module namespace, which the
new code ran in, is put back).

Not supported: functions reachable only through data (lambdas in a dict),
instances of classes whose layout changed, other modules' `from m import *`
copies of names added later, suspended generators (they finish with the code
they started with).

`watch_mount(MOUNT)` follows `MOUNT/.vfs/events` in a thread and reloads the
imported modules whose files an event names; `watch_session(session)` does
the same in-process from the session's change listeners.

Thread safety: reloads are serialised by the reloader's lock.  The new code
runs in the live module namespace (as `importlib.reload` does), so for the
duration of that run other threads may see new definitions and reset values;
afterwards each name is restored or patched one by one.  Each single patch is
atomic under the GIL; a reload as a whole is not.
"""
from __future__ import annotations

from .reloader import Reloader
from .report import ReloadReport
from .watchers import Watcher, watch_mount, watch_session

__all__ = ["Reloader", "ReloadReport", "Watcher", "watch_mount", "watch_session"]
