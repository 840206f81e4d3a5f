//! Tracked objects: conditions outside VRRP that make a box a worse or an impossible
//! Master (RFC 5798 leaves priority changes to the implementation, §6.1 "Priority").
//!
//! The I/O loop watches them (interface link state, a tracked pool's servers, the
//! dataplane's liveness probe, a gateway's reachability) and reports each as up or down
//! under a name of its choosing, e.g. `link:eth1`, `pool:web`, `dataplane`, `gateway`.

/// One tracked object and what its failure does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub name: String,
    pub effect: TrackEffect,
}

/// What a tracked object being down does to the virtual router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackEffect {
    /// Lower the priority by this much (keepalived's `weight`), so that a peer with
    /// preemption takes over. The result stays within 1..=254 (RFC 5798 §5.2.4).
    Weight(u8),
    /// Forbid mastership: a Master steps down (priority 0, keeping the VIPs until the peer
    /// announces itself), a Backup never takes over until the object is up again.
    Fault,
}

/// The state of a tracked object as the I/O loop last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackState {
    Up,
    Down,
}

/// The name given to `set_track` is not a configured tracked object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no tracked object is named {0:?}")]
pub struct UnknownTrack(pub String);

impl Track {
    pub fn weight(name: impl Into<String>, decrement: u8) -> Self {
        Track {
            name: name.into(),
            effect: TrackEffect::Weight(decrement),
        }
    }

    pub fn fault(name: impl Into<String>) -> Self {
        Track {
            name: name.into(),
            effect: TrackEffect::Fault,
        }
    }
}

/// The tracked objects of one virtual router and their states; every object starts up.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    tracks: Vec<(Track, TrackState)>,
}

impl Tracker {
    pub(crate) fn new(tracks: &[Track]) -> Self {
        Tracker {
            tracks: tracks.iter().map(|t| (t.clone(), TrackState::Up)).collect(),
        }
    }

    /// Records the state of `name`; returns whether it changed.
    pub(crate) fn set(&mut self, name: &str, state: TrackState) -> Result<bool, UnknownTrack> {
        let (_, current) = self
            .tracks
            .iter_mut()
            .find(|(t, _)| t.name == name)
            .ok_or_else(|| UnknownTrack(name.to_owned()))?;
        let changed = *current != state;
        *current = state;
        Ok(changed)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.tracks.iter().any(|(t, _)| t.name == name)
    }

    fn down(&self) -> impl Iterator<Item = &Track> {
        self.tracks
            .iter()
            .filter(|(_, s)| *s == TrackState::Down)
            .map(|(t, _)| t)
    }

    /// Names of the fault objects that are down.
    pub(crate) fn faults(&self) -> impl Iterator<Item = &str> {
        self.down()
            .filter(|t| t.effect == TrackEffect::Fault)
            .map(|t| t.name.as_str())
    }

    pub(crate) fn is_faulted(&self) -> bool {
        self.faults().next().is_some()
    }

    /// The configured priority less the weights of the objects that are down, within
    /// 1..=254 (RFC 5798 §5.2.4: a router that is not the owner uses 1..=254; 0 means
    /// "stopping"). The owner's 255 is not lowered: it owns the addresses, and a fault
    /// object is the way to make it let go.
    pub(crate) fn effective_priority(&self, configured: u8) -> u8 {
        if configured == crate::Config::OWNER_PRIORITY {
            return configured;
        }
        let decrement: u32 = self
            .down()
            .map(|t| match t.effect {
                TrackEffect::Weight(w) => u32::from(w),
                TrackEffect::Fault => 0,
            })
            .sum();
        let lowered = u32::from(configured)
            .saturating_sub(decrement)
            .clamp(1, 254);
        lowered as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        Tracker::new(&[
            Track::weight("pool:web", 60),
            Track::weight("gateway", 50),
            Track::fault("link:eth1"),
        ])
    }

    #[test]
    fn weights_of_down_objects_add_up() {
        let mut t = tracker();
        assert_eq!(t.effective_priority(200), 200);
        assert_eq!(t.set("pool:web", TrackState::Down), Ok(true));
        assert_eq!(t.effective_priority(200), 140);
        assert_eq!(t.set("gateway", TrackState::Down), Ok(true));
        assert_eq!(t.effective_priority(200), 90);
        assert_eq!(t.set("pool:web", TrackState::Up), Ok(true));
        assert_eq!(t.effective_priority(200), 150);
    }

    #[test]
    fn rfc5798_5_2_4_effective_priority_stays_within_1_to_254() {
        let mut t = tracker();
        t.set("pool:web", TrackState::Down).unwrap();
        t.set("gateway", TrackState::Down).unwrap();
        assert_eq!(
            t.effective_priority(100),
            1,
            "never 0, which means stopping"
        );
        assert_eq!(t.effective_priority(254), 144);
        let untouched = tracker();
        assert_eq!(untouched.effective_priority(254), 254);
    }

    #[test]
    fn owner_priority_is_not_lowered_by_weights() {
        let mut t = tracker();
        t.set("pool:web", TrackState::Down).unwrap();
        assert_eq!(t.effective_priority(255), 255);
    }

    #[test]
    fn fault_objects_fault_without_changing_priority() {
        let mut t = tracker();
        assert!(!t.is_faulted());
        t.set("link:eth1", TrackState::Down).unwrap();
        assert!(t.is_faulted());
        assert_eq!(t.faults().collect::<Vec<_>>(), ["link:eth1"]);
        assert_eq!(t.effective_priority(200), 200);
    }

    #[test]
    fn setting_the_same_state_again_is_no_change_and_unknown_names_are_errors() {
        let mut t = tracker();
        assert_eq!(t.set("gateway", TrackState::Up), Ok(false));
        assert_eq!(
            t.set("gatewya", TrackState::Down),
            Err(UnknownTrack("gatewya".into()))
        );
        assert!(t.has("gateway") && !t.has("gatewya"));
    }
}
