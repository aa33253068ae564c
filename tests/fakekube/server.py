"""A fake Kubernetes API server over HTTP on loopback.

It behaves like a real one where the reconciler depends on it: discovery for core/v1 and the
agent-sandbox groups; create, get, list, replace, patch (merge and server-side apply), delete;
managedFields, field-manager conflicts and force; dryRun=All that never persists;
resourceVersion, generation and uid; CRD defaults; label selectors; watch; validation of custom
resources against each CRD's openAPIV3Schema; and injected faults (status codes, delays).

The CRDs come from crd_schema (AGENT_SANDBOX_CRDS). Without them the same kinds are served, but
custom resources are neither defaulted nor validated.
"""
from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import crd_schema
import yaml

from fakekube import fields
from fakekube.selectors import matches, parse_selector


@dataclass(frozen=True)
class Resource:
    group: str  # "" for core
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Fault:
    """Answer matching requests with `status` (and/or wait `delay` seconds first), `times` times."""

    method: str
    path: str  # regular expression searched in the request path
    status: int | None = None
    delay: float = 0.0
    times: int = 1
    retry_after: int | None = None
    query: str = ""  # regular expression searched in the query string
    compact: bool = False  # compact the store (see FakeKube.compact) before answering, instead of failing


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers = details or {}, headers or {}

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details, "code": self.code}


CORE = [Resource("", ("v1",), "namespaces", "Namespace", False), Resource("", ("v1",), "secrets", "Secret", True),
        Resource("", ("v1",), "configmaps", "ConfigMap", True),
        Resource("coordination.k8s.io", ("v1",), "leases", "Lease", True)]


# The agent-sandbox kinds as the upstream CRDs define them (same order, storage version first), for
# discovery when the CRDs are absent; test_fakekube checks that the two agree when they are present.
_VERSIONS, _EXT = ("v1beta1", "v1alpha1"), "extensions.agents.x-k8s.io"
AGENT_SANDBOX = (Resource("agents.x-k8s.io", _VERSIONS, "sandboxes", "Sandbox", True),
                 Resource(_EXT, _VERSIONS, "sandboxclaims", "SandboxClaim", True),
                 Resource(_EXT, _VERSIONS, "sandboxtemplates", "SandboxTemplate", True),
                 Resource(_EXT, _VERSIONS, "sandboxwarmpools", "SandboxWarmPool", True))


@cache
def crd_resources() -> tuple[Resource, ...]:
    """The kinds of the agent-sandbox CRDs, with their schemas (so objects are defaulted and validated)."""
    resources = []
    for crd in crd_schema.crd_documents():
        spec = crd["spec"]
        versions = tuple(v["name"] for v in spec["versions"] if v.get("served", True))
        schemas = {v["name"]: v["schema"]["openAPIV3Schema"] for v in spec["versions"]}
        resources.append(Resource(spec["group"], versions, spec["names"]["plural"], spec["names"]["kind"],
                                  spec["scope"] == "Namespaced", schemas))
    return tuple(resources)


def agent_sandbox_resources(crds: bool = True) -> tuple[Resource, ...]:
    """From the CRDs when they are found and `crds`, else the built-in kinds without schemas (no validation)."""
    return crd_resources() if crds and crd_schema.available() else AGENT_SANDBOX


