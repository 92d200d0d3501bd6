"""The table of MR methods: every estimator the package offers, with what other modules need to know
about it.

Everything that depends on *which* methods exist reads this table: the batched API picks its
implementation from it, the run's ``--methods`` choices, the verdict's classes of estimators
(:mod:`deepmr_kipoi.verdict`) and the display labels of the report and its figures. Adding an
estimator therefore means its scalar function, its batched form in ``mr/batched.py``, one row here
and a golden test; no module outside ``mr/`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Batched implementations (the ``batched`` column): ``"ivw"`` and ``"egger"`` are closed forms of
#: weighted sums over the instruments (matrix products, also over all exposure x outcome pairs in
#: ``mr.all_pairs``); ``"median"`` and ``"mode"`` sort each cell's ratio estimates ``b_y / b_x``
#: and bootstrap their SE.
BATCHED_IMPLEMENTATIONS = ("ivw", "egger", "median", "mode")


@dataclass(frozen=True)
class MRMethod:
    """One MR estimator, as the rest of the package sees it.

    Attributes
    ----------
    name : str
        The method's name in the API, the configuration and the tables (``"weighted_median"``).
    label : str
        Display name in the report, the figures and the verdict's reasons (``"weighted median"``).
    min_instruments : int
        Fewest instruments the method accepts (as in TwoSampleMR).
    batched : str
        Its batched implementation, one of :data:`BATCHED_IMPLEMENTATIONS`.
    robust : bool
        Tolerates a share of invalid instruments (pleiotropy): a heterogeneous pair needs one of
        these to agree before the verdict claims an effect.
    agreement : bool
        One of the estimators that must all agree (same sign, significant) for a causal verdict.
    """

    name: str
    label: str
    min_instruments: int
    batched: str
    robust: bool
    agreement: bool

    @property
    def closed_form(self) -> bool:
        """Computed from weighted sums over instruments (no sorting, no bootstrap)."""
        return self.batched in ("ivw", "egger")

    @property
    def ratio(self) -> bool:
        """Built on per-instrument ratio estimates ``b_y / b_x`` (needs every ``b_x != 0``)."""
        return not self.closed_form


#: Every MR method, in the order the CLI and the tables list them. IVW needs 2 instruments for its
#: residual SE, the other methods 3 (TwoSampleMR).
METHOD_TABLE: dict[str, MRMethod] = {
    m.name: m
    for m in (
        MRMethod("ivw", "IVW", 2, "ivw", robust=False, agreement=True),
        MRMethod("ivw_fe", "IVW (fixed effect)", 2, "ivw", robust=False, agreement=False),
        MRMethod("egger", "MR-Egger", 3, "egger", robust=False, agreement=True),
        MRMethod("weighted_median", "weighted median", 3, "median", robust=True, agreement=False),
        MRMethod("simple_median", "simple median", 3, "median", robust=True, agreement=False),
        MRMethod("weighted_mode", "weighted mode", 3, "mode", robust=True, agreement=False),
    )
}


def method_label(method: str) -> str:
    """Display name of an MR method (the name itself for a method the table does not hold).

    Parameters
    ----------
    method : str
        A name in :data:`METHOD_TABLE`.

    Returns
    -------
    str
    """
    spec = METHOD_TABLE.get(str(method))
    return spec.label if spec is not None else str(method)


def methods_where(**flags: bool) -> tuple[str, ...]:
    """Names of the methods whose attributes equal ``flags``, in table order.

    Parameters
    ----------
    **flags : bool
        Attribute or property names of :class:`MRMethod` and the value they must have, e.g.
        ``robust=True``.

    Returns
    -------
    tuple of str
    """
    return tuple(
        name
        for name, spec in METHOD_TABLE.items()
        if all(getattr(spec, key) == value for key, value in flags.items())
    )
