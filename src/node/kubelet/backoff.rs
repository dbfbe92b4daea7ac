//! The kubelet's restart back-off (also used for image pulls and failed starts): the first retry is immediate,
//! then 10 s doubling up to 5 min; a container that ran for 10 minutes starts over.

use std::time::Duration;

const INITIAL: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(300);
/// A run this long forgets earlier failures.
const RESET_AFTER: Duration = Duration::from_secs(600);

/// Back-off of one container (or one image pull).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The delay the next failure waits; zero before the first failure.
    next: Duration,
}

impl Backoff {
    /// A failure after running `ran` (zero for a failed pull): how long to wait before retrying.
    pub fn failed(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER {
            self.next = Duration::ZERO;
        }
        let delay = self.next;
        self.next = if delay.is_zero() { INITIAL } else { (delay * 2).min(MAX) };
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_five_minutes_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.failed(Duration::from_secs(1)).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.failed(Duration::from_secs(601)), Duration::ZERO);
        assert_eq!(b.failed(Duration::ZERO), INITIAL);
    }
}
