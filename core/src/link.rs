//! Link properties between two machines: latency and loss.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One-way latency of a link, drawn per message from the seeded rng.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Latency {
    Fixed(Duration),
    /// Uniform in `[min, max]`.
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// `min` plus an exponential tail of the given mean (long tails, as real networks).
    Exponential {
        min: Duration,
        mean: Duration,
    },
}

impl Latency {
    /// Draw one latency. Only uses `rng`, so it is deterministic in simulation.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                if max <= min {
                    min
                } else {
                    let span = (max - min).as_nanos() as u64;
                    min + Duration::from_nanos(rng.gen_range(0..=span))
                }
            }
            Latency::Exponential { min, mean } => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                let tail = -u.ln() * mean.as_nanos() as f64;
                min + Duration::from_nanos(tail.min(60e9) as u64)
            }
        }
    }

    /// The smallest latency this distribution can give.
    pub fn min(&self) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, .. } | Latency::Exponential { min, .. } => min,
        }
    }
}

/// A link's behaviour: latency and the probability that a message is lost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub latency: Latency,
    /// In `[0, 1]`.
    pub loss: f64,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            latency: Latency::Uniform {
                min: Duration::from_micros(500),
                max: Duration::from_micros(1500),
            },
            loss: 0.0,
        }
    }
}

impl Link {
    pub const fn fixed(latency: Duration) -> Self {
        Link {
            latency: Latency::Fixed(latency),
            loss: 0.0,
        }
    }

    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Check the values; the error names what is wrong.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..=1.0).contains(&self.loss) || self.loss.is_nan() {
            return Err(crate::Error::Unsupported(format!(
                "link loss must be within 0.0..=1.0, got {}",
                self.loss
            )));
        }
        if let Latency::Uniform { min, max } = self.latency {
            if max < min {
                return Err(crate::Error::Unsupported(format!(
                    "uniform latency needs min <= max, got {min:?}..{max:?}"
                )));
            }
        }
        Ok(())
    }
}
