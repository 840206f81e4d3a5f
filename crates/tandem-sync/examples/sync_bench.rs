//! `bench/sync.sh`: the sync link's figures, measured between two real endpoints over TCP and
//! TLS on loopback, each with a real dataplane (both in this process, on the same 2 cores —
//! so the figures are conservative against two boxes):
//!
//! 1. a snapshot of 1,000,000 persistence entries: time from its first frame until the
//!    passive acknowledged it installed, and bytes;
//! 2. lag while the active's dataplane pins 10,000 new clients per second for 10 s: the
//!    99th percentile of the time from a batch of pins made on the active until the passive
//!    holds it (and the writer's acknowledgement delays);
//! 3. delta throughput: 1,000,000 new pins as fast as the dataplane makes them, until the
//!    passive holds them all.
//!
//! The last line is `sync snapshot_1m_s=… deltas_per_s=… lag_p99_ms=…`.

#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_dataplane::{Dataplane, DataplaneOptions};
use tandem_sync::{Identity, MemoryStore, Role, SyncHandle, SyncLink, SyncSettings};
use tokio::sync::watch;

const SNAPSHOT: u32 = 1_000_000;
const DELTAS: u32 = 1_000_000;
const RATE: u32 = 10_000;
const LAG_SECONDS: u32 = 10;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn dataplane(name: &str) -> Dataplane {
    let yaml = format!(
        "schema: 1\nshared:\n  services:\n    - {{ name: web, listen: \"127.0.0.1:{}\", protocol: tcp, pool: p, persistence: {{ source: {{ timeout: 1h }} }} }}\n  pools:\n    - {{ name: p, servers: [{{ id: a, address: \"127.0.0.1:9\" }}, {{ id: b, address: \"127.0.0.1:10\" }}] }}\n",
        free_port()
    );
    let shared = tandem_config::parse_shared_document(&yaml).unwrap().shared;
    let dir = std::env::temp_dir().join(format!("tandem-sync-bench-{name}-{}", std::process::id()));
    let mut opts = DataplaneOptions::new(&dir, name);
    // The stream holds a burst of the throughput phase; the link reads it as it can.
    opts.state_stream_capacity = 1 << 20;
    Dataplane::start(Arc::new(shared), opts).await.unwrap()
}

/// Pins clients `first..first + n`, as new connections would.
fn pin(dp: &Dataplane, first: u32, n: u32) {
    let svc = dp.service("web").unwrap();
    let pool = svc.default_pool().unwrap().clone();
    for i in first..first + n {
        drop(
            svc.choose_server(&pool, IpAddr::V4((0x0a00_0000 + i).into()), &[])
                .unwrap(),
        );
    }
}

