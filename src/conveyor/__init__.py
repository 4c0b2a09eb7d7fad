"""Conveyor: take data-science apps, APIs and reports from Dev through Test to Prod, safely.

This package's top level imports nothing, so the app-facing libraries (``conveyor.config``)
stay importable inside an app's runtime with PyYAML as their only dependency.
"""

__version__ = "0.1.0"
