//! Gratuitous ARP and unsolicited NA: byte-for-byte against keepalived's capture, decoded
//! by tshark, and sent across a veth where the peer's kernel updates its caches.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use common::{FrameListener, Lab, mac_of, neighbour_mac, wait_for};
use pcap_file::pcapng::{Block, PcapNgReader};
use tandem_net::announce::{UNSOLICITED_NA_FRAME_LEN, gratuitous_arp, unsolicited_na};
use tandem_net::{Announcer, Burst, MacAddr, Netlink};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/keepalived-2.2.7-vrrpv3-failover.pcap"
);
const STALE_MAC: &str = "02:00:00:00:00:99";

fn capture_frames() -> Vec<Vec<u8>> {
    let file = std::fs::File::open(CAPTURE).expect("the keepalived capture");
    let mut reader = PcapNgReader::new(file).expect("a pcapng file");
    let mut frames = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(packet) = block.expect("a readable block") {
            frames.push(packet.data.into_owned());
        }
    }
    frames
}

/// An ARP request whose sender and target protocol addresses are equal: a gratuitous ARP.
fn is_garp(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 1]
        && frame[28..32] == frame[38..42]
}

#[test]
fn every_gratuitous_arp_in_the_keepalived_capture_is_rebuilt_byte_for_byte() {
    let frames = capture_frames();
    assert_eq!(frames.len(), 218, "the capture changed");
    let mut senders = std::collections::BTreeSet::new();
    let mut checked = 0;
    for frame in frames.iter().filter(|f| is_garp(f)) {
        let sender = MacAddr::from_slice(&frame[6..12]).unwrap();
        let vip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
        assert_eq!(
            gratuitous_arp(sender, vip).as_slice(),
            frame.as_slice(),
            "GARP from {sender} for {vip}"
        );
        senders.insert(sender);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} gratuitous ARPs found");
    assert_eq!(senders.len(), 2, "both boxes' bursts are in the capture");
}

/// Write frames into a classic pcap file and let tshark decode them.
fn tshark_fields(frames: &[Vec<u8>], fields: &[&str]) -> Vec<Vec<String>> {
    let path = std::env::temp_dir().join(format!("tandem-net-frames-{}.pcap", std::process::id()));
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = pcap_file::pcap::PcapWriter::new(file).unwrap();
        for frame in frames {
            let packet =
                pcap_file::pcap::PcapPacket::new(Duration::ZERO, frame.len() as u32, frame);
            writer.write_packet(&packet).unwrap();
        }
    }
    let mut argv = vec![
        "-r".to_owned(),
        path.display().to_string(),
        "-T".into(),
        "fields".into(),
    ];
    for field in fields {
        argv.push("-e".into());
        argv.push((*field).into());
    }
    let output = Command::new("tshark")
        .args(&argv)
        .output()
        .expect("tshark (Debian package tshark) is installed");
    std::fs::remove_file(&path).unwrap();
    assert!(
        output.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn tshark_decodes_our_frames_as_announcements_with_good_checksums() {
    let mac = MacAddr([0x00, 0x00, 0x5e, 0x00, 0x02, 51]);
    let frames = vec![
        gratuitous_arp(mac, Ipv4Addr::new(192, 0, 2, 100)).to_vec(),
        unsolicited_na(mac, "2001:db8::100".parse().unwrap(), false).to_vec(),
        unsolicited_na(mac, "2001:db8::101".parse().unwrap(), true).to_vec(),
    ];
    let rows = tshark_fields(
        &frames,
        &[
            "arp.isgratuitous",
            "arp.src.proto_ipv4",
            "ipv6.hlim",
            "icmpv6.type",
            "icmpv6.checksum.status",
            "icmpv6.nd.na.flag.r",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.flag.o",
            "icmpv6.nd.na.target_address",
            "icmpv6.opt.linkaddr",
        ],
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        matches!(rows[0][0].as_str(), "1" | "True"),
        "not gratuitous: {rows:?}"
    );
    assert_eq!(rows[0][1], "192.0.2.100");
    for (row, (target, router)) in rows[1..]
        .iter()
        .zip([("2001:db8::100", false), ("2001:db8::101", true)])
    {
        assert_eq!(row[2], "255", "{row:?}");
        assert_eq!(row[3], "136", "{row:?}");
        // Wireshark's checksum status: 0 bad, 1 good, 2 unverified.
        assert_eq!(row[4], "1", "checksum not verified as good: {row:?}");
        assert_eq!(matches!(row[5].as_str(), "1" | "True"), router, "{row:?}");
        assert!(matches!(row[6].as_str(), "0" | "False"), "{row:?}");
        assert!(matches!(row[7].as_str(), "1" | "True"), "{row:?}");
        assert_eq!(row[8], target);
        assert_eq!(row[9], "00:00:5e:00:02:33");
    }
}

#[tokio::test]
async fn a_garp_burst_reaches_the_peer_and_updates_its_arp_cache() {
    let lab = Lab::new();
    let vip = "192.0.2.100";
    lab.b
        .ip(&[
            "neigh", "replace", vip, "lladdr", STALE_MAC, "dev", "vb", "nud", "stale",
        ])
        .unwrap();
    assert_eq!(
        neighbour_mac(&lab.b, vip, "vb"),
        Some(STALE_MAC.parse().unwrap())
    );

    let a_mac = mac_of(&lab.a, "va");
    let netlink = lab.a.run(Netlink::open).unwrap().unwrap();
    let va = netlink.interface_by_name("va").await.unwrap();
    assert_eq!(va.mac, Some(a_mac));
    netlink
        .add_address(va.index, "192.0.2.100/24".parse().unwrap())
        .await
        .unwrap();
    let announcer = lab.a.run(|| Announcer::open(va.index)).unwrap().unwrap();
    let mut listener = FrameListener::open_in(&lab.b);
    // Listen while the burst is being sent, so that arrival times mean something.
    let listening = std::thread::spawn(move || {
        listener.collect(3, Duration::from_secs(5), |f| {
            is_garp(f) && f[6..12] == a_mac.0
        })
    });

    let frame = gratuitous_arp(a_mac, vip.parse().unwrap());
    let burst = Burst {
        count: 3,
        spacing: Duration::from_millis(50),
    };
    let started = std::time::Instant::now();
    announcer.send_burst(&[frame], burst).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "the burst took {:?}",
        started.elapsed()
    );

    let seen = listening.join().unwrap();
    assert_eq!(
        seen.len(),
        3,
        "the peer saw {} of 3 gratuitous ARPs",
        seen.len()
    );
    for (_, received) in &seen {
        assert_eq!(received.as_slice(), frame.as_slice());
    }
    let spread = seen[2].0 - seen[0].0;
    assert!(
        spread >= Duration::from_millis(80),
        "3 frames 50 ms apart arrived within {spread:?}"
    );

    let updated = wait_for(Duration::from_secs(3), || {
        neighbour_mac(&lab.b, vip, "vb").filter(|mac| *mac == a_mac)
    });
    assert_eq!(
        updated,
        Some(a_mac),
        "the peer's ARP cache still says {:?}",
        neighbour_mac(&lab.b, vip, "vb")
    );
}