class FakeKube:
    """Start with `with FakeKube() as kube:`; `kube.url`, `kube.kubeconfig(path)`, `kube.requests`.

    `crds=False` serves the agent-sandbox kinds without their schemas even when the CRDs are found.
    """

    def __init__(self, crds: bool = True) -> None:
        self.resources = [*CORE, *agent_sandbox_resources(crds)]
        self.validates = any(r.schemas for r in self.resources)
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # (group, plural, ns, name)
        self.owners: dict[tuple[str, str, str, str], dict[tuple[str, str], set[fields.Path]]] = {}
        self.revision = 1000
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.events: list[tuple[int, str, tuple[str, str], dict[str, Any]]] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, query)
        self.credentials: list[str] = []  # each request's Authorization header, as a server authenticates it
        # Bytes of every answer body, as a real server would charge for them.
        self.sent_bytes = 0
        # Revisions at or below this one are compacted away: continue tokens and watches from them get 410.
        self.compacted = 0
        self.bookmark_interval = 1.0
        # Bumped to end every open watch, as when the connection to a real server drops.
        self.watch_generation = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FakeKube:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }))
        return path

    # --- test helpers ------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def count(self, method: str | None = None, path: str = "") -> int:
        return sum(1 for m, p, _ in self.requests if (method is None or m == method) and re.search(path, p))

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((group, plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def create_namespace(self, name: str) -> None:
        self.write("", "namespaces", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                   manager="test", operation="Update")

    def edit(self, group: str, plural: str, namespace: str, name: str, change: dict[str, Any],
             manager: str = "kubectl-edit") -> dict[str, Any]:
        """What `kubectl edit` does: an Update by another manager, which takes the fields it sets."""
        with self.lock:
            current = copy.deepcopy(self.objects[(group, plural, namespace, name)])
            _merge(current, change)
            return self.write(group, plural, namespace, current, manager=manager, operation="Update")

    def drop_watches(self) -> None:
        """End every open watch (a dropped connection); watchers then watch again, or list again on 410."""
        with self.lock:
            self.watch_generation += 1
            self.changed.notify_all()

    def compact(self) -> None:
        """What etcd compaction does: every earlier resourceVersion is gone (410 Gone for lists and watches)."""
        with self.lock:
            self.compacted = self.revision
            self.revision += 1  # what comes next is after the compaction
            self.events = []

    def set_status(self, group: str, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            obj = self.objects[(group, plural, namespace, name)]
            obj["status"] = copy.deepcopy(status)
            self._bump(obj, "MODIFIED", group, plural)

    # --- the store -----------------------------------------------------------------------------
    def _bump(self, obj: dict[str, Any], event: str, group: str, plural: str) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.events.append((self.revision, event, (group, plural), copy.deepcopy(obj)))
        self.changed.notify_all()

    def write(self, group: str, plural: str, namespace: str, obj: dict[str, Any], *, manager: str,
              operation: str, dry_run: bool = False, expected_version: str | None = None) -> dict[str, Any]:
        """Create or replace `obj` whole (POST/PUT, and merge patches once merged)."""
        resource = self.resource(group, plural)
        name = obj.get("metadata", {}).get("name", "")
        key = (group, plural, namespace, name)
        with self.lock:
            current = self.objects.get(key)
            if expected_version and current and current["metadata"]["resourceVersion"] != expected_version:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {plural}.{group or "core"} '
                               f'"{name}": the object has been modified; please apply your changes to the '
                               "latest version and try again")
            owners = copy.deepcopy(self.owners.get(key, {}))
            changed = fields.leaf_paths(obj) if current is None else {
                p for p in fields.leaf_paths(obj) if fields.get(current, p) != fields.get(obj, p)}
            for held in owners.values():
                held -= changed
            owners.setdefault((manager, operation), set()).update(changed)
            return self._store(resource, key, obj, current, owners, dry_run)

    def apply(self, group: str, plural: str, namespace: str, name: str, config: dict[str, Any], *,
              manager: str, force: bool, dry_run: bool) -> dict[str, Any]:
        resource = self.resource(group, plural)
        key = (group, plural, namespace, name)
        with self.lock:
            current = self.objects.get(key)
            owners = copy.deepcopy(self.owners.get(key, {}))
            applied = fields.leaf_paths(config)
            conflicts = []
            for (other, operation), held in owners.items():
                if other == manager and operation == "Apply":
                    continue
                for path in sorted(held & applied):
                    if current is not None and fields.get(current, path) != fields.get(config, path):
                        conflicts.append((other, path))
            if conflicts and not force:
                causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{m}": .{".".join(p)}',
                           "field": "." + ".".join(p)} for m, p in conflicts]
                raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): " + "; ".join(
                    c["message"] for c in causes), {"causes": causes, "name": name, "kind": resource.kind})
            for held in (h for (m, op), h in owners.items() if not (m == manager and op == "Apply")):
                held -= {p for _, p in conflicts} if force else set()
            result = copy.deepcopy(current) if current else {}
            previous = owners.get((manager, "Apply"), set())
            others = set().union(*(h for (m, op), h in owners.items() if not (m == manager and op == "Apply")))
            for path in previous - applied - others:
                fields.remove(result, path)
            for path in applied:
                fields.put(result, path, fields.get(config, path))
            for top in ("apiVersion", "kind"):
                result[top] = config[top]
            result.setdefault("metadata", {}).update(name=name)
            if namespace:
                result["metadata"]["namespace"] = namespace
            owners[(manager, "Apply")] = applied
            return self._store(resource, key, result, current, owners, dry_run)

    def _store(self, resource: Resource, key: tuple[str, str, str, str], obj: dict[str, Any],
               current: dict[str, Any] | None, owners: dict[tuple[str, str], set[fields.Path]],
               dry_run: bool) -> dict[str, Any]:
        group, plural, namespace, name = key
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", _api_version(resource))
        obj.setdefault("kind", resource.kind)
        if resource.kind == "Secret" and "stringData" in obj:
            # Write-only convenience field: folded into data, as the server does.
            data = obj.setdefault("data", {}) or {}
            data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in obj.pop("stringData").items()})
            obj["data"] = data
        if resource.namespaced and ("", "namespaces", "", namespace) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name or "") or len(name) > 253:
            raise ApiError(422, "Invalid", f'{resource.kind} "{name}" is invalid: metadata.name: Invalid value')
        version = obj.get("apiVersion", "").rsplit("/", 1)[-1]
        if resource.schemas:
            _default(obj, resource.schemas[version])
            problems = crd_schema.errors(obj)
            if problems:
                raise ApiError(422, "Invalid", f'{resource.kind}.{group} "{name}" is invalid: ' + "; ".join(problems),
                               {"name": name, "kind": resource.kind,
                                "causes": [{"reason": "FieldValueInvalid", "message": p} for p in problems]})
        meta = obj.setdefault("metadata", {})
        meta["name"] = name
        if resource.namespaced:
            meta["namespace"] = namespace
        # As a real server: custom resources count their spec's changes in generation; core kinds
        # without a spec (Secret, ConfigMap, Namespace) have none.
        counts_generation = bool(group) and group != "coordination.k8s.io"
        if current is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            if counts_generation:
                meta["generation"] = 1
        else:
            for keep in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if keep in current["metadata"]:
                    meta[keep] = current["metadata"][keep]
            if "status" in current and "status" not in obj:
                obj["status"] = current["status"]
            if counts_generation and obj.get("spec") != current.get("spec"):
                meta["generation"] = current["metadata"]["generation"] + 1
        meta["managedFields"] = [
            {"manager": m, "operation": op, "apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1",
             "fieldsV1": fields.fields_v1(paths), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            for (m, op), paths in sorted(owners.items()) if paths]
        if dry_run:
            if current is None:
                meta.pop("resourceVersion", None)
            return obj
        unchanged = current is not None and _without_bookkeeping(current) == _without_bookkeeping(obj)
        if unchanged:
            # A no-op write keeps the resourceVersion, as a real server does.
            return copy.deepcopy(current)
        self.objects[key] = obj
        self.owners[key] = owners
        self._bump(obj, "ADDED" if current is None else "MODIFIED", group, plural)
        return copy.deepcopy(obj)

    def delete(self, group: str, plural: str, namespace: str, name: str, *, dry_run: bool) -> dict[str, Any]:
        key = (group, plural, namespace, name)
        with self.lock:
            obj = self.objects.get(key)
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural}.{group or "core"} "{name}" not found',
                               {"name": name, "kind": plural})
            if dry_run:
                return copy.deepcopy(obj)
            del self.objects[key]
            self.owners.pop(key, None)
            self._bump(obj, "DELETED", group, plural)
            return copy.deepcopy(obj)

    def list(self, group: str, plural: str, namespace: str | None, selector: str | None, *, limit: int = 0,
             token: str | None = None) -> dict[str, Any]:
        """Items in key order; with `limit`, a page and a continue token for the next (as a real server)."""
        requirements = parse_selector(selector or "")
        after: tuple[str, str] | None = None
        with self.lock:
            if token:
                revision, after = _read_token(token)
                if revision <= self.compacted:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the continue parameter.")
            keys = [k for k in sorted(self.objects) if k[:2] == (group, plural)
                    and (namespace is None or k[2] == namespace) and (after is None or (k[2], k[3]) > after)
                    and matches(requirements, self.objects[k]["metadata"].get("labels") or {})]
            page = keys[:limit] if limit else keys
            metadata: dict[str, Any] = {"resourceVersion": str(self.revision)}
            if limit and len(keys) > limit:
                metadata["continue"] = _token(self.revision, page[-1][2:])
                metadata["remainingItemCount"] = len(keys) - limit
            return {"items": [copy.deepcopy(self.objects[k]) for k in page], "metadata": metadata}

    def resource(self, group: str, plural: str) -> Resource:
        for resource in self.resources:
            if (resource.group, resource.plural) == (group, plural):
                return resource
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def watch(self, group: str, plural: str, namespace: str | None, selector: str | None, since: int,
              timeout: float, bookmarks: bool = False) -> Iterator[dict[str, Any]]:
        requirements = parse_selector(selector or "")
        deadline = time.monotonic() + timeout
        position = since
        if since < self.compacted:
            yield {"type": "ERROR", "object": ApiError(410, "Expired", f"too old resource version: {since} "
                                                                       f"({self.compacted})").status()}
            return
        bookmarked = time.monotonic()
        generation = self.watch_generation
        while True:
            with self.lock:
                if self.watch_generation != generation:
                    return
                pending = [e for e in self.events if e[0] > position and e[2] == (group, plural)]
                if not pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    if bookmarks and time.monotonic() - bookmarked >= self.bookmark_interval:
                        # Tells the watcher how far it has seen, so a restart needs no new LIST.
                        bookmarked, position = time.monotonic(), self.revision
                        yield {"type": "BOOKMARK", "object": {"kind": "Bookmark", "metadata": {
                            "resourceVersion": str(self.revision)}}}
                        continue
                    self.changed.wait(min(left, 0.5, self.bookmark_interval if bookmarks else 0.5))
                    continue
            for revision, kind, _, obj in pending:
                position = revision
                if (namespace is None or obj["metadata"].get("namespace") == namespace) and matches(
                        requirements, obj["metadata"].get("labels") or {}):
                    yield {"type": kind, "object": obj}

    # --- HTTP --------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        kube = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # small writes would otherwise wait for delayed ACKs (~40 ms)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with kube.lock:
                    kube.requests.append((method, parts.path, parts.query))
                    kube.credentials.append(self.headers.get("Authorization", ""))
                    fault = next((f for f in kube.faults if f.times > 0 and f.method in (method, "*")
                                  and re.search(f.path, parts.path) and re.search(f.query, parts.query)), None)
                    if fault:
                        fault.times -= 1
                        if fault.compact:
                            kube.compact()
                try:
                    if fault and fault.delay:
                        time.sleep(fault.delay)
                    if fault and fault.status:
                        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                        raise ApiError(fault.status, "InternalError" if fault.status >= 500 else "TooManyRequests",
                                       f"injected fault {fault.status}", headers=headers)
                    if query.get("watch") in ("true", "1"):
                        self._watch(parts.path, query)
                        return
                    code, answer = route(kube, method, parts.path, query, body,
                                         self.headers.get("Content-Type", ""))
                    self._send(code, _as_requested(answer, self.headers.get("Accept", "")))
                except ApiError as error:
                    self._send(error.code, error.status(), error.headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                except Exception as error:  # noqa: BLE001 - a bug in the fake must reach the test as a 500
                    self._send(500, ApiError(500, "InternalError", f"fake server error: {error!r}").status())

            def _send(self, code: int, answer: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(answer).encode()
                with kube.lock:
                    kube.sent_bytes += len(data)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _watch(self, path: str, query: dict[str, str]) -> None:
                group, _version, plural, namespace, _name = parse_path(path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                since = int(query.get("resourceVersion") or kube.revision)
                for event in kube.watch(group, plural, namespace, query.get("labelSelector"), since,
                                        float(query.get("timeoutSeconds", 30)),
                                        bookmarks=query.get("allowWatchBookmarks") == "true"):
                    line = json.dumps(event).encode() + b"\n"
                    with kube.lock:
                        kube.sent_bytes += len(line)
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        return Handler


def parse_path(path: str) -> tuple[str, str, str, str | None, str | None]:
    """(group, version, plural, namespace, name) of a resource path."""
    match = re.fullmatch(r"/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
                         r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/status)?", path)
    if not match:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if match["cv"]:
        group, version = "", "v1"
    else:
        group, version = match["g"], match["v"]
    return group, version, match["plural"], match["ns"], match["name"]


def route(kube: FakeKube, method: str, path: str, query: dict[str, str], body: bytes,
          content_type: str) -> tuple[int, dict[str, Any]]:
    if path == "/version":
        return 200, {"major": "1", "minor": "36", "gitVersion": "v1.36.0-fake", "platform": "linux/amd64"}
    if path in ("/api", "/api/"):
        return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path in ("/apis", "/apis/"):
        groups = {}
        for r in kube.resources:
            if r.group:
                groups[r.group] = r.versions
        return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
             "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()]}
    match = re.fullmatch(r"/api/v1|/apis/([^/]+)/([^/]+)", path)
    if match:
        group, version = (match[1] or "", match[2] or "v1")
        listed = [r for r in kube.resources if r.group == group and version in r.versions]
        if not listed:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}".lstrip("/"),
                     "resources": [{"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                                    "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update",
                                                              "watch"]} for r in listed]}
    if path == "/api/v1/namespaces" or re.fullmatch(r"/api/v1/namespaces/[^/]+", path):
        name = path.rsplit("/", 1)[-1] if path != "/api/v1/namespaces" else None
        return _resource_call(kube, method, "", "namespaces", "", name, query, body, content_type, cluster=True)
    group, version, plural, namespace, name = parse_path(path)
    resource = kube.resource(group, plural)
    if version not in resource.versions:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if resource.namespaced and namespace is None and method != "GET":
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return _resource_call(kube, method, group, plural, namespace, name, query, body, content_type)


