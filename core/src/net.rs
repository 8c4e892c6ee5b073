//! The one network model: what happens to a message between two machines.
//! The simulator and every agent run this same code, so the delivery
//! contract cannot drift between modes.
//!
//! # The delivery contract (every mode)
//!
//! Messages between machines are delivered **at most once**, **in order per
//! (sender machine, receiver machine) pair** whatever the link does (a
//! lowered latency never lets a later message overtake an earlier one;
//! `reorder` is an opt-in of the simulator only), and are **lost**:
//! - by the link's loss probability;
//! - when the link is cut at any moment while the message is in flight (a
//!   cut, even healed before the message would have arrived, loses it);
//! - when either end's machine crashes while it is in flight: a restarted
//!   machine never receives mail sent to its previous life, nor mail sent
//!   while it was down, and no node sees a message before its `on_start`;
//! - when a queue of the pair is full ([`MAX_QUEUED_PER_PAIR`] messages
//!   held or waiting out their latency): a legal loss, counted.
//!
//! `hold(a, b)` queues a -> b messages; `release` sends them on in order,
//! ahead of anything sent later; `heal(a, b)` ends a cut **and** a hold, and
//! drops what the hold queued (as a cut would have). Messages to a paused
//! machine wait at its door and arrive in order on resume.
//!
//! Nodes of one machine talk without a network: their messages take no
//! link, so they are never delayed, cut or lost, except by a crash of the
//! machine. A machine has no link to itself: `cut`, `hold`, `release`,
//! `heal` and `set_link` of `m -> m` are refused ([`check_pair`]). The test
//! itself (the controller) stands outside the network: its messages are
//! never cut, held or lost.
//!
//! # How
//!
//! Every message carries a [`Stamp`] taken when it is sent: the sum of the
//! two ends' *lives* (a counter per machine, odd while it is down, bumped by
//! every crash and restart) and the pair's *cut epoch* (bumped by every
//! cut). All three only grow, so the sum is unchanged at delivery exactly
//! when neither end crashed and the pair was not cut meanwhile: one `u32`
//! compare decides. An agent keeps its own copy of the model; the
//! controller sends every change to the agents at both ends of a pair
//! ([`NetOp`]), acknowledged before the fault call returns, so sender and
//! receiver agree on the stamp of every pair between two fault calls.
//!
//! A message's random fate (loss, latency) is drawn from [`Draws`] keyed by
//! the model's seed, its ordered pair and its number on that pair, cut or
//! held messages counted too: not from one stream that every message of
//! the run shares. So a fault on one pair, or its absence, changes no
//! other pair's draws, and a shrunk schedule replays the rest of the run
//! as it was (see `distzero_sim::sweep::shrink`).

use crate::error::{Error, Result};
use crate::ids::MachineId;
use crate::link::{Latency, Link};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Most messages one ordered pair may have queued (held, or waiting out
/// their latency in an agent); more are dropped as a legal loss and counted.
pub const MAX_QUEUED_PER_PAIR: usize = 65_536;

/// A small, fixed (so deterministic) hasher for lookup-only maps on hot
/// paths. Maps using it are never iterated where order could leak.
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

/// The one check of a fault call's pair, the same error in every mode.
pub fn check_pair(from: MachineId, to: MachineId) -> Result<()> {
    if from == to {
        return Err(Error::Unsupported(format!(
            "{from} -> {to}: a machine has no link to itself (its nodes talk without a network); \
             cut, hold, release, heal and set_link take two different machines"
        )));
    }
    if from.is_controller() || to.is_controller() {
        return Err(Error::Unsupported(format!(
            "{from} -> {to}: the controller stands outside the network; faults apply between machines"
        )));
    }
    Ok(())
}

/// Taken when a message is sent; the message is delivered only if the
/// pair's stamp is still the same when it arrives. See the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp(pub u32);

/// Why a message was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The link's loss probability.
    Dropped,
    /// The link is cut.
    Cut,
    /// A queue of the pair is full.
    Full,
    /// An end crashed, or the pair was cut, since it was sent.
    Stale,
}

/// What the network decides for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver at this time (ns; virtual in simulation), if the stamp still holds.
    At(u64, Stamp),
    /// Queue it on its held link ([`Net::park`]) with this stamp.
    Held(Stamp),
    Lost(Loss),
}

/// Losses by cause, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub dropped: u64,
    pub cut: u64,
    pub full: u64,
    pub stale: u64,
}

