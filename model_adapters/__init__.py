"""Model adapters: one module per model family (how its outputs become named scalar features, its
input layout, its uncertainty method). Registered through the ``deepmr_kipoi.adapters`` entry-point
group declared in ``setup.cfg``."""
