"""LISTs decoded as plain JSON: through the official client's raw request path, page by page.

The dynamic client wraps every item of a LIST in ResourceInstance objects and back into dicts;
for thousands of objects that cost more than the server's answer. Here the client still does
configuration, authentication and the request; the body is parsed once, with orjson, and a
large collection comes in pages of `PAGE_SIZE` (limit/continue), so no single answer is huge.
"""
from __future__ import annotations

from typing import Any

import orjson
from kubernetes.client.rest import ApiException

from reconciler.kube.client import Cluster

PAGE_SIZE = 500
# The kinds the reconciler renders (and Namespace), so LISTs need no discovery.
PLURALS = {"Secret": "secrets", "ConfigMap": "configmaps", "Namespace": "namespaces",
           "SandboxTemplate": "sandboxtemplates", "Sandbox": "sandboxes", "SandboxWarmPool": "sandboxwarmpools"}
JSON = "application/json"
# JSON is YAML: the server takes an apply configuration written as JSON under this type.
APPLY_PATCH = "application/apply-patch+yaml"
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_ONLY_ONE = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


def collection_path(cluster: Cluster, api_version: str, kind: str, namespace: str | None = None) -> str:
    """The URL path of a kind's collection, in one namespace or (None) all of them."""
    plural = PLURALS.get(kind) or cluster.resource(api_version, kind).name
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def list_items(cluster: Cluster, api_version: str, kind: str, *, namespace: str | None = None,
               label_selector: str | None = None, metadata_only: bool = False,
               page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
    """Every item of the collection, each with apiVersion and kind set (a LIST leaves them out).

    With metadata_only the server sends PartialObjectMetadata (no spec, data or status).
    Raises ApiException as the client would, after its retries; a continue token that expired
    mid-way (410) starts the listing over, so no item is returned twice.
    """
    return list_versioned(cluster, api_version, kind, namespace=namespace, label_selector=label_selector,
                          metadata_only=metadata_only, page_size=page_size)[0]


def list_versioned(cluster: Cluster, api_version: str, kind: str, *, namespace: str | None = None,
                   label_selector: str | None = None, metadata_only: bool = False,
                   page_size: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], str]:
    """`list_items`, and the resourceVersion of the snapshot the pages came from (to watch from)."""
    path = collection_path(cluster, api_version, kind, namespace)
    token: str | None = None
    items: list[dict[str, Any]] = []
    version = ""
    while True:
        query: list[tuple[str, Any]] = [("limit", page_size)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if token:
            query.append(("continue", token))
        try:
            page = cluster.call(lambda q=query: _get(cluster, path, q, METADATA_ONLY if metadata_only else JSON))
        except ApiException as error:
            if error.status == 410 and token:
                token, items = None, []  # the snapshot the pages came from is gone: list again from the start
                continue
            raise
        if not token:
            version = (page.get("metadata") or {}).get("resourceVersion") or ""
        for item in page.get("items") or ():
            if not metadata_only:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
            items.append(item)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items, version


def _get(cluster: Cluster, path: str, query: list[tuple[str, Any]], accept: str) -> dict[str, Any]:
    return _request(cluster, "GET", path, query, {"Accept": accept})


def _request(cluster: Cluster, method: str, path: str, query: list[tuple[str, Any]], headers: dict[str, str],
             body: str | None = None) -> dict[str, Any]:
    """One request through the client (configuration, authentication), its JSON answer decoded with orjson."""
    api = cluster.api
    method, url, header_params, payload, _ = api.param_serialize(
        method, path, query_params=query, header_params=headers, body=body, auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=header_params, body=payload,
                            _request_timeout=cluster.timeout)
    answer = response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    return orjson.loads(answer)


def apply_object(cluster: Cluster, api_version: str, kind: str, body: dict[str, Any], *, field_manager: str,
                 force: bool, dry_run: bool) -> dict[str, Any]:
    """Server-side apply of one object through the client's raw request path, the answer decoded once with
    orjson: the dynamic client would wrap it in ResourceInstance objects and copy it back into dicts."""
    meta = body["metadata"]
    path = f"{collection_path(cluster, api_version, kind, meta.get('namespace'))}/{meta['name']}"
    query: list[tuple[str, Any]] = [("fieldManager", field_manager)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return _request(cluster, "PATCH", path, query, {"Accept": JSON, "Content-Type": APPLY_PATCH},
                    body=orjson.dumps(body).decode())


def get_metadata(cluster: Cluster, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One object's metadata (PartialObjectMetadata); None when it does not exist (404)."""
    path = f"{collection_path(cluster, api_version, kind, namespace)}/{name}"
    try:
        return cluster.call(lambda: _get(cluster, path, [], METADATA_ONLY_ONE))
    except ApiException as error:
        if error.status == 404:
            return None
        raise
