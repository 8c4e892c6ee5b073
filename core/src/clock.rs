//! Machine clocks: what a node reads with `ctx.now()` (monotonic) and
//! `ctx.wall_clock()`, per machine, as a model of real time. The simulator
//! keeps one per machine; an agent keeps its machine's and applies it to
//! the real clocks it reads, so both modes give nodes the same clocks.
//!
//! A machine's clocks run at `1 + ppm / 10^6` of real time (its drift;
//! [`MAX_DRIFT_PPM`] at most either way: a quartz crystal's error plus
//! NTP's slew stay far inside it). The monotonic clock never goes back and
//! never jumps; the wall clock can also be stepped by any amount up to
//! [`MAX_STEP`], backwards included (as an NTP step does). Timers follow the
//! machine's monotonic clock: a timer set for `d` fires when that clock has
//! advanced by `d`, at the rate in force when it was set.
//!
//! Real time is what the runtime measures (the simulator's virtual time;
//! an agent's time since the cluster started); history operations are
//! stamped with it, never with a machine's clock, so a checker compares
//! times of different machines.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Largest drift either way, in parts per million.
pub const MAX_DRIFT_PPM: i32 = 1_000;
/// Largest step of a wall clock either way.
pub const MAX_STEP: Duration = Duration::from_secs(3_600);
/// What a wall clock reads when the simulated cluster starts:
/// 2026-01-01T00:00:00Z, as time since the Unix epoch.
pub const SIM_EPOCH: Duration = Duration::from_secs(1_767_225_600);

/// A clock fault on one machine, set by a test or a nemesis with
/// [`crate::Cluster::clock_fault`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockFault {
    /// Step the wall clock by `ms` milliseconds (negative: backwards).
    Step { ms: i64 },
    /// From now on both clocks run at `1 + ppm / 10^6` of real time.
    Drift { ppm: i32 },
    /// The wall clock back on real time (a step) and the rate back to 1;
    /// the monotonic clock keeps its reading.
    Reset,
}

impl ClockFault {
    /// Check the fault's numbers; the error names the bound.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            ClockFault::Step { ms } if ms.unsigned_abs() > MAX_STEP.as_millis() as u64 => {
                Err(format!(
                    "{self:?}: a wall clock steps at most {} ms either way",
                    MAX_STEP.as_millis()
                ))
            }
            ClockFault::Drift { ppm } if ppm.abs() > MAX_DRIFT_PPM => Err(format!(
                "{self:?}: a clock drifts at most {MAX_DRIFT_PPM} ppm either way \
                 (a real oscillator plus NTP's slew stay within it)"
            )),
            _ => Ok(()),
        }
    }
}

/// One machine's clocks, as functions of real time `t` (ns since the
/// cluster started). Piecewise linear: rebased at every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineClock {
    /// Real time of the last change of rate.
    at: u64,
    /// The monotonic reading at `at`.
    mono_at: u64,
    ppm: i32,
    /// Wall clock minus (epoch + monotonic), in ns.
    wall_offset: i64,
}

impl Default for MachineClock {
    fn default() -> Self {
        MachineClock::new(0)
    }
}

impl MachineClock {
    /// A clock reading real time from real time `t` on (a machine added
    /// later reads the same as the others).
    pub fn new(t: u64) -> MachineClock {
        MachineClock {
            at: t,
            mono_at: t,
            ppm: 0,
            wall_offset: 0,
        }
    }

    /// Whether this clock reads real time exactly (the fast path).
    #[inline]
    pub fn is_exact(&self) -> bool {
        self.ppm == 0 && self.mono_at == self.at && self.wall_offset == 0
    }

    /// The monotonic reading at real time `t` (>= the last change).
    #[inline]
    pub fn mono(&self, t: u64) -> u64 {
        if self.is_exact() {
            return t;
        }
        let dt = t.saturating_sub(self.at) as i128;
        let scaled = dt * (1_000_000 + self.ppm as i128) / 1_000_000;
        self.mono_at.saturating_add(scaled.max(0) as u64)
    }

