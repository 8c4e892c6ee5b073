//! Workflow tests: each body runs in every mode (`simulated::*`,
//! `virtual_mode::*`, `cloud_mode::*`), so it knows nothing of the mode
//! except, where simulation can promise more, exact virtual times.
//!
//! Time bounds are generous enough for real machines: calls wait 1-2 s,
//! conditions 10-20 s. In simulation those seconds pass in microseconds.

use distzero::check::{check_kv, Budget};
use distzero::history::{OpKind, F};
use distzero::{millis, secs, Cluster, Error, Latency, Link, MachineId, Mode, NodeId, Result};
use distzero_examples::kv::{self, KvMsg, KvStatus};
use distzero_examples::kv_client::{self, KvClientConfig, KIND as KV_CLIENT};
use distzero_examples::pingpong::{PingConfig, PingMsg, PingStats, KIND as PINGPONG};
use distzero_examples::wordcount::{count_words, Pipeline};
use std::time::Duration;

const CALL: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ helpers

fn simulated(c: &dyn Cluster) -> bool {
    c.mode() == Mode::Simulated
}

fn stats(c: &mut dyn Cluster, node: NodeId) -> Result<PingStats> {
    match c.call::<PingMsg, PingMsg>(node, &PingMsg::Stats, CALL)? {
        PingMsg::StatsReply(s) => Ok(s),
        other => panic!("{node} answered {other:?} to Stats"),
    }
}

fn pinger(peers: Vec<NodeId>, every_ms: u64, rounds: u64) -> PingConfig {
    PingConfig {
        peers,
        every_ms,
        rounds,
    }
}

/// Put with retries under the same request id, until acknowledged.
fn put(c: &mut dyn Cluster, node: NodeId, id: u64, key: &str, value: &str) -> Result<u64> {
    let req = KvMsg::Put {
        id,
        key: key.into(),
        value: value.into(),
    };
    let mut last = String::new();
    for _ in 0..20 {
        match c.call::<KvMsg, KvMsg>(node, &req, CALL) {
            Ok(KvMsg::PutOk { id: got, index }) if got == id => return Ok(index),
            Ok(KvMsg::Unavailable { reason }) => last = reason,
            Ok(other) => panic!("{node} answered {other:?} to put #{id}"),
            Err(e) if e.is_timeout() => last = e.to_string(),
            Err(e) => return Err(e),
        }
        c.run_for(millis(100))?;
    }
    panic!("put #{id} {key}={value} via {node} never acknowledged; last: {last}");
}

/// The committed value of `key`, asked through `node`, with retries.
fn get(c: &mut dyn Cluster, node: NodeId, key: &str) -> Result<Option<String>> {
    let req = KvMsg::Get { key: key.into() };
    let mut last = String::new();
    for _ in 0..20 {
        match c.call::<KvMsg, KvMsg>(node, &req, CALL) {
            Ok(KvMsg::Value { value, .. }) => return Ok(value),
            Ok(KvMsg::Unavailable { reason }) => last = reason,
            Ok(other) => panic!("{node} answered {other:?} to get {key}"),
            Err(e) if e.is_timeout() => last = e.to_string(),
            Err(e) => return Err(e),
        }
        c.run_for(millis(100))?;
    }
    panic!("get {key} via {node} never answered; last: {last}");
}

/// What replica `node` itself holds for `key` (no primary involved).
fn read_local(c: &mut dyn Cluster, node: NodeId, key: &str) -> Result<Option<String>> {
    match c.call::<KvMsg, KvMsg>(node, &KvMsg::ReadLocal { key: key.into() }, CALL)? {
        KvMsg::Value { value, .. } => Ok(value),
        other => panic!("{node} answered {other:?} to ReadLocal"),
    }
}

fn status(c: &mut dyn Cluster, node: NodeId) -> Result<KvStatus> {
    match c.call::<KvMsg, KvMsg>(node, &KvMsg::Status, CALL)? {
        KvMsg::StatusReply(s) => Ok(s),
        other => panic!("{node} answered {other:?} to Status"),
    }
}

