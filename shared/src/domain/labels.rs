//! Bulk labels, the pure part: label files, their rows, and what a label does to a stored decision.
//!
//! A label file lands at `labels/incoming/<tenant>/<name>.{csv,ndjson,jsonl}[.gz]`. Each row says
//! that a transaction turned out `fraud` or `legit`, who said so (`source`, e.g. `chargeback` or
//! `analyst:jane`) and when (`labelled_at`, RFC 3339):
//!
//! - CSV: a header naming `transaction_id,label,source,labelled_at` (any order, extra columns
//!   ignored), then one row a line. Quoted fields may not span lines.
//! - NDJSON: `{"transaction_id": "…", "label": "fraud", "source": "…", "labelled_at": "…"}` a line;
//!   other fields are ignored.
//!
//! `label` is `fraud` or `legit` (any case). Blank lines are skipped. Rows are streamed; each bad
//! row gives a [`RowError`] with its 1-based line (the CSV header is line 1) and reading goes on.
//!
//! Labels and features: a fraud label adds to the `f<day>` counter of the transaction's day on its
//! customer and terminal. Terminal features only read days at least `LABEL_DELAY_DAYS` (7) before
//! the transaction being scored, so a label for a recent day is stored at once but moves features
//! only once its day is 7 days old, as in the handbook's protocol. Past decisions never change.

use crate::domain::io::{json_kind, FileKind, Format, RowError, MAX_LINE_BYTES};
use crate::domain::model_upload::{split_tenant_key, KeyError};
use crate::domain::TenantId;
use crate::domain::{Timestamp, TransactionId};
use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

pub const INCOMING_PREFIX: &str = "labels/incoming/";
/// Reports go here, outside the trigger prefix, so writing them never triggers the function.
pub const RESULTS_PREFIX: &str = "labels/results/";
pub const CSV_COLUMNS: [&str; 4] = ["transaction_id", "label", "source", "labelled_at"];
pub const MAX_SOURCE_LEN: usize = 64;
/// A `labelled_at` further ahead than this is refused: it would outrank every later correction.
pub const MAX_CLOCK_SKEW_SECS: i64 = 24 * 3600;
/// The error report's header.
pub const REPORT_HEADER: &str = "line,transaction_id,field,reason\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelValue {
    Fraud,
    Legit,
}

impl LabelValue {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let t = raw.trim();
        if t.eq_ignore_ascii_case("fraud") {
            Ok(LabelValue::Fraud)
        } else if t.eq_ignore_ascii_case("legit") {
            Ok(LabelValue::Legit)
        } else {
            Err(format!("{raw:?} is not fraud or legit"))
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            LabelValue::Fraud => "fraud",
            LabelValue::Legit => "legit",
        }
    }
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    pub transaction_id: TransactionId,
    pub label: LabelValue,
    pub source: String,
    pub labelled_at: Timestamp,
}

type FieldError = (Option<&'static str>, String);

fn parse_row(id: &str, label: &str, source: &str, labelled_at: &str) -> Result<LabelRow, FieldError> {
    let transaction_id = TransactionId::parse(id.trim()).map_err(|e| (Some("transaction_id"), e.reason))?;
    let label = LabelValue::parse(label).map_err(|r| (Some("label"), r))?;
    let source = check_source(source).map_err(|r| (Some("source"), r))?;
    let labelled_at =
        Timestamp::parse("labelled_at", labelled_at.trim()).map_err(|e| (Some("labelled_at"), e.reason))?;
    Ok(LabelRow {
        transaction_id,
        label,
        source,
        labelled_at,
    })
}

/// Who said so: trimmed, 1..=[`MAX_SOURCE_LEN`] characters, no control characters.
fn check_source(raw: &str) -> Result<String, String> {
    let source = raw.trim();
    if source.is_empty() {
        return Err("must not be empty".into());
    }
    if source.chars().count() > MAX_SOURCE_LEN {
        return Err(format!("must be at most {MAX_SOURCE_LEN} characters"));
    }
    if source.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(source.to_owned())
}

impl LabelRow {
    /// Checks the row against the transaction it labels: a label cannot predate the payment, nor
    /// come from the future.
    pub fn check_times(&self, occurred_at: &Timestamp, now: &Timestamp) -> Result<(), (&'static str, String)> {
        if self.labelled_at < *occurred_at {
            return Err((
                "labelled_at",
                format!(
                    "{} is before the transaction occurred ({})",
                    self.labelled_at, occurred_at
                ),
            ));
        }
        if self.labelled_at.unix() > now.unix().saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(("labelled_at", format!("{} is in the future", self.labelled_at)));
        }
        Ok(())
    }
}

