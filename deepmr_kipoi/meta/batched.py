"""The batched random-effects solver of :mod:`deepmr_kipoi.meta` (array code, no cell loop).

The estimators, tests and special cases are described in the docstring of :mod:`deepmr_kipoi.meta`;
here many sets of studies are fitted at once, in blocks of cells small enough to stay in cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import special

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

METHODS = ("REML", "DL", "PM")
TESTS = ("z", "knha")

#: Reason codes of :func:`random_effects_batched`; codes 1-3 give NaN results, 4-5 give values.
REASONS = {
    0: "ok",
    1: "no studies (k = 0)",
    2: "non-finite estimate",
    3: "non-finite or non-positive standard error",
    4: "single study (k = 1): tau2 fixed at 0, heterogeneity statistics undefined, z test used",
    5: "tau2 iteration did not converge within maxiter: tau2 from DerSimonian-Laird",
}
_NO_STUDIES, _BAD_ESTIMATE, _BAD_SE, _SINGLE, _NOT_CONVERGED = 1, 2, 3, 4, 5


@dataclass(frozen=True, eq=False)
class MetaBatchResult:
    """Random-effects meta-analyses of many sets of estimates at once.

    Every array has the broadcast leading shape ``(...)`` of the inputs. The fields mean what they
    mean in :class:`MetaResult`; cells with reason codes 1-3 hold NaN (``k`` and ``q_df`` hold the
    number of selected studies and ``max(k - 1, 0)``).

    Attributes
    ----------
    estimate, se, ci_low, ci_high, pvalue, statistic, tau2, tau2_se, i2, h2, q, q_pvalue,
    pi_low, pi_high : ndarray of float64, shape (...)
    q_df, k : ndarray of int64, shape (...)
    converged : ndarray of bool, shape (...)
    reason : ndarray of int8, shape (...)
        Code into :data:`REASONS`.
    method, test : str
        Estimator and requested test (cells with ``k = 1`` use the z test, reason 4).
    level : float
    """

    estimate: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    pvalue: np.ndarray
    statistic: np.ndarray
    tau2: np.ndarray
    tau2_se: np.ndarray
    i2: np.ndarray
    h2: np.ndarray
    q: np.ndarray
    q_df: np.ndarray
    q_pvalue: np.ndarray
    pi_low: np.ndarray
    pi_high: np.ndarray
    k: np.ndarray
    converged: np.ndarray
    reason: np.ndarray
    method: str
    test: str
    level: float


def _check_options(method: str, test: str, level: float, tol: float, maxiter: int) -> str:
    method_u = str(method).upper()
    if method_u not in METHODS:
        raise DeepMRInputError(f"method={method!r} is not supported; use one of {METHODS}.")
    if test not in TESTS:
        raise DeepMRInputError(
            f"test={test!r} is not supported; use 'z' (Wald) or 'knha' (Knapp-Hartung)."
        )
    validation.level(level)
    if not (float(tol) > 0.0):
        raise DeepMRInputError(f"tol={tol!r} must be positive, e.g. 1e-12.")
    if int(maxiter) < 1:
        raise DeepMRInputError(f"maxiter={maxiter!r} must be a positive integer, e.g. 1000.")
    return method_u


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row sums of ``a * b`` for (n, k) arrays, without the (n, k) temporary (einsum's loop)."""
    return np.einsum("ij,ij->i", a, b)


