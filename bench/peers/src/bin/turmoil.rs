//! The workload on turmoil 0.7: one client host per node, UDP, a fixed 1 ms
//! latency (min = max), the default 1 ms tick.

use distzero_peers::{args, ping, report, round_of, Clock, Rounds, Topology, LATENCY_MS, PORT};
use std::cell::{Cell, OnceCell};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;
use turmoil::net::UdpSocket;

fn main() {
    let (shape, n, rounds) = args();
    let topo = Rc::new(Topology::new(n, shape));
    let clock = Clock::start();
    let mut sim = turmoil::Builder::new()
        .min_message_latency(Duration::from_millis(LATENCY_MS))
        .max_message_latency(Duration::from_millis(LATENCY_MS))
        .simulation_duration(Duration::from_secs(1_000_000))
        // Room for a whole round in every host's UDP buffer (default 64).
        .udp_capacity(2 * topo.degree() as usize + 64)
        .rng_seed(distzero_peers::SEED)
        .build();
    let addrs: Rc<OnceCell<Vec<SocketAddr>>> = Rc::new(OnceCell::new());
    let delivered = Rc::new(Cell::new(0u64));
    for i in 0..n {
        let topo = topo.clone();
        let addrs = addrs.clone();
        let delivered = delivered.clone();
        sim.client(format!("n{i}"), async move {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
            let peers: Vec<SocketAddr> = topo
                .peers(i)
                .iter()
                .map(|&j| addrs.get().expect("addresses")[j as usize])
                .collect();
            let need = topo.degree();
            let mut state = Rounds::default();
            let mut buf = [0u8; 64];
            while state.round < rounds {
                let msg = ping(state.round);
                for p in &peers {
                    sock.send_to(&msg, *p).await?;
                }
                while !state.advance(need) {
                    let (len, _) = sock.recv_from(&mut buf).await?;
                    assert_eq!(len, 16);
                    delivered.set(delivered.get() + 1);
                    state.count(round_of(&buf));
                }
            }
            Ok(())
        });
    }
    let all = (0..n)
        .map(|i| SocketAddr::new(sim.lookup(format!("n{i}")), PORT))
        .collect();
    addrs.set(all).expect("set once");
    sim.run().expect("turmoil run");
    let sim_ns = sim.elapsed().as_nanos();
    report("turmoil", shape, n, rounds, delivered.get(), clock, sim_ns);
}
