"""Adapter for the zoo's ``Basset`` (Kelley et al. 2016): DNase accessibility in 164 cell types from
600 bp.

* Input ``(4, 600, 1)`` (layout ``NCL1``), alphabet ACGT (the default dataloader's default).
* Feature names from the zoo's ``target_labels.txt``, read from the model description at load time.
* Outputs are sigmoid probabilities; effects are taken on the logit scale.
* Uncertainty: MC dropout (dropout 0.3 in both hidden layers; batch norm stays in inference mode),
  or an ensemble over ``weight_files``.
"""

from __future__ import annotations

from deepmr_kipoi.adapters import LoadRequest, with_uncertainty
from deepmr_kipoi.registry import register_adapter
from model_adapters.generic import check_family_model, torch_members


@register_adapter(
    "Basset",
    description="Basset: DNase accessibility in 164 cell types, logit scale, MC dropout",
    patterns=("Basset",),
)
def load_basset(request: LoadRequest):
    """Load the Basset Kipoi model with MC-dropout (or ensemble) uncertainty."""
    check_family_model(request, "NCL1", "Basset")
    members, has_dropout = torch_members(request, transforms="logit")
    return with_uncertainty(members, request, has_dropout=has_dropout)
