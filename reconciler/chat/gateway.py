"""The LiteLLM gateway as the chat endpoint calls it: OpenAI-compatible chat completions over HTTP.

Every failure becomes a GatewayError with the status the caller should get (502, or 504 for a
timeout) and a message that names the gateway and never contains its key.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


class GatewayError(Exception):
    """`reason` is a metrics label: unreachable, timeout, status or protocol."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


class UpstreamStream:
    """An open streamed completion: iterate `chunks()`, then `aclose()` (also after an error)."""

    def __init__(self, gateway: Gateway, response: httpx.Response) -> None:
        self._gateway, self._response = gateway, response

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise GatewayError(502, self._gateway.scrub(
                        f"the LiteLLM gateway failed during the reply: {_error_text(chunk)}"), "status")
                yield chunk
        except httpx.TimeoutException:
            raise GatewayError(504, f"the LiteLLM gateway sent nothing for {self._gateway.timeout:g}s "
                               "during the reply", "timeout") from None
        except httpx.TransportError as error:
            raise GatewayError(502, self._gateway.scrub(
                f"the connection to the LiteLLM gateway broke during the reply: {error!r}"), "protocol") from None
        except json.JSONDecodeError:
            raise GatewayError(502, "the LiteLLM gateway sent a malformed stream event", "protocol") from None

    async def aclose(self) -> None:
        await self._response.aclose()


class Gateway:
    def __init__(self, base_url: str, key: str | None, *, timeout: float = 120.0, max_connections: int = 256) -> None:
        base = base_url.rstrip("/")
        self.root = base.removesuffix("/v1")
        self.completions_url = f"{self.root}/v1/chat/completions"
        self.key, self.timeout = key, timeout
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(self.completions_url, json=body)
        except (TimeoutError, httpx.TimeoutException) as error:
            raise self._failure(error) from None
        except httpx.TransportError as error:
            raise self._failure(error) from None
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content)
        try:
            data: dict[str, Any] = response.json()
            data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GatewayError(502, "the LiteLLM gateway answered with something that is not a chat completion",
                               "protocol") from None
        return data

    async def stream(self, body: dict[str, Any]) -> UpstreamStream:
        """Open a streamed completion; errors before the first byte are raised here."""
        request = self._client.build_request("POST", self.completions_url, json={**body, "stream": True})
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException) as error:
            raise self._failure(error) from None
        except httpx.TransportError as error:
            raise self._failure(error) from None
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise self._status_error(response.status_code, content)
        return UpstreamStream(self, response)

    async def check(self) -> str | None:
        """None when the gateway answers its liveness probe; otherwise what is wrong."""
        try:
            response = await self._client.get(f"{self.root}/health/liveliness", timeout=2.0)
        except httpx.HTTPError as error:
            return self.scrub(f"LiteLLM gateway at {self.root} unreachable: {error.__class__.__name__}")
        if response.status_code >= 500:
            return f"LiteLLM gateway at {self.root} answered HTTP {response.status_code}"
        return None

    async def aclose(self) -> None:
        await self._client.aclose()

    def _failure(self, error: Exception) -> GatewayError:
        if isinstance(error, (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return GatewayError(504, f"the LiteLLM gateway did not answer within {self.timeout:g}s", "timeout")
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
            return GatewayError(502, self.scrub(f"the LiteLLM gateway at {self.root} is unreachable "
                                                f"({error.__class__.__name__}: {error})"), "unreachable")
        return GatewayError(502, self.scrub(f"the connection to the LiteLLM gateway broke: {error!r}"), "protocol")

    def _status_error(self, status: int, content: bytes) -> GatewayError:
        try:
            detail = _error_text(json.loads(content))
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
