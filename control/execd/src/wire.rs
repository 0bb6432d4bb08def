//! Frames on the agent's socket: one byte of kind, four of length (big
//! endian), then the payload. A connection carries one command.

use std::io::{self, Read, Write};

/// Where the executable is mounted in a sandbox (read-only).
pub const BIN: &str = "/.berth/execd";
/// The sandbox's own directory for the socket, mounted read-write.
pub const RUN_DIR: &str = "/.berth/run";
/// The socket's file name, in [`RUN_DIR`] and in its host directory.
pub const SOCKET: &str = "execd.sock";

/// Control → agent: the command ([`Run`]); always the first frame.
pub const RUN: u8 = b'R';
/// Control → agent: bytes for the command's stdin.
pub const STDIN: u8 = b'I';
/// Control → agent: end of stdin.
pub const STDIN_END: u8 = b'C';
/// Control → agent: kill the command and everything it started.
pub const KILL: u8 = b'K';
/// Agent → control: the run frame was not understood (a version this
/// agent does not speak): nothing ran, control falls back to Docker.
pub const REFUSED: u8 = b'N';
/// Agent → control: the command runs; payload its pid (decimal).
pub const STARTED: u8 = b'S';
/// Agent → control: output.
pub const STDOUT: u8 = b'O';
pub const STDERR: u8 = b'E';
/// Agent → control: the command ended ([`Exit`]); always the last frame.
pub const EXIT: u8 = b'X';

/// The first field of a run frame: an agent left running by an older
/// control refuses a newer run (control then falls back to Docker's exec).
pub const VERSION: &str = "1";

/// The largest payload either side sends or accepts.
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes of a frame's header.
pub const HEADER: usize = 5;

/// The header of a frame of `kind` carrying `len` bytes.
pub fn header(kind: u8, len: usize) -> io::Result<[u8; HEADER]> {
    let len = u32::try_from(len)
        .ok()
        .filter(|l| *l as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let [a, b, c, d] = len.to_be_bytes();
    Ok([kind, a, b, c, d])
}

/// A header's kind and payload length.
pub fn parse_header(h: [u8; HEADER]) -> io::Result<(u8, usize)> {
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    Ok((h[0], len))
}

/// One frame, header and payload, to be written in one go.
pub fn frame(kind: u8, payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    buf.extend_from_slice(&header(kind, payload.len())?);
    buf.extend_from_slice(payload);
    Ok(buf)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&frame(kind, payload)?)
}

/// Reads one frame; `None` at a clean end of the stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (kind, len) = parse_header(h)?;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// A command to run.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Run {
    pub argv: Vec<String>,
    /// The working directory; the agent's own (the container's) when `None`.
    pub cwd: Option<String>,
    /// `KEY=value`, over the container's environment (may hold secrets:
    /// never printed).
    pub env: Vec<String>,
    /// The command's `BERTH_EXEC` value.
    pub marker: String,
    /// Whether stdin frames follow; else stdin is /dev/null.
    pub stdin: bool,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("argv", &self.argv)
            .field("cwd", &self.cwd)
            .field("env_len", &self.env.len())
            .field("marker", &self.marker)
            .field("stdin", &self.stdin)
            .finish()
    }
}

