//! GRUB's environment block (`grubenv`): the 1024 bytes that carry the A/B state between
//! GRUB and the running system.
//!
//! The format is GRUB's own (`grub-core/lib/envblk.c`): the header line
//! `# GRUB Environment Block`, then `name=value` lines, then `#` up to exactly 1024 bytes.
//! In values GRUB escapes a backslash and a newline with a backslash. GRUB's `save_env`
//! rewrites the block in place, so the file must keep its size; [`GrubEnv::to_block`] always
//! produces exactly [`BLOCK_SIZE`] bytes.
//!
//! The variables Tandem uses (see `image/grub.cfg` and `docs/image.md`):
//! - `confirmed`: the slot (`A` or `B`) that boots normally;
//! - `try`: a slot to boot once; GRUB clears it (and saves) before booting it, so a crash,
//!   hang or reboot of the tried system returns to `confirmed`;
//! - `confirm_after`: seconds the tried system's tandemd must stay healthy before the system
//!   marks its slot confirmed;
//! - `trial_timeout`: seconds after which a tried system that is not yet confirmed reboots.

use std::fmt;

pub const BLOCK_SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrubEnvError {
    #[error("grubenv is {0} bytes, not {BLOCK_SIZE}")]
    Size(usize),
    #[error("grubenv does not start with GRUB's header")]
    Header,
    #[error("grubenv line {0} is not `name=value`")]
    Line(usize),
    #[error("grubenv variable name `{0}` is not allowed (letters, digits and `_` only)")]
    Name(String),
    #[error("the variables do not fit in {BLOCK_SIZE} bytes")]
    TooLarge,
}

/// The variables of a grubenv block, in their order in the block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrubEnv {
    vars: Vec<(String, String)>,
}

impl GrubEnv {
    pub fn new() -> GrubEnv {
        GrubEnv::default()
    }

    /// Parses a block as GRUB writes it.
    pub fn parse(block: &[u8]) -> Result<GrubEnv, GrubEnvError> {
        if block.len() != BLOCK_SIZE {
            return Err(GrubEnvError::Size(block.len()));
        }
        let text = block
            .strip_prefix(HEADER.as_bytes())
            .ok_or(GrubEnvError::Header)?;
        let mut env = GrubEnv::new();
        let mut rest = text;
        let mut line_no = 1;
        while let Some(&first) = rest.first() {
            line_no += 1;
            if first == b'#' {
                // Padding (or a comment line GRUB ignores): skip to the end of the line.
                match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        rest = &rest[end + 1..];
                        continue;
                    }
                    None => break,
                }
            }
            let (line, next) = split_escaped_line(rest);
            rest = next;
            let eq = line
                .iter()
                .position(|&b| b == b'=')
                .ok_or(GrubEnvError::Line(line_no))?;
            let name = String::from_utf8_lossy(&line[..eq]).into_owned();
            check_name(&name)?;
            let value = unescape(&line[eq + 1..]);
            env.set(&name, &value)?;
        }
        Ok(env)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a variable, keeping its place if it exists.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), GrubEnvError> {
        check_name(name)?;
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &str) {
        self.vars.retain(|(n, _)| n != name);
    }

    /// The block: header, variables, `#` padding to exactly [`BLOCK_SIZE`] bytes.
    pub fn to_block(&self) -> Result<Vec<u8>, GrubEnvError> {
        let mut out = HEADER.as_bytes().to_vec();
        for (name, value) in &self.vars {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            for &b in value.as_bytes() {
                if b == b'\\' || b == b'\n' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'\n');
        }
        if out.len() > BLOCK_SIZE {
            return Err(GrubEnvError::TooLarge);
        }
        out.resize(BLOCK_SIZE, b'#');
        Ok(out)
    }
}

impl fmt::Display for GrubEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.vars {
            writeln!(f, "{n}={v}")?;
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), GrubEnvError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(GrubEnvError::Name(name.to_owned()));
    }
    Ok(())
}

/// Splits at the first newline that is not escaped by a backslash.
fn split_escaped_line(text: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'\n' => return (&text[..i], &text[i + 1..]),
            _ => i += 1,
        }
    }
    (text, &[])
}

fn unescape(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut it = value.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            if let Some(&next) = it.next() {
                out.push(next);
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as `grub-editenv grubenv create; grub-editenv grubenv set confirmed=A` writes it.
    fn grub_written() -> Vec<u8> {
        let mut b = b"# GRUB Environment Block\nconfirmed=A\n".to_vec();
        b.resize(1024, b'#');
        b
    }

    #[test]
    fn reads_what_grub_editenv_writes_and_writes_it_back_byte_for_byte() {
        let env = GrubEnv::parse(&grub_written()).unwrap();
        assert_eq!(env.get("confirmed"), Some("A"));
        assert_eq!(env.get("try"), None);
        assert_eq!(env.to_block().unwrap(), grub_written());
    }

    #[test]
    fn setting_and_clearing_keeps_the_block_1024_bytes() {
        let mut env = GrubEnv::parse(&grub_written()).unwrap();
        env.set("try", "B").unwrap();
        env.set("confirm_after", "60").unwrap();
        let block = env.to_block().unwrap();
        assert_eq!(block.len(), BLOCK_SIZE);
        let back = GrubEnv::parse(&block).unwrap();
        assert_eq!(back.get("try"), Some("B"));
        assert_eq!(back.get("confirmed"), Some("A"));
        // GRUB clears `try` by setting it empty: still a variable, empty value.
        let mut cleared = back.clone();
        cleared.set("try", "").unwrap();
        let again = GrubEnv::parse(&cleared.to_block().unwrap()).unwrap();
        assert_eq!(again.get("try"), Some(""));
        assert_eq!(again.get("confirmed"), Some("A"));
    }

    #[test]
    fn escapes_backslashes_and_newlines_as_grub_does() {
        let mut env = GrubEnv::new();
        env.set("x", "a\\b\nc").unwrap();
        let block = env.to_block().unwrap();
        assert!(block.starts_with(b"# GRUB Environment Block\nx=a\\\\b\\\nc\n#"));
        assert_eq!(GrubEnv::parse(&block).unwrap().get("x"), Some("a\\b\nc"));
    }

    #[test]
    fn refuses_wrong_sizes_headers_names_and_overflow() {
        assert_eq!(GrubEnv::parse(&[b'#'; 512]), Err(GrubEnvError::Size(512)));
        let mut bad = grub_written();
        bad[0] = b'X';
        assert_eq!(GrubEnv::parse(&bad), Err(GrubEnvError::Header));
        assert!(matches!(
            GrubEnv::new().set("a b", "x"),
            Err(GrubEnvError::Name(_))
        ));
        let mut big = GrubEnv::new();
        big.set("x", &"y".repeat(1000)).unwrap();
        assert_eq!(big.to_block(), Err(GrubEnvError::TooLarge));
        let mut junk = b"# GRUB Environment Block\nnoequals\n".to_vec();
        junk.resize(1024, b'#');
        assert_eq!(GrubEnv::parse(&junk), Err(GrubEnvError::Line(2)));
    }
}
