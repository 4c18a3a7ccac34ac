"""The `.vfs/` control directory: a virtual-file framework (`tree`) and the files it serves (`files`)."""
from .tree import CONTROL_INO, CNode, ControlTree

__all__ = ["CONTROL_INO", "CNode", "ControlTree"]
