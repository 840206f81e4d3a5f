//! Two real endpoints over TCP on loopback, with real TLS and pinned certificates, each with a
//! real dataplane (its `StateTables` and ticket ring) and a real config store on disk.
//! A small runner plays tandemd's part: it runs the versions the link receives.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tandem_config::store::{CommitInfo, Store};
use tandem_dataplane::{Dataplane, DataplaneOptions};
use tandem_sync::pinning;
use tandem_sync::{
    AuditLog, DiskStore, Fingerprint, Identity, Role, SyncEvent, SyncHandle, SyncLink, SyncSettings,
};
use tokio::sync::watch;

/// Generous: these hold on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shared_yaml(port: u16, b_state: &str) -> String {
    format!(
        "schema: 1\nshared:\n  services:\n    - {{ name: web, listen: \"127.0.0.1:{port}\", protocol: tcp, pool: p, persistence: {{ source: {{ timeout: 30m }} }} }}\n  pools:\n    - {{ name: p, servers: [{{ id: a, address: \"127.0.0.1:9\" }}, {{ id: b, address: \"127.0.0.1:10\", state: {b_state} }}] }}\n"
    )
}

fn shared(port: u16, b_state: &str) -> tandem_config::SharedConfig {
    tandem_config::parse_shared_document(&shared_yaml(port, b_state))
        .unwrap()
        .shared
}

struct Node {
    name: &'static str,
    dir: tempfile::TempDir,
    dp: Dataplane,
    port: u16,
    identity: Identity,
    role: watch::Sender<Role>,
    link: Option<Arc<SyncHandle>>,
}

impl Node {
    async fn new(name: &'static str, role: Role) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("tandem_sync=info")
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let dp = Dataplane::start(
            Arc::new(shared(port, "enabled")),
            DataplaneOptions::new(dir.path(), name),
        )
        .await
        .unwrap();
        Node {
            name,
            identity: Identity::load_or_generate(dir.path(), name).unwrap(),
            dir,
            dp,
            port,
            role: watch::channel(role).0,
            link: None,
        }
    }

    fn store(&self) -> Store {
        Store::open(self.dir.path()).unwrap()
    }

    fn commit(&self, tag: &str) -> tandem_config::store::Version {
        let mut s = shared(self.port, "enabled");
        s.pools[0].servers[0].address = format!("127.0.0.{}:9", tag.len() + 1).parse().unwrap();
        s.pools[0].name = "p".into();
        s.services[0].name = "web".into();
        s.pools[0].servers[0].id = format!("a-{tag}");
        let v = self
            .store()
            .commit(
                &s,
                CommitInfo {
                    author: "test".into(),
                    reason: tag.into(),
                    node: self.name.into(),
                },
            )
            .unwrap();
        if let Some(link) = &self.link {
            link.publish_version(&v.meta);
        }
        v
    }

    /// Pins `n` clients (from `first`) on this box's dataplane, as traffic would.
    fn pin(&self, first: u32, n: u32) {
        let svc = self.dp.service("web").unwrap();
        let pool = svc.default_pool().unwrap().clone();
        for i in first..first + n {
            let client = IpAddr::V4((0x0a00_0000 + i).into());
            drop(svc.choose_server(&pool, client, &[]).unwrap());
        }
    }

    async fn start_link(&mut self, listen: SocketAddr, peer: SocketAddr, peer_fp: Fingerprint) {
        let mut settings = SyncSettings::new(
            self.name,
            &format!("192.0.2.{}:443", self.name.len()),
            listen,
            peer,
            peer_fp,
            self.identity.clone(),
        );
        settings.heartbeat = Duration::from_millis(200);
        settings.peer_timeout = Duration::from_secs(2);
        settings.backoff_min = Duration::from_millis(50);
        settings.backoff_max = Duration::from_millis(500);
        let store = DiskStore {
            store: self.store(),
            audit: AuditLog::open(self.dir.path(), self.name).unwrap(),
        };
        let link = Arc::new(
            SyncLink::start(settings, self.dp.state(), store, self.role.subscribe())
                .await
                .unwrap(),
        );
        // tandemd's part: run what the active box runs.
        let mut events = link.events().unwrap();
        let (dir, runner_link) = (self.dir.path().to_owned(), Arc::downgrade(&link));
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let SyncEvent::VersionReceived(meta) = ev {
                    Store::open(&dir).unwrap().set_current(&meta.id).unwrap();
                    match runner_link.upgrade() {
                        Some(l) => l.config_running(),
                        None => return,
                    }
                }
            }
        });
        self.link = Some(link);
    }

    fn link(&self) -> &SyncHandle {
        self.link.as_deref().unwrap()
    }

    fn current(&self) -> Option<tandem_config::store::VersionId> {
        self.store().current().unwrap().map(|v| v.meta.id)
    }
}

