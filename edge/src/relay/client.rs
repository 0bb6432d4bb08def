//! The answer as the client gets it, written straight to its connection:
//! the head with the edge's `date` and `connection`, then the body as
//! framed for the client (a chunked or close-delimited body chunked anew),
//! flushed after every piece so that a streamed answer (server-sent
//! events) arrives as the app sends it. The head waits for the body's first
//! piece and a small one (up to 16 KiB) is copied behind it: one write to
//! the connection, so one TLS record over HTTPS (the connection buffers
//! writes too: one system call either way).

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::head::Head;

/// Body pieces up to this size leave in the same write as the head.
const COALESCE: usize = 16 * 1024;

pub struct Client<'a, W> {
    io: &'a mut W,
    /// The head, until the body's first piece is written.
    head: Option<BytesMut>,
    /// The client's connection closes after this answer.
    close: bool,
    chunked: bool,
    status: Option<u16>,
}

impl<'a, W: AsyncWrite + Unpin + Send> Client<'a, W> {
    /// `close`: say `connection: close` (the edge closes the connection
    /// after this answer).
    pub fn new(io: &'a mut W, close: bool) -> Self {
        Self {
            io,
            head: None,
            close,
            chunked: false,
            status: None,
        }
    }

    /// The status of the answer begun, if one was: after that, nothing
    /// else (an error page) can be said on this connection.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Queues the head: it leaves with the body's first piece.
    pub fn head(&mut self, head: Head) {
        self.status = Some(head.status);
        self.chunked = head.framing.chunked_to_client();
        let mut rendered = head.rendered;
        self.close_fields(&mut rendered);
        self.head = Some(rendered);
    }

    fn close_fields(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(pingora::protocols::http::date::get_cached_date().as_bytes());
        out.extend_from_slice(if self.close {
            b"\r\nconnection: close\r\n\r\n".as_slice()
        } else {
            b"\r\nconnection: keep-alive\r\n\r\n".as_slice()
        });
    }

    /// Writes a piece of the body (possibly empty) and, with `end`, ends
    /// the body; everything written leaves.
    pub async fn body(&mut self, data: &[u8], end: bool) -> std::io::Result<()> {
        let mut line = [0u8; 18];
        let n = if self.chunked && !data.is_empty() {
            hex(data.len(), &mut line)
        } else {
            0
        };
        let size = &line[..n];
        let tail: &[u8] = match (self.chunked, data.is_empty(), end) {
            (false, ..) | (true, true, false) => b"",
            (true, false, true) => b"\r\n0\r\n\r\n",
            (true, false, false) => b"\r\n",
            (true, true, true) => b"0\r\n\r\n",
        };
        match self.head.take() {
            Some(mut head) if data.len() <= COALESCE => {
                head.extend_from_slice(size);
                head.extend_from_slice(data);
                head.extend_from_slice(tail);
                self.io.write_all(&head).await?;
            }
            head => {
                if let Some(head) = head {
                    self.io.write_all(&head).await?;
                }
                self.io.write_all(size).await?;
                self.io.write_all(data).await?;
                self.io.write_all(tail).await?;
            }
        }
        self.io.flush().await
    }

    /// Answers with a page of the edge's own (before any answer began),
    /// and says the connection closes.
    pub async fn page(&mut self, header: &ResponseHeader, body: &Bytes) -> std::io::Result<()> {
        let status = header.status;
        let mut out = BytesMut::with_capacity(256 + body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in header.headers.iter() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.close = true;
        self.close_fields(&mut out);
        out.extend_from_slice(body);
        self.chunked = false;
        self.status = Some(status.as_u16());
        self.io.write_all(&out).await?;
        self.io.flush().await
    }
}

/// `n` in hex followed by CRLF, into `out`; the length written.
fn hex(mut n: usize, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut len = 0;
    loop {
        digits[len] = b"0123456789abcdef"[n & 15];
        len += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = b'\r';
    out[len + 1] = b'\n';
    len + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::head;

    /// The raw answer without its `date` line.
    fn date_free(raw: &[u8]) -> String {
        let text = String::from_utf8(raw.to_vec()).unwrap();
        let start = text.find("\r\ndate: ").expect("a date field") + 2;
        let end = start + text[start..].find("\r\n").unwrap() + 2;
        format!("{}{}", &text[..start], &text[end..])
    }

    #[tokio::test]
    async fn an_answer_carries_the_edges_fields() {
        let h = head::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let mut client = Client::new(&mut out, false);
        client.head(h);
        client.body(b"hello", true).await.unwrap();
        assert_eq!(client.status(), Some(200));
        assert_eq!(
            date_free(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nconnection: keep-alive\r\n\r\nhello"
        );
    }

    #[tokio::test]
    async fn a_chunked_body_is_chunked_anew_piece_by_piece() {
        let h = head::parse(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let mut client = Client::new(&mut out, true);
        client.head(h);
        client.body(b"", false).await.unwrap();
        client.body(&[b'x'; 20], false).await.unwrap();
        client.body(&vec![b'y'; 70_000], false).await.unwrap();
        client.body(b"", true).await.unwrap();
        let text = date_free(&out);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close"
        );
        let expected = format!(
            "14\r\n{}\r\n11170\r\n{}\r\n0\r\n\r\n",
            "x".repeat(20),
            "y".repeat(70_000)
        );
        assert_eq!(body, expected);
        let mut size = [0u8; 18];
        let n = hex(0, &mut size);
        assert_eq!(&size[..n], b"0\r\n");
    }
}
