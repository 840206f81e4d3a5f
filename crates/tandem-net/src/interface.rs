//! Interface names and lookups: name ↔ index, MAC address, link state.

use std::fmt;
use std::str::FromStr;

use futures::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};

use crate::MacAddr;
use crate::netlink::{Netlink, NetlinkError};

/// A Linux interface name, checked the way the kernel's `dev_valid_name()` checks it, so it
/// can be used as one component of a `/proc/sys` path without any path traversal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName(String);

impl InterfaceName {
    /// `IFNAMSIZ - 1`: the kernel's limit, the terminating NUL excluded.
    pub const MAX_LEN: usize = 15;

    pub fn new(name: impl Into<String>) -> Result<Self, InvalidInterfaceName> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > Self::MAX_LEN {
            Some("it is longer than 15 bytes")
        } else if name == "." || name == ".." {
            Some("it is a relative path component")
        } else if name.contains('/') {
            Some("it contains '/'")
        } else if name.contains(':') {
            Some("it contains ':'")
        } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("it contains whitespace or a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidInterfaceName { name, reason }),
            None => Ok(InterfaceName(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InterfaceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for InterfaceName {
    type Err = InvalidInterfaceName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InterfaceName::new(s)
    }
}

impl TryFrom<&str> for InterfaceName {
    type Error = InvalidInterfaceName;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        InterfaceName::new(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid interface name {name:?}: {reason}")]
pub struct InvalidInterfaceName {
    pub name: String,
    pub reason: &'static str,
}

/// RFC 2863 operational state, as the kernel reports it in `IFLA_OPERSTATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperState {
    /// Drivers that do not track operstate (loopback, dummy, some tunnels) report this.
    Unknown,
    NotPresent,
    Down,
    /// The link is administratively up but the device it is stacked on is down: a macvlan
    /// or VLAN whose parent lost carrier. (A veth whose peer is down, or a NIC without
    /// carrier, is plain `Down`.)
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
    Other(u8),
}

impl From<State> for OperState {
    fn from(state: State) -> Self {
        match state {
            State::Unknown => OperState::Unknown,
            State::NotPresent => OperState::NotPresent,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Testing => OperState::Testing,
            State::Dormant => OperState::Dormant,
            State::Up => OperState::Up,
            State::Other(raw) => OperState::Other(raw),
            _ => OperState::Other(u8::MAX),
        }
    }
}

/// The state bits that decide whether a tracked interface counts as up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// `IFF_UP`: administratively up (`ip link set dev X up`).
    pub admin_up: bool,
    /// `IFF_LOWER_UP`: the driver reports carrier.
    pub lower_up: bool,
    /// `IFF_RUNNING`: the kernel sets it when the link is admin-up and its operstate is
    /// `Up` or `Unknown` (RFC 2863 semantics, see the kernel's `dev_get_flags()`).
    pub running: bool,
    pub oper_state: OperState,
}

impl LinkStatus {
    /// Whether traffic can flow: admin-up and running. This is keepalived's rule
    /// (`IFF_UP | IFF_RUNNING`); it follows operstate rather than bare carrier, so a link
    /// stacked on a dead lower link (`LowerLayerDown`) counts as down, and drivers that do
    /// not report operstate (`Unknown`) count as up when admin-up.
    pub fn is_up(&self) -> bool {
        self.admin_up && self.running
    }

    pub(crate) fn from_message(message: &LinkMessage) -> Self {
        let flags = message.header.flags;
        let oper_state = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::OperState(state) => Some(OperState::from(*state)),
                _ => None,
            })
            .unwrap_or(OperState::Unknown);
        LinkStatus {
            admin_up: flags.contains(LinkFlags::Up),
            lower_up: flags.contains(LinkFlags::LowerUp),
            running: flags.contains(LinkFlags::Running),
            oper_state,
        }
    }
}

/// What one `RTM_GETLINK` answer says about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub index: u32,
    pub name: String,
    /// `None` for interfaces without an Ethernet address (loopback has six zero bytes and
    /// does report one; tunnels usually do not).
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    pub status: LinkStatus,
    /// The `IFLA_INFO_KIND` ("veth", "macvlan", "bridge" …); `None` for physical NICs.
    pub kind: Option<String>,
    /// `IFLA_LINK`: the parent of a macvlan/VLAN, the peer index of a veth.
    pub link: Option<u32>,
}