#[tokio::test]
async fn an_unsolicited_na_reaches_the_peer_and_updates_its_neighbour_cache() {
    let lab = Lab::new();
    let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
    lab.b
        .ip(&[
            "-6",
            "neigh",
            "replace",
            &vip.to_string(),
            "lladdr",
            STALE_MAC,
            "dev",
            "vb",
            "nud",
            "stale",
        ])
        .unwrap();

    let a_mac = mac_of(&lab.a, "va");
    let netlink = lab.a.run(Netlink::open).unwrap().unwrap();
    let va = netlink.interface_by_name("va").await.unwrap();
    netlink
        .add_address(va.index, "2001:db8::100/64".parse().unwrap())
        .await
        .unwrap();
    let announcer = lab.a.run(|| Announcer::open(va.index)).unwrap().unwrap();
    let mut listener = FrameListener::open_in(&lab.b);

    let frames = tandem_net::announce::announcement_frames(a_mac, &[IpAddr::V6(vip)], false);
    announcer
        .send_burst(
            &frames,
            Burst {
                count: 2,
                spacing: Duration::ZERO,
            },
        )
        .await
        .unwrap();

    let is_our_na = |f: &[u8]| {
        f.len() == UNSOLICITED_NA_FRAME_LEN
            && f[12..14] == [0x86, 0xdd]
            && f[20] == 58
            && f[54] == 136
            && f[6..12] == a_mac.0
    };
    let seen = listener.collect(2, Duration::from_secs(5), is_our_na);
    assert_eq!(
        seen.len(),
        2,
        "the peer saw {} of 2 neighbour advertisements",
        seen.len()
    );
    assert_eq!(seen[0].1, frames[0]);
    assert_eq!(seen[0].1[21], 255, "hop limit");

    let updated = wait_for(Duration::from_secs(3), || {
        neighbour_mac(&lab.b, &vip.to_string(), "vb").filter(|mac| *mac == a_mac)
    });
    assert_eq!(
        updated,
        Some(a_mac),
        "the peer's neighbour cache still says {:?}",
        neighbour_mac(&lab.b, &vip.to_string(), "vb")
    );
}
