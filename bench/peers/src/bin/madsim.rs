//! The workload on madsim 0.2: one simulated node per machine, madsim's UDP
//! socket, a fixed 1 ms latency (madsim takes a half-open range: 1 ms up to
//! 1 ms + 1 ns). Build with `RUSTFLAGS="--cfg madsim"` (see ../../run.sh).

#[cfg(not(madsim))]
fn main() {
    eprintln!("peer-madsim must be built with RUSTFLAGS=\"--cfg madsim\"");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    use distzero_peers::{args, ping, report, round_of, Clock, Rounds, Topology, LATENCY_MS, PORT};
    use madsim::net::UdpSocket;
    use madsim::runtime::Runtime;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let (shape, n, rounds) = args();
    let topo = Arc::new(Topology::new(n, shape));
    let ip = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + 1 + i));
    let clock = Clock::start();
    let mut config = madsim::Config::default();
    config.net.send_latency = Duration::from_millis(LATENCY_MS)
        ..Duration::from_millis(LATENCY_MS) + Duration::from_nanos(1);
    let rt = Runtime::with_seed_and_config(distzero_peers::SEED, config);
    let delivered = Arc::new(AtomicU64::new(0));
    let sim_ns = rt.block_on({
        let delivered = delivered.clone();
        async move {
            let t0 = madsim::time::Instant::now();
            let mut tasks = Vec::new();
            for i in 0..n {
                let topo = topo.clone();
                let delivered = delivered.clone();
                let node = madsim::runtime::Handle::current()
                    .create_node()
                    .name(format!("n{i}"))
                    .ip(ip(i))
                    .build();
                tasks.push(node.spawn(async move {
                    let sock = UdpSocket::bind(SocketAddr::new(ip(i), PORT)).await.unwrap();
                    let peers: Vec<SocketAddr> = topo
                        .peers(i)
                        .iter()
                        .map(|&j| SocketAddr::new(ip(j), PORT))
                        .collect();
                    let need = topo.degree();
                    let mut state = Rounds::default();
                    let mut buf = [0u8; 64];
                    // Every socket is bound before the first message flies.
                    madsim::time::sleep(Duration::from_millis(1)).await;
                    while state.round < rounds {
                        let msg = ping(state.round);
                        for p in &peers {
                            sock.send_to(*p, &msg).await.unwrap();
                        }
                        while !state.advance(need) {
                            let (len, _) = sock.recv_from(&mut buf).await.unwrap();
                            assert_eq!(len, 16);
                            delivered.fetch_add(1, Ordering::Relaxed);
                            state.count(round_of(&buf));
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            t0.elapsed().as_nanos()
        }
    });
    report(
        "madsim",
        shape,
        n,
        rounds,
        delivered.load(Ordering::Relaxed),
        clock,
        sim_ns,
    );
}