class _Cells:
    """Study data of ``n`` cells as float64 (n, k) arrays; masked entries hold ``y = 0``, ``v = 1``
    and ``m = 0``, so their weight ``m / (v + tau2)`` is exactly 0 and they drop out of all sums."""

    def __init__(self, y: np.ndarray, v: np.ndarray, m: np.ndarray, k: np.ndarray):
        self.y, self.v, self.m, self.k = y, v, m, k

    def take(self, rows: np.ndarray) -> _Cells:
        return _Cells(self.y[rows], self.v[rows], self.m[rows], self.k[rows])

    def weighted(self, tau2: np.ndarray):
        """Weights ``m / (v + tau2)``, their sum, the weighted mean and the residuals ``y - mu``.

        The residuals are not masked: every use multiplies them by ``w``, which is 0 there.
        """
        w = self.m / (self.v + tau2[:, None])
        sw = w.sum(axis=-1)
        mu = _rowdot(w, self.y) / sw
        r = self.y - mu[:, None]
        return w, sw, mu, r

    def reml_terms(self, tau2: np.ndarray):
        """``w``, ``sum w``, ``w * r``, the restricted log-likelihood of mu, tau2 (up to a
        constant) and the magnitude of the terms summed into it, in one pass: the ascent needs the
        likelihood and the next step's terms at the same tau2, and the magnitude bounds the
        rounding error of the likelihood, which can be far above ``eps * |loglik|`` when the
        terms cancel."""
        d = self.v + tau2[:, None]
        w = self.m / d
        sw = w.sum(axis=-1)
        r = self.y - (_rowdot(w, self.y) / sw)[:, None]
        wr = w * r
        np.log(d, out=d)
        log_sw = np.log(sw)
        rss = _rowdot(wr, r)
        loglik = -0.5 * (_rowdot(d, self.m) + log_sw + rss)
        np.abs(d, out=d)
        size = _rowdot(d, self.m) + np.abs(log_sw) + rss
        return w, sw, wr, loglik, size


def _dl(cells: _Cells) -> tuple[np.ndarray, ...]:
    """DerSimonian-Laird tau2, Q, tr(P) and tr(P P) at tau2 = 0 (cells with k >= 2): with
    ``w = 1 / v``, ``Q = sum w (y - mu)**2``, ``tr P = sum w - sum w**2 / sum w``,
    ``tr PP = sum w**2 - 2 sum w**3 / sum w + (sum w**2 / sum w)**2`` and
    ``tau2 = max((Q - (k - 1)) / tr P, 0)`` (compiled, one cell at a time: ``meta._kernel``)."""
    out = np.empty((4, cells.k.size))
    _kernel().dl_terms(cells.y, cells.v, cells.m, cells.k, out)
    return out[0], out[1], out[2], out[3]


def _reml(cells: _Cells, scale: np.ndarray, tol: float, maxiter: int):
    """REML tau2 by safeguarded Newton / Fisher-scoring ascent, vectorised over cells (k >= 2).

    From rma()'s starting value (Hedges' estimator truncated at 0) each step is a Newton step on the
    restricted log-likelihood where it is locally concave and rma()'s Fisher-scoring step otherwise,
    cut back to the boundary tau2 = 0 and halved (at most 59 times) until the likelihood does not
    decrease by more than its rounding error (taken as ``1e-13`` times the sum of the absolute
    terms of the log-likelihood; relative to the log-likelihood itself this could stop the ascent
    short of the maximum where its terms cancel). Plain Fisher scoring (rma()'s algorithm) can
    oscillate without converging when tau2 is small relative to the sampling variances; this ascent
    converges to the same stationary point wherever rma() converges, quadratically near it.
    ``scale`` (the typical within-study variance) makes the stopping rule
    ``|step| <= tol * (tau2 + scale)`` independent of the effect units; a cell whose score is
    non-positive at tau2 = 0 stops there exactly.

    Each cell iterates on its own until it converges (compiled: ``meta._kernel``), its studies
    staying in cache for all of its steps.

    Returns tau2, converged flag, iteration count and the restricted log-likelihood at tau2.
    """
    n = cells.k.size
    tau2, converged, loglik = out = (np.empty(n), np.empty(n, dtype=bool), np.empty(n))
    iterations = _kernel().reml_tau2(
        (cells.y, cells.v, cells.m), cells.k, scale, (float(tol), int(maxiter)), out
    )
    return tau2, converged, iterations, loglik


