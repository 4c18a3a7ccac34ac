"""`echo 'pkg.mod.old new' > .vfs/rename` on a real mount: every reference follows, pytest passes, disk untouched."""
from __future__ import annotations

import os
import subprocess
import sys

from mountlib import make_project, mount_source, run, tree_hashes, unmount

PKG = {
    "shop/__init__.py": "from .pricing import total_price\n\n__all__ = ['total_price', 'Cart']\n\nfrom .cart import Cart\n",
    "shop/pricing.py": "def total_price(items):\n    # sum of prices\n    return sum(p for _, p in items)\n",
    "shop/cart.py": ("from .pricing import total_price as tp\n\n\nclass Cart:\n    def __init__(self):\n"
                     "        self.items = []\n\n    def add(self, name, price):\n        self.items.append((name, price))\n"
                     "        return self\n\n    def total(self):\n        return tp(self.items)\n"),
    "shop/report.py": "from shop import pricing\n\n\ndef line(items):\n    return f'total={pricing.total_price(items)}'\n",
    "shop/api.py": "from . import total_price\nfrom .cart import Cart\n\n\ndef checkout(cart):\n    return total_price(Cart.total.__get__(cart)() and cart.items)\n",
    "tests/test_shop.py": ("from shop import total_price, Cart\nfrom shop.report import line\nfrom shop.api import checkout\n\n\n"
                           "def test_all():\n    c = Cart()\n    c.add('a', 2)\n    c.add('b', 3)\n    assert total_price(c.items) == 5\n"
                           "    assert c.total() == 5\n    assert Cart.add(Cart(), 'x', 1).total() == 1\n"
                           "    assert line(c.items) == 'total=5'\n    assert checkout(c) == 5\n"),
}


def _pytest(cwd):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=cwd, capture_output=True, text=True, env=env)


def test_rename_function_and_method_across_modules(tmp_path):
    src = make_project(tmp_path / "src", PKG)
    before = tree_hashes(src)
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(src, mp)
    try:
        assert _pytest(mp).returncode == 0
        res = run(["sh", "-c", "echo 'shop.pricing.total_price grand_total' > .vfs/rename"], cwd=mp)
        assert res.returncode == 0
        outcome = (mp / ".vfs" / "rename").read_text().splitlines()[-1]
        assert outcome.startswith("last: ok: renamed shop.pricing.total_price to grand_total in 6 file(s): ")
        for name in ("shop/__init__.py", "shop/api.py", "shop/cart.py", "shop/pricing.py", "shop/report.py",
                     "tests/test_shop.py"):
            assert name in outcome
        assert (mp / "shop/pricing.py").read_text() == \
            "def grand_total(items):\n    # sum of prices\n    return sum(p for _, p in items)\n"
        assert "from .pricing import grand_total as tp" in (mp / "shop/cart.py").read_text()
        assert "__all__ = ['grand_total', 'Cart']" in (mp / "shop/__init__.py").read_text()
        assert "pricing.grand_total(items)" in (mp / "shop/report.py").read_text()
        assert "from shop import grand_total, Cart" in (mp / "tests/test_shop.py").read_text()
        run(["sh", "-c", "echo 'shop.cart.Cart.add put' > .vfs/rename"], cwd=mp)
        assert "Cart.put(Cart(), 'x', 1)" in (mp / "tests/test_shop.py").read_text()
        result = _pytest(mp)
        assert result.returncode == 0, result.stdout
        # Refusals change nothing.
        head = (mp / ".vfs" / "log").read_text().count("\n")
        bad = run(["sh", "-c", "echo 'shop.cart.Cart.put total' > .vfs/rename"], cwd=mp, check=False)
        assert bad.returncode != 0
        assert "collide" in (mp / ".vfs" / "rename").read_text() or "already" in (mp / ".vfs" / "rename").read_text()
        assert (mp / ".vfs" / "log").read_text().count("\n") == head
    finally:
        unmount(m)
    assert tree_hashes(src) == before
