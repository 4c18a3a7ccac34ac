"""`vfs.refactor.plan_rename`: before/after sources, refusals, and a renamed
sample project whose own test suite still passes."""
from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from vfs.refactor import RenameError, plan_rename

# ---------------------------------------------------------------------- the sample project
SAMPLE = {
    "shop/__init__.py": '''\
"""Shop package."""
from .pricing import compute_total, Cart
from . import pricing

__all__ = ["compute_total", "Cart", 'pricing']
''',
    "shop/pricing.py": '''\
"""Pricing rules."""
TAX = 0.2


def compute_total(items, tax=TAX):
    """compute_total: the sum of prices, with tax."""
    return round(sum(price for _, price in items) * (1 + tax), 2)


def apply_discount(compute_total, rate):
    # the parameter shadows the module-level compute_total
    return compute_total * (1 - rate)


class Cart:
    def __init__(self, items=()):
        self.items = list(items)

    def subtotal(self):
        return sum(price for _, price in self.items)

    def total(self):
        return compute_total (self.items)   # odd spacing, kept

    def report(self):
        return f"{self.subtotal():.2f} -> {self.total():.2f}"

    @classmethod
    def empty_subtotal(cls):
        return cls().subtotal()


class Invoice:
    """Another class with a subtotal: never renamed."""

    def subtotal(self):
        return 0


def grand_total(carts):
    def one(cart):
        return compute_total(cart.items)
    return sum(one(c) for c in carts)
''',
    "shop/checkout.py": '''\
from .pricing import compute_total  # relative import
from . import pricing
from .pricing import Cart


def checkout(items):
    return compute_total(items)


def checkout_via_module(items):
    return pricing.compute_total(items, tax=0)


def preview(items):
    compute_total = len(items)  # a local variable: must not change
    return compute_total


def cart_parts(cart):
    return Cart.subtotal(cart), cart.total()
''',
    "shop/report.py": '''\
import shop.pricing
import shop.pricing as pr
from shop.pricing import (
    compute_total,   # the main entry point
    Cart,
)


def lines(items):
    a = shop.pricing.compute_total(items)
    b = pr.compute_total( items ,tax = 0 )
    c = compute_total(
        items,
        tax=0.5,
    )
    return [a, b, c]


def cart_report(items):
    cart = Cart(items)
    return cart.subtotal()
''',
    "shop/legacy.py": '''\
from shop.pricing import compute_total as total


def legacy_total(items):
    return total(items)
''',
    "shop/api.py": '''\
import shop
from shop import compute_total


def api_total(items):
    return compute_total(items), shop.compute_total(items)
''',
    "shop/special.py": '''\
from shop.pricing import Cart


class SpecialCart(Cart):
    def subtotal(self):
        return super().subtotal() * 2
''',
    "shop/unrelated.py": '''\
def compute_total(xs):
    """Same name, different function: never renamed."""
    return len(xs)
''',
    "tests/test_shop.py": '''\
from unittest import mock

import shop
from shop import api, checkout, legacy, report, unrelated
from shop.pricing import Cart, Invoice, apply_discount, compute_total, grand_total
from shop.special import SpecialCart

ITEMS = [("apple", 1.0), ("pear", 2.0)]


def test_compute_total():
    assert compute_total(ITEMS) == 3.6
    assert unrelated.compute_total(ITEMS) == 2


def test_faces():
    assert checkout.checkout(ITEMS) == 3.6
    assert checkout.checkout_via_module(ITEMS) == 3.0
    assert checkout.preview(ITEMS) == 2
    assert report.lines(ITEMS) == [3.6, 3.0, 4.5]
    assert legacy.legacy_total(ITEMS) == 3.6
    assert api.api_total(ITEMS) == (3.6, 3.6)
    assert apply_discount(10, 0.5) == 5.0
    assert grand_total([Cart(ITEMS)]) == 3.6


def test_cart():
    cart = Cart(ITEMS)
    assert cart.subtotal() == 3.0
    assert cart.report() == "3.00 -> 3.60"
    assert Cart.empty_subtotal() == 0
    assert checkout.cart_parts(cart) == (3.0, 3.6)
    assert report.cart_report(ITEMS) == 3.0
    assert Invoice().subtotal() == 0
    assert SpecialCart(ITEMS).report() == "6.00 -> 3.60"


def test_patch():
    with mock.patch("shop.pricing.compute_total", return_value=0):
        assert shop.pricing.compute_total(ITEMS) == 0
''',
}


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
    return root


