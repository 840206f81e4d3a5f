use std::fmt;
use std::str::FromStr;

/// An Ethernet (EUI-48) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// From a netlink `IFLA_ADDRESS` (or any byte slice): `None` unless exactly six bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }

    pub(crate) fn to_pnet(self) -> pnet_base::MacAddr {
        let [a, b, c, d, e, f] = self.0;
        pnet_base::MacAddr::new(a, b, c, d, e, f)
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

/// The text was not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six colon-separated hex octets")]
pub struct InvalidMacAddr(pub String);

impl FromStr for MacAddr {
    type Err = InvalidMacAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(|| InvalidMacAddr(s.to_owned()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(InvalidMacAddr(s.to_owned()));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| InvalidMacAddr(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(InvalidMacAddr(s.to_owned()));
        }
        Ok(MacAddr(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let mac = MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]);
        assert_eq!(mac.to_string(), "00:00:5e:00:01:33");
        assert_eq!("00:00:5e:00:01:33".parse::<MacAddr>().unwrap(), mac);
        assert_eq!("0:0:5E:0:1:33".parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            "",
            "00:00:5e:00:01",
            "00:00:5e:00:01:33:44",
            "000:00:5e:00:01:33",
            "zz:00:5e:00:01:33",
            "00::5e:00:01:33",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn from_slice_needs_six_bytes() {
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
        assert_eq!(MacAddr::from_slice(&[0; 20]), None);
    }
}