impl NetStats {
    pub fn count(&mut self, loss: Loss) {
        match loss {
            Loss::Dropped => self.dropped += 1,
            Loss::Cut => self.cut += 1,
            Loss::Full => self.full += 1,
            Loss::Stale => self.stale += 1,
        }
    }
}

/// A change to the network, as the controller sends it to agents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NetOp {
    SetLink {
        from: MachineId,
        to: MachineId,
        link: Link,
    },
    Cut {
        from: MachineId,
        to: MachineId,
    },
    /// End a cut and a hold; what the hold queued is dropped.
    Heal {
        from: MachineId,
        to: MachineId,
    },
    HealAll,
    Hold {
        from: MachineId,
        to: MachineId,
    },
    /// End a hold; what it queued goes on, in order.
    Release {
        from: MachineId,
        to: MachineId,
    },
    /// The machine's life counter (odd: down).
    Life {
        machine: MachineId,
        life: u32,
    },
}

/// What an agent needs to join a network in its current state (after a
/// start or restart): every life, and the cuts, epochs, links and holds of
/// the pairs it is an end of.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetState {
    pub lives: Vec<(MachineId, u32)>,
    pub epochs: Vec<(MachineId, MachineId, u32)>,
    pub cuts: Vec<(MachineId, MachineId)>,
    pub links: Vec<(MachineId, MachineId, Link)>,
    pub holds: Vec<(MachineId, MachineId)>,
}

/// The network model. `M` is what a held link queues (the simulator's
/// events, an agent's frames).
pub struct Net<M> {
    default: Link,
    links: HashMap<u64, Link, FxBuild>,
    cuts: HashSet<u64, FxBuild>,
    /// Cuts so far per pair (absent: none).
    epochs: HashMap<u64, u32, FxBuild>,
    /// Held pairs and what each queued, in send order, with their stamps.
    held: BTreeMap<u64, VecDeque<(M, Stamp)>>,
    /// Per pair that sent on the detailed path: its last delivery time
    /// (FIFO) and how many messages it sent (the key of their draws).
    pairs: HashMap<u64, PairState, FxBuild>,
    /// The seed of every pair's draws ([`Net::seeded`]).
    seed: u64,
    /// The draws of the message routed last, to go on with
    /// ([`Net::draws`]).
    draws: Draws,
    /// Life counter per machine (odd: down). Absent: 0.
    lives: Vec<u32>,
    /// The fast path: every pair uses the fixed, lossless default link.
    /// Once left (a link set, a cut, a hold), never taken again.
    plain: bool,
    /// No delivery scheduled on the fast path is later than this.
    horizon: u64,
    /// No crash or cut ever: every stamp is 0.
    calm: bool,
    /// Opt-in hostility (simulation): no FIFO per pair.
    pub reorder: bool,
    pub stats: NetStats,
}

impl<M> Net<M> {
    pub fn new(default: Link) -> Self {
        Net {
            default,
            links: HashMap::default(),
            cuts: HashSet::default(),
            epochs: HashMap::default(),
            held: BTreeMap::new(),
            pairs: HashMap::default(),
            seed: 0,
            draws: Draws(0),
            lives: Vec::new(),
            plain: default.loss == 0.0 && matches!(default.latency, Latency::Fixed(_)),
            horizon: 0,
            calm: true,
            reorder: false,
            stats: NetStats::default(),
        }
    }

