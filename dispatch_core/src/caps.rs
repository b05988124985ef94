//! Frequency caps: per-contact sliding-window counts with batch check-and-reserve.
//!
//! A rule "N per W" (on one channel or all) holds when no W-long stretch contains more than N
//! of the contact's covered sends, future reservations included. Identical to
//! `cadence/dispatch/caps.py::PyCapIndex`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::buffer::PyBuffer;

use crate::buffers::{slice, slice_mut};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::prelude::*;

/// Channel code meaning "every channel".
pub const ALL_CHANNELS: i32 = -1;

/// A small multiplicative hasher for i64 contact ids (SipHash is needlessly slow here).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_i64(&mut self, v: i64) {
        // splitmix64's finaliser: every input bit reaches every output bit.
        let mut x = (v as u64 ^ self.0).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = x ^ (x >> 31);
    }
    fn write_i32(&mut self, v: i32) {
        self.write_i64(v as i64);
    }
}

/// A HashMap keyed by ids with the fast hasher.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// One cap rule: channel code (or ALL_CHANNELS), limit, window in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub channel: i32,
    pub limit: usize,
    pub window: i64,
}

/// Contacts are spread over this many shards; a batch is processed shard by shard, so each
/// shard's small table stays in cache, and shards run in parallel (contacts are independent).
pub const SHARDS: usize = 128;
/// Below this many requests a batch runs on the calling thread only.
pub const PARALLEL_MIN_REQUESTS: usize = 16 * 1024;

#[inline]
fn shard_of(contact: i64) -> usize {
    let mut h = IdHasher::default();
    h.write_i64(contact);
    (h.finish() >> 57) as usize % SHARDS
}

/// The sends of the contacts in one shard, each contact's list sorted by (at, channel).
#[derive(Default, Debug, Clone)]
struct Shard {
    sends: IdMap<i64, Vec<(i64, i32)>>,
    scratch: Vec<i64>,
}

/// The first rule (index) that `at` on `channel` would break given `entries`, or -1.
fn first_denying(
    rules: &[Rule],
    entries: &[(i64, i32)],
    channel: i32,
    at: i64,
    scratch: &mut Vec<i64>,
) -> i32 {
    for (r, rule) in rules.iter().enumerate() {
        if rule.channel != ALL_CHANNELS && rule.channel != channel {
            continue;
        }
        if rule.limit == 0 {
            return r as i32;
        }
        let w = rule.window as i128;
        let from = at as i128 - w;
        let to = at as i128 + w;
        let lo = entries.partition_point(|&(t, _)| (t as i128) <= from);
        scratch.clear();
        for &(t, ch) in &entries[lo..] {
            if t as i128 >= to {
                break;
            }
            if rule.channel == ALL_CHANNELS || ch == rule.channel {
                scratch.push(t);
            }
        }
        let n = rule.limit;
        if scratch.len() >= n {
            for j in 0..=scratch.len() - n {
                let first = scratch[j].min(at) as i128;
                let last = scratch[j + n - 1].max(at) as i128;
                if last - first < w {
                    return r as i32;
                }
            }
        }
    }
    -1
}

#[inline]
fn insert_sorted(entries: &mut Vec<(i64, i32)>, channel: i32, at: i64) {
    let key = (at, channel);
    let i = entries.partition_point(|e| *e <= key);
    entries.insert(i, key);
}

impl Shard {
    #[inline]
    fn check_and_reserve(&mut self, rules: &[Rule], contact: i64, channel: i32, at: i64) -> i32 {
        let entries = self.sends.entry(contact).or_default();
        let d = first_denying(rules, entries, channel, at, &mut self.scratch);
        if d < 0 {
            insert_sorted(entries, channel, at);
        } else if entries.is_empty() {
            self.sends.remove(&contact);
        }
        d
    }
}

/// A request gathered for its shard: (contact, at, channel).
type Request = (i64, i64, i32);
/// One shard's work: its table, its requests in order, and where its decisions go.
type Job<'a> = (&'a mut Shard, &'a [Request], &'a mut [i32]);

