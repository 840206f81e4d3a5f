//! What goes on the wire, checked by tshark: VRRPv3 adverts with a correct checksum,
//! unicast adverts to the peer, IPv6 routers with NODAD VIPs and unsolicited NAs; and
//! adverts from an unknown source are dropped.

mod common;

use std::time::Duration;

use common::*;
use tandem_ha::{Role, RouterState};

#[test]
fn tshark_decodes_our_adverts_as_vrrpv3_with_a_good_checksum() {
    let lab = Lab::new(1);
    let capture = Capture::start(
        &lab.boxes[0],
        "eth0",
        "ip proto 112",
        &[
            "ip.src",
            "ip.dst",
            "ip.ttl",
            "vrrp.version",
            "vrrp.type",
            "vrrp.virt_rtr_id",
            "vrrp.prio",
            "vrrp.addr_count",
            "vrrp.checksum.status",
            "vrrp.ip_addr",
        ],
        5,
        20,
    );
    let a = lab.start(
        0,
        config(router(51, 150, 100, &["192.0.2.100/24", "192.0.2.101/24"])),
    );
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    let lines = capture.lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for l in &lines {
        // checksum.status 1 = good (0 bad, 2 unverified).
        assert_eq!(
            l[..9],
            [
                "192.0.2.1",
                "224.0.0.18",
                "255",
                "3",
                "1",
                "51",
                "150",
                "2",
                "1"
            ],
            "{l:?}"
        );
        assert_eq!(l[9..], ["192.0.2.100", "192.0.2.101"], "{l:?}");
    }
}

#[test]
fn unicast_peers_get_the_adverts_and_elect_alike() {
    let lab = Lab::new(2);
    let mut ra = router(51, 200, 20, &["192.0.2.100/24"]);
    ra.unicast = true;
    ra.peers = vec![box_ip(1).parse().unwrap()];
    let mut rb = router(51, 100, 20, &["192.0.2.100/24"]);
    rb.unicast = true;
    rb.peers = vec![box_ip(0).parse().unwrap()];
    let capture = Capture::start(
        &lab.boxes[0],
        "eth0",
        "ip proto 112",
        &["ip.dst", "vrrp.checksum.status"],
        3,
        20,
    );
    let a = lab.start(0, config(ra));
    let b = lab.start(1, config(rb));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    stays(
        &b,
        Role::Passive,
        Duration::from_millis(300),
        "B hears A by unicast",
    );
    assert!(b.status().router("front").unwrap().adverts_received > 5);
    let lines = capture.lines();
    assert!(!lines.is_empty(), "no advert captured");
    for l in lines {
        assert_eq!(
            l,
            ["192.0.2.2", "1"],
            "adverts go to the peer, not to 224.0.0.18"
        );
    }
    // The backup takes over when the unicast adverts stop.
    lab.set_link(0, false);
    drop(a);
    wait_role(
        &b,
        Role::Active,
        3 * master_down(100, 20) + Duration::from_millis(100),
        "B",
    );
}

#[test]
fn adverts_from_a_source_that_is_not_a_peer_are_dropped() {
    let lab = Lab::new(3);
    let mut ra = router(51, 150, 20, &["192.0.2.100/24"]);
    ra.peers = vec![box_ip(1).parse().unwrap()];
    let mut rb = router(51, 100, 20, &["192.0.2.100/24"]);
    rb.peers = vec![box_ip(0).parse().unwrap()];
    let a = lab.start(0, config(ra));
    let b = lab.start(1, config(rb));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    wait_role(&b, Role::Passive, Duration::from_secs(3), "B");
    // A rogue router with the same VRID and a higher priority.
    let c = lab.start(2, config(router(51, 250, 20, &["192.0.2.100/24"])));
    wait_role(&c, Role::Active, Duration::from_secs(3), "the rogue C");
    stays(&a, Role::Active, Duration::from_millis(300), "A ignores C");
    let dropped = |h: &tandem_ha::HaHandle| {
        let s = h.status();
        let r = s.router("front").unwrap();
        r.drops
            .iter()
            .find(|(k, _)| k == "unknown_source")
            .unwrap()
            .1
    };
    assert!(dropped(&a) > 5, "{:#?}", a.status());
    assert!(dropped(&b) > 5, "{:#?}", b.status());
    assert_eq!(
        b.status().router("front").unwrap().master,
        Some(box_ip(0).parse().unwrap())
    );
}

