//! Frequency caps.
use pyo3::prelude::*;
/// Register.
pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
