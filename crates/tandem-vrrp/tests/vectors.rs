//! Golden vectors from real keepalived 2.2.7 traffic (tests/vectors/README.md): VRID 51,
//! VIP 10.99.0.254, 1 s adverts; 10.99.0.11 (priority 200) dies and returns several times,
//! 10.99.0.12 (priority 100) takes over each time.
//!
//! The codec must decode every advert, agree with the checksums, and re-encode each byte
//! for byte. The state machine, configured as 10.99.0.12 and fed 10.99.0.11's adverts at
//! their captured times, must send its adverts and ARP bursts when keepalived did.

use std::fs::File;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pnet_packet::Packet as _;
use pnet_packet::arp::{ArpOperations, ArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use tandem_vrrp::{
    Action, Advert, Config, DropReason, Inbound, Reason, State, VirtualRouter, validate,
};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/keepalived-2.2.7-vrrpv3-failover.pcap"
);

/// What tshark 4.0.17 counts in the capture: `-Y vrrp`, `-Y "vrrp && ip.src==10.99.0.12"`,
/// `-Y "arp.isgratuitous && eth.src==d6:60:a3:a8:46:f9"`.
const VRRP_FRAMES: usize = 74;
const BACKUP_ADVERTS: usize = 56;
const BACKUP_GRATUITOUS_ARPS: usize = 70;

const MASTER: &str = "10.99.0.11";
const BACKUP: &str = "10.99.0.12";
const VIP: &str = "10.99.0.254";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every Ethernet frame of the capture with its time since the first frame.
fn frames() -> Vec<(Duration, Vec<u8>)> {
    let mut reader = PcapNgReader::new(File::open(CAPTURE).unwrap()).unwrap();
    let mut frames = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.unwrap() {
            // pcap-file 2 reads timestamps as nanoseconds; make sure that is what they are.
            Block::InterfaceDescription(idb) => assert!(
                idb.options
                    .iter()
                    .any(|o| matches!(o, InterfaceDescriptionOption::IfTsResol(9))),
                "capture timestamps are not in nanoseconds"
            ),
            Block::EnhancedPacket(epb) => frames.push((epb.timestamp, epb.data.into_owned())),
            _ => {}
        }
    }
    let first = frames[0].0;
    frames
        .into_iter()
        .map(|(at, data)| (at - first, data))
        .collect()
}

/// The IPv4 packets of the capture that carry IP protocol 112.
fn vrrp_packets() -> Vec<(Duration, Vec<u8>)> {
    frames()
        .into_iter()
        .filter_map(|(at, frame)| {
            let ethernet = EthernetPacket::new(&frame)?;
            let is_vrrp = ethernet.get_ethertype() == EtherTypes::Ipv4
                && ethernet.payload().get(9) == Some(&tandem_vrrp::IP_PROTOCOL);
            is_vrrp.then(|| (at, ethernet.payload().to_vec()))
        })
        .collect()
}

/// Times of the gratuitous ARPs (sender IP = target IP = the VIP) sent by `sender_mac`.
fn gratuitous_arps(sender_mac: [u8; 6]) -> Vec<Duration> {
    frames()
        .into_iter()
        .filter_map(|(at, frame)| {
            let ethernet = EthernetPacket::new(&frame)?;
            if ethernet.get_ethertype() != EtherTypes::Arp {
                return None;
            }
            let arp = ArpPacket::new(ethernet.payload())?;
            let gratuitous = arp.get_operation() == ArpOperations::Request
                && arp.get_sender_hw_addr().octets() == sender_mac
                && IpAddr::V4(arp.get_sender_proto_addr()) == ip(VIP)
                && arp.get_target_proto_addr() == arp.get_sender_proto_addr();
            gratuitous.then_some(at)
        })
        .collect()
}

#[test]
fn every_advert_decodes_checks_and_reencodes_byte_for_byte() {
    let packets = vrrp_packets();
    assert_eq!(packets.len(), VRRP_FRAMES);
    for (at, packet) in &packets {
        let inbound = Inbound::from_ipv4_packet(packet).unwrap();
        let advert = validate(&inbound).unwrap_or_else(|e| panic!("frame at {at:?}: {e}"));
        let expected_priority = if inbound.source == ip(MASTER) {
            200
        } else {
            100
        };
        assert_eq!(
            advert,
            Advert {
                vrid: 51,
                priority: expected_priority,
                max_advert_interval: Duration::from_secs(1),
                addresses: vec![ip(VIP)],
            }
        );
        let mut out = [0; 64];
        let len = advert
            .encode(inbound.source, inbound.destination, &mut out)
            .unwrap();
        assert_eq!(&out[..len], inbound.vrrp, "frame at {at:?}");
    }
}

#[test]
fn a_corrupted_capture_advert_is_dropped_as_bad_checksum() {
    let (_, packet) = &vrrp_packets()[0];
    // Every byte of the VRRP payload but version/type (offset 20) and the address count
    // (offset 23, whose change is a length error), corrupted in turn.
    for offset in (21..packet.len()).filter(|o| *o != 23) {
        let mut corrupted = packet.clone();
        corrupted[offset] ^= 0x40;
        let inbound = Inbound::from_ipv4_packet(&corrupted).unwrap();
        assert_eq!(
            validate(&inbound),
            Err(DropReason::BadChecksum),
            "byte {offset}"
        );
    }
}

/// What a router did, at what time since the start of the capture.
#[derive(Debug, Default)]
struct Observed {
    adverts: Vec<Duration>,
    gratuitous_bursts: Vec<Duration>,
    takeovers: Vec<Duration>,
}

