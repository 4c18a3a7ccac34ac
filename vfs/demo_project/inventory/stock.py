"""Stock levels and the restocking rule."""


class Stock:
    def __init__(self, items=None):
        self.items = dict(items or {})

    def add(self, name, count):
        self.items[name] = self.items.get(name, 0) + count

    def remove(self, name, count):
        have = self.items.get(name, 0)
        if count > have:
            raise ValueError(f"only {have} {name} in stock")
        self.items[name] = have - count

    def low(self, threshold):
        return sorted(name for name, count in self.items.items() if count < threshold)


def restock_amount(count, target):
    """How many to order to reach `target`; never negative."""
    return target - count
