"""The Agent JSON Schema, installed as the package data reconciler.schemas."""
