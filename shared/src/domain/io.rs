//! Reading and writing transaction files (CSV and NDJSON, optionally gzipped).
//!
//! CSV: header `id,occurred_at,amount,currency,customer_id,terminal_id,label_fraud,label_scenario`
//! (the label columns are optional on read, columns may come in any order, extra ones are ignored).
//! Optional CSV columns `ip,device_id,email,country` and `metadata.<key>` carry the request's
//! optional fields. NDJSON: one object a line, the body the HTTP API accepts (read by the same
//! parser), with an optional `"label":{"fraud":…,"scenario":…}`; unknown fields are ignored.
//!
//! Both are read as a stream, one row at a time. Every bad row gives a [`RowError`] that names the
//! file, the 1-based line, the field and the reason.

use crate::domain::csv_line::CsvLine;
pub(crate) use crate::domain::decision::json_kind;
use crate::domain::decision::{self, JsonTransaction, RequestExtras, TransactionFields};
use crate::domain::{Label, LabelledTransaction, Timestamp, Transaction};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;
use serde_json::Value;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// The CSV columns, in the order they are written.
pub const CSV_HEADER: [&str; 8] = [
    "id",
    "occurred_at",
    "amount",
    "currency",
    "customer_id",
    "terminal_id",
    "label_fraud",
    "label_scenario",
];
/// Columns a CSV file must have; the two label columns may be missing.
const REQUIRED_COLUMNS: usize = 6;
/// A longer NDJSON line is refused rather than buffered: a transaction is a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A bad row (or header): where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}{}: {reason}", field.map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct RowError {
    pub file: String,
    /// 1-based.
    pub line: u64,
    pub field: Option<&'static str>,
    pub reason: String,
}

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{file}: unknown file type; expected .csv, .ndjson or .jsonl, optionally followed by .gz")]
    UnknownFormat { file: String },
    #[error("cannot open {file}: {error}")]
    Open { file: String, error: io::Error },
    #[error("cannot create {file}: {error}")]
    Create { file: String, error: io::Error },
    #[error("cannot write {file}: {error}")]
    Write { file: String, error: io::Error },
    #[error(transparent)]
    Row(#[from] RowError),
}

/// A transaction file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

/// A format plus whether the file is gzipped, as its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    pub format: Format,
    pub gzip: bool,
}

