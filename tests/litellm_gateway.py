"""The real LiteLLM proxy, started on loopback in front of a fake upstream, as tests and benchmarks use it.

The proxy lives in its own environment (`.venv-gateway`, made by `scripts/test`), because its
pinned dependencies differ from the reconciler's. RECONCILER_TEST_LITELLM names another binary.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = ("python3 -m venv .venv-gateway && .venv-gateway/bin/pip install -r tests/gateway/requirements.txt "
                "(scripts/test does this), or set RECONCILER_TEST_LITELLM to a litellm binary")


def find_litellm() -> str | None:
    named = os.environ.get("RECONCILER_TEST_LITELLM")
    if named:
        return named
    local = ROOT / ".venv-gateway" / "bin" / "litellm"
    return str(local) if local.exists() else shutil.which("litellm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiteLLMGateway:
    """`litellm --config` forwarding every model name to `upstream` (an OpenAI-compatible /v1 URL), or with
    `models` ({name: model_info}) only those names, each with the model_info LiteLLM is to state for it."""

    def __init__(self, binary: str, upstream: str, folder: Path, *, workers: int = 1,
                 models: dict[str, dict[str, Any]] | None = None) -> None:
        self.binary, self.upstream, self.folder, self.workers = binary, upstream, folder, workers
        self.models = models
        self.port = free_port()
        # The proxy refuses well-known master keys; one per run.
        self.key = "sk-" + secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "litellm.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> LiteLLMGateway:
        model_list: list[dict[str, Any]] = [{"model_name": "*", "litellm_params": {
            "model": "openai/*", "api_base": self.upstream, "api_key": "upstream-key"}}]
        if self.models is not None:
            model_list = [{"model_name": name, "model_info": info, "litellm_params": {
                "model": f"openai/{name}", "api_base": self.upstream, "api_key": "upstream-key"}}
                for name, info in self.models.items()]
        config = {
            "model_list": model_list,
            "general_settings": {"master_key": self.key},
            "litellm_settings": {"drop_params": False, "num_retries": 0, "request_timeout": 600},
        }
        path = self.folder / "litellm.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
               "LITELLM_MODE": "PRODUCTION", "NO_DOCS": "True", "DISABLE_ADMIN_UI": "True"}
        env.pop("DATABASE_URL", None)  # the proxy would try to use it for its own tables
        command = [self.binary, "--config", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--num_workers", str(self.workers)]
        self.process = subprocess.Popen(command, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"litellm exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"litellm not ready within {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
