"""Command line: ``lstm-math serve`` / ``python -m lstm_math.serving.server``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from typing import Optional, Sequence

from lstm_math.serving.contract import DEFAULT_MODEL_NAME
from lstm_math.serving.server import app
from lstm_math.serving.server.app import (DEFAULT_BATCH_TIMEOUT_MICROS, DEFAULT_GRPC_PORT,
                                DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_CONNECTIONS,
                                DEFAULT_MAX_ENQUEUED_BATCHES, DEFAULT_MAX_REQUEST_BYTES,
                                DEFAULT_MAX_REQUEST_ROWS, DEFAULT_REST_PORT, EVENT_LOOPS,
                                ModelServer)
from lstm_math.serving.server.models import DEFAULT_POLL_SECONDS

logger = logging.getLogger("lstm_math.serving")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model-base", required=True,
                        help="directory holding <model-name>/<version>/saved_model.pb")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME,
                        help="model name in URLs and gRPC model_spec (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--rest-port", type=int, default=DEFAULT_REST_PORT,
                        help="REST port (default %(default)s; 0 = any free port; -1 = off)")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help="gRPC port (default %(default)s; 0 = any free port; -1 = off)")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help="most rows merged into one batch (default %(default)s)")
    parser.add_argument("--batch-timeout-micros", type=int,
                        default=DEFAULT_BATCH_TIMEOUT_MICROS,
                        help="longest wait for more rows before running a batch "
                             "(default %(default)s)")
    parser.add_argument("--num-batch-threads", type=int, default=0,
                        help="batches run in parallel (default 1: TF already spreads one batch over "
                             "all cores, and one thread merges requests best)")
    parser.add_argument("--max-enqueued-batches", type=int,
                        default=DEFAULT_MAX_ENQUEUED_BATCHES,
                        help="queue limit, in rows of full batches; beyond it requests are "
                             "refused with 429 / RESOURCE_EXHAUSTED "
                             "(default %(default)s)")
    parser.add_argument("--strict-batch-timeout", action="store_true",
                        help="always wait the full batch timeout, like TF Serving (default: "
                             "only while other requests are arriving)")
    parser.add_argument("--no-batching", action="store_true",
                        help="run each request on its own")
    parser.add_argument("--no-model-warmup", action="store_true",
                        help="do not replay the SavedModel's assets.extra/"
                             "tf_serving_warmup_requests at load (TF Serving's "
                             "--enable_model_warmup=false)")
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS,
                        help="how often to look for new versions (default %(default)s)")
    parser.add_argument("--num-versions", type=int, default=2,
                        help="latest versions kept loaded (default %(default)s)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="largest request body accepted (default %(default)s)")
    parser.add_argument("--max-request-rows", type=int, default=DEFAULT_MAX_REQUEST_ROWS,
                        help="most equations in one request; more is a 400 / INVALID_ARGUMENT "
                             "(default %(default)s; 0 = no limit)")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                        help="REST connections open at once; at the cap a new one closes the "
                             "longest-idle one, or gets a 503 when all are busy "
                             "(default %(default)s)")
    parser.add_argument("--grpc-event-loop", choices=EVENT_LOOPS, default="auto",
                        help="the gRPC front end's event loop: uvloop (more requests/s), the "
                             "standard library's asyncio, or auto: uvloop where installed "
                             "(default %(default)s; REST always runs on asyncio's)")
    limits = parser.add_argument_group(
        "client deadlines and limits (0 turns a deadline off; see serving/README.md)")
    limits.add_argument("--header-timeout-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_HEADER_TIMEOUT_SECONDS,
                        help="REST: most time from a request's first byte to the end of its "
                             "headers; then 408 and close (default %(default)s)")
    limits.add_argument("--body-timeout-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_BODY_TIMEOUT_SECONDS,
                        help="REST: most time to receive a request body after its headers; "
                             "then 408 and close (default %(default)s)")
    limits.add_argument("--body-min-rate", type=_non_negative, metavar="BYTES_PER_S",
                        default=app.DEFAULT_BODY_MIN_RATE,
                        help="REST: least average body rate once the grace period is over; "
                             "slower: 408 and close (default %(default)s)")
    limits.add_argument("--body-rate-grace-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_BODY_RATE_GRACE_SECONDS,
                        help="REST: time a body may take before --body-min-rate applies "
                             "(default %(default)s)")
    limits.add_argument("--max-pending-body-bytes", type=_positive_int, metavar="BYTES",
                        default=app.DEFAULT_MAX_PENDING_BODY_BYTES,
                        help="REST: bytes of request bodies held at once, server-wide, "
                             "beyond 64 KiB each; a body that would exceed it: 503 "
                             "(default %(default)s)")
    limits.add_argument("--grpc-max-concurrent-rpcs", type=_positive_int, metavar="N",
                        default=app.DEFAULT_GRPC_MAX_CONCURRENT_RPCS,
                        help="gRPC calls in progress at once; more: RESOURCE_EXHAUSTED "
                             "(default %(default)s)")
    limits.add_argument("--grpc-max-streams-per-connection", type=_non_negative_int,
                        metavar="N", default=app.DEFAULT_GRPC_MAX_STREAMS_PER_CONNECTION,
                        help="gRPC calls open at once on one HTTP/2 connection "
                             "(grpc.max_concurrent_streams; default %(default)s)")
    limits.add_argument("--grpc-message-timeout-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_GRPC_MESSAGE_TIMEOUT_SECONDS,
                        help="gRPC: most time from a call's headers to its request message; "
                             "then DEADLINE_EXCEEDED (default %(default)s)")
    limits.add_argument("--grpc-max-connection-idle-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_GRPC_MAX_CONNECTION_IDLE_SECONDS,
                        help="gRPC: close a connection with no call for this long "
                             "(grpc.max_connection_idle_ms; default %(default)s)")
    limits.add_argument("--grpc-max-connection-age-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_GRPC_MAX_CONNECTION_AGE_SECONDS,
                        help="gRPC: ask a connection to reconnect (GOAWAY) after this long "
                             "(grpc.max_connection_age_ms; default %(default)s)")
    limits.add_argument("--grpc-max-connection-age-grace-seconds", type=_non_negative,
                        metavar="S", default=app.DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS,
                        help="gRPC: then let its calls finish for this long before closing "
                             "it (grpc.max_connection_age_grace_ms; default %(default)s)")
    limits.add_argument("--grpc-keepalive-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_GRPC_KEEPALIVE_SECONDS,
                        help="gRPC: ping a connection quiet for this long "
                             "(grpc.keepalive_time_ms; default %(default)s)")
    limits.add_argument("--grpc-keepalive-timeout-seconds", type=_non_negative, metavar="S",
                        default=app.DEFAULT_GRPC_KEEPALIVE_TIMEOUT_SECONDS,
                        help="gRPC: close it when the ping is not answered within this long "
                             "(grpc.keepalive_timeout_ms; default %(default)s)")
    parser.add_argument("--grace-seconds", type=float, default=10.0,
                        help="how long shutdown waits for in-flight requests")
    parser.add_argument("--port-file",
                        help="write {\"rest_port\": N, \"grpc_port\": M} here once listening")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def server_from_args(args: argparse.Namespace) -> ModelServer:
    return ModelServer(
        args.model_base, model_name=args.model_name, host=args.host,
        rest_port=None if args.rest_port < 0 else args.rest_port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        enable_batching=not args.no_batching, max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        num_batch_threads=args.num_batch_threads,
        max_enqueued_batches=args.max_enqueued_batches,
        adaptive_batch_timeout=not args.strict_batch_timeout,
        poll_seconds=args.poll_seconds, num_versions=args.num_versions,
        max_request_bytes=args.max_request_bytes, model_warmup=not args.no_model_warmup,
        max_request_rows=args.max_request_rows or None, max_connections=args.max_connections,
        grpc_event_loop=args.grpc_event_loop,
        header_timeout=args.header_timeout_seconds, body_timeout=args.body_timeout_seconds,
        body_min_rate=args.body_min_rate, body_rate_grace=args.body_rate_grace_seconds,
        max_pending_body_bytes=args.max_pending_body_bytes,
        grpc_max_concurrent_rpcs=args.grpc_max_concurrent_rpcs,
        grpc_max_streams_per_connection=args.grpc_max_streams_per_connection,
        grpc_message_timeout=args.grpc_message_timeout_seconds,
        grpc_max_connection_idle=args.grpc_max_connection_idle_seconds,
        grpc_max_connection_age=args.grpc_max_connection_age_seconds,
        grpc_max_connection_age_grace=args.grpc_max_connection_age_grace_seconds,
        grpc_keepalive=args.grpc_keepalive_seconds,
        grpc_keepalive_timeout=args.grpc_keepalive_timeout_seconds)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / SIGINT, then shut down gracefully. Returns the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(force=True, level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        logging.getLogger("lstm_math").setLevel(
            getattr(logging, str(args.log_level).upper(), logging.INFO))
    stop = threading.Event()

    def _on_signal(signum, _frame):
        logger.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    server = server_from_args(args)
    try:
        server.start()
    except OSError as exc:
        logger.error("could not start the server: %s", exc)
        return 1
    try:
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"rest_port": server.rest_port, "grpc_port": server.grpc_port,
                           "pid": os.getpid()}, f)
            os.replace(tmp, args.port_file)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=args.grace_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_math.serving.server",
        description="TF Serving-compatible REST + gRPC server for lstm-math SavedModels.")
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))
