//! Rate-limited batching: GCRA limits per provider and per (provider, tenant), stride-scheduled
//! fair interleaving of campaigns by priority, provider batches, and 429 slowdowns.
//!
//! The algorithm is spelled out in `cadence/dispatch/limiter.py`; `PyLimiter` there is the
//! twin this must match exactly. All times are integer microseconds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use pyo3::buffer::PyBuffer;

use crate::buffers::{slice, slice_mut};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;

use crate::caps::IdMap;

/// Pass increment for weight 1; stride = STRIDE_ONE / weight.
pub const STRIDE_ONE: i64 = 1 << 20;
/// How much slower a provider runs during 429 recovery.
pub const SLOW_FACTOR: i64 = 2;

/// A GCRA limiter: emission interval, tolerance and theoretical arrival time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    pub interval: i64,
    pub tau: i64,
    pub tat: Option<i64>,
}

impl Gcra {
    /// A limiter of one message per `interval` µs with `burst` allowed at once.
    pub fn new(interval: i64, burst: i64) -> Gcra {
        Gcra {
            interval,
            tau: interval.saturating_mul(burst.max(1) - 1),
            tat: None,
        }
    }

    /// The earliest time the next message conforms (None: any time).
    #[inline]
    pub fn earliest(&self) -> Option<i64> {
        self.tat.map(|t| t.saturating_sub(self.tau))
    }

    #[inline]
    fn advance(&mut self, t: i64, interval: i64) {
        let base = match self.tat {
            Some(tat) if tat >= t => tat,
            _ => t,
        };
        self.tat = Some(base.saturating_add(interval));
    }
}

/// A provider's limiter plus batching and slowdown settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provider {
    pub gcra: Gcra,
    pub batch_size: usize,
    pub linger: i64,
    pub recovery: i64,
    pub slow_until: Option<i64>,
}

#[inline]
fn later(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(x.max(y)),
    }
}

/// A queued message: its ready time, input index and local tenant index.
#[derive(Clone, Copy, Debug)]
struct QItem {
    ready: i64,
    idx: usize,
    tenant: usize,
}

/// A tenant's batch being filled: id, first and latest member times, members.
#[derive(Clone, Debug, Default)]
struct OpenBatch {
    open: bool,
    id: i64,
    first: i64,
    latest: i64,
    members: Vec<usize>,
}

impl OpenBatch {
    /// Every member goes with the batch, at its latest member's time.
    fn close(&mut self, out: &mut Planned<'_>) {
        for &m in &self.members {
            out.send_at[m] = self.latest;
            out.batch[m] = self.id;
        }
        self.members.clear();
        self.open = false;
    }
}

/// The limiter state that persists across `schedule` calls.
#[derive(Default, Debug, Clone)]
pub struct Limiter {
    pub providers: IdMap<i64, Provider>,
    tenant_defaults: IdMap<i64, (i64, i64)>,
    tenant_limits: HashMap<(i64, i64), (i64, i64)>,
    tenants: HashMap<(i64, i64), Gcra>,
}

/// Inputs to `schedule`, one entry per pending send.
pub struct Pending<'a> {
    pub campaign: &'a [i64],
    pub priority: &'a [i64],
    pub provider: &'a [i64],
    pub tenant: &'a [i64],
    pub ready_at: &'a [i64],
}

/// Outputs of `schedule`.
pub struct Planned<'a> {
    pub send_at: &'a mut [i64],
    pub batch: &'a mut [i64],
    pub order: &'a mut [i64],
}

impl Limiter {
    /// Configure a provider (resets its state).
    pub fn set_provider(
        &mut self,
        provider: i64,
        interval: i64,
        burst: i64,
        batch_size: i64,
        linger: i64,
        recovery: i64,
    ) {
        self.providers.insert(
            provider,
            Provider {
                gcra: Gcra::new(interval, burst),
                batch_size: batch_size.max(1) as usize,
                linger: linger.max(0),
                recovery: recovery.max(0),
                slow_until: None,
            },
        );
    }

    /// The limit every tenant gets on `provider` unless it has its own.
    pub fn set_tenant_default(&mut self, provider: i64, interval: i64, burst: i64) {
        self.tenant_defaults.insert(provider, (interval, burst));
    }

    /// A tenant's own limit on `provider` (resets that tenant's state).
    pub fn set_tenant(&mut self, provider: i64, tenant: i64, interval: i64, burst: i64) {
        self.tenant_limits
            .insert((provider, tenant), (interval, burst));
        self.tenants.remove(&(provider, tenant));
    }

