"""hean.kube.SharedClientWatch: same state as upstream's Watch, no throw-away client."""

import asyncio

from kubernetes_asyncio import client, watch

from hean.kube import SharedClientWatch


def test_shared_client_watch_sets_every_attribute_upstream_sets():
    async def attrs():
        up = watch.Watch()
        try:
            names = set(vars(up))
        finally:
            await up._api_client.close()
        api = client.ApiClient()
        try:
            ours = SharedClientWatch(api)
            return names, set(vars(ours)), ours._api_client is api
        finally:
            await api.close()

    upstream, ours, shared = asyncio.run(attrs())
    assert upstream == ours, f"kubernetes_asyncio.watch.Watch.__init__ changed: {upstream ^ ours}"
    assert shared


def test_closing_the_watch_leaves_the_shared_client_open():
    async def run():
        api = client.ApiClient()
        try:
            w = SharedClientWatch(api)
            w.stream(client.CustomObjectsApi(api).list_namespaced_custom_object, "hean.io", "v1alpha1", "ns", "x")
            await w.close()
            return api.rest_client.pool_manager.closed
        finally:
            await api.close()

    assert asyncio.run(run()) is False
