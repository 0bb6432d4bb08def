//! The answer as the client gets it, written straight to its connection:
//! the head with the edge's `date` and `connection`, then the body as
//! framed for the client (a chunked or close-delimited body chunked anew),
//! flushed after every piece so that a streamed answer (server-sent
//! events) arrives as the app sends it. The connection buffers writes (16
//! KiB): a small answer leaves in one system call.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::head::Head;

pub struct Client<'a, W> {
    io: &'a mut W,
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

    /// Writes the head (it leaves with the body's first piece).
    pub async fn head(&mut self, head: &mut Head) -> std::io::Result<()> {
        self.status = Some(head.status);
        self.chunked = head.framing.chunked_to_client();
        self.close_fields(&mut head.rendered);
        self.io.write_all(&head.rendered).await
    }

    fn close_fields(&self, out: &mut bytes::BytesMut) {
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
        if self.chunked && !data.is_empty() {
            let mut size = [0u8; 18];
            let n = hex(data.len(), &mut size);
            self.io.write_all(&size[..n]).await?;
        }
        self.io.write_all(data).await?;
        if self.chunked {
            let tail: &[u8] = match (data.is_empty(), end) {
                (false, true) => b"\r\n0\r\n\r\n",
                (false, false) => b"\r\n",
                (true, true) => b"0\r\n\r\n",
                (true, false) => b"",
            };
            self.io.write_all(tail).await?;
        }
        self.io.flush().await
    }

    /// Answers with a page of the edge's own (before any answer began),
    /// and says the connection closes.
    pub async fn page(&mut self, header: &ResponseHeader, body: &Bytes) -> std::io::Result<()> {
        let status = header.status;
        let mut out = bytes::BytesMut::with_capacity(256 + body.len());
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
        let mut h = head::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let mut client = Client::new(&mut out, false);
        client.head(&mut h).await.unwrap();
        client.body(b"hello", true).await.unwrap();
        assert_eq!(client.status(), Some(200));
        assert_eq!(
            date_free(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nconnection: keep-alive\r\n\r\nhello"
        );
    }

    #[tokio::test]
    async fn a_chunked_body_is_chunked_anew_piece_by_piece() {
        let mut h = head::parse(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let mut client = Client::new(&mut out, true);
        client.head(&mut h).await.unwrap();
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
