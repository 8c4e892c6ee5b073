//! Ping-pong: the smallest system. A node answers `Ping(n)` with `Pong(n)`,
//! to peers and to test calls alike. Given peers and a period, it pings every
//! peer on a timer and records when each timer fired and each round trip, so
//! a test can check virtual time and link latency through [`PingMsg::Stats`].

use distzero::{Context, Node, NodeId, TimerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KIND: distzero::Kind<PingConfig> = distzero::Kind::new("pingpong");

/// At most this many tick times and round trips are recorded (explicit limit).
pub const MAX_RECORDED: usize = 1000;
/// At most this many pings wait for their pong; the oldest is forgotten first.
pub const MAX_OUTSTANDING: usize = 10_000;

/// Config of a `pingpong` node. The default answers pings and sends none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PingConfig {
    /// Nodes to ping on every tick.
    #[serde(default)]
    pub peers: Vec<NodeId>,
    /// Period of the ping timer in milliseconds; 0 = never ping.
    #[serde(default)]
    pub every_ms: u64,
    /// Stop after this many ticks; 0 = never stop.
    #[serde(default)]
    pub rounds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PingMsg {
    Ping(u64),
    Pong(u64),
    /// Ask for [`PingStats`]; answered with `StatsReply`.
    Stats,
    StatsReply(PingStats),
}

/// What a node saw since it (last) started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PingStats {
    /// `now` at `on_start`.
    pub started_at: Duration,
    /// `now` at each tick of the ping timer (the first [`MAX_RECORDED`]).
    pub ticks: Vec<Duration>,
    pub pings_sent: u64,
    pub pings_received: u64,
    /// Pongs that answered one of this node's pings.
    pub pongs: u64,
    /// Round trip of each answered ping (the first [`MAX_RECORDED`]).
    pub rtts: Vec<Duration>,
}

pub struct PingPong {
    cfg: PingConfig,
    stats: PingStats,
    round: u64,
    /// (peer, round) -> when the ping left.
    outstanding: BTreeMap<(NodeId, u64), Duration>,
}

impl PingPong {
    pub fn new(cfg: PingConfig) -> Self {
        PingPong {
            cfg,
            stats: PingStats::default(),
            round: 0,
            outstanding: BTreeMap::new(),
        }
    }

    fn period(&self) -> Option<Duration> {
        (self.cfg.every_ms > 0 && !self.cfg.peers.is_empty())
            .then(|| Duration::from_millis(self.cfg.every_ms))
    }
}

impl Node for PingPong {
    type Msg = PingMsg;

    fn on_start(&mut self, ctx: &mut Context<'_, PingMsg>) {
        self.stats.started_at = ctx.now();
        tracing::info!(
            peers = self.cfg.peers.len(),
            every_ms = self.cfg.every_ms,
            "pingpong started"
        );
        if let Some(p) = self.period() {
            ctx.set_timer(p, 0);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_, PingMsg>, from: NodeId, msg: PingMsg) {
        match msg {
            PingMsg::Ping(n) => {
                self.stats.pings_received += 1;
                tracing::debug!(%from, n, "ping");
                ctx.send(from, PingMsg::Pong(n));
            }
            PingMsg::Pong(n) => match self.outstanding.remove(&(from, n)) {
                Some(sent) => {
                    self.stats.pongs += 1;
                    let rtt = ctx.now().saturating_sub(sent);
                    tracing::info!(%from, n, rtt_us = rtt.as_micros() as u64, "pong");
                    if self.stats.rtts.len() < MAX_RECORDED {
                        self.stats.rtts.push(rtt);
                    }
                }
                None => tracing::warn!(%from, n, "pong for no ping of mine; ignored"),
            },
            PingMsg::Stats => ctx.send(from, PingMsg::StatsReply(self.stats.clone())),
            PingMsg::StatsReply(_) => tracing::warn!(%from, "unexpected stats reply; ignored"),
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, PingMsg>, _timer: TimerId, _tag: u64) {
        self.round += 1;
        let now = ctx.now();
        if self.stats.ticks.len() < MAX_RECORDED {
            self.stats.ticks.push(now);
        }
        tracing::info!(round = self.round, "tick");
        for &peer in &self.cfg.peers {
            if self.outstanding.len() >= MAX_OUTSTANDING {
                self.outstanding.pop_first();
            }
            self.outstanding.insert((peer, self.round), now);
            self.stats.pings_sent += 1;
            ctx.send(peer, PingMsg::Ping(self.round));
        }
        if self.cfg.rounds == 0 || self.round < self.cfg.rounds {
            if let Some(p) = self.period() {
                ctx.set_timer(p, 0);
            }
        }
    }
}