/// `POST /v1/transactions/{id}/label`'s note: at most this many characters.
pub const MAX_NOTE_LEN: usize = 1000;

/// A label sent through the API: the row a file would carry, plus an optional note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequest {
    pub row: LabelRow,
    pub note: Option<String>,
}

impl LabelRequest {
    /// Parses the JSON body `{label, source, labelled_at, note}` for transaction `id`, naming
    /// every bad field at once (`(field, reason)` pairs).
    pub fn parse_json(id: &TransactionId, body: &[u8]) -> Result<LabelRequest, Vec<(&'static str, String)>> {
        // This parser's fields are static names: a duplicate key's path goes in the message.
        let v = crate::domain::json::parse_strict(body).map_err(|e| match e.path.as_str() {
            "body" => vec![("body", e.message)],
            path => vec![("body", format!("{path} {}", e.message))],
        })?;
        let Value::Object(o) = v else {
            return Err(vec![("body", "must be a JSON object".into())]);
        };
        let mut errors = Vec::new();
        for k in o.keys() {
            if !["label", "source", "labelled_at", "note"].contains(&k.as_str()) {
                errors.push((
                    "body",
                    format!("unknown field {:?}", k.chars().take(64).collect::<String>()),
                ));
            }
        }
        let text = |name: &'static str, errors: &mut Vec<(&'static str, String)>| match o.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null) => {
                errors.push((name, "is missing".into()));
                None
            }
            Some(other) => {
                errors.push((name, format!("must be a string, found {}", json_kind(other))));
                None
            }
        };
        let label = text("label", &mut errors);
        let source = text("source", &mut errors);
        let labelled_at = text("labelled_at", &mut errors);
        let note = match o.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > MAX_NOTE_LEN => {
                errors.push(("note", format!("must be at most {MAX_NOTE_LEN} characters")));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                errors.push(("note", format!("must be a string, found {}", json_kind(other))));
                None
            }
        };
        let mut row = None;
        if let (Some(label), Some(source), Some(at)) = (&label, &source, &labelled_at) {
            // The row's own checks, one field at a time, so each bad one is named.
            let label = LabelValue::parse(label).map_err(|r| errors.push(("label", r))).ok();
            let source = check_source(source).map_err(|r| errors.push(("source", r))).ok();
            let at = Timestamp::parse("labelled_at", at.trim())
                .map_err(|e| errors.push(("labelled_at", e.reason)))
                .ok();
            if let (Some(label), Some(source), Some(labelled_at)) = (label, source, at) {
                row = Some(LabelRow {
                    transaction_id: id.clone(),
                    label,
                    source,
                    labelled_at,
                });
            }
        }
        match row {
            Some(row) if errors.is_empty() => Ok(LabelRequest { row, note }),
            _ => Err(errors),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files and keys
// ---------------------------------------------------------------------------------------------

/// An upload under `labels/incoming/<tenant>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFile {
    pub tenant: TenantId,
    pub key: String,
    /// Below the tenant's folder, e.g. `2018-08.csv`.
    pub name: String,
}

/// A label file's format and whether it is gzipped, from its name.
impl LabelFile {
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        let (tenant, name) = split_tenant_key(INCOMING_PREFIX, key)?;
        Ok(LabelFile {
            tenant,
            key: key.to_owned(),
            name,
        })
    }

    pub fn kind(&self) -> Result<FileKind, String> {
        FileKind::from_path(Path::new(&self.name)).map_err(|_| {
            format!(
                "{}: unknown file type; expected .csv, .ndjson or .jsonl, optionally followed by .gz",
                self.key
            )
        })
    }

    /// `labels/results/<tenant>/<name without its extensions>`.
    fn report_base(&self) -> String {
        let mut base = self.name.as_str();
        for ext in [".gz", ".csv", ".ndjson", ".jsonl"] {
            if base.len() > ext.len() && base.to_ascii_lowercase().ends_with(ext) {
                base = &base[..base.len() - ext.len()];
            }
        }
        format!("{RESULTS_PREFIX}{}/{base}", self.tenant)
    }

    pub fn errors_key(&self) -> String {
        format!("{}.errors.csv", self.report_base())
    }

    pub fn summary_key(&self) -> String {
        format!("{}.summary.json", self.report_base())
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// One line's outcome. `fatal` means nothing after it can be read (bad header, I/O error);
/// `transient` that the cause was the transfer, not the file, so reading again may work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelLine {
    pub line: u64,
    pub row: Result<LabelRow, RowError>,
    pub fatal: bool,
    pub transient: bool,
}

/// Where a resumed read starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resume {
    /// The first line not yet processed (1-based).
    pub next_line: u64,
    /// The input starts at this line's first byte (a ranged read); else it starts at the top and
    /// the lines before `next_line` are skipped unread (gzip).
    pub ranged: bool,
    /// The CSV header line, as [`LabelReader::header`] gave it.
    pub header: Option<String>,
}

