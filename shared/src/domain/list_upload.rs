//! List files, the pure part: the key an upload lands at, its lines, and the reports.
//!
//! A file lands at `lists/incoming/<tenant>/<list_name>.{csv,txt}[.gz]` and adds its values to the
//! tenant's existing list `<list_name>`. Both extensions are read as CSV by the `csv` crate: one
//! value a line, optionally followed by `,<expires_at RFC 3339>,<note>` (empty fields are absent),
//! with an optional header `value[,expires_at[,note]]` (any case). A value holding a comma or a
//! quote is quoted (`"a,b"`). Blank lines are skipped; a first line whose first field is `value`
//! is the header. Every line gets its 1-based number (the header is line 1).
//!
//! A list file is bounded (a list holds at most 100,000 entries), so it is read whole
//! ([`MAX_FILE_BYTES`], after gunzip too) and its lines parsed at once.

use crate::domain::csv_line::CsvLine;
use crate::domain::model_upload::{split_tenant_key, KeyError};
use crate::domain::{ListName, TenantId, Timestamp};
use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use std::io::Read;

pub const INCOMING_PREFIX: &str = "lists/incoming/";
/// Reports go here, outside the trigger prefix, so writing them never triggers the function.
pub const RESULTS_PREFIX: &str = "lists/results/";
/// The optional header's columns, in this order (a prefix of them is fine).
pub const COLUMNS: [&str; 3] = ["value", "expires_at", "note"];
/// A bigger file (compressed or not) is refused unread: 100,000 entries with notes fit well below.
pub const MAX_FILE_BYTES: u64 = 32 << 20;
/// Lines a file may hold: twice what a list can, so a file of short or repeated values cannot
/// hold the whole function's memory in parsed lines.
pub const MAX_FILE_LINES: usize = 2 * crate::domain::rules::MAX_LIST_ENTRIES;
/// The error report's header.
pub const REPORT_HEADER: &str = "line,field,value,reason\n";

/// An upload under `lists/incoming/<tenant>/`: the tenant always, and the list and the file's
/// form when the name is one (`Err`: why not, a recorded failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUpload {
    pub tenant: TenantId,
    pub key: String,
    /// Below the tenant's folder, e.g. `blocked_emails.csv`.
    pub name: String,
    pub target: Result<ListTarget, String>,
}

/// The list a file names and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTarget {
    pub list: ListName,
    pub gzip: bool,
}

impl ListUpload {
    /// `Err` only when the key names no tenant (nothing can be recorded for it).
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        let (tenant, name) = split_tenant_key(INCOMING_PREFIX, key)?;
        let target = parse_name(&name).map_err(|why| format!("{key}: {why}"));
        Ok(ListUpload {
            tenant,
            key: key.to_owned(),
            name,
            target,
        })
    }

    /// `lists/results/<tenant>/<name without its extensions>`.
    fn report_base(&self) -> String {
        let mut base = self.name.as_str();
        for ext in [".gz", ".csv", ".txt"] {
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

fn parse_name(name: &str) -> Result<ListTarget, String> {
    const EXPECTED: &str = "expected lists/incoming/<tenant>/<list_name>.csv or .txt, optionally followed by .gz";
    if name.contains('/') {
        return Err(format!("is in a sub-folder; {EXPECTED}"));
    }
    let lower = name.to_ascii_lowercase();
    let (rest, gzip) = match lower.strip_suffix(".gz") {
        Some(r) => (r, true),
        None => (lower.as_str(), false),
    };
    let stem_len = if rest.ends_with(".csv") || rest.ends_with(".txt") {
        rest.len() - 4
    } else {
        return Err(format!("unknown file type; {EXPECTED}"));
    };
    // The name as uploaded, not lower-cased: list names are case-sensitive.
    let stem = &name[..stem_len];
    let list = ListName::parse(stem).map_err(|e| format!("list name {stem:?}: {}", e.reason))?;
    Ok(ListTarget { list, gzip })
}

/// The file's bytes as text lines are read from: gunzipped when `gzip`, refused past
/// [`MAX_FILE_BYTES`].
pub fn decode(bytes: Vec<u8>, gzip: bool) -> Result<Vec<u8>, String> {
    if !gzip {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(MAX_FILE_BYTES as usize));
    let read = MultiGzDecoder::new(&bytes[..])
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out);
    match read {
        Err(e) => Err(format!("is not valid gzip: {e}")),
        Ok(_) if out.len() as u64 > MAX_FILE_BYTES => {
            Err(format!("is larger than {MAX_FILE_BYTES} bytes once decompressed"))
        }
        Ok(_) => Ok(out),
    }
}

/// One line of a list file: its fields, not yet checked against the list's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub value: String,
    pub expires_at: Option<Timestamp>,
    pub note: Option<String>,
}

