"""Adapter for the DeepSEA family of the Kipoi zoo: ``DeepSEA/predict``, ``DeepSEA/variantEffects``
(Zhou & Troyanskaya 2015; 919 chromatin features, 1000 bp) and ``DeepSEA/beluga`` (Zhou et al. 2018;
2002 features, 2000 bp).

* Input ``(4, 1, L)`` (layout ``NC1L``). The alphabet comes from the default dataloader: ACGT for
  predict/variantEffects (their networks reorder to AGCT internally), AGCT for beluga.
* Feature names are the zoo's label file (``predictor_names.txt``) read from the model description at
  load time; labels that occur more than once are numbered ``<label>#k``.
* Outputs are sigmoid probabilities; effects are taken on the logit scale, where a mutation's effect
  is not squashed by the probability's distance from 0 or 1.
* Uncertainty: MC dropout (the networks have dropout 0.2/0.2/0.5), or an ensemble over
  ``weight_files``.
"""

from __future__ import annotations

from deepmr_kipoi.adapters import LoadRequest, with_uncertainty
from deepmr_kipoi.registry import register_adapter
from model_adapters.generic import check_family_model, torch_members

DEEPSEA_MODELS = ("DeepSEA/predict", "DeepSEA/variantEffects", "DeepSEA/beluga")


@register_adapter(
    "DeepSEA",
    description="DeepSEA predict/variantEffects/beluga: 919/2002 chromatin features, logit scale, "
    "MC dropout",
    patterns=DEEPSEA_MODELS,
)
def load_deepsea(request: LoadRequest):
    """Load a DeepSEA-family Kipoi model with MC-dropout (or ensemble) uncertainty."""
    check_family_model(request, "NC1L", "DeepSEA")
    members, has_dropout = torch_members(request, transforms="logit")
    return with_uncertainty(members, request, has_dropout=has_dropout)