/// How far a label file's job got: the payload of its job item ([`crate::ports::jobs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelProgress {
    /// The first input line not yet processed (1-based; the CSV header is line 1).
    pub next_line: u64,
    /// Byte offset of `next_line` in the object.
    pub next_offset: u64,
    /// The CSV header, so a ranged resume can parse rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    pub counts: std::collections::BTreeMap<String, u64>,
    /// How many error-report chunks are stored.
    pub error_chunks: u32,
}

impl Default for LabelProgress {
    fn default() -> Self {
        LabelProgress {
            next_line: 1,
            next_offset: 0,
            header: None,
            counts: std::collections::BTreeMap::new(),
            error_chunks: 0,
        }
    }
}

/// Up to a chunk's worth of lines and the position after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChunk {
    pub lines: Vec<LabelLine>,
    pub next_line: u64,
    pub next_offset: u64,
    pub header: Option<String>,
    /// Nothing follows (the file ended or a fatal line stopped it).
    pub end: bool,
}

/// A reader of a label file's (possibly gzipped) bytes, from a resume point: `start_offset` is
/// the first byte of `input` in the file (0 unless `at.ranged`).
pub fn open_reader(
    file: impl Into<String>,
    kind: FileKind,
    input: impl Read + Send + 'static,
    at: &Resume,
    start_offset: u64,
) -> LabelReader<BufReader<Box<dyn Read + Send>>> {
    let input: Box<dyn Read + Send> = if kind.gzip {
        Box::new(MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    };
    LabelReader::resume(
        file,
        kind.format,
        BufReader::with_capacity(1 << 16, input),
        at,
        start_offset,
    )
}

/// Streams the rows of one label file.
pub struct LabelReader<R> {
    file: String,
    format: Format,
    input: R,
    /// The last line read.
    line: u64,
    /// Bytes consumed (of the decompressed stream), counting from where the input started.
    offset: u64,
    columns: Option<[usize; 4]>,
    width: usize,
    header: Option<String>,
    skip_through: u64,
    any: bool,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> LabelReader<R> {
    pub fn new(file: impl Into<String>, format: Format, input: R) -> Self {
        LabelReader {
            file: file.into(),
            format,
            input,
            line: 0,
            offset: 0,
            columns: None,
            width: 0,
            header: None,
            skip_through: 0,
            any: false,
            done: false,
            buf: Vec::new(),
        }
    }

    /// Continues a file from a checkpoint; `start_offset` is the input's first byte in the file.
    pub fn resume(file: impl Into<String>, format: Format, input: R, at: &Resume, start_offset: u64) -> Self {
        let mut r = Self::new(file, format, input);
        let done = at.next_line.saturating_sub(1);
        if at.ranged {
            r.line = done;
            r.offset = start_offset;
            r.any = done > 0;
            if let (Format::Csv, Some(h)) = (format, &at.header) {
                if let Ok((cols, width)) = header_columns(h) {
                    r.columns = Some(cols);
                    r.width = width;
                    r.header = Some(h.clone());
                }
            }
        } else {
            r.skip_through = done;
        }
        r
    }

    /// The CSV header line, once read (kept in checkpoints for ranged resumes).
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// The next line to read and its byte offset: where a checkpoint resumes.
    pub fn position(&self) -> (u64, u64) {
        (self.line + 1, self.offset)
    }

    /// Reads up to `rows` lines (at least one).
    pub fn next_chunk(&mut self, rows: usize) -> LabelChunk {
        let mut lines = Vec::with_capacity(rows.max(1));
        let mut end = false;
        while lines.len() < rows.max(1) {
            match self.next() {
                Some(l) => lines.push(l),
                None => {
                    end = true;
                    break;
                }
            }
        }
        let (next_line, next_offset) = LabelReader::position(self);
        LabelChunk {
            lines,
            next_line,
            next_offset,
            header: self.header.clone(),
            end,
        }
    }

    fn error(&self, line: u64, field: Option<&'static str>, reason: impl Into<String>) -> RowError {
        RowError {
            file: self.file.clone(),
            line,
            field,
            reason: reason.into(),
        }
    }

    fn fatal(&mut self, line: u64, field: Option<&'static str>, reason: impl Into<String>) -> LabelLine {
        self.done = true;
        LabelLine {
            line,
            row: Err(self.error(line, field, reason)),
            fatal: true,
            transient: false,
        }
    }

    /// Reads one physical line into `buf`, without its line break. `None` at the end.
    fn read_line(&mut self) -> Option<Result<(), (String, bool)>> {
        self.buf.clear();
        let read = std::io::Read::take(&mut self.input, MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut self.buf);
        match read {
            // Bad gzip data is the file's fault; anything else (the network) may pass.
            Err(e) => Some(Err((
                format!("cannot read: {e}"),
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData
                        | std::io::ErrorKind::InvalidInput
                        | std::io::ErrorKind::UnexpectedEof
                ),
            ))),
            Ok(0) => None,
            Ok(n) => {
                self.line += 1;
                self.offset += n as u64;
                if self.buf.len() > MAX_LINE_BYTES {
                    return Some(Err((format!("line is longer than {MAX_LINE_BYTES} bytes"), false)));
                }
                while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                    self.buf.pop();
                }
                Some(Ok(()))
            }
        }
    }
}

