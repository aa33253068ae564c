"""Connecting to a cluster through the official client, and calling it with retries."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from reconciler.errors import ConfigError

# Up to 64 writers (--concurrency) and the kinds listed at once each keep a connection.
POOL_CONNECTIONS = 72
FIELD_MANAGER = "agent-reconciler"
REFRESH_EVERY = 1.0  # seconds between runs of the client's token refresh hook
RETRIED = {429, 500, 502, 503, 504}
T = TypeVar("T")


@dataclass
class RateLimit:
    """A token bucket: at most `burst` requests at once, refilled at `qps` per second (0: unlimited)."""

    qps: float = 0.0
    burst: int = 10
    _tokens: float = 0.0
    _stamp: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> None:
        if self.qps <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if not self._stamp:
                self._tokens, self._stamp = float(self.burst), now
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
            self._tokens -= 1
            delay = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if delay:
            time.sleep(delay)


class CountingApiClient(client.ApiClient):
    """The official API client, counting the requests it sends by verb (GET, LIST, WATCH, PATCH, ...),
    for the benchmarks and tests: what a round costs the server is the number to watch."""

    def __init__(self, configuration: client.Configuration | None = None) -> None:
        super().__init__(configuration)
        self.requests: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        query = urlsplit(url).query
        verb = method
        if method == "GET" and "watch=true" in query:
            verb = "WATCH"
        elif method == "GET" and ("limit=" in query or "labelSelector=" in query):
            verb = "LIST"  # every LIST this package makes is paged
        with self._count_lock:
            self.requests[verb] += 1
        return super().call_api(method, url, *args, **kwargs)


@dataclass
class Cluster:
    """An API client and the resources discovered on it (discovery runs once per kind)."""

    api: client.ApiClient
    attempts: int = 5
    backoff: float = 0.2
    limit: RateLimit = field(default_factory=RateLimit)
    timeout: float = 30.0  # seconds per request; pass as _request_timeout
    _dynamic: dynamic.DynamicClient | None = None
    _resources: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        with self._lock:  # applies run in threads; discover each kind once
            if key not in self._resources:
                if self._dynamic is None:
                    self._dynamic = self.call(lambda: dynamic.DynamicClient(self.api))
                self._resources[key] = self.call(
                    lambda: self._dynamic.resources.get(api_version=api_version, kind=kind))
            return self._resources[key]

    def call(self, function: Callable[[], T]) -> T:
        """`function()`, retried with backoff and jitter on 429, 5xx, timeouts and dropped connections."""
        for attempt in range(1, self.attempts + 1):
            self.limit.wait()
            try:
                return function()
            except ApiException as error:
                if error.status not in RETRIED or attempt == self.attempts:
                    raise
                wait = _retry_after(error) or self.backoff * 2 ** (attempt - 1)
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                if attempt == self.attempts:
                    raise
                wait = self.backoff * 2 ** (attempt - 1)
            time.sleep(wait * (0.5 + random.random()))  # noqa: S311 - jitter, not security
        raise AssertionError("unreachable")


class ThrottledRefresh:
    """The client's token refresh hook, run at most once every `every` seconds.

    The client runs the hook before every request. The kubeconfig's and the service account's hooks
    re-read a token only when it is about to expire (a kubeconfig's 5 minutes early, a service
    account's every minute), but each run also sets the host again, which reads the proxy settings
    of the whole environment (measured: ~60 us of the ~420 us of client CPU a request costs). Each
    run also installs a new hook of theirs, which this one takes in and stands in front of again.
    """

    def __init__(self, hook: Callable[[Any], None], every: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hook, self.every, self._clock = hook, every, clock
        self._due = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, configuration: client.Configuration) -> None:
        with self._lock:  # one refresh at a time; the others go on with the token it leaves
            now = self._clock()
            if now < self._due:
                return
            self._due = now + self.every
            self.hook(configuration)
            if configuration.refresh_api_key_hook is not self:
                self.hook = configuration.refresh_api_key_hook
                configuration.refresh_api_key_hook = self


def _retry_after(error: ApiException) -> float | None:
    value = (error.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def connect(*, kubeconfig: str | None, context: str | None = None, in_cluster: bool = False,
            qps: float = 0.0, burst: int = 10, timeout: float = 30.0) -> Cluster:
    """A Cluster from a kubeconfig file or the pod's service account. Raises ConfigError with the reason."""
    try:
        configuration = client.Configuration()
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        # A connection for each writer and lister at once, whatever the CPU count (the default is 5 per CPU).
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, POOL_CONNECTIONS)
        if configuration.refresh_api_key_hook is not None:
            configuration.refresh_api_key_hook = ThrottledRefresh(configuration.refresh_api_key_hook, REFRESH_EVERY)
        api = CountingApiClient(configuration)
    except (ConfigException, OSError, TypeError) as error:
        where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig}"
        raise ConfigError(f"cannot load the {where}: {error}") from None
    api.configuration.retries = False  # retries are ours, with backoff and jitter
    api.user_agent = "agent-reconciler"
    return Cluster(api, limit=RateLimit(qps=qps, burst=burst), timeout=timeout)
