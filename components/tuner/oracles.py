"""Oracles: keras-tuner's random, Bayesian and Hyperband searches, each with a wall-clock
budget (no trial starts after ``deadline``)."""

from __future__ import annotations

import logging
import math
import time

import keras_tuner as kt
import numpy as np

log = logging.getLogger(__name__)

OBJECTIVE = "val_exact_match"


class _TimeBudget:
    """Oracle mixin: after ``deadline`` (time.time()) no new trial starts."""

    deadline = None

    def populate_space(self, trial_id):
        if self.deadline is not None and time.time() >= self.deadline:
            log.info("Tuner: time budget spent; no new trials")
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


class RandomOracle(_TimeBudget, kt.oracles.RandomSearchOracle):
    pass


class NumpyGP:
    """Gaussian process regression (Matern 5/2, normalized targets) in numpy.

    Stands in for scikit-learn's GaussianProcessRegressor, which keras-tuner's Bayesian
    oracle needs (with scipy) and which this project does not depend on; the length scale
    is chosen by marginal likelihood over a grid instead of by L-BFGS.
    """

    LENGTH_SCALES = np.geomspace(0.05, 3.0, 16)

    def __init__(self, alpha: float = 1e-4):
        self.alpha = alpha

    @staticmethod
    def _kernel(a, b, length_scale):
        d = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))
        r = math.sqrt(5.0) * d / length_scale
        return (1.0 + r + r * r / 3.0) * np.exp(-r)

    def fit(self, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        self._mean, self._std = y.mean(), y.std() or 1.0
        z = (y - self._mean) / self._std
        best = None
        for ls in self.LENGTH_SCALES:
            k = self._kernel(x, x, ls) + self.alpha * np.eye(len(x))
            try:
                chol = np.linalg.cholesky(k)
            except np.linalg.LinAlgError:
                continue
            weights = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
            evidence = -0.5 * z @ weights - np.log(np.diag(chol)).sum()
            if best is None or evidence > best[0]:
                best = (evidence, ls, chol, weights)
        if best is None:
            raise np.linalg.LinAlgError("Gaussian process: no usable length scale")
        _, self._ls, self._chol, self._weights = best
        self._x = x
        return self

    def predict(self, x, return_std=False):
        x = np.asarray(x, float)
        ks = self._kernel(x, self._x, self._ls)
        mu = ks @ self._weights * self._std + self._mean
        if not return_std:
            return mu
        v = np.linalg.solve(self._chol, ks.T)
        var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return mu, np.sqrt(var) * self._std


def _have_scipy_and_sklearn() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("scipy", "sklearn"))


class _BayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian optimization; without scipy/scikit-learn its Gaussian process
    is NumpyGP and the acquisition (upper confidence bound) is minimized over random
    candidates instead of by L-BFGS-B restarts."""

    CANDIDATES = 4096

    def __init__(self, objective=None, max_trials=10, num_initial_points=None, alpha=1e-4,
                 beta=2.6, seed=None, **kwargs):
        self._native = _have_scipy_and_sklearn()
        if self._native:
            super().__init__(objective=objective, max_trials=max_trials,
                             num_initial_points=num_initial_points, alpha=alpha, beta=beta,
                             seed=seed, **kwargs)
            return
        kt.Oracle.__init__(self, objective=objective, max_trials=max_trials, seed=seed,
                           **kwargs)
        self.num_initial_points = num_initial_points
        self.alpha, self.beta = alpha, beta
        self._random_state = np.random.RandomState(self.seed)
        self.gpr = self._make_gpr()

    def _make_gpr(self):
        return super()._make_gpr() if self._native else NumpyGP(self.alpha)

    def populate_space(self, trial_id):
        if self._native:
            return super().populate_space(trial_id)
        completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
        dimensions = len(self.hyperparameters.space)
        if len(completed) < (self.num_initial_points or max(3 * dimensions, 3)):
            return self._random_populate_space()
        x, y = self._vectorize_trials()
        x = np.nan_to_num(x, posinf=0, neginf=0)
        y = np.nan_to_num(y, posinf=0, neginf=0)  # the objective's sign: lower is better
        self.gpr.fit(x, y)
        bounds = self._get_hp_bounds()
        candidates = self._random_state.uniform(bounds[:, 0], bounds[:, 1],
                                                size=(self.CANDIDATES, bounds.shape[0]))
        mu, sigma = self.gpr.predict(candidates, return_std=True)
        best = candidates[int(np.argmin(mu - self.beta * sigma))]
        return {"status": kt.engine.trial.TrialStatus.RUNNING,
                "values": self._vector_to_values(best)}


class BayesianOracle(_TimeBudget, _BayesianOracle):
    pass


class HyperbandOracle(_TimeBudget, kt.oracles.HyperbandOracle):
    pass


def make_oracle(tu):
    """The oracle of ``tuner.algorithm`` with the budget of the ``tuner`` config section."""
    objective = kt.Objective(OBJECTIVE, direction="max")
    if tu.algorithm == "random":
        return RandomOracle(objective=objective, max_trials=tu.max_trials, seed=tu.seed)
    if tu.algorithm == "bayesian":
        return BayesianOracle(objective=objective, max_trials=tu.max_trials, seed=tu.seed)
    if tu.algorithm == "hyperband":
        oracle = HyperbandOracle(objective=objective, max_epochs=tu.epochs,
                                 factor=tu.hyperband_factor,
                                 hyperband_iterations=tu.hyperband_iterations, seed=tu.seed)
        oracle.max_trials = tu.max_trials  # the trial budget applies to every algorithm
        return oracle
    raise ValueError(f"tuner.algorithm: unknown {tu.algorithm!r}")  # validate() rejects it first