    /// A 429 at `now`: pause until now + retry_after, then run slower for the recovery period.
    pub fn throttle(&mut self, provider: i64, now: i64, retry_after: i64) -> bool {
        let Some(p) = self.providers.get_mut(&provider) else {
            return false;
        };
        let until = now.saturating_add(retry_after.max(0));
        p.gcra.tat = later(p.gcra.tat, Some(until.saturating_add(p.gcra.tau)));
        p.slow_until = later(p.slow_until, Some(until.saturating_add(p.recovery)));
        true
    }

    fn tenant_gcra(&self, provider: i64, tenant: i64) -> Option<Gcra> {
        if let Some(g) = self.tenants.get(&(provider, tenant)) {
            return Some(*g);
        }
        let lim = self
            .tenant_limits
            .get(&(provider, tenant))
            .or_else(|| self.tenant_defaults.get(&provider))?;
        Some(Gcra::new(lim.0, lim.1))
    }

    /// Plan pending sends; fails (changing nothing) if a provider is not configured.
    pub fn schedule(&mut self, input: &Pending<'_>, out: &mut Planned<'_>) -> Result<(), i64> {
        let mut by_provider: IdMap<i64, Vec<usize>> = IdMap::default();
        for (i, p) in input.provider.iter().enumerate() {
            if !self.providers.contains_key(p) {
                return Err(*p);
            }
            by_provider.entry(*p).or_default().push(i);
        }
        let mut pids: Vec<i64> = by_provider.keys().copied().collect();
        pids.sort_unstable();
        let mut next_batch = 0i64;
        let mut picked = 0usize;
        for pid in pids {
            let idx = &by_provider[&pid];
            self.schedule_provider(pid, idx, input, out, &mut next_batch, &mut picked);
        }
        Ok(())
    }

