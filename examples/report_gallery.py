"""Screenshots of the report at two scales: the demo's, and a 164-feature run (the Basset size).

The 164-feature model is a deep ensemble of numpy functions of the one-hot sequence with a known
causal structure: 8 "driver" features read position weights of their own (motif-like), and each of
the 156 others is a driver's value times a coefficient plus a weak direct term of its own, so the
run has real claims (driver -> target) among 26,732 ordered pairs. It runs in a few minutes on
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


def zoo_sized_model(seed: int = 0, n_members: int = 4):
    """The 164-feature ensemble (module docstring) and its true effects."""
    import pandas as pd

    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    rng = np.random.default_rng(seed)
    names = [f"driver{d}" for d in range(N_DRIVERS)]
    names += [f"target{t:03d}" for t in range(N_FEATURES - N_DRIVERS)]
    weights = rng.normal(0.0, 1.0, (N_DRIVERS, LENGTH, 4))
    parent = rng.integers(0, N_DRIVERS, N_FEATURES - N_DRIVERS)
    coef = rng.choice([-1.0, 1.0], N_FEATURES - N_DRIVERS) * rng.uniform(
        0.4, 1.2, N_FEATURES - N_DRIVERS
    )
    direct = rng.normal(0.0, 0.1, (N_FEATURES - N_DRIVERS, LENGTH, 4))
    members = []
    for s in range(n_members):
        r = np.random.default_rng([seed, s])
        w = weights + r.normal(0.0, 0.05, weights.shape)
        dw = direct + r.normal(0.0, 0.02, direct.shape)

        def fn(onehot, w=w, dw=dw):
            drivers = np.einsum("nlc,dlc->nd", onehot, w)
            targets = drivers[:, parent] * coef + np.einsum("nlc,tlc->nt", onehot, dw)
            return np.concatenate([drivers, targets], axis=1)

        members.append(from_function(fn, names, sequence_length=LENGTH))
    truth = pd.DataFrame({"exposure": [names[p] for p in parent], "outcome": names[N_DRIVERS:],
                          "true_effect": coef})  # fmt: skip
    return DeepEnsemble(members), truth


def run_zoo_sized(out: Path):
    """The 164-feature run into ``out``; its result."""
    from deepmr_kipoi import pipeline

    model, _ = zoo_sized_model()
    config = pipeline.RunConfig(model="report-gallery-164", sequences="random", n_sequences=6,
                                sequence_length=LENGTH, methods=("ivw", "egger"), seed=0,
                                out=str(out), force=True, progress=False)  # fmt: skip
    identity = {"name": "gallery: 164-feature ensemble", "n_samples": 4, "type": "DeepEnsemble"}
    return pipeline.run(config, model=model, identity=identity)


def screenshot(page: Path, png: Path, height: int) -> None:
    """``page`` as headless Chromium draws it, 1280 px wide."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit(
            "headless Chromium is needed for the screenshots: apt-get install chromium"
        )
    profile = png.parent / f".profile-{png.stem}"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                    f"--window-size=1280,{height}", f"--screenshot={png}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
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