/// Replica `node` holds and has applied everything the primary committed.
fn caught_up(c: &mut dyn Cluster, primary: NodeId, node: NodeId) -> Result<bool> {
    let p = status(c, primary)?;
    let n = status(c, node)?;
    Ok(n.index >= p.commit && n.commit >= p.commit)
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

fn lines() -> Vec<String> {
    let text = "It was the best of times, it was the worst of times,
it was the age of wisdom, it was the age of foolishness,
it was the epoch of belief, it was the epoch of incredulity,
it was the season of Light, it was the season of Darkness,
it was the spring of hope, it was the winter of despair,
we had everything before us, we had nothing before us,
we were all going direct to Heaven, we were all going direct the other way --
in short, the period was so far like the present period, that some of
its noisiest authorities insisted on its being received, for good or for
evil, in the superlative degree of comparison only.

There were a king with a large jaw and a queen with a plain face, on the
throne of England; there were a king with a large jaw and a queen with
a fair face, on the throne of France.";
    let mut out: Vec<String> = text.lines().map(str::to_string).collect();
    for i in 0..80 {
        out.push(format!(
            "line {i} repeats the same few words: alpha beta gamma alpha beta alpha"
        ));
    }
    out
}

// --------------------------------------------------------------- ping-pong

/// A node answers a call with the matching pong, and counts what it got.
fn pingpong_answers_calls(c: &mut dyn Cluster) -> Result<()> {
    let [a] = c.add_machines()?;
    let p = c.spawn_node(a, PINGPONG, PingConfig::default())?;
    for n in [7, 8, 9] {
        let reply: PingMsg = c.call(p, &PingMsg::Ping(n), CALL)?;
        assert_eq!(
            reply,
            PingMsg::Pong(n),
            "ping {n} must be answered with pong {n}"
        );
    }
    let s = stats(c, p)?;
    assert_eq!(s.pings_received, 3, "three pings were sent to {p}: {s:?}");
    assert_eq!(s.pings_sent, 0, "a node without peers pings nobody: {s:?}");
    Ok(())
}

/// The ping timer fires every period, no earlier; in simulation exactly on time.
fn ping_timer_fires_on_schedule(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    let echo = c.spawn_node(b, PINGPONG, PingConfig::default())?;
    let p = c.spawn_node(a, PINGPONG, pinger(vec![echo], 100, 10))?;
    c.run_until(secs(10), |c| Ok(stats(c, p)?.pongs == 10))?;
    c.run_for(millis(500))?;
    let s = stats(c, p)?;
    assert_eq!(
        s.ticks.len(),
        10,
        "rounds = 10 means exactly 10 ticks: {:?}",
        s.ticks
    );
    assert_eq!(
        (s.pings_sent, s.pongs),
        (10, 10),
        "one ping per tick, each answered: {s:?}"
    );
    let period = millis(100);
    let mut prev = s.started_at;
    for (k, &t) in s.ticks.iter().enumerate() {
        assert!(
            t >= prev + period,
            "tick {k} at {t:?} came less than {period:?} after {prev:?}"
        );
        if simulated(c) {
            let want = s.started_at + period * (k as u32 + 1);
            assert_eq!(
                t,
                want,
                "in simulation tick {k} fires at exactly start + {}*100ms",
                k + 1
            );
        }
        prev = t;
    }
    let span = s.ticks[9] - s.started_at;
    assert!(span < secs(3), "10 ticks of 100 ms took {span:?}");
    Ok(())
}

/// Round trips follow the links' latency: fixed, then uniform.
fn ping_rtt_follows_link_latency(c: &mut dyn Cluster) -> Result<()> {
    let [a, b] = c.add_machines()?;
    c.set_all_links(Link::fixed(millis(40)))?;
    let echo = c.spawn_node(b, PINGPONG, PingConfig::default())?;
    let p = c.spawn_node(a, PINGPONG, pinger(vec![echo], 200, 5))?;
    c.run_until(secs(10), |c| Ok(stats(c, p)?.pongs == 5))?;
    let s = stats(c, p)?;
    for &rtt in &s.rtts {
        assert!(
            rtt >= millis(80),
            "40 ms each way gives a round trip of at least 80 ms, got {rtt:?}"
        );
        assert!(
            rtt < millis(80) + secs(1),
            "round trip {rtt:?} far above 80 ms"
        );
        if simulated(c) {
            assert_eq!(
                rtt,
                millis(80),
                "in simulation a fixed 40 ms link gives exactly 80 ms"
            );
        }
    }

    let uniform = Link {
        latency: Latency::Uniform {
            min: millis(10),
            max: millis(30),
        },
        loss: 0.0,
    };
    c.set_all_links(uniform)?;
    let q = c.spawn_node(a, PINGPONG, pinger(vec![echo], 50, 20))?;
    c.run_until(secs(10), |c| Ok(stats(c, q)?.pongs == 20))?;
    let s = stats(c, q)?;
    assert_eq!(s.rtts.len(), 20, "20 pings, 20 round trips: {s:?}");
    for &rtt in &s.rtts {
        assert!(
            rtt >= millis(20),
            "10..30 ms each way: round trip {rtt:?} below 20 ms"
        );
        let max = if simulated(c) {
            millis(60)
        } else {
            millis(60) + secs(1)
        };
        assert!(
            rtt <= max,
            "10..30 ms each way: round trip {rtt:?} above {max:?}"
        );
    }
    if simulated(c) {
        let distinct: std::collections::BTreeSet<_> = s.rtts.iter().collect();
        assert!(
            distinct.len() > 1,
            "uniform latency should vary: {:?}",
            s.rtts
        );
    }
    Ok(())
}

/// A group's ids are known before it is spawned (`next_node_id`,
/// `spawn_group`), also with two members on one machine after a node that
/// was there first: each member pings the others at the ids its config
/// names, and exactly the members get those pings.
fn group_ids_are_known_before_spawning(c: &mut dyn Cluster) -> Result<()> {
    let [m0, m1, m2] = c.add_machines()?;
    let unknown = MachineId(m2.0 + 100);
    match c.next_node_id(unknown) {
        Err(Error::NoSuchMachine(m)) if m == unknown => {}
        other => panic!("an unknown machine has no next node id: {other:?}"),
    }
    assert_eq!(c.next_node_id(m1)?, NodeId::new(m1, 0));
    let occupant = c.spawn_node(m1, PINGPONG, PingConfig::default())?;
    assert_eq!(occupant, NodeId::new(m1, 0));
    assert_eq!(c.next_node_id(m1)?, NodeId::new(m1, 1));
    // A group with an unknown machine is refused before anything spawns.
    match c.spawn_group(&[m2, unknown], PINGPONG, |_, _| PingConfig::default()) {
        Err(Error::NoSuchMachine(m)) if m == unknown => {}
        other => panic!("a group on an unknown machine must be refused: {other:?}"),
    }
    assert_eq!(c.next_node_id(m2)?, NodeId::new(m2, 0), "nothing spawned");

    let want = vec![
        NodeId::new(m0, 0),
        NodeId::new(m1, 1),
        NodeId::new(m0, 1),
        NodeId::new(m2, 0),
    ];
    let mut told = Vec::new();
    let group = c.spawn_group(&[m0, m1, m0, m2], PINGPONG, |i, ids| {
        told.push(ids.to_vec());
        let others = ids.iter().enumerate().filter(|&(j, _)| j != i);
        pinger(others.map(|(_, &id)| id).collect(), 50, 3)
    })?;
    assert_eq!(group, want, "the ids of the group");
    assert_eq!(told, vec![want.clone(); 4], "every config saw every id");
    assert_eq!(c.next_node_id(m0)?, NodeId::new(m0, 2));
    assert_eq!(c.next_node_id(m1)?, NodeId::new(m1, 2));
    // 3 rounds to 3 peers: 9 pongs each, once the ids are right.
    c.run_until(secs(10), |c| {
        for &n in &group {
            if stats(c, n)?.pongs < 9 {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    c.run_for(millis(200))?;
    for &n in &group {
        let s = stats(c, n)?;
        assert_eq!((s.pongs, s.pings_received), (9, 9), "{n}: {s:?}");
    }
    assert_eq!(
        stats(c, occupant)?.pings_received,
        0,
        "no member took the node already on {m1} for a peer"
    );
    Ok(())
}

/// Cutting b -> a stops pongs to a and pings to a, but a's pings still reach b.
fn one_way_cut_blocks_one_direction(c: &mut dyn Cluster) -> Result<()> {
    let [ma, mb] = c.add_machines()?;
    // Each pings the other: both ids are known before either is spawned.
    let ids = c.spawn_group(&[ma, mb], PINGPONG, |i, ids| {
        pinger(vec![ids[1 - i]], 50, 0)
    })?;
    let (a, b) = (ids[0], ids[1]);
    c.run_until(secs(10), |c| {
        Ok(stats(c, a)?.pongs >= 3 && stats(c, b)?.pongs >= 3)
    })?;

    c.cut(mb, ma)?;
    c.run_for(millis(300))?; // let what was in flight land
    let (a0, b0) = (stats(c, a)?, stats(c, b)?);
    c.run_for(secs(1))?;
    let (a1, b1) = (stats(c, a)?, stats(c, b)?);
    assert_eq!(a1.pongs, a0.pongs, "b -> a is cut: no pong may reach a");
    assert_eq!(
        a1.pings_received, a0.pings_received,
        "b -> a is cut: no ping may reach a"
    );
    assert!(
        b1.pings_received >= b0.pings_received + 5,
        "a -> b is open: a's pings keep reaching b ({} -> {})",
        b0.pings_received,
        b1.pings_received
    );
    assert_eq!(
        b1.pongs, b0.pongs,
        "b's pings never reach a, so no pong comes back"
    );

    c.heal_all()?;
    c.run_until(secs(10), |c| {
        Ok(stats(c, a)?.pongs > a1.pongs && stats(c, b)?.pongs > b1.pongs)
    })?;
    Ok(())
}

/// A paused machine answers nothing; once resumed it answers every ping that
/// waited at its door: nothing is lost, only late.
fn pause_delays_but_loses_nothing(c: &mut dyn Cluster) -> Result<()> {
    let [ma, mb] = c.add_machines()?;
    let echo = c.spawn_node(mb, PINGPONG, PingConfig::default())?;
    let p = c.spawn_node(ma, PINGPONG, pinger(vec![echo], 100, 30))?;
    c.run_until(secs(10), |c| Ok(stats(c, p)?.pongs >= 3))?;

    c.pause(mb)?;
    c.run_for(millis(200))?;
    let before = stats(c, p)?;
    c.run_for(secs(1))?;
    let during = stats(c, p)?;
    assert_eq!(
        during.pongs, before.pongs,
        "a paused machine answers nothing"
    );
    assert!(
        during.pings_sent >= before.pings_sent + 5,
        "the pinger keeps pinging: {during:?}"
    );

    c.resume(mb)?;
    c.run_until(secs(15), |c| Ok(stats(c, p)?.pongs == 30))?;
    let s = stats(c, p)?;
    assert_eq!(
        (s.pings_sent, s.pongs),
        (30, 30),
        "every ping answered after resume: {s:?}"
    );
    let slowest = s.rtts.iter().max().copied().unwrap_or_default();
    assert!(
        slowest >= millis(800),
        "pings that waited out the pause took long: slowest {slowest:?}"
    );
    Ok(())
}

/// A held link queues messages instead of dropping them: nothing arrives
/// while held, everything arrives after release.
fn held_link_delivers_everything_on_release(c: &mut dyn Cluster) -> Result<()> {
    let [ma, mb] = c.add_machines()?;
    let echo = c.spawn_node(mb, PINGPONG, PingConfig::default())?;
    let p = c.spawn_node(ma, PINGPONG, pinger(vec![echo], 50, 20))?;
    c.run_until(secs(10), |c| Ok(stats(c, p)?.pongs >= 2))?;
    c.hold(ma, mb)?;
    c.run_for(millis(200))?;
    let before = stats(c, p)?;
    let echoed = stats(c, echo)?.pings_received;
    c.run_for(millis(500))?;
    let during = stats(c, p)?;
    assert_eq!(
        during.pongs, before.pongs,
        "a -> b is held: no ping gets through, so no pong"
    );
    assert_eq!(
        stats(c, echo)?.pings_received,
        echoed,
        "b receives nothing while a -> b is held"
    );
    assert!(
        during.pings_sent > before.pings_sent,
        "the pinger kept pinging: {during:?}"
    );
    c.release(ma, mb)?;
    c.run_until(secs(10), |c| Ok(stats(c, p)?.pongs == 20))?;
    let s = stats(c, p)?;
    assert_eq!(
        (s.pings_sent, s.pongs),
        (20, 20),
        "every held ping was delivered: {s:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------- kv

/// Writes through any replica are readable through any replica.
fn kv_reads_and_writes_through_any_replica(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d] = c.add_machines()?;
    let kv = kv::spawn_group(c, &[a, b, d], None)?;
    assert_eq!(get(c, kv[1], "x")?, None, "a fresh store holds nothing");
    put(c, kv[0], 1, "x", "1")?;
    put(c, kv[2], 2, "y", "2")?;
    put(c, kv[1], 3, "x", "3")?;
    for &r in &kv {
        assert_eq!(get(c, r, "x")?, some("3"), "x through {r}");
        assert_eq!(get(c, r, "y")?, some("2"), "y through {r}");
    }
    for &r in &kv[1..] {
        c.run_until(secs(10), |c| caught_up(c, kv[0], r))?;
    }
    for &r in &kv {
        let s = status(c, r)?;
        assert_eq!(
            (s.index, s.commit),
            (3, 3),
            "three writes, each logged once, on {r}: {s:?}"
        );
        assert_eq!(
            read_local(c, r, "x")?,
            some("3"),
            "replica {r} itself holds x = 3"
        );
    }
    Ok(())
}

/// DESIGN.md's illustration: a backup crashes, writes go on (a majority is
/// up), the backup restarts from its disk and catches up.
fn kv_survives_backup_crash(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d] = c.add_machines()?;
    let kv = kv::spawn_group(c, &[a, b, d], None)?;
    put(c, kv[0], 1, "x", "1")?;
    c.run_until(secs(10), |c| caught_up(c, kv[0], kv[1]))?;
    c.crash(b)?;
    put(c, kv[0], 2, "x", "2")?;
    assert_eq!(
        get(c, kv[2], "x")?,
        some("2"),
        "the store serves with a backup down"
    );
    c.restart(b)?;
    c.run_until(secs(10), |c| caught_up(c, kv[0], kv[1]))?;
    assert_eq!(
        get(c, kv[1], "x")?,
        some("2"),
        "the restarted backup serves the latest write"
    );
    assert_eq!(
        read_local(c, kv[1], "x")?,
        some("2"),
        "the restarted backup holds the write it missed"
    );
    Ok(())
}

/// Every replica crashes; after restart all acknowledged writes are there,
/// read back from the disks.
fn kv_recovers_from_disk_after_full_restart(c: &mut dyn Cluster) -> Result<()> {
    let machines: [_; 3] = c.add_machines()?;
    let kv = kv::spawn_group(c, &machines, None)?;
    for i in 0..5u64 {
        put(
            c,
            kv[(i % 3) as usize],
            i + 1,
            &format!("k{i}"),
            &format!("v{i}"),
        )?;
    }
    for &m in &machines {
        c.crash(m)?;
    }
    let err = c.call::<KvMsg, KvMsg>(kv[0], &KvMsg::Get { key: "k0".into() }, CALL);
    assert!(
        matches!(&err, Err(e) if e.is_timeout()),
        "a crashed replica answers nothing: the call times out, got {err:?}"
    );
    for &m in &machines {
        c.restart(m)?;
    }
    for i in 0..5u64 {
        assert_eq!(
            get(c, kv[1], &format!("k{i}"))?,
            Some(format!("v{i}")),
            "k{i} survives a full restart"
        );
    }
    let s = status(c, kv[0])?;
    assert_eq!(s.index, 5, "the primary's log came back from disk: {s:?}");
    // A retry of an old request after the restart is not applied again.
    assert_eq!(
        put(c, kv[0], 3, "k2", "v2")?,
        3,
        "request #3 keeps its index across restarts"
    );
    assert_eq!(
        status(c, kv[0])?.index,
        5,
        "a retried request adds nothing to the log"
    );
    Ok(())
}

/// A backup cut off by a partition misses writes, then catches up once healed.
fn kv_partitioned_backup_catches_up(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d] = c.add_machines()?;
    let kv = kv::spawn_group(c, &[a, b, d], None)?;
    put(c, kv[0], 1, "x", "old")?;
    c.run_until(secs(10), |c| caught_up(c, kv[0], kv[2]))?;
    c.partition(&[&[a, b], &[d]])?;
    for i in 0..10u64 {
        put(c, kv[0], 10 + i, "x", &format!("new{i}"))?;
    }
    assert_eq!(
        read_local(c, kv[2], "x")?,
        some("old"),
        "the cut-off backup cannot have the new value"
    );
    assert_eq!(
        get(c, kv[1], "x")?,
        some("new9"),
        "the majority side serves the latest write"
    );
    c.heal_all()?;
    c.run_until(secs(10), |c| Ok(read_local(c, kv[2], "x")? == some("new9")))?;
    assert!(
        caught_up(c, kv[0], kv[2])?,
        "the healed backup holds all that is committed"
    );
    Ok(())
}

/// A primary cut off from every backup acknowledges nothing; once healed, the
/// retried write is applied exactly once.
fn kv_never_acks_without_majority(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d] = c.add_machines()?;
    let kv = kv::spawn_group(c, &[a, b, d], None)?;
    put(c, kv[0], 1, "x", "1")?;
    for &r in &kv[1..] {
        c.run_until(secs(10), |c| caught_up(c, kv[0], r))?;
    }
    c.isolate(a)?;
    let req = KvMsg::Put {
        id: 2,
        key: "x".into(),
        value: "2".into(),
    };
    for _ in 0..3 {
        match c.call::<KvMsg, KvMsg>(kv[0], &req, CALL) {
            Err(e) if e.is_timeout() => {}
            Ok(KvMsg::Unavailable { .. }) => {}
            other => panic!("a primary without a majority must not acknowledge, got {other:?}"),
        }
    }
    assert_eq!(
        get(c, kv[0], "x")?,
        some("1"),
        "reads see only committed writes"
    );
    for &r in &kv[1..] {
        assert_eq!(
            read_local(c, r, "x")?,
            some("1"),
            "{r} is cut off from the primary"
        );
        assert_eq!(status(c, r)?.index, 1, "{r} cannot have received write #2");
    }
    c.heal_all()?;
    assert_eq!(
        put(c, kv[0], 2, "x", "2")?,
        2,
        "the retried write keeps its place in the log"
    );
    assert_eq!(
        get(c, kv[2], "x")?,
        some("2"),
        "the write acknowledged after healing is read back"
    );
    for &r in &kv {
        c.run_until(secs(10), |c| Ok(status(c, r)?.commit == 2))?;
        assert_eq!(
            status(c, r)?.index,
            2,
            "write #2, sent four times, is logged once on {r}"
        );
    }
    Ok(())
}

/// With 20% of messages between machines lost, every write is acknowledged
/// once, applied once, and every replica converges.
fn kv_exact_under_message_loss(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d] = c.add_machines()?;
    c.set_all_links(Link::default().with_loss(0.2))?;
    let kv = kv::spawn_group(c, &[a, b, d], None)?;
    let mut indexes = Vec::new();
    for i in 0..20u64 {
        let via = kv[(i % 3) as usize];
        indexes.push(put(
            c,
            via,
            100 + i,
            &format!("k{}", i % 7),
            &format!("v{i}"),
        )?);
    }
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(
        indexes,
        (1..=20).collect::<Vec<u64>>(),
        "20 writes, 20 distinct log indexes"
    );
    for k in 0..7u64 {
        let last = (0..20u64)
            .filter(|i| i % 7 == k)
            .max()
            .expect("every key is written");
        assert_eq!(
            get(c, kv[0], &format!("k{k}"))?,
            Some(format!("v{last}")),
            "k{k} holds its last write"
        );
    }
    for &r in &kv {
        c.run_until(secs(20), |c| Ok(status(c, r)?.commit == 20))?;
        assert_eq!(
            status(c, r)?.index,
            20,
            "replica {r} logged each write once"
        );
    }
    Ok(())
}

/// Three clients run a random workload of reads and writes through random
/// replicas while the cluster suffers a partitioned backup, a crashed and
/// restarted backup, a paused backup, a primary cut off from its backups and
/// 10% message loss; the history they record is linearizable.
fn kv_linearizable_under_faults(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d, e] = c.add_machines()?;
    let kv = kv::spawn_group(c, &[a, b, d], None)?;
    for p in 1..=3 {
        let mut cfg = KvClientConfig::new(kv.clone(), p);
        cfg.ops = 100;
        cfg.timeout_ms = 300;
        c.spawn_node(e, KV_CLIENT, cfg)?;
    }
    c.run_for(millis(300))?;
    c.isolate(b)?;
    c.run_for(millis(500))?;
    c.heal_all()?;
    c.crash(d)?;
    c.run_for(millis(400))?;
    c.restart(d)?;
    c.run_for(millis(300))?;
    c.pause(b)?;
    c.run_for(millis(500))?;
    c.resume(b)?;
    c.partition(&[&[a], &[b, d]])?;
    c.run_for(millis(1500))?;
    c.heal_all()?;
    c.set_all_links(Link::default().with_loss(0.1))?;

    c.run_until(secs(20), |c| {
        let h = c.history()?;
        Ok((1..=3).all(|p| kv_client::completed(&h, p) >= 100))
    })?;
    let history = c.history()?;
    let ops = history.ops();
    let count = |f: F, k: OpKind| ops.iter().filter(|o| o.f == f && o.kind == k).count();
    let (reads, writes) = (count(F::Read, OpKind::Ok), count(F::Write, OpKind::Ok));
    assert!(
        reads >= 20 && writes >= 20,
        "too few operations succeeded: {reads} reads, {writes} writes ok"
    );
    let verdict = check_kv(&history, &Budget::steps(5_000_000))
        .expect("the clients record well-formed histories");
    assert!(
        verdict.is_linearizable(),
        "the store must be linearizable: {verdict}"
    );
    Ok(())
}

/// The clients' own machine crashes mid-workload: every op they recorded
/// before the crash stays in the run's history (it is kept outside the
/// machines), nothing is recorded while it is down, and after the restart
/// the clients' new lives (new processes) add to it; the whole history,
/// with the crashed ops open, is linearizable.
fn kv_history_survives_client_crash(c: &mut dyn Cluster) -> Result<()> {
    let [a, b, d, e] = c.add_machines()?;
    let kv = kv::spawn_group(c, &[a, b, d], None)?;
    for p in 1..=2 {
        let mut cfg = KvClientConfig::new(kv.clone(), p);
        cfg.ops = 40;
        cfg.timeout_ms = 300;
        c.spawn_node(e, KV_CLIENT, cfg)?;
    }
    c.run_until(secs(20), |c| Ok(c.history()?.len() >= 20))?;
    c.crash(e)?;
    let crashed_at = c.now();
    let before = c.history()?;
    assert!(before.len() >= 20, "{} ops before the crash", before.len());
    if simulated(c) {
        assert!(
            before.ops().iter().all(|o| o.time <= crashed_at),
            "only ops recorded before the crash"
        );
    }
    c.run_for(millis(300))?;
    assert_eq!(
        c.history()?,
        before,
        "a crashed client records nothing, and loses nothing it recorded"
    );
    c.restart(e)?;
    c.run_until(secs(20), |c| {
        let h = c.history()?;
        Ok((1..=2).all(|p| kv_client::completed(&h, p + kv_client::LIFE_STRIDE) >= 40))
    })?;
    let after = c.history()?;
    assert_eq!(
        &after.ops()[..before.len()],
        before.ops(),
        "the history only grows"
    );
    let verdict = check_kv(&after, &Budget::steps(5_000_000))
        .expect("the clients record well-formed histories across lives");
    assert!(
        verdict.is_linearizable(),
        "the store must be linearizable: {verdict}"
    );
    Ok(())
}

// --------------------------------------------------------------- wordcount

/// 20% message loss everywhere between machines: the counts come out exact.
fn wordcount_exact_under_loss(c: &mut dyn Cluster) -> Result<()> {
    let [src, s1, s2, k1, k2] = c.add_machines()?;
    c.set_all_links(Link::default().with_loss(0.2))?;
    let text = lines();
    let wc = Pipeline::spawn(c, src, &[s1, s2], &[k1, k2], &text, None)?;
    c.run_until(secs(20), |c| Ok(wc.status(c, CALL)?.pending == 0))?;
    let s = wc.status(c, CALL)?;
    assert_eq!(
        (s.done, s.total),
        (text.len() as u64, text.len() as u64),
        "every line acknowledged: {s:?}"
    );
    let got = wc.counts(c, CALL)?;
    let want = count_words(&text);
    assert_eq!(
        got, want,
        "counts must be exact despite lost and retried messages"
    );
    Ok(())
}

/// A counter crashes and restarts (from its disk), a splitter is cut off for a
/// while: the counts still come out exact.
fn wordcount_exact_across_crash_and_partition(c: &mut dyn Cluster) -> Result<()> {
    let [src, s1, s2, k1, k2] = c.add_machines()?;
    // 50 ms a hop: a line takes 200 ms, 94 lines in windows of 32 about 600
    // ms, so the crash lands mid-stream in every mode.
    c.set_all_links(Link::fixed(millis(50)))?;
    let text = lines();
    let wc = Pipeline::spawn(c, src, &[s1, s2], &[k1, k2], &text, None)?;
    c.run_for(millis(250))?;
    c.crash(k1)?;
    c.isolate(s2)?;
    c.run_for(millis(500))?;
    let s = wc.status(c, CALL)?;
    assert!(
        s.pending > 0,
        "with a counter down the stream cannot finish: {s:?}"
    );
    if simulated(c) {
        assert!(s.done > 0, "lines finished before the crash: {s:?}");
    }
    c.restart(k1)?;
    c.run_for(millis(500))?;
    c.heal_all()?;
    c.run_until(secs(20), |c| Ok(wc.status(c, CALL)?.pending == 0))?;
    assert_eq!(
        wc.counts(c, CALL)?,
        count_words(&text),
        "counts must be exact after a crash and a partition"
    );
    Ok(())
}

/// The key-value store under a nemesis drawn from the seed (partitions,
/// one-way cuts, crashes, pauses and latency on the three replicas, for
/// 3 s): once healed, the clients' history is linearizable. The same body
/// sweeps under `DISTZERO_SEEDS` and runs on agents in real modes, the
/// nemesis firing on real time.
fn kv_linearizable_under_nemesis(c: &mut dyn Cluster) -> Result<()> {
    distzero_examples::scenarios::kv(c)
}

/// The word count stream under a nemesis on all five machines: once
/// healed, totals are exact.
fn wordcount_exact_under_nemesis(c: &mut dyn Cluster) -> Result<()> {
    distzero_examples::scenarios::wordcount(c)
}

/// The Raft-style log (`examples/src/raft.rs`) under two nemeses on its
/// three replicas (2 s of the default mix, then 2 s of crashes): once
/// healed, a leader is elected, the clients' history is linearizable and
/// every replica applied the same log.
fn raft_linearizable_under_nemesis(c: &mut dyn Cluster) -> Result<()> {
    distzero_examples::scenarios::raft(c)
}

/// The same under storage faults (power losses that keep a prefix of the
/// unsynced writes or tear the last one, I/O errors, a full disk, slow
/// syncs, reads that flip bits) beside partitions and crashes: one
/// declaration, every mode.
fn raft_linearizable_under_storage_faults(c: &mut dyn Cluster) -> Result<()> {
    distzero_examples::scenarios::raft_disk(c)
}

/// The same when two stored blocks of one replica are damaged and read
/// back after a crash: a damaged copy of term and vote gives way to the
/// other, a damaged entry is repaired from the leader before the replica
/// votes again.
fn raft_repairs_a_damaged_replica(c: &mut dyn Cluster) -> Result<()> {
    distzero_examples::scenarios::raft_corrupt_fixed(c)
}

/// The same with leader leases (reads answered without the log) under
/// clock steps and drift beside partitions and pauses.
fn raft_leases_hold_under_clock_faults(c: &mut dyn Cluster) -> Result<()> {
    distzero_examples::scenarios::raft_lease(c)
}

// Each body runs as simulated::*, loopback_mode::* (agents in this process
// over 127.0.0.1: real time and the real wire, without Docker; in CI),
// virtual_mode::* and cloud_mode::*.
distzero::workflow_tests! {
    registry: distzero_examples::registry(),
    tests: [
    pingpong_answers_calls,
    ping_timer_fires_on_schedule,
    group_ids_are_known_before_spawning,
    ping_rtt_follows_link_latency,
    one_way_cut_blocks_one_direction,
    pause_delays_but_loses_nothing,
    held_link_delivers_everything_on_release,
    kv_reads_and_writes_through_any_replica,
    kv_survives_backup_crash,
    kv_recovers_from_disk_after_full_restart,
    kv_partitioned_backup_catches_up,
    kv_never_acks_without_majority,
    kv_exact_under_message_loss,
    kv_linearizable_under_faults,
    kv_history_survives_client_crash,
    raft_linearizable_under_storage_faults,
    raft_repairs_a_damaged_replica,
    raft_leases_hold_under_clock_faults,
    wordcount_exact_under_loss,
    wordcount_exact_across_crash_and_partition,
    kv_linearizable_under_nemesis,
    wordcount_exact_under_nemesis,
    raft_linearizable_under_nemesis,
    ],
}

/// A workflow test sweeps: the linearizability workflow holds
/// on many seeds, not only on the one its name gives (and each seed's run is
/// deterministic).
#[test]
fn simulated_sweep_of_kv_linearizable_under_faults() {
    use distzero::sim::sweep::{sweep, SweepOptions, Workflow};
    let scenario = Workflow {
        name: "kv_linearizable_under_faults".into(),
        registry: distzero_examples::registry(),
        body: kv_linearizable_under_faults,
    };
    let root = std::env::temp_dir().join(format!("distzero-wf-sweep-{}", std::process::id()));
    let opts = SweepOptions {
        seeds: 0..24,
        check_determinism: true,
        stop_at_first: false,
        log_root: root.clone(),
        ..SweepOptions::default()
    };
    let report = sweep(&scenario, &opts, &|seed, _| {
        format!("DISTZERO_SEED={seed} cargo test simulated::kv_linearizable_under_faults")
    });
    assert!(report.passed(), "{report}");
    assert_eq!(report.ran, 24);
    let _ = std::fs::remove_dir_all(root);
}
