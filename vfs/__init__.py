"""vfs: serve a software project from in-memory buffers through FUSE.

Layout: `session` is the one core (buffers over a base, journal, versions);
`tree` holds its POSIX inode tree; `fuse_ops` translates kernel requests;
`control` serves the `.vfs/` directory; `daemon`/`cli` run mounts; `api`
is the Python face.
"""
__all__ = ["__version__"]
__version__ = "0.1.0"
