//! VIP add/remove/list through netlink, and interface lookups, checked against `ip`.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};

use common::{Lab, LabOptions, ifindex_of, ip_json, mac_of, wait_for};
use ipnet::IpNet;
use tandem_net::netns::NetnsGuard;
use tandem_net::{Change, Netlink, NetlinkError, OperState};

fn netlink_in(ns: &NetnsGuard) -> Netlink {
    ns.run(Netlink::open).unwrap().expect("netlink socket")
}

/// The addresses `ip` shows on `dev`, as (address/prefix, flags) pairs.
fn ip_addresses(ns: &NetnsGuard, dev: &str) -> Vec<(IpNet, serde_json::Value)> {
    let json = ip_json(ns, &["addr", "show", "dev", dev]);
    json[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| {
            let net = format!(
                "{}/{}",
                a.get("local")?.as_str()?,
                a.get("prefixlen")?.as_u64()?
            );
            Some((net.parse().unwrap(), a.clone()))
        })
        .collect()
}

fn has(ns: &NetnsGuard, dev: &str, net: &str) -> bool {
    let net: IpNet = net.parse().unwrap();
    ip_addresses(ns, dev).iter().any(|(n, _)| *n == net)
}

#[tokio::test]
async fn ipv4_vip_add_and_remove_are_idempotent() {
    let lab = Lab::new();
    let netlink = netlink_in(&lab.a);
    let va = netlink.interface_by_name("va").await.unwrap().index;
    let vip: IpNet = "192.0.2.100/24".parse().unwrap();

    assert_eq!(netlink.add_address(va, vip).await.unwrap(), Change::Applied);
    assert!(has(&lab.a, "va", "192.0.2.100/24"));
    assert_eq!(
        netlink.add_address(va, vip).await.unwrap(),
        Change::Unchanged
    );
    let listed = netlink.addresses(va).await.unwrap();
    let entry = listed.iter().find(|a| a.net == vip).expect("listed");
    assert!(
        entry.secondary,
        "a second address of 192.0.2.0/24 is a secondary"
    );
    assert!(
        listed
            .iter()
            .any(|a| a.net == "192.0.2.1/24".parse::<IpNet>().unwrap())
    );

    assert_eq!(
        netlink.remove_address(va, vip).await.unwrap(),
        Change::Applied
    );
    assert!(!has(&lab.a, "va", "192.0.2.100/24"));
    assert_eq!(
        netlink.remove_address(va, vip).await.unwrap(),
        Change::Unchanged
    );

    // Present with another prefix length: removed all the same.
    lab.a
        .ip(&["addr", "add", "192.0.2.101/32", "dev", "va"])
        .unwrap();
    assert_eq!(
        netlink
            .remove_address(va, "192.0.2.101/24".parse().unwrap())
            .await
            .unwrap(),
        Change::Applied
    );
    assert!(!has(&lab.a, "va", "192.0.2.101/32"));
    // The interface's own address was never touched.
    assert!(has(&lab.a, "va", "192.0.2.1/24"));
}

#[tokio::test]
async fn ipv6_vip_is_usable_at_once_thanks_to_nodad() {
    // DAD on: an address added without NODAD stays tentative for a second or more.
    let lab = Lab::with(LabOptions {
        dad: true,
        ..Default::default()
    });
    assert_eq!(lab.read_sysctl(&lab.a, "net/ipv6/conf/va/accept_dad"), "1");
    let netlink = netlink_in(&lab.a);
    let va = netlink.interface_by_name("va").await.unwrap().index;
    wait_for(std::time::Duration::from_secs(5), || {
        netlink_status_up(&lab.a, "va").then_some(())
    })
    .expect("va up with carrier");

    // The control: `ip addr add` without nodad is tentative, and cannot be bound.
    lab.a
        .ip(&["addr", "add", "2001:db8::11/64", "dev", "va"])
        .unwrap();
    let vip: IpNet = "2001:db8::10/64".parse().unwrap();
    assert_eq!(netlink.add_address(va, vip).await.unwrap(), Change::Applied);

    let shown = ip_addresses(&lab.a, "va");
    let control = &shown
        .iter()
        .find(|(n, _)| n.to_string() == "2001:db8::11/64")
        .unwrap()
        .1;
    assert_eq!(
        control["tentative"], true,
        "the control address should be tentative: {control}"
    );
    let ours = &shown.iter().find(|(n, _)| *n == vip).unwrap().1;
    assert!(
        ours.get("tentative").is_none(),
        "the VIP is tentative: {ours}"
    );
    assert_eq!(ours["nodad"], true);

    let listed = netlink.addresses(va).await.unwrap();
    let entry = listed.iter().find(|a| a.net == vip).unwrap();
    assert!(entry.no_dad && !entry.tentative && !entry.dad_failed);
    assert!(
        listed
            .iter()
            .find(|a| a.net.to_string() == "2001:db8::11/64")
            .unwrap()
            .tentative
    );

    // Usable means bindable: the kernel refuses to bind a tentative address.
    let (vip_bind, control_bind) = lab
        .a
        .run(|| {
            let vip_bind =
                UdpSocket::bind(SocketAddr::new("2001:db8::10".parse().unwrap(), 0)).map(drop);
            let control_bind =
                UdpSocket::bind(SocketAddr::new("2001:db8::11".parse().unwrap(), 0)).map(drop);
            (vip_bind, control_bind)
        })
        .unwrap();
    vip_bind.expect("the NODAD VIP is bindable at once");
    assert!(
        control_bind.is_err(),
        "the tentative control address was bindable"
    );

    assert_eq!(
        netlink.add_address(va, vip).await.unwrap(),
        Change::Unchanged
    );
    assert_eq!(
        netlink.remove_address(va, vip).await.unwrap(),
        Change::Applied
    );
    assert_eq!(
        netlink.remove_address(va, vip).await.unwrap(),
        Change::Unchanged
    );
    assert!(!has(&lab.a, "va", "2001:db8::10/64"));
}

