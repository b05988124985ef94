//! Segment filtering: evaluate a planned predicate over columnar contacts.
//!
//! Semantics are SQL three-valued logic, identical to `cadence/dispatch/_pyfilter.py`. Each node
//! fills two byte masks per chunk of rows: `t` (definitely true) and `f` (definitely false); a
//! row where neither is set is null. AND: t = t1 & t2, f = f1 | f2; OR is the dual; NOT swaps.
//! Large inputs are split into chunks evaluated in parallel with rayon.

use std::cmp::Ordering;
use std::collections::HashSet;

use rayon::prelude::*;

use crate::columns::{Column, Val, Values};

/// Rows per evaluation chunk: big enough for tight loops, small enough for cache.
pub const CHUNK: usize = 16 * 1024;
/// Below this many rows the filter runs on the calling thread only.
pub const PARALLEL_MIN_ROWS: usize = 64 * 1024;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// Parse the operator spelled as in the expression IR.
    pub fn parse(s: &str) -> Option<CmpOp> {
        Some(match s {
            "=" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => return None,
        })
    }

    /// Whether an ordering satisfies the operator.
    #[inline]
    pub fn holds(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// A typed, non-null literal owned by the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Ts(i64),
    Bool(bool),
    Str(Vec<u8>),
}

impl Lit {
    /// Borrow as a scalar value.
    pub fn val(&self) -> Val<'_> {
        match self {
            Lit::Int(v) => Val::Int(*v),
            Lit::Float(v) => Val::Float(*v),
            Lit::Ts(v) => Val::Ts(*v),
            Lit::Bool(v) => Val::Bool(*v),
            Lit::Str(v) => Val::Str(v),
        }
    }
}

/// A column reference or a literal.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Col(usize),
    Lit(Lit),
}

/// The right side of `in`: a list column or a list literal.
#[derive(Clone, Debug, PartialEq)]
pub enum Container {
    Col(usize),
    List { items: Vec<Lit>, has_null: bool },
}

/// A planned predicate, as `cadence/dispatch/plan.py` encodes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// 1 true, 0 false, -1 null.
    Const(i8),
    Truthy(usize),
    Cmp(CmpOp, usize, Operand),
    In(Operand, Container),
    Contains(Operand, Operand),
    StartsWith(Operand, Operand),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// Which rows a leaf evaluates: the chunk's first row and the optional live-row mask.
#[derive(Clone, Copy)]
struct Rows<'r> {
    start: usize,
    active: Option<&'r [u8]>,
}

/// A rough per-row cost, used to evaluate cheap children of AND/OR first.
fn cost(node: &Node) -> u32 {
    match node {
        Node::Const(_) => 0,
        Node::Truthy(_) => 1,
        Node::Cmp(_, _, Operand::Lit(_)) => 2,
        Node::Cmp(_, _, Operand::Col(_)) => 4,
        Node::In(_, Container::List { .. }) => 5,
        Node::StartsWith(..) => 6,
        Node::Contains(..) => 8,
        Node::In(_, Container::Col(_)) => 10,
        Node::Not(inner) => cost(inner),
        Node::And(items) | Node::Or(items) => 1 + items.iter().map(cost).sum::<u32>(),
    }
}

/// Reorder AND/OR children cheapest first (three-valued AND/OR are commutative).
pub fn optimize(node: Node) -> Node {
    match node {
        Node::And(items) => {
            let mut items: Vec<Node> = items.into_iter().map(optimize).collect();
            items.sort_by_key(cost);
            Node::And(items)
        }
        Node::Or(items) => {
            let mut items: Vec<Node> = items.into_iter().map(optimize).collect();
            items.sort_by_key(cost);
            Node::Or(items)
        }
        Node::Not(inner) => Node::Not(Box::new(optimize(*inner))),
        other => other,
    }
}