def _resource_call(kube: FakeKube, method: str, group: str, plural: str, namespace: str | None,
                   name: str | None, query: dict[str, str], body: bytes, content_type: str,
                   cluster: bool = False) -> tuple[int, dict[str, Any]]:
    resource = kube.resource(group, plural)
    ns = "" if cluster or not resource.namespaced else namespace
    dry_run = query.get("dryRun") == "All"
    manager = query.get("fieldManager", "unknown")
    if method == "GET" and name is None:
        listed = kube.list(group, plural, None if cluster else namespace, query.get("labelSelector"),
                           limit=int(query.get("limit") or 0), token=query.get("continue"))
        listed.update(kind=f"{resource.kind}List", apiVersion=_api_version(resource))
        return 200, listed
    if method == "GET":
        obj = kube.get(group, plural, ns or "", name)
        if obj is None:
            raise ApiError(404, "NotFound", f'{plural}.{group or "core"} "{name}" not found',
                           {"name": name, "kind": plural})
        return 200, obj
    if method == "DELETE":
        return 200, kube.delete(group, plural, ns or "", name, dry_run=dry_run)
    try:
        document = yaml.safe_load(body) if body else {}
    except yaml.YAMLError as error:
        raise ApiError(400, "BadRequest", f"invalid body: {error}") from None
    if method == "POST":
        with kube.lock:
            if kube.get(group, plural, ns or "", document.get("metadata", {}).get("name", "")) is not None:
                raise ApiError(409, "AlreadyExists", f'{plural}.{group or "core"} '
                               f'"{document["metadata"]["name"]}" already exists',
                               {"name": document["metadata"]["name"], "kind": plural})
            return 201, kube.write(group, plural, ns or "", document, manager=manager, operation="Update",
                                   dry_run=dry_run)
    if method == "PUT":
        with kube.lock:
            if kube.get(group, plural, ns or "", name) is None:
                raise ApiError(404, "NotFound", f'{plural}.{group or "core"} "{name}" not found')
            return 200, kube.write(group, plural, ns or "", document, manager=manager, operation="Update",
                                   dry_run=dry_run, expected_version=document.get("metadata", {})
                                   .get("resourceVersion"))
    if method == "PATCH" and content_type.startswith("application/apply-patch"):
        if "fieldManager" not in query:
            raise ApiError(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                           "value: is required for apply patch")
        return 200, kube.apply(group, plural, ns or "", name, document, manager=manager,
                               force=query.get("force") == "true", dry_run=dry_run)
    if method == "PATCH" and content_type.startswith(("application/merge-patch", "application/strategic-merge")):
        with kube.lock:
            current = kube.get(group, plural, ns or "", name)
            if current is None:
                raise ApiError(404, "NotFound", f'{plural}.{group or "core"} "{name}" not found')
            _merge(current, document)
            return 200, kube.write(group, plural, ns or "", current, manager=manager, operation="Update",
                                   dry_run=dry_run)
    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")


