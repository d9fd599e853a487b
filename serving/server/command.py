"""Command line: ``lstm-math serve`` / ``python -m lstm_math.serving.server``."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
from typing import Callable, Optional, Sequence

# Only light modules here: the flags are declared and checked before TensorFlow is imported
# (app, which imports it, is imported once they are all good).
from lstm_math.serving.contract import DEFAULT_MODEL_NAME, MODEL_NAME_RULE, is_model_name
from lstm_math.serving.server import defaults
from lstm_math.serving.server.defaults import (DEFAULT_BATCH_TIMEOUT_MICROS, DEFAULT_GRPC_PORT,
                                               DEFAULT_MAX_BATCH_SIZE,
                                               DEFAULT_MAX_CONNECTIONS,
                                               DEFAULT_MAX_ENQUEUED_BATCHES,
                                               DEFAULT_MAX_REQUEST_BYTES,
                                               DEFAULT_MAX_REQUEST_ROWS, DEFAULT_POLL_SECONDS,
                                               DEFAULT_REST_PORT, EVENT_LOOPS,
                                               GRPC_BACKSTOP_FACTOR, MAX_INT32, MAX_SECONDS)

logger = logging.getLogger("lstm_math.serving")

PROG = "lstm-math serve"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_BATCH_THREADS = 1024


# --------------------------------------------------------------------------------------
# argparse types: each refuses a bad value with the reason (argparse names the flag)
def _number(text: str, low: float, high: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _integer(text: str, low: int, high: int, what: str = "") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"expected {what or f'an integer from {low} to {high}'}, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    """A finite number >= 0 (a rate)."""
    return _number(text, 0.0, math.inf, "a finite number >= 0")


def _seconds(text: str) -> float:
    """A duration: 0 (off, for a deadline) up to about 24.8 days (grpc takes milliseconds
    as a C int)."""
    return _number(text, 0.0, MAX_SECONDS, f"seconds from 0 to {MAX_SECONDS}")


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    return _integer(text, 0, MAX_INT32)


def _positive_int(text: str) -> int:
    return _integer(text, 1, MAX_INT32)


def _bytes_count(text: str) -> int:
    return _integer(text, 1, 2 ** 63 - 1, "a number of bytes >= 1")


def _port(text: str) -> int:
    return _integer(text, -1, 65535, "a port from 0 to 65535 (0 = any free port) or -1 (off)")


def _batch_threads(text: str) -> int:
    return _integer(text, 0, MAX_BATCH_THREADS)


def _rpcs(text: str) -> int:
    return _integer(text, 1, MAX_INT32 // GRPC_BACKSTOP_FACTOR)


def _model_name(text: str) -> str:
    if not is_model_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a model name: {MODEL_NAME_RULE}")
    return text


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got "
                                         f"{text!r}")
    return level


def _host(text: str) -> str:
    if not text.strip() or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(f"expected an address or a host name, got {text!r}")
    return text


def _port_file(text: str) -> str:
    parent = os.path.dirname(os.path.abspath(text)) if text else ""
    if not text or os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name")
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text}: no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: directory {parent} is not writable")
    return text


def _one_line_errors(parser: argparse.ArgumentParser) -> Callable[[str], None]:
    """Make ``parser`` name the flag of a bad value as ``--flag: reason`` (argparse says
    ``argument --flag: reason``); returns its error function (prints one line, exits 2)."""
    report = parser.error

    def error(message: str) -> None:
        report(re.sub(r"^argument (-[^\s:]*(?:/-[^\s:]*)*): ", r"\1: ", message))

    parser.error = error  # type: ignore[method-assign]
    return error


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model-base", required=True,
                        help="directory holding <model-name>/<version>/saved_model.pb")
    parser.add_argument("--model-name", type=_model_name, default=DEFAULT_MODEL_NAME,
                        help="model name in URLs and gRPC model_spec: letters, digits, _ - . "
                             "(default %(default)s)")
    parser.add_argument("--host", type=_host, default="127.0.0.1",
                        help="address to bind (default %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--rest-port", type=_port, default=DEFAULT_REST_PORT,
                        help="REST port (default %(default)s; 0 = any free port; -1 = off)")
    parser.add_argument("--grpc-port", type=_port, default=DEFAULT_GRPC_PORT,
                        help="gRPC port (default %(default)s; 0 = any free port; -1 = off)")
    parser.add_argument("--max-batch-size", type=_positive_int, default=DEFAULT_MAX_BATCH_SIZE,
                        help="most rows merged into one batch (default %(default)s)")
    parser.add_argument("--batch-timeout-micros", type=_non_negative_int,
                        default=DEFAULT_BATCH_TIMEOUT_MICROS,
                        help="longest wait for more rows before running a batch "
                             "(default %(default)s)")
    parser.add_argument("--num-batch-threads", type=_batch_threads, default=0,
                        help="batches run in parallel (default 1: TF already spreads one batch over "
                             f"all cores, and one thread merges requests best; at most "
                             f"{MAX_BATCH_THREADS})")
    parser.add_argument("--max-enqueued-batches", type=_positive_int,
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
    parser.add_argument("--poll-seconds", type=_positive_seconds, default=DEFAULT_POLL_SECONDS,
                        help="how often to look for new versions (default %(default)s)")
    parser.add_argument("--num-versions", type=_positive_int,
                        default=defaults.DEFAULT_NUM_VERSIONS,
                        help="latest versions kept loaded (default %(default)s)")
    parser.add_argument("--max-request-bytes", type=_positive_int,
                        default=DEFAULT_MAX_REQUEST_BYTES,
                        help="largest request body accepted (default %(default)s)")
    parser.add_argument("--max-request-rows", type=_non_negative_int,
                        default=DEFAULT_MAX_REQUEST_ROWS,
                        help="most equations in one request; more is a 400 / INVALID_ARGUMENT "
                             "(default %(default)s; 0 = no limit)")
    parser.add_argument("--max-connections", type=_positive_int,
                        default=DEFAULT_MAX_CONNECTIONS,
                        help="REST connections open at once; at the cap a new one closes the "
                             "one without progress for longest, or gets a 503 when all are "
                             "busy (default %(default)s)")
    parser.add_argument("--grpc-event-loop", choices=EVENT_LOOPS, default="auto",
                        help="the gRPC front end's event loop: uvloop (more requests/s), the "
                             "standard library's asyncio, or auto: uvloop where installed "
                             "(default %(default)s; REST always runs on asyncio's)")
    limits = parser.add_argument_group(
        "client deadlines and limits (0 turns a deadline off; see serving/README.md)")
    limits.add_argument("--header-timeout-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_HEADER_TIMEOUT_SECONDS,
                        help="REST: most time from a request's first byte to the end of its "
                             "headers; then 408 and close (default %(default)s)")
    limits.add_argument("--body-timeout-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_BODY_TIMEOUT_SECONDS,
                        help="REST: most time to receive a request body after its headers; "
                             "then 408 and close (default %(default)s)")
    limits.add_argument("--body-min-rate", type=_non_negative, metavar="BYTES_PER_S",
                        default=defaults.DEFAULT_BODY_MIN_RATE,
                        help="REST: least average body rate once the grace period is over; "
                             "slower: 408 and close (default %(default)s)")
    limits.add_argument("--body-rate-grace-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_BODY_RATE_GRACE_SECONDS,
                        help="REST: time a body may take before --body-min-rate applies "
                             "(default %(default)s)")
    limits.add_argument("--write-timeout-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_WRITE_TIMEOUT_SECONDS,
                        help="REST: most time a response may stay unsent because the client "
                             "does not read it; then the connection is closed "
                             "(default %(default)s)")
    limits.add_argument("--max-pending-body-bytes", type=_bytes_count, metavar="BYTES",
                        default=defaults.DEFAULT_MAX_PENDING_BODY_BYTES,
                        help="REST: bytes of request bodies held at once, server-wide, "
                             "beyond 64 KiB each; a body that would exceed it: 503 "
                             "(default %(default)s)")
    limits.add_argument("--grpc-max-concurrent-rpcs", type=_rpcs, metavar="N",
                        default=defaults.DEFAULT_GRPC_MAX_CONCURRENT_RPCS,
                        help="gRPC calls in progress at once; more: RESOURCE_EXHAUSTED "
                             "(default %(default)s)")
    limits.add_argument("--grpc-max-streams-per-connection", type=_non_negative_int,
                        metavar="N", default=defaults.DEFAULT_GRPC_MAX_STREAMS_PER_CONNECTION,
                        help="gRPC calls open at once on one HTTP/2 connection "
                             "(grpc.max_concurrent_streams; default %(default)s)")
    limits.add_argument("--grpc-message-timeout-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_GRPC_MESSAGE_TIMEOUT_SECONDS,
                        help="gRPC: most time from a call's headers to its request message; "
                             "then DEADLINE_EXCEEDED (default %(default)s)")
    limits.add_argument("--grpc-max-connection-idle-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_GRPC_MAX_CONNECTION_IDLE_SECONDS,
                        help="gRPC: close a connection with no call for this long "
                             "(grpc.max_connection_idle_ms; default %(default)s)")
    limits.add_argument("--grpc-max-connection-age-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_GRPC_MAX_CONNECTION_AGE_SECONDS,
                        help="gRPC: ask a connection to reconnect (GOAWAY) after this long "
                             "(grpc.max_connection_age_ms; default %(default)s)")
    limits.add_argument("--grpc-max-connection-age-grace-seconds", type=_seconds,
                        metavar="S",
                        default=defaults.DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS,
                        help="gRPC: then let its calls finish for this long before closing "
                             "it (grpc.max_connection_age_grace_ms; default %(default)s)")
    limits.add_argument("--grpc-keepalive-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_GRPC_KEEPALIVE_SECONDS,
                        help="gRPC: ping a connection quiet for this long "
                             "(grpc.keepalive_time_ms; default %(default)s)")
    limits.add_argument("--grpc-keepalive-timeout-seconds", type=_seconds, metavar="S",
                        default=defaults.DEFAULT_GRPC_KEEPALIVE_TIMEOUT_SECONDS,
                        help="gRPC: close it when the ping is not answered within this long "
                             "(grpc.keepalive_timeout_ms; default %(default)s)")
    parser.add_argument("--grace-seconds", type=_seconds,
                        default=defaults.DEFAULT_GRACE_SECONDS,
                        help="how long shutdown waits for in-flight requests "
                             "(default %(default)s)")
    parser.add_argument("--port-file", type=_port_file,
                        help="write {\"rest_port\": N, \"grpc_port\": M} here once listening "
                             "(its directory must exist)")
    parser.add_argument("--log-level", type=_log_level, default="INFO",
                        help=f"logging level: {', '.join(LOG_LEVELS)} (default INFO)")
    parser.set_defaults(serve_error=_one_line_errors(parser))
    return parser


class UsageError(Exception):
    """A flag the server cannot start with: ``flag`` and the reason."""

    def __init__(self, flag: str, reason: str):
        super().__init__(f"{flag}: {reason}")
        self.flag, self.reason = flag, reason


def _bind_problem(host: str, port: int, flag: str) -> Optional[UsageError]:
    """Why ``host``:``port`` cannot be listened on (as the front ends would), or None. Port
    0 checks the host alone."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return UsageError("--host", f"cannot listen on {host}: {reason}")
    held = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # an address family this machine lacks (asyncio skips it too)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == getattr(socket, "AF_INET6", None):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{address[0]}:{port}" if family == socket.AF_INET \
                    else f"[{address[0]}]:{port}"
                blame = flag if exc.errno in (errno.EADDRINUSE, errno.EACCES) and port \
                    else "--host"
                return UsageError(blame, f"cannot listen on {where}: "
                                         f"{exc.strerror or exc}")
    finally:
        for sock in held:
            sock.close()
    return None