def _pm(
    cells: _Cells, scale: np.ndarray, q0: np.ndarray, start: np.ndarray, tol: float, maxiter: int
):
    """Paule-Mandel tau2 by bracketed Newton steps on 1 / Q(tau2) = 1 / (k - 1), over cells.

    Q(tau2) decreases in tau2, roughly like ``c / (tau2 + v)``, so ``1 / Q`` is nearly linear and
    Newton steps on it take a few iterations where steps on ``Q`` itself creep up on the root from
    below (a convex decreasing function); both have the same root. ``Q(0) > k - 1`` brackets the
    root from below and ``hi = sum (y - ybar)**2 / (k - 1)`` from above, because
    ``Q(tau2) <= sum (y - ybar)**2 / (v + tau2) < (k - 1) hi / tau2``. A Newton step that leaves the
    bracket is replaced by bisection, so every cell converges. The iteration starts from
    ``start`` (the DerSimonian-Laird estimate, usually close to the root; the bracket stays valid
    wherever it starts); each cell iterates on its own until it converges (compiled:
    ``meta._kernel``).
    """
    tau2 = np.empty(cells.k.size)
    converged = np.empty(cells.k.size, dtype=bool)
    iterations = _kernel().pm_tau2(
        (cells.y, cells.v, cells.m), (cells.k, q0, start, scale), tol, maxiter, (tau2, converged)
    )
    return tau2, converged, iterations


def _fit_cells(cells: _Cells, method: str, test: str, tol: float, maxiter: int):
    """Estimate, SE, tau2 and heterogeneity fields for cells with k >= 1 and valid inputs (a dict
    of 1-d arrays), the converged flags and the number of tau2 iterations."""
    iters = 0
    n = cells.k.size
    k = cells.k
    multi = k >= 2
    tau2 = np.zeros(n)
    tau2_se, q, i2, h2 = (np.full(n, np.nan) for _ in range(4))
    converged = np.ones(n, dtype=bool)
    if multi.any():
        sub = cells if multi.all() else cells.take(multi)
        t_dl, q_m, tr_p0, tr_pp0 = _dl(sub)
        s2 = (sub.k - 1.0) / tr_p0
        if method == "DL":
            t_m, conv_m = t_dl, np.ones(t_dl.shape, dtype=bool)
        elif method == "REML":
            t_m, conv_m, iters, ll_m = _reml(sub, s2, tol, maxiter)
            # rma()'s ll0check: the ascent finds a local maximum; prefer tau2 = 0 if it is higher.
            pos = np.flatnonzero(conv_m & (t_m > 0.0))
            ll0 = sub.take(pos).reml_terms(np.zeros(pos.size))[3]
            t_m[pos[ll0 > ll_m[pos]]] = 0.0
        else:
            t_m, conv_m, iters = _pm(sub, s2, q_m, t_dl, tol, maxiter)
        t_m = np.where(conv_m, t_m, t_dl)
        # metafor's SE of tau2 for each estimator, taken at the final tau2 (REML and PM below).
        se_t = np.sqrt(2.0 * (sub.k - 1.0) + 4.0 * t_dl * tr_p0 + 2.0 * t_dl**2 * tr_pp0) / tr_p0
        tau2[multi] = t_m
        converged[multi] = conv_m
        q[multi] = q_m
        i2[multi] = 100.0 * t_m / (s2 + t_m)
        h2[multi] = t_m / s2 + 1.0

    sw, mu = means = np.empty((2, n))
    _kernel().weighted_mean(cells.y, cells.v, cells.m, tau2, means)
    if method == "REML" or test == "knha":
        w, _, _, r = cells.weighted(tau2)
    if multi.any():
        if method == "REML":
            ww = w * w
            sw2 = ww.sum(axis=-1)[multi]
            sw3 = _rowdot(ww, w)[multi]
            sw_m = sw[multi]
            se_reml = np.sqrt(2.0 / (sw2 - 2.0 * sw3 / sw_m + (sw2 / sw_m) ** 2))
            se_t = np.where(conv_m, se_reml, se_t)
        elif method == "PM":
            se_t = np.where(conv_m, np.sqrt(2.0 * sub.k**2 / (sub.k - 1.0)) / sw[multi], se_t)
        tau2_se[multi] = se_t
    se = np.sqrt(1.0 / sw)
    if test == "knha":
        rss = _rowdot(w * r, r)
        with np.errstate(invalid="ignore", divide="ignore"):
            s2w = np.where(rss <= np.finfo(float).eps, 0.0, rss / (k - 1.0))
        se = np.where(multi, se * np.sqrt(np.where(multi, s2w, 1.0)), se)
    fields = {
        "estimate": mu,
        "se": se,
        "tau2": tau2,
        "tau2_se": tau2_se,
        "i2": i2,
        "h2": h2,
        "q": q,
    }
    return fields, converged, iters