#[test]
fn an_ipv6_router_adds_nodad_vips_and_sends_unsolicited_nas() {
    let lab = Lab::new(2);
    let vips = ["fe80::51/64", "2001:db8::100/64"];
    let b = lab.start(1, config(router(51, 100, 20, &vips)));
    wait_role(&b, Role::Active, Duration::from_secs(3), "B alone");
    // Watch A's announcements from B's side.
    let capture = Capture::start(
        &lab.boxes[1],
        "eth0",
        "icmp6 and ip6[40] == 136",
        &[
            "ipv6.src",
            "ipv6.hlim",
            "icmpv6.nd.na.flag.r",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.flag.o",
            "icmpv6.nd.na.target_address",
            "icmpv6.checksum.status",
        ],
        2,
        20,
    );
    let a_ll = lab.link_local(0).to_string();
    let adverts = Capture::start(
        &lab.boxes[1],
        "eth0",
        &format!("ip6 proto 112 and src host {a_ll}"),
        &[
            "ipv6.src",
            "ipv6.dst",
            "ipv6.hlim",
            "vrrp.version",
            "vrrp.prio",
            "vrrp.checksum.status",
            "vrrp.ipv6_addr",
        ],
        3,
        20,
    );
    let a = lab.start(0, config(router(51, 200, 20, &vips)));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A preempting");
    wait_role(&b, Role::Passive, Duration::from_secs(1), "B");
    let out = lab.boxes[0]
        .ip(&["-6", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    let vip_line = out
        .lines()
        .find(|l| l.contains("2001:db8::100/64"))
        .expect("VIP on A");
    assert!(
        vip_line.contains("nodad") && !vip_line.contains("tentative"),
        "{vip_line}"
    );
    assert!(out.contains("fe80::51/64"), "{out}");
    assert!(lab.lacks_address(1, "2001:db8::100"));
    let nas = capture.lines();
    assert!(!nas.is_empty(), "no unsolicited NA seen");
    for l in &nas {
        // From the VIP itself, hop limit 255, Router and Override set, Solicited clear.
        assert_eq!(l[1..5], ["255", "1", "0", "1"], "{l:?}");
        assert_eq!(l[0], l[5], "sent from the VIP it announces: {l:?}");
        assert_eq!(l[6], "1", "checksum: {l:?}");
    }
    let adverts = adverts.lines();
    assert!(!adverts.is_empty(), "no advert of A captured");
    for l in adverts {
        assert_eq!(
            l[..6],
            [a_ll.as_str(), "ff02::12", "255", "3", "200", "1"],
            "{l:?}"
        );
        // RFC 5798 §5.2.9: the link-local address first.
        assert_eq!(l[6..], ["fe80::51", "2001:db8::100"], "{l:?}");
    }
    assert_eq!(
        a.status().router("front").unwrap().state,
        RouterState::Master
    );
}

#[test]
fn an_ipv6_router_whose_link_is_down_at_start_starts_once_it_is_up() {
    let lab = Lab::new(1);
    // Down, eth0 loses its link-local address: nothing to advertise from yet.
    lab.set_link(0, false);
    let a = lab.start(
        0,
        config(router(51, 150, 20, &["fe80::51/64", "2001:db8::100/64"])),
    );
    stays(
        &a,
        Role::Passive,
        Duration::from_millis(300),
        "A without a link",
    );
    assert!(a.status().routers.is_empty(), "{:#?}", a.status());
    lab.set_link(0, true);
    wait_role(
        &a,
        Role::Active,
        Duration::from_secs(5),
        "A once its link is up",
    );
    assert!(lab.has_address(0, "2001:db8::100"));
}

#[test]
fn bad_packets_are_dropped_and_counted_by_reason_never_acted_on() {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{IpAddr, SocketAddr};
    use tandem_vrrp::Advert;

    let lab = Lab::new(2);
    let a = lab.start(0, config(router(51, 150, 20, &["192.0.2.100/24"])));
    wait_role(&a, Role::Active, Duration::from_secs(3), "A");
    let socket = lab.boxes[1]
        .run(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))))
        .unwrap()
        .unwrap();
    socket.bind_device(Some(b"eth0")).unwrap();
    let src: IpAddr = box_ip(1).parse().unwrap();
    let group: IpAddr = "224.0.0.18".parse().unwrap();
    let to = SocketAddr::new(group, 0).into();
    let advert = |vrid, priority| {
        let mut buffer = [0u8; 64];
        let advert = Advert {
            vrid,
            priority,
            max_advert_interval: Duration::from_millis(20),
            addresses: vec![VIP.parse().unwrap()],
        };
        let len = advert.encode(src, group, &mut buffer).unwrap();
        buffer[..len].to_vec()
    };
    let send = |bytes: &[u8], ttl: u32| {
        socket.set_multicast_ttl_v4(ttl).unwrap();
        socket.send_to(bytes, &to).unwrap();
    };
    // A would-be better Master, but routed (TTL 64): it must not displace A.
    send(&advert(51, 254), 64);
    let mut bad_checksum = advert(51, 254);
    bad_checksum[7] ^= 0xff;
    send(&bad_checksum, 255);
    // The header says one address, none follows.
    send(&advert(51, 254)[..8], 255);
    let mut version2 = advert(51, 254);
    version2[0] = 0x21;
    send(&version2, 255);
    // Another VRID: none of A's routers.
    send(&advert(99, 254), 255);
    let counts = wait_for(Duration::from_secs(3), || {
        let status = a.status();
        let drops = status.router("front").unwrap().drops.clone();
        let get = |k: &str| drops.iter().find(|(r, _)| r == k).map_or(0, |(_, n)| *n);
        let unattributed = status
            .unattributed_drops
            .iter()
            .find(|(r, _)| r == "vrid_mismatch")
            .map_or(0, |(_, n)| *n);
        let counts = [
            get("ttl_not_255"),
            get("bad_checksum"),
            get("truncated"),
            get("bad_version"),
            unattributed,
        ];
        counts.iter().all(|n| *n >= 1).then_some(counts)
    })
    .unwrap_or_else(|| panic!("drops not counted: {:#?}", a.status()));
    assert_eq!(counts, [1, 1, 1, 1, 1]);
    stays(
        &a,
        Role::Active,
        Duration::from_millis(200),
        "A, untouched by bad packets",
    );
    // Initialize -> Backup -> Master, and nothing since.
    assert_eq!(a.status().router("front").unwrap().transitions, 2);
}
