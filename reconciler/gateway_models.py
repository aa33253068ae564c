"""What the LiteLLM gateway serves: the model names (GET /v1/models) and, where LiteLLM states them, each
model's context window and output limit (GET /model/info). One fetch per run, through urllib: two small
GETs do not need an HTTP client library, and `validate` stays light.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import ReconcilerError

# A gateway that does not answer its model list within this many seconds is as good as unreachable.
CATALOG_TIMEOUT = 10.0
KEY_HINT = "check the gateway key (LITELLM_API_KEY or --gateway-key-file)"


class GatewayUnavailable(ReconcilerError):
    """The gateway could not be asked (unreachable, refused the key, answered something else): exit 2."""


@dataclass(frozen=True)
class ServedModel:
    """A model name the gateway serves; limits are None where the gateway states none."""

    name: str
    context_window: int | None = None
    output_limit: int | None = None


@dataclass(frozen=True)
class Catalog:
    gateway: str  # the gateway's root URL, as shown to people
    models: dict[str, ServedModel] = field(default_factory=dict)
    has_info: bool = False  # whether /model/info answered (LiteLLM)

    def __contains__(self, name: object) -> bool:
        return name in self.models


def gateway_root(base_url: str) -> str:
    """The gateway's root, whether given with or without its /v1 (LITELLM_API_BASE is written both ways)."""
    return base_url.rstrip("/").removesuffix("/v1")


def fetch_catalog(base_url: str, key: str | None, *, timeout: float = CATALOG_TIMEOUT) -> Catalog:
    """Ask the gateway what it serves. Raises GatewayUnavailable, with what to fix and never the key."""
    root = gateway_root(base_url)
    listed = _get(root, "/v1/models", key, timeout)
    if listed is None:
        raise GatewayUnavailable(f"the LiteLLM gateway at {root} has no model list (GET /v1/models answered 404); "
                                 "check --gateway-url (or LITELLM_API_BASE)")
    try:
        entries = [e for e in listed["data"] if isinstance(e, dict) and isinstance(e.get("id"), str)]
    except (KeyError, TypeError):
        raise GatewayUnavailable(f"the LiteLLM gateway at {root} answered GET /v1/models with something that is "
                                 "not a model list; check --gateway-url (or LITELLM_API_BASE)") from None
    info = _get(root, "/model/info", key, timeout, optional=True)
    infos = info.get("data") if isinstance(info, dict) else None
    return catalog_of(root, entries, infos if isinstance(infos, list) else None)


def catalog_of(root: str, listed: Iterable[dict[str, Any]], infos: list[Any] | None) -> Catalog:
    """The catalog from the two answers. A name with several deployments gets the smallest limit any of
    them states: a request may reach any of them."""
    models = {e["id"]: _limits(e["id"], [e]) for e in listed}
    if infos is not None:
        by_name: dict[str, list[dict[str, Any]]] = {}
        for entry in infos:
            if isinstance(entry, dict) and isinstance(entry.get("model_name"), str):
                by_name.setdefault(entry["model_name"], []).append(entry.get("model_info") or {})
        for name, model in models.items():
            stated = _limits(name, by_name.get(name, []))
            models[name] = ServedModel(name, stated.context_window or model.context_window,
                                       stated.output_limit or model.output_limit)
    return Catalog(root, models, has_info=infos is not None)


def _limits(name: str, infos: list[dict[str, Any]]) -> ServedModel:
    def smallest(values: Iterable[Any]) -> int | None:
        numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        return min(numbers) if numbers else None

    context = smallest(i.get("max_input_tokens") for i in infos)
    # LiteLLM's max_tokens is its older name for the output limit, or the input limit when it knows no other.
    output = smallest(i.get("max_output_tokens") if i.get("max_output_tokens") else
                      (i.get("max_tokens") if not i.get("max_input_tokens") else None) for i in infos)
    return ServedModel(name, context, output)


def _get(root: str, path: str, key: str | None, timeout: float, *, optional: bool = False) -> Any:
    """The JSON of GET root+path; None for a 404 (or, when optional, any answer but a JSON 200)."""
    import urllib.error
    import urllib.request

    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(root + path, headers=headers)

    def scrub(text: str) -> str:
        return text.replace(key, "***") if key else text

    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the configured gateway
            body = answer.read()
    except urllib.error.HTTPError as error:
        if error.code == 404 or optional:
            return None
        detail = scrub(_detail(error.read()))
        if error.code in (401, 403):
            raise GatewayUnavailable(f"the LiteLLM gateway at {root} refused the key (HTTP {error.code} on GET "
                                     f"{path}: {detail}); {KEY_HINT}") from None
        raise GatewayUnavailable(f"the LiteLLM gateway at {root} answered HTTP {error.code} on GET {path}: "
                                 f"{detail}; check --gateway-url (or LITELLM_API_BASE) and the key "
                                 "(LITELLM_API_KEY or --gateway-key-file)") from None
    except (urllib.error.URLError, OSError) as error:
        if optional:
            return None
        reason = getattr(error, "reason", error)
        raise GatewayUnavailable(scrub(f"the LiteLLM gateway at {root} is unreachable ({reason}); check "
                                       "--gateway-url (or LITELLM_API_BASE) and that the gateway runs")) from None
    try:
        return json.loads(body)
    except ValueError:
        if optional:
            return None
        raise GatewayUnavailable(f"the LiteLLM gateway at {root} answered GET {path} with something that is not "
                                 "JSON; check --gateway-url (or LITELLM_API_BASE)") from None


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return " ".join(body.decode("utf-8", "replace").split())[:300] or "no detail"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return str(data)[:300]