    /// The model with its draws keyed by `seed` (the run's seed in
    /// simulation; an agent's own otherwise).
    pub fn seeded(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The draws of the message routed last, going on after what its
    /// fate took (a runtime's own choices about that message: a
    /// duplicate in simulation).
    pub fn draws(&mut self) -> &mut Draws {
        &mut self.draws
    }

    /// Leave the fast path for good, at time `now`: later messages of any
    /// pair are never due before what the fast path already scheduled.
    fn detail(&mut self, now: u64) {
        if self.plain {
            self.plain = false;
            self.horizon = now.saturating_add(nanos(self.default.latency.min()));
        }
    }

    pub fn link(&self, from: MachineId, to: MachineId) -> &Link {
        if self.links.is_empty() {
            return &self.default;
        }
        self.links.get(&pair(from, to)).unwrap_or(&self.default)
    }

    pub fn life(&self, m: MachineId) -> u32 {
        self.lives.get(m.0 as usize).copied().unwrap_or(0)
    }

    /// Whether the machine is up (or paused) by its life counter.
    pub fn is_up(&self, m: MachineId) -> bool {
        self.life(m).is_multiple_of(2)
    }

    pub fn set_life(&mut self, m: MachineId, life: u32) {
        if m.is_controller() {
            return;
        }
        let i = m.0 as usize;
        if self.lives.len() <= i {
            self.lives.resize(i + 1, 0);
        }
        if self.lives[i] != life {
            debug_assert!(life > self.lives[i], "a machine's life went backwards");
            self.lives[i] = life;
            self.calm = false;
        }
    }

    /// The machine crashed: what is in flight to or from it is lost.
    pub fn crash(&mut self, m: MachineId) {
        if self.is_up(m) {
            self.set_life(m, self.life(m) + 1);
        }
    }

    /// The machine starts a new life: nothing of the old one reaches it.
    pub fn restart(&mut self, m: MachineId) {
        if !self.is_up(m) {
            self.set_life(m, self.life(m) + 1);
        }
    }

    pub fn is_cut(&self, from: MachineId, to: MachineId) -> bool {
        !self.cuts.is_empty() && self.cuts.contains(&pair(from, to))
    }

    pub fn is_held(&self, from: MachineId, to: MachineId) -> bool {
        !self.held.is_empty() && self.held.contains_key(&pair(from, to))
    }

    /// The stamp a message from `from` to `to` gets now.
    #[inline]
    pub fn stamp(&self, from: MachineId, to: MachineId) -> Stamp {
        if self.calm {
            return Stamp(0);
        }
        let epoch = if self.epochs.is_empty() {
            0
        } else {
            self.epochs.get(&pair(from, to)).copied().unwrap_or(0)
        };
        Stamp(
            self.life(from)
                .wrapping_add(self.life(to))
                .wrapping_add(epoch),
        )
    }

    /// At delivery: whether a message stamped `stamp` may still arrive.
    #[inline]
    pub fn accept(&self, from: MachineId, to: MachineId, stamp: Stamp) -> bool {
        self.calm || self.stamp(from, to) == stamp
    }

    /// Apply a change. `Release` returns what the hold queued, to be sent
    /// on in order with [`Net::reroute`]; `Heal` and `HealAll` drop it and
    /// return it as discarded (for the runtime to log).
    pub fn apply(&mut self, op: &NetOp, now: u64) -> Applied<M> {
        let mut out = Applied::default();
        match *op {
            NetOp::SetLink { from, to, link } => {
                self.detail(now);
                self.links.insert(pair(from, to), link);
            }
            NetOp::Cut { from, to } => {
                self.detail(now);
                self.calm = false;
                self.cuts.insert(pair(from, to));
                let e = self.epochs.entry(pair(from, to)).or_insert(0);
                *e = e.wrapping_add(1);
            }
            NetOp::Heal { from, to } => {
                self.cuts.remove(&pair(from, to));
                if let Some(q) = self.held.remove(&pair(from, to)) {
                    self.stats.cut += q.len() as u64;
                    out.discarded.extend(q);
                }
            }
            NetOp::HealAll => {
                self.cuts.clear();
                // In pair order (a BTreeMap): the same for the same run.
                for (_, q) in std::mem::take(&mut self.held) {
                    self.stats.cut += q.len() as u64;
                    out.discarded.extend(q);
                }
            }
            NetOp::Hold { from, to } => {
                self.detail(now);
                self.held.entry(pair(from, to)).or_default();
            }
            NetOp::Release { from, to } => {
                out.released = self.held.remove(&pair(from, to)).unwrap_or_default();
            }
            NetOp::Life { machine, life } => self.set_life(machine, life),
        }
        out
    }

    /// Queue a message on its held link (after [`Verdict::Held`]); false
    /// (and counted) if the queue is full.
    pub fn park(&mut self, from: MachineId, to: MachineId, msg: M, stamp: Stamp) -> bool {
        match self.held.get_mut(&pair(from, to)) {
            Some(q) if q.len() < MAX_QUEUED_PER_PAIR => {
                q.push_back((msg, stamp));
                true
            }
            _ => {
                self.stats.count(Loss::Full);
                false
            }
        }
    }

    /// Decide the fate of a message sent at `now` (ns).
    #[inline]
    pub fn route(&mut self, now: u64, from: MachineId, to: MachineId) -> Verdict {
        if self.plain {
            // The common case: one fixed, lossless link for every pair;
            // FIFO holds by itself (same delay, time never goes back).
            if let Latency::Fixed(d) = self.default.latency {
                return Verdict::At(now + nanos(d), self.stamp(from, to));
            }
        }
        self.route_link(now, from, to, None)
    }

    /// Send on a message released from a hold, with the stamp it got when
    /// it was sent.
    pub fn reroute(&mut self, now: u64, from: MachineId, to: MachineId, stamp: Stamp) -> Verdict {
        self.route_link(now, from, to, Some(stamp))
    }

    #[inline(never)]
    fn route_link(
        &mut self,
        now: u64,
        from: MachineId,
        to: MachineId,
        sent: Option<Stamp>,
    ) -> Verdict {
        let outside = from.is_controller() || to.is_controller();
        // Every message counts on its pair, whatever its fate: a cut that
        // drops some leaves the later ones' draws as they were.
        let key = pair(from, to);
        let stamp = match sent {
            Some(s) if !self.accept(from, to, s) => {
                self.count(key);
                return self.lose(Loss::Stale);
            }
            Some(s) => s,
            None => self.stamp(from, to),
        };
        if !outside {
            if self.is_cut(from, to) {
                self.count(key);
                return self.lose(Loss::Cut);
            }
            if sent.is_none() && self.is_held(from, to) {
                self.count(key);
                return Verdict::Held(stamp);
            }
        }
        let link = *self.link(from, to);
        let reorder = self.reorder;
        let state = self.count(key);
        // Each message's draws are its own: a changed loss or latency
        // changes only the fate of the messages it applies to.
        let mut draws = Draws::keyed(state.salt, state.sent);
        let lost = link.loss > 0.0 && draws.gen_bool(link.loss.min(1.0));
        let mut at = now + nanos(link.latency.sample(&mut draws));
        // The test's own messages are never lost.
        let lost = lost && !outside;
        if !reorder && !lost {
            // FIFO per pair, as TCP: never before an earlier message.
            at = at.max(state.last);
            state.last = at;
        }
        self.draws = draws;
        if lost {
            return self.lose(Loss::Dropped);
        }
        Verdict::At(at, stamp)
    }

    /// Count a message on its pair (made on its first message); the pair.
    fn count(&mut self, key: u64) -> &mut PairState {
        let (horizon, seed) = (self.horizon, self.seed);
        let state = self.pairs.entry(key).or_insert_with(|| PairState {
            last: horizon,
            sent: 0,
            salt: Draws::salt(seed, key),
        });
        state.sent += 1;
        state
    }

    fn lose(&mut self, loss: Loss) -> Verdict {
        self.stats.count(loss);
        Verdict::Lost(loss)
    }

    /// What a machine needs to join the network as it is now.
    pub fn state_for(&self, m: MachineId) -> NetState {
        let unpair = |k: u64| (MachineId((k >> 32) as u32), MachineId(k as u32));
        let ends = |k: u64| {
            let (a, b) = unpair(k);
            a == m || b == m
        };
        let mut s = NetState {
            lives: self
                .lives
                .iter()
                .enumerate()
                .map(|(i, l)| (MachineId(i as u32), *l))
                .collect(),
            ..NetState::default()
        };
        let mut keys: Vec<u64> = self.epochs.keys().copied().filter(|k| ends(*k)).collect();
        keys.sort_unstable();
        for k in keys {
            let (a, b) = unpair(k);
            s.epochs.push((a, b, self.epochs[&k]));
        }
        let mut keys: Vec<u64> = self.cuts.iter().copied().filter(|k| ends(*k)).collect();
        keys.sort_unstable();
        s.cuts = keys.into_iter().map(unpair).collect();
        let mut keys: Vec<u64> = self
            .links
            .keys()
            .copied()
            .filter(|k| unpair(*k).0 == m)
            .collect();
        keys.sort_unstable();
        for k in keys {
            let (a, b) = unpair(k);
            s.links.push((a, b, self.links[&k]));
        }
        s.holds = self
            .held
            .keys()
            .copied()
            .filter(|k| unpair(*k).0 == m)
            .map(unpair)
            .collect();
        s
    }

    /// Take on a state from [`Net::state_for`] (an agent that just started).
    pub fn load(&mut self, s: &NetState, now: u64) {
        for &(m, life) in &s.lives {
            self.set_life(m, life);
        }
        for &(a, b, e) in &s.epochs {
            self.detail(now);
            self.calm = false;
            self.epochs.insert(pair(a, b), e);
        }
        for &(a, b) in &s.cuts {
            self.detail(now);
            self.cuts.insert(pair(a, b));
        }
        for &(a, b, link) in &s.links {
            self.apply(
                &NetOp::SetLink {
                    from: a,
                    to: b,
                    link,
                },
                now,
            );
        }
        for &(a, b) in &s.holds {
            self.apply(&NetOp::Hold { from: a, to: b }, now);
        }
    }
}

/// What a change to the network freed ([`Net::apply`]).
#[derive(Debug)]
pub struct Applied<M> {
    /// What a `Release` let go, in send order, with the stamps it was sent
    /// with: to send on with [`Net::reroute`].
    pub released: VecDeque<(M, Stamp)>,
    /// What a `Heal` or `HealAll` dropped from holds (lost, as a cut would
    /// have lost it; counted in [`NetStats::cut`]).
    pub discarded: Vec<(M, Stamp)>,
}

impl<M> Default for Applied<M> {
    fn default() -> Self {
        Applied {
            released: VecDeque::new(),
            discarded: Vec::new(),
        }
    }
}

/// What the model keeps per ordered pair that sent on its detailed path.
#[derive(Clone, Copy, Debug)]
struct PairState {
    /// Last delivery time scheduled (FIFO).
    last: u64,
    /// Messages sent so far, whatever became of them.
    sent: u64,
    /// The pair's key of draws ([`Draws::salt`]).
    salt: u64,
}

/// Counter-based random draws (SplitMix64): a message's stream is a pure
/// function of the seed, its pair and its number on the pair, so it needs
/// no state beyond a counter per pair.
#[derive(Clone, Copy, Debug)]
pub struct Draws(u64);

impl Draws {
    /// The key of the draws of pair `key` under `seed`.
    pub fn salt(seed: u64, key: u64) -> u64 {
        mix64(seed ^ mix64(key))
    }

