"""The server's defaults and the limits of its settings, importable without TensorFlow (the
command line checks its flags against them before loading anything heavy).

:mod:`~lstm_math.serving.server.app`, :mod:`~lstm_math.serving.server.rest_api` and
:mod:`~lstm_math.serving.server.models` re-export the ones they use.
"""

from __future__ import annotations

from lstm_math.serving.contract import LARGEST_BUCKET

DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = LARGEST_BUCKET  # the largest XLA bucket of the exported decoder
DEFAULT_BATCH_TIMEOUT_MICROS = 1000
# Most rows in one request: 16 full batches. Larger requests are refused (400 /
# INVALID_ARGUMENT) instead of holding the model for seconds.
DEFAULT_MAX_REQUEST_ROWS = 16 * DEFAULT_MAX_BATCH_SIZE
DEFAULT_MAX_ENQUEUED_BATCHES = 100
DEFAULT_MAX_CONNECTIONS = 1024  # REST connections open at once
DEFAULT_POLL_SECONDS = 1.0  # how often the version manager looks for new versions
DEFAULT_NUM_VERSIONS = 2  # latest versions kept loaded
DEFAULT_GRACE_SECONDS = 10.0  # how long shutdown waits for in-flight requests

# REST deadlines and budgets (rest_api.Limits; 0 turns a deadline off)
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0  # a request's first byte -> the end of its headers
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0  # the end of the headers -> the end of the body
DEFAULT_BODY_MIN_RATE = 1024  # bytes per second, on average, once the grace period is over
DEFAULT_BODY_RATE_GRACE_SECONDS = 5.0
# a response that cannot be written (the client does not read it) for this long: closed
DEFAULT_WRITE_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_PENDING_BODY_BYTES = 128 * 1024 * 1024

DEFAULT_GRPC_MAX_CONCURRENT_RPCS = 1024  # gRPC calls in progress; more: RESOURCE_EXHAUSTED
# calls grpc itself admits (waiting for their message included), as a multiple of the above
GRPC_BACKSTOP_FACTOR = 16
# gRPC connection limits (grpc core channel arguments; 0 = grpc's default)
DEFAULT_GRPC_MAX_STREAMS_PER_CONNECTION = 1024  # grpc.max_concurrent_streams
DEFAULT_GRPC_MESSAGE_TIMEOUT_SECONDS = 10.0  # a call's headers -> its request message
DEFAULT_GRPC_MAX_CONNECTION_IDLE_SECONDS = 300.0  # grpc.max_connection_idle_ms
DEFAULT_GRPC_MAX_CONNECTION_AGE_SECONDS = 3600.0  # grpc.max_connection_age_ms
DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS = 30.0  # grpc.max_connection_age_grace_ms
DEFAULT_GRPC_KEEPALIVE_SECONDS = 60.0  # grpc.keepalive_time_ms: ping an idle connection
DEFAULT_GRPC_KEEPALIVE_TIMEOUT_SECONDS = 20.0  # grpc.keepalive_timeout_ms: then close it

EVENT_LOOPS = ("auto", "uvloop", "asyncio")

# Ranges of the settings: grpc core takes its channel arguments as C ints (milliseconds for
# the durations), so every count and duration stays within them.
MAX_INT32 = 2 ** 31 - 1
MAX_SECONDS = MAX_INT32 // 1000  # about 24.8 days
