"""Reading live state: one LIST per kind, selected by the ownership labels, never a GET per agent."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.kube.client import Cluster
from reconciler.render import MANAGED_BY, MANAGED_BY_LABEL, SOURCE_LABEL


def owner_selector(source: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{SOURCE_LABEL}={source}"


def list_owned(cluster: Cluster, kinds: Iterable[tuple[str, str]], source: str) -> list[dict[str, Any]]:
    """Every object of `kinds` ((apiVersion, kind) pairs) this source owns, in all namespaces."""
    objects: list[dict[str, Any]] = []
    for api_version, kind in kinds:
        resource = cluster.resource(api_version, kind)
        listed = cluster.call(lambda r=resource: r.get(label_selector=owner_selector(source),
                                                      _request_timeout=cluster.timeout))
        for item in listed.to_dict().get("items") or []:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            objects.append(item)
    return objects
