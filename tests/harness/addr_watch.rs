//! When an address comes and goes on a box, as the kernel announces it: a netlink socket
//! opened inside the box's namespace, joined to the IPv4 address group (RTMGRP_IPV4_IFADDR),
//! read by a thread at real-time priority that timestamps every RTM_NEWADDR / RTM_DELADDR for
//! one address on receipt.
//!
//! The kernel sends these notifications from the very netlink call that adds or removes the
//! address, which is also the moment the box starts or stops answering ARP for it and
//! accepting traffic to it (`arp_ignore=0`): so "holds the VIP" here means exactly "would
//! answer for it". The observer runs `SCHED_FIFO` above the heartbeat (which runs at 40), so
//! a loaded machine delays its timestamps by microseconds, not by scheduler ticks.

use crate::Netns;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt,
    socket, sockopt,
};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const OBSERVER_PRIORITY: i32 = 45;

/// One change: `true` when the address was added.
pub type Change = (Instant, bool);

pub struct AddressWatch {
    changes: Arc<Mutex<Vec<Change>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Whether the address was there when the watch started.
    pub initially: bool,
}

impl AddressWatch {
    /// Watches `address` in `ns`.
    pub fn start(ns: &Netns, address: Ipv4Addr) -> AddressWatch {
        let fd: OwnedFd = ns.enter(|| {
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkRoute,
            )
            .expect("open a netlink socket");
            bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_IPV4_IFADDR))
                .expect("join the IPv4 address group");
            fd
        });
        setsockopt(&fd, sockopt::RcvBuf, &(4 << 20)).expect("netlink receive buffer");
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 50_000),
        )
        .expect("netlink receive timeout");
        // Subscribed before reading the current state: nothing falls in between.
        let initially = crate::pair::holds(ns, &address.to_string());
        let changes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (changes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let _ = tandem_net::realtime::set_fifo_scheduler(OBSERVER_PRIORITY);
            let mut buf = vec![0u8; 64 * 1024];
            while !s.load(Ordering::Relaxed) {
                let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
                    continue;
                };
                let at = Instant::now();
                for (added, addr) in parse(&buf[..n]) {
                    if addr == address {
                        c.lock().unwrap().push((at, added));
                    }
                }
            }
        });
        AddressWatch {
            changes,
            stop,
            thread: Some(thread),
            initially,
        }
    }

    /// The changes so far, in order.
    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().unwrap().clone()
    }

    /// The intervals during which the address was held, from `origin` until `end` (an
    /// interval still open at `end` closes there).
    pub fn held(&self, origin: Instant, end: Instant) -> Vec<(Instant, Instant)> {
        let mut out = Vec::new();
        let mut since = self.initially.then_some(origin);
        for (at, added) in self.changes() {
            match (added, since) {
                (true, None) => since = Some(at),
                (false, Some(s)) => {
                    out.push((s, at));
                    since = None;
                }
                _ => {}
            }
        }
        if let Some(s) = since {
            out.push((s, end));
        }
        out
    }
}

impl Drop for AddressWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `(added, address)` of every IPv4 address notification in a netlink datagram.
fn parse(mut buf: &[u8]) -> Vec<(bool, Ipv4Addr)> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        if len < 16 || len > buf.len() {
            break;
        }
        let msg = &buf[..len];
        // struct ifaddrmsg is 8 bytes after the 16-byte header; family 2 is AF_INET.
        if (kind == RTM_NEWADDR || kind == RTM_DELADDR) && len >= 24 && msg[16] == 2 {
            let mut attrs = &msg[24..];
            let mut found = None;
            while attrs.len() >= 4 {
                let alen = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
                let atype = u16::from_ne_bytes(attrs[2..4].try_into().unwrap());
                if alen < 4 || alen > attrs.len() {
                    break;
                }
                if (atype == IFA_LOCAL || (atype == IFA_ADDRESS && found.is_none())) && alen == 8 {
                    found = Some(Ipv4Addr::new(attrs[4], attrs[5], attrs[6], attrs[7]));
                }
                let step = ((alen + 3) & !3).min(attrs.len());
                attrs = &attrs[step..];
            }
            if let Some(a) = found {
                out.push((kind == RTM_NEWADDR, a));
            }
        }
        let next = (len + 3) & !3;
        if next >= buf.len() {
            break;
        }
        buf = &buf[next..];
    }
    out
}

/// Where two boxes both held the address, and where neither did, between `origin` and `end`.
#[derive(Debug, Default)]
pub struct Overlaps {
    /// Both held it: each interval's length.
    pub both: Vec<Duration>,
    /// Neither held it: each interval's length.
    pub neither: Vec<Duration>,
}

impl Overlaps {
    pub fn of(a: &AddressWatch, b: &AddressWatch, origin: Instant, end: Instant) -> Overlaps {
        let (ha, hb) = (a.held(origin, end), b.held(origin, end));
        let mut both = Vec::new();
        for (s1, e1) in &ha {
            for (s2, e2) in &hb {
                let s = (*s1).max(*s2);
                let e = (*e1).min(*e2);
                if e > s {
                    both.push(e - s);
                }
            }
        }
        // Neither: the gaps of the union of both boxes' intervals.
        let mut all: Vec<(Instant, Instant)> = ha.into_iter().chain(hb).collect();
        all.sort();
        let mut neither = Vec::new();
        let mut covered = origin;
        for (s, e) in all {
            if s > covered {
                neither.push(s - covered);
            }
            covered = covered.max(e);
        }
        if end > covered {
            neither.push(end - covered);
        }
        Overlaps { both, neither }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, addr: [u8; 4]) -> Vec<u8> {
        let mut m = Vec::new();
        let len: u32 = 16 + 8 + 8 + 8;
        m.extend(len.to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend([2, 24, 0, 0, 2, 0, 0, 0]);
        for t in [IFA_ADDRESS, IFA_LOCAL] {
            m.extend(8u16.to_ne_bytes());
            m.extend(t.to_ne_bytes());
            m.extend(addr);
        }
        m
    }

    #[test]
    fn parses_address_notifications() {
        let mut buf = message(RTM_NEWADDR, [10, 0, 0, 100]);
        buf.extend(message(RTM_DELADDR, [10, 0, 0, 101]));
        assert_eq!(
            parse(&buf),
            vec![
                (true, Ipv4Addr::new(10, 0, 0, 100)),
                (false, Ipv4Addr::new(10, 0, 0, 101))
            ]
        );
    }
}