impl FileKind {
    /// From the extension: `.csv`, `.ndjson` or `.jsonl`, each optionally followed by `.gz`.
    pub fn from_path(path: &Path) -> Result<Self, FileError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let (stem, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        let format = if stem.ends_with(".csv") {
            Format::Csv
        } else if stem.ends_with(".ndjson") || stem.ends_with(".jsonl") {
            Format::Ndjson
        } else {
            return Err(FileError::UnknownFormat {
                file: path.display().to_string(),
            });
        };
        Ok(Self { format, gzip })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads a whole file into memory. Stops at the first bad row.
pub fn read_all(path: impl AsRef<Path>) -> Result<Vec<LabelledTransaction>, FileError> {
    TransactionReader::open(path)?
        .map(|r| r.map_err(FileError::from))
        .collect()
}

/// Streams the transactions of one file, one row at a time.
///
/// A bad row yields an `Err` and reading goes on with the next row; an error that leaves the rest
/// of the file unreadable (a bad header, an I/O or gzip error, an over-long line) ends the stream.
pub struct TransactionReader {
    file: String,
    rows: Rows,
    done: bool,
}

enum Rows {
    // Boxed: csv's reader carries its buffers inline.
    Csv {
        reader: Box<csv::Reader<Box<dyn Read + Send>>>,
        columns: Option<Columns>,
        record: csv::ByteRecord,
    },
    Ndjson {
        reader: Box<dyn BufRead + Send>,
        line: u64,
        buf: Vec<u8>,
        any: bool,
    },
}

impl TransactionReader {
    /// Opens `path`, choosing the format (and gzip) by its extension.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref();
        let kind = FileKind::from_path(path)?;
        let file = path.display().to_string();
        let f = File::open(path).map_err(|error| FileError::Open {
            file: file.clone(),
            error,
        })?;
        let raw: Box<dyn Read + Send> = if kind.gzip {
            Box::new(MultiGzDecoder::new(f))
        } else {
            Box::new(f)
        };
        Ok(Self::new(file, kind.format, raw))
    }

    /// Reads from any byte stream; `file` is the name errors will give.
    pub fn new(file: impl Into<String>, format: Format, input: impl Read + Send + 'static) -> Self {
        let input: Box<dyn Read + Send> = Box::new(input);
        let rows = match format {
            Format::Csv => Rows::Csv {
                // Row lengths are checked here, to report them with the line number.
                reader: Box::new(
                    csv::ReaderBuilder::new()
                        .has_headers(false)
                        .flexible(true)
                        .from_reader(input),
                ),
                columns: None,
                record: csv::ByteRecord::new(),
            },
            Format::Ndjson => Rows::Ndjson {
                reader: Box::new(BufReader::with_capacity(1 << 16, input)),
                line: 0,
                buf: Vec::new(),
                any: false,
            },
        };
        Self {
            file: file.into(),
            rows,
            done: false,
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

    fn next_row(&mut self) -> Option<Result<LabelledTransaction, Stop>> {
        match &mut self.rows {
            Rows::Csv {
                reader,
                columns,
                record,
            } => {
                let start_line = reader.position().line();
                match reader.read_byte_record(record) {
                    Err(e) => Some(Err(Stop::Fatal(
                        line_of(&e).unwrap_or(start_line),
                        None,
                        csv_reason(&e),
                    ))),
                    Ok(false) if columns.is_none() => Some(Err(Stop::Fatal(
                        1,
                        None,
                        "the file is empty; expected a CSV header".into(),
                    ))),
                    Ok(false) => None,
                    Ok(true) => {
                        let line = record.position().map_or(start_line, |p| p.line());
                        match columns {
                            None => match Columns::from_header(record) {
                                Ok(c) => {
                                    *columns = Some(c);
                                    self.next_row()
                                }
                                Err((field, reason)) => Some(Err(Stop::Fatal(line, field, reason))),
                            },
                            Some(c) => Some(
                                c.parse(record)
                                    .map_err(|(field, reason)| Stop::Row(line, field, reason)),
                            ),
                        }
                    }
                }
            }
            Rows::Ndjson { reader, line, buf, any } => loop {
                buf.clear();
                *line += 1;
                let read = reader.as_mut().take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', buf);
                match read {
                    Err(e) => return Some(Err(Stop::Fatal(*line, None, format!("cannot read: {e}")))),
                    Ok(0) if !*any => return Some(Err(Stop::Fatal(1, None, "the file is empty".into()))),
                    Ok(0) => return None,
                    Ok(_) if buf.len() > MAX_LINE_BYTES => {
                        return Some(Err(Stop::Fatal(
                            *line,
                            None,
                            format!("line is longer than {MAX_LINE_BYTES} bytes"),
                        )))
                    }
                    Ok(_) => {}
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue; // A blank line, such as a trailing one.
                }
                *any = true;
                let line = *line;
                // Without its line break, serde_json's column points into this line.
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                return Some(parse_json(buf).map_err(|e| Stop::Row(line, e.field, e.reason)));
            },
        }
    }
}

/// What ended a row: a bad row (reading goes on) or a fatal error (reading stops).
enum Stop {
    Row(u64, Option<&'static str>, String),
    Fatal(u64, Option<&'static str>, String),
}

impl Iterator for TransactionReader {
    type Item = Result<LabelledTransaction, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_row()? {
            Ok(t) => Some(Ok(t)),
            Err(Stop::Row(line, field, reason)) => Some(Err(self.error(line, field, reason))),
            Err(Stop::Fatal(line, field, reason)) => {
                self.done = true;
                Some(Err(self.error(line, field, reason)))
            }
        }
    }
}

fn line_of(e: &csv::Error) -> Option<u64> {
    e.position().map(|p| p.line())
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(e) => format!("cannot read: {e}"),
        _ => e.to_string(),
    }
}

/// Where each field sits in a CSV row, from the header.
struct Columns {
    /// Indexes of [`CSV_HEADER`]'s columns; the label ones may be absent.
    at: [Option<usize>; 8],
    /// Indexes of the request's optional columns ([`RequestExtras::TEXT_FIELDS`]), if present.
    extras: [Option<usize>; 4],
    /// `metadata.<key>` columns: index and key.
    metadata: Vec<(usize, String)>,
    len: usize,
}

type FieldError = (Option<&'static str>, String);

impl Columns {
    fn from_header(header: &csv::ByteRecord) -> Result<Self, FieldError> {
        let mut at = [None; 8];
        let mut extras = [None; 4];
        let mut metadata: Vec<(usize, String)> = Vec::new();
        for (i, raw) in header.iter().enumerate() {
            let name = std::str::from_utf8(raw)
                .map_err(|_| (None, format!("column {} of the header is not valid UTF-8", i + 1)))?;
            // A UTF-8 byte order mark would otherwise hide the first column's name.
            let name = name.trim_start_matches('\u{feff}').trim();
            let twice = |field: &'static str| Err((Some(field), "appears twice in the header".into()));
            if let Some(k) = CSV_HEADER.iter().position(|c| *c == name) {
                if at[k].is_some() {
                    return twice(CSV_HEADER[k]);
                }
                at[k] = Some(i);
            } else if let Some(k) = RequestExtras::TEXT_FIELDS.iter().position(|c| *c == name) {
                if extras[k].is_some() {
                    return twice(RequestExtras::TEXT_FIELDS[k]);
                }
                extras[k] = Some(i);
            } else if let Some(key) = name.strip_prefix("metadata.") {
                if metadata.iter().any(|(_, k)| k == key) {
                    return twice("metadata");
                }
                metadata.push((i, key.to_owned()));
            }
        }
        if let Some(k) = at[..REQUIRED_COLUMNS].iter().position(Option::is_none) {
            return Err((
                Some(CSV_HEADER[k]),
                format!("column is missing from the header (expected {})", CSV_HEADER.join(",")),
            ));
        }
        Ok(Self {
            at,
            extras,
            metadata,
            len: header.len(),
        })
    }

    fn parse(&self, row: &csv::ByteRecord) -> Result<LabelledTransaction, FieldError> {
        if row.len() != self.len {
            return Err((
                None,
                format!("expected {} fields as in the header, found {}", self.len, row.len()),
            ));
        }
        let text = |k: usize| -> Result<Option<&str>, FieldError> {
            match self.at[k] {
                None => Ok(None),
                Some(i) => std::str::from_utf8(&row[i]).map(Some).map_err(|e| {
                    (
                        Some(CSV_HEADER[k]),
                        format!("is not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
                    )
                }),
            }
        };
        // Required columns are always present (checked in `from_header`).
        let field = |k: usize| text(k).map(Option::unwrap_or_default);
        let amount_raw = field(2)?;
        let amount = amount_raw.parse::<i64>().map_err(|e| {
            let reason = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "is too large".to_owned(),
                std::num::IntErrorKind::Empty => "must not be empty".to_owned(),
                _ => format!("{amount_raw:?} is not an integer number of minor units"),
            };
            (Some("amount"), reason)
        })?;
        let tx = transaction(field(0)?, field(1)?, amount, field(3)?, field(4)?, field(5)?)?;
        let cell = |i: usize, name: &'static str| {
            std::str::from_utf8(&row[i]).map_err(|e| {
                (
                    Some(name),
                    format!("is not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
                )
            })
        };
        let mut extras = RequestExtras::default();
        for (k, at) in self.extras.iter().enumerate() {
            let name = RequestExtras::TEXT_FIELDS[k];
            match at.map(|i| cell(i, name)).transpose()? {
                None | Some("") => {}
                Some(v) => extras.set_text(name, v).map_err(first_field)?,
            }
        }
        for (i, key) in &self.metadata {
            match cell(*i, "metadata")? {
                "" => {}
                v => extras.add_metadata(key, v).map_err(first_field)?,
            }
        }
        let label = match (text(6)?.unwrap_or_default(), text(7)?.unwrap_or_default()) {
            ("", "") => None,
            ("", _) => return Err((Some("label_scenario"), "is set but label_fraud is empty".into())),
            (fraud, scenario) => Some(Label {
                fraud: match fraud {
                    "1" => true,
                    "0" => false,
                    f if f.eq_ignore_ascii_case("true") => true,
                    f if f.eq_ignore_ascii_case("false") => false,
                    f => return Err((Some("label_fraud"), format!("{f:?} is not one of 0, 1, true, false"))),
                },
                scenario: match scenario {
                    "" => 0,
                    s => parse_scenario(s.parse::<u64>().ok(), s, "label_scenario")?,
                },
            }),
        };
        Ok(LabelledTransaction {
            tx,
            label,
            extras: extras.boxed(),
        })
    }
}

/// A field error of the request's parser as a row's: the field by its static name (a metadata
/// key goes into the message).
fn first_field(e: decision::FieldError) -> FieldError {
    let (base, key) = e
        .field
        .split_once('.')
        .map_or((e.field.as_str(), None), |(b, k)| (b, Some(k)));
    let field = decision::FIELD_NAMES.iter().copied().find(|f| *f == base);
    match key {
        Some(k) => (field, format!("key {k:?}: {}", e.message)),
        None => (field, e.message),
    }
}

fn parse_scenario(n: Option<u64>, raw: &str, field: &'static str) -> Result<u8, FieldError> {
    n.and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| (Some(field), format!("{raw} is not a scenario number between 0 and 255")))
}

/// Builds a transaction from its fields through the request's parser; the first error is the row's.
fn transaction(
    id: &str,
    occurred_at: &str,
    amount_minor: i64,
    currency: &str,
    customer_id: &str,
    terminal_id: &str,
) -> Result<Transaction, FieldError> {
    let mut errors = Vec::new();
    TransactionFields {
        id: Some(id),
        occurred_at: Some(occurred_at),
        amount: Some(amount_minor),
        currency: Some(currency),
        customer_id: Some(customer_id),
        terminal_id: Some(terminal_id),
    }
    .parse(&mut errors)
    .ok_or_else(|| first_field(errors.swap_remove(0)))
}

/// An NDJSON line or an API body that did not parse; `field` is `None` when the JSON itself is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", field.map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct JsonError {
    pub field: Option<&'static str>,
    pub reason: String,
}

/// Parses one NDJSON line: the body `POST /v1/transactions` accepts (through the same parser),
/// with an optional `"label": {"fraud": …, "scenario": …}`. Other fields are ignored. The first
/// error is the row's.
pub fn parse_json(bytes: &[u8]) -> Result<LabelledTransaction, JsonError> {
    let err = |field, reason: String| JsonError { field, reason };
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(err(
            None,
            format!("is not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
        ));
    }
    // serde would also accept a JSON array of the fields in order; a transaction is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(err(None, "is not a transaction object (found a JSON array)".into()));
    }
    let row: JsonTransaction = serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's message ends with its own "at line 1 column N"; give the column only.
        let msg = e.to_string();
        let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
        let what = if e.is_data() {
            "is not a transaction object"
        } else {
            "is not valid JSON"
        };
        err(None, format!("{what} (column {}: {msg})", e.column()))
    })?;
    let request = row.parse().map_err(|mut errors| {
        let (field, reason) = first_field(errors.swap_remove(0));
        err(field, reason)
    })?;
    let label = match row.rest.get("label") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(Label {
            fraud: match o.get("fraud") {
                Some(Value::Bool(b)) => *b,
                None => return Err(err(Some("label.fraud"), "is missing".into())),
                Some(other) => {
                    return Err(err(
                        Some("label.fraud"),
                        format!("must be true or false, found {}", json_kind(other)),
                    ))
                }
            },
            scenario: match o.get("scenario") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => {
                    parse_scenario(n.as_u64(), &n.to_string(), "label.scenario").map_err(|(f, r)| err(f, r))?
                }
                Some(other) => {
                    return Err(err(
                        Some("label.scenario"),
                        format!("must be an integer, found {}", json_kind(other)),
                    ))
                }
            },
        }),
        Some(other) => {
            return Err(err(
                Some("label"),
                format!("must be an object, found {}", json_kind(other)),
            ))
        }
    };
    Ok(LabelledTransaction {
        tx: request.transaction(),
        label,
        extras: request.extras.boxed(),
    })
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes `txs` to `path` in the format its extension names. `progress(done, total)` is called
/// every few thousand rows.
pub fn write_all(
    path: impl AsRef<Path>,
    txs: &[LabelledTransaction],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), FileError> {
    let mut w = TransactionWriter::create(path)?;
    let total = txs.len() as u64;
    for (i, t) in txs.iter().enumerate() {
        w.write(t)?;
        if i % 8192 == 0 {
            progress(i as u64, total);
        }
    }
    w.finish()?;
    progress(total, total);
    Ok(())
}

