//! Borrow Python buffers (numpy arrays) as Rust slices without copying.

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Borrow a C-contiguous buffer as a read-only slice for as long as `b` is borrowed.
pub fn slice<T: Element>(b: &PyBuffer<T>) -> PyResult<&[T]> {
    if b.item_count() == 0 {
        return Ok(&[]);
    }
    match b.as_slice_ptr() {
        // SAFETY: the exporter keeps the memory alive until `b` is released, which cannot
        // happen while the returned slice borrows `b`.
        Some(p) => Ok(unsafe { &*(p.as_ptr() as *const [T]) }),
        None => Err(PyValueError::new_err("buffer is not C-contiguous")),
    }
}

/// Borrow a writable C-contiguous buffer of exactly `n` items as a mutable slice.
pub fn slice_mut<T: Element>(b: &mut PyBuffer<T>, n: usize) -> PyResult<&mut [T]> {
    if b.readonly() || b.item_count() != n {
        return Err(PyValueError::new_err(
            "output must be a writable array of the input length",
        ));
    }
    if n == 0 {
        return Ok(&mut []);
    }
    match b.as_slice_ptr() {
        // SAFETY: writable, contiguous, n items, alive (and exclusively borrowed) with `b`.
        Some(p) => Ok(unsafe { &mut *p.as_ptr() }),
        None => Err(PyValueError::new_err("buffer is not C-contiguous")),
    }
}
