//! A Server-Sent Events reader over a response body.

use futures_util::StreamExt;

#[derive(Debug, Default, Clone)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Reads events from `body` one at a time.
pub struct Reader<S> {
    body: S,
    buf: Vec<u8>,
    current: Event,
}

impl<S> Reader<S>
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    pub fn new(body: S) -> Self {
        Self {
            body,
            buf: Vec::new(),
            current: Event::default(),
        }
    }

    /// The next event; `Ok(None)` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Event>, reqwest::Error> {
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    let event = std::mem::take(&mut self.current);
                    if !event.data.is_empty() || !event.event.is_empty() {
                        return Ok(Some(event));
                    }
                    continue;
                }
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => self.current.id = Some(value.to_string()),
                    "event" => self.current.event = value.to_string(),
                    "data" => {
                        if !self.current.data.is_empty() {
                            self.current.data.push('\n');
                        }
                        self.current.data.push_str(value);
                    }
                    _ => {}
                }
            }
            match self.body.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_split_across_chunks_come_out_whole() {
        let chunks: Vec<reqwest::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(
                b": keep-alive\n\nid: 1\nevent: mes",
            )),
            Ok(bytes::Bytes::from_static(
                b"sage\ndata: {\"text\":\"hi\"}\r\n\nid: 2\n",
            )),
            Ok(bytes::Bytes::from_static(b"event: done\ndata: {}\n\n")),
        ];
        let mut r = Reader::new(futures_util::stream::iter(chunks));
        let e = r.next().await.unwrap().unwrap();
        assert_eq!((e.id.as_deref(), e.event.as_str()), (Some("1"), "message"));
        assert_eq!(e.data, "{\"text\":\"hi\"}");
        let e = r.next().await.unwrap().unwrap();
        assert_eq!(e.event, "done");
        assert!(r.next().await.unwrap().is_none());
    }
}
