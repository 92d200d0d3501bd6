"""Screenshots of the report at two scales: the demo's, and a 164-feature run (the Basset size).

The 164-feature model is a deep ensemble of numpy functions of the one-hot sequence with a known
causal structure: 8 "driver" features read position weights of their own (motif-like), and each of
the 156 others is a driver's value times a coefficient plus a motif of its own, so the run has 156
true effects (driver -> target) among 26,732 ordered pairs, and its report shows the truth beside
each claim. It runs in a few minutes on
2 CPU cores (6 sequences of 60 bp).

    python examples/report_gallery.py --demo-run demo_out --out gallery --img docs/img

``--demo-run`` takes a finished ``deepmr demo`` folder (without it, the demo is run into
``OUT/demo``, a few minutes). The screenshots need headless Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np

N_FEATURES, N_DRIVERS, LENGTH = 164, 8, 60


def zoo_sized_model(seed: int = 0, n_members: int = 4, noise: float = 0.05):
    """The 164-feature ensemble (module docstring) and its true effects.

    Each driver reads its own 7-bp window (position weights ~ N(0, 1)); each target is its
    driver's value times a coefficient plus a motif of its own at 6 positions outside that window.
    Members perturb every weight by N(0, ``noise``) (the ensemble's disagreement, so every effect
    has a positive SE). A driver's mutations move its targets only through it, and a target has
    mutations of its own that move no driver: both directions are identifiable.
    """
    import pandas as pd

    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    rng = np.random.default_rng(seed)
    n_targets = N_FEATURES - N_DRIVERS
    names = [f"driver{d}" for d in range(N_DRIVERS)] + [f"target{t:03d}" for t in range(n_targets)]
    width = LENGTH // N_DRIVERS
    weights = np.zeros((N_DRIVERS, LENGTH, 4))
    for d in range(N_DRIVERS):
        weights[d, d * width : (d + 1) * width] = rng.normal(0.0, 1.0, (width, 4))
    parent = rng.integers(0, N_DRIVERS, n_targets)
    coef = rng.choice([-1.0, 1.0], n_targets) * rng.uniform(0.4, 1.2, n_targets)
    direct = np.zeros((n_targets, LENGTH, 4))
    for t in range(n_targets):
        outside = [p for p in range(LENGTH) if not parent[t] * width <= p < (parent[t] + 1) * width]
        direct[t, rng.choice(outside, 6, replace=False)] = rng.normal(0.0, 1.0, (6, 4))
    members = []
    for s in range(n_members):
        r = np.random.default_rng([seed, s])
        w = weights + r.normal(0.0, noise, weights.shape)
        dw = direct + r.normal(0.0, noise, direct.shape)

        def fn(onehot, w=w, dw=dw):
            drivers = np.einsum("nlc,dlc->nd", onehot, w)
            targets = drivers[:, parent] * coef + np.einsum("nlc,tlc->nt", onehot, dw)
            return np.concatenate([drivers, targets], axis=1)

        members.append(from_function(fn, names, sequence_length=LENGTH))
    truth = pd.DataFrame(
        {"exposure": [names[p] for p in parent], "outcome": names[N_DRIVERS:], "true_effect": coef}
    )
    return DeepEnsemble(members), truth


def run_zoo_sized(out: Path):
    """The 164-feature run into ``out``; its result."""
    from deepmr_kipoi import pipeline

    model, truth = zoo_sized_model()
    config = pipeline.RunConfig(
        model="report-gallery-164",
        sequences="random",
        n_sequences=6,
        sequence_length=LENGTH,
        methods=("ivw", "egger"),
        seed=0,
        out=str(out),
        force=True,
        progress=False,
    )
    identity = {"name": "gallery: 164-feature ensemble", "n_samples": 4, "type": "DeepEnsemble"}
    return pipeline.run(config, model=model, identity=identity, truth=truth)


def screenshot(page: Path, png: Path, height: int) -> None:
    """``page`` as headless Chromium draws it, 1280 px wide."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit(
            "headless Chromium is needed for the screenshots: apt-get install chromium"
        )
    profile = png.parent / f".profile-{png.stem}"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            f"--window-size=1280,{height}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="gallery", help="folder for the runs (default gallery)")
    p.add_argument("--demo-run", help="a finished `deepmr demo` folder (default: run the demo)")
    p.add_argument(
        "--img", default="docs/img", help="folder for the screenshots (default docs/img)"
    )
    args = p.parse_args(argv)
    out, img = Path(args.out), Path(args.img)
    img.mkdir(parents=True, exist_ok=True)
    demo_dir = Path(args.demo_run) if args.demo_run else out / "demo"
    if not args.demo_run:
        from deepmr_kipoi import demo

        demo.run_demo(str(demo_dir), progress=False, force=True)
    run_zoo_sized(out / "features164")
    for name, folder, height in (
        ("demo", demo_dir, 2600),
        ("features164", out / "features164", 2600),
    ):
        page = folder / "report.html"
        screenshot(page, img / f"report_{name}.png", height)
        print(f"{page}: {page.stat().st_size / 1e6:.2f} MB -> {img / f'report_{name}.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
