"""The benchmark suite: `python -m bench` (see `docs/benchmarks.md`).

Every figure is a ratio against a baseline measured in the same run, on the same machine,
so a busy or slow machine moves both sides together. Nothing here is imported by the
ledger; the suite drives it through its public paths (`ledger import`, the store, the
views, `ledger serve`).
"""