/// Requests gathered into contiguous per-shard runs (order kept within a shard), so each worker
/// reads sequentially and touches only its shard's small table.
struct Grouped {
    keys: Vec<u8>,
    starts: Vec<usize>,
    requests: Vec<Request>,
}

fn group(contacts: &[i64], channels: &[i32], ats: &[i64]) -> Grouped {
    let keys: Vec<u8> = contacts.iter().map(|&c| shard_of(c) as u8).collect();
    let mut starts = vec![0usize; SHARDS + 1];
    for &k in &keys {
        starts[k as usize + 1] += 1;
    }
    for s in 0..SHARDS {
        starts[s + 1] += starts[s];
    }
    let mut fill = starts.clone();
    let mut requests: Vec<Request> = vec![(0, 0, 0); contacts.len()];
    for (i, &k) in keys.iter().enumerate() {
        requests[fill[k as usize]] = (contacts[i], ats[i], channels[i]);
        fill[k as usize] += 1;
    }
    Grouped {
        keys,
        starts,
        requests,
    }
}

/// The in-memory index of reserved and recorded sends.
#[derive(Debug, Clone)]
pub struct Caps {
    pub rules: Vec<Rule>,
    shards: Vec<Shard>,
}

impl Caps {
    /// An empty index for `rules`.
    pub fn new(rules: Vec<Rule>) -> Caps {
        Caps {
            rules,
            shards: vec![Shard::default(); SHARDS],
        }
    }

    /// The index of the first rule that denies (contact, channel, at), or -1 (nothing reserved).
    pub fn denied_by(&mut self, contact: i64, channel: i32, at: i64) -> i32 {
        let shard = &mut self.shards[shard_of(contact)];
        let entries = shard.sends.get(&contact).map(Vec::as_slice).unwrap_or(&[]);
        first_denying(&self.rules, entries, channel, at, &mut shard.scratch)
    }

    /// Check one request and reserve it when allowed: `check_and_reserve` of a batch of one,
    /// without the grouping a batch needs.
    pub fn check_and_reserve_one(&mut self, contact: i64, channel: i32, at: i64) -> i32 {
        self.shards[shard_of(contact)].check_and_reserve(&self.rules, contact, channel, at)
    }

    /// Insert a send, keeping the contact's list sorted by (at, channel).
    pub fn insert(&mut self, contact: i64, channel: i32, at: i64) {
        let shard = &mut self.shards[shard_of(contact)];
        insert_sorted(shard.sends.entry(contact).or_default(), channel, at);
    }

