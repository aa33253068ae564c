"""The Kubernetes adapter: live state read by label, server-side apply, pruning. Official client only."""