    fn schedule_provider(
        &mut self,
        pid: i64,
        idx: &[usize],
        input: &Pending<'_>,
        out: &mut Planned<'_>,
        next_batch: &mut i64,
        picked: &mut usize,
    ) {
        let mut prov = self.providers[&pid];
        // Campaign queues, in first-appearance order, each sorted (stably) by ready time. Items
        // carry what the loop needs so it reads each queue sequentially.
        let mut camp_index: IdMap<i64, usize> = IdMap::default();
        let mut queues: Vec<Vec<QItem>> = Vec::new();
        let mut cids: Vec<i64> = Vec::new();
        let mut stride: Vec<i64> = Vec::new();
        // Tenants seen on this provider, with their limiter state loaded locally.
        let mut tenant_index: IdMap<i64, usize> = IdMap::default();
        let mut tenant_ids: Vec<i64> = Vec::new();
        let mut gcras: Vec<Option<Gcra>> = Vec::new();
        let (mut last_c, mut last_ci) = (None, 0usize);
        let (mut last_t, mut last_ti) = (None, 0usize);
        for &i in idx {
            let c = input.campaign[i];
            if last_c != Some(c) {
                last_ci = *camp_index.entry(c).or_insert_with(|| {
                    queues.push(Vec::new());
                    cids.push(c);
                    let w = input.priority[i].clamp(1, STRIDE_ONE);
                    stride.push(STRIDE_ONE / w);
                    queues.len() - 1
                });
                last_c = Some(c);
            }
            let tn = input.tenant[i];
            if last_t != Some(tn) {
                last_ti = *tenant_index.entry(tn).or_insert_with(|| {
                    tenant_ids.push(tn);
                    gcras.push(self.tenant_gcra(pid, tn));
                    tenant_ids.len() - 1
                });
                last_t = Some(tn);
            }
            queues[last_ci].push(QItem {
                ready: input.ready_at[i],
                idx: i,
                tenant: last_ti,
            });
        }
        for q in &mut queues {
            q.sort_by_key(|item| item.ready);
        }
        let mut heads = vec![0usize; queues.len()];
        let mut passes = vec![0i64; queues.len()];
        let mut vtime = 0i64;

        let key = |c: usize, heads: &[usize], gcras: &[Option<Gcra>]| -> i64 {
            let item = &queues[c][heads[c]];
            let g = gcras[item.tenant].and_then(|g| g.earliest());
            later(Some(item.ready), g).unwrap_or(i64::MIN)
        };

        let mut waiting: BinaryHeap<Reverse<(i64, i64, usize)>> = (0..queues.len())
            .map(|c| Reverse((key(c, &heads, &gcras), cids[c], c)))
            .collect();
        let mut eligible: BinaryHeap<Reverse<(i64, i64, usize)>> = BinaryHeap::new();
        // The open batch of each local tenant (members reuse their buffer).
        let mut open: Vec<OpenBatch> = vec![OpenBatch::default(); tenant_ids.len()];

        let mut remaining = idx.len();
        while remaining > 0 {
            let cursor = prov.gcra.earliest();
            if let Some(cur) = cursor {
                while let Some(&Reverse((k, cid, c))) = waiting.peek() {
                    if k > cur {
                        break;
                    }
                    waiting.pop();
                    let rk = key(c, &heads, &gcras);
                    if rk > k {
                        waiting.push(Reverse((rk, cid, c)));
                        continue;
                    }
                    passes[c] = passes[c].max(vtime);
                    eligible.push(Reverse((passes[c], cid, c)));
                }
            }
            let c = if let Some(Reverse((_, cid, c))) = eligible.pop() {
                let rk = key(c, &heads, &gcras);
                match cursor {
                    Some(cur) if rk <= cur => c,
                    _ => {
                        waiting.push(Reverse((rk, cid, c)));
                        continue;
                    }
                }
            } else {
                let Some(Reverse((k, cid, c))) = waiting.pop() else {
                    break;
                };
                let rk = key(c, &heads, &gcras);
                if rk > k {
                    waiting.push(Reverse((rk, cid, c)));
                    continue;
                }
                passes[c] = passes[c].max(vtime);
                c
            };
            let QItem {
                ready,
                idx: m,
                tenant: ti,
            } = queues[c][heads[c]];
            heads[c] += 1;
            remaining -= 1;
            let t = later(
                later(Some(ready), cursor),
                gcras[ti].and_then(|g| g.earliest()),
            )
            .unwrap_or(i64::MIN);
            let slow = matches!(prov.slow_until, Some(s) if t < s);
            let interval = if slow {
                prov.gcra.interval.saturating_mul(SLOW_FACTOR)
            } else {
                prov.gcra.interval
            };
            prov.gcra.advance(t, interval);
            if let Some(g) = gcras[ti].as_mut() {
                let iv = g.interval;
                g.advance(t, iv);
            }
            vtime = passes[c];
            passes[c] = passes[c].saturating_add(stride[c]);
            out.order[*picked] = m as i64;
            *picked += 1;
            // Batching per tenant.
            let b = &mut open[ti];
            if b.open
                && (b.members.len() >= prov.batch_size
                    || (t as i128 - b.first as i128) > prov.linger as i128)
            {
                b.close(out);
            }
            if !b.open {
                b.open = true;
                b.id = *next_batch;
                b.first = t;
                b.latest = t;
                *next_batch += 1;
            }
            b.latest = b.latest.max(t);
            b.members.push(m);
            if heads[c] < queues[c].len() {
                let rk = key(c, &heads, &gcras);
                match prov.gcra.earliest() {
                    Some(cur) if rk <= cur => eligible.push(Reverse((passes[c], cids[c], c))),
                    _ => waiting.push(Reverse((rk, cids[c], c))),
                }
            }
        }
        for b in &mut open {
            if b.open {
                b.close(out);
            }
        }
        self.providers.insert(pid, prov);
        for (ti, g) in gcras.into_iter().enumerate() {
            if let Some(g) = g {
                self.tenants.insert((pid, tenant_ids[ti]), g);
            }
        }
    }
}

/// The Python-facing limiter (`cadence._dispatch_core.Limiter`).
#[pyclass(name = "Limiter", module = "cadence._dispatch_core")]
#[derive(Default)]
pub struct PyLimiter {
    inner: Limiter,
}

#[pymethods]
impl PyLimiter {
    #[new]
    fn new() -> Self {
        PyLimiter::default()
    }

    fn set_provider(
        &mut self,
        provider: i64,
        interval: i64,
        burst: i64,
        batch_size: i64,
        linger: i64,
        recovery: i64,
    ) {
        self.inner
            .set_provider(provider, interval, burst, batch_size, linger, recovery);
    }

    fn set_tenant_default(&mut self, provider: i64, interval: i64, burst: i64) {
        self.inner.set_tenant_default(provider, interval, burst);
    }

    fn set_tenant(&mut self, provider: i64, tenant: i64, interval: i64, burst: i64) {
        self.inner.set_tenant(provider, tenant, interval, burst);
    }

    fn throttle(&mut self, provider: i64, now: i64, retry_after: i64) -> PyResult<()> {
        if self.inner.throttle(provider, now, retry_after) {
            Ok(())
        } else {
            Err(PyKeyError::new_err(provider))
        }
    }