    /// Check requests in order (per contact, which is all that matters), reserving the allowed.
    pub fn check_and_reserve(
        &mut self,
        contacts: &[i64],
        channels: &[i32],
        ats: &[i64],
        allowed: &mut [u8],
        denied: &mut [i32],
    ) {
        let n = contacts.len();
        let rules = &self.rules;
        let Grouped {
            keys,
            starts,
            requests: grouped,
        } = group(contacts, channels, ats);
        let mut results = vec![0i32; n];
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(SHARDS);
        let (mut reqs, mut res) = (grouped.as_slice(), results.as_mut_slice());
        for (s, shard) in self.shards.iter_mut().enumerate() {
            let len = starts[s + 1] - starts[s];
            let (r, rest_r) = reqs.split_at(len);
            let (o, rest_o) = res.split_at_mut(len);
            reqs = rest_r;
            res = rest_o;
            jobs.push((shard, r, o));
        }
        let work = |(shard, reqs, out): Job<'_>| {
            for (&(contact, at, channel), d) in reqs.iter().zip(out.iter_mut()) {
                *d = shard.check_and_reserve(rules, contact, channel, at);
            }
        };
        if n < PARALLEL_MIN_REQUESTS {
            jobs.into_iter().for_each(work);
        } else {
            jobs.into_par_iter().for_each(work);
        }
        // Scatter the decisions back to request order.
        let mut cursor = starts;
        for (i, &k) in keys.iter().enumerate() {
            let d = results[cursor[k as usize]];
            cursor[k as usize] += 1;
            denied[i] = d;
            allowed[i] = (d < 0) as u8;
        }
    }

    /// Add many sends without checking them (rebuilding from the send log), shard-parallel.
    pub fn record(&mut self, contacts: &[i64], channels: &[i32], ats: &[i64]) {
        let Grouped {
            starts, requests, ..
        } = group(contacts, channels, ats);
        let work = |(s, shard): (usize, &mut Shard)| {
            for &(contact, at, channel) in &requests[starts[s]..starts[s + 1]] {
                insert_sorted(shard.sends.entry(contact).or_default(), channel, at);
            }
        };
        if contacts.len() < PARALLEL_MIN_REQUESTS {
            self.shards.iter_mut().enumerate().for_each(work);
        } else {
            self.shards.par_iter_mut().enumerate().for_each(work);
        }
    }

    /// Remove one matching send; whether one was found.
    pub fn release_one(&mut self, contact: i64, channel: i32, at: i64) -> bool {
        let shard = &mut self.shards[shard_of(contact)];
        let Some(entries) = shard.sends.get_mut(&contact) else {
            return false;
        };
        let key = (at, channel);
        let i = entries.partition_point(|e| *e < key);
        if i < entries.len() && entries[i] == key {
            entries.remove(i);
            if entries.is_empty() {
                shard.sends.remove(&contact);
            }
            true
        } else {
            false
        }
    }

    /// Drop sends earlier than `before`; how many were dropped.
    pub fn prune(&mut self, before: i64) -> usize {
        let mut dropped = 0;
        for shard in &mut self.shards {
            shard.sends.retain(|_, entries| {
                let i = entries.partition_point(|&(t, _)| t < before);
                dropped += i;
                entries.drain(..i);
                !entries.is_empty()
            });
        }
        dropped
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        for shard in &mut self.shards {
            shard.sends.clear();
        }
    }

    /// Number of sends held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| s.sends.values())
            .map(Vec::len)
            .sum()
    }

    /// Whether no sends are held.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.sends.is_empty())
    }
}

/// The Python-facing cap index (`cadence._dispatch_core.CapIndex`).
#[pyclass(name = "CapIndex", module = "cadence._dispatch_core")]
pub struct PyCaps {
    inner: Caps,
}

type Triple = (PyBuffer<i64>, PyBuffer<i32>, PyBuffer<i64>);

fn triple(t: &Triple) -> PyResult<(&[i64], &[i32], &[i64])> {
    let (c, ch, at) = (slice(&t.0)?, slice(&t.1)?, slice(&t.2)?);
    if c.len() != ch.len() || c.len() != at.len() {
        return Err(PyValueError::new_err(
            "contacts, channels and ats must have one length",
        ));
    }
    Ok((c, ch, at))
}

#[pymethods]
impl PyCaps {
    #[new]
    fn new(rules: Vec<(i32, i64, i64)>) -> PyResult<Self> {
        let mut out = Vec::with_capacity(rules.len());
        for (channel, limit, window) in rules {
            if limit < 0 || window <= 0 {
                return Err(PyValueError::new_err("limit >= 0 and window > 0 required"));
            }
            out.push(Rule {
                channel,
                limit: limit as usize,
                window,
            });
        }
        Ok(PyCaps {
            inner: Caps::new(out),
        })
    }

    fn check_and_reserve(
        &mut self,
        py: Python<'_>,
        contacts: PyBuffer<i64>,
        channels: PyBuffer<i32>,
        ats: PyBuffer<i64>,
        mut allowed: PyBuffer<u8>,
        mut denied: PyBuffer<i32>,
    ) -> PyResult<()> {
        let t = (contacts, channels, ats);
        let (c, ch, at) = triple(&t)?;
        let a = slice_mut(&mut allowed, c.len())?;
        let d = slice_mut(&mut denied, c.len())?;
        let inner = &mut self.inner;
        py.detach(|| inner.check_and_reserve(c, ch, at, a, d));
        Ok(())
    }