def plan(files: dict[str, str], qualname: str, new: str) -> dict[str, str]:
    """Run plan_rename over an in-memory tree; the result as text."""
    data = {p: t.encode() for p, t in files.items()}
    out = plan_rename(data.get, list(data), qualname, new)
    return {p: b.decode() for p, b in out.items()}


def run_pytest(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=root, capture_output=True, text=True, timeout=120)


def renamed_copy(tmp_path: Path, name: str, changes: dict[str, str]) -> Path:
    return write_tree(tmp_path / name, {**SAMPLE, **changes})


# ---------------------------------------------------------------------- renaming a function
FUNCTION_AFTER = {
    "shop/__init__.py": '''\
"""Shop package."""
from .pricing import total_price, Cart
from . import pricing

__all__ = ["total_price", "Cart", 'pricing']
''',
    "shop/pricing.py": '''\
"""Pricing rules."""
TAX = 0.2


def total_price(items, tax=TAX):
    """compute_total: the sum of prices, with tax."""
    return round(sum(price for _, price in items) * (1 + tax), 2)


def apply_discount(compute_total, rate):
    # the parameter shadows the module-level compute_total
    return compute_total * (1 - rate)


class Cart:
    def __init__(self, items=()):
        self.items = list(items)

    def subtotal(self):
        return sum(price for _, price in self.items)

    def total(self):
        return total_price (self.items)   # odd spacing, kept

    def report(self):
        return f"{self.subtotal():.2f} -> {self.total():.2f}"

    @classmethod
    def empty_subtotal(cls):
        return cls().subtotal()


class Invoice:
    """Another class with a subtotal: never renamed."""

    def subtotal(self):
        return 0


def grand_total(carts):
    def one(cart):
        return total_price(cart.items)
    return sum(one(c) for c in carts)
''',
    "shop/checkout.py": '''\
from .pricing import total_price  # relative import
from . import pricing
from .pricing import Cart


def checkout(items):
    return total_price(items)


def checkout_via_module(items):
    return pricing.total_price(items, tax=0)


def preview(items):
    compute_total = len(items)  # a local variable: must not change
    return compute_total


def cart_parts(cart):
    return Cart.subtotal(cart), cart.total()
''',
    "shop/report.py": '''\
import shop.pricing
import shop.pricing as pr
from shop.pricing import (
    total_price,   # the main entry point
    Cart,
)


def lines(items):
    a = shop.pricing.total_price(items)
    b = pr.total_price( items ,tax = 0 )
    c = total_price(
        items,
        tax=0.5,
    )
    return [a, b, c]


def cart_report(items):
    cart = Cart(items)
    return cart.subtotal()
''',
    "shop/legacy.py": '''\
from shop.pricing import total_price as total


def legacy_total(items):
    return total(items)
''',
    "shop/api.py": '''\
import shop
from shop import total_price


def api_total(items):
    return total_price(items), shop.total_price(items)
''',
    "tests/test_shop.py": SAMPLE["tests/test_shop.py"]
    .replace("apply_discount, compute_total, grand_total", "apply_discount, total_price, grand_total")
    .replace("    assert compute_total(ITEMS) == 3.6", "    assert total_price(ITEMS) == 3.6")
    .replace('mock.patch("shop.pricing.compute_total"', 'mock.patch("shop.pricing.total_price"')
    .replace("shop.pricing.compute_total(ITEMS) == 0", "shop.pricing.total_price(ITEMS) == 0"),
}


