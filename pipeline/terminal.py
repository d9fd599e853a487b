"""The command line's terminal: logging's format and levels, and TensorFlow kept quiet.

Unless -v/--verbose, TensorFlow's native start-up lines (oneDNN, cudart_stub, cuInit) are
kept off the terminal: ``quiet_tensorflow`` before TensorFlow is imported, and
``filter_native_stderr`` for the lines it writes whatever TF_CPP_MIN_LOG_LEVEL says.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        force=True,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("apache_beam", "absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_tensorflow(argv: list[str]) -> bool:
    """Unless -v/--verbose: TF_CPP_MIN_LOG_LEVEL=3 (when not set already) before TensorFlow
    is imported. Returns whether TensorFlow's native log lines should be filtered."""
    if any(a in ("-v", "--verbose") for a in argv):
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return True


# A line of TensorFlow's native (absl) logging ('I0000 00:00:1796194145.643927 8626
# port.cc:153] ...') and absl's notice that it logs to stderr before being initialized.
# TensorFlow 2.21 writes its start-up lines (oneDNN, cudart_stub, cuInit) this way whatever
# TF_CPP_MIN_LOG_LEVEL says. Fatal ('F') lines are kept.
_NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:.]+ +\d+ [\w.+/-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
# The second line of TensorFlow's CPU feature notice.
_NATIVE_CONTINUATION = b"To enable the following instructions:"


def filter_native_stderr() -> None:
    """Keeps TensorFlow's native log lines off the terminal for the rest of the process.

    File descriptor 2 becomes a pipe read by a thread that passes on every line but
    TensorFlow's (``_NATIVE_LOG_LINE``); Python's own ``sys.stderr`` (logging, tracebacks)
    writes to the real stderr directly, so nothing of ours waits on the thread. At exit
    fd 2 is given back. Only for the command line (``main()`` without argv): callers in
    process keep their streams."""
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(os.dup(real), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                      errors="backslashreplace")

    def pump():
        pending, after_native = b"", False
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            kept = []
            for line in lines:
                native = bool(_NATIVE_LOG_LINE.match(line)) or (
                    after_native and line.startswith(_NATIVE_CONTINUATION))
                after_native = native
                if not native:
                    kept.append(line + b"\n")
            if kept:
                os.write(real, b"".join(kept))
        if pending and not _NATIVE_LOG_LINE.match(pending):
            os.write(real, pending)

    thread = threading.Thread(target=pump, name="native-stderr-filter", daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
            os.dup2(real, 2)  # the pipe's last write end in this process closes: EOF
        except (OSError, ValueError):
            return
        thread.join(timeout=2)

    atexit.register(restore)