async fn start(
    name: &str,
    dp: &Dataplane,
    me: &Identity,
    peer: &Identity,
    listen: SocketAddr,
    peer_addr: SocketAddr,
    role: Role,
) -> (SyncHandle, watch::Sender<Role>) {
    let (tx, rx) = watch::channel(role);
    let settings = SyncSettings::new(
        name,
        "192.0.2.1:443",
        listen,
        peer_addr,
        peer.fingerprint,
        me.clone(),
    );
    let link = SyncLink::start(settings, dp.state(), MemoryStore::new(name), rx)
        .await
        .unwrap();
    (link, tx)
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a_dp = dataplane("a").await;
    let b_dp = dataplane("b").await;
    let (a_id, b_id) = (
        Identity::generate("a").unwrap(),
        Identity::generate("b").unwrap(),
    );
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let started = Instant::now();
    pin(&a_dp, 0, SNAPSHOT);
    eprintln!(
        "(setup: {SNAPSHOT} clients pinned on the active box in {:?})",
        started.elapsed()
    );

    // The box with the larger fingerprint listens; start it first.
    let a_listens = a_id.fingerprint > b_id.fingerprint;
    let (a_link, _a_role, b_link, _b_role);
    if a_listens {
        (a_link, _a_role) = start("a", &a_dp, &a_id, &b_id, any, any, Role::Active).await;
        let addr = a_link.local_addr().unwrap();
        (b_link, _b_role) = start("b", &b_dp, &b_id, &a_id, any, addr, Role::Passive).await;
    } else {
        (b_link, _b_role) = start("b", &b_dp, &b_id, &a_id, any, any, Role::Passive).await;
        let addr = b_link.local_addr().unwrap();
        (a_link, _a_role) = start("a", &a_dp, &a_id, &b_id, any, addr, Role::Active).await;
    }

    // 1. Snapshot.
    let total = wait_for("snapshot installed", Duration::from_secs(120), || {
        a_link.status().last_snapshot.is_some()
    })
    .await;
    let st = a_link.status_now().await;
    let snap = st.last_snapshot.unwrap();
    assert_eq!(b_dp.state().persistence_len(), SNAPSHOT as usize);
    let snapshot_s = snap.duration_ms / 1000.0;
    println!(
        "snapshot: {} entries, {} bytes ({:.1} bytes/entry), {:.3} s from first frame to installed on the passive ({:.3} s from link start)",
        snap.entries,
        snap.bytes,
        snap.bytes as f64 / snap.entries as f64,
        snapshot_s,
        total.as_secs_f64()
    );

    // 2. Lag at 10,000 new sessions per second: 100 pins every 10 ms. End to end: from the
    // moment a batch of pins is made on the active until the passive holds it (its table
    // polled every 0.5 ms), and the writer's acknowledgement delays.
    let (made_tx, made_rx) = std::sync::mpsc::channel::<(Instant, usize)>();
    let producer = {
        let dp = a_dp.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let per_tick = RATE / 100;
            for tick in 0..(LAG_SECONDS * 100) {
                pin(&dp, 2 * SNAPSHOT + tick * per_tick, per_tick);
                let want = (SNAPSHOT + (tick + 1) * per_tick) as usize;
                let _ = made_tx.send((Instant::now(), want));
                let next = start + Duration::from_millis(10 * u64::from(tick + 1));
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let mut waiting: std::collections::VecDeque<(Instant, usize)> = Default::default();
    let mut delays: Vec<Duration> = Vec::new();
    let want = (SNAPSHOT + RATE * LAG_SECONDS) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delays.len() < (LAG_SECONDS * 100) as usize {
        assert!(Instant::now() < deadline, "timed out: lag phase");
        waiting.extend(made_rx.try_iter());
        let have = b_dp.state().persistence_len();
        let now = Instant::now();
        while waiting.front().is_some_and(|(_, n)| have >= *n) {
            let (made, _) = waiting.pop_front().unwrap();
            delays.push(now - made);
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    producer.join().unwrap();
    assert_eq!(b_dp.state().persistence_len(), want);
    delays.sort_unstable();
    let pct = |p: usize| delays[(delays.len() * p).div_ceil(100) - 1].as_secs_f64() * 1000.0;
    let lag_p99 = pct(99);
    let st = a_link.status_now().await;
    println!(
        "lag at {RATE} new sessions/s for {LAG_SECONDS} s: end to end p50 {:.2} ms, p99 {lag_p99:.2} ms, max {:.2} ms; writer's acknowledgement delay p99 {:.2} ms; forced snapshots {}",
        pct(50),
        pct(100),
        st.lag.p99_ms,
        st.counters.forced_snapshots
    );

    // 3. Delta throughput.
    let before = st.counters.deltas_sent;
    let producer = {
        let dp = a_dp.clone();
        std::thread::spawn(move || pin(&dp, 3 * SNAPSHOT, DELTAS))
    };
    let want = want + DELTAS as usize;
    let took = wait_for("deltas delivered", Duration::from_secs(120), || {
        b_dp.state().persistence_len() == want
    })
    .await;
    producer.join().unwrap();
    let st = a_link.status_now().await;
    let deltas_per_s = f64::from(DELTAS) / took.as_secs_f64();
    println!(
        "deltas: {DELTAS} new pins made on the active and installed on the passive in {:.3} s: {:.0} updates/s ({} sent as deltas, {} forced snapshots)",
        took.as_secs_f64(),
        deltas_per_s,
        st.counters.deltas_sent - before,
        st.counters.forced_snapshots
    );
    println!(
        "sync snapshot_1m_s={snapshot_s:.3} deltas_per_s={deltas_per_s:.0} lag_p99_ms={lag_p99:.2}"
    );
    a_link.shutdown().await;
    b_link.shutdown().await;
}
