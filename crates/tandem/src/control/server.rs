//! The control socket: a Unix socket only root (or the daemon's own user, for an unprivileged
//! trial run) may use. The socket file is mode 0600 and every peer's credentials are checked,
//! so a local user cannot reconfigure the box even if the file mode is loosened.

use super::protocol::{MAX_LINE, Request, Response};
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Binds the control socket at `path`, replacing a stale one left by a crashed daemon.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until the listener fails; each connection may send several requests.
pub async fn serve<H, F>(listener: UnixListener, path: PathBuf, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::error!(socket = %path.display(), error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == 0 || cred.uid() == me => {}
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid(),
                    "control socket: refused a connection from a non-root user"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot read peer credentials; refused");
                continue;
            }
        }
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &*handler).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
}

async fn connection<H, F>(stream: UnixStream, handler: &H) -> io::Result<()>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(u64::MAX));
    let mut line = String::new();
    loop {
        line.clear();
        reader.get_mut().set_limit(MAX_LINE as u64 + 1);
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let response = if line.len() > MAX_LINE {
            Response::Error {
                message: format!("request larger than {MAX_LINE} bytes"),
            }
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(request) => handler(request).await,
                Err(e) => Response::Error {
                    message: format!("malformed control request: {e}"),
                },
            }
        };
        let mut out = serde_json::to_vec(&response).map_err(io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}
