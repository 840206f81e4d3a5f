//! The last hour of traffic, in memory: the dataplane's counters are sampled once a second and
//! turned into rates per service, per server and in total, kept in a ring of 3600 points per
//! series (48 bytes a point: about 170 KiB per series for the hour). The dashboard's graphs
//! load the ring once, then follow the newest point over server-sent events.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tandem_dataplane::StatsSnapshot;
use tandem_dataplane::stats::TrafficSnapshot;
use tokio::sync::watch;

/// Points kept per series: one hour at one a second.
pub const KEEP: usize = 3600;

/// One second of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// Unix seconds.
    pub t: u64,
    /// Requests per second (HTTP).
    pub rps: f32,
    /// New connections (or UDP flows) per second.
    pub cps: f32,
    /// Connections open now.
    pub active: f32,
    /// Bytes per second, client → server and server → client.
    pub bytes_in: f32,
    pub bytes_out: f32,
    /// Responses per second by class: 1xx … 5xx.
    pub classes: [f32; 5],
}

/// The newest point of every series, as one server-sent event carries it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Frame {
    pub t: u64,
    pub series: BTreeMap<String, Point>,
    /// The admin state and health of each server (`pool/id` → `enabled·up`), so the page can
    /// show a drain as soon as it runs.
    pub servers: BTreeMap<String, ServerState>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ServerState {
    pub admin: String,
    pub health: String,
}

/// The ring of one series in columns, as uPlot takes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Columns {
    pub t: Vec<u64>,
    pub rps: Vec<f32>,
    pub cps: Vec<f32>,
    pub active: Vec<f32>,
    pub bytes_in: Vec<f32>,
    pub bytes_out: Vec<f32>,
    pub classes: [Vec<f32>; 5],
}

#[derive(Clone, Copy, Default)]
struct Totals {
    requests: u64,
    total: u64,
    bytes_in: u64,
    bytes_out: u64,
    responses: [u64; 5],
}

impl From<&TrafficSnapshot> for Totals {
    fn from(t: &TrafficSnapshot) -> Self {
        Totals {
            requests: t.requests,
            total: t.total,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            responses: t.responses,
        }
    }
}

#[derive(Default)]
struct Rings {
    series: HashMap<String, VecDeque<Point>>,
    previous: HashMap<String, (u64, Totals)>,
}

pub struct TrafficHistory {
    rings: Mutex<Rings>,
    latest: watch::Sender<Arc<Frame>>,
}

impl Default for TrafficHistory {
    fn default() -> Self {
        TrafficHistory {
            rings: Mutex::new(Rings::default()),
            latest: watch::Sender::new(Arc::new(Frame::default())),
        }
    }
}

impl TrafficHistory {
    /// Adds the point of second `now` (Unix seconds) from the counters in `snap`.
    pub fn sample(&self, snap: &StatsSnapshot, now: u64) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        let mut frame = Frame {
            t: now,
            ..Frame::default()
        };
        let mut total = Point {
            t: now,
            ..Point::default()
        };
        let mut seen = Vec::new();
        for s in &snap.services {
            let key = format!("service:{}", s.name);
            let p = rings.point(&key, &s.traffic, now);
            total.rps += p.rps;
            total.cps += p.cps;
            total.active += p.active;
            total.bytes_in += p.bytes_in;
            total.bytes_out += p.bytes_out;
            for i in 0..5 {
                total.classes[i] += p.classes[i];
            }
            frame.series.insert(key.clone(), p);
            seen.push(key);
        }
        for s in &snap.servers {
            let key = format!("server:{}/{}", s.pool, s.id);
            let p = rings.point(&key, &s.traffic, now);
            frame.series.insert(key.clone(), p);
            frame.servers.insert(
                format!("{}/{}", s.pool, s.id),
                ServerState {
                    admin: crate::ops::admin_state_str(s.admin).to_owned(),
                    health: format!("{:?}", s.health).to_lowercase(),
                },
            );
            seen.push(key);
        }
        rings.push("total", total);
        frame.series.insert("total".into(), total);
        // Series that left the config stop being fed; their old points age out.
        rings.previous.retain(|k, _| seen.contains(k));
        rings.series.retain(|_, ring| {
            ring.back()
                .is_some_and(|p| now.saturating_sub(p.t) < KEEP as u64)
        });
        drop(rings);
        self.latest.send_replace(Arc::new(frame));
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Frame>> {
        self.latest.subscribe()
    }

