"""Deep MR on your own PyTorch model: register an adapter, then run the analysis by the model's name.

The model is a toy CNN whose causal structure is known by construction: an AP-1 motif detector
(TGACTCA) and an E-box detector (CACGTG), with MC dropout, and a "target" output equal to 0.8 x AP1.
Deep MR should find a global AP1 -> target effect near 0.8 and an Ebox -> target effect near 0.

    python examples/custom_adapter.py --out custom_run      # writes tables, figures and report.html
"""

import argparse

import numpy as np
import torch
from torch import nn

from deepmr_kipoi import pipeline, registry
from deepmr_kipoi.predictive import MCDropout, from_torch


class ToyMotifCNN(nn.Module):
    """Two motif detectors (PWM-like convolution, ReLU, mean over positions), dropout, and a target."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 2, 7, bias=True)
        with torch.no_grad():
            for k, motif in enumerate(("TGACTCA", "CACGTG")):
                weight = torch.zeros(4, 7)
                for pos, base in enumerate(motif):
                    weight[:, pos] = -1 / 3
                    weight["ACGT".index(base), pos] = 1.0
                self.conv.weight[k] = weight
            self.conv.bias.fill_(-1.0)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):  # x: (N, 4, L) one-hot, ACGT
        ap1, ebox = self.dropout(torch.relu(self.conv(x)).mean(dim=2)).unbind(dim=1)
        return torch.stack([ap1, ebox, 0.8 * ap1], dim=1)


# ---- the adapter: how to load the model, its layout, its features, its uncertainty --------------
@registry.register_adapter("ToyMotifCNN", description="toy AP-1/E-box CNN; MC dropout")
def load_toy_motif_cnn(request):
    member = from_torch(
        ToyMotifCNN().eval(),
        feature_names=["AP1", "Ebox", "target"],
        layout="NCL",  # the module takes (N, 4, L)
        alphabet=request.alphabet or "ACGT",
        sequence_length=200,
    )
    return MCDropout(member, n_samples=request.n_samples or 30, seed=request.seed)


# --------------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=None, help="run folder (default: keep results in memory)")
    parser.add_argument("--n-sequences", type=int, default=12)
    args = parser.parse_args(argv)

    config = pipeline.RunConfig(
        model="ToyMotifCNN",  # found through the registry, like any Kipoi model name
        n_sequences=args.n_sequences,
        exposures=("AP1", "Ebox"),
        outcomes=("target",),
        methods=("ivw", "egger"),
        seed=0,
        out=args.out,
        figures=args.out is not None,
        report=args.out is not None,
    )
    result = pipeline.run(config)
    table = result.global_effects[
        ["exposure", "outcome", "method", "estimate", "ci_low", "ci_high", "k"]
    ]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    ivw = table[(table.exposure == "AP1") & (table.method == "ivw")].estimate.iloc[0]
    print(f"AP1 -> target (IVW): {ivw:.3f}; built into the model: 0.800")
    return 0 if np.isfinite(ivw) else 1


if __name__ == "__main__":
    raise SystemExit(main())
