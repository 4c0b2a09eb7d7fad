"""`conveyor ci` and `conveyor check`: what a CI pipeline runs. Client-side: it builds bundles
locally and talks to the server through conveyor.client."""
