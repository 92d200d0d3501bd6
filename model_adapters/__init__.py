"""Model adapters: one module per model family (how its outputs become named scalar features, its
input layout, its uncertainty method). Registered through the ``deepmr_kipoi.adapters`` entry-point
group declared in ``setup.cfg``, and imported by name by :mod:`deepmr_kipoi.registry` where those
entry points are not installed. The adapter API they implement is :mod:`deepmr_kipoi.adapters`."""
