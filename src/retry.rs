//! Deadlines and the retry loop. Every network step runs through `run`, so every wait is
//! bounded by the unlock deadline and every retry is logged with how much time is left.
//! The policy copies Vault's own client: connection errors, 412, 429 and 5xx except 501 are
//! retried with exponential backoff and jitter; anything else is final at once. A server's
//! Retry-After lengthens a wait, never shortens it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set at the first failed attempt of any step: the sign for a person's prompt to come up
/// while the retries go on (see `fallback`).
static TROUBLE: AtomicBool = AtomicBool::new(false);

/// For waits outside `run` (a DHCP server that does not answer yet).
pub fn note_trouble() {
    TROUBLE.store(true, Ordering::SeqCst);
}

pub fn trouble_seen() -> bool {
    TROUBLE.load(Ordering::SeqCst)
}

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    end: Instant,
}

impl Deadline {
    pub fn after(d: Duration) -> Self {
        Deadline {
            end: Instant::now() + d,
        }
    }

    pub fn instant(&self) -> Instant {
        self.end
    }

    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// Wait before retry number `retry` (1-based): first * 2^(retry-1), capped, with jitter
    /// that keeps it between 50 % and 100 % so a thousand machines booting together spread out.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self
            .first
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max);
        capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// How an attempt ended, when it did not succeed.
pub enum Attempt<E> {
    /// Worth another try; `after` is the server's Retry-After, if it sent one.
    Retry {
        error: E,
        after: Option<Duration>,
    },
    Final(E),
}

/// Why `run` gave up.
pub enum GaveUp<E> {
    Final(E),
    /// The deadline passed; the last error seen, and how many attempts were made.
    Deadline {
        last: E,
        attempts: u32,
    },
}

/// Calls `attempt(n, time_left)` until it succeeds, fails finally, or `deadline` passes.
/// `describe` turns an error into a log line fragment.
pub fn run<T, E>(
    what: &str,
    deadline: &Deadline,
    backoff: &Backoff,
    describe: impl Fn(&E) -> String,
    mut attempt: impl FnMut(u32, Duration) -> Result<T, Attempt<E>>,
) -> Result<T, GaveUp<E>> {
    let mut n = 1;
    loop {
        let left = deadline.remaining();
        let result = attempt(n, left);
        let (error, after) = match result {
            Ok(v) => return Ok(v),
            Err(Attempt::Final(e)) => {
                TROUBLE.store(true, Ordering::SeqCst);
                return Err(GaveUp::Final(e));
            }
            Err(Attempt::Retry { error, after }) => (error, after),
        };
        TROUBLE.store(true, Ordering::SeqCst);
        let left = deadline.remaining();
        // The server's Retry-After is a floor, not a replacement for our backoff: OpenBao's
        // rate-limit quota says "Retry-After: 0" when its window resets within the second
        // (whole seconds, rounded down), and a herd that took that literally retried at once,
        // again and again (35x the requests of one that backs off: benches/herd.sh).
        let ours = backoff.delay(n, jitter());
        let wait = after.map_or(ours, |a| a.max(ours));
        if left.is_zero() || wait >= left {
            crate::log::info(format_args!(
                "{what}: attempt {n} failed: {}; no time left to retry",
                describe(&error)
            ));
            return Err(GaveUp::Deadline {
                last: error,
                attempts: n,
            });
        }
        crate::log::info(format_args!(
            "{what}: attempt {n} failed: {}; retrying in {:.1}s ({:.0}s left)",
            describe(&error),
            wait.as_secs_f64(),
            left.as_secs_f64()
        ));
        std::thread::sleep(wait);
        n += 1;
    }
}

/// A number in [0, 1) from the OS RNG; jitter needs no more than that.
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Seconds from a Retry-After header (the delta-seconds form; dates are ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(500));
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(10, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(100, 1.0), Duration::from_secs(8));
    }

    #[test]
    fn jitter_keeps_at_least_half() {
        let b = Backoff::default();
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(500));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn final_error_stops_at_once() {
        let d = Deadline::after(Duration::from_secs(10));
        let mut calls = 0;
        let r: Result<(), GaveUp<&str>> = run(
            "t",
            &d,
            &Backoff::default(),
            |e: &&str| e.to_string(),
            |_, _| {
                calls += 1;
                Err(Attempt::Final("403"))
            },
        );
        assert!(matches!(r, Err(GaveUp::Final("403"))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn retries_until_success() {
        let d = Deadline::after(Duration::from_secs(10));
        let fast = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let r = run(
            "t",
            &d,
            &fast,
            |e: &&str| e.to_string(),
            |n, _| {
                if n < 3 {
                    Err(Attempt::Retry {
                        error: "503",
                        after: None,
                    })
                } else {
                    Ok(n)
                }
            },
        );
        assert!(matches!(r, Ok(3)));
    }

    #[test]
    fn deadline_bounds_the_loop_and_keeps_the_last_error() {
        let d = Deadline::after(Duration::from_millis(200));
        let fast = Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(20),
        };
        let start = Instant::now();
        let r: Result<(), _> = run(
            "t",
            &d,
            &fast,
            |e: &String| e.clone(),
            |n, _| {
                Err(Attempt::Retry {
                    error: format!("refused {n}"),
                    after: None,
                })
            },
        );
        match r {
            Err(GaveUp::Deadline { last, attempts }) => {
                assert!(attempts >= 2, "{attempts}");
                assert_eq!(last, format!("refused {attempts}"));
            }
            _ => panic!("expected the deadline to end the loop"),
        }
        assert!(start.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn retry_after_longer_than_the_deadline_gives_up_now() {
        let d = Deadline::after(Duration::from_secs(2));
        let start = Instant::now();
        let r: Result<(), _> = run(
            "t",
            &d,
            &Backoff::default(),
            |e: &&str| e.to_string(),
            |_, _| {
                Err(Attempt::Retry {
                    error: "429",
                    after: Some(Duration::from_secs(30)),
                })
            },
        );
        assert!(matches!(r, Err(GaveUp::Deadline { attempts: 1, .. })));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn retry_after_zero_still_backs_off() {
        let d = Deadline::after(Duration::from_secs(10));
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(100),
        };
        let start = Instant::now();
        let r = run(
            "t",
            &d,
            &b,
            |e: &&str| e.to_string(),
            |n, _| {
                if n < 3 {
                    Err(Attempt::Retry {
                        error: "429",
                        after: Some(Duration::ZERO),
                    })
                } else {
                    Ok(n)
                }
            },
        );
        assert!(matches!(r, Ok(3)));
        // Two waits of at least half the backoff each.
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn retry_after_header_forms() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
