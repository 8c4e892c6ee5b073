//! The network model: per-link latency and loss, one-way cuts, holds, and
//! in-order delivery per (sender machine, receiver machine) pair.

use crate::payload::Payload;
use distzero::{Latency, Link, MachineId, NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fixed (so deterministic) hasher for the lookup-only maps of the
/// hot path. These maps are never iterated where order could leak.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;

/// Key of an ordered machine pair.
#[inline]
pub fn pair(from: MachineId, to: MachineId) -> u64 {
    ((from.0 as u64) << 32) | to.0 as u64
}

/// What the network decides for one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver at this virtual time (nanoseconds).
    At(u64),
    Lost,
    Held,
}

/// A message waiting on a held link: (from, to, bytes).
pub(crate) type HeldMsg = (NodeId, NodeId, Payload);

/// Network state. Links not in `links` use `default`.
pub struct Net {
    pub default: Link,
    links: HashMap<u64, Link, FxBuild>,
    cuts: HashSet<u64, FxBuild>,
    /// Held pairs and the messages queued on each, in send order.
    held: BTreeMap<u64, Vec<HeldMsg>>,
    /// Last scheduled delivery per pair, for FIFO order with random latency.
    last: HashMap<u64, u64, FxBuild>,
    /// No per-link settings, cuts or holds: every pair uses `default`.
    plain: bool,
    /// Opt-in hostility: deliver out of order per pair.
    pub reorder: bool,
    /// Opt-in hostility: probability of delivering a second copy.
    pub duplicate: f64,
}

impl Net {
    pub fn new(default: Link) -> Self {
        Net {
            default,
            links: HashMap::default(),
            cuts: HashSet::default(),
            held: BTreeMap::new(),
            last: HashMap::default(),
            plain: true,
            reorder: false,
            duplicate: 0.0,
        }
    }

    pub fn set_link(&mut self, from: MachineId, to: MachineId, link: Link) {
        self.links.insert(pair(from, to), link);
        self.replan();
    }

    fn replan(&mut self) {
        self.plain = self.links.is_empty() && self.cuts.is_empty() && self.held.is_empty();
    }

    pub fn link(&self, from: MachineId, to: MachineId) -> &Link {
        if self.links.is_empty() {
            return &self.default;
        }
        self.links.get(&pair(from, to)).unwrap_or(&self.default)
    }

    pub fn cut(&mut self, from: MachineId, to: MachineId) {
        self.cuts.insert(pair(from, to));
        self.replan();
    }

    /// Undo a cut and a hold; what the hold queued is dropped.
    pub fn heal(&mut self, from: MachineId, to: MachineId) {
        self.cuts.remove(&pair(from, to));
        self.held.remove(&pair(from, to));
        self.replan();
    }

    pub fn heal_all(&mut self) {
        self.cuts.clear();
        self.held.clear();
        self.replan();
    }

    #[inline]
    pub fn is_cut(&self, from: MachineId, to: MachineId) -> bool {
        !self.cuts.is_empty() && self.cuts.contains(&pair(from, to))
    }

    pub fn hold(&mut self, from: MachineId, to: MachineId) {
        self.held.entry(pair(from, to)).or_default();
        self.replan();
    }

    /// Queue a message on its held link (after `route` said `Held`).
    pub(crate) fn park(&mut self, msg: HeldMsg) {
        let key = pair(msg.0.machine, msg.1.machine);
        self.held.entry(key).or_default().push(msg);
    }

    /// End a hold; returns what it queued, to be routed again in order.
    pub(crate) fn release(&mut self, from: MachineId, to: MachineId) -> Vec<HeldMsg> {
        let queued = self.held.remove(&pair(from, to)).unwrap_or_default();
        self.replan();
        queued
    }

    #[inline]
    pub fn is_held(&self, from: MachineId, to: MachineId) -> bool {
        !self.held.is_empty() && self.held.contains_key(&pair(from, to))
    }

    /// Decide the fate of one message sent at `now` (ns). Controller links
    /// are never cut, held or lossy: the test stands outside the network.
    #[inline]
    pub fn route(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: MachineId,
        to: MachineId,
    ) -> Verdict {
        // The common case first: one fixed, lossless link for every pair.
        if self.plain && self.default.loss == 0.0 {
            if let Latency::Fixed(d) = self.default.latency {
                return Verdict::At(now + d.as_nanos() as u64);
            }
        }
        self.route_link(rng, now, from, to)
    }

    #[inline(never)]
    fn route_link(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: MachineId,
        to: MachineId,
    ) -> Verdict {
        let outside = from.is_controller() || to.is_controller();
        if !outside {
            if self.is_cut(from, to) {
                return Verdict::Lost;
            }
            if self.is_held(from, to) {
                return Verdict::Held;
            }
        }
        let link = *self.link(from, to);
        if !outside && link.loss > 0.0 && rng.gen_bool(link.loss) {
            return Verdict::Lost;
        }
        let mut at = now + link.latency.sample(rng).as_nanos() as u64;
        if !self.reorder && !matches!(link.latency, Latency::Fixed(_)) {
            // FIFO per pair, as TCP: never overtake an earlier message.
            let last = self.last.entry(pair(from, to)).or_insert(0);
            if at < *last {
                at = *last;
            }
            *last = at;
        }
        Verdict::At(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn fifo_per_pair_with_random_latency() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Net::new(Link {
            latency: Latency::Uniform {
                min: Duration::from_micros(1),
                max: Duration::from_millis(50),
            },
            loss: 0.0,
        });
        let mut prev = 0;
        for i in 0..1000 {
            match net.route(&mut rng, i * 10, MachineId(0), MachineId(1)) {
                Verdict::At(t) => {
                    assert!(t >= prev, "message {i} overtook an earlier one");
                    prev = t;
                }
                v => panic!("unexpected {v:?}"),
            }
        }
    }

    #[test]
    fn cuts_are_one_way_and_spare_the_controller() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Net::new(Link::default());
        net.cut(MachineId(0), MachineId(1));
        assert_eq!(
            net.route(&mut rng, 0, MachineId(0), MachineId(1)),
            Verdict::Lost
        );
        assert!(matches!(
            net.route(&mut rng, 0, MachineId(1), MachineId(0)),
            Verdict::At(_)
        ));
        net.cut(MachineId::CONTROLLER, MachineId(1));
        assert!(matches!(
            net.route(&mut rng, 0, MachineId::CONTROLLER, MachineId(1)),
            Verdict::At(_)
        ));
        net.heal(MachineId(0), MachineId(1));
        assert!(matches!(
            net.route(&mut rng, 0, MachineId(0), MachineId(1)),
            Verdict::At(_)
        ));
    }
}
