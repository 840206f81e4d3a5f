//! Gateway reachability: B plays the gateway for A, over ICMP echo (v4, v6) and ARP.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{B_V4, B_V6, Lab, ifindex_of, link_local_of, mac_of};
use tandem_net::IpFamily;
use tandem_net::gateway_probe::{ArpProbe, IcmpProbe, ProbeError, ProbeOutcome, Unreachable};

const TIMEOUT: Duration = Duration::from_millis(500);

fn icmp(lab: &Lab, family: IpFamily) -> IcmpProbe {
    lab.a
        .run(|| IcmpProbe::open(family, Some("va")))
        .unwrap()
        .expect("raw ICMP socket")
}

#[tokio::test]
async fn icmp_echo_reachable_and_unreachable_ipv4() {
    let lab = Lab::new();
    let probe = icmp(&lab, IpFamily::V4);
    let outcome = probe
        .probe(B_V4.parse().unwrap(), Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        matches!(outcome, ProbeOutcome::Reachable { mac: None, .. }),
        "{outcome:?}"
    );
    // Several in a row (the sequence number advances, stale replies are ignored).
    for _ in 0..3 {
        assert!(
            probe
                .probe(B_V4.parse().unwrap(), TIMEOUT)
                .await
                .unwrap()
                .is_reachable()
        );
    }
    // Nobody at .99 on the link: no reply within the timeout.
    let outcome = probe
        .probe("192.0.2.99".parse().unwrap(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ProbeOutcome::Unreachable(Unreachable::Timeout(TIMEOUT))
    );
    // B drops echo requests: the gateway is alive but does not answer ICMP.
    lab.sysctl(&lab.b, "net/ipv4/icmp_echo_ignore_all", "1");
    let outcome = probe.probe(B_V4.parse().unwrap(), TIMEOUT).await.unwrap();
    assert!(!outcome.is_reachable(), "{outcome:?}");
}

#[tokio::test]
async fn icmp_echo_reachable_and_unreachable_ipv6() {
    let lab = Lab::new();
    let probe = icmp(&lab, IpFamily::V6);
    let outcome = probe
        .probe(B_V6.parse().unwrap(), Duration::from_secs(3))
        .await
        .unwrap();
    assert!(outcome.is_reachable(), "{outcome:?}");
    // A link-local gateway, as IPv6 routers usually are (RFC 4861 §4.2).
    let gateway = IpAddr::V6(link_local_of(&lab.b, "vb"));
    assert!(
        probe
            .probe(gateway, Duration::from_secs(3))
            .await
            .unwrap()
            .is_reachable()
    );
    let outcome = probe
        .probe("2001:db8::99".parse().unwrap(), TIMEOUT)
        .await
        .unwrap();
    assert!(!outcome.is_reachable(), "{outcome:?}");
    // Asking an IPv6 probe about an IPv4 gateway is a caller error, not "unreachable".
    assert!(matches!(
        probe.probe(B_V4.parse().unwrap(), TIMEOUT).await,
        Err(ProbeError::WrongFamily { .. })
    ));
}

#[tokio::test]
async fn arp_probe_reachable_and_unreachable() {
    let lab = Lab::new();
    let va = ifindex_of(&lab.a, "va");
    let probe = lab
        .a
        .run(|| ArpProbe::open(va, mac_of(&lab.a, "va")))
        .unwrap()
        .unwrap();
    // As an RFC 5227 probe (sender 0.0.0.0) and as a plain request.
    for sender in [None, Some("192.0.2.1".parse().unwrap())] {
        let outcome = probe
            .probe(sender, B_V4.parse().unwrap(), Duration::from_secs(3))
            .await
            .unwrap();
        match outcome {
            ProbeOutcome::Reachable { mac, .. } => assert_eq!(mac, Some(mac_of(&lab.b, "vb"))),
            other => panic!("gateway not reached with sender {sender:?}: {other:?}"),
        }
    }
    let outcome = probe
        .probe(None, "192.0.2.99".parse().unwrap(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ProbeOutcome::Unreachable(Unreachable::Timeout(TIMEOUT))
    );
    // ARP still works where ICMP is filtered.
    lab.sysctl(&lab.b, "net/ipv4/icmp_echo_ignore_all", "1");
    assert!(
        probe
            .probe(None, B_V4.parse().unwrap(), Duration::from_secs(3))
            .await
            .unwrap()
            .is_reachable()
    );
    // The link goes down: the gateway is gone.
    lab.b.ip(&["link", "set", "dev", "vb", "down"]).unwrap();
    let outcome = probe
        .probe(None, B_V4.parse().unwrap(), TIMEOUT)
        .await
        .unwrap();
    assert!(!outcome.is_reachable(), "{outcome:?}");
}
