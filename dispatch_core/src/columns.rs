//! Borrowed views of Arrow-layout columns: values, validity bitmaps, string and list offsets.
//!
//! The views are plain slices so the evaluator can run without the GIL and in parallel; the
//! Python glue (`buffers` in lib.rs) builds them from numpy views of pyarrow buffers.

/// Offsets of a string or list column, 32- or 64-bit as Arrow stores them.
#[derive(Clone, Copy, Debug)]
pub enum Offsets<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Offsets<'_> {
    /// The half-open element range of row `i`.
    #[inline]
    pub fn range(&self, i: usize) -> (usize, usize) {
        match self {
            Offsets::I32(o) => (o[i] as usize, o[i + 1] as usize),
            Offsets::I64(o) => (o[i] as usize, o[i + 1] as usize),
        }
    }
}

/// An Arrow validity (or boolean value) bitmap starting at a bit offset.
#[derive(Clone, Copy, Debug)]
pub struct Bitmap<'a> {
    pub bytes: &'a [u8],
    pub offset: usize,
}

impl Bitmap<'_> {
    /// The bit for row `i`.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        let j = self.offset + i;
        (self.bytes[j >> 3] >> (j & 7)) & 1 == 1
    }
}

/// The values of a column, by kind.
#[derive(Clone, Debug)]
pub enum Values<'a> {
    Int(&'a [i64]),
    Float(&'a [f64]),
    Ts(&'a [i64]),
    Bool(Bitmap<'a>),
    Str {
        offsets: Offsets<'a>,
        data: &'a [u8],
    },
    List {
        offsets: Offsets<'a>,
        child: Box<Column<'a>>,
    },
}

/// One column: its length, optional validity bitmap and values.
#[derive(Clone, Debug)]
pub struct Column<'a> {
    pub len: usize,
    pub validity: Option<Bitmap<'a>>,
    pub values: Values<'a>,
}

/// A non-null scalar read from a column or given as a literal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    Int(i64),
    Float(f64),
    Ts(i64),
    Bool(bool),
    Str(&'a [u8]),
}

impl<'a> Column<'a> {
    /// Whether row `i` holds a value (float NaN counts as null).
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        let v = match &self.validity {
            Some(b) => b.get(i),
            None => true,
        };
        match &self.values {
            Values::Float(f) => v && !f[i].is_nan(),
            _ => v,
        }
    }

    /// The string bytes of row `i` (no validity check).
    #[inline]
    pub fn str_at(&self, i: usize) -> &'a [u8] {
        match &self.values {
            Values::Str { offsets, data } => {
                let (a, b) = offsets.range(i);
                &data[a..b]
            }
            _ => &[],
        }
    }

    /// The scalar at row `i`, or None when null. Lists are not scalars and give None.
    #[inline]
    pub fn get(&self, i: usize) -> Option<Val<'a>> {
        if !self.is_valid(i) {
            return None;
        }
        Some(match &self.values {
            Values::Int(v) => Val::Int(v[i]),
            Values::Float(v) => Val::Float(v[i]),
            Values::Ts(v) => Val::Ts(v[i]),
            Values::Bool(b) => Val::Bool(b.get(i)),
            Values::Str { .. } => Val::Str(self.str_at(i)),
            Values::List { .. } => return None,
        })
    }
}