    /// The wall clock at real time `t`, as ns since the epoch the caller
    /// adds ([`SIM_EPOCH`] in simulation, the cluster's start elsewhere).
    pub fn wall(&self, t: u64) -> i128 {
        self.mono(t) as i128 + self.wall_offset as i128
    }

    /// Real time that passes while this clock advances by `d` ns (at least 1
    /// for a non-zero `d`; rounded up, so a timer never fires early).
    #[inline]
    pub fn real_span(&self, d: u64) -> u64 {
        if self.ppm == 0 {
            return d;
        }
        let num = d as u128 * 1_000_000;
        let den = (1_000_000 + self.ppm as i128) as u128;
        u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX)
    }

    /// Apply `fault` at real time `t` (validated by the caller).
    pub fn fault(&mut self, t: u64, fault: &ClockFault) {
        let mono = self.mono(t);
        match *fault {
            ClockFault::Step { ms } => {
                self.wall_offset = self
                    .wall_offset
                    .saturating_add(ms.saturating_mul(1_000_000))
            }
            ClockFault::Drift { ppm } => {
                self.at = t;
                self.mono_at = mono;
                self.ppm = ppm.clamp(-MAX_DRIFT_PPM, MAX_DRIFT_PPM);
            }
            ClockFault::Reset => {
                self.at = t;
                self.mono_at = mono;
                self.ppm = 0;
                self.wall_offset = t as i64 - mono as i64;
            }
        }
    }

    /// The drift in force, ppm.
    pub fn ppm(&self) -> i32 {
        self.ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn an_exact_clock_reads_real_time() {
        let c = MachineClock::new(0);
        assert_eq!(c.mono(5 * S), 5 * S);
        assert_eq!(c.wall(5 * S), 5 * S as i128);
        assert_eq!(c.real_span(S), S);
    }

    #[test]
    fn drift_changes_the_rate_and_timers_follow_it() {
        let mut c = MachineClock::new(0);
        c.fault(S, &ClockFault::Drift { ppm: 1000 });
        assert_eq!(c.mono(S), S);
        assert_eq!(c.mono(2 * S), 2 * S + S / 1000);
        // A 1 s timer set on a fast clock fires after less real time.
        let span = c.real_span(S);
        assert!(span < S && c.mono(S + span) >= 2 * S, "{span}");
        c.fault(2 * S, &ClockFault::Drift { ppm: -1000 });
        assert!(c.mono(3 * S) < 3 * S + S / 1000);
    }

    #[test]
    fn steps_move_the_wall_clock_only() {
        let mut c = MachineClock::new(0);
        c.fault(S, &ClockFault::Step { ms: -500 });
        assert_eq!(c.mono(2 * S), 2 * S, "monotonic clock untouched");
        assert_eq!(
            c.wall(2 * S),
            (2 * S - S / 2) as i128,
            "wall clock went back"
        );
        c.fault(2 * S, &ClockFault::Drift { ppm: 500 });
        c.fault(3 * S, &ClockFault::Reset);
        assert_eq!(c.wall(4 * S), (4 * S) as i128, "back on real time");
        assert!(c.mono(4 * S) >= c.mono(3 * S));
    }

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let mut c = MachineClock::new(0);
        let mut last = 0;
        let faults = [
            ClockFault::Drift { ppm: -1000 },
            ClockFault::Step { ms: -3_600_000 },
            ClockFault::Reset,
            ClockFault::Drift { ppm: 1000 },
            ClockFault::Reset,
        ];
        for (i, f) in faults.iter().enumerate() {
            let t = (i as u64 + 1) * S;
            assert!(c.mono(t) >= last);
            last = c.mono(t);
            c.fault(t, f);
            assert_eq!(c.mono(t), last, "a fault never jumps the monotonic clock");
        }
    }

    #[test]
    fn bounds_are_named() {
        assert!(ClockFault::Drift { ppm: 1001 }.validate().is_err());
        assert!(ClockFault::Step { ms: -3_600_001 }.validate().is_err());
        assert!(ClockFault::Step { ms: -3_600_000 }.validate().is_ok());
    }
}
