//! The client side of the control socket, used by `tandemctl`. Blocking: a command-line tool
//! sends one request and waits for its answer.

use super::protocol::{Request, Response};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach tandemd at {path}: {source} — is tandemd running, and are you root? (set --socket or TANDEM_SOCKET if it listens elsewhere)"
    )]
    Connect { path: String, source: io::Error },
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    #[error("tandemd sent an answer this tandemctl does not understand: {0}")]
    Decode(#[from] serde_json::Error),
}

pub fn call(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    // Applying a config binds listeners and may take a moment, never minutes.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    Ok(serde_json::from_str(&answer)?)
}