impl<R: BufRead> Iterator for LabelReader<R> {
    type Item = LabelLine;

    fn next(&mut self) -> Option<LabelLine> {
        loop {
            if self.done {
                return None;
            }
            match self.read_line() {
                None if !self.any => {
                    let what = match self.format {
                        Format::Csv => {
                            "the file is empty; expected a CSV header transaction_id,label,source,labelled_at"
                        }
                        Format::Ndjson => "the file is empty",
                    };
                    return Some(self.fatal(1, None, what));
                }
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err((reason, transient))) => {
                    let line = self.line.max(1);
                    let mut l = self.fatal(line, None, reason);
                    l.transient = transient;
                    return Some(l);
                }
                Some(Ok(())) => {}
            }
            let line = self.line;
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim_start_matches('\u{feff}').to_owned(),
                Err(e) => {
                    self.any = true;
                    if line <= self.skip_through {
                        continue;
                    }
                    let reason = format!("is not valid UTF-8 (at byte {})", e.valid_up_to() + 1);
                    if self.format == Format::Csv && self.columns.is_none() {
                        return Some(self.fatal(line, None, format!("the header {reason}")));
                    }
                    return Some(LabelLine {
                        line,
                        row: Err(self.error(line, None, reason)),
                        fatal: false,
                        transient: false,
                    });
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            self.any = true;
            if self.format == Format::Csv && self.columns.is_none() {
                match header_columns(&text) {
                    Ok((cols, width)) => {
                        self.columns = Some(cols);
                        self.width = width;
                        self.header = Some(text);
                        continue;
                    }
                    Err((field, reason)) => return Some(self.fatal(line, field, reason)),
                }
            }
            if line <= self.skip_through {
                continue;
            }
            let row = match self.format {
                Format::Csv => self.parse_csv(&text),
                Format::Ndjson => parse_json_row(&text),
            };
            return Some(LabelLine {
                line,
                row: row.map_err(|(field, reason)| self.error(line, field, reason)),
                fatal: false,
                transient: false,
            });
        }
    }
}

impl<R> LabelReader<R> {
    fn parse_csv(&self, text: &str) -> Result<LabelRow, FieldError> {
        let fields = csv_fields(text).map_err(|r| (None, r))?;
        if fields.len() != self.width {
            return Err((
                None,
                format!(
                    "expected {} fields as in the header, found {}",
                    self.width,
                    fields.len()
                ),
            ));
        }
        let cols = self.columns.unwrap_or([0, 1, 2, 3]);
        let get = |k: usize| fields.get(cols[k]).map(String::as_str).unwrap_or_default();
        parse_row(get(0), get(1), get(2), get(3))
    }
}

/// Column positions of the four fields, and the header's width.
fn header_columns(header: &str) -> Result<([usize; 4], usize), FieldError> {
    let names = csv_fields(header.trim_start_matches('\u{feff}')).map_err(|r| (None, format!("header: {r}")))?;
    let mut at = [usize::MAX; 4];
    for (i, name) in names.iter().enumerate() {
        if let Some(k) = CSV_COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name.trim())) {
            if at[k] != usize::MAX {
                return Err((Some(CSV_COLUMNS[k]), "appears twice in the header".into()));
            }
            at[k] = i;
        }
    }
    if let Some(k) = at.iter().position(|&i| i == usize::MAX) {
        return Err((
            Some(CSV_COLUMNS[k]),
            format!("column is missing from the header (expected {})", CSV_COLUMNS.join(",")),
        ));
    }
    Ok((at, names.len()))
}

