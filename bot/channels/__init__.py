"""Channels: adapters between a chat platform and the normalized Incoming / Reply types."""