def _add_inference(out: dict, k: np.ndarray, test: str, level: float) -> None:
    """Fill in the test statistic, p-values and intervals from the fitted fields of all cells
    (NaN cells stay NaN).

    The distribution functions are the ``scipy.special`` ones that ``scipy.stats.norm``, ``t`` and
    ``chi2`` evaluate (same values); importing ``scipy.stats`` would cost about a second.
    """
    mu, se, tau2, q = out["estimate"], out["se"], out["tau2"], out["q"]
    multi = k >= 2
    alpha2 = (1.0 - level) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = mu / se
    crit = np.full(k.shape, -special.ndtri(alpha2))
    pvalue = 2.0 * special.ndtr(-np.abs(stat))
    if test == "knha" and multi.any():
        df = k[multi] - 1.0
        crit[multi] = -special.stdtrit(df, alpha2)
        pvalue[multi] = 2.0 * special.stdtr(df, -np.abs(stat[multi]))
    pi_half = crit * np.sqrt(se**2 + tau2)
    q_pvalue = np.full(k.shape, np.nan)
    q_pvalue[multi] = special.chdtrc(k[multi] - 1.0, q[multi])
    out.update(
        statistic=stat,
        pvalue=pvalue,
        ci_low=mu - crit * se,
        ci_high=mu + crit * se,
        pi_low=mu - pi_half,
        pi_high=mu + pi_half,
        q_pvalue=q_pvalue,
    )


_FLOAT_FIELDS = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "pvalue",
    "statistic",
    "tau2",
    "tau2_se",
    "i2",
    "h2",
    "q",
    "q_pvalue",
    "pi_low",
    "pi_high",
)


_BLOCK_ELEMENTS = 1 << 17


def _fit_block(y, s, m, k, method: str, test: str, tol: float, maxiter: int):
    """Reason codes, ``(valid rows, converged, fitted fields of those rows)`` (None when no row is
    valid) and the iteration count for one block of (rows, k) inputs."""
    # Excluded entries become y = 0, v = 1, m = 0 (what _Cells expects there); the checks read
    # included studies only.
    data = tuple(np.empty(y.shape) for _ in range(3))
    flags = np.empty((2, k.size), dtype=np.int8)
    _kernel().prepare(y, s, m, data, flags)
    reason = np.zeros(k.shape, dtype=np.int8)
    reason[k == 1] = _SINGLE
    reason[flags[0] > 0] = _BAD_SE
    reason[flags[1] > 0] = _BAD_ESTIMATE
    reason[k == 0] = _NO_STUDIES
    valid = (reason == 0) | (reason == _SINGLE)
    if not valid.any():
        return reason, None, 0
    if not valid.all():
        data = tuple(a[valid] for a in data)
    cells = _Cells(*data, k[valid].astype(np.float64))
    # a degenerate cell (one study holds all the weight, tr P0 = 0) gets NaN/inf heterogeneity
    # fields and the DL fallback; numpy's warning per such cell would flood a DeepSEA-scale run
    with np.errstate(divide="ignore", invalid="ignore"):
        fitted, converged, iters = _fit_cells(cells, method, test, tol, maxiter)
    reason[np.flatnonzero(valid)[~converged]] = _NOT_CONVERGED
    return reason, (valid, converged, fitted), iters


