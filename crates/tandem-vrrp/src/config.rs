//! The configuration of one virtual router: RFC 5798 §6.1's parameters plus Tandem's
//! extensions. Plain data; `tandem-config` maps its YAML model onto it.

use std::net::IpAddr;
use std::time::Duration;

use crate::advert::{MAX_ADVERT_INTERVAL, MULTICAST_V4, MULTICAST_V6, interval_to_centiseconds};
use crate::tracking::Track;

/// The configuration of one virtual router. IPv4 and IPv6 need separate virtual routers
/// (RFC 5798 §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// VRID, 1..=255 (RFC 5798 §5.2.3).
    pub vrid: u8,
    /// Priority (RFC 5798 §6.1): 255 makes this router the address owner, 1..=254 a
    /// router backing the addresses up. Tracking lowers it ([`Track`]).
    pub priority: u8,
    /// Advertisement_Interval (RFC 5798 §6.1): whole centiseconds, 10 ms to 40.95 s.
    pub advert_interval: Duration,
    /// IPvX_Addresses (RFC 5798 §6.1): the VIPs, all of one family. For IPv6, RFC 5798
    /// §5.2.9 asks for the virtual router's link-local address first.
    pub virtual_addresses: Vec<IpAddr>,
    /// Our address on the link: the source of our adverts (RFC 5798 §7.2: the primary IPv4
    /// address, or the IPv6 link-local address) and our side of the tie-break (§6.4.3).
    pub primary_address: IpAddr,
    /// Preempt_Mode (RFC 5798 §6.1): a higher-priority Backup takes over from a
    /// lower-priority Master.
    pub preempt: bool,
    /// Tandem extension: after startup or a cleared fault, wait this long before
    /// preempting, so a box that just came back settles first (docs/vrrp.md).
    pub preempt_delay: Duration,
    /// Accept_Mode (RFC 5798 §6.1): a non-owner Master accepts traffic to the VIPs.
    /// Defaults to on, unlike the RFC: a load balancer exists to accept that traffic.
    pub accept_mode: bool,
    /// The other routers of this virtual router. When set, adverts from any other source
    /// are dropped ([`DropReason::UnknownSource`](crate::DropReason::UnknownSource)).
    pub peers: Vec<IpAddr>,
    /// Send adverts to each of `peers` instead of the multicast group, for networks that
    /// block multicast.
    pub unicast: bool,
    /// After becoming Master, announce the VIPs again after this delay (keepalived's
    /// `garp_master_delay`), for switches that missed the first burst.
    pub garp_repeat_delay: Option<Duration>,
    /// Objects whose failure lowers the priority or forbids mastership.
    pub tracks: Vec<Track>,
}

/// Why a [`Config`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("VRID 0 is not valid; use 1 to 255")]
    VridZero,
    #[error("priority 0 is reserved for a stopping Master; use 1 to 255")]
    PriorityZero,
    #[error(
        "advert interval {0:?} is not a whole number of centiseconds between 10 ms and 40.95 s"
    )]
    AdvertInterval(Duration),
    #[error("a virtual router needs at least one virtual address")]
    NoVirtualAddresses,
    #[error("{count} virtual addresses do not fit one advert; at most {max}")]
    TooManyVirtualAddresses { count: usize, max: usize },
    #[error("virtual address {0} is listed twice")]
    DuplicateVirtualAddress(IpAddr),
    #[error(
        "{0} is not of the family of the primary address; IPv4 and IPv6 need separate virtual routers"
    )]
    MixedFamilies(IpAddr),
    #[error("unicast adverts need at least one peer")]
    UnicastWithoutPeers,
    #[error("{what} of {delay:?} is longer than the maximum of one hour")]
    DelayTooLong { what: &'static str, delay: Duration },
    #[error("tracked object {0:?} is listed twice")]
    DuplicateTrack(String),
}

