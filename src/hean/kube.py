"""Small async Kubernetes helpers shared by the operator and the worker.

Built on the asyncio port of the official client (``kubernetes_asyncio``): a
list-then-watch :class:`Informer` that keeps a local cache and calls back on every
change (resuming from the last resourceVersion, re-listing on ``410 Gone``), Event
posting, and JSON merge-patching of a custom resource's ``status`` subresource.
Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone
from typing import Awaitable, Callable

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from hean import api

log = logging.getLogger("hean.kube")

MERGE_PATCH = "application/merge-patch+json"


async def load_config() -> client.ApiClient:
    """An ApiClient for ``$KUBECONFIG`` if set, else the in-cluster service account."""
    if os.environ.get("KUBECONFIG"):
        cfg = client.Configuration()
        await config.load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=cfg)
        return client.ApiClient(configuration=cfg)
    config.load_incluster_config()
    return client.ApiClient()


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with second precision (``...Z``), as
    metav1.Time serialises."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


Callback = Callable[[str, dict], Awaitable[None] | None]


class SharedClientWatch(watch.Watch):
    """``kubernetes_asyncio.watch.Watch`` that uses the caller's ApiClient.

    The upstream ``Watch()`` builds a throw-away ``ApiClient`` per instance (a TLS
    context that loads the system CA store when the default configuration has no CA
    file, plus an aiohttp session), used only to deserialize typed objects, and closes
    it when the stream ends: ~20-30 ms of CPU per watch (re)start, 3 per worker at
    start-up (measured with py-spy on 10 starting workers: 21 % of their CPU). Custom
    objects come back as dicts, so the shared client is only a formality here;
    :meth:`close` releases the response and never closes the shared client.
    ``tests/unit/test_kube_watch.py`` fails if upstream's ``__init__`` grows attributes
    this constructor does not set.
    """

    def __init__(self, api_client: client.ApiClient, return_type: str | None = None) -> None:  # noqa: D107
        # deliberately not calling watch.Watch.__init__ (it creates the ApiClient)
        self._raw_return_type = return_type
        self._stop = False
        self._api_client = api_client
        self.resource_version = None
        self.resp = None

    async def close(self) -> None:
        """Release the HTTP response (the shared ApiClient stays open)."""
        if self.resp is not None:
            self.resp.release()
            self.resp = None


class Informer:
    """List + watch one kind of custom resource in a namespace and keep a cache.

    ``cache`` maps ``metadata.name`` -> object (dict). ``on_change(event_type, obj)``
    is called (and awaited if it is a coroutine function) for ``ADDED``,
    ``MODIFIED`` and ``DELETED`` after the cache is updated; the initial list is
    reported as ``ADDED``. ``synced`` is set after the first list.
    """

    def __init__(self, api_client: client.ApiClient, plural: str, namespace: str,
                 on_change: Callback | None = None, field_selector: str | None = None,
                 timeout_seconds: int = 240):
        self.custom = client.CustomObjectsApi(api_client)
        self.plural = plural
        self.namespace = namespace
        self.on_change = on_change
        self.field_selector = field_selector
        self.timeout_seconds = timeout_seconds
        self.api_client = api_client
        self.cache: dict[str, dict] = {}
        self.synced = asyncio.Event()
        self.errors = 0

    async def _emit(self, etype: str, obj: dict) -> None:
        if self.on_change is None:
            return
        res = self.on_change(etype, obj)
        if asyncio.iscoroutine(res):
            await res

    async def _list(self) -> str:
        kw = {"field_selector": self.field_selector} if self.field_selector else {}
        lst = await self.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, self.plural, **kw)
        seen = {}
        for obj in lst.get("items", []):
            seen[obj["metadata"]["name"]] = obj
        for name in list(self.cache):
            if name not in seen:
                old = self.cache.pop(name)
                await self._emit("DELETED", old)
        for name, obj in seen.items():
            self.cache[name] = obj
            await self._emit("ADDED", obj)
        self.synced.set()
        return lst["metadata"]["resourceVersion"]

    async def relist(self) -> None:
        """List again now (one GET): refresh the cache and report what changed
        (``ADDED`` for every object, ``DELETED`` for vanished ones) without waiting
        for the watch to come back, e.g. right after an API outage. Raises
        ApiException or a network error if the list fails."""
        await self._list()

    async def run(self) -> None:
        """Run forever (until cancelled); errors back off from 0.5 s up to 10 s."""
        backoff = 0.5
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                kw = {"field_selector": self.field_selector} if self.field_selector else {}
                w = SharedClientWatch(self.api_client)
                async with w.stream(
                    self.custom.list_namespaced_custom_object, api.GROUP, api.VERSION, self.namespace,
                    self.plural, resource_version=rv, allow_watch_bookmarks=True,
                    timeout_seconds=self.timeout_seconds, **kw,
                ) as stream:
                    async for ev in stream:
                        etype, obj = ev["type"], ev["object"]
                        if etype == "ERROR":
                            code = obj.get("code") if isinstance(obj, dict) else None
                            rv = None if code == 410 else rv
                            break
                        if not isinstance(obj, dict):
                            continue
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if etype == "BOOKMARK":
                            continue
                        name = obj["metadata"]["name"]
                        if etype == "DELETED":
                            self.cache.pop(name, None)
                        else:
                            self.cache[name] = obj
                        await self._emit(etype, obj)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except ApiException as e:
                self.errors += 1
                if e.status == 410:
                    rv = None
                log.warning("watch %s failed (%s %s); retrying in %.1fs", self.plural, e.status, e.reason, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
            except Exception as e:  # network errors: retry with backoff
                self.errors += 1
                log.warning("watch %s failed (%r); retrying in %.1fs", self.plural, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)


async def patch_status(api_client: client.ApiClient, plural: str, namespace: str, name: str, status: dict) -> dict:
    """JSON-merge-patch ``status`` into the object's status subresource.

    Only the keys given change (a merge patch replaces lists such as ``conditions``
    whole, so owners send whole lists). Raises ApiException (404 if gone).
    """
    custom = client.CustomObjectsApi(api_client)
    return await custom.patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, plural, name, {"status": status}, _content_type=MERGE_PATCH
    )


async def post_event(api_client: client.ApiClient, obj: dict, reason: str, message: str,
                     type_: str = "Normal", component: str = "hean") -> None:
    """Post a core/v1 Event about ``obj`` (a custom resource dict).

    ``reason`` is CamelCase; ``message`` must never contain credentials. Failures are
    logged, not raised: an Event is best effort.
    """
    meta = obj.get("metadata", {})
    ts = datetime.now(timezone.utc)
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta.get('name', 'obj')}.", namespace=meta.get("namespace")),
        involved_object=client.V1ObjectReference(
            api_version=obj.get("apiVersion"), kind=obj.get("kind"), name=meta.get("name"),
            namespace=meta.get("namespace"), uid=meta.get("uid"), resource_version=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message[:1024],
        type=type_,
        first_timestamp=ts,
        last_timestamp=ts,
        count=1,
        source=client.V1EventSource(component=component),
        reporting_component=component,
        reporting_instance=os.environ.get("HEAN_POD_NAME", component),
    )
    try:
        await client.CoreV1Api(api_client).create_namespaced_event(meta.get("namespace"), body)
    except Exception as e:  # noqa: BLE001 - best effort
        log.warning("could not post Event %s on %s: %r", reason, meta.get("name"), e)
