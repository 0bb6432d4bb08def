//! Decoding a chunked body as it arrives (RFC 9112 §7.1). Chunk sizes are
//! parsed by httparse; trailers are read and dropped.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the chunked body is malformed")]
pub struct ChunkError;

/// Trailer lines longer than this are refused.
const MAX_LINE: usize = 8 * 1024;

#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { state: State::Size }
    }
}

impl Decoder {
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes what `buf` holds of the body: the data decoded so far (possibly
    /// none) is appended to `out`. Bytes after the body's end stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Bytes>) -> Result<(), ChunkError> {
        loop {
            match self.state {
                State::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_LINE => return Ok(()),
                    _ => return Err(ChunkError),
                },
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(());
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    out.push(buf.split_to(take).freeze());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(());
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() >= MAX_LINE {
                            return Err(ChunkError);
                        }
                        return Ok(());
                    };
                    buf.advance(end + 2);
                    if end == 0 {
                        self.state = State::Done;
                    }
                }
                State::Done => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(pieces: &[&[u8]]) -> (Result<Vec<u8>, ChunkError>, bool, Vec<u8>) {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            if let Err(e) = d.decode(&mut buf, &mut out) {
                return (Err(e), d.done(), buf.to_vec());
            }
        }
        (Ok(out.concat()), d.done(), buf.to_vec())
    }

    #[test]
    fn a_body_in_one_piece_decodes_and_leaves_what_follows() {
        let (body, done, rest) =
            feed(&[b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nHTTP/1.1"]);
        assert_eq!(body.unwrap(), b"hello world");
        assert!(done);
        assert_eq!(rest, b"HTTP/1.1");
    }

    #[test]
    fn a_body_split_at_every_byte_decodes_the_same() {
        let raw = b"a\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n";
        let pieces: Vec<&[u8]> = raw.chunks(1).collect();
        let (body, done, rest) = feed(&pieces);
        assert_eq!(body.unwrap(), b"0123456789!");
        assert!(done);
        assert!(rest.is_empty());
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let (body, done, _) = feed(&[b"5\r\nhel"]);
        assert_eq!(body.unwrap(), b"hel");
        assert!(!done);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert_eq!(feed(&[b"zz\r\n"]).0, Err(ChunkError));
        assert_eq!(feed(&[b"2\r\nabX\r\n"]).0, Err(ChunkError));
        assert_eq!(
            feed(&[&[b'1'; 20][..], b"\r\n"]).0,
            Err(ChunkError),
            "size overflow"
        );
    }
}
