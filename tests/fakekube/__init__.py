"""An HTTP-level Kubernetes API server for tests: the official client talks to it over loopback."""
from fakekube.server import FakeKube, Fault

__all__ = ["FakeKube", "Fault"]
