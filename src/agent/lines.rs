//! Reads newline-terminated lines with a length cap, so a runaway producer cannot make the agent
//! buffer without bound. An over-long line is skipped up to its newline and reported.

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(r: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::new(r),
            max,
        }
    }

    /// `Ok(None)` at end of input; `Ok(Some(Err(why)))` for a line that was too long or not UTF-8.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Result<String, String>>> {
        let mut buf = Vec::new();
        let mut too_long = false;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if buf.is_empty() && !too_long {
                    return Ok(None);
                }
                break;
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if buf.len() + take > self.max + 1 {
                    too_long = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(take);
            if done {
                break;
            }
        }
        if too_long {
            return Ok(Some(Err(format!("line is longer than {} bytes", self.max))));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(Some(
            String::from_utf8(buf).map_err(|_| "line is not UTF-8".to_string()),
        ))
    }
}