def test_rename_function_everywhere():
    out = plan(SAMPLE, "shop.pricing.compute_total", "total_price")
    assert sorted(out) == sorted(FUNCTION_AFTER)
    for path, expected in FUNCTION_AFTER.items():
        assert out[path] == expected, path
    # unchanged: the unrelated function of the same name and the test's use of it
    assert "unrelated.compute_total(ITEMS)" in out["tests/test_shop.py"]


def test_renamed_function_project_passes_its_tests(tmp_path):
    before = run_pytest(write_tree(tmp_path / "before", SAMPLE))
    assert before.returncode == 0, before.stdout + before.stderr
    out = plan(SAMPLE, "shop.pricing.compute_total", "total_price")
    after = run_pytest(renamed_copy(tmp_path, "after", out))
    assert after.returncode == 0, after.stdout + after.stderr
    assert "4 passed" in after.stdout


def test_rename_through_reexport_name():
    """`shop.compute_total` (the re-export) is followed to its definition."""
    assert plan(SAMPLE, "shop.compute_total", "total_price") == \
        plan(SAMPLE, "shop.pricing.compute_total", "total_price")


# ---------------------------------------------------------------------- renaming a method
METHOD_AFTER = {
    "shop/pricing.py": SAMPLE["shop/pricing.py"]
    .replace("    def subtotal(self):\n        return sum(", "    def net(self):\n        return sum(")
    .replace('f"{self.subtotal():.2f}', 'f"{self.net():.2f}')
    .replace("return cls().subtotal()", "return cls().net()"),
    "shop/checkout.py": SAMPLE["shop/checkout.py"].replace("Cart.subtotal(cart)", "Cart.net(cart)"),
    "shop/report.py": SAMPLE["shop/report.py"].replace("return cart.subtotal()", "return cart.net()"),
    "shop/special.py": '''\
from shop.pricing import Cart


class SpecialCart(Cart):
    def net(self):
        return super().net() * 2
''',
    "tests/test_shop.py": SAMPLE["tests/test_shop.py"].replace(
        "    assert cart.subtotal() == 3.0", "    assert cart.net() == 3.0"),
}


def test_rename_method_through_class_self_cls_instances_and_subclasses():
    out = plan(SAMPLE, "shop.pricing.Cart.subtotal", "net")
    assert sorted(out) == sorted(METHOD_AFTER)
    for path, expected in METHOD_AFTER.items():
        assert out[path] == expected, path
    # Invoice.subtotal and its call stay
    assert "class Invoice:\n    \"\"\"Another class with a subtotal: never renamed.\"\"\"\n\n" \
           "    def subtotal(self):" in out["shop/pricing.py"]
    assert "Invoice().subtotal() == 0" in out["tests/test_shop.py"]


def test_review_lists_attribute_uses_left_alone():
    review: list[str] = []
    data = {p: t.encode() for p, t in SAMPLE.items()}
    plan_rename(data.get, list(data), "shop.pricing.Cart.subtotal", "net", review=review)
    assert review == ["tests/test_shop.py:34: assert Invoice().subtotal() == 0"]



def test_review_leaves_out_strings_and_comments():
    """Only code is listed for review: a docstring or a comment that mentions `.member` is no use."""
    files = {
        "pkg/__init__.py": "",
        "pkg/mod.py": "class A:\n    def go(self):\n        return 1\n",
        "pkg/other.py": ('def f(x):\n    """Use x.go() here."""\n    # x.go() in a comment\n'
                         '    s = "x.go"\n    return x.go()\n'),
    }
    review: list[str] = []
    data = {p: t.encode() for p, t in files.items()}
    plan_rename(data.get, list(data), "pkg.mod.A.go", "run", review=review)
    assert review == ["pkg/other.py:5: return x.go()"]

