"""The chat endpoint (`reconcile serve`): messages to synced agents through the LiteLLM gateway."""
