//! The Python boundary: parse plans and buffer tuples, release the GIL, call the pure-Rust cores.

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::columns::{Bitmap, Column, Offsets, Values};
use crate::filter::{self, CmpOp, Container, Lit, Node, Operand};

/// Keeps the Python buffers alive while borrowed slices of them are in use.
#[derive(Default)]
struct Keep {
    bufs: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Keep {
    /// Borrow a C-contiguous buffer as a slice. The slice's lifetime is not tied to `self` by
    /// the type system; callers must not let it escape the function that owns this `Keep`.
    fn slice<'a, T: Element + Send + Sync + 'static>(
        &mut self,
        obj: &Bound<'_, PyAny>,
    ) -> PyResult<&'a [T]> {
        let buf = PyBuffer::<T>::get(obj)?;
        let s: &'a [T] = match buf.as_slice_ptr() {
            Some(p) if buf.item_count() > 0 => {
                // SAFETY: the exporter keeps the memory alive until `buf` is released, and `buf`
                // lives in `self.bufs` for as long as the slice is used (see the doc comment).
                unsafe { &*(p.as_ptr() as *const [T]) }
            }
            Some(_) => &[],
            None if buf.item_count() == 0 => &[],
            None => return Err(PyValueError::new_err("buffer is not C-contiguous")),
        };
        self.bufs.push(Box::new(buf));
        Ok(s)
    }

    fn offsets<'a>(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<Offsets<'a>> {
        if let Ok(s) = self.slice::<i32>(obj) {
            return Ok(Offsets::I32(s));
        }
        Ok(Offsets::I64(self.slice::<i64>(obj)?))
    }

    fn column<'a>(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<Column<'a>> {
        let t = obj.cast::<PyTuple>()?;
        let kind: String = t.get_item(0)?.extract()?;
        let len: usize = t.get_item(1)?.extract()?;
        let validity_obj = t.get_item(2)?;
        let validity = if validity_obj.is_none() {
            None
        } else {
            let bytes = self.slice::<u8>(&validity_obj)?;
            let offset: usize = t.get_item(3)?.extract()?;
            check_bits(bytes, offset, len)?;
            Some(Bitmap { bytes, offset })
        };
        let values = match kind.as_str() {
            "int" | "ts" | "float" => {
                let v = t.get_item(4)?;
                let values = match kind.as_str() {
                    "int" => Values::Int(self.slice::<i64>(&v)?),
                    "ts" => Values::Ts(self.slice::<i64>(&v)?),
                    _ => Values::Float(self.slice::<f64>(&v)?),
                };
                let n = match &values {
                    Values::Int(s) | Values::Ts(s) => s.len(),
                    Values::Float(s) => s.len(),
                    _ => 0,
                };
                if n < len {
                    return Err(PyValueError::new_err(
                        "value buffer shorter than the column",
                    ));
                }
                values
            }
            "bool" => {
                let bytes = self.slice::<u8>(&t.get_item(4)?)?;
                let offset: usize = t.get_item(5)?.extract()?;
                check_bits(bytes, offset, len)?;
                Values::Bool(Bitmap { bytes, offset })
            }
            "str" => {
                let offsets = self.offsets(&t.get_item(4)?)?;
                let data = self.slice::<u8>(&t.get_item(5)?)?;
                check_offsets(offsets, len, data.len())?;
                Values::Str { offsets, data }
            }
            "list" => {
                let offsets = self.offsets(&t.get_item(4)?)?;
                let child = self.column(&t.get_item(5)?)?;
                check_offsets(offsets, len, child.len)?;
                Values::List {
                    offsets,
                    child: Box::new(child),
                }
            }
            other => return Err(PyTypeError::new_err(format!("unknown column kind {other}"))),
        };
        Ok(Column {
            len,
            validity,
            values,
        })
    }
}

fn check_bits(bytes: &[u8], offset: usize, len: usize) -> PyResult<()> {
    if len > 0 && (offset + len).div_ceil(8) > bytes.len() {
        return Err(PyValueError::new_err("bitmap shorter than the column"));
    }
    Ok(())
}

fn check_offsets(offsets: Offsets<'_>, len: usize, data_len: usize) -> PyResult<()> {
    // Only the ends are checked: every slice the evaluator takes is bounds-checked, so a
    // malformed middle offset can only panic (raised in Python), never read out of bounds.
    let ok = match offsets {
        Offsets::I32(o) => o.len() > len && o[0] >= 0 && (o[len] as usize) <= data_len,
        Offsets::I64(o) => o.len() > len && o[0] >= 0 && (o[len] as usize) <= data_len,
    };
    if ok {
        Ok(())
    } else {
        Err(PyValueError::new_err("invalid offsets"))
    }
}

fn parse_lit(t: &Bound<'_, PyTuple>) -> PyResult<Lit> {
    let kind: String = t.get_item(1)?.extract()?;
    let v = t.get_item(2)?;
    Ok(match kind.as_str() {
        "int" => Lit::Int(v.extract()?),
        "float" => Lit::Float(v.extract()?),
        "ts" => Lit::Ts(v.extract()?),
        "bool" => Lit::Bool(v.extract()?),
        "str" => Lit::Str(v.extract::<String>()?.into_bytes()),
        other => {
            return Err(PyTypeError::new_err(format!(
                "unknown literal kind {other}"
            )))
        }
    })
}

