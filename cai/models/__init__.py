"""Models: the backends, and the layer above them that every call goes through (client,
cache, budget, session, provider batch APIs, the backend registry)."""
