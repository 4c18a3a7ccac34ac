"""vfs's semantic index: definitions, references and imports of a tree.

Layout (one concept per module):

- `facts`     what a language extracts from one file, and its packed form
- `language`  the plug-in interface a language implements
- `python`    Python, with the stdlib ``ast`` (the choice and its numbers
              are in that module's docstring); the walker is `_pyextract`,
              its scope model `_pyscope`
- `modules`   module names from paths (packages, ``src/``, namespaces)
- `resolve`   symbolic targets -> canonical qualified names
- `graph`     the import graph and test impact
- `cache`     packed facts on disk, keyed by content
- `index`     `Index`: build, update, query (thread-safe); its query maps
              are `_maps`, its worker processes `_pool`
- `live`      `LiveIndex`: the background service a session drives
- `render`    the text formats of the ``.vfs/`` control files

Conventions: paths are relative, '/'-separated; lines and columns are
1-based, columns in characters; qualified names are the dotted module name
plus nesting (``pkg.mod.Class.method``).
"""
from .facts import KINDS, Definition, FileFacts, Import, Reference
from .graph import is_test_file
from .index import Index
from .language import Language
from .live import LiveIndex
from .modules import ModuleTable, module_name
from .python import PythonLanguage
from .render import STALE_HEADER, render_definitions, render_paths, render_references, render_symbols

__all__ = [
    "KINDS",
    "Definition",
    "FileFacts",
    "Import",
    "Reference",
    "Language",
    "PythonLanguage",
    "ModuleTable",
    "module_name",
    "Index",
    "LiveIndex",
    "is_test_file",
    "STALE_HEADER",
    "render_symbols",
    "render_definitions",
    "render_references",
    "render_paths",
]