/// A file being written: plain or gzipped, buffered either way.
pub enum Output {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Output {
    fn finish(self) -> io::Result<()> {
        match self {
            Output::Plain(mut w) => w.flush(),
            Output::Gzip(w) => w.finish()?.flush(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(w) => w.write(buf),
            Output::Gzip(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Plain(w) => w.write_all(buf),
            Output::Gzip(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(w) => w.flush(),
            Output::Gzip(w) => w.flush(),
        }
    }
}

/// Writes transactions one at a time. Each row goes to `W` in a single `write_all`, so `W` should
/// be buffered (a file from [`TransactionWriter::create`] is).
pub struct TransactionWriter<W: Write> {
    file: String,
    format: Format,
    out: W,
    row: Vec<u8>,
    csv: CsvLine,
}

impl TransactionWriter<Output> {
    /// Creates (or truncates) `path`, in the format and compression its extension names.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref();
        let kind = FileKind::from_path(path)?;
        let file = path.display().to_string();
        let f = File::create(path).map_err(|error| FileError::Create {
            file: file.clone(),
            error,
        })?;
        let f = BufWriter::with_capacity(1 << 16, f);
        let out = if kind.gzip {
            Output::Gzip(GzEncoder::new(f, Compression::fast()))
        } else {
            Output::Plain(f)
        };
        Self::new(file, kind.format, out)
    }

    /// Flushes, ends the gzip stream if any, and closes the file.
    pub fn finish(self) -> Result<(), FileError> {
        let file = self.file.clone();
        self.into_inner()?
            .finish()
            .map_err(|error| FileError::Write { file, error })
    }
}

impl<W: Write> TransactionWriter<W> {
    /// Writes to any sink (the CSV header at once); `file` is the name errors will give.
    pub fn new(file: impl Into<String>, format: Format, out: W) -> Result<Self, FileError> {
        let mut w = Self {
            file: file.into(),
            format,
            out,
            row: Vec::with_capacity(256),
            csv: CsvLine::new(),
        };
        if format == Format::Csv {
            w.csv.record(&mut w.row, CSV_HEADER);
            w.flush_row()?;
        }
        Ok(w)
    }

    pub fn write(&mut self, t: &LabelledTransaction) -> Result<(), FileError> {
        match self.format {
            Format::Csv => csv_row(&mut self.csv, &mut self.row, t),
            Format::Ndjson => json_row(&mut self.row, t),
        }
        self.flush_row()
    }

    /// Flushes and hands back the sink.
    pub fn into_inner(mut self) -> Result<W, FileError> {
        self.out.flush().map_err(|error| FileError::Write {
            file: self.file.clone(),
            error,
        })?;
        Ok(self.out)
    }

    fn flush_row(&mut self) -> Result<(), FileError> {
        let r = self.out.write_all(&self.row);
        self.row.clear();
        r.map_err(|error| FileError::Write {
            file: self.file.clone(),
            error,
        })
    }
}

/// Appends one CSV row in [`CSV_HEADER`]'s columns. (Ids, timestamps and currency codes cannot
/// hold a comma, a quote or a line break today, their newtypes refuse them; the crate quotes
/// whatever would need it.)
fn csv_row(csv: &mut CsvLine, row: &mut Vec<u8>, t: &LabelledTransaction) {
    let tx = &t.tx;
    csv.field(row, tx.id.as_str());
    csv.display(row, tx.occurred_at);
    csv.display(row, tx.amount.minor);
    csv.field(row, tx.amount.currency.as_str());
    csv.field(row, tx.customer_id.as_str());
    csv.field(row, tx.terminal_id.as_str());
    match t.label {
        Some(l) => {
            csv.display(row, u8::from(l.fraud));
            csv.display(row, l.scenario);
        }
        None => {
            csv.field(row, "");
            csv.field(row, "");
        }
    }
    csv.end(row);
}

#[derive(Serialize)]
struct JsonOut<'a> {
    id: &'a str,
    occurred_at: &'a Timestamp,
    amount: i64,
    currency: &'a str,
    customer_id: &'a str,
    terminal_id: &'a str,
    #[serde(flatten)]
    extras: &'a RequestExtras,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<Label>,
}

fn json_row(row: &mut Vec<u8>, t: &LabelledTransaction) {
    let tx = &t.tx;
    let out = JsonOut {
        id: tx.id.as_str(),
        occurred_at: &tx.occurred_at,
        amount: tx.amount.minor,
        currency: tx.amount.currency.as_str(),
        customer_id: tx.customer_id.as_str(),
        terminal_id: tx.terminal_id.as_str(),
        extras: t.extras(),
        label: t.label,
    };
    // Serialising plain strings, integers and booleans into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *row, &out);
    row.push(b'\n');
}

/// Sorts by time, then by id; stable, so equal rows keep their order.
pub fn sort_by_time(txs: &mut [LabelledTransaction]) {
    txs.sort_by(|a, b| {
        a.tx.occurred_at
            .cmp(&b.tx.occurred_at)
            .then_with(|| a.tx.id.cmp(&b.tx.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Vec<Result<LabelledTransaction, RowError>> {
        TransactionReader::new("t.csv", Format::Csv, io::Cursor::new(text.as_bytes().to_vec())).collect()
    }

    #[test]
    fn csv_label_columns_are_optional_and_columns_may_be_reordered() {
        let rows = csv(
            "terminal_id,id,occurred_at,amount,currency,customer_id,extra\nt1,a,2018-04-01T10:00:00Z,1250,EUR,c1,x\n",
        );
        let t = rows[0].as_ref().unwrap();
        assert_eq!(t.tx.amount.minor, 1250);
        assert_eq!(t.tx.terminal_id.as_str(), "t1");
        assert_eq!(t.label, None);
    }

    #[test]
    fn row_errors_do_not_stop_the_stream_but_header_errors_do() {
        let rows = csv("id,occurred_at,amount,currency,customer_id,terminal_id\na,2018-04-01T10:00:00Z,x,EUR,c1,t1\nb,2018-04-01T10:00:00Z,5,EUR,c1,t1\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].as_ref().unwrap_err().to_string(),
            "t.csv line 2, field amount: \"x\" is not an integer number of minor units"
        );
        assert!(rows[1].is_ok());
        let rows = csv("id,amount\na,5\n");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].as_ref().unwrap_err().field, Some("occurred_at"));
    }

    #[test]
    fn the_csv_writer_keeps_its_bytes_and_reads_back() {
        // No column of this file can hold a comma, a quote or a line break (the newtypes refuse
        // them): the csv crate's quoting of such values is tested in `csv_line`. Here: the bytes
        // of ordinary rows, labelled or not, and the reader reading them back.
        let text = "id,occurred_at,amount,currency,customer_id,terminal_id,label_fraud,label_scenario\n\
                    a,2018-04-01T10:00:00Z,1250,EUR,c1,t1,1,2\n\
                    b,2018-04-01T10:00:00.5Z,0,USD,c:2,t.2,,\n";
        let rows: Vec<LabelledTransaction> = csv(text).into_iter().map(Result::unwrap).collect();
        let mut w = TransactionWriter::new("mem", Format::Csv, Vec::new()).unwrap();
        for r in &rows {
            w.write(r).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), text);
        let back: Vec<LabelledTransaction> = TransactionReader::new("mem", Format::Csv, io::Cursor::new(bytes))
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, rows);
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json(br#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":"5","currency":"EUR","customer_id":"c","terminal_id":"t"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "amount: must be an integer number of minor units, found a string"
        );
        let e = parse_json(br#"[1]"#).unwrap_err();
        assert_eq!(e.field, None);
        assert!(e.reason.starts_with("is not a transaction object"), "{}", e.reason);
    }
}
