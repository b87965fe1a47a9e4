"""The one exception hierarchy of parity.

Every error parity raises on purpose is a :class:`ParityError`, so a caller can catch them all in one place and
the CLI can turn them into a one-line message and exit status 2 instead of a traceback::

    ParityError
    ├── InvalidInputError      a bad argument or input value (also a ValueError)
    ├── ConfigError            a bad configuration file or setting
    ├── MissingDependencyError an optional extra is not installed (names the pip command)
    ├── EndpointError          an HTTP endpoint is unreachable or answered in an unusable way
    ├── StoreError             the record store cannot be opened, migrated or written
    ├── ConformanceError       a sampler implementation could not be run by the conformance kit
    ├── APIError               a request an OpenAI-compatible server refuses, with its HTTP status
    └── QueueFullError         a server's request queue is full (HTTP 503, retry later)

Errors carry data as attributes (``argument``, ``url``, ``extra``, ``status``...), not only text.

>>> try:
...     raise InvalidInputError("top_p", "must be in (0, 1]", 1.5)
... except ParityError as err:
...     print(err)
`top_p` must be in (0, 1], got 1.5
"""

from __future__ import annotations

from typing import Any


class ParityError(Exception):
    """Base class of every error parity raises on purpose."""


class InvalidInputError(ParityError, ValueError):
    """An argument or input value is outside what is allowed.

    ``argument`` names it, ``requirement`` says what is allowed and ``value`` is what was given.
    """

    def __init__(self, argument: str, requirement: str, value: Any = ..., *, detail: str | None = None) -> None:
        self.argument = argument
        self.requirement = requirement
        self.value = value
        message = f"`{argument}` {requirement}"
        if value is not ...:
            message += f", got {value!r}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class ConfigError(ParityError):
    """A configuration file or setting is invalid; ``source`` names the file or setting when known."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class MissingDependencyError(ParityError, ImportError):
    """An optional dependency is missing; the message names the exact install command.

    >>> print(MissingDependencyError("torch", extra="torch"))
    this feature needs `torch`: pip install 'parity[torch]'
    """

    def __init__(self, package: str, *, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"this feature needs `{package}`: pip install 'parity[{extra}]'")


class EndpointError(ParityError):
    """An HTTP endpoint is unreachable or answered in a way parity cannot use."""

    def __init__(self, message: str, *, url: str | None = None, status_code: int | None = None) -> None:
        self.url = url
        self.status_code = status_code
        super().__init__(f"{url}: {message}" if url else message)


class StoreError(ParityError):
    """The record store cannot be opened, migrated, read or written."""


class ConformanceError(ParityError):
    """The conformance kit could not load or call the implementation under test."""


class APIError(ParityError):
    """A request an OpenAI-compatible server refuses: HTTP ``status`` and OpenAI's error fields.

    :meth:`body` is the answer in OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape.

    >>> err = APIError(400, "`top_p` must be in (0, 1], got 1.5", param="top_p", code="invalid_value")
    >>> err.status, err.body()["error"]["param"]
    (400, 'top_p')
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class QueueFullError(ParityError):
    """A server's request queue is full: the server is saturated (answered as HTTP 503; the client retries later)."""