/// Starts the links of `a` and `b`: the one with the larger fingerprint listens (on an
/// ephemeral port), the other dials it.
async fn link_pair(a: &mut Node, b: &mut Node) -> SocketAddr {
    let (listener, dialer) = if a.identity.fingerprint > b.identity.fingerprint {
        (a, b)
    } else {
        (b, a)
    };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener
        .start_link(any, any, dialer.identity.fingerprint)
        .await;
    let addr = listener.link().local_addr().expect("the listening side");
    dialer
        .start_link(any, addr, listener.identity.fingerprint)
        .await;
    assert!(
        dialer.link().local_addr().is_none(),
        "the dialer does not listen"
    );
    addr
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_peers_connect_replicate_and_swap_roles() {
    let mut a = Node::new("lb-a", Role::Active).await;
    let mut b = Node::new("lb-b", Role::Passive).await;
    a.pin(0, 1000);
    let v1 = a.commit("one");
    link_pair(&mut a, &mut b).await;

    eventually("the snapshot is installed", || {
        b.dp.state().persistence_len() == 1000
    })
    .await;
    eventually("the passive runs the active's version", || {
        b.current() == Some(v1.meta.id.clone())
    })
    .await;

    // Deltas, a config commit and a drain, all within a second or so (asserted with margin).
    let started = tokio::time::Instant::now();
    a.pin(1000, 500);
    let v2 = a.commit("two");
    a.dp.apply(Arc::new(shared(a.port, "drain"))).await.unwrap();
    eventually("deltas arrive", || b.dp.state().persistence_len() == 1500).await;
    eventually("the new version runs on the passive", || {
        b.current() == Some(v2.meta.id.clone())
    })
    .await;
    eventually("the drain is known on the passive", || {
        b.dp.state().peer_server("p", "b").and_then(|v| v.admin)
            == Some(tandem_config::AdminState::Drain)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Both boxes pin client 7 to the same server.
    let server_of = |n: &Node, i: u32| {
        let svc = n.dp.service("web").unwrap();
        let pool = svc.default_pool().unwrap().clone();
        let lease = svc
            .choose_server(&pool, IpAddr::V4((0x0a00_0000 + i).into()), &[])
            .unwrap();
        lease.id.to_string()
    };
    for i in [7, 1234] {
        assert_eq!(server_of(&a, i), server_of(&b, i));
    }

    eventually("the active sees the passive on its version", || {
        a.link().status().config.peer.as_ref() == Some(&v2.meta.id)
    })
    .await;
    let st = a.link().status_now().await;
    assert!(st.connected);
    assert_eq!(st.direction, tandem_sync::Direction::Writer);
    assert!(st.config.same);
    assert!(
        st.last_snapshot
            .as_ref()
            .is_some_and(|s| s.sent && s.entries >= 1000 && s.bytes > 0)
    );
    eventually("everything is acknowledged", || {
        a.link().status().lag.entries == 0
    })
    .await;
    let mut metrics = String::new();
    tandem_sync::render_prometheus(&a.link().status_now().await, &mut metrics);
    assert!(
        metrics.contains("tandem_sync_peer_connected 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_sync_table_entries{table=\"persistence\"} 1500"),
        "{metrics}"
    );

    // The passive refuses edits, naming the active box.
    let refusal = b.link().pair().borrow().check_edit().unwrap_err();
    assert!(
        refusal.message.contains("lb-a") && refusal.message.contains("192.0.2.4:443"),
        "{}",
        refusal.message
    );

    // Roles swap: the new active writes.
    a.role.send(Role::Passive).unwrap();
    b.role.send(Role::Active).unwrap();
    eventually("the direction turns", || {
        b.link().status().direction == tandem_sync::Direction::Writer
    })
    .await;
    b.pin(5000, 100);
    eventually("the old active receives", || {
        a.dp.state().persistence_len() == 1600
    })
    .await;
    let v3 = b.commit("three");
    eventually("the old active runs the new active's version", || {
        a.current() == Some(v3.meta.id.clone())
    })
    .await;
    // The box with the smaller fingerprint begins odd epochs, the other even ones.
    assert_eq!(
        v3.meta.id.epoch % 2 == 1,
        b.identity.fingerprint < a.identity.fingerprint
    );
    assert!(
        v3.meta.id.epoch > v2.meta.id.epoch,
        "a new writer, a new epoch"
    );
    assert!(a.link().pair().borrow().check_edit().is_err());
    assert!(b.link().pair().borrow().check_edit().is_ok());
    a.link().shutdown().await;
    b.link().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_with_a_valid_but_unpinned_certificate_cannot_connect() {
    let mut a = Node::new("lb-a", Role::Active).await;
    let mut b = Node::new("lb-b", Role::Passive).await;
    a.pin(0, 10);
    let addr = link_pair(&mut a, &mut b).await;
    eventually("the pair is up", || b.dp.state().persistence_len() == 10).await;
    let (listener, dialer) = if a.identity.fingerprint > b.identity.fingerprint {
        (&a, &b)
    } else {
        (&b, &a)
    };

    // A third box: a valid self-signed certificate, and it even pins the listener correctly.
    let intruder = Identity::generate("lb-c").unwrap();
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let config =
        pinning::client_config(&intruder, listener.identity.fingerprint, &refused).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(pinning::SERVER_NAME).unwrap();
        let result = async {
            let mut tls = connector.connect(name, tcp).await?;
            // TLS 1.3: the client's certificate is judged after the client's Finished; the
            // refusal shows on the first read.
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            match tls.read(&mut buf).await? {
                0 => Err(std::io::Error::other("closed")),
                _ => Ok(()),
            }
        }
        .await;
        assert!(result.is_err(), "the intruder got a session");
    }
    eventually("the refusals are counted", || {
        listener.link().status().refused_peers == 3
    })
    .await;
    // The pair is not disturbed.
    let st = listener.link().status_now().await;
    assert!(st.connected);
    assert_eq!(dialer.link().status().refused_peers, 0);

    // And an impostor listening where a dialer expects its peer is refused by the dialer.
    let impostor = Identity::generate("lb-x").unwrap();
    let dummy = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let server = pinning::server_config(&impostor, dialer.identity.fingerprint, &dummy).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor_addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        while let Ok((tcp, _)) = l.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let mut victim = Node::new("lb-v", Role::Passive).await;
    // The victim pins `listener`'s certificate but is pointed at the impostor's address; it
    // must dial, so give it a pinned fingerprint larger than its own.
    let pinned = Fingerprint([0xff; 32]);
    victim
        .start_link("127.0.0.1:0".parse().unwrap(), impostor_addr, pinned)
        .await;
    eventually("the dialer refuses the impostor", || {
        victim.link().status().refused_peers >= 1
    })
    .await;
    assert!(!victim.link().status().connected);
    for n in [&a, &b, &victim] {
        n.link().shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_offline_during_three_commits_catches_up_on_reconnect() {
    let mut a = Node::new("lb-a", Role::Active).await;
    let mut b = Node::new("lb-b", Role::Passive).await;
    let v1 = a.commit("one");
    a.pin(0, 100);
    link_pair(&mut a, &mut b).await;
    eventually("in sync", || b.current() == Some(v1.meta.id.clone())).await;

    // The passive's link goes away (the box is off, or the cable is out).
    b.link().shutdown().await;
    b.link = None;
    let mut last = None;
    for tag in ["two", "three", "four"] {
        last = Some(a.commit(tag));
    }
    a.pin(100, 50);
    eventually("the active notices", || !a.link().status().connected).await;

    // It comes back with the same identity. If it is the listening side it listens where
    // the active box dials; else it dials the active box again.
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    if b.identity.fingerprint > a.identity.fingerprint {
        let addr: SocketAddr = a.link().status().peer_address.parse().unwrap();
        b.start_link(addr, any, a.identity.fingerprint).await;
    } else {
        let addr = a.link().local_addr().unwrap();
        b.start_link(any, addr, a.identity.fingerprint).await;
    }
    let last = last.unwrap();
    eventually("the passive caught up", || {
        b.current() == Some(last.meta.id.clone())
    })
    .await;
    let ns: Vec<u64> = b.store().list().unwrap().iter().map(|m| m.id.n).collect();
    assert_eq!(
        ns,
        [1, 2, 3, 4],
        "every version is stored, not only the last"
    );
    eventually("the pins made meanwhile came with the new snapshot", || {
        b.dp.state().persistence_len() == 150
    })
    .await;
    let st = a.link().status_now().await;
    assert!(st.reconnects >= 1, "{st:?}");
    assert!(st.counters.snapshots_sent >= 2);
    a.link().shutdown().await;
    b.link().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ticket_of_the_active_ring_is_accepted_by_the_passive_after_sync() {
    let mut a = Node::new("lb-a", Role::Active).await;
    let mut b = Node::new("lb-b", Role::Passive).await;
    let ticket =
        a.dp.tickets()
            .encrypt(b"portal", b"resumption state")
            .unwrap();
    assert_eq!(
        b.dp.tickets().decrypt(b"portal", &ticket),
        None,
        "different rings at first"
    );
    link_pair(&mut a, &mut b).await;
    eventually("the passive decrypts the active's ticket", || {
        b.dp.tickets().decrypt(b"portal", &ticket).as_deref() == Some(&b"resumption state"[..])
    })
    .await;
    assert_eq!(b.dp.tickets().current_id(), a.dp.tickets().current_id());

    // A rotation on the active follows: a ticket under the new key, and the old one, still work.
    a.dp.tickets().rotate(tokio::time::Instant::now());
    let fresh =
        a.dp.tickets()
            .encrypt(b"portal", b"after rotation")
            .unwrap();
    eventually("the rotation arrives", || {
        b.dp.tickets().current_id() == a.dp.tickets().current_id()
    })
    .await;
    assert_eq!(
        b.dp.tickets().decrypt(b"portal", &fresh).unwrap(),
        b"after rotation"
    );
    assert_eq!(
        b.dp.tickets().decrypt(b"portal", &ticket).unwrap(),
        b"resumption state"
    );
    // After a failover the new active encrypts with the shared key: the old active decrypts.
    let from_b = b.dp.tickets().encrypt(b"portal", b"from b").unwrap();
    assert_eq!(
        a.dp.tickets().decrypt(b"portal", &from_b).unwrap(),
        b"from b"
    );
    a.link().shutdown().await;
    b.link().shutdown().await;
}
