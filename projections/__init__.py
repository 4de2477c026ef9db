"""The read side: projectors that fold the log into history tables, and point-in-time views.

`all_projectors()` is what a store is opened with; :mod:`projections.views` answers the
queries; :mod:`projections.pit` turns `as_of`/`known_at`/`seq` into a point in time.
"""

from projections.projectors import AssertionsProjector, SourcesProjector, all_projectors

__all__ = ["AssertionsProjector", "SourcesProjector", "all_projectors"]