    /// The stream of message number `n` of the pair salted `salt`.
    pub fn keyed(salt: u64, n: u64) -> Draws {
        Draws(mix64(salt ^ n))
    }
}

/// SplitMix64's finaliser: a bijection that spreads every input bit.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RngCore for Draws {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    #[inline]
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[inline]
fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: MachineId = MachineId(0);
    const B: MachineId = MachineId(1);

    fn at(v: Verdict) -> (u64, Stamp) {
        match v {
            Verdict::At(t, s) => (t, s),
            v => panic!("expected a delivery, got {v:?}"),
        }
    }

    #[test]
    fn fifo_per_pair_with_random_latency() {
        let mut net: Net<()> = Net::new(Link {
            latency: Latency::Uniform {
                min: Duration::from_micros(1),
                max: Duration::from_millis(50),
            },
            loss: 0.0,
        });
        let mut prev = 0;
        for i in 0..1000 {
            let (t, _) = at(net.route(i * 10, A, B));
            assert!(t >= prev, "message {i} overtook an earlier one");
            prev = t;
        }
    }

    #[test]
    fn fifo_when_a_fixed_latency_is_lowered_in_flight() {
        let mut net: Net<()> = Net::new(Link::fixed(Duration::from_millis(100)));
        let (first, _) = at(net.route(0, A, B));
        let link = Link::fixed(Duration::from_millis(1));
        net.apply(
            &NetOp::SetLink {
                from: A,
                to: B,
                link,
            },
            10,
        );
        let (second, _) = at(net.route(10, A, B));
        assert!(second >= first, "{second} overtook {first}");
        // And again on the detailed path.
        let (third, _) = at(net.route(20, A, B));
        net.apply(
            &NetOp::SetLink {
                from: A,
                to: B,
                link: Link::fixed(Duration::ZERO),
            },
            20,
        );
        let (fourth, _) = at(net.route(21, A, B));
        assert!(fourth >= third);
    }