def test_rename_property_with_setter_and_class_level_alias():
    files = {
        "geo.py": '''\
class Box:
    def __init__(self):
        self._w = 1

    @property
    def width(self):
        return self._w

    @width.setter
    def width(self, value):
        self._w = value

    size = width


def grow(box: Box):
    box.width = box.width + 1
    return box
''',
    }
    assert plan(files, "geo.Box.width", "breadth") == {
        "geo.py": '''\
class Box:
    def __init__(self):
        self._w = 1

    @property
    def breadth(self):
        return self._w

    @breadth.setter
    def breadth(self, value):
        self._w = value

    size = breadth


def grow(box: Box):
    box.breadth = box.breadth + 1
    return box
''',
    }


def test_renamed_method_project_passes_its_tests(tmp_path):
    out = plan(SAMPLE, "shop.pricing.Cart.subtotal", "net")
    after = run_pytest(renamed_copy(tmp_path, "after", out))
    assert after.returncode == 0, after.stdout + after.stderr


def test_rename_method_through_reexported_class():
    assert plan(SAMPLE, "shop.Cart.subtotal", "net") == plan(SAMPLE, "shop.pricing.Cart.subtotal", "net")


# ---------------------------------------------------------------------- smaller cases
def test_rename_module_variable_with_global_statement():
    files = {
        "pkg/__init__.py": "",
        "pkg/conf.py": '''\
LIMIT = 3
__all__ = ("LIMIT",)


def raise_limit():
    global LIMIT
    LIMIT += 1
    return LIMIT


def shadow(LIMIT=1):
    return LIMIT
''',
        "pkg/use.py": '''\
from pkg import conf
from pkg.conf import *


def limit():
    return conf.LIMIT, LIMIT
''',
    }
    assert plan(files, "pkg.conf.LIMIT", "MAXIMUM") == {
        "pkg/conf.py": '''\
MAXIMUM = 3
__all__ = ("MAXIMUM",)


def raise_limit():
    global MAXIMUM
    MAXIMUM += 1
    return MAXIMUM


def shadow(LIMIT=1):
    return LIMIT
''',
        "pkg/use.py": '''\
from pkg import conf
from pkg.conf import *


def limit():
    return conf.MAXIMUM, MAXIMUM
''',
    }


def test_rename_class_with_string_annotation_and_local_import():
    files = {
        "app/models.py": '''\
class User:
    pass
''',
        "app/views.py": '''\
def make() -> "User":
    from app.models import User
    return User()


def other(User):
    return User
''',
        "app/types.py": '''\
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.models import User


def name(user: "User", users: "list[User]") -> str:
    return "User"
''',
    }
    assert plan(files, "app.models.User", "Account") == {
        "app/models.py": "class Account:\n    pass\n",
        "app/views.py": '''\
def make() -> "User":
    from app.models import Account
    return Account()


def other(User):
    return User
''',
        "app/types.py": '''\
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.models import Account


def name(user: "Account", users: "list[Account]") -> str:
    return "User"
''',
    }


def test_fallback_import_of_same_name_keeps_its_source():
    files = {
        "lib/__init__.py": "",
        "lib/fast.py": "def dump(x):\n    return x\n",
        "lib/use.py": '''\
try:
    from lib.fast import dump
except ImportError:
    from json import dump

print(dump)
''',
    }
    assert plan(files, "lib.fast.dump", "serialize") == {
        "lib/fast.py": "def serialize(x):\n    return x\n",
        "lib/use.py": '''\
try:
    from lib.fast import serialize
except ImportError:
    from json import dump as serialize

print(serialize)
''',
    }


def test_src_layout_and_stub_next_to_module():
    files = {
        "src/pkg/__init__.py": "",
        "src/pkg/a.py": "def f():\n    pass\n",
        "src/pkg/a.pyi": "def f() -> None: ...\n",
        "src/pkg/b.py": "from .a import f\nfrom pkg import a\n\nf()\na.f()\n",
    }
    assert plan(files, "pkg.a.f", "g") == {
        "src/pkg/a.py": "def g():\n    pass\n",
        "src/pkg/a.pyi": "def g() -> None: ...\n",
        "src/pkg/b.py": "from .a import g\nfrom pkg import a\n\ng()\na.g()\n",
    }