    pub fn latest(&self) -> Arc<Frame> {
        self.latest.borrow().clone()
    }

    /// The last `seconds` of the series whose key starts with `prefix` (all when empty).
    pub fn history(&self, seconds: u64, prefix: &str) -> BTreeMap<String, Columns> {
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        let newest = rings
            .series
            .values()
            .filter_map(|r| r.back().map(|p| p.t))
            .max()
            .unwrap_or(0);
        let since = newest.saturating_sub(seconds);
        rings
            .series
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, ring)| {
                let mut c = Columns::default();
                for p in ring.iter().filter(|p| p.t > since) {
                    c.t.push(p.t);
                    c.rps.push(p.rps);
                    c.cps.push(p.cps);
                    c.active.push(p.active);
                    c.bytes_in.push(p.bytes_in);
                    c.bytes_out.push(p.bytes_out);
                    for i in 0..5 {
                        c.classes[i].push(p.classes[i]);
                    }
                }
                (k.clone(), c)
            })
            .collect()
    }
}

impl Rings {
    fn point(&mut self, key: &str, t: &TrafficSnapshot, now: u64) -> Point {
        let cur = Totals::from(t);
        let mut p = Point {
            t: now,
            active: t.active as f32,
            ..Point::default()
        };
        if let Some((then, prev)) = self.previous.get(key).copied() {
            let dt = now.saturating_sub(then).max(1) as f32;
            // A counter that went backwards (a server re-created by an apply) starts over.
            let d = |a: u64, b: u64| a.saturating_sub(b) as f32 / dt;
            p.rps = d(cur.requests, prev.requests);
            p.cps = d(cur.total, prev.total);
            p.bytes_in = d(cur.bytes_in, prev.bytes_in);
            p.bytes_out = d(cur.bytes_out, prev.bytes_out);
            for i in 0..5 {
                p.classes[i] = d(cur.responses[i], prev.responses[i]);
            }
        }
        self.previous.insert(key.to_owned(), (now, cur));
        self.push(key, p);
        p
    }

    fn push(&mut self, key: &str, p: Point) {
        let ring = self.series.entry(key.to_owned()).or_default();
        if ring.back().is_some_and(|last| last.t == p.t) {
            ring.pop_back();
        }
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(p);
    }
}

/// Samples `stats` once a second into `history` until the task is dropped.
pub async fn run_sampler(history: Arc<crate::app::Inner>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snap = history.backend.stats();
        history
            .history
            .sample(&snap, crate::ops::now_unix_ms() / 1000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_dataplane::stats::ServiceStats;

    fn snap(requests: u64, ok: u64) -> StatsSnapshot {
        StatsSnapshot {
            services: vec![ServiceStats {
                name: "web".into(),
                protocol: tandem_config::Protocol::Http,
                listen: "10.0.0.1:80".parse().unwrap(),
                traffic: TrafficSnapshot {
                    requests,
                    responses: [0, ok, 0, 0, 0],
                    active: 3,
                    ..TrafficSnapshot::default()
                },
                refused_max_connections: 0,
                refused_connection_rate: 0,
                refused_request_rate: 0,
                no_server: 0,
                udp_flows_evicted: 0,
                http_malformed: 0,
                http_header_timeouts: 0,
                http_too_large: 0,
            }],
            servers: vec![],
        }
    }

    #[test]
    fn rates_come_from_counter_deltas_and_the_ring_keeps_an_hour() {
        let h = TrafficHistory::default();
        h.sample(&snap(0, 0), 1000);
        h.sample(&snap(50, 40), 1001);
        h.sample(&snap(150, 140), 1003);
        let latest = h.latest();
        let p = latest.series["service:web"];
        assert_eq!((p.rps, p.classes[1], p.active), (50.0, 50.0, 3.0));
        assert_eq!(latest.series["total"].rps, 50.0);
        let cols = &h.history(3600, "service:")["service:web"];
        assert_eq!(cols.t, [1000, 1001, 1003]);
        assert_eq!(cols.rps, [0.0, 50.0, 50.0]);
        for i in 0..(KEEP as u64 + 10) {
            h.sample(&snap(150 + i, 140), 2000 + i);
        }
        assert_eq!(h.history(100_000, "service:")["service:web"].t.len(), KEEP);
    }
}
