//! The workload on distzero's simulator (`distzero_sim::workload`, the same
//! node as `sim/benches/pingpong.rs`).

use distzero_peers::{args, report, Clock, Shape, SEED};
use distzero_sim::workload;

fn main() {
    let (shape, n, rounds) = args();
    let shape = match shape {
        Shape::Full => workload::Shape::Full,
        Shape::Sparse { k } => workload::Shape::Sparse { k },
    };
    let clock = Clock::start();
    let o = workload::run(n, shape, rounds, SEED).expect("distzero run");
    let name = match shape {
        workload::Shape::Full => Shape::Full,
        workload::Shape::Sparse { k } => Shape::Sparse { k },
    };
    report(
        "distzero",
        name,
        n,
        rounds,
        o.deliveries,
        clock,
        o.simulated.as_nanos(),
    );
}
