"""The test suite, a package so that test modules import their helpers as ``tests._helpers_*`` and
``tests._kipoi_fixtures`` without editing ``sys.path``."""