/// A line's outcome; `field` names the bad field when one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLine {
    pub line: u64,
    pub row: Result<ListRow, LineError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub field: Option<&'static str>,
    /// The line's value as read, when there is one (for the report).
    pub value: String,
    pub reason: String,
}

/// Every line of a list file (after the header, if any). `Err` when the file cannot be read at
/// all (a bad header).
pub fn parse_lines(text: &[u8]) -> Result<Vec<ListLine>, (u64, String)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::CRLF)
        .from_reader(text);
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    // The crate's own line count misses CRLF and blank lines: count from byte offsets instead.
    let mut lines = LineCounter {
        text,
        at: 0,
        newlines: 0,
    };
    loop {
        let before = reader.position().byte();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = lines.line_at(e.position().map_or(before, |p| p.byte()));
                out.push(bad(line, None, String::new(), format!("is not valid CSV: {e}")));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = lines.line_at(record.position().map_or(before, |p| p.byte()));
        let fields: Result<Vec<&str>, _> = record.iter().map(std::str::from_utf8).collect();
        let fields = match fields {
            Ok(f) => f,
            Err(e) => {
                out.push(bad(line, None, String::new(), format!("is not valid UTF-8: {e}")));
                first = false;
                continue;
            }
        };
        let mut fields = fields;
        if first {
            first = false;
            if let Some(f) = fields.first_mut() {
                *f = f.trim_start_matches('\u{feff}');
            }
            if fields
                .first()
                .is_some_and(|f| f.trim().eq_ignore_ascii_case(COLUMNS[0]))
            {
                check_header(&fields).map_err(|why| (line, why))?;
                continue;
            }
        }
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if out.len() >= MAX_FILE_LINES {
            return Err((
                line,
                format!(
                    "the file has more than {MAX_FILE_LINES} lines; a list holds at most {} entries: split the file",
                    crate::domain::rules::MAX_LIST_ENTRIES
                ),
            ));
        }
        out.push(ListLine {
            line,
            row: parse_row(&fields),
        });
    }
    Ok(out)
}

/// 1-based line numbers of byte offsets, asked in increasing order.
struct LineCounter<'a> {
    text: &'a [u8],
    at: usize,
    newlines: u64,
}

impl LineCounter<'_> {
    /// The line of the first byte at or after `byte` that is not a line break (a record's
    /// position is where the previous one's terminator began).
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut start = (byte as usize).min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.at {
            self.newlines += self.text[self.at..start].iter().filter(|&&b| b == b'\n').count() as u64;
            self.at = start;
        }
        self.newlines + 1
    }
}

fn bad(line: u64, field: Option<&'static str>, value: String, reason: String) -> ListLine {
    ListLine {
        line,
        row: Err(LineError { field, value, reason }),
    }
}

fn check_header(fields: &[&str]) -> Result<(), String> {
    let ok = fields.len() <= COLUMNS.len()
        && fields
            .iter()
            .zip(COLUMNS)
            .all(|(f, c)| f.trim().eq_ignore_ascii_case(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the header {:?} is not {} (or a prefix of it)",
            fields.join(","),
            COLUMNS.join(",")
        ))
    }
}

fn parse_row(fields: &[&str]) -> Result<ListRow, LineError> {
    let value = fields.first().copied().unwrap_or_default().to_owned();
    let err = |field, reason: String| LineError {
        field,
        value: value.clone(),
        reason,
    };
    if fields.len() > COLUMNS.len() {
        return Err(err(
            None,
            format!(
                "has {} fields; expected at most {} ({}); quote a value that holds a comma",
                fields.len(),
                COLUMNS.len(),
                COLUMNS.join(",")
            ),
        ));
    }
    let optional = |i: usize| fields.get(i).map(|f| f.trim()).filter(|f| !f.is_empty());
    let expires_at = optional(1)
        .map(|raw| Timestamp::parse("expires_at", raw))
        .transpose()
        .map_err(|e| err(Some("expires_at"), e.reason))?;
    Ok(ListRow {
        value: value.clone(),
        expires_at,
        note: optional(2).map(str::to_owned),
    })
}

/// One line of the error report ([`REPORT_HEADER`]); the value and reason always quoted.
pub fn report_line(csv: &mut CsvLine, out: &mut Vec<u8>, line: u64, field: Option<&str>, value: &str, reason: &str) {
    csv.display(out, line);
    csv.field(out, field.unwrap_or_default());
    csv.text(out, value);
    csv.text(out, reason);
    csv.end(out);
}

/// How far a list file's job got: the payload of its job item ([`crate::ports::jobs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListImportProgress {
    /// The first line not yet applied (1-based).
    pub next_line: u64,
    pub counts: ImportCounts,
    /// How many error-report chunks are stored.
    pub error_chunks: u32,
}

