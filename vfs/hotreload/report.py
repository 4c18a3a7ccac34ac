"""What one reload of one module did: `ReloadReport`."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReloadReport:
    """What one reload of one module did.

    `patched`, `added`, `removed` and `kept` hold qualified names (`f`,
    `Widget.describe`); `kept` lists values whose old content was kept although
    the new source assigns something else; `skipped` pairs a name with why it
    was not patched.  `error` is set when the new source failed to compile or
    run: then nothing changed.  Watchers fill `seq` and `event_time` (the
    change that triggered the reload, as the session recorded it).
    """

    module: str
    patched: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    seq: int | None = None
    event_time: float | None = None

    @property
    def ok(self) -> bool:
        """True when everything in the new source took effect."""
        return self.error is None and not self.skipped

    def summary(self) -> str:
        if self.error is not None:
            first = self.error.strip().splitlines()[-1] if self.error.strip() else self.error
            return f"{self.module}: reload failed, old code kept: {first}"
        parts = [f"{k} {', '.join(v)}" for k, v in (("patched", self.patched), ("added", self.added),
                                                    ("removed", self.removed), ("kept", self.kept)) if v]
        parts += [f"skipped {name} ({why})" for name, why in self.skipped]
        return f"{self.module}: " + ("; ".join(parts) if parts else "no change")
