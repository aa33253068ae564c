"""agent-reconciler: agent specs in Git, kept true as agent-sandbox resources."""

__version__ = "0.1.0"
