"""Transports turn a chat request into a stream of typed events."""