impl Run {
    /// NUL-separated fields: [`VERSION`], marker, stdin flag, cwd (empty: none), argv
    /// count, argv, then env. No field can hold a NUL (execve's rule).
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let argc = self.argv.len().to_string();
        let fields = [
            VERSION,
            self.marker.as_str(),
            if self.stdin { "1" } else { "0" },
            self.cwd.as_deref().unwrap_or(""),
            argc.as_str(),
        ];
        let all: Vec<&str> = fields
            .into_iter()
            .chain(self.argv.iter().map(String::as_str))
            .chain(self.env.iter().map(String::as_str))
            .collect();
        if all.iter().any(|f| f.contains('\0')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a command, its cwd or env holds a NUL byte",
            ));
        }
        Ok(all.join("\0").into_bytes())
    }

    pub fn decode(payload: &[u8]) -> Result<Run, String> {
        let text = std::str::from_utf8(payload).map_err(|_| "a run frame is not UTF-8")?;
        let mut fields = text.split('\0');
        let mut next = |what: &str| fields.next().ok_or(format!("a run frame lacks its {what}"));
        let version = next("version")?;
        if version != VERSION {
            return Err(format!(
                "a run frame of version {version:?}; this agent speaks {VERSION}"
            ));
        }
        let marker = next("marker")?.to_string();
        let stdin = next("stdin flag")? == "1";
        let cwd = Some(next("cwd")?.to_string()).filter(|c| !c.is_empty());
        let argc: usize = next("argv count")?
            .parse()
            .map_err(|_| "a run frame's argv count is not a number")?;
        let argv = (0..argc)
            .map(|_| next("argv").map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        if argv.is_empty() {
            return Err("a run frame has no command".into());
        }
        let env = fields
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Run {
            argv,
            cwd,
            env,
            marker,
            stdin,
        })
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by this signal (Docker reports such an exec as 128 + n).
    Signal(i32),
}

impl Exit {
    pub fn encode(self) -> Vec<u8> {
        match self {
            Exit::Code(c) => format!("c{c}"),
            Exit::Signal(s) => format!("s{s}"),
        }
        .into_bytes()
    }

    pub fn decode(payload: &[u8]) -> Option<Exit> {
        let text = std::str::from_utf8(payload).ok()?;
        let (kind, n) = text.split_at_checked(1)?;
        let n = n.parse().ok()?;
        match kind {
            "c" => Some(Exit::Code(n)),
            "s" => Some(Exit::Signal(n)),
            _ => None,
        }
    }

    /// The exit code as a shell (and Docker) reports it.
    pub fn code(self) -> i64 {
        match self {
            Exit::Code(c) => i64::from(c),
            Exit::Signal(s) => 128 + i64::from(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_survives_the_wire() {
        let run = Run {
            argv: vec!["sh".into(), "-c".into(), "echo 'a b'".into(), String::new()],
            cwd: Some("/home/user/workspace".into()),
            env: vec!["A=1".into(), "B=x=y".into()],
            marker: "01ABC".into(),
            stdin: true,
        };
        assert_eq!(Run::decode(&run.encode().unwrap()).unwrap(), run);
        let bare = Run {
            argv: vec!["true".into()],
            ..Run::default()
        };
        assert_eq!(Run::decode(&bare.encode().unwrap()).unwrap(), bare);
    }

    #[test]
    fn bad_runs_are_refused() {
        let nul = Run {
            argv: vec!["a\0b".into()],
            ..Run::default()
        };
        assert!(nul.encode().is_err());
        assert!(Run::decode(b"1\x00m\x000\x00\x000").is_err(), "no command");
        assert!(
            Run::decode(b"1\x00m\x000\x00\x005\x00sh").is_err(),
            "short argv"
        );
        assert!(Run::decode(b"1\x00m\x000\x00\x001\x00sh").is_ok());
        assert!(
            Run::decode(b"2\x00m\x000\x00\x001\x00sh").is_err(),
            "a newer version"
        );
        assert!(Run::decode(&[0xff]).is_err());
    }

    #[test]
    fn frames_round_trip_and_big_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello").unwrap();
        write_frame(&mut buf, EXIT, &Exit::Signal(9).encode()).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        let (kind, payload) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(
            (kind, Exit::decode(&payload)),
            (EXIT, Some(Exit::Signal(9)))
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
        assert!(header(STDOUT, MAX_FRAME + 1).is_err());
        assert!(parse_header([STDOUT, 0xff, 0, 0, 0]).is_err());
        assert_eq!(Exit::Signal(9).code(), 137);
        assert_eq!(Exit::decode(b"c-1"), Some(Exit::Code(-1)));
        assert_eq!(Exit::decode(b"x"), None);
    }
}
