"""Tools for the dev stack and the tests (not part of the kest package)."""
