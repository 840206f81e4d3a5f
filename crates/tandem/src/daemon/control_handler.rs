//! Answers the requests of the control socket.

use super::Daemon;
use super::running_config::Refusal;
use crate::control::protocol::{Request, Response};
use std::sync::Arc;
use tandem_config::store::CommitInfo;

pub async fn handle(daemon: Arc<Daemon>, request: Request) -> Response {
    match request {
        Request::Status => Response::Status(Box::new(super::status::report(&daemon).await)),
        Request::Apply { text, file, author } => {
            let document = match tandem_config::parse_document(&text, file.as_deref()) {
                Ok(d) => d,
                Err(diagnostics) => {
                    return Response::Refused {
                        message: format!("{} problem(s) found", diagnostics.items.len()),
                        diagnostics: Some(diagnostics),
                    };
                }
            };
            let reason = match &file {
                Some(f) => format!("tandemctl apply {}", f.display()),
                None => "tandemctl apply".to_owned(),
            };
            let mut running = daemon.running.lock().await;
            let info = CommitInfo {
                author,
                reason,
                node: running.node().name.clone(),
            };
            let shared = match document {
                tandem_config::Document::Full(c) => c.shared,
                tandem_config::Document::Shared(s) => s,
            };
            applied(running.apply(shared, info).await)
        }
        Request::Reload => {
            let mut running = daemon.running.lock().await;
            applied(running.reload_file().await)
        }
        Request::Failover => match daemon.pair.failover().await {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Refused {
                message,
                diagnostics: None,
            },
        },
        Request::Versions => {
            let running = daemon.running.lock().await;
            let store = running.store();
            match store.list().and_then(|v| Ok((v, store.branches()?))) {
                Ok((versions, branches)) => Response::Versions { versions, branches },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            }
        }
    }
}

fn applied(result: Result<super::running_config::Applied, Refusal>) -> Response {
    match result {
        Ok(a) => Response::Applied {
            version: a.version,
            changed: a.changed,
            notes: a.notes,
        },
        Err(Refusal::Invalid(d)) => Response::Refused {
            message: format!("{} problem(s) found", d.items.len()),
            diagnostics: Some(d),
        },
        Err(other) => Response::Refused {
            message: other.to_string(),
            diagnostics: None,
        },
    }
}
