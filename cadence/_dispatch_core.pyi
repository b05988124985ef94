"""Type stub for the Rust extension `cadence._dispatch_core`."""

__version__: str

def core_version() -> str:
    """The version of the compiled Rust core."""