    /// One request, answered on the calling thread: it takes microseconds, so releasing the
    /// GIL (and grouping by shard) would cost more than the check.
    fn check_and_reserve_one(&mut self, contact: i64, channel: i32, at: i64) -> i32 {
        self.inner.check_and_reserve_one(contact, channel, at)
    }

    fn record(
        &mut self,
        py: Python<'_>,
        contacts: PyBuffer<i64>,
        channels: PyBuffer<i32>,
        ats: PyBuffer<i64>,
    ) -> PyResult<()> {
        let t = (contacts, channels, ats);
        let (c, ch, at) = triple(&t)?;
        let inner = &mut self.inner;
        py.detach(|| inner.record(c, ch, at));
        Ok(())
    }

    fn release(
        &mut self,
        contacts: PyBuffer<i64>,
        channels: PyBuffer<i32>,
        ats: PyBuffer<i64>,
        mut found: PyBuffer<u8>,
    ) -> PyResult<()> {
        let t = (contacts, channels, ats);
        let (c, ch, at) = triple(&t)?;
        let out = slice_mut(&mut found, c.len())?;
        for i in 0..c.len() {
            out[i] = self.inner.release_one(c[i], ch[i], at[i]) as u8;
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.inner.clear();
    }

    fn prune(&mut self, before: i64) -> usize {
        self.inner.prune(before)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// Add the cap index class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCaps>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn three_per_week_denies_the_fourth() {
        let mut caps = Caps::new(vec![Rule {
            channel: 0,
            limit: 3,
            window: 7 * DAY,
        }]);
        let contacts = [1i64; 5];
        let channels = [0, 0, 0, 0, 1];
        let ats = [0, DAY, 2 * DAY, 3 * DAY, 3 * DAY];
        let mut allowed = [0u8; 5];
        let mut denied = [0i32; 5];
        caps.check_and_reserve(&contacts, &channels, &ats, &mut allowed, &mut denied);
        assert_eq!(allowed, [1, 1, 1, 0, 1]);
        assert_eq!(denied, [-1, -1, -1, 0, -1]);
        assert!(caps.release_one(1, 0, DAY));
        assert!(!caps.release_one(1, 0, DAY));
        assert_eq!(caps.denied_by(1, 0, 3 * DAY), -1);
    }

    #[test]
    fn one_request_answers_as_a_batch_of_one() {
        let rules = vec![
            Rule {
                channel: 0,
                limit: 2,
                window: 7 * DAY,
            },
            Rule {
                channel: ALL_CHANNELS,
                limit: 3,
                window: DAY,
            },
        ];
        let (mut one, mut batch) = (Caps::new(rules.clone()), Caps::new(rules));
        let requests = [
            (1, 0, 0),
            (1, 1, 1),
            (1, 0, 2),
            (2, 0, 0),
            (1, 0, DAY),
            (1, 1, 3),
        ];
        for (contact, channel, at) in requests {
            let (mut allowed, mut denied) = ([0u8], [0i32]);
            batch.check_and_reserve(&[contact], &[channel], &[at], &mut allowed, &mut denied);
            assert_eq!(one.check_and_reserve_one(contact, channel, at), denied[0]);
        }
        assert_eq!(one.len(), batch.len());
    }

    #[test]
    fn future_reservations_count_too() {
        let mut caps = Caps::new(vec![Rule {
            channel: ALL_CHANNELS,
            limit: 1,
            window: DAY,
        }]);
        caps.insert(7, 2, 10 * DAY);
        assert_eq!(caps.denied_by(7, 0, 10 * DAY - DAY / 2), 0);
        assert_eq!(caps.denied_by(7, 0, 9 * DAY), -1);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut caps = Caps::new(vec![Rule {
            channel: ALL_CHANNELS,
            limit: 1,
            window: i64::MAX,
        }]);
        caps.insert(1, 0, i64::MIN);
        assert_eq!(caps.denied_by(1, 0, i64::MAX), -1);
        assert_eq!(caps.denied_by(1, 0, i64::MIN + 5), 0);
        assert_eq!(caps.prune(0), 1);
        assert!(caps.is_empty());
    }
}
