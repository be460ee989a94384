//! [`LabelReading`] on tokio: the label file parsed on a blocking thread (the object reader and
//! gzip are synchronous), read ahead by two chunks while the applier writes the last one.

use crate::domain::labels::{open_reader, LabelChunk};
use crate::ports::labels::{LabelChunks, LabelReading, ReadPlan};
use std::io::Read;
use tokio::sync::mpsc;

/// Chunks read ahead of the one being applied.
const READ_AHEAD: usize = 2;

/// Call [`LabelReading::start`] inside a tokio runtime.
pub struct TokioLabelReading;

/// Chunks from the reading thread; dropping this stops it at its next send.
pub struct ReadAhead {
    rx: mpsc::Receiver<LabelChunk>,
}

impl LabelChunks for ReadAhead {
    async fn next(&mut self) -> Option<LabelChunk> {
        self.rx.recv().await
    }
}

impl LabelReading for TokioLabelReading {
    type Chunks = ReadAhead;

    fn start<R: Read + Send + 'static>(&self, plan: ReadPlan, input: R) -> ReadAhead {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let mut reader = open_reader(plan.file, plan.kind, input, &plan.resume, plan.offset);
            loop {
                let chunk = reader.next_chunk(plan.chunk_rows);
                let end = chunk.end;
                if tx.blocking_send(chunk).is_err() || end {
                    return;
                }
            }
        });
        ReadAhead { rx }
    }
}
