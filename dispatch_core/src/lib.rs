//! Cadence's hot paths in Rust, exposed to Python as `cadence._dispatch_core`.
//!
//! Every function here has a pure-Python twin in `cadence.dispatch` that gives identical results.

mod buffers;
pub mod caps;
pub mod columns;
pub mod filter;
pub mod limiter;
mod py;

use pyo3::prelude::*;

/// The crate version, so Python can tell which build of the core it loaded.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Report the core's version; `cadence --version` prints it beside the backend name.
#[pyfunction]
fn core_version() -> &'static str {
    CORE_VERSION
}

#[pymodule]
fn _dispatch_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(core_version, m)?)?;
    m.add("__version__", CORE_VERSION)?;
    py::register(m)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_crate_version() {
        assert_eq!(core_version(), env!("CARGO_PKG_VERSION"));
    }
}