impl InterfaceInfo {
    pub(crate) fn from_message(message: &LinkMessage) -> Self {
        let mut info = InterfaceInfo {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: None,
            status: LinkStatus::from_message(message),
            kind: None,
            link: None,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => info.name = name.clone(),
                LinkAttribute::Address(bytes) => info.mac = MacAddr::from_slice(bytes),
                LinkAttribute::Mtu(mtu) => info.mtu = Some(*mtu),
                LinkAttribute::Link(link) => info.link = Some(*link),
                LinkAttribute::LinkInfo(infos) => {
                    info.kind = infos.iter().find_map(|i| match i {
                        LinkInfo::Kind(kind) => Some(kind_name(kind)),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        info
    }
}

fn kind_name(kind: &InfoKind) -> String {
    // InfoKind's Display is the kernel's own name ("macvlan", "veth" …).
    kind.to_string()
}

impl Netlink {
    /// Look an interface up by name (`RTM_GETLINK` with `IFLA_IFNAME`).
    pub async fn interface_by_name(&self, name: &str) -> Result<InterfaceInfo, NetlinkError> {
        let name = InterfaceName::new(name)?;
        let mut links = self
            .handle()
            .link()
            .get()
            .match_name(name.as_str())
            .execute();
        match links.try_next().await {
            Ok(Some(message)) => Ok(InterfaceInfo::from_message(&message)),
            Ok(None) => Err(NetlinkError::NoSuchInterfaceName(name.0)),
            Err(error) => match NetlinkError::from_rtnetlink("get link", error) {
                NetlinkError::Kernel {
                    errno: Errno::ENODEV,
                    ..
                } => Err(NetlinkError::NoSuchInterfaceName(name.0)),
                other => Err(other),
            },
        }
    }

    /// Look an interface up by index.
    pub async fn interface_by_index(&self, index: u32) -> Result<InterfaceInfo, NetlinkError> {
        let mut links = self.handle().link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(Some(message)) => Ok(InterfaceInfo::from_message(&message)),
            Ok(None) => Err(NetlinkError::NoSuchInterfaceIndex(index)),
            Err(error) => match NetlinkError::from_rtnetlink("get link", error) {
                NetlinkError::Kernel {
                    errno: Errno::ENODEV,
                    ..
                } => Err(NetlinkError::NoSuchInterfaceIndex(index)),
                other => Err(other),
            },
        }
    }

    /// Every interface of this network namespace.
    pub async fn interfaces(&self) -> Result<Vec<InterfaceInfo>, NetlinkError> {
        let links: Vec<LinkMessage> = self
            .handle()
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink("dump links", e))?;
        Ok(links.iter().map(InterfaceInfo::from_message).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "eth0",
            "ens3f1",
            "eth0.100",
            "vrrp4-51",
            "br-lan",
            "a",
            "123456789012345",
        ] {
            assert_eq!(InterfaceName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_what_the_kernel_rejects_and_path_tricks() {
        for name in [
            "",
            ".",
            "..",
            "../../etc",
            "eth0/../../x",
            "eth:0",
            "eth 0",
            "eth\t0",
            "eth\n",
            "eth\0",
            "1234567890123456",
        ] {
            assert!(InterfaceName::new(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn status_up_needs_admin_up_and_running() {
        let mut status = LinkStatus {
            admin_up: true,
            lower_up: true,
            running: true,
            oper_state: OperState::Up,
        };
        assert!(status.is_up());
        status.running = false;
        status.oper_state = OperState::LowerLayerDown;
        assert!(!status.is_up());
        status = LinkStatus {
            admin_up: false,
            lower_up: true,
            running: true,
            oper_state: OperState::Up,
        };
        assert!(!status.is_up());
    }

    #[test]
    fn reads_a_link_message() {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.header.flags = LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp;
        message.attributes = vec![
            LinkAttribute::IfName("vr4-51".into()),
            LinkAttribute::Address(vec![0, 0, 0x5e, 0, 1, 51]),
            LinkAttribute::Mtu(1500),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::Link(3),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::MacVlan)]),
        ];
        let info = InterfaceInfo::from_message(&message);
        assert_eq!(info.index, 7);
        assert_eq!(info.name, "vr4-51");
        assert_eq!(info.mac, Some(MacAddr([0, 0, 0x5e, 0, 1, 51])));
        assert_eq!(info.mtu, Some(1500));
        assert_eq!(info.link, Some(3));
        assert_eq!(info.kind.as_deref(), Some("macvlan"));
        assert!(info.status.is_up());
        assert_eq!(info.status.oper_state, OperState::Up);
    }
}
