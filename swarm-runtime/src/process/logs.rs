//! A bounded in-memory log of a process's output lines (the newest lines win).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::runtime::{LogLine, LogStream};

/// Lines kept per task.
pub(crate) const MAX_LINES: usize = 10_000;
/// Longest line kept; longer lines are cut.
const MAX_LINE: usize = 16 * 1024;

/// Shared line buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogBuffer(Arc<Mutex<VecDeque<LogLine>>>);

impl LogBuffer {
    pub(crate) fn push(&self, stream: LogStream, mut line: String) {
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == MAX_LINES {
            q.pop_front();
        }
        q.push_back(LogLine { stream, line });
    }

    pub(crate) fn tail(&self, n: Option<usize>) -> Vec<LogLine> {
        let q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let skip = n.map_or(0, |n| q.len().saturating_sub(n));
        q.iter().skip(skip).cloned().collect()
    }

    /// Copies lines from `r` until it closes.
    pub(crate) fn spawn_reader(
        &self,
        stream: LogStream,
        r: impl AsyncRead + Unpin + Send + 'static,
    ) {
        let buf = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(r).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                let text = String::from_utf8_lossy(&line);
                buf.push(stream, text.trim_end_matches('\r').to_string());
            }
        });
    }
}
