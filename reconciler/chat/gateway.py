"""The LiteLLM gateway as the chat endpoint calls it: OpenAI-compatible chat completions over HTTP.

Every failure becomes a GatewayError with the status the caller should get (502, or 504 for a
timeout) and a message that names the gateway and never contains its key. aiohttp rather than
httpx: this call runs on every chat request, and aiohttp's client costs a fraction of the CPU.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

_JSON = {"Content-Type": "application/json"}
# Pauses before trying again to connect: a gateway pod being replaced refuses connections for a
# moment. Only connecting is tried again (the request has not left then); all within the timeout.
CONNECT_RETRIES = (0.1, 0.5)
_NOT_RETRIED = (aiohttp.ClientSSLError, aiohttp.ClientProxyConnectionError)  # asking again gives the same answer


class GatewayError(Exception):
    """`reason` is a metrics label: unreachable, timeout, status or protocol."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


class UpstreamStream:
    """An open streamed completion: iterate `chunks()`, then `aclose()` (also after an error)."""

    def __init__(self, gateway: Gateway, response: aiohttp.ClientResponse) -> None:
        self._gateway, self._response = gateway, response

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        gateway = self._gateway
        try:
            async for raw in self._response.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                chunk = orjson.loads(data)
                if "error" in chunk:
                    raise GatewayError(502, gateway.scrub(
                        f"the LiteLLM gateway failed during the reply: {_error_text(chunk)}"), "status")
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise GatewayError(504, f"the LiteLLM gateway sent nothing for {gateway.timeout:g}s during the reply",
                               "timeout") from None
        except aiohttp.ClientError as error:
            raise GatewayError(502, gateway.scrub(
                f"the connection to the LiteLLM gateway broke during the reply: {error!r}"), "protocol") from None
        except ValueError:
            raise GatewayError(502, "the LiteLLM gateway sent a malformed stream event", "protocol") from None

    async def aclose(self) -> None:
        self._response.close()


class Gateway:
    """Create inside the event loop that uses it (aiohttp sessions belong to one loop)."""

    def __init__(self, base_url: str, key: str | None, *, timeout: float = 120.0, keepalive: float = 4.0,
                 max_connections: int = 256) -> None:
        base = base_url.rstrip("/")
        self.root = base.removesuffix("/v1")
        self.completions_url = f"{self.root}/v1/chat/completions"
        self.key, self.timeout = key, timeout
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # sock_read bounds each wait for data: the whole answer, or the next event of a stream.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=min(timeout, 5.0), sock_read=timeout)
        # An idle connection is reused only while younger than `keepalive`: one the gateway is closing at
        # that moment (LiteLLM's server closes them after 5 s idle) would fail the request sent on it.
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=self._timeout,
            connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections,
                                           keepalive_timeout=keepalive))

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        payload = orjson.dumps(body)
        for pause in CONNECT_RETRIES:
            try:
                return await self._session.post(self.completions_url, data=payload, headers=_JSON)
            except aiohttp.ClientConnectorError as error:
                if isinstance(error, _NOT_RETRIED):
                    raise
            await asyncio.sleep(pause)
        return await self._session.post(self.completions_url, data=payload, headers=_JSON)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                async with await self._post(body) as response:
                    content = await response.read()
                    status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            raise self._failure(error) from None
        if status >= 400:
            raise self._status_error(status, content)
        try:
            data: dict[str, Any] = orjson.loads(content)
            data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GatewayError(502, "the LiteLLM gateway answered with something that is not a chat completion",
                               "protocol") from None
        return data

    async def stream(self, body: dict[str, Any]) -> UpstreamStream:
        """Open a streamed completion; errors before the first byte are raised here."""
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._post({**body, "stream": True})
        except (TimeoutError, aiohttp.ClientError) as error:
            raise self._failure(error) from None
        if response.status >= 400:
            try:
                content = await response.read()
            except aiohttp.ClientError:
                content = b""
            response.close()
            raise self._status_error(response.status, content)
        return UpstreamStream(self, response)

    async def check(self) -> str | None:
        """None when the gateway answers its liveness probe; otherwise what is wrong."""
        try:
            async with self._session.get(f"{self.root}/health/liveliness",
                                         timeout=aiohttp.ClientTimeout(total=2.0)) as response:
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            return self.scrub(f"LiteLLM gateway at {self.root} unreachable: {error.__class__.__name__}")
        if status >= 500:
            return f"LiteLLM gateway at {self.root} answered HTTP {status}"
        return None

    async def aclose(self) -> None:
        await self._session.close()

    def _failure(self, error: BaseException) -> GatewayError:
        if isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
            retried = isinstance(error, aiohttp.ClientConnectorError) and not isinstance(error, _NOT_RETRIED)
            tried = f"; tried {len(CONNECT_RETRIES) + 1} times" if retried else ""
            return GatewayError(502, self.scrub(f"the LiteLLM gateway at {self.root} is unreachable "
                                                f"({error.__class__.__name__}: {error}{tried})"), "unreachable")
        if isinstance(error, (TimeoutError, aiohttp.ServerTimeoutError)):
            return GatewayError(504, f"the LiteLLM gateway did not answer within {self.timeout:g}s", "timeout")
        return GatewayError(502, self.scrub(f"the connection to the LiteLLM gateway broke: {error!r}"), "protocol")

    def _status_error(self, status: int, content: bytes) -> GatewayError:
        try:
            detail = _error_text(orjson.loads(content))
        except ValueError:
            detail = content.decode("utf-8", "replace")
        detail = " ".join(detail.split())[:500]
        hint = " (check the gateway key, LITELLM_API_KEY)" if status in (401, 403) else ""
        return GatewayError(502, self.scrub(f"the LiteLLM gateway answered HTTP {status}: {detail}{hint}"), "status")


def _error_text(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or data["error"])
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return str(data)
