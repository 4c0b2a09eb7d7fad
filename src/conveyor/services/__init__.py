"""Use cases: register bundles, deploy, promote, approve, roll back. Services decide with the
domain's rules, remember through storage and act through the runtime interface."""