    fn tat(&self, provider: i64) -> PyResult<Option<i64>> {
        match self.inner.providers.get(&provider) {
            Some(p) => Ok(p.gcra.tat),
            None => Err(PyKeyError::new_err(provider)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn schedule(
        &mut self,
        py: Python<'_>,
        campaign: PyBuffer<i64>,
        priority: PyBuffer<i64>,
        provider: PyBuffer<i64>,
        tenant: PyBuffer<i64>,
        ready_at: PyBuffer<i64>,
        mut send_at: PyBuffer<i64>,
        mut batch: PyBuffer<i64>,
        mut order: PyBuffer<i64>,
    ) -> PyResult<()> {
        let input = Pending {
            campaign: slice(&campaign)?,
            priority: slice(&priority)?,
            provider: slice(&provider)?,
            tenant: slice(&tenant)?,
            ready_at: slice(&ready_at)?,
        };
        let n = input.campaign.len();
        if [
            input.priority.len(),
            input.provider.len(),
            input.tenant.len(),
            input.ready_at.len(),
        ]
        .iter()
        .any(|&l| l != n)
        {
            return Err(PyValueError::new_err(
                "all schedule inputs must have one length",
            ));
        }
        let mut out = Planned {
            send_at: slice_mut(&mut send_at, n)?,
            batch: slice_mut(&mut batch, n)?,
            order: slice_mut(&mut order, n)?,
        };
        let inner = &mut self.inner;
        let res = py.detach(|| inner.schedule(&input, &mut out));
        res.map_err(|p| PyKeyError::new_err(format!("provider {p} is not configured")))
    }
}

/// Add the limiter class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLimiter>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(l: &mut Limiter, camp: &[i64], prio: &[i64], ready: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let n = camp.len();
        let prov = vec![1i64; n];
        let ten = vec![0i64; n];
        let (mut s, mut b, mut o) = (vec![0; n], vec![0; n], vec![0; n]);
        let input = Pending {
            campaign: camp,
            priority: prio,
            provider: &prov,
            tenant: &ten,
            ready_at: ready,
        };
        let mut out = Planned {
            send_at: &mut s,
            batch: &mut b,
            order: &mut o,
        };
        l.schedule(&input, &mut out).unwrap();
        (s, o)
    }

    #[test]
    fn spaces_messages_by_the_rate() {
        let mut l = Limiter::default();
        l.set_provider(1, 100, 1, 1, 0, 0);
        let (s, _) = run(&mut l, &[1, 1, 1], &[1, 1, 1], &[0, 0, 0]);
        assert_eq!(s, vec![0, 100, 200]);
    }

    #[test]
    fn burst_lets_several_go_at_once() {
        let mut l = Limiter::default();
        l.set_provider(1, 100, 3, 1, 0, 0);
        let (s, _) = run(&mut l, &[1; 4], &[1; 4], &[0; 4]);
        assert_eq!(s, vec![0, 0, 0, 100]);
    }

    #[test]
    fn a_triggered_email_is_not_starved_by_a_broadcast() {
        let mut l = Limiter::default();
        l.set_provider(1, 10, 1, 1, 0, 0);
        let mut camp = vec![1i64; 1000];
        let mut prio = vec![1i64; 1000];
        let mut ready = vec![0i64; 1000];
        camp.push(2);
        prio.push(10);
        ready.push(50);
        let (s, _) = run(&mut l, &camp, &prio, &ready);
        assert!(s[1000] <= 70, "triggered email went at {}", s[1000]);
    }

    #[test]
    fn throttle_pauses_then_slows() {
        let mut l = Limiter::default();
        l.set_provider(1, 100, 1, 1, 0, 1000);
        l.throttle(1, 0, 500);
        let (s, _) = run(&mut l, &[1; 3], &[1; 3], &[0; 3]);
        assert_eq!(s, vec![500, 700, 900]);
    }

    #[test]
    fn batches_group_up_to_batch_size() {
        let mut l = Limiter::default();
        l.set_provider(1, 10, 1, 2, 100, 0);
        let n = 5;
        let (camp, prio, prov, ten, ready) = (
            vec![1i64; n],
            vec![1i64; n],
            vec![1i64; n],
            vec![0i64; n],
            vec![0i64; n],
        );
        let (mut s, mut b, mut o) = (vec![0; n], vec![0; n], vec![0; n]);
        let input = Pending {
            campaign: &camp,
            priority: &prio,
            provider: &prov,
            tenant: &ten,
            ready_at: &ready,
        };
        let mut out = Planned {
            send_at: &mut s,
            batch: &mut b,
            order: &mut o,
        };
        l.schedule(&input, &mut out).unwrap();
        assert_eq!(b, vec![0, 0, 1, 1, 2]);
        assert_eq!(s, vec![10, 10, 30, 30, 40]);
    }
}
