//! The virtual MAC macvlan: created with the RFC 5798 §7.3 MAC in private mode, without
//! IPv6 address generation, with keepalived's sysctls; reused, recreated, deleted; and a
//! VIP on it is answered for with the virtual MAC.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Lab, ifindex_of, ip_json, link_json, neighbour_mac};
use tandem_net::gateway_probe::IcmpProbe;
use tandem_net::macvlan::{apply_vmac_settings, virtual_mac};
use tandem_net::sysctl::Sysctl;
use tandem_net::{Change, InterfaceName, IpFamily, Netlink, NetlinkError};

#[tokio::test]
async fn an_ipv4_virtual_mac_macvlan() {
    let lab = Lab::new();
    let netlink = lab.a.run(Netlink::open).unwrap().unwrap();
    let parent = ifindex_of(&lab.a, "va");
    let name = InterfaceName::new("vr4-51").unwrap();
    let vmac = virtual_mac(IpFamily::V4, 51);

    let created = netlink.create_macvlan(&name, parent, vmac).await.unwrap();
    assert_eq!(created.mac, Some(vmac));
    assert_eq!(created.link, Some(parent));
    assert_eq!(created.kind.as_deref(), Some("macvlan"));
    assert!(created.status.admin_up);

    let shown = link_json(&lab.a, "vr4-51");
    assert_eq!(shown["address"], "00:00:5e:00:01:33");
    assert_eq!(shown["link"], "va");
    assert_eq!(shown["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(shown["linkinfo"]["info_data"]["mode"], "private");
    assert_eq!(shown["inet6_addr_gen_mode"], "none");
    assert!(
        shown["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{shown}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v6 = ip_json(&lab.a, &["-6", "addr", "show", "dev", "vr4-51"]);
    let v6_addresses = v6.as_array().map(|a| {
        a.iter()
            .filter(|i| {
                i["addr_info"]
                    .as_array()
                    .is_some_and(|x| x.iter().any(|y| y.get("local").is_some()))
            })
            .count()
    });
    assert_eq!(
        v6_addresses.unwrap_or(0),
        0,
        "the macvlan got IPv6 addresses: {v6}"
    );

    // keepalived's sysctls, set from inside the namespace.
    let parent_name = InterfaceName::new("va").unwrap();
    let restore = lab
        .a
        .run(|| apply_vmac_settings(&Sysctl::new(), &name, &parent_name, IpFamily::V4))
        .unwrap()
        .unwrap();
    for (path, value) in [
        ("net/ipv4/conf/vr4-51/arp_ignore", "1"),
        ("net/ipv4/conf/vr4-51/accept_local", "1"),
        ("net/ipv4/conf/vr4-51/rp_filter", "0"),
        ("net/ipv4/conf/vr4-51/promote_secondaries", "1"),
        ("net/ipv6/conf/vr4-51/disable_ipv6", "1"),
        ("net/ipv4/conf/va/arp_ignore", "1"),
        ("net/ipv4/conf/va/arp_filter", "1"),
        ("net/ipv4/conf/va/arp_announce", "2"),
    ] {
        assert_eq!(lab.read_sysctl(&lab.a, path), value, "{path}");
    }

    // A VIP on the macvlan is answered for with the virtual MAC, not the parent's.
    netlink
        .add_address(created.index, "192.0.2.100/32".parse().unwrap())
        .await
        .unwrap();
    let probe = lab
        .b
        .run(|| IcmpProbe::open(IpFamily::V4, Some("vb")))
        .unwrap()
        .unwrap();
    let outcome = probe
        .probe("192.0.2.100".parse().unwrap(), Duration::from_secs(3))
        .await
        .unwrap();
    assert!(outcome.is_reachable(), "{outcome:?}");
    assert_eq!(neighbour_mac(&lab.b, "192.0.2.100", "vb"), Some(vmac));
    // … and stays so: the reply left through the parent, whose ARP for B must not claim
    // the VIP (arp_announce=2 on the parent).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(neighbour_mac(&lab.b, "192.0.2.100", "vb"), Some(vmac));
    // The parent's own address is still answered for with the parent's MAC.
    let outcome = probe
        .probe("192.0.2.1".parse().unwrap(), Duration::from_secs(3))
        .await
        .unwrap();
    assert!(outcome.is_reachable(), "{outcome:?}");
    assert_eq!(
        neighbour_mac(&lab.b, "192.0.2.1", "vb"),
        Some(common::mac_of(&lab.a, "va"))
    );

    // Same spec again: reused as it is.
    let again = netlink.create_macvlan(&name, parent, vmac).await.unwrap();
    assert_eq!(again.index, created.index);

    // The parent's settings go back to what they were.
    lab.a
        .run(|| restore.restore(&Sysctl::new()))
        .unwrap()
        .unwrap();
    assert_eq!(lab.read_sysctl(&lab.a, "net/ipv4/conf/va/arp_ignore"), "0");
    assert_eq!(lab.read_sysctl(&lab.a, "net/ipv4/conf/va/arp_filter"), "0");
    assert_eq!(
        lab.read_sysctl(&lab.a, "net/ipv4/conf/va/arp_announce"),
        "0"
    );

    assert_eq!(
        netlink.delete_macvlan(&name).await.unwrap(),
        Change::Applied
    );
    assert!(lab.a.ip(&["link", "show", "dev", "vr4-51"]).is_err());
    assert_eq!(
        netlink.delete_macvlan(&name).await.unwrap(),
        Change::Unchanged
    );
}

#[tokio::test]
async fn an_ipv6_virtual_mac_and_a_changed_spec_is_recreated() {
    let lab = Lab::new();
    let netlink = lab.a.run(Netlink::open).unwrap().unwrap();
    let parent = ifindex_of(&lab.a, "va");
    let name = InterfaceName::new("vr6-51").unwrap();

    let v4 = netlink
        .create_macvlan(&name, parent, virtual_mac(IpFamily::V4, 51))
        .await
        .unwrap();
    let v6 = netlink
        .create_macvlan(&name, parent, virtual_mac(IpFamily::V6, 51))
        .await
        .unwrap();
    assert_ne!(
        v4.index, v6.index,
        "a macvlan with the wrong MAC must be recreated"
    );
    assert_eq!(link_json(&lab.a, "vr6-51")["address"], "00:00:5e:00:02:33");

    let parent_name = InterfaceName::new("va").unwrap();
    lab.a
        .run(|| apply_vmac_settings(&Sysctl::new(), &name, &parent_name, IpFamily::V6))
        .unwrap()
        .unwrap();
    assert_eq!(
        lab.read_sysctl(&lab.a, "net/ipv6/conf/vr6-51/accept_ra"),
        "0"
    );
    assert_eq!(
        lab.read_sysctl(&lab.a, "net/ipv6/conf/vr6-51/disable_ipv6"),
        "0"
    );

    // An IPv6 router's loop gives the macvlan a link-local to send adverts from; NODAD
    // makes it usable at once.
    netlink
        .add_address(v6.index, "fe80::5e:2:33/64".parse().unwrap())
        .await
        .unwrap();
    let addresses = netlink.addresses(v6.index).await.unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.addr() == "fe80::5e:2:33".parse::<IpAddr>().unwrap() && !a.tentative)
    );
}

#[tokio::test]
async fn never_touches_an_interface_that_is_not_a_macvlan() {
    let lab = Lab::new();
    let netlink = lab.a.run(Netlink::open).unwrap().unwrap();
    let parent = ifindex_of(&lab.a, "va");
    let va = InterfaceName::new("va").unwrap();
    let created = netlink
        .create_macvlan(&va, parent, virtual_mac(IpFamily::V4, 1))
        .await;
    assert!(
        matches!(created, Err(NetlinkError::NotOurInterface { .. })),
        "{created:?}"
    );
    let deleted = netlink.delete_macvlan(&va).await;
    assert!(
        matches!(deleted, Err(NetlinkError::NotOurInterface { .. })),
        "{deleted:?}"
    );
    assert_eq!(link_json(&lab.a, "va")["linkinfo"]["info_kind"], "veth");
}
