//! The front door: the requests the edge serves itself and those it hands
//! to Pingora's proxy, mixed on one client connection, through the real
//! berth-edge in front of the real berth-control and Docker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::served_app;

/// One response read off a raw connection: status, fields (lower-case
/// names), body. Bodies come with a length or chunked.
struct Answer {
    status: u16,
    fields: HashMap<String, String>,
    body: Vec<u8>,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.unwrap();
    }

    /// More bytes, or `false` at the end of the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("the edge answers within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn answer(&mut self) -> Answer {
        self.answer_to(false).await
    }

    /// The answer to a HEAD request (`head_request`) has no body, whatever its
    /// length says.
    async fn answer_to(&mut self, head_request: bool) -> Answer {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await, "the connection closed before an answer");
        };
        let head = String::from_utf8(self.buf.drain(..head_end).collect()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let fields: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let body = if head_request {
            Vec::new()
        } else if fields
            .get("transfer-encoding")
            .is_some_and(|t| t.ends_with("chunked"))
        {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await);
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                        .unwrap();
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.fill().await);
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            let length: usize = fields
                .get("content-length")
                .map_or(0, |l| l.parse().unwrap());
            while self.buf.len() < length {
                assert!(self.fill().await);
            }
            self.buf.drain(..length).collect()
        };
        Answer {
            status,
            fields,
            body,
        }
    }

    /// Whether the edge closed the connection (nothing more arrives).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

fn get(host: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
}

#[tokio::test]
async fn requests_served_by_the_edge_and_by_pingora_share_one_connection() {
    let (_c, edge, id, host) = served_app().await;
    let hello = format!("hello from {id}").into_bytes();
    let mut conn = Conn::open(edge.port).await;

    // The front door's own: a plain GET.
    conn.send(&get(&host, "/", "")).await;
    let a = conn.answer().await;
    assert_eq!((a.status, &a.body), (200, &hello));
    assert_eq!(a.fields["connection"], "keep-alive");
    assert!(a.fields.contains_key("date"));

    // A body: Pingora's, on the same connection, then back.
    conn.send(
        format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\n\r\nabc").as_bytes(),
    )
    .await;
    let a = conn.answer().await;
    assert_eq!(a.status, 200);
    assert_eq!(String::from_utf8(a.body).unwrap(), r#"{"bytes": 3}"#);

    // A head that arrives in pieces.
    let raw = get(&host, "/", "X-Slow: 1\r\n");
    conn.send(&raw[..7]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.send(&raw[7..]).await;
    let a = conn.answer().await;
    assert_eq!((a.status, &a.body), (200, &hello));

    // A page of the edge's own (an undeclared port) keeps the connection.
    conn.send(&get(&edge.preview_host(&id, 4999), "/", ""))
        .await;
    let a = conn.answer().await;
    assert_eq!(a.status, 404);
    assert_eq!(a.fields["connection"], "keep-alive");

    // A chunked answer, chunked anew; HEAD: the length, no body.
    conn.send(&get(&host, "/chunked", "")).await;
    let a = conn.answer().await;
    assert_eq!(
        (a.status, a.body.as_slice()),
        (200, &b"hello, chunked world"[..])
    );
    conn.send(format!("HEAD / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await;
    let a = conn.answer_to(true).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.fields["content-length"], hello.len().to_string());
    assert!(a.body.is_empty());

    // `Connection: close`: answered, said, and closed.
    conn.send(&get(&host, "/", "Connection: close\r\n")).await;
    let a = conn.answer().await;
    assert_eq!((a.status, &a.body), (200, &hello));
    assert_eq!(a.fields["connection"], "close");
    assert!(
        conn.closed().await,
        "the edge closes after `connection: close`"
    );

    // HTTP/1.0 (Pingora's): answered, then closed.
    let mut conn = Conn::open(edge.port).await;
    conn.send(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await;
    let a = conn.answer().await;
    assert_eq!((a.status, &a.body), (200, &hello));
    assert!(conn.closed().await);

    // Two requests in one write (pipelined, Pingora's): the first is
    // answered, and the connection does not hang.
    let mut conn = Conn::open(edge.port).await;
    let mut two = get(&host, "/", "");
    two.extend_from_slice(&get(&host, "/headers", ""));
    conn.send(&two).await;
    let a = conn.answer().await;
    assert_eq!((a.status, &a.body), (200, &hello));

    // A malformed request: Pingora's 400.
    let mut conn = Conn::open(edge.port).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Field\r\n\r\n")
        .await;
    assert_eq!(conn.answer().await.status, 400);
    assert!(!edge.log_text().contains("panicked"), "{}", edge.log_text());
}

#[tokio::test]
async fn a_shutting_down_edge_closes_idle_connections_at_once() {
    let (c, edge) = common::stack(&[], &[("BERTH_EDGE_GRACE_PERIOD", "20")]).await;
    let id = common::app_sandbox(&c, serde_json::json!({})).await;
    let host = edge.preview_host(&id, 3000);
    common::until_served(&edge, &host).await;
    let mut conn = Conn::open(edge.port).await;
    conn.send(&get(&host, "/", "")).await;
    assert_eq!(conn.answer().await.status, 200);

    // Graceful shutdown: listeners stop, and a kept-alive connection with
    // no request in flight is closed then, not held for the grace period
    // (its client would send its next request into a closing edge).
    // `closed` waits at most 10 s: half the grace period.
    edge.signal("TERM");
    assert!(
        conn.closed().await,
        "the idle connection is closed\n{}",
        edge.log_text()
    );
}
