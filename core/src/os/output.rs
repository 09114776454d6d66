//! The output buffer of one process: the lines of its stdout and stderr in arrival order,
//! at most a number of bytes (the oldest lines dropped first), and the tail on request.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Longest line kept (longer ones are cut here, the rest of the line a line of its own).
pub const MAX_LINE: usize = 16 * 1024;

/// A process's output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Bounded lines of output (see the module docs).
#[derive(Debug, Clone)]
pub struct OutputRing {
    max_bytes: usize,
    lines: VecDeque<(Stream, String)>,
    bytes: usize,
    partial: [Vec<u8>; 2],
    dropped: u64,
}

impl OutputRing {
    /// Keeps at most `max_bytes` of lines (a line counts its length plus one).
    pub fn new(max_bytes: usize) -> Self {
        OutputRing {
            max_bytes,
            lines: VecDeque::new(),
            bytes: 0,
            partial: [Vec::new(), Vec::new()],
            dropped: 0,
        }
    }

    /// Takes bytes read from `stream`; returns the lines they complete (for the opt-in
    /// line stream). Invalid UTF-8 is replaced.
    pub fn push(&mut self, stream: Stream, data: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &b in data {
            let p = &mut self.partial[stream.index()];
            if b == b'\n' {
                let line = String::from_utf8_lossy(p).into_owned();
                p.clear();
                done.push(line);
            } else {
                p.push(b);
                if p.len() >= MAX_LINE {
                    let line = String::from_utf8_lossy(p).into_owned();
                    p.clear();
                    done.push(line);
                }
            }
        }
        for l in &done {
            self.keep(stream, l.clone());
        }
        done
    }

    /// The stream ended: its unfinished last line, if any, becomes a line.
    pub fn finish(&mut self, stream: Stream) -> Option<String> {
        let p = &mut self.partial[stream.index()];
        if p.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(p).into_owned();
        p.clear();
        self.keep(stream, line.clone());
        Some(line)
    }

    fn keep(&mut self, stream: Stream, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back((stream, line));
        while self.bytes > self.max_bytes {
            let Some((_, old)) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.len() + 1;
            self.dropped += 1;
        }
    }

    /// The last `n` lines kept, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lines dropped to stay within the bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