fn netlink_status_up(ns: &NetnsGuard, dev: &str) -> bool {
    let link = common::link_json(ns, dev);
    link["operstate"] == "UP"
}

#[tokio::test]
async fn remove_stale_removes_the_vips_and_nothing_else() {
    let lab = Lab::new();
    // What a crashed predecessor left behind, with assorted prefix lengths.
    for vip in ["192.0.2.100/24", "192.0.2.101/32", "198.51.100.7/24"] {
        lab.a.ip(&["addr", "add", vip, "dev", "va"]).unwrap();
    }
    lab.a
        .ip(&["addr", "add", "2001:db8::100/64", "dev", "va", "nodad"])
        .unwrap();

    let netlink = netlink_in(&lab.a);
    let va = netlink.interface_by_name("va").await.unwrap().index;
    let vips: Vec<IpAddr> = [
        "192.0.2.100",
        "192.0.2.101",
        "2001:db8::100",
        "198.51.100.7",
        "192.0.2.200",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut removed = netlink.remove_stale(va, &vips).await.unwrap();
    removed.sort();
    let mut expected: Vec<IpNet> = [
        "192.0.2.100/24",
        "192.0.2.101/32",
        "198.51.100.7/24",
        "2001:db8::100/64",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    expected.sort();
    assert_eq!(removed, expected);

    let left: Vec<IpNet> = ip_addresses(&lab.a, "va")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for gone in &expected {
        assert!(!left.contains(gone), "{gone} is still there");
    }
    assert!(left.contains(&"192.0.2.1/24".parse().unwrap()));
    assert!(left.contains(&"2001:db8::1/64".parse().unwrap()));
    assert!(netlink.remove_stale(va, &vips).await.unwrap().is_empty());
}

#[tokio::test]
async fn interface_lookups_by_name_and_index() {
    let lab = Lab::new();
    let netlink = netlink_in(&lab.a);
    let va = netlink.interface_by_name("va").await.unwrap();
    assert_eq!(va.index, ifindex_of(&lab.a, "va"));
    assert_eq!(va.mac, Some(mac_of(&lab.a, "va")));
    assert_eq!(va.kind.as_deref(), Some("veth"));
    assert_eq!(va.mtu, Some(1500));
    assert!(va.status.admin_up);
    assert_eq!(netlink.interface_by_index(va.index).await.unwrap(), va);
    let all = netlink.interfaces().await.unwrap();
    assert!(all.iter().any(|i| i.name == "lo") && all.iter().any(|i| i.name == "va"));
    assert_eq!(all.len(), 2, "only this namespace's interfaces: {all:?}");

    assert!(matches!(
        netlink.interface_by_name("nosuch0").await,
        Err(NetlinkError::NoSuchInterfaceName(_))
    ));
    assert!(matches!(
        netlink.interface_by_index(9999).await,
        Err(NetlinkError::NoSuchInterfaceIndex(9999))
    ));
    assert!(matches!(
        netlink.interface_by_name("../x").await,
        Err(NetlinkError::InvalidName(_))
    ));

    // Up once the peer is up; down (lower layer) when the peer goes down.
    let mut up = None;
    for _ in 0..250 {
        let info = netlink.interface_by_name("va").await.unwrap();
        if info.status.is_up() {
            up = Some(info);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        up.expect("va never came up").status.oper_state,
        OperState::Up
    );
    lab.b.ip(&["link", "set", "dev", "vb", "down"]).unwrap();
    let down = netlink.interface_by_name("va").await.unwrap();
    // A veth whose peer is down has no carrier: operstate Down while still admin-up.
    assert!(down.status.admin_up && !down.status.lower_up && !down.status.is_up());
    assert_eq!(down.status.oper_state, OperState::Down);
}
