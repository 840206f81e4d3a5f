//! Raw VRRP sockets in two namespaces joined by a veth: what one sends, the other
//! receives, with the source, destination, TTL and interface the kernel saw.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::{A_V4, B_V4, Lab, ifindex_of, link_local_of};
use socket2::{Domain, Protocol, Socket, Type};
use tandem_net::vrrp_socket::{Malformed, RecvError, VRRP_GROUP_V4, VRRP_GROUP_V6};
use tandem_net::{Delivery, IpFamily, Received, VrrpSocket, VrrpSocketOptions};
use tokio::time::timeout;

/// A VRRPv3 advert's bytes (the socket passes them through untouched).
fn advert(tag: u8) -> Vec<u8> {
    vec![
        0x31, 51, 200, 1, 0x00, 0x64, 0x00, 0x00, 192, 0, 2, 254, tag,
    ]
}

fn open(
    lab_ns: &tandem_net::netns::NetnsGuard,
    dev: &str,
    family: IpFamily,
    delivery: Delivery,
) -> VrrpSocket {
    lab_ns
        .run(|| {
            VrrpSocket::open(
                dev,
                family,
                VrrpSocketOptions {
                    delivery,
                    source: None,
                },
            )
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("open VRRP socket on {dev}: {e}"))
}

/// Send `payload` to `dst` until the receiver gets something (the first packets can race
/// the link coming up), and return what it got.
async fn exchange(
    sender: &VrrpSocket,
    receiver: &VrrpSocket,
    payload: &[u8],
    dst: IpAddr,
) -> Received {
    for _ in 0..25 {
        sender.send_to(payload, dst).await.unwrap();
        match timeout(Duration::from_millis(200), receiver.recv()).await {
            Ok(received) => return received.unwrap(),
            Err(_) => continue,
        }
    }
    panic!("nothing received on {} for {dst}", receiver.interface());
}

#[tokio::test]
async fn ipv4_multicast_advert_arrives_with_ttl_255() {
    let lab = Lab::new();
    let sender = open(&lab.a, "va", IpFamily::V4, Delivery::Multicast);
    let receiver = open(&lab.b, "vb", IpFamily::V4, Delivery::Multicast);
    assert_eq!(sender.local_address(), A_V4.parse::<IpAddr>().unwrap());
    assert_eq!(sender.group(), IpAddr::V4(VRRP_GROUP_V4));

    let got = exchange(&sender, &receiver, &advert(1), sender.group()).await;
    assert_eq!(got.payload, advert(1));
    assert_eq!(got.src, A_V4.parse::<IpAddr>().unwrap());
    assert_eq!(got.dst, IpAddr::V4(VRRP_GROUP_V4));
    assert_eq!(got.ttl, 255);
    assert_eq!(got.ifindex, ifindex_of(&lab.b, "vb"));

    // The TTL is the one on the wire: a forged advert sent with TTL 64 is reported as such,
    // so the daemon can drop it (RFC 5798 §7.1).
    let forger = lab
        .a
        .run(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.bind_device(Some(b"va")).unwrap();
            s.set_multicast_ttl_v4(64).unwrap();
            s
        })
        .unwrap();
    forger
        .send_to(&advert(2), &SocketAddrV4::new(VRRP_GROUP_V4, 0).into())
        .unwrap();
    let forged = timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("no forged advert")
        .unwrap();
    assert_eq!(forged.payload, advert(2));
    assert_eq!(forged.ttl, 64);
}

#[tokio::test]
async fn ipv6_multicast_advert_arrives_with_hop_limit_255_from_the_link_local() {
    let lab = Lab::new();
    let a_link_local = link_local_of(&lab.a, "va");
    link_local_of(&lab.b, "vb");
    let sender = open(&lab.a, "va", IpFamily::V6, Delivery::Multicast);
    let receiver = open(&lab.b, "vb", IpFamily::V6, Delivery::Multicast);
    // RFC 5798 §5.1.2.1: the source of an IPv6 advert is the interface's link-local.
    assert_eq!(sender.local_address(), IpAddr::V6(a_link_local));

    let got = exchange(&sender, &receiver, &advert(3), sender.group()).await;
    assert_eq!(got.payload, advert(3));
    assert_eq!(got.src, IpAddr::V6(a_link_local));
    assert_eq!(got.dst, IpAddr::V6(VRRP_GROUP_V6));
    assert_eq!(got.ttl, 255);
    assert_eq!(got.ifindex, ifindex_of(&lab.b, "vb"));
}

