"""Hand-written SQL, one module per table; functions take a connection and return dataclasses."""
