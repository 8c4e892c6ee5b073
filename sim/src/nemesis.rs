//! Fault schedules: faults at chosen virtual times, generated as proptest
//! strategies so a failing schedule shrinks to a minimal one, and printed as
//! Rust a person can paste into a test.

use distzero_core::{Cluster, Latency, Link, MachineId, Result};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::Duration;

/// One fault. Machines are named by their index in the scenario's machine list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fault {
    /// Cut every link between the groups, both ways.
    Partition(Vec<Vec<u32>>),
    /// Cut one direction only.
    Cut {
        from: u32,
        to: u32,
    },
    HealAll,
    Crash(u32),
    Restart(u32),
    Pause(u32),
    Resume(u32),
    /// Uniform latency on every link, in milliseconds.
    Latency {
        min_ms: u64,
        max_ms: u64,
    },
}

/// A fault at a virtual time (milliseconds since the scenario's start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at_ms: u64,
    pub fault: Fault,
}

/// A fault schedule. Steps are applied in time order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: Vec<Step>,
}

impl Schedule {
    pub fn new(mut steps: Vec<Step>) -> Self {
        steps.sort_by_key(|s| s.at_ms);
        Schedule { steps }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// A proptest strategy: up to `max_steps` faults among `machines`
    /// machines within `window_ms`.
    pub fn strategy(
        machines: u32,
        window_ms: u64,
        max_steps: usize,
    ) -> impl Strategy<Value = Schedule> {
        let m = machines.max(1);
        // Order matters for shrinking: proptest moves towards earlier arms,
        // so the most benign faults come first.
        let fault = prop_oneof![
            2 => Just(Fault::HealAll),
            2 => (0..m).prop_map(Fault::Restart),
            1 => (0..m).prop_map(Fault::Resume),
            2 => (0..m).prop_map(Fault::Crash),
            1 => (0..m).prop_map(Fault::Pause),
            1 => (0u64..5, 0u64..50).prop_map(|(min_ms, extra)| Fault::Latency {
                min_ms,
                max_ms: min_ms + extra
            }),
            1 => (0..m, 0..m).prop_map(|(from, to)| if from == to {
                Fault::HealAll
            } else {
                Fault::Cut { from, to }
            }),
            3 => proptest::collection::vec(0..m, 1..=(m as usize)).prop_map(move |side| {
                let mut a: Vec<u32> = side;
                a.sort();
                a.dedup();
                let b: Vec<u32> = (0..m).filter(|i| !a.contains(i)).collect();
                if b.is_empty() {
                    Fault::HealAll
                } else {
                    Fault::Partition(vec![a, b])
                }
            }),
        ];
        let step = (0..window_ms.max(1), fault).prop_map(|(at_ms, fault)| Step { at_ms, fault });
        proptest::collection::vec(step, 0..=max_steps).prop_map(Schedule::new)
    }

    /// Apply one fault now.
    pub fn apply(c: &mut dyn Cluster, machines: &[MachineId], fault: &Fault) -> Result<()> {
        Self::apply_on(c, machines, fault, Link::default())
    }

    /// Apply one fault now, on links that are `base` when no fault changed
    /// them: a latency fault keeps `base`'s loss.
    pub fn apply_on(
        c: &mut dyn Cluster,
        machines: &[MachineId],
        fault: &Fault,
        base: Link,
    ) -> Result<()> {
        let m = |i: &u32| machines[*i as usize % machines.len()];
        tracing::info!(fault = ?fault, "nemesis");
        match fault {
            Fault::Partition(groups) => {
                let groups: Vec<Vec<MachineId>> =
                    groups.iter().map(|g| g.iter().map(m).collect()).collect();
                let refs: Vec<&[MachineId]> = groups.iter().map(Vec::as_slice).collect();
                c.partition(&refs)
            }
            Fault::Cut { from, to } => c.cut(m(from), m(to)),
            Fault::HealAll => c.heal_all(),
            Fault::Crash(i) => c.crash(m(i)),
            Fault::Restart(i) => c.restart(m(i)),
            Fault::Pause(i) => c.pause(m(i)),
            Fault::Resume(i) => c.resume(m(i)),
            Fault::Latency { min_ms, max_ms } => c.set_all_links(Link {
                latency: Latency::Uniform {
                    min: Duration::from_millis(*min_ms),
                    max: Duration::from_millis(*max_ms),
                },
                loss: base.loss,
            }),
        }
    }

    /// Run the cluster through the schedule, from `c.now()` as time zero,
    /// until `total` has passed; then heal everything, resume and restart
    /// every machine so the system can converge.
    pub fn run(&self, c: &mut dyn Cluster, machines: &[MachineId], total: Duration) -> Result<()> {
        self.run_on(c, machines, total, Link::default())
    }

    /// [`Schedule::run`] on a cluster whose links are `base` when no fault
    /// changed them (the run's default link: `DISTZERO_LATENCY`,
    /// `DISTZERO_LOSS`): the recovery restores `base`.
    pub fn run_on(
        &self,
        c: &mut dyn Cluster,
        machines: &[MachineId],
        total: Duration,
        base: Link,
    ) -> Result<()> {
        if machines.is_empty() && self.steps.is_empty() && total.is_zero() {
            return Ok(()); // nothing to fault, nothing to recover
        }
        let start = c.now();
        for step in &self.steps {
            let at = start + Duration::from_millis(step.at_ms);
            if at > c.now() {
                c.run_for(at - c.now())?;
            }
            Self::apply_on(c, machines, &step.fault, base)?;
        }
        if start + total > c.now() {
            c.run_for(start + total - c.now())?;
        }
        Self::recover_to(c, machines, base)
    }

    /// Heal all links, resume paused and restart crashed machines.
    pub fn recover(c: &mut dyn Cluster, machines: &[MachineId]) -> Result<()> {
        Self::recover_to(c, machines, Link::default())
    }

    /// [`Schedule::recover`], setting every link back to `base`.
    pub fn recover_to(c: &mut dyn Cluster, machines: &[MachineId], base: Link) -> Result<()> {
        tracing::info!("nemesis: heal, resume and restart everything");
        c.heal_all()?;
        for &m in machines {
            c.resume(m)?;
            c.restart(m)?;
        }
        c.set_all_links(base)
    }

    /// Rust that rebuilds this schedule, to paste into a test.
    pub fn to_rust(&self) -> String {
        let mut s = String::from("Schedule::new(vec![\n");
        for st in &self.steps {
            let _ = writeln!(
                s,
                "    Step {{ at_ms: {}, fault: {} }},",
                st.at_ms,
                fault_rust(&st.fault)
            );
        }
        s.push_str("])");
        s
    }

    /// One line per step, for reports.
    pub fn describe(&self) -> String {
        if self.steps.is_empty() {
            return "  (no faults)\n".into();
        }
        let mut s = String::new();
        for st in &self.steps {
            let _ = writeln!(s, "  at {:>6} ms  {:?}", st.at_ms, st.fault);
        }
        s
    }
}

fn fault_rust(f: &Fault) -> String {
    match f {
        Fault::Partition(groups) => {
            let gs: Vec<String> = groups.iter().map(|g| format!("vec!{:?}", g)).collect();
            format!("Fault::Partition(vec![{}])", gs.join(", "))
        }
        other => format!("Fault::{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    #[test]
    fn generated_schedules_are_sorted_and_in_range() {
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
        );
        let strat = Schedule::strategy(3, 1000, 8);
        let mut lengths = std::collections::BTreeSet::new();
        let mut kinds = std::collections::HashSet::new();
        for _ in 0..100 {
            let s = strat.new_tree(&mut runner).unwrap().current();
            assert!(s.steps.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            assert!(s.steps.iter().all(|st| st.at_ms < 1000));
            assert!(s.steps.len() <= 8, "{s:?}");
            for st in &s.steps {
                let machines: Vec<u32> = match &st.fault {
                    Fault::Partition(groups) => {
                        assert_eq!(groups.len(), 2, "{st:?}");
                        let mut all: Vec<u32> = groups.concat();
                        all.sort();
                        assert_eq!(
                            all,
                            vec![0, 1, 2],
                            "a partition splits every machine: {st:?}"
                        );
                        all
                    }
                    Fault::Cut { from, to } => {
                        assert_ne!(from, to, "{st:?}");
                        vec![*from, *to]
                    }
                    Fault::Crash(i) | Fault::Restart(i) | Fault::Pause(i) | Fault::Resume(i) => {
                        vec![*i]
                    }
                    Fault::Latency { min_ms, max_ms } => {
                        assert!(min_ms <= max_ms, "{st:?}");
                        vec![]
                    }
                    Fault::HealAll => vec![],
                };
                assert!(machines.iter().all(|&m| m < 3), "{st:?}");
                kinds.insert(std::mem::discriminant(&st.fault));
            }
            lengths.insert(s.steps.len());
        }
        // Not a degenerate strategy: schedules of many lengths and every kind of fault.
        assert!(lengths.len() >= 5, "lengths {lengths:?}");
        assert_eq!(kinds.len(), 8, "every kind of fault is generated");
    }

    #[test]
    fn rust_form_is_readable() {
        let s = Schedule::new(vec![
            Step {
                at_ms: 50,
                fault: Fault::Crash(1),
            },
            Step {
                at_ms: 10,
                fault: Fault::Partition(vec![vec![0], vec![1, 2]]),
            },
        ]);
        let r = s.to_rust();
        assert!(
            r.contains("Step { at_ms: 10, fault: Fault::Partition(vec![vec![0], vec![1, 2]]) }"),
            "{r}"
        );
        assert!(r.find("at_ms: 10").unwrap() < r.find("at_ms: 50").unwrap());
    }
}
