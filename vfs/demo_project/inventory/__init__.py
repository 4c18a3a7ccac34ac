"""A tiny inventory package: the sample project `vfs demo` mounts."""
from .stock import Stock, restock_amount

__all__ = ["Stock", "restock_amount"]
