//! A bounded in-memory log of a process's output lines (the newest lines win), each with the
//! time it was captured and a sequence number, so followers can wait for the lines after the
//! last one they saw.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use swarm_core::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::runtime::{LogLine, LogOptions, LogRecord, LogRecords, LogStream};

/// Lines kept per task.
pub(crate) const MAX_LINES: usize = 10_000;
/// Longest line kept; longer lines are cut.
const MAX_LINE: usize = 16 * 1024;

/// The wall-clock time now, as a [`Timestamp`] (a clock before 1970 reads as the epoch).
pub(crate) fn now() -> Timestamp {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Timestamp(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[derive(Debug, Default)]
struct Lines {
    /// The kept lines; the front one has sequence number `next - lines.len()`.
    lines: VecDeque<LogRecord>,
    /// Sequence number of the next line pushed.
    next: u64,
    /// Which of stdout / stderr reached its end (the process closed it, normally by exiting).
    stdout_done: bool,
    stderr_done: bool,
}

impl Lines {
    fn first(&self) -> u64 {
        self.next - self.lines.len() as u64
    }

    fn finished(&self) -> bool {
        self.stdout_done && self.stderr_done
    }
}

/// Shared line buffer.
#[derive(Clone, Debug)]
pub(crate) struct LogBuffer {
    lines: Arc<Mutex<Lines>>,
    /// Bumped after every push and at each stream's end; followers wait on it. Dropped with the
    /// last clone of the buffer (the task was removed), which ends every follower.
    changed: Arc<watch::Sender<u64>>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        LogBuffer {
            lines: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

/// Lines from sequence number `from` on, the sequence number after them, and whether the
/// output is complete (both streams ended) with nothing after them.
pub(crate) struct Batch {
    pub(crate) lines: Vec<(u64, LogRecord)>,
    pub(crate) next: u64,
    pub(crate) finished: bool,
}

impl LogBuffer {
    fn lock(&self) -> MutexGuard<'_, Lines> {
        // Pushes and pops only: a panic while holding the lock leaves the queue consistent.
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, stream: LogStream, line: String) {
        self.push_at(now(), stream, line);
    }

    fn push_at(&self, time: Timestamp, stream: LogStream, mut line: String) {
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        let seq = {
            let mut q = self.lock();
            if q.lines.len() == MAX_LINES {
                q.lines.pop_front();
            }
            q.lines.push_back(LogRecord {
                time: Some(time),
                stream,
                line,
            });
            q.next += 1;
            q.next
        };
        self.changed.send_replace(seq);
    }

    pub(crate) fn tail(&self, n: Option<usize>) -> Vec<LogLine> {
        let q = self.lock();
        let skip = n.map_or(0, |n| q.lines.len().saturating_sub(n));
        q.lines
            .iter()
            .skip(skip)
            .map(|r| r.clone().into_line())
            .collect()
    }

    /// The kept lines (with times) selected by `opts.since` and `opts.tail`, and the sequence
    /// number after the last kept line (where a follower goes on).
    pub(crate) fn select(&self, opts: &LogOptions) -> (Vec<(u64, LogRecord)>, u64) {
        let q = self.lock();
        let first = q.first();
        let mut out: Vec<(u64, LogRecord)> = q
            .lines
            .iter()
            .enumerate()
            .filter(|(_, r)| opts.since.is_none_or(|s| r.time.is_none_or(|t| t >= s)))
            .map(|(i, r)| (first + i as u64, r.clone()))
            .collect();
        if let Some(n) = opts.tail {
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
        (out, q.next)
    }

    /// Lines from sequence number `from` on (those already dropped from the ring are skipped),
    /// at most `max`.
    pub(crate) fn after(&self, from: u64, max: usize) -> Batch {
        let q = self.lock();
        let first = q.first();
        let start = from.max(first);
        let lines: Vec<(u64, LogRecord)> = q
            .lines
            .iter()
            .skip(usize::try_from(start - first).unwrap_or(usize::MAX))
            .take(max)
            .enumerate()
            .map(|(i, r)| (start + i as u64, r.clone()))
            .collect();
        let next = lines.last().map_or(start.min(q.next), |(s, _)| s + 1);
        Batch {
            finished: q.finished() && next >= q.next,
            lines,
            next,
        }
    }

    /// Waits until a line at or after `from` is kept or the output is complete; `false` when the
    /// buffer was dropped meanwhile (the task is gone).
    pub(crate) async fn wait_after(&self, from: u64) -> bool {
        let mut rx = self.changed.subscribe();
        let _ = rx.borrow_and_update();
        {
            let q = self.lock();
            if q.next > from || q.finished() {
                return true;
            }
        }
        rx.changed().await.is_ok()
    }

    /// The selected lines, then (with `opts.follow`) every later line until both streams ended
    /// or the task was removed. The stream holds no clone of the buffer's notifier: removing the
    /// task ends it.
    pub(crate) fn stream(&self, opts: LogOptions) -> LogRecords {
        let (first, next) = self.select(&opts);
        let head = futures_util::stream::iter(first.into_iter().map(|(_, r)| Ok(r)));
        if !opts.follow {
            return Box::pin(head);
        }
        let lines = self.lines.clone();
        let rx = self.changed.subscribe();
        let tail = futures_util::stream::unfold(
            (lines, rx, next, Vec::<LogRecord>::new()),
            |(lines, mut rx, mut next, mut pending)| async move {
                loop {
                    if let Some(r) = pending.pop() {
                        return Some((Ok(r), (lines, rx, next, pending)));
                    }
                    let _ = rx.borrow_and_update();
                    let finished = {
                        let q = lines.lock().unwrap_or_else(|e| e.into_inner());
                        let first = q.first();
                        let start = next.max(first);
                        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
                        // Reversed, so `pop` yields them oldest first.
                        pending = q.lines.iter().skip(skip).rev().cloned().collect();
                        next = q.next;
                        q.finished()
                    };
                    if !pending.is_empty() {
                        continue;
                    }
                    if finished || rx.changed().await.is_err() {
                        // One last look: lines pushed between the check and the close.
                        let q = lines.lock().unwrap_or_else(|e| e.into_inner());
                        if q.next > next {
                            continue;
                        }
                        return None;
                    }
                }
            },
        );
        Box::pin(futures_util::StreamExt::chain(head, tail))
    }

    /// Copies lines from `r` until it closes, stamping each with the time it was read.
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
            buf.close(stream);
        });
    }

    /// Marks `stream` as ended.
    fn close(&self, stream: LogStream) {
        {
            let mut q = self.lock();
            match stream {
                LogStream::Stdout => q.stdout_done = true,
                LogStream::Stderr => q.stderr_done = true,
            }
        }
        self.changed.send_modify(|_| {});
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn select_applies_since_then_tail() {
        let buf = LogBuffer::default();
        for i in 0..5u64 {
            buf.push_at(Timestamp(i * 10), LogStream::Stdout, format!("l{i}"));
        }
        let opts = LogOptions {
            since: Some(Timestamp(20)),
            tail: Some(2),
            follow: false,
        };
        let (lines, next) = buf.select(&opts);
        let got: Vec<_> = lines.iter().map(|(s, r)| (*s, r.line.as_str())).collect();
        assert_eq!(got, vec![(3, "l3"), (4, "l4")]);
        assert_eq!(next, 5);
        let b = buf.after(1, 2);
        assert_eq!(b.lines.len(), 2);
        assert_eq!(b.next, 3);
        assert!(!b.finished);
    }

    #[tokio::test]
    async fn follow_yields_later_lines_and_ends_when_both_streams_end() {
        let buf = LogBuffer::default();
        buf.push(LogStream::Stdout, "before".into());
        let mut s = buf.stream(LogOptions {
            follow: true,
            ..LogOptions::default()
        });
        assert_eq!(s.next().await.unwrap().unwrap().line, "before");
        let writer = buf.clone();
        let t = tokio::spawn(async move {
            writer.push(LogStream::Stderr, "after".into());
            writer.close(LogStream::Stdout);
            writer.close(LogStream::Stderr);
        });
        let r = s.next().await.unwrap().unwrap();
        assert_eq!((r.stream, r.line.as_str()), (LogStream::Stderr, "after"));
        assert!(r.time.is_some());
        assert!(s.next().await.is_none());
        t.await.unwrap();
    }

    #[tokio::test]
    async fn follow_ends_when_the_buffer_is_dropped() {
        let buf = LogBuffer::default();
        let mut s = buf.stream(LogOptions {
            follow: true,
            ..LogOptions::default()
        });
        drop(buf);
        assert!(s.next().await.is_none());
    }
}
