"""Deterministic ``orderLinkId``s: ``<prefix>-<sequence in base 36>``, at most 36
characters, from the strategy's identity and a persisted sequence.

Bybit rejects a reused orderLinkId (110072 derivatives, 170141 spot), so an id is
never handed out twice: the next sequence number is written (and fsynced) to
``<state_dir>/<prefix>.seq`` *before* the id is used, so a retry, a timeout or a
restart can only reuse an id that belongs to the same logical order, never place a
second one. At start, reconciliation also raises the sequence above every id of this
prefix it sees on the exchange (:meth:`OrderLinkIds.ensure_above`), which covers a
lost state file. With ``HEAN_REDIS_URL`` the sequence lives in Redis instead
(:class:`hean.worker.state.RedisOrderLinkIds`, same format).

The prefix is ``<name[:16]>`` (characters Bybit allows: letters, digits, ``-``,
``_``) plus 4 hex chars of SHA-256 of ``namespace/name``, so two strategies with the
same name in different namespaces sharing one account never collide.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

MAX_LEN = 36
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def b36(n: int) -> str:
    """``n`` (>= 0) in base 36, lower case; raises ValueError for a negative ``n``."""
    if n < 0:
        raise ValueError("sequence must be >= 0")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
        if n == 0:
            return out


def prefix_for(namespace: str, name: str) -> str:
    """The orderLinkId prefix of a strategy (at most 21 characters)."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:16]
    h = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:4]
    return f"{clean}{h}"


class OrderLinkIds:
    """Hands out ``<prefix>-<b36(seq)>``; thread-safe; persisted before use."""

    def __init__(self, namespace: str, name: str, state_dir: Path):
        self.prefix = prefix_for(namespace, name)
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{self.prefix}.seq"
        self.lock = threading.Lock()
        text = self.path.read_text().strip() if self.path.exists() else ""
        if text and not text.isdigit():
            raise ValueError(f"{self.path}: expected an integer sequence, found {text[:40]!r}")
        self.seq = int(text) if text else 0

    def _persist(self, seq: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(str(seq))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def next(self) -> str:
        """A new id (the sequence is durable before it returns)."""
        with self.lock:
            seq = self.seq + 1
            self._persist(seq)
            self.seq = seq
            link = f"{self.prefix}-{b36(seq)}"
            assert len(link) <= MAX_LEN, link
            return link

    def owns(self, link: str) -> bool:
        """True if ``link`` was issued by this strategy's prefix."""
        return link.startswith(self.prefix + "-")

    def seq_of(self, link: str) -> int | None:
        """The sequence number inside ``link``, or None if it is not one of ours."""
        if not self.owns(link):
            return None
        try:
            return int(link[len(self.prefix) + 1:], 36)
        except ValueError:
            return None

    def ensure_above(self, links) -> int:
        """Raise the sequence above every id of ours in ``links``; returns it."""
        with self.lock:
            top = max((s for s in (self.seq_of(x) for x in links) if s is not None), default=0)
            if top > self.seq:
                self._persist(top)
                self.seq = top
            return self.seq