    #[test]
    fn a_cut_loses_what_is_in_flight_even_if_healed_before_arrival() {
        let mut net: Net<()> = Net::new(Link::default());
        let (_, s) = at(net.route(0, A, B));
        assert!(net.accept(A, B, s));
        net.apply(&NetOp::Cut { from: A, to: B }, 1);
        assert_eq!(net.route(2, A, B), Verdict::Lost(Loss::Cut));
        net.apply(&NetOp::Heal { from: A, to: B }, 3);
        assert!(!net.accept(A, B, s), "sent before the cut");
        let (_, s2) = at(net.route(4, A, B));
        assert!(net.accept(A, B, s2));
        // The other direction was never cut.
        let (_, back) = at(net.route(0, B, A));
        assert!(net.accept(B, A, back));
    }

    #[test]
    fn a_crash_of_either_end_loses_what_is_in_flight() {
        let mut net: Net<()> = Net::new(Link::default());
        let (_, to_b) = at(net.route(0, A, B));
        let (_, from_b) = at(net.route(0, B, A));
        net.crash(B);
        let (_, while_down) = at(net.route(1, A, B));
        net.restart(B);
        assert!(!net.accept(A, B, to_b));
        assert!(!net.accept(B, A, from_b));
        assert!(!net.accept(A, B, while_down), "sent while B was down");
        let (_, fresh) = at(net.route(2, A, B));
        assert!(net.accept(A, B, fresh));
    }

