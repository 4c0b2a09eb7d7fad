"""Bundles: the immutable, content-addressed archive of an app that is promoted unchanged."""
