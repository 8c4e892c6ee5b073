//! Example systems for distzero, used by the workflow tests and the README.
//!
//! - [`pingpong`]: answers `Ping(n)` with `Pong(n)`; pings peers on a timer and
//!   records when its timers fired and the round trips it saw.
//! - [`kv`]: a replicated key-value store: a fixed primary replicates every
//!   write to a majority before acknowledging it, replicas persist to disk and
//!   catch up after a crash, a partition or lost messages.
//! - [`kv_client`]: a workload for the store that records a history for the
//!   linearizability checker.
//! - [`raft`]: a Raft-style replicated key-value log: elections with
//!   randomized timeouts, replication and commit by majority, term, vote and
//!   log on disk, reads through the log; planted bugs for the sweeps.
//! - [`raft_client`]: a workload for it (read, write, cas) that follows the
//!   leader, retries, and records a history.
//! - [`wordcount`]: a stream (source -> splitters -> counters) whose totals
//!   stay exact under message loss: acknowledgements, retries on timers and
//!   deduplication by (source, line).
//!
//! Every kind is registered by [`registry`]. Nodes act only through their
//! context: no std::time, no threads, randomness only from `ctx.rng()`, and
//! only ordered maps where iteration order could leak into behaviour.

pub mod hash;
#[cfg(test)]
mod hostile;
pub mod kv;
pub mod kv_client;
pub mod pingpong;
pub mod raft;
pub mod raft_client;
pub mod scenarios;
pub mod wordcount;

use distzero::Registry;

/// Every example kind: `pingpong`, `kv`, `kv-client`, `raft`,
/// `raft-client`, `wordcount-source`,
/// `wordcount-splitter`, `wordcount-counter`; and the conformance probe of
/// [`distzero::conformance`] (`dz-probe`), so that the agent binary can run
/// `tests/conformance.rs` in virtual and cloud modes.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(pingpong::KIND, pingpong::PingPong::new);
    r.register(kv::KIND, kv::Kv::new);
    r.register(kv_client::KIND, kv_client::KvClient::new);
    r.register(raft::KIND, raft::Raft::new);
    r.register(raft_client::KIND, raft_client::RaftClient::new);
    r.register(wordcount::SOURCE, wordcount::Source::new);
    r.register(wordcount::SPLITTER, wordcount::Splitter::new);
    r.register(wordcount::COUNTER, wordcount::Counter::new);
    r.extend(&distzero::conformance::registry());
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn registry_has_every_kind() {
        let kinds = super::registry().kinds();
        for k in [
            "dz-probe",
            "kv",
            "pingpong",
            "raft",
            "raft-client",
            "wordcount-counter",
            "wordcount-source",
            "wordcount-splitter",
        ] {
            assert!(
                kinds.iter().any(|x| x == k),
                "missing kind {k} in {kinds:?}"
            );
        }
    }
}