    #[test]
    fn holds_keep_stamps_and_are_bounded() {
        let mut net: Net<u32> = Net::new(Link::default());
        net.apply(&NetOp::Hold { from: A, to: B }, 0);
        for i in 0..3 {
            let Verdict::Held(s) = net.route(0, A, B) else {
                panic!("not held")
            };
            assert!(net.park(A, B, i, s));
        }
        let q = net.apply(&NetOp::Release { from: A, to: B }, 5).released;
        let order: Vec<u32> = q.iter().map(|(m, _)| *m).collect();
        assert_eq!(order, vec![0, 1, 2]);
        for (_, s) in q {
            at(net.reroute(5, A, B, s));
        }
        // Held across a crash of the receiver: stale on release.
        net.apply(&NetOp::Hold { from: A, to: B }, 6);
        let Verdict::Held(s) = net.route(6, A, B) else {
            panic!("not held")
        };
        assert!(net.park(A, B, 9, s));
        net.crash(B);
        net.restart(B);
        let q = net.apply(&NetOp::Release { from: A, to: B }, 7).released;
        let (_, s) = q[0];
        assert_eq!(net.reroute(7, A, B, s), Verdict::Lost(Loss::Stale));
        // Full.
        net.apply(&NetOp::Hold { from: A, to: B }, 8);
        for i in 0..MAX_QUEUED_PER_PAIR as u32 {
            assert!(net.park(A, B, i, Stamp(0)));
        }
        assert!(!net.park(A, B, 0, Stamp(0)));
        assert_eq!(net.stats.full, 1);
    }

    #[test]
    fn a_heal_discards_what_a_hold_queued_and_says_what() {
        let mut net: Net<u32> = Net::new(Link::default());
        net.apply(&NetOp::Hold { from: A, to: B }, 0);
        net.apply(&NetOp::Hold { from: B, to: A }, 0);
        for (i, (f, t)) in [(A, B), (A, B), (B, A)].into_iter().enumerate() {
            let Verdict::Held(s) = net.route(0, f, t) else {
                panic!("not held")
            };
            assert!(net.park(f, t, i as u32, s));
        }
        let healed = net.apply(&NetOp::Heal { from: A, to: B }, 1);
        let gone: Vec<u32> = healed.discarded.iter().map(|(m, _)| *m).collect();
        assert_eq!(gone, vec![0, 1]);
        assert!(healed.released.is_empty());
        let all = net.apply(&NetOp::HealAll, 2);
        assert_eq!(all.discarded.len(), 1);
        assert_eq!(net.stats.cut, 3);
        // Nothing is held any more: a release frees nothing.
        assert!(net
            .apply(&NetOp::Release { from: B, to: A }, 3)
            .released
            .is_empty());
    }

    #[test]
    fn state_for_lets_an_agent_agree_on_stamps() {
        let mut ctl: Net<()> = Net::new(Link::default());
        ctl.apply(&NetOp::Cut { from: A, to: B }, 0);
        ctl.apply(&NetOp::Heal { from: A, to: B }, 0);
        ctl.crash(B);
        ctl.restart(B);
        let mut agent: Net<()> = Net::new(Link::default());
        agent.load(&ctl.state_for(B), 0);
        assert_eq!(agent.stamp(A, B), ctl.stamp(A, B));
        let (_, s) = at(ctl.route(0, A, B));
        assert!(agent.accept(A, B, s));
    }

    #[test]
    fn self_links_and_the_controller_are_refused() {
        let e = check_pair(A, A).unwrap_err().to_string();
        assert!(e.contains("no link to itself"), "{e}");
        let e = check_pair(A, MachineId::CONTROLLER)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the network"), "{e}");
        assert!(check_pair(A, B).is_ok());
    }
}
