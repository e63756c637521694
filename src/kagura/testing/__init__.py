"""Tools for testing code that streams: hypothesis strategies, a loopback server, fake streams."""
