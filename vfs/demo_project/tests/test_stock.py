import pytest

from inventory import Stock, restock_amount


def test_add_and_remove():
    s = Stock({"apple": 3})
    s.add("apple", 2)
    s.remove("apple", 4)
    assert s.items == {"apple": 1}


def test_remove_too_many():
    with pytest.raises(ValueError):
        Stock({"pear": 1}).remove("pear", 2)


def test_low():
    assert Stock({"a": 1, "b": 5, "c": 0}).low(2) == ["a", "c"]


def test_restock_never_negative():
    assert restock_amount(3, 10) == 7
    assert restock_amount(12, 10) == 0
