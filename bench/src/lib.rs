//! Small shared pieces of the load clients that `bench/proxy.sh` runs: reading one HTTP/1.1
//! response, raising the open-file limit, percentiles.
//!
//! The clients are load generators, not HTTP implementations: they understand exactly what the
//! bench's backends send (a status line, headers with `Content-Length`, a body).

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (and the hard limit to `want` when
/// allowed, i.e. as root). Returns the soft limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_max < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        lim.rlim_cur = lim.rlim_max.min(want.max(lim.rlim_cur));
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            lim.rlim_cur
        } else {
            0
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body (or a body ended by EOF), and
/// returns its status code. `buf` is reused between calls.
pub async fn read_response<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response head not UTF-8"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let length = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    let mut have = buf.len() - head_end;
    match length {
        Some(len) => {
            while have < len {
                let n = io.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "body cut short",
                    ));
                }
                have += n;
            }
        }
        None => loop {
            if io.read(&mut chunk).await? == 0 {
                break;
            }
        },
    }
    Ok(status)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `p`-th percentile (0–100) of `sorted` (ascending), nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_content_length_response() {
        let mut data: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let mut buf = Vec::new();
        assert_eq!(read_response(&mut data, &mut buf).await.unwrap(), 200);
    }

    #[tokio::test]
    async fn a_short_body_is_an_error() {
        let mut data: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello";
        let mut buf = Vec::new();
        assert!(read_response(&mut data, &mut buf).await.is_err());
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&[7], 99.0), 7);
    }
}
