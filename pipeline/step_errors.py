"""Exit codes and errors of ``lstm-math step`` and its launchers (a leaf: the process and
Kubernetes launchers and the step runner all raise these, and nothing here imports them)."""

EXIT_FAILED, EXIT_USAGE, EXIT_WORKER, EXIT_TIMEOUT = 1, 2, 4, 5


class StepError(RuntimeError):
    exit_code = EXIT_FAILED


class StepUsageError(StepError):
    exit_code = EXIT_USAGE


class WorkerFailed(StepError):
    exit_code = EXIT_WORKER


class StepTimeout(StepError):
    exit_code = EXIT_TIMEOUT