#[tokio::test]
async fn ipv4_unicast_mode_hears_unicast_adverts_and_no_multicast_ones() {
    let lab = Lab::new();
    let sender = open(&lab.a, "va", IpFamily::V4, Delivery::Unicast);
    let receiver = open(&lab.b, "vb", IpFamily::V4, Delivery::Unicast);
    // Another virtual router of box B, in multicast mode: the group is joined on vb, so the
    // kernel accepts multicast adverts there. The unicast-mode socket still must not get
    // them (IP_MULTICAST_ALL off).
    let joined = open(&lab.b, "vb", IpFamily::V4, Delivery::Multicast);
    let peer: IpAddr = B_V4.parse().unwrap();

    for _ in 0..3 {
        sender
            .send_to(&advert(9), IpAddr::V4(VRRP_GROUP_V4))
            .await
            .unwrap();
    }
    let got = exchange(&sender, &receiver, &advert(4), peer).await;
    assert_eq!(
        got.payload,
        advert(4),
        "the multicast adverts were received"
    );
    assert_eq!(got.src, A_V4.parse::<IpAddr>().unwrap());
    assert_eq!(got.dst, peer);
    assert_eq!(got.ttl, 255);
    // The multicast-mode socket did hear them (and the unicast one too: a unicast advert
    // to one of our addresses reaches every VRRP socket on the interface).
    let heard = timeout(Duration::from_secs(5), joined.recv())
        .await
        .expect("joined socket heard nothing")
        .unwrap();
    assert_eq!(heard.payload, advert(9));
}

#[tokio::test]
async fn ipv6_unicast_to_the_peer_link_local() {
    let lab = Lab::new();
    let a_link_local = link_local_of(&lab.a, "va");
    let b_link_local = link_local_of(&lab.b, "vb");
    let sender = open(&lab.a, "va", IpFamily::V6, Delivery::Unicast);
    let receiver = open(&lab.b, "vb", IpFamily::V6, Delivery::Unicast);

    let got = exchange(&sender, &receiver, &advert(5), IpAddr::V6(b_link_local)).await;
    assert_eq!(got.payload, advert(5));
    assert_eq!(got.src, IpAddr::V6(a_link_local));
    assert_eq!(got.dst, IpAddr::V6(b_link_local));
    assert_eq!(got.ttl, 255);
}

#[tokio::test]
async fn a_short_packet_is_reported_as_malformed_and_the_socket_goes_on() {
    let lab = Lab::new();
    let receiver = open(&lab.b, "vb", IpFamily::V4, Delivery::Unicast);
    let raw = lab
        .a
        .run(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.bind_device(Some(b"va")).unwrap();
            s
        })
        .unwrap();
    let peer = SocketAddrV4::new(B_V4.parse::<Ipv4Addr>().unwrap(), 0);
    raw.send_to(&[0x31, 51, 200], &peer.into()).unwrap();
    let error = timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("nothing received")
        .unwrap_err();
    assert!(
        matches!(
            error,
            RecvError::Malformed(Malformed::ShortPayload { len: 3 })
        ),
        "unexpected {error:?}"
    );
    raw.send_to(&advert(6), &peer.into()).unwrap();
    let good = timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("nothing received")
        .unwrap();
    assert_eq!(good.payload, advert(6));
}

#[tokio::test]
async fn opening_fails_cleanly_without_an_interface_or_an_address() {
    let lab = Lab::with(common::LabOptions {
        addresses: false,
        ..Default::default()
    });
    let missing = lab
        .a
        .run(|| VrrpSocket::open("nosuch0", IpFamily::V4, VrrpSocketOptions::default()))
        .unwrap();
    assert!(matches!(
        missing,
        Err(tandem_net::vrrp_socket::VrrpSocketError::NoSuchInterface(_))
    ));
    let no_v4 = lab
        .a
        .run(|| VrrpSocket::open("va", IpFamily::V4, VrrpSocketOptions::default()))
        .unwrap();
    assert!(matches!(
        no_v4,
        Err(tandem_net::vrrp_socket::VrrpSocketError::NoLocalAddress { .. })
    ));
    let bad_name = lab
        .a
        .run(|| VrrpSocket::open("../etc", IpFamily::V4, VrrpSocketOptions::default()))
        .unwrap();
    assert!(matches!(
        bad_name,
        Err(tandem_net::vrrp_socket::VrrpSocketError::InvalidName(_))
    ));
}