/// The fields of one CSV line, by the `csv` crate (RFC 4180 quoting, `""` escapes). A line is a
/// record: checkpoints are line offsets, so a quoted field may not span lines.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    // A line break and a marker record follow the line: a quote left open swallows them.
    let mut input = String::with_capacity(line.len() + 2);
    input.push_str(line);
    input.push_str("\n.");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        // Only `\n` ends a record, as only `\n` ends a line; a stray `\r` is text.
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(input.len().max(64))
        .from_reader(input.as_bytes());
    let (mut record, mut marker) = (csv::StringRecord::new(), csv::StringRecord::new());
    let read = reader
        .read_record(&mut record)
        .and_then(|_| reader.read_record(&mut marker));
    match read {
        Ok(true) => Ok(record.iter().map(str::to_owned).collect()),
        Ok(false) => Err("a quoted field is not closed on this line (fields may not span lines)".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_json_row(text: &str) -> Result<LabelRow, FieldError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]).to_owned();
        (None, format!("is not valid JSON (column {}: {msg})", e.column()))
    })?;
    let Value::Object(o) = v else {
        return Err((None, format!("must be a JSON object, found {}", json_kind(&v))));
    };
    let field = |name: &'static str| -> Result<&str, FieldError> {
        match o.get(name) {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err((Some(name), "is missing".into())),
            Some(other) => Err((Some(name), format!("must be a string, found {}", json_kind(other)))),
        }
    };
    parse_row(
        field("transaction_id")?,
        field("label")?,
        field("source")?,
        field("labelled_at")?,
    )
}

// ---------------------------------------------------------------------------------------------
// Applying a label
// ---------------------------------------------------------------------------------------------

/// The label a decision carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLabel {
    pub value: LabelValue,
    pub source: String,
    pub labelled_at: Timestamp,
    /// The label file and line that set it, when a file did. A label from the API has
    /// `file` = `api:<key id>` (who labelled) and no etag or line.
    pub file: Option<String>,
    pub etag: Option<String>,
    pub line: Option<u64>,
    /// The API's free-text note (files carry none).
    pub note: Option<String>,
}

/// Which file version and line a label comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance<'a> {
    /// `s3://bucket/key`.
    pub file: &'a str,
    pub etag: &'a str,
    pub line: u64,
}

/// What a row does to a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Write the label; `fraud_delta` (+1, -1 or 0) goes to `f<day>` of both aggregates.
    Apply { fraud_delta: i64 },
    /// This very row already wrote the label (a run resumed from an earlier checkpoint).
    AlreadyApplied,
    /// The decision already has this label.
    Unchanged,
    /// The decision has a different label given later than this row's; the later one stands.
    Superseded,
}

/// `from` is the file row's provenance; `None` for a label from the API, which is never "already
/// applied": the same label again is simply unchanged.
pub fn transition(previous: Option<&StoredLabel>, row: &LabelRow, from: Option<Provenance<'_>>) -> Transition {
    let delta = |v: LabelValue| if v == LabelValue::Fraud { 1 } else { 0 };
    match previous {
        None => Transition::Apply {
            fraud_delta: delta(row.label),
        },
        Some(p) if p.value == row.label => {
            let same_row = from.is_some_and(|from| {
                p.file.as_deref() == Some(from.file)
                    && p.etag.as_deref() == Some(from.etag)
                    && p.line == Some(from.line)
            });
            if same_row {
                Transition::AlreadyApplied
            } else {
                Transition::Unchanged
            }
        }
        Some(p) if row.labelled_at < p.labelled_at => Transition::Superseded,
        Some(p) => Transition::Apply {
            fraud_delta: delta(row.label) - delta(p.value),
        },
    }
}

/// Per-file counts. `rows_read = applied + unchanged + rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LabelCounts {
    pub rows_read: u64,
    pub applied: u64,
    /// Including `superseded`.
    pub unchanged: u64,
    /// Bad rows and rows naming unknown transactions (`unknown`).
    pub rejected: u64,
    pub unknown: u64,
    pub superseded: u64,
}

impl LabelCounts {
    pub const NAMES: [&'static str; 6] = ["rows_read", "applied", "unchanged", "rejected", "unknown", "superseded"];

    fn field(&mut self, name: &str) -> Option<&mut u64> {
        Some(match name {
            "rows_read" => &mut self.rows_read,
            "applied" => &mut self.applied,
            "unchanged" => &mut self.unchanged,
            "rejected" => &mut self.rejected,
            "unknown" => &mut self.unknown,
            "superseded" => &mut self.superseded,
            _ => return None,
        })
    }

    /// From a checkpoint's counters (unknown names are ignored).
    pub fn from_map(map: &std::collections::BTreeMap<String, u64>) -> Self {
        let mut c = LabelCounts::default();
        for (k, v) in map {
            if let Some(f) = c.field(k) {
                *f = *v;
            }
        }
        c
    }

    pub fn to_map(self) -> std::collections::BTreeMap<String, u64> {
        let mut c = self;
        Self::NAMES
            .iter()
            .map(|n| (n.to_string(), c.field(n).map_or(0, |v| *v)))
            .collect()
    }
}

/// The summary JSON written beside the error report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSummary {
    pub file: String,
    pub etag: String,
    pub tenant: String,
    #[serde(flatten)]
    pub counts: LabelCounts,
    pub errors_key: String,
    /// Set when the file could not be read to its end (bad header, unknown type, I/O).
    pub stopped_early: Option<String>,
    pub invocations: u64,
    pub started_at: String,
    pub completed_at: String,
}