def test_same_name_is_a_no_op():
    assert plan(SAMPLE, "shop.pricing.compute_total", "compute_total") == {}


def test_module_of_and_non_utf8_files():
    files = {"a.py": "def f():\n    return 1\n", "b.py": "from a import f\nf()\n"}
    data = {p: t.encode() for p, t in files.items()}
    data["c.py"] = "# -*- coding: latin-1 -*-\nfrom a import f\nx = 'é'\n".encode("latin-1")
    out = plan_rename(data.get, list(data), "mod_a.f", "g",
                      module_of=lambda p: {"a.py": "mod_a", "b.py": "b", "c.py": "c"}[p])
    assert out == {"a.py": b"def g():\n    return 1\n"}  # b and c import "a", which is not mod_a here
    out = plan_rename(data.get, list(data), "a.f", "g")
    assert out["c.py"] == "# -*- coding: latin-1 -*-\nfrom a import g\nx = 'é'\n".encode("latin-1")
    assert out["b.py"] == b"from a import g\ng()\n"


# ---------------------------------------------------------------------- refusals
def refused(files: dict[str, str], qualname: str, new: str) -> RenameError:
    with pytest.raises(RenameError) as info:
        plan(files, qualname, new)
    return info.value


def test_keyword_is_refused():
    err = refused(SAMPLE, "shop.pricing.compute_total", "class")
    assert err.errno == errno.EINVAL
    assert str(err) == "new name 'class' is a Python keyword"


def test_invalid_identifier_is_refused():
    err = refused(SAMPLE, "shop.pricing.compute_total", "1abc")
    assert err.errno == errno.EINVAL
    assert str(err) == "new name '1abc' is not a valid Python identifier"


def test_missing_old_name():
    err = refused(SAMPLE, "shop.pricing.nothing_here", "x")
    assert err.errno == errno.ENOENT
    assert str(err) == "shop.pricing (shop/pricing.py) does not define nothing_here"
    err = refused(SAMPLE, "shop.nowhere.f", "x")
    assert (err.errno, str(err)) == (errno.ENOENT, "shop (shop/__init__.py) does not define nowhere")
    err = refused(SAMPLE, "nowhere.f", "x")
    assert (err.errno, str(err)) == (errno.ENOENT, "no module of the tree in nowhere.f")
    err = refused(SAMPLE, "shop.pricing.Cart.nothing", "x")
    assert (err.errno, str(err)) == (errno.ENOENT, "class shop.pricing.Cart (shop/pricing.py) does not define nothing")


def test_module_and_deep_names_are_refused():
    err = refused(SAMPLE, "shop.pricing", "prices")
    assert (err.errno, str(err)) == (errno.EINVAL, "shop.pricing is a module; module renames are not supported")
    err = refused(SAMPLE, "shop.pricing.compute_total.x", "y")
    assert err.errno == errno.EINVAL
    assert str(err) == "shop.pricing.compute_total is not a class"


def test_collision_in_defining_module():
    err = refused(SAMPLE, "shop.pricing.compute_total", "grand_total")
    assert err.errno == errno.EINVAL
    assert str(err) == ("cannot rename shop.pricing.compute_total to grand_total: shop/pricing.py:40: "
                        "'grand_total' is already defined in module shop.pricing")


def test_collision_in_class():
    err = refused(SAMPLE, "shop.pricing.Cart.subtotal", "total")
    assert (err.errno, str(err)) == (errno.EINVAL, "cannot rename shop.pricing.Cart.subtotal to total: "
                                     "shop/pricing.py:22: 'total' is already defined in class Cart")


def test_collision_with_an_instance_attribute_and_in_a_subclass():
    files = {"m.py": "class A:\n    def run(self):\n        self.go = 1\n"}
    err = refused(files, "m.A.run", "go")
    assert str(err) == "cannot rename m.A.run to go: m.py:3: 'go' is already used as an attribute of the class"
    files = {"m.py": "class A:\n    def run(self):\n        pass\n\n\nclass B(A):\n    def go(self):\n        pass\n"}
    err = refused(files, "m.A.run", "go")
    assert str(err) == "cannot rename m.A.run to go: m.py:7: 'go' is already defined in subclass B"