/// Feeds the Master's captured adverts to a router configured as the capture's Backup, on
/// a clock that starts at the first frame and jumps from event to event.
fn replay() -> (Observed, Duration) {
    let mut config = Config::new(51, ip(BACKUP), vec![ip(VIP)]);
    config.priority = 100;
    config.advert_interval = Duration::from_secs(1);
    config.garp_repeat_delay = Some(Duration::from_secs(5)); // keepalived's default
    let mut router = VirtualRouter::new(config).unwrap();

    #[allow(clippy::disallowed_methods)] // the simulated clock's origin
    let origin = Instant::now();
    let mut observed = Observed::default();
    let mut collect = |router: &mut VirtualRouter, now: Instant| {
        while let Some(action) = router.poll_action() {
            let at = now - origin;
            match action {
                Action::SendAdvert(_) => observed.adverts.push(at),
                Action::SendGratuitous(_) => observed.gratuitous_bursts.push(at),
                Action::StateChanged(change) if change.to == State::Master => {
                    assert_eq!(change.reason, Reason::MasterDown);
                    observed.takeovers.push(at);
                }
                _ => {}
            }
        }
    };
    router.startup(origin);
    collect(&mut router, origin);

    let packets = vrrp_packets();
    let end = packets.last().unwrap().0;
    let inputs = packets
        .iter()
        .filter(|(_, packet)| Inbound::from_ipv4_packet(packet).unwrap().source == ip(MASTER));
    for (at, packet) in inputs {
        let arrival = origin + *at;
        while let Some(deadline) = router.poll_timeout().filter(|t| *t < arrival) {
            router.handle_timeout(deadline);
            collect(&mut router, deadline);
        }
        let inbound = Inbound::from_ipv4_packet(packet).unwrap();
        let advert = validate(&inbound).unwrap();
        router
            .handle_advert(arrival, inbound.source, &advert)
            .unwrap();
        collect(&mut router, arrival);
        assert_eq!(
            router.state(),
            State::Backup,
            "the priority 200 Master wins"
        );
    }
    while let Some(deadline) = router.poll_timeout().filter(|t| *t <= origin + end) {
        router.handle_timeout(deadline);
        collect(&mut router, deadline);
    }
    (observed, end)
}

/// Pairs predicted and captured times one to one and returns the largest difference.
fn largest_difference(predicted: &[Duration], captured: &[Duration], what: &str) -> Duration {
    assert_eq!(
        predicted.len(),
        captured.len(),
        "{what}: predicted {predicted:?}\n captured {captured:?}"
    );
    predicted
        .iter()
        .zip(captured)
        .map(|(p, c)| p.abs_diff(*c))
        .max()
        .unwrap()
}

/// The first frame of each burst of back-to-back frames.
fn burst_starts(times: &[Duration]) -> Vec<Duration> {
    let mut starts: Vec<Duration> = Vec::new();
    for (i, at) in times.iter().enumerate() {
        if i == 0 || *at - times[i - 1] > Duration::from_millis(100) {
            starts.push(*at);
        }
    }
    starts
}

#[test]
fn replay_takes_over_when_keepalived_did() {
    let (observed, _) = replay();
    let captured_adverts: Vec<Duration> = vrrp_packets()
        .into_iter()
        .filter(|(_, p)| Inbound::from_ipv4_packet(p).unwrap().source == ip(BACKUP))
        .map(|(at, _)| at)
        .collect();
    assert_eq!(captured_adverts.len(), BACKUP_ADVERTS);
    let captured_takeovers = burst_starts_after_silence(&captured_adverts);

    // RFC 5798 §6.4.2: 3 × 1 s + (256 - 100) / 256 s after the last advert of the
    // Master. keepalived processes the timer within a fraction of a millisecond, so the
    // takeovers must match closely: a Skew_Time truncated to whole centiseconds (600 ms
    // instead of 609.375 ms) would be 9 ms off.
    let takeover_error = largest_difference(&observed.takeovers, &captured_takeovers, "takeovers");
    assert!(
        takeover_error < Duration::from_millis(2),
        "takeovers off by {takeover_error:?}"
    );

    // Adverts every second while Master: keepalived's timer drifts a few milliseconds.
    let advert_error = largest_difference(&observed.adverts, &captured_adverts, "adverts");
    assert!(
        advert_error < Duration::from_millis(10),
        "adverts off by {advert_error:?}"
    );
}

#[test]
fn replay_repeats_the_arp_burst_when_keepalived_did() {
    let (observed, _) = replay();
    let arps = gratuitous_arps([0xd6, 0x60, 0xa3, 0xa8, 0x46, 0xf9]);
    assert_eq!(arps.len(), BACKUP_GRATUITOUS_ARPS);
    // One burst on taking over, one more 5 s later (garp_master_delay).
    let error = largest_difference(
        &observed.gratuitous_bursts,
        &burst_starts(&arps),
        "gratuitous ARP bursts",
    );
    assert!(error < Duration::from_millis(10), "bursts off by {error:?}");
}

/// The first advert of each stretch of adverts that follows a silence: a takeover.
fn burst_starts_after_silence(adverts: &[Duration]) -> Vec<Duration> {
    let mut starts: Vec<Duration> = Vec::new();
    for (i, at) in adverts.iter().enumerate() {
        if i == 0 || *at - adverts[i - 1] > Duration::from_millis(1500) {
            starts.push(*at);
        }
    }
    starts
}
