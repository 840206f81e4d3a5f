//! The link watch sees an interface go down and up, by admin action and by losing carrier.

mod common;

use std::time::Duration;

use common::{Lab, ifindex_of};
use tandem_net::{LinkEvent, LinkWatch, Netlink};
use tokio::time::timeout;

/// The next event about `ifindex`, skipping others (lo, the peer's namespace is separate).
async fn next_for(watch: &mut LinkWatch, ifindex: u32) -> LinkEvent {
    loop {
        let event = timeout(Duration::from_secs(5), watch.next_event())
            .await
            .expect("no link event within 5 s")
            .expect("the watch ended");
        if event.ifindex() == ifindex {
            return event;
        }
    }
}

#[tokio::test]
async fn sees_admin_down_and_up_and_carrier_loss() {
    let lab = Lab::new();
    let va = ifindex_of(&lab.a, "va");
    // Subscribe first, then read the current state: no change can fall in between.
    let mut watch = lab
        .a
        .run(LinkWatch::open)
        .unwrap()
        .expect("subscribe to RTNLGRP_LINK");
    let netlink = lab.a.run(Netlink::open).unwrap().unwrap();
    assert!(netlink.interface_by_index(va).await.unwrap().status.is_up());

    lab.a.ip(&["link", "set", "dev", "va", "down"]).unwrap();
    let down = next_for(&mut watch, va).await;
    assert!(!down.is_up(), "{down:?}");
    assert_eq!(down.name(), "va");
    match &down {
        LinkEvent::Changed { status, .. } => assert!(!status.admin_up),
        other => panic!("unexpected {other:?}"),
    }

    lab.a.ip(&["link", "set", "dev", "va", "up"]).unwrap();
    let up = next_for(&mut watch, va).await;
    assert!(up.is_up(), "{up:?}");

    // The far end goes down: va stays admin-up but loses carrier.
    lab.b.ip(&["link", "set", "dev", "vb", "down"]).unwrap();
    let carrier_lost = next_for(&mut watch, va).await;
    match &carrier_lost {
        LinkEvent::Changed { status, .. } => {
            assert!(
                status.admin_up && !status.lower_up && !status.is_up(),
                "{status:?}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }

    // Deleting the veth is reported as a removal.
    lab.a.ip(&["link", "del", "dev", "va"]).unwrap();
    let removed = next_for(&mut watch, va).await;
    assert_eq!(
        removed,
        LinkEvent::Removed {
            ifindex: va,
            name: "va".into()
        }
    );
}

#[tokio::test]
async fn repeated_changes_that_keep_the_verdict_are_not_reported() {
    let lab = Lab::new();
    let va = ifindex_of(&lab.a, "va");
    let mut watch = lab.a.run(LinkWatch::open).unwrap().unwrap();
    // An MTU change sends an RTM_NEWLINK but leaves the link up.
    lab.a
        .ip(&["link", "set", "dev", "va", "mtu", "1400"])
        .unwrap();
    let first = next_for(&mut watch, va).await;
    assert!(
        first.is_up(),
        "the first report of an interface is always given"
    );
    lab.a
        .ip(&["link", "set", "dev", "va", "mtu", "1300"])
        .unwrap();
    lab.a.ip(&["link", "set", "dev", "va", "down"]).unwrap();
    let next = next_for(&mut watch, va).await;
    assert!(!next.is_up(), "the MTU change was reported: {next:?}");
}