/// Longest accepted preempt delay or GARP repeat delay: generous, and keeps every
/// `Instant` the router computes far from overflow.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Most VIPs per advert so that it fits a 1500-byte MTU: (1500 - 40 - 8) / 16 for IPv6;
/// for IPv4 the one-byte count (RFC 5798 §5.2.5) is the limit.
const MAX_ADDRESSES_V4: usize = 255;
const MAX_ADDRESSES_V6: usize = 90;

impl Config {
    /// The Priority of the address owner (RFC 5798 §5.2.4).
    pub const OWNER_PRIORITY: u8 = 255;
    /// RFC 5798 §6.1's default Priority for a Backup.
    pub const DEFAULT_PRIORITY: u8 = 100;
    /// design.md: 100 ms (about 0.35 s failover) rather than RFC 5798 §6.1's 1 s.
    pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_millis(100);
    /// keepalived's default `garp_master_delay`.
    pub const DEFAULT_GARP_REPEAT_DELAY: Duration = Duration::from_secs(5);

    /// A configuration with the defaults: priority 100, 100 ms, preempt on without delay,
    /// accept mode on, multicast, any source, GARP repeated after 5 s, no tracking.
    pub fn new(vrid: u8, primary_address: IpAddr, virtual_addresses: Vec<IpAddr>) -> Self {
        Config {
            vrid,
            priority: Self::DEFAULT_PRIORITY,
            advert_interval: Self::DEFAULT_ADVERT_INTERVAL,
            virtual_addresses,
            primary_address,
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: true,
            peers: Vec::new(),
            unicast: false,
            garp_repeat_delay: Some(Self::DEFAULT_GARP_REPEAT_DELAY),
            tracks: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::VridZero);
        }
        if self.priority == 0 {
            return Err(ConfigError::PriorityZero);
        }
        if self.advert_interval.is_zero()
            || self.advert_interval > MAX_ADVERT_INTERVAL
            || interval_to_centiseconds(self.advert_interval).is_none()
        {
            return Err(ConfigError::AdvertInterval(self.advert_interval));
        }
        let is_v6 = self.primary_address.is_ipv6();
        if self.virtual_addresses.is_empty() {
            return Err(ConfigError::NoVirtualAddresses);
        }
        let max = if is_v6 {
            MAX_ADDRESSES_V6
        } else {
            MAX_ADDRESSES_V4
        };
        if self.virtual_addresses.len() > max {
            return Err(ConfigError::TooManyVirtualAddresses {
                count: self.virtual_addresses.len(),
                max,
            });
        }
        for (i, address) in self.virtual_addresses.iter().enumerate() {
            if address.is_ipv6() != is_v6 {
                return Err(ConfigError::MixedFamilies(*address));
            }
            if self.virtual_addresses[..i].contains(address) {
                return Err(ConfigError::DuplicateVirtualAddress(*address));
            }
        }
        if let Some(peer) = self.peers.iter().find(|p| p.is_ipv6() != is_v6) {
            return Err(ConfigError::MixedFamilies(*peer));
        }
        if self.unicast && self.peers.is_empty() {
            return Err(ConfigError::UnicastWithoutPeers);
        }
        for (what, delay) in [
            ("preempt delay", Some(self.preempt_delay)),
            ("GARP repeat delay", self.garp_repeat_delay),
        ] {
            if let Some(delay) = delay.filter(|d| *d > MAX_DELAY) {
                return Err(ConfigError::DelayTooLong { what, delay });
            }
        }
        for (i, track) in self.tracks.iter().enumerate() {
            if self.tracks[..i].iter().any(|t| t.name == track.name) {
                return Err(ConfigError::DuplicateTrack(track.name.clone()));
            }
        }
        Ok(())
    }

    /// RFC 5798 §5.2.4: priority 255 is the router that owns the virtual addresses.
    pub fn is_address_owner(&self) -> bool {
        self.priority == Self::OWNER_PRIORITY
    }

    /// Where to send each advert (RFC 5798 §5.1.1.2, §5.1.2.2), or the peers in unicast.
    /// Encode the advert once per destination: the destination is under the checksum.
    pub fn advert_destinations(&self) -> Vec<IpAddr> {
        if self.unicast {
            self.peers.clone()
        } else if self.primary_address.is_ipv6() {
            vec![IpAddr::V6(MULTICAST_V6)]
        } else {
            vec![IpAddr::V4(MULTICAST_V4)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::Track;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn valid() -> Config {
        Config::new(51, ip("10.99.0.12"), vec![ip("10.99.0.254")])
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = valid();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.priority, 100);
        assert_eq!(config.advert_interval, Duration::from_millis(100));
        assert!(config.preempt && config.accept_mode && !config.unicast);
        assert_eq!(config.advert_destinations(), vec![ip("224.0.0.18")]);
    }

    type Breakage = fn(&mut Config);

    #[test]
    fn invalid_configurations_are_refused_with_their_reason() {
        let cases: Vec<(Breakage, ConfigError)> = vec![
            (|c| c.vrid = 0, ConfigError::VridZero),
            (|c| c.priority = 0, ConfigError::PriorityZero),
            (
                |c| c.advert_interval = Duration::from_millis(5),
                ConfigError::AdvertInterval(Duration::from_millis(5)),
            ),
            (
                |c| c.advert_interval = Duration::from_millis(40_960),
                ConfigError::AdvertInterval(Duration::from_millis(40_960)),
            ),
            (
                |c| c.advert_interval = Duration::from_millis(105),
                ConfigError::AdvertInterval(Duration::from_millis(105)),
            ),
            (
                |c| c.virtual_addresses.clear(),
                ConfigError::NoVirtualAddresses,
            ),
            (
                |c| c.virtual_addresses.push("10.99.0.254".parse().unwrap()),
                ConfigError::DuplicateVirtualAddress("10.99.0.254".parse().unwrap()),
            ),
            (
                |c| c.virtual_addresses.push("2001:db8::1".parse().unwrap()),
                ConfigError::MixedFamilies("2001:db8::1".parse().unwrap()),
            ),
            (
                |c| c.peers.push("fe80::1".parse().unwrap()),
                ConfigError::MixedFamilies("fe80::1".parse().unwrap()),
            ),
            (|c| c.unicast = true, ConfigError::UnicastWithoutPeers),
            (
                |c| c.preempt_delay = Duration::from_secs(3601),
                ConfigError::DelayTooLong {
                    what: "preempt delay",
                    delay: Duration::from_secs(3601),
                },
            ),
            (
                |c| c.tracks = vec![Track::fault("link"), Track::weight("link", 10)],
                ConfigError::DuplicateTrack("link".into()),
            ),
        ];
        for (break_it, expected) in cases {
            let mut config = valid();
            break_it(&mut config);
            assert_eq!(config.validate(), Err(expected));
        }
    }

    #[test]
    fn advert_interval_limits_are_inclusive() {
        let mut config = valid();
        for ok in [Duration::from_millis(10), Duration::from_millis(40_950)] {
            config.advert_interval = ok;
            assert_eq!(config.validate(), Ok(()));
        }
    }

    #[test]
    fn ipv6_address_count_is_bounded_by_the_mtu() {
        let mut config = Config::new(1, ip("fe80::1"), vec![]);
        config.virtual_addresses = (1..=91u16)
            .map(|i| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
            .collect();
        assert_eq!(
            config.validate(),
            Err(ConfigError::TooManyVirtualAddresses { count: 91, max: 90 })
        );
        config.virtual_addresses.pop();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.advert_destinations(), vec![ip("ff02::12")]);
    }

    #[test]
    fn unicast_sends_to_each_peer() {
        let mut config = valid();
        config.unicast = true;
        config.peers = vec![ip("10.99.0.11"), ip("10.99.0.13")];
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.advert_destinations(), config.peers);
    }
}
