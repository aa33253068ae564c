import sys
from pathlib import Path

# Test helpers (factories, crd_schema) are plain modules beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from watching import remote  # noqa: E402,F401 - the bare-remote fixture, for every test module
from chatting import chat_app, gateway, upstream  # noqa: E402,F401 - chat fixtures (LiteLLM proxy, fake model)
