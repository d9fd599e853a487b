"""Serving errors, each carrying a gRPC status code and the HTTP status the REST API uses."""

from __future__ import annotations

import grpc


class ServingError(Exception):
    code = grpc.StatusCode.INTERNAL
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class FailedPrecondition(ServingError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class Unavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class ResourceExhausted(ServingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class DeadlineExceeded(ServingError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class Cancelled(ServingError):
    code = grpc.StatusCode.CANCELLED
    http_status = 499  # nginx's "client closed request"; nobody reads it
