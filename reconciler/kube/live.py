"""Reading live state: one LIST per kind (paginated, plain JSON, the kinds at once), selected by the
ownership labels; never a GET per agent."""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reconciler.kube.client import Cluster
from reconciler.kube.listing import list_items
from reconciler.render import MANAGED_BY, MANAGED_BY_LABEL, SOURCE_LABEL


def owner_selector(source: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{SOURCE_LABEL}={source}"


def list_owned(cluster: Cluster, kinds: Iterable[tuple[str, str]], source: str) -> list[dict[str, Any]]:
    """Every object of `kinds` ((apiVersion, kind) pairs) this source owns, in all namespaces."""
    kinds = list(kinds)
    selector = owner_selector(source)
    with ThreadPoolExecutor(max_workers=len(kinds) or 1) as pool:
        listed = pool.map(lambda k: list_items(cluster, k[0], k[1], label_selector=selector), kinds)
        return [item for items in listed for item in items]