fn parse_operand(obj: &Bound<'_, PyAny>) -> PyResult<Operand> {
    let t = obj.cast::<PyTuple>()?;
    let tag: String = t.get_item(0)?.extract()?;
    match tag.as_str() {
        "col" => Ok(Operand::Col(t.get_item(1)?.extract()?)),
        "lit" => Ok(Operand::Lit(parse_lit(t)?)),
        other => Err(PyTypeError::new_err(format!("unknown operand {other}"))),
    }
}

fn parse_node(obj: &Bound<'_, PyAny>, ncols: usize) -> PyResult<Node> {
    let t = obj.cast::<PyTuple>()?;
    let tag: String = t.get_item(0)?.extract()?;
    let col = |o: &Operand| -> PyResult<()> {
        match o {
            Operand::Col(j) if *j >= ncols => {
                Err(PyValueError::new_err("column index out of range"))
            }
            _ => Ok(()),
        }
    };
    let node = match tag.as_str() {
        "const" => Node::Const(t.get_item(1)?.extract()?),
        "truthy" => {
            let j: usize = t.get_item(1)?.extract()?;
            col(&Operand::Col(j))?;
            Node::Truthy(j)
        }
        "cmp" => {
            let op: String = t.get_item(1)?.extract()?;
            let op = CmpOp::parse(&op).ok_or_else(|| PyValueError::new_err("bad comparison"))?;
            let Operand::Col(j) = parse_operand(&t.get_item(2)?)? else {
                return Err(PyValueError::new_err("comparison must start with a column"));
            };
            col(&Operand::Col(j))?;
            let rhs = parse_operand(&t.get_item(3)?)?;
            col(&rhs)?;
            Node::Cmp(op, j, rhs)
        }
        "in" => {
            let item = parse_operand(&t.get_item(1)?)?;
            col(&item)?;
            let c = t.get_item(2)?;
            let ct = c.cast::<PyTuple>()?;
            let ctag: String = ct.get_item(0)?.extract()?;
            let container = if ctag == "list" {
                let items = ct
                    .get_item(1)?
                    .cast::<PyList>()?
                    .iter()
                    .map(|i| parse_lit(i.cast::<PyTuple>()?))
                    .collect::<PyResult<Vec<_>>>()?;
                Container::List {
                    items,
                    has_null: ct.get_item(2)?.extract()?,
                }
            } else {
                let Operand::Col(j) = parse_operand(&c)? else {
                    return Err(PyValueError::new_err("`in` needs a list"));
                };
                col(&Operand::Col(j))?;
                Container::Col(j)
            };
            Node::In(item, container)
        }
        "contains" | "startswith" => {
            let a = parse_operand(&t.get_item(1)?)?;
            let b = parse_operand(&t.get_item(2)?)?;
            col(&a)?;
            col(&b)?;
            if tag == "contains" {
                Node::Contains(a, b)
            } else {
                Node::StartsWith(a, b)
            }
        }
        "and" | "or" => {
            let items = t
                .get_item(1)?
                .cast::<PyList>()?
                .iter()
                .map(|i| parse_node(&i, ncols))
                .collect::<PyResult<Vec<_>>>()?;
            if tag == "and" {
                Node::And(items)
            } else {
                Node::Or(items)
            }
        }
        "not" => Node::Not(Box::new(parse_node(&t.get_item(1)?, ncols)?)),
        other => return Err(PyValueError::new_err(format!("unknown plan node {other}"))),
    };
    Ok(node)
}

/// Evaluate a planned predicate over `n` rows of columns into `out` (a writable uint8 buffer).
#[pyfunction]
fn filter_mask(
    py: Python<'_>,
    plan: &Bound<'_, PyAny>,
    columns: &Bound<'_, PyList>,
    n: usize,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let node = filter::optimize(parse_node(plan, columns.len())?);
    let mut keep = Keep::default();
    let mut cols = Vec::with_capacity(columns.len());
    for c in columns.iter() {
        let col = keep.column(&c)?;
        if col.len < n {
            return Err(PyValueError::new_err("column shorter than the batch"));
        }
        cols.push(col);
    }
    let out_buf = PyBuffer::<u8>::get(out)?;
    if out_buf.readonly() || !out_buf.is_c_contiguous() || out_buf.item_count() != n {
        return Err(PyValueError::new_err(
            "out must be a writable contiguous uint8 array of n",
        ));
    }
    let ptr = out_buf.buf_ptr() as usize;
    py.detach(|| {
        // SAFETY: `out_buf` is a writable, contiguous buffer of n bytes held for this call.
        let out = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, n) };
        filter::filter(&node, &cols, out);
    });
    drop(keep);
    Ok(())
}

/// Add the Python-visible functions and classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(filter_mask, m)?)?;
    crate::caps::register(m)?;
    crate::limiter::register(m)?;
    Ok(())
}
