//! The netns test support itself: code runs inside the namespace, and guards clean up.

use tandem_net::netns::{NetnsError, NetnsGuard, run_in_netns};

fn interface_names() -> Vec<String> {
    let mut names: Vec<String> = nix::ifaddrs::getifaddrs()
        .unwrap()
        .map(|a| a.interface_name)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn a_closure_runs_inside_the_namespace_and_the_caller_stays_outside() {
    let ns = NetnsGuard::create("tn").expect("create a namespace");
    ns.ip(&[
        "link", "add", "inside0", "type", "veth", "peer", "name", "inside1",
    ])
    .unwrap();
    let inside = ns.run(interface_names).unwrap();
    assert_eq!(inside, ["inside0", "inside1", "lo"]);
    assert!(!interface_names().iter().any(|n| n.starts_with("inside")));
    // Borrowing from the caller is fine: the thread is scoped.
    let wanted = String::from("inside0");
    assert!(ns.run(|| interface_names().contains(&wanted)).unwrap());
}

#[test]
fn dropping_the_guard_deletes_the_namespace() {
    let ns = NetnsGuard::create("tn").unwrap();
    let name = ns.name().to_owned();
    assert!(std::path::Path::new("/var/run/netns").join(&name).exists());
    drop(ns);
    assert!(!std::path::Path::new("/var/run/netns").join(&name).exists());
    assert!(matches!(
        run_in_netns(&name, || ()),
        Err(NetnsError::Open { .. })
    ));
}

#[test]
fn the_namespace_is_deleted_when_a_test_panics() {
    let mut name = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = NetnsGuard::create("tn").unwrap();
        name = ns.name().to_owned();
        ns.run(|| panic!("a failing test")).unwrap();
    }));
    assert!(result.is_err());
    assert!(!name.is_empty());
    assert!(!std::path::Path::new("/var/run/netns").join(&name).exists());
}

#[test]
fn names_are_unique_per_call() {
    let a = NetnsGuard::create("tn").unwrap();
    let b = NetnsGuard::create("tn").unwrap();
    assert_ne!(a.name(), b.name());
    assert!(a.name().contains(&std::process::id().to_string()));
}
