//! RFC 5798 §6.1's derived times and the timers of one virtual router.

use std::time::{Duration, Instant};

/// Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256 (RFC 5798 §6.1): the
/// higher the priority, the sooner a Backup takes over, so the best Backup wins the race.
///
/// Computed exactly (to the nanosecond) rather than truncated to centiseconds: keepalived
/// does the same, and the capture in tests/vectors shows its 609.375 ms for priority 100.
pub fn skew_time(priority: u8, master_adver_interval: Duration) -> Duration {
    master_adver_interval * (256 - u32::from(priority)) / 256
}

/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time (RFC 5798 §6.1): how long
/// a Backup waits without hearing the Master before it takes over.
pub fn master_down_interval(priority: u8, master_adver_interval: Duration) -> Duration {
    3 * master_adver_interval + skew_time(priority, master_adver_interval)
}

/// The timers of one virtual router; `None` is a cancelled timer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timers {
    /// RFC 5798 §6.2 Master_Down_Timer, armed in Backup.
    pub(crate) master_down: Option<Instant>,
    /// RFC 5798 §6.2 Adver_Timer, armed in Master.
    pub(crate) adver: Option<Instant>,
    /// The repeated gratuitous ARP / NA burst after becoming Master.
    pub(crate) garp_repeat: Option<Instant>,
    /// End of a make-before-break step-down if no new Master is heard.
    pub(crate) step_down_deadline: Option<Instant>,
}

impl Timers {
    pub(crate) fn next(&self) -> Option<Instant> {
        [
            self.master_down,
            self.adver,
            self.garp_repeat,
            self.step_down_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(crate) fn cancel_all(&mut self) {
        *self = Timers::default();
    }
}

/// Disarms `timer` and returns true if it is due at `now`.
pub(crate) fn fire(timer: &mut Option<Instant>, now: Instant) -> bool {
    match *timer {
        Some(at) if at <= now => {
            *timer = None;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5798_6_1_skew_time() {
        // Values worked out by hand from the formula.
        let second = Duration::from_secs(1);
        assert_eq!(skew_time(100, second), Duration::from_micros(609_375));
        assert_eq!(skew_time(200, second), Duration::from_micros(218_750));
        assert_eq!(skew_time(255, second), Duration::from_nanos(3_906_250));
        assert_eq!(skew_time(1, second), Duration::from_nanos(996_093_750));
        let ten_ms = Duration::from_millis(10);
        assert_eq!(skew_time(100, ten_ms), Duration::from_nanos(6_093_750));
    }

    #[test]
    fn rfc5798_6_1_master_down_interval() {
        let second = Duration::from_secs(1);
        // The backup of the keepalived capture took over 3.6095 s after the last advert.
        assert_eq!(
            master_down_interval(100, second),
            Duration::from_micros(3_609_375)
        );
        assert_eq!(
            master_down_interval(150, Duration::from_millis(100)),
            Duration::from_nanos(341_406_250)
        );
        // The higher priority always times out first.
        for p in 1..255u8 {
            assert!(master_down_interval(p + 1, second) < master_down_interval(p, second));
        }
    }

    #[test]
    fn next_is_the_earliest_armed_timer_and_fire_disarms() {
        #[allow(clippy::disallowed_methods)] // the simulated clock's origin
        let t0 = Instant::now();
        let mut timers = Timers {
            adver: Some(t0 + Duration::from_secs(2)),
            garp_repeat: Some(t0 + Duration::from_secs(1)),
            ..Timers::default()
        };
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert!(!fire(&mut timers.garp_repeat, t0));
        assert!(fire(&mut timers.garp_repeat, t0 + Duration::from_secs(1)));
        assert_eq!(timers.garp_repeat, None);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(2)));
        timers.cancel_all();
        assert_eq!(timers.next(), None);
    }
}