impl Default for ListImportProgress {
    fn default() -> Self {
        ListImportProgress {
            next_line: 1,
            counts: ImportCounts::default(),
            error_chunks: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportCounts {
    /// Lines with a value (blank lines and the header are not rows).
    pub rows_read: u64,
    /// New values in the list.
    pub added: u64,
    /// Values already there (or repeated in the file): their expiry and note replaced.
    pub updated: u64,
    /// Lines in the error report.
    pub rejected: u64,
    /// The list after the last applied chunk.
    pub list_version: Option<u64>,
    pub list_entries: Option<u64>,
}

/// The summary JSON written beside the error report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListImportSummary {
    pub file: String,
    pub etag: String,
    pub tenant: String,
    /// None when the key names no list.
    pub list: Option<String>,
    #[serde(flatten)]
    pub counts: ImportCounts,
    pub errors_key: String,
    /// Set when the job failed: the lines from `next_line` on were not applied.
    pub stopped_early: Option<String>,
    pub next_line: Option<u64>,
    pub invocations: u64,
    pub started_at: String,
    pub completed_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = (String, Option<String>, Option<String>);
    type Bad = (Option<&'static str>, String);

    fn rows(text: &str) -> Vec<(u64, Result<Fields, Bad>)> {
        parse_lines(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|l| {
                (
                    l.line,
                    l.row
                        .map(|r| (r.value, r.expires_at.map(|t| t.to_rfc3339()), r.note))
                        .map_err(|e| (e.field, e.value)),
                )
            })
            .collect()
    }

    #[test]
    fn keys_name_the_tenant_the_list_and_the_form() {
        let u = ListUpload::parse("lists/incoming/acme/blocked_emails.csv.gz").unwrap();
        assert_eq!(u.tenant.as_str(), "acme");
        assert_eq!(
            u.target,
            Ok(ListTarget {
                list: ListName::parse("blocked_emails").unwrap(),
                gzip: true
            })
        );
        assert_eq!(u.summary_key(), "lists/results/acme/blocked_emails.summary.json");
        assert_eq!(u.errors_key(), "lists/results/acme/blocked_emails.errors.csv");
        let txt = ListUpload::parse("lists/incoming/acme/Bad_IPs.TXT").unwrap();
        assert_eq!(txt.target.unwrap().list.as_str(), "Bad_IPs");
        for (key, why) in [
            ("lists/incoming/acme/a.json", "unknown file type"),
            ("lists/incoming/acme/sub/a.csv", "sub-folder"),
            ("lists/incoming/acme/bad#name.csv", "list name"),
            ("lists/incoming/acme/.csv", "list name"),
        ] {
            let u = ListUpload::parse(key).unwrap();
            assert!(u.target.as_ref().unwrap_err().contains(why), "{key}: {:?}", u.target);
        }
        assert!(ListUpload::parse("lists/incoming/bad tenant/a.csv").is_err());
        assert!(ListUpload::parse("lists/results/acme/a.csv").is_err());
    }

    #[test]
    fn lines_carry_their_numbers_fields_and_errors() {
        let text = "Value,Expires_At,Note\r\na@b.io\n\n\"x,y\",2030-01-01T00:00:00Z,\"a note, quoted\"\nc@d.io,tomorrow\nd@e.io,,n\ne,f,g,h\n";
        let got = rows(text);
        assert_eq!(got[0], (2, Ok(("a@b.io".into(), None, None))));
        assert_eq!(
            got[1],
            (
                4,
                Ok((
                    "x,y".into(),
                    Some("2030-01-01T00:00:00Z".into()),
                    Some("a note, quoted".into())
                ))
            )
        );
        assert_eq!(got[2], (5, Err((Some("expires_at"), "c@d.io".into()))));
        assert_eq!(got[3], (6, Ok(("d@e.io".into(), None, Some("n".into())))));
        assert_eq!(got[4], (7, Err((None, "e".into()))));
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn without_a_header_line_one_is_a_value_and_a_wrong_header_stops_the_file() {
        assert_eq!(rows("10.0.0.1\n10.0.0.2\n")[0].0, 1);
        assert!(parse_lines(b"value,note\n")
            .unwrap_err()
            .1
            .contains("not value,expires_at,note"));
        assert!(parse_lines(b"\xef\xbb\xbfvalue\nx\n").unwrap().len() == 1);
        let many = "a\n".repeat(MAX_FILE_LINES + 1);
        let (line, why) = parse_lines(many.as_bytes()).unwrap_err();
        assert_eq!(line as usize, MAX_FILE_LINES + 1);
        assert!(why.contains("split the file"), "{why}");
        let l = parse_lines(b"ok\n\xff\xfe\nok2\n").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].line, 2);
        assert!(l[1].row.is_err());
    }

    #[test]
    fn gzip_is_decoded_and_garbage_refused() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"a\nb\n").unwrap();
        assert_eq!(decode(gz.finish().unwrap(), true).unwrap(), b"a\nb\n");
        assert!(decode(b"not gzip".to_vec(), true).is_err());
        assert_eq!(decode(b"plain".to_vec(), false).unwrap(), b"plain");
    }
}