def check_serve_args(args: argparse.Namespace) -> None:
    """What argparse cannot check flag by flag, before anything heavy is imported: the
    model base, the two ports together, and that the host and ports can be listened on.
    Raises :class:`UsageError`."""
    base = args.model_base
    if base and "://" not in base and not os.path.isdir(base):
        raise UsageError("--model-base", f"{base}: no such directory")
    rest, grpc_port = args.rest_port, args.grpc_port
    if rest < 0 and grpc_port < 0:
        raise UsageError("--grpc-port", "-1 turns gRPC off, and --rest-port is -1 too: "
                                        "nothing would be served")
    if rest > 0 and rest == grpc_port:
        raise UsageError("--grpc-port", f"{grpc_port} is the --rest-port too; give each "
                                        f"front end its own port")
    for flag, port in (("--rest-port", rest), ("--grpc-port", grpc_port)):
        if port >= 0:
            problem = _bind_problem(args.host, port, flag)
            if problem is not None:
                raise problem


def _report(args: argparse.Namespace, problem: UsageError) -> int:
    """Report a bad flag in one line through the parser (exits 2), or print it."""
    error = getattr(args, "serve_error", None)
    if error is not None:
        error(str(problem))
    sys.stderr.write(f"{PROG}: error: {problem}\n")
    return 2