def random_effects_batched(
    estimates,
    ses,
    mask=None,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    tol: float = 1e-12,
    maxiter: int = 1000,
) -> MetaBatchResult:
    """Random-effects meta-analyses of many sets of studies at once (array code, no cell loop).

    Parameters
    ----------
    estimates : array_like, shape (..., k)
        Study estimates (e.g. local causal effects of one pair over k sequences).
    ses : array_like, shape (..., k)
        Their standard errors; broadcast against ``estimates``.
    mask : array_like of bool, shape (..., k), optional
        True = include this study; broadcast against the data. Default: all included. Excluded
        entries may hold anything, NaN included, so ragged study sets can be NaN-padded.
    method : {"REML", "DL", "PM"}
        Estimator of tau2.
    test : {"z", "knha"}
        Wald z test, or Knapp-Hartung adjusted SE with t(k - 1) critical values and p-values.
    level : float
        Confidence level of the confidence and prediction intervals, in (0, 1).
    tol : float
        Relative convergence tolerance of the REML / PM iterations: stop when the tau2 step is at
        most ``tol * (tau2 + s2)``, ``s2`` the typical within-study variance.
    maxiter : int
        Iteration limit of REML Fisher scoring and of the PM root finder; cells that reach it fall
        back to the DerSimonian-Laird tau2 with ``converged = False`` and reason 5.

    Returns
    -------
    MetaBatchResult
        Arrays of shape ``(...)``. Cells without included studies (reason 1), with a non-finite
        included estimate (2) or a non-finite or non-positive included SE (3) are NaN; cells with one
        study (4) or without convergence (5) carry values.

    Raises
    ------
    DeepMRInputError
        On unknown options or shapes that do not broadcast.
    """
    method_u = _check_options(method, test, level, tol, maxiter)
    y, s, m, lead = _flat_cells(estimates, ses, mask)
    n = y.shape[0]
    k = np.count_nonzero(m, axis=-1)
    options = (method_u, test, float(tol), int(maxiter))
    reason, out, converged, iterations = _fit_blocks(y, s, m, k, options)
    _add_inference(out, k, test, float(level))
    if method_u != "DL":
        logger.debug("%s: at most %d tau2 iterations over %d cells", method_u, iterations, n)
    n_bad = int(np.count_nonzero((reason >= _NO_STUDIES) & (reason <= _BAD_SE)))
    if n_bad:
        logger.info("meta-analysis: %d of %d cells undefined (NaN), see reason codes", n_bad, n)
    return MetaBatchResult(
        **{name: out[name].reshape(lead) for name in _FLOAT_FIELDS},
        q_df=np.maximum(k - 1, 0).astype(np.int64).reshape(lead),
        k=k.astype(np.int64).reshape(lead),
        converged=converged.reshape(lead),
        reason=reason.reshape(lead),
        method=method_u,
        test=test,
        level=float(level),
    )


def _flat_cells(estimates, ses, mask):
    """The arrays broadcast and flattened to cells ``(n, k)``, and the leading shape."""
    y = np.asarray(estimates, dtype=np.float64)
    s = np.asarray(ses, dtype=np.float64)
    m = np.ones((1,), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if y.ndim == 0 or s.ndim == 0:
        raise DeepMRInputError("estimates and ses must have a study axis (last axis, length k).")
    try:
        shape = np.broadcast_shapes(y.shape, s.shape, m.shape)
        y, s, m = (np.broadcast_to(a, shape) for a in (y, s, m))  # read-only views
    except ValueError:
        raise DeepMRInputError(
            f"estimates {y.shape}, ses {s.shape} and mask {m.shape} do not broadcast; "
            "give arrays shaped (..., k)."
        ) from None
    lead, kdim = y.shape[:-1], y.shape[-1]
    y, s, m = (a.reshape(-1, kdim) for a in (y, s, m))
    return y, s, m, lead


def _fit_blocks(y, s, m, k, options):
    """Reason codes, fitted fields, convergence and the most tau2 iterations of all cells."""
    n, kdim = y.shape
    reason = np.zeros(n, dtype=np.int8)
    out = {name: np.full(n, np.nan) for name in _FLOAT_FIELDS}
    converged = np.zeros(n, dtype=bool)
    # Blocks of cells small enough that the (rows, k) working arrays stay in cache: the arithmetic
    # is memory-bound, and cells are independent.
    rows = max(1, _BLOCK_ELEMENTS // max(kdim, 1))
    iterations = 0
    for start in range(0, n, rows):
        sl = slice(start, start + rows)
        reason[sl], fitted, iters = _fit_block(y[sl], s[sl], m[sl], k[sl], *options)
        iterations = max(iterations, iters)
        if fitted is not None:
            valid, converged[sl][valid], fields = fitted
            for name, values in fields.items():
                out[name][sl][valid] = values
    return reason, out, converged, iterations


def _kernel():
    """The compiled per-cell loops (numba is imported only when a meta-analysis first needs them;
    it caches the machine code on disk, so only the first use on a machine compiles)."""
    from deepmr_kipoi.meta import _kernel as kernel

    return kernel