/// Order two scalars of one family: ints exactly, mixed numbers as f64 (NaN never reaches here).
#[inline]
pub fn compare(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
        (Val::Int(x), Val::Float(y)) => (x as f64).partial_cmp(&y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(y as f64)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(&y),
        (Val::Ts(x), Val::Ts(y)) => Some(x.cmp(&y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(&y)),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[inline]
fn equal(a: Val<'_>, b: Val<'_>) -> bool {
    compare(a, b) == Some(Ordering::Equal)
}

/// Byte-substring search (UTF-8 substring equals code-point substring).
#[inline]
fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.len() > hay.len() {
        return false;
    }
    let first = needle[0];
    let last = hay.len() - needle.len();
    let mut i = 0;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return false,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

/// Fill t/f for rows `start..start+t.len()` from a per-row (valid, result) function.
///
/// Rows where `active` is 0 are skipped (left neither true nor false): their parent has
/// already decided them, so per-row work there would be wasted.
#[inline(always)]
fn fill_rows<F: Fn(usize) -> Option<bool>>(
    start: usize,
    t: &mut [u8],
    f: &mut [u8],
    active: Option<&[u8]>,
    g: F,
) {
    for (k, (tk, fk)) in t.iter_mut().zip(f.iter_mut()).enumerate() {
        if let Some(a) = active {
            if a[k] == 0 {
                *tk = 0;
                *fk = 0;
                continue;
            }
        }
        match g(start + k) {
            Some(r) => {
                *tk = r as u8;
                *fk = (!r) as u8;
            }
            None => {
                *tk = 0;
                *fk = 0;
            }
        }
    }
}

/// Fill t/f from a dense slice and a predicate, then clear rows the validity bitmap marks null.
#[inline(always)]
fn fill_dense<T: Copy, P: Fn(T) -> bool>(vals: &[T], t: &mut [u8], f: &mut [u8], p: P) {
    for ((v, tk), fk) in vals.iter().zip(t.iter_mut()).zip(f.iter_mut()) {
        let r = p(*v) as u8;
        *tk = r;
        *fk = r ^ 1;
    }
}

fn apply_validity(col: &Column<'_>, start: usize, t: &mut [u8], f: &mut [u8]) {
    if let Some(bm) = &col.validity {
        for (k, (tk, fk)) in t.iter_mut().zip(f.iter_mut()).enumerate() {
            let v = bm.get(start + k) as u8;
            *tk &= v;
            *fk &= v;
        }
    }
}

macro_rules! dense_by_op {
    ($op:expr, $vals:expr, $t:expr, $f:expr, $lit:expr, $conv:expr) => {{
        let lit = $lit;
        let conv = $conv;
        match $op {
            CmpOp::Eq => fill_dense($vals, $t, $f, |v| conv(v) == lit),
            CmpOp::Ne => fill_dense($vals, $t, $f, |v| conv(v) != lit),
            CmpOp::Lt => fill_dense($vals, $t, $f, |v| conv(v) < lit),
            CmpOp::Le => fill_dense($vals, $t, $f, |v| conv(v) <= lit),
            CmpOp::Gt => fill_dense($vals, $t, $f, |v| conv(v) > lit),
            CmpOp::Ge => fill_dense($vals, $t, $f, |v| conv(v) >= lit),
        }
    }};
}

fn eval_cmp(
    op: CmpOp,
    col: &Column<'_>,
    rhs: &Operand,
    cols: &[Column<'_>],
    rows: Rows<'_>,
    t: &mut [u8],
    f: &mut [u8],
) {
    let Rows { start, active } = rows;
    let len = t.len();
    let fast = match (&col.values, rhs) {
        (Values::Int(vals), Operand::Lit(Lit::Int(l))) => {
            dense_by_op!(op, &vals[start..start + len], t, f, *l, |v: i64| v);
            true
        }
        (Values::Ts(vals), Operand::Lit(Lit::Ts(l))) => {
            dense_by_op!(op, &vals[start..start + len], t, f, *l, |v: i64| v);
            true
        }
        (Values::Int(vals), Operand::Lit(Lit::Float(l))) => {
            dense_by_op!(op, &vals[start..start + len], t, f, *l, |v: i64| v as f64);
            true
        }
        (Values::Float(vals), Operand::Lit(Lit::Float(l))) => {
            dense_by_op!(op, &vals[start..start + len], t, f, *l, |v: f64| v);
            for (k, v) in vals[start..start + len].iter().enumerate() {
                if v.is_nan() {
                    t[k] = 0;
                    f[k] = 0;
                }
            }
            true
        }
        (Values::Float(vals), Operand::Lit(Lit::Int(l))) => {
            dense_by_op!(op, &vals[start..start + len], t, f, *l as f64, |v: f64| v);
            for (k, v) in vals[start..start + len].iter().enumerate() {
                if v.is_nan() {
                    t[k] = 0;
                    f[k] = 0;
                }
            }
            true
        }
        _ => false,
    };
    if fast {
        apply_validity(col, start, t, f);
        return;
    }
    match rhs {
        Operand::Lit(l) => {
            let lv = l.val();
            fill_rows(start, t, f, active, |i| {
                let a = col.get(i)?;
                Some(op.holds(compare(a, lv)?))
            });
        }
        Operand::Col(j) => {
            let other = &cols[*j];
            fill_rows(start, t, f, active, |i| {
                let a = col.get(i)?;
                let b = other.get(i)?;
                Some(op.holds(compare(a, b)?))
            });
        }
    }
}

#[inline]
fn operand_val<'a>(op: &'a Operand, cols: &'a [Column<'a>], i: usize) -> Option<Val<'a>> {
    match op {
        Operand::Col(j) => cols[*j].get(i),
        Operand::Lit(l) => Some(l.val()),
    }
}

/// Up to this many literal strings are matched by a linear scan instead of hashing.
const SMALL_SET: usize = 16;

#[inline]
fn small_contains(set: &[&[u8]], x: &[u8]) -> bool {
    set.iter().any(|s| s.len() == x.len() && *s == x)
}

/// A prepared membership test against a list literal.
enum Matcher<'p> {
    SmallStrs(Vec<&'p [u8]>),
    Strs(HashSet<&'p [u8]>),
    Ints(HashSet<i64>),
    Any(Vec<Val<'p>>),
}

impl<'p> Matcher<'p> {
    fn new(items: &'p [Lit]) -> Matcher<'p> {
        if items.iter().all(|l| matches!(l, Lit::Str(_))) {
            let strs = items.iter().map(|l| match l {
                Lit::Str(s) => s.as_slice(),
                _ => unreachable!(),
            });
            if items.len() <= SMALL_SET {
                return Matcher::SmallStrs(strs.collect());
            }
            return Matcher::Strs(strs.collect());
        }
        if items.iter().all(|l| matches!(l, Lit::Int(_))) {
            return Matcher::Ints(
                items
                    .iter()
                    .map(|l| match l {
                        Lit::Int(v) => *v,
                        _ => unreachable!(),
                    })
                    .collect(),
            );
        }
        Matcher::Any(items.iter().map(Lit::val).collect())
    }

    #[inline]
    fn matches(&self, v: Val<'_>) -> bool {
        match (self, v) {
            (Matcher::SmallStrs(s), Val::Str(x)) => small_contains(s, x),
            (Matcher::Strs(s), Val::Str(x)) => s.contains(x),
            (Matcher::Ints(s), Val::Int(x)) => s.contains(&x),
            (Matcher::Ints(s), Val::Float(x)) => s.iter().any(|&e| e as f64 == x),
            (Matcher::Any(items), v) => items.iter().any(|e| equal(v, *e)),
            _ => false,
        }
    }
}

fn eval_in(
    item: &Operand,
    container: &Container,
    cols: &[Column<'_>],
    start: usize,
    t: &mut [u8],
    f: &mut [u8],
    active: Option<&[u8]>,
) {
    match container {
        Container::List { items, has_null } => {
            let m = Matcher::new(items);
            let miss = if *has_null { None } else { Some(false) };
            if let (Operand::Col(j), Matcher::SmallStrs(set)) = (item, &m) {
                let col = &cols[*j];
                if matches!(col.values, Values::Str { .. }) {
                    fill_rows(start, t, f, active, |i| {
                        if !col.is_valid(i) {
                            return None;
                        }
                        if small_contains(set, col.str_at(i)) {
                            Some(true)
                        } else {
                            miss
                        }
                    });
                    return;
                }
            }
            fill_rows(start, t, f, active, |i| {
                let v = operand_val(item, cols, i)?;
                if m.matches(v) {
                    Some(true)
                } else {
                    miss
                }
            });
        }
        Container::Col(j) => {
            let lists = &cols[*j];
            let (offsets, child) = match &lists.values {
                Values::List { offsets, child } => (*offsets, child.as_ref()),
                _ => {
                    fill_rows(start, t, f, None, |_| None);
                    return;
                }
            };
            // Fast path: a literal string looked up in a list-of-strings column (fan-out's
            // `event.city in contact.areas`): compare lengths, then bytes, no per-element Val.
            if let (Operand::Lit(Lit::Str(needle)), Values::Str { offsets: co, data }) =
                (item, &child.values)
            {
                let needle = needle.as_slice();
                let child_valid = child.validity;
                fill_rows(start, t, f, active, |i| {
                    if !lists.is_valid(i) {
                        return None;
                    }
                    let (a, b) = offsets.range(i);
                    let mut saw_null = false;
                    for e in a..b {
                        if let Some(bm) = &child_valid {
                            if !bm.get(e) {
                                saw_null = true;
                                continue;
                            }
                        }
                        let (x, y) = co.range(e);
                        if y.wrapping_sub(x) == needle.len()
                            && (needle.is_empty() || data[x] == needle[0])
                            && &data[x..y] == needle
                        {
                            return Some(true);
                        }
                    }
                    if saw_null {
                        None
                    } else {
                        Some(false)
                    }
                });
                return;
            }
            fill_rows(start, t, f, active, |i| {
                let v = operand_val(item, cols, i)?;
                if !lists.is_valid(i) {
                    return None;
                }
                let (a, b) = offsets.range(i);
                let mut saw_null = false;
                for e in a..b {
                    match child.get(e) {
                        None => saw_null = true,
                        Some(x) => {
                            if equal(v, x) {
                                return Some(true);
                            }
                        }
                    }
                }
                if saw_null {
                    None
                } else {
                    Some(false)
                }
            });
        }
    }
}

fn eval_str(
    starts: bool,
    a: &Operand,
    b: &Operand,
    cols: &[Column<'_>],
    rows: Rows<'_>,
    t: &mut [u8],
    f: &mut [u8],
) {
    let Rows { start, active } = rows;
    fill_rows(start, t, f, active, |i| {
        let (Val::Str(x), Val::Str(y)) = (operand_val(a, cols, i)?, operand_val(b, cols, i)?)
        else {
            return None;
        };
        Some(if starts {
            x.starts_with(y)
        } else {
            contains_bytes(x, y)
        })
    });
}

/// Evaluate `node` for rows `start..start + t.len()`, writing the true/false masks.
///
/// Where `active` is given and 0, the row's result is irrelevant to the caller and may be
/// anything consistent (never both true and false).
pub fn eval(
    node: &Node,
    cols: &[Column<'_>],
    start: usize,
    t: &mut [u8],
    f: &mut [u8],
    active: Option<&[u8]>,
) {
    match node {
        Node::Const(c) => {
            t.fill((*c == 1) as u8);
            f.fill((*c == 0) as u8);
        }
        Node::Truthy(j) => {
            let col = &cols[*j];
            match &col.values {
                Values::Bool(bits) => {
                    for (k, (tk, fk)) in t.iter_mut().zip(f.iter_mut()).enumerate() {
                        let r = bits.get(start + k) as u8;
                        *tk = r;
                        *fk = r ^ 1;
                    }
                    apply_validity(col, start, t, f);
                }
                _ => fill_rows(start, t, f, None, |_| None),
            }
        }
        Node::Cmp(op, j, rhs) => eval_cmp(*op, &cols[*j], rhs, cols, Rows { start, active }, t, f),
        Node::In(item, container) => eval_in(item, container, cols, start, t, f, active),
        Node::Contains(a, b) => eval_str(false, a, b, cols, Rows { start, active }, t, f),
        Node::StartsWith(a, b) => eval_str(true, a, b, cols, Rows { start, active }, t, f),
        Node::Not(inner) => eval(inner, cols, start, f, t, active),
        Node::And(items) | Node::Or(items) => {
            let is_and = matches!(node, Node::And(_));
            let Some((first, rest)) = items.split_first() else {
                t.fill(is_and as u8);
                f.fill((!is_and) as u8);
                return;
            };
            eval(first, cols, start, t, f, active);
            let mut t2 = vec![0u8; t.len()];
            let mut f2 = vec![0u8; t.len()];
            let mut act = vec![0u8; t.len()];
            for item in rest {
                // Rows already decided (false under AND, true under OR) need no more work.
                let decided = if is_and { &*f } else { &*t };
                let mut any = 0u8;
                for k in 0..act.len() {
                    let live = decided[k] ^ 1;
                    act[k] = match active {
                        Some(a) => live & a[k],
                        None => live,
                    };
                    any |= act[k];
                }
                if any == 0 {
                    break;
                }
                eval(item, cols, start, &mut t2, &mut f2, Some(&act));
                if is_and {
                    for k in 0..t.len() {
                        t[k] &= t2[k];
                        f[k] |= f2[k];
                    }
                } else {
                    for k in 0..t.len() {
                        t[k] |= t2[k];
                        f[k] &= f2[k];
                    }
                }
            }
        }
    }
}

fn eval_chunk(node: &Node, cols: &[Column<'_>], start: usize, out: &mut [u8]) {
    let mut f = vec![0u8; out.len()];
    eval(node, cols, start, out, &mut f, None);
}

/// Evaluate `node` over `out.len()` rows; out[i] = 1 where the predicate is true, else 0.
pub fn filter(node: &Node, cols: &[Column<'_>], out: &mut [u8]) {
    if out.len() < PARALLEL_MIN_ROWS {
        for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
            eval_chunk(node, cols, c * CHUNK, chunk);
        }
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| eval_chunk(node, cols, c * CHUNK, chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::{Bitmap, Offsets};

    fn run(node: &Node, cols: &[Column<'_>], n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        filter(node, cols, &mut out);
        out
    }

    #[test]
    fn int_comparison_respects_nulls() {
        let vals = [10i64, 50, 70, 99];
        let validity = [0b1011u8];
        let col = Column {
            len: 4,
            validity: Some(Bitmap {
                bytes: &validity,
                offset: 0,
            }),
            values: Values::Int(&vals),
        };
        let ge = Node::Cmp(CmpOp::Ge, 0, Operand::Lit(Lit::Int(50)));
        assert_eq!(run(&ge, std::slice::from_ref(&col), 4), vec![0, 1, 0, 1]);
        // not(null) stays null: row 2 is selected by neither the predicate nor its negation.
        let not = Node::Not(Box::new(ge));
        assert_eq!(run(&not, &[col], 4), vec![1, 0, 0, 0]);
    }

    #[test]
    fn three_valued_and_or() {
        let vals = [1i64, 1];
        let validity = [0b01u8];
        let col = Column {
            len: 2,
            validity: Some(Bitmap {
                bytes: &validity,
                offset: 0,
            }),
            values: Values::Int(&vals),
        };
        let eq = Node::Cmp(CmpOp::Eq, 0, Operand::Lit(Lit::Int(1)));
        let or = Node::Or(vec![eq.clone(), Node::Const(1)]);
        assert_eq!(run(&or, std::slice::from_ref(&col), 2), vec![1, 1]);
        let and = Node::And(vec![eq, Node::Const(-1)]);
        assert_eq!(run(&and, &[col], 2), vec![0, 0]);
    }

    #[test]
    fn string_in_list_and_list_column_membership() {
        let offs = [0i32, 2, 4, 4];
        let data = b"PHSG";
        let col = Column {
            len: 3,
            validity: None,
            values: Values::Str {
                offsets: Offsets::I32(&offs),
                data,
            },
        };
        let node = Node::In(
            Operand::Col(0),
            Container::List {
                items: vec![Lit::Str(b"SG".to_vec())],
                has_null: false,
            },
        );
        assert_eq!(run(&node, std::slice::from_ref(&col), 3), vec![0, 1, 0]);
        let list_offs = [0i32, 1, 3];
        let lists = Column {
            len: 2,
            validity: None,
            values: Values::List {
                offsets: Offsets::I32(&list_offs),
                child: Box::new(col),
            },
        };
        let node = Node::In(Operand::Lit(Lit::Str(b"".to_vec())), Container::Col(0));
        assert_eq!(run(&node, &[lists], 2), vec![0, 1]);
    }

    #[test]
    fn substring_search() {
        assert!(contains_bytes(b"hello world", b"o w"));
        assert!(contains_bytes(b"abc", b""));
        assert!(!contains_bytes(b"ab", b"abc"));
        assert!(contains_bytes("añb".as_bytes(), "ñ".as_bytes()));
    }

    #[test]
    fn mixed_numbers_compare_as_f64() {
        assert_eq!(compare(Val::Int(3), Val::Float(3.5)), Some(Ordering::Less));
        assert_eq!(
            compare(Val::Float(-0.0), Val::Float(0.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(Val::Int(i64::MAX), Val::Int(i64::MAX - 1)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn parallel_path_matches_serial() {
        let n = PARALLEL_MIN_ROWS * 3 + 17;
        let vals: Vec<i64> = (0..n as i64).collect();
        let col = Column {
            len: n,
            validity: None,
            values: Values::Int(&vals),
        };
        let node = Node::Cmp(CmpOp::Lt, 0, Operand::Lit(Lit::Int(100_000)));
        let out = run(&node, &[col], n);
        assert_eq!(out.iter().filter(|&&x| x == 1).count(), 100_000);
    }
}