def server_from_args(args: argparse.Namespace):
    from lstm_math.serving.server.app import ModelServer

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
        write_timeout=args.write_timeout_seconds,
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
    """Serve until SIGTERM / SIGINT, then shut down gracefully. Returns the exit status: a
    flag the server cannot start with is reported in one line, exit status 2, before
    TensorFlow is imported and with nothing created."""
    try:
        check_serve_args(args)
    except UsageError as problem:
        return _report(args, problem)
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(force=True, level=level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        logging.getLogger("lstm_math").setLevel(level)
    from lstm_math.serving.server.app import BindError

    stop = threading.Event()

    def _on_signal(signum, _frame):
        logger.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        server = server_from_args(args)
        try:
            server.start()
        except BindError as exc:  # taken since it was checked
            flag = "--rest-port" if exc.front_end == "rest" else "--grpc-port"
            if exc.bind_errno not in (None, errno.EADDRINUSE, errno.EACCES):
                flag = "--host"
            return _report(args, UsageError(flag, str(exc)))
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
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse reporting a mistake in one line (no usage block), exit status 2."""

    def error(self, message):  # noqa: D401 - argparse's hook
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _Parser(
        prog="python -m lstm_math.serving.server",
        description="TF Serving-compatible REST + gRPC server for lstm-math SavedModels.")
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))
