"""hean's local Kubernetes test/dev harness.

* :mod:`hean.testing.bins` -- locate/build the real control-plane binaries
  (kube-apiserver, kube-controller-manager, kubectl, etcd, helm);
* :mod:`hean.testing.pki` -- per-run CA and certificates;
* :mod:`hean.testing.controlplane` -- :class:`ControlPlane` (etcd + kube-apiserver +
  kube-controller-manager on 127.0.0.1);
* :mod:`hean.testing.nodeagent` -- :class:`NodeAgent`, a kubelet stand-in that runs
  pods as local processes. It exists ONLY for machines without a container runtime;
  use kind (``HEAN_E2E_KUBECONFIG``) where you can.

``python -m hean.testing up`` starts both and keeps them running; see docs/harness.md.
Submodules are imported lazily so that ``import hean.testing`` stays cheap.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from .bins import ensure_binaries
    from .controlplane import ControlPlane
    from .nodeagent import NodeAgent

__all__ = ["ControlPlane", "NodeAgent", "WaitTimeout", "ensure_binaries", "wait_for"]

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """:func:`wait_for` gave up (an AssertionError, so pytest reports it as a failure)."""


def wait_for(
    probe: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.25,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy and return that value.

    Exceptions raised by ``probe`` count as "not yet" (the last one is chained);
    after ``timeout`` seconds :class:`WaitTimeout` is raised naming ``message`` (a
    string, or a callable producing one, e.g. to dump the object being waited on).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            err = WaitTimeout(f"timed out after {timeout:g}s waiting for {text}"
                              + (f" (last error: {last_exc!r})" if last_exc else ""))
            raise err from last_exc
        time.sleep(interval)


def __getattr__(name: str) -> Any:
    if name == "ControlPlane":
        from .controlplane import ControlPlane

        return ControlPlane
    if name == "NodeAgent":
        from .nodeagent import NodeAgent

        return NodeAgent
    if name == "ensure_binaries":
        from .bins import ensure_binaries

        return ensure_binaries
    raise AttributeError(name)
