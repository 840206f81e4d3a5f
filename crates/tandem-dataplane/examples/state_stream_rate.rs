//! A quick figure for the state stream: persistence inserts published per second (with a
//! subscriber draining them) and the time of a 1,000,000-entry snapshot.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_dataplane::{Dataplane, DataplaneOptions, StateChange};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shared = tandem_config::parse_shared_document(
        "schema: 1\nshared:\n  services:\n    - { name: s, listen: \"127.0.0.1:29100\", protocol: tcp, pool: p, persistence: { source: { timeout: 1h } } }\n  pools:\n    - { name: p, servers: [{ id: a, address: \"127.0.0.1:29101\" }] }\n",
    )
    .unwrap()
    .shared;
    let mut opts = DataplaneOptions::new(std::env::temp_dir().join("tandem-stream-rate"), "bench");
    opts.state_stream_capacity = 1 << 20;
    let dp = Dataplane::start(Arc::new(shared), opts).await.unwrap();
    let svc = dp.service("s").unwrap();
    let pool = svc.default_pool().unwrap().clone();
    let mut sub = dp.state().subscribe();
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok(ev) = sub.recv().await {
            if matches!(ev.change, StateChange::PersistenceInsert(_)) {
                n += 1;
                if n == 1_000_000 {
                    break;
                }
            }
        }
        n
    });
    let started = Instant::now();
    for i in 0..1_000_000u32 {
        let client = std::net::IpAddr::V4((0x0a00_0000 + i).into());
        drop(svc.choose_server(&pool, client, &[]).unwrap());
    }
    let took = started.elapsed();
    let seen = drain.await.unwrap();
    println!(
        "1,000,000 new clients pinned (each one published insert) in {took:?}: {:.0} deltas/s; subscriber saw {seen}",
        1e6 / took.as_secs_f64()
    );
    let started = Instant::now();
    let (seq, snap) = dp.state().snapshot();
    let took = started.elapsed();
    println!("snapshot of {} changes (seq {seq}) in {took:?}", snap.len());
    let started = Instant::now();
    let bytes: usize = snap
        .iter()
        .map(|c| serde_json::to_vec(c).unwrap().len())
        .sum();
    println!(
        "(serializing it as JSON: {bytes} bytes in {:?})",
        started.elapsed()
    );
    dp.shutdown(Duration::from_millis(10)).await;
}
