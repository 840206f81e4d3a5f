//! Arbitrary bytes as a received VRRP packet: the IPv4 and IPv6 packet splitters, the
//! advert decoder, receive validation and the state machine must never panic, and every
//! advert that decodes must re-encode to a packet that decodes to the same advert.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tandem_vrrp::{Advert, Config, Inbound, VirtualRouter, validate};

fn router(primary: &str, vip: &str) -> VirtualRouter {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut config = Config::new(1, ip(primary), vec![ip(vip)]);
    config.advert_interval = Duration::from_millis(10);
    VirtualRouter::new(config).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let inbounds = [
        Inbound::from_ipv4_packet(data),
        Inbound::from_ipv6_packet(data),
    ];
    for inbound in inbounds.into_iter().flatten() {
        let Ok(advert) = validate(&inbound) else {
            continue;
        };
        let mut out = vec![0; advert.encoded_len()];
        let len = advert
            .encode(inbound.source, inbound.destination, &mut out)
            .expect("a decoded advert encodes");
        assert_eq!(
            Advert::decode(&out[..len], inbound.source, inbound.destination),
            Ok(advert.clone())
        );
        let mut router = if inbound.source.is_ipv6() {
            router("fe80::2", "fe80::100")
        } else {
            router("10.0.0.2", "10.0.0.100")
        };
        router.startup(now);
        let _ = router.handle_advert(now, inbound.source, &advert);
        if let Some(deadline) = router.poll_timeout() {
            router.handle_timeout(deadline);
        }
        while router.poll_action().is_some() {}
    }
    let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
    let _ = Advert::decode(data, v4("10.0.0.1"), v4("224.0.0.18"));
    let _ = Advert::decode(data, v4("fe80::1"), v4("ff02::12"));
});