/// One line of the error report (CSV, [`REPORT_HEADER`]), quoted by the `csv` crate where needed.
pub fn report_line(line: u64, transaction_id: Option<&str>, field: Option<&str>, reason: &str) -> String {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(64 + reason.len()));
    let line = line.to_string();
    let record = [
        line.as_str(),
        transaction_id.unwrap_or_default(),
        field.unwrap_or_default(),
        reason,
    ];
    // Writing into a Vec cannot fail, and the fields are valid UTF-8, so the bytes are too.
    let _ = w.write_record(record);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse("t", s).unwrap()
    }

    fn read(format: Format, text: &str) -> Vec<(u64, Result<LabelRow, String>, bool)> {
        LabelReader::new("f.csv", format, Cursor::new(text.as_bytes().to_vec()))
            .map(|l| (l.line, l.row.map_err(|e| e.to_string()), l.fatal))
            .collect()
    }

    #[test]
    fn csv_rows_parse_in_any_column_order_with_line_numbers() {
        let text = "\u{feff}source,transaction_id,extra,label,labelled_at\r\n\
                    chargeback,tx-1,x,fraud,2018-08-20T10:00:00Z\r\n\
                    \r\n\
                    \"analyst, jane\",tx-2,,LEGIT,2018-08-21T00:00:00+02:00\n\
                    chargeback,tx-3,x,maybe,2018-08-20T10:00:00Z\n\
                    chargeback,tx#4,x,fraud,2018-08-20T10:00:00Z\n\
                    ,tx-5,x,fraud,2018-08-20T10:00:00Z\n\
                    chargeback,tx-6,x,fraud\n\
                    chargeback,tx-7,x,fraud,yesterday\n\
                    \"open,tx-8,x,fraud,2018-08-20T10:00:00Z\n";
        let rows = read(Format::Csv, text);
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 4, 5, 6, 7, 8, 9, 10]);
        let ok = rows[1].1.as_ref().unwrap();
        assert_eq!(ok.source, "analyst, jane");
        assert_eq!(ok.label, LabelValue::Legit);
        assert_eq!(ok.labelled_at, ts("2018-08-20T22:00:00Z"));
        assert_eq!(rows[0].1.as_ref().unwrap().transaction_id.as_str(), "tx-1");
        let errs: Vec<&str> = rows[2..].iter().map(|r| r.1.as_ref().unwrap_err().as_str()).collect();
        assert_eq!(errs[0], "f.csv line 5, field label: \"maybe\" is not fraud or legit");
        assert!(
            errs[1].starts_with("f.csv line 6, field transaction_id: contains '#'"),
            "{}",
            errs[1]
        );
        assert_eq!(errs[2], "f.csv line 7, field source: must not be empty");
        assert_eq!(errs[3], "f.csv line 8: expected 5 fields as in the header, found 4");
        assert!(
            errs[4].starts_with("f.csv line 9, field labelled_at: \"yesterday\""),
            "{}",
            errs[4]
        );
        assert!(errs[5].contains("line 10: a quoted field is not closed"), "{}", errs[5]);
        assert!(rows.iter().all(|r| !r.2));
    }

    #[test]
    fn a_bad_header_or_empty_file_stops_the_read() {
        let rows = read(Format::Csv, "transaction_id,label,source\ntx-1,fraud,x\n");
        assert_eq!(rows.len(), 1);
        assert!(rows[0].2);
        assert_eq!(
            rows[0].1.as_ref().unwrap_err(),
            "f.csv line 1, field labelled_at: column is missing from the header (expected transaction_id,label,source,labelled_at)"
        );
        let rows = read(Format::Csv, "");
        assert!(rows[0].2 && rows[0].1.as_ref().unwrap_err().contains("the file is empty"));
        let rows = read(Format::Csv, "label,label,source,labelled_at,transaction_id\n");
        assert!(rows[0].1.as_ref().unwrap_err().contains("field label: appears twice"));
    }

    #[test]
    fn ndjson_rows_name_their_fields() {
        let text = "{\"transaction_id\":\"tx-1\",\"label\":\"fraud\",\"source\":\"cb\",\"labelled_at\":\"2018-08-20T10:00:00Z\",\"note\":1}\n\
                    \n\
                    {\"transaction_id\":\"tx-2\",\"label\":true,\"source\":\"cb\",\"labelled_at\":\"2018-08-20T10:00:00Z\"}\n\
                    [1]\n\
                    {\"transaction_id\":\"tx-3\"\n\
                    {\"label\":\"legit\",\"source\":\"cb\",\"labelled_at\":\"2018-08-20T10:00:00Z\"}\n";
        let rows = read(Format::Ndjson, text);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3, 4, 5, 6]);
        assert!(rows[0].1.is_ok());
        assert_eq!(
            rows[1].1.as_ref().unwrap_err(),
            "f.csv line 3, field label: must be a string, found a boolean"
        );
        assert_eq!(
            rows[2].1.as_ref().unwrap_err(),
            "f.csv line 4: must be a JSON object, found an array"
        );
        assert!(rows[3]
            .1
            .as_ref()
            .unwrap_err()
            .contains("line 5: is not valid JSON (column"));
        assert_eq!(
            rows[4].1.as_ref().unwrap_err(),
            "f.csv line 6, field transaction_id: is missing"
        );
    }

    #[test]
    fn resuming_continues_with_the_same_lines_and_offsets() {
        let text = "transaction_id,label,source,labelled_at\n\
                    tx-1,fraud,cb,2018-08-20T10:00:00Z\n\
                    tx-2,legit,cb,2018-08-20T10:00:00Z\n\
                    tx-3,fraud,cb,2018-08-20T10:00:00Z\n";
        let mut r = LabelReader::new("f", Format::Csv, Cursor::new(text.as_bytes()));
        let first = r.next().unwrap();
        assert_eq!(first.line, 2);
        let (next_line, offset) = r.position();
        assert_eq!(next_line, 3);
        assert_eq!(&text[offset as usize..offset as usize + 4], "tx-2");
        let at = Resume {
            next_line,
            ranged: true,
            header: r.header().map(str::to_owned),
        };
        let rest: Vec<_> = LabelReader::resume(
            "f",
            Format::Csv,
            Cursor::new(&text.as_bytes()[offset as usize..]),
            &at,
            offset,
        )
        .map(|l| (l.line, l.row.unwrap().transaction_id.to_string()))
        .collect();
        assert_eq!(rest, [(3, "tx-2".to_string()), (4, "tx-3".to_string())]);
        // Unranged (gzip): read from the top, skipping what was done.
        let skipped: Vec<_> = LabelReader::resume(
            "f",
            Format::Csv,
            Cursor::new(text.as_bytes()),
            &Resume {
                next_line: 4,
                ranged: false,
                header: None,
            },
            0,
        )
        .map(|l| l.line)
        .collect();
        assert_eq!(skipped, [4]);
    }

    #[test]
    fn transitions_count_each_transaction_once() {
        let row = |label, at: &str| LabelRow {
            transaction_id: TransactionId::parse("tx").unwrap(),
            label,
            source: "cb".into(),
            labelled_at: ts(at),
        };
        let here = Provenance {
            file: "s3://b/k",
            etag: "e1",
            line: 7,
        };
        let stored = |value, at: &str, line| StoredLabel {
            value,
            source: "cb".into(),
            labelled_at: ts(at),
            file: Some("s3://b/k".into()),
            etag: Some("e1".into()),
            line: Some(line),
            note: None,
        };
        use LabelValue::*;
        let t = |prev: Option<&StoredLabel>, r: &LabelRow| transition(prev, r, Some(here));
        assert_eq!(
            t(None, &row(Fraud, "2018-08-20T00:00:00Z")),
            Transition::Apply { fraud_delta: 1 }
        );
        assert_eq!(
            t(None, &row(Legit, "2018-08-20T00:00:00Z")),
            Transition::Apply { fraud_delta: 0 }
        );
        let f = stored(Fraud, "2018-08-20T00:00:00Z", 3);
        assert_eq!(t(Some(&f), &row(Fraud, "2018-08-25T00:00:00Z")), Transition::Unchanged);
        assert_eq!(
            t(Some(&f), &row(Legit, "2018-08-25T00:00:00Z")),
            Transition::Apply { fraud_delta: -1 }
        );
        assert_eq!(t(Some(&f), &row(Legit, "2018-08-19T00:00:00Z")), Transition::Superseded);
        let l = stored(Legit, "2018-08-20T00:00:00Z", 3);
        assert_eq!(
            t(Some(&l), &row(Fraud, "2018-08-20T00:00:00Z")),
            Transition::Apply { fraud_delta: 1 }
        );
        let mine = stored(Fraud, "2018-08-20T00:00:00Z", 7);
        assert_eq!(
            t(Some(&mine), &row(Fraud, "2018-08-20T00:00:00Z")),
            Transition::AlreadyApplied
        );
        // From the API there is no row to recognise: the same label again is unchanged.
        assert_eq!(
            transition(Some(&mine), &row(Fraud, "2018-08-20T00:00:00Z"), None),
            Transition::Unchanged
        );
    }

    #[test]
    fn an_api_label_body_names_every_bad_field() {
        let id = TransactionId::parse("tx-1").unwrap();
        let ok = LabelRequest::parse_json(
            &id,
            br#"{"label":"FRAUD","source":" chargeback ","labelled_at":"2018-08-20T10:00:00+02:00","note":"n"}"#,
        )
        .unwrap();
        assert_eq!(ok.row.label, LabelValue::Fraud);
        assert_eq!(ok.row.source, "chargeback");
        assert_eq!(ok.row.labelled_at, ts("2018-08-20T08:00:00Z"));
        assert_eq!(
            (ok.row.transaction_id.as_str(), ok.note.as_deref()),
            ("tx-1", Some("n"))
        );
        let fields = |body: &str| -> Vec<&'static str> {
            LabelRequest::parse_json(&id, body.as_bytes())
                .unwrap_err()
                .into_iter()
                .map(|(f, _)| f)
                .collect()
        };
        assert_eq!(
            fields(r#"{"label":"maybe","source":"","labelled_at":"soon"}"#),
            ["label", "source", "labelled_at"]
        );
        let long = format!(
            r#"{{"label":"legit","source":"a","labelled_at":"2018-08-20T10:00:00Z","note":"{}"}}"#,
            "x".repeat(MAX_NOTE_LEN + 1)
        );
        assert_eq!(fields(&long), ["note"]);
        assert_eq!(
            fields(r#"{"label":"legit","other":1}"#),
            ["body", "source", "labelled_at"]
        );
        assert_eq!(fields("[1]"), ["body"]);
    }

    #[test]
    fn times_are_checked_against_the_transaction() {
        let r = LabelRow {
            transaction_id: TransactionId::parse("tx").unwrap(),
            label: LabelValue::Fraud,
            source: "cb".into(),
            labelled_at: ts("2018-08-20T00:00:00Z"),
        };
        let now = ts("2018-09-01T00:00:00Z");
        assert!(r.check_times(&ts("2018-08-19T00:00:00Z"), &now).is_ok());
        assert!(r
            .check_times(&ts("2018-08-21T00:00:00Z"), &now)
            .unwrap_err()
            .1
            .contains("before the transaction"));
        assert!(r
            .check_times(&ts("2018-08-01T00:00:00Z"), &ts("2018-08-18T00:00:00Z"))
            .unwrap_err()
            .1
            .contains("future"));
    }

    #[test]
    fn counts_round_trip_through_a_checkpoint_map() {
        let c = LabelCounts {
            rows_read: 9,
            applied: 4,
            unchanged: 3,
            rejected: 2,
            unknown: 1,
            superseded: 1,
        };
        let m = c.to_map();
        assert_eq!(m.len(), 6);
        assert_eq!(LabelCounts::from_map(&m), c);
    }

    #[test]
    fn files_and_reports_are_named_from_the_key() {
        let f = LabelFile::parse("labels/incoming/acme/2018/08.csv.gz").unwrap();
        assert_eq!(f.tenant.as_str(), "acme");
        assert_eq!(
            f.kind().unwrap(),
            FileKind {
                format: Format::Csv,
                gzip: true
            }
        );
        assert_eq!(f.errors_key(), "labels/results/acme/2018/08.errors.csv");
        assert_eq!(f.summary_key(), "labels/results/acme/2018/08.summary.json");
        assert!(LabelFile::parse("labels/incoming/acme/x.xlsx").unwrap().kind().is_err());
        assert!(LabelFile::parse("labels/incoming/x.csv").is_err());
        assert_eq!(
            report_line(3, Some("tx-1"), Some("label"), "a \"b\", c"),
            "3,tx-1,label,\"a \"\"b\"\", c\"\n"
        );
        assert_eq!(report_line(4, None, None, "plain"), "4,,,plain\n");
        assert_eq!(report_line(5, Some("tx"), None, "two\nlines"), "5,tx,,\"two\nlines\"\n");
        assert_eq!(csv_fields("a,\"\",c").unwrap(), ["a", "", "c"]);
        assert_eq!(csv_fields("\"x \"\"y\"\"\",z").unwrap(), ["x \"y\"", "z"]);
        assert_eq!(csv_fields("a\rb,c").unwrap(), ["a\rb", "c"]);
        assert!(csv_fields("a,\"b").unwrap_err().contains("not closed"));
    }
}
