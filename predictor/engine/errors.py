"""Why the engine refused or dropped work. Protocol layers map these to statuses (429, 503)."""


class EngineError(Exception):
    pass


class QueueFull(EngineError):
    """Admitting the items would exceed the queue bound: refuse at once, never hang."""


class QueueTimeout(EngineError):
    """The items waited longer than the request timeout; they were removed from the queue."""


class EngineDraining(EngineError):
    """The engine is shutting down and takes no new work."""