def _token(revision: int, after: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([revision, *after]).encode()).decode()


def _read_token(token: str) -> tuple[int, tuple[str, str]]:
    try:
        revision, namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise ApiError(400, "BadRequest", "continue key is not valid") from None
    return int(revision), (namespace, name)


def _as_requested(answer: dict[str, Any], accept: str) -> dict[str, Any]:
    """PartialObjectMetadata(List) when the client asks for metadata only, as a real server answers."""
    if "as=PartialObjectMetadata" not in accept or answer.get("kind") == "Status":
        return answer
    meta = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}
    if "items" not in answer:
        return {**meta, "metadata": answer["metadata"]}
    return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": answer["metadata"],
            "items": [{**meta, "metadata": item["metadata"]} for item in answer["items"]]}


def _api_version(resource: Resource) -> str:
    return f"{resource.group}/{resource.versions[0]}" if resource.group else "v1"


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _default(obj: Any, schema: dict[str, Any]) -> None:
    """Fill in the schema's defaults for absent fields of present objects, as the API server does."""
    if not isinstance(obj, dict) or schema.get("type") != "object":
        if isinstance(obj, list) and isinstance(schema.get("items"), dict):
            for item in obj:
                _default(item, schema["items"])
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in obj and "default" in sub:
            obj[name] = copy.deepcopy(sub["default"])
        if name in obj:
            _default(obj[name], sub)


def _without_bookkeeping(obj: dict[str, Any]) -> dict[str, Any]:
    trimmed = copy.deepcopy(obj)
    trimmed["metadata"].pop("managedFields", None)
    return trimmed