def test_collision_in_importing_module():
    # report.py imports compute_total unaliased and already binds `lines`
    err = refused(SAMPLE, "shop.pricing.compute_total", "lines")
    assert err.errno == errno.EINVAL
    assert str(err) == ("cannot rename shop.pricing.compute_total to lines: shop/report.py:9: "
                        "'lines' is already defined in module shop.report")


def test_capture_by_inner_binding_and_builtin_shadowing():
    files = {
        "m.py": '''\
def old():
    return 1


def user(new):
    return old() + new
''',
    }
    err = refused(files, "m.old", "new")
    assert str(err) == "cannot rename m.old to new: m.py:6: the renamed use would refer to 'new' defined at line 5"
    files = {"m.py": "def old(xs):\n    return len(xs)\n\nprint(old([]))\n"}
    err = refused(files, "m.old", "len")
    assert str(err) == "cannot rename m.old to len: m.py:2: the builtin 'len' used here would be shadowed"


def test_unparsable_referencing_file_is_an_error_and_others_are_skipped():
    files = {**SAMPLE, "shop/broken.py": "from shop.pricing import compute_total\ndef (:\n",
             "shop/broken_elsewhere.py": "def (:\n"}
    err = refused(files, "shop.pricing.compute_total", "total_price")
    assert err.errno == errno.EINVAL
    assert str(err).startswith("shop/broken.py:2:")
    assert "cannot parse" in str(err)
    # a broken file that does not mention the name is never parsed
    del files["shop/broken.py"]
    assert plan(files, "shop.pricing.compute_total", "total_price") == FUNCTION_AFTER


# ---------------------------------------------------------------------- through a workspace
def test_plan_applied_as_one_batch_through_a_workspace(tmp_path):
    from vfs.batch import apply_batch
    from vfs.workspace import Workspace, WorkspaceOptions

    src = write_tree(tmp_path / "src", SAMPLE)
    ws = Workspace.open(str(src), WorkspaceOptions(watch=False, index=False))
    try:
        paths = sorted(str(p.relative_to(src)) for p in src.rglob("*.py"))
        out = plan_rename(ws.session.read_file, paths, "shop.pricing.compute_total", "total_price")
        change = apply_batch(ws.session, [{"path": p, "content": c.decode()} for p, c in sorted(out.items())],
                             agent="refactor")
        assert change is not None
        for path, expected in FUNCTION_AFTER.items():
            assert ws.session.read_file(path).decode() == expected
        assert sorted(ws.changed()) == sorted(f"M {p}" for p in FUNCTION_AFTER)
        # the disk is untouched until a sync
        assert (src / "shop/pricing.py").read_text() == SAMPLE["shop/pricing.py"]
    finally:
        ws.close()


def test_star_reexport_by_a_package_that_never_spells_the_name():
    """Regression (more-itertools: `import more_itertools as mi; mi.chunked`): a package
    re-exporting by `from .more import *` does not contain the name as text, so the text
    filter never looked at it and `from pkg import chunked` / `mi.chunked` stayed."""
    files = {
        "pkg/__init__.py": "from .more import *\n",
        "pkg/broken.py": "from .more import *\ndef (:\n",  # unparsable, no mention: skipped, not refused
        "pkg/more.py": "__all__ = ['chunked']\n\n\ndef chunked(x):\n    return x\n",
        "tests/test_more.py": "import pkg as mi\nfrom pkg import chunked\n\n\ndef test():\n"
                              "    assert mi.chunked(1) == chunked(1)\n",
    }
    assert plan(files, "pkg.more.chunked", "chunky") == {
        "pkg/more.py": "__all__ = ['chunky']\n\n\ndef chunky(x):\n    return x\n",
        "tests/test_more.py": "import pkg as mi\nfrom pkg import chunky\n\n\ndef test():\n"
                              "    assert mi.chunky(1) == chunky(1)\n",
    }
