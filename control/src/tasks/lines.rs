//! Splitting a byte stream into lines as it arrives.

/// Longest line kept whole; a longer one is cut into pieces of this size.
/// Agents print a whole file written by a tool on one line, so this is far
/// above any line a person writes.
const MAX_LINE: usize = 16 << 20;

#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds bytes; returns the lines they complete (without `\n` or `\r\n`).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(self.take());
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    lines.push(self.take());
                }
            }
        }
        lines
    }

    /// The last line, if the stream did not end with a newline.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut line = std::mem::take(&mut self.pending);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push(b"hel"), Vec::<String>::new());
        assert_eq!(b.push(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(b.push(b"ld\n\n"), vec!["world", ""]);
        assert_eq!(b.push(b"tail"), Vec::<String>::new());
        assert_eq!(b.finish().as_deref(), Some("tail"));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn a_whole_file_on_one_line_stays_one_line() {
        // A tool call that writes a 3 MiB file, as agents print it.
        let line = format!("{{\"content\":\"{}\"}}", "x".repeat(3 << 20));
        let mut b = LineBuffer::default();
        let mut got = Vec::new();
        for chunk in format!("{line}\n").as_bytes().chunks(64 * 1024) {
            got.extend(b.push(chunk));
        }
        assert_eq!(got, vec![line]);
    }
}
