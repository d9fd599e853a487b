"""Exit codes and errors of ``lstm-math step`` and its launchers, and the deadline check
they share (a leaf: the process, container and Kubernetes launchers and the step runner all
raise these, and nothing here imports them)."""

EXIT_FAILED, EXIT_USAGE, EXIT_WORKER, EXIT_TIMEOUT = 1, 2, 4, 5


class StepError(RuntimeError):
    exit_code = EXIT_FAILED


class StepUsageError(StepError):
    exit_code = EXIT_USAGE


class WorkerFailed(StepError):
    exit_code = EXIT_WORKER


class StepTimeout(StepError):
    exit_code = EXIT_TIMEOUT


def check_deadlines(what: str, elapsed: float, cluster, late: str | None = None,
                    why: str = "", unfinished: str = "", stopped: str = "") -> None:
    """Raises StepTimeout when a worker has not started (``late`` says who and how, e.g.
    "training worker 1 (pod p) still Pending"; ``why``: what the cluster says) after
    ``cluster.start_timeout_s``, or when the step (``unfinished``, e.g. "Job j"; default the
    step) is not finished after ``cluster.step_timeout_s`` (``stopped``: what was stopped)."""
    if late and elapsed > cluster.start_timeout_s:
        raise StepTimeout(f"{what}: {late} after cluster.start_timeout_s="
                          f"{cluster.start_timeout_s:.0f}s{': ' + why if why else ''}")
    if elapsed > cluster.step_timeout_s:
        raise StepTimeout(f"{what}: {unfinished + ' ' if unfinished else ''}not finished after "
                          f"cluster.step_timeout_s={cluster.step_timeout_s:.0f}s"
                          f"{'; stopped ' + stopped if stopped else ''}")
